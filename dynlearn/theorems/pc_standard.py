r"""Theorem checks for predictive coding in the standard (clamped-output) regime and with non-negative rates.

* ``pc_linear_equilibrium`` — a linear PCN's relaxed equilibrium equals the closed form (Millidge et al., ICLR 2023).
* ``pc_tp_interpolation`` — as the precision ratio ρ = π_l/π_{l+1} goes to 0 the equilibrium tends to target
  propagation's targets with error O(ρ); as ρ → ∞ to backprop's gradient-step targets with error O(1/ρ).
* ``pc_em_critical_point`` — PC learning with prospective configuration is coordinate descent on F (generalised EM):
  F never rises over the E- and M-steps and ‖∂F/∂θ‖ at equilibrium falls; the backprop gradient is measured.
* ``pc_positive_kkt`` — the projected flow with non-negative rates decreases E and stops at a KKT point, the
  bounded-least-squares solution (Alonso & Neftci 2021).

See ``theory/pc_linear_equilibrium.md``, ``pc_tp_interpolation.md``, ``pc_em_critical_point.md``, ``pc_positive.md``.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ..analysis import loglog_slope
from ..config import THEOREM
from ..errors import ConfigError
from ..models.base import Data, equilibrium
from ..models.pc_standard import (
    PrecisionPC,
    bp_loss_and_gradient_norm,
    bp_targets,
    geometric_precisions,
    linear_equilibrium,
    linear_equilibrium_energy,
    tp_targets,
)
from ..networks import init_network
from .criteria import at_least, at_most, reported, within
from .registry import Verdict, register_check
from .. import draws

CHECK = THEOREM.replace(throw=False)
POLISHED = CHECK.replace(polish=True)
#: the default sweep of the precision ratio ρ in ``pc_tp_interpolation``
RATIOS = tuple(float(r) for r in np.logspace(-4, 4, 9))


def _frob(tree) -> float:
    return float(np.sqrt(sum(np.sum(np.asarray(v) ** 2) for v in jax.tree.leaves(tree))))


def _rel(a, b) -> float:
    return _frob(jax.tree.map(lambda u, v: u - v, a, b)) / _frob(b)


def _layer_formula_residual(net, x, y, p, state) -> float:
    """The paper's per-layer equilibrium (module docstring of :mod:`dynlearn.models.pc_standard`) with the relaxed
    neighbours, by numpy: max over layers of ‖x_l − (π_l I + π_{l+1}WᵀW)⁻¹(…)‖ / ‖x_l‖."""
    ws = [np.asarray(w) for w in net.weights]
    bs = [np.asarray(b) for b in net.biases]
    xs = [np.asarray(x), *map(np.asarray, state), np.asarray(y)]
    p = np.asarray(p)
    worst = 0.0
    for l in range(1, len(xs) - 1):
        w_up = ws[l]
        a = p[l - 1] * np.eye(w_up.shape[1]) + p[l] * w_up.T @ w_up
        rhs = p[l - 1] * (xs[l - 1] @ ws[l - 1].T + bs[l - 1]) + p[l] * (xs[l + 1] - bs[l]) @ w_up
        pred = np.linalg.solve(a, rhs.T).T
        worst = max(worst, float(np.linalg.norm(xs[l] - pred) / np.linalg.norm(xs[l])))
    return worst


@register_check(
    "pc_linear_equilibrium",
    family="pc",
    statement="a linear PCN with the output clamped relaxes to the closed-form equilibrium (state and energy, rel. error <= 1e-10) for several depths and precisions",
    theory="theory/pc_linear_equilibrium.md",
    quick={"depths": (2,)},
    full={"depths": (1, 2, 3, 4, 5), "seeds": (0, 1, 2), "precision_sets": 5},
)
def pc_linear_equilibrium(*, depths=(1, 3), precision_sets=3, width=5, batch=4, seeds=(0,), tol=1e-10, model_cls=PrecisionPC):
    """For ``depths`` hidden layers and ``precision_sets`` precision vectors (all ones, then log-uniform in
    [0.1, 10]), relax (THEOREM, Newton-polished) and compare with :func:`linear_equilibrium` (lineax),
    :func:`linear_equilibrium_energy` (½rᵀS⁻¹r, no hidden states) and the per-layer formula (numpy). The relaxation
    (steady at max|dF/dx| <= 1e-9) is finished by Newton to <= 1e-12, so the state error is <= 1e-12/λ_min(∂²F/∂x²)."""
    rows = []
    for depth in depths:
        sizes = (4, *([width] * depth), 3)
        for seed in seeds:
            k_net, k_x, k_y, k_p = jax.random.split(jax.random.key(100 * depth + seed), 4)
            net = init_network(sizes, key=k_net, activation="linear", bias_scale=0.1, dtype=jnp.float64)
            x = draws.normal(k_x, (batch, sizes[0]), jnp.float64)
            y = draws.normal(k_y, (batch, sizes[-1]), jnp.float64)
            for j in range(precision_sets):
                p = jnp.ones(len(sizes) - 1) if j == 0 else 10.0 ** draws.uniform(jax.random.fold_in(k_p, j), (len(sizes) - 1,), jnp.float64, -1, 1)
                model, data = model_cls(net, p), Data(x, y)
                eq = equilibrium(model, data, POLISHED)
                closed = linear_equilibrium(net, x, y, p)
                e_relaxed = float(model.energy(eq.state, data))
                e_closed = float(linear_equilibrium_energy(net, x, y, p))
                rows.append((depth, seed, j, _rel(eq.state, closed), abs(e_relaxed - e_closed) / abs(e_closed),
                             _layer_formula_residual(net, x, y, p, eq.state), float(eq.residual)))
    r = np.array(rows)
    ds = xr.Dataset(
        {name: ("case", r[:, i]) for i, name in enumerate(["depth", "seed", "precision_set", "state_error", "energy_error", "layer_formula_residual", "residual"])},
        coords={"case": np.arange(len(rows))},
    )
    verdict = Verdict.from_criteria(
        max_state_error=at_most(np.max(r[:, 3]), tol),
        max_energy_error=at_most(np.max(r[:, 4]), tol),
        max_layer_formula_residual=at_most(np.max(r[:, 5]), tol),
    )
    return ds, verdict


def _tp_problem(sizes, batch, seed, shift):
    """An invertible tanh network (orthogonal square W_L), inputs, chosen hidden targets t and y = f_L(φ(t))."""
    k_net, k_x, k_t = jax.random.split(jax.random.key(seed), 3)
    net = init_network(sizes, key=k_net, activation="tanh", scheme="orthogonal", gain=1.0, bias_scale=0.1, dtype=jnp.float64)
    x = 0.5 * draws.normal(k_x, (batch, sizes[0]), jnp.float64)  # keeps tanh' >= ~0.4: a well-conditioned inverse
    t = net.forward(x)[1] + shift * draws.normal(k_t, (batch, sizes[1]), jnp.float64)
    return net, x, t, net.predict_layer(2, t)


@register_check(
    "pc_tp_interpolation",
    family="pc",
    statement="the clamped PC equilibrium tends to the TP targets as the precision ratio rho -> 0 (error O(rho)) and to BP's gradient-step targets as rho -> inf (error O(1/rho)); slopes 1 +- 0.1",
    theory="theory/pc_tp_interpolation.md",
    quick={"seeds": (0,)},
    full={"ratios": tuple(np.logspace(-5, 5, 21)), "seeds": (0, 1, 2, 3)},
)
def pc_tp_interpolation(*, sizes=(3, 4, 4), batch=4, seeds=(0, 1), ratios=RATIOS, shift=0.3, fit_decades=2.0,
                        slope_tol=0.1, limit_tol=1e-2, target_tol=1e-10, model_cls=PrecisionPC):
    """Per seed and ratio ρ (precisions ``geometric_precisions(ρ)``): relative distances of the relaxed hidden state to
    the TP targets, ``|x* − t_TP| / |x̂ − t_TP|``, and to the BP targets, ``|x* − t_BP(ρ)| / |t_BP(ρ) − x̂|``.
    Slopes are fitted over the ``fit_decades`` decades at each end of ``ratios``; the worst seed counts."""
    ratios = np.asarray(ratios, float)
    d_tp, d_bp, tp_err = [], [], []
    for seed in seeds:
        net, x, t, y = _tp_problem(sizes, batch, seed, shift)
        data = Data(x, y)
        (t_tp,) = tp_targets(net, y)
        tp_err.append(_rel(t_tp, t))
        xhat = net.forward(x)[1]
        row_tp, row_bp = [], []
        for rho in ratios:
            p = geometric_precisions(rho, net.depth)
            eq = equilibrium(model_cls(net, p), data, POLISHED)
            (t_bp,) = bp_targets(net, x, y, p)
            row_tp.append(_frob(eq.state[0] - t) / _frob(xhat - t))
            row_bp.append(_frob(eq.state[0] - t_bp) / _frob(t_bp - xhat))
        d_tp.append(row_tp)
        d_bp.append(row_bp)
    d_tp, d_bp = np.array(d_tp), np.array(d_bp)
    low = ratios <= ratios.min() * 10**fit_decades
    high = ratios >= ratios.max() / 10**fit_decades
    try:
        s_tp = np.array([loglog_slope(ratios[low], d[low]) for d in d_tp])
        s_bp = np.array([loglog_slope(ratios[high], d[high]) for d in d_bp])
    except ValueError:
        s_tp = s_bp = np.full(len(seeds), np.nan)
    ds = xr.Dataset(
        {"distance_to_tp": (("seed", "ratio"), d_tp), "distance_to_bp": (("seed", "ratio"), d_bp),
         "slope_tp": ("seed", s_tp), "slope_bp": ("seed", s_bp)},
        coords={"seed": list(seeds), "ratio": ratios},
    )
    verdict = Verdict.from_criteria(
        worst_tp_slope=within(s_tp[np.argmax(np.abs(s_tp - 1))], 1.0, slope_tol),
        worst_bp_slope=within(s_bp[np.argmax(np.abs(s_bp + 1))], -1.0, slope_tol),
        tp_limit_distance=at_most(np.max(d_tp[:, 0]), limit_tol),
        bp_limit_distance=at_most(np.max(d_bp[:, -1]), limit_tol),
        tp_targets_by_inverse=at_most(max(tp_err), target_tol),
    )
    return ds, verdict


def _em_run(net, data, lr, steps, config, ascent=False, infer=True):
    """``steps`` EM steps (E: relax from the last equilibrium; M: θ ← θ − lr ∂F/∂θ), scanned and compiled once.
    Records F before and after each half step, ‖∂F/∂θ‖, the BP loss and ‖∇L‖ at the start of each step.
    ``infer=False`` skips the E-step (the M-step then acts at the feedforward state, where the hidden errors vanish)."""
    sign = -1.0 if ascent else 1.0

    @eqx.filter_jit
    def run(net):
        def body(carry, _):
            n, s = carry
            ones = jnp.ones(n.depth, data.x.dtype)
            model = PrecisionPC(n, ones)
            f_before = model.energy(s, data)
            if infer:
                eq = equilibrium(model, data, config, state0=s)
                state, residual = eq.state, eq.residual
            else:
                state, residual = tuple(n.forward(data.x)[1:-1]), jnp.zeros((), data.x.dtype)
            f_e = model.energy(state, data)
            g = model.parameter_gradient(state, data)
            gnorm = jnp.sqrt(sum(jnp.sum(v**2) for v in jax.tree.leaves(g)))
            new = jax.tree.map(lambda w, v: w - sign * lr * v, n, g)
            f_m = PrecisionPC(new, ones).energy(state, data)
            loss, lgrad = bp_loss_and_gradient_norm(n, data.x, data.y)
            return (new, state), jnp.stack([f_before, f_e, f_m, gnorm, loss, lgrad, residual])

        s0 = tuple(net.forward(data.x)[1:-1])
        return jax.lax.scan(body, (net, s0), None, length=steps)[1]

    return np.asarray(run(net))


def _rank_one_optimum(y) -> float:
    """Eckart–Young: when ``y = T x + c`` exactly, the least BP loss ½Σ‖ŷ − y‖² of an affine map whose linear part
    has rank 1 is ½ Σ_{i≥2} σ_i² of the centred targets (numpy SVD, independent of the library)."""
    y = np.asarray(y)
    s = np.linalg.svd(y - y.mean(0), compute_uv=False)
    return 0.5 * float(np.sum(s[1:] ** 2))


def _em_problem(student, teacher, activation, n_samples, key):
    kt, ks, kx = jax.random.split(key, 3)
    if activation == "linear":  # an affine teacher of full rank: the student's one hidden unit cannot fit it
        teach = init_network((teacher[0], teacher[-1]), key=kt, activation="linear", scheme="lecun", bias_scale=0.3, dtype=jnp.float64)
    else:
        teach = init_network(teacher, key=kt, activation="tanh", scheme="lecun", gain=2.0, dtype=jnp.float64)
    x = draws.uniform(kx, (n_samples, teacher[0]), jnp.float64, -1, 1)
    net = init_network(student, key=ks, activation=activation, bias_scale=0.1, dtype=jnp.float64)
    return net, Data(x, teach(x))


def _max_rise(rec) -> float:
    """The largest rise of F over the sequence of E- and M-half-steps, relative to F at the start (NaN if not finite)."""
    seq = rec[:, :3].ravel()
    if not np.all(np.isfinite(seq)):
        return np.nan
    return float(np.max(np.maximum(np.diff(seq), 0.0)) / max(abs(seq[0]), 1e-300))


@register_check(
    "pc_em_critical_point",
    family="pc",
    statement="PC learning with prospective configuration (E: relax, M: weight step) never raises F (rel. rise <= 1e-10); on a tanh regression |dF/dtheta| at equilibrium falls >= 100x; on a linear bottleneck regression it ends at BP's critical point: |grad L| falls >= 1e4x and L equals the Eckart-Young optimum > 0 (rel. <= 1e-8)",
    theory="theory/pc_em_critical_point.md",
    quick={},
    full={"steps": 3000},
)
def pc_em_critical_point(*, student=(3, 3, 2), teacher=(3, 8, 2), bottleneck=(3, 1, 2), n_samples=16, seed=0, lr=0.05, steps=300, rise_tol=1e-10,
                         fall_min=100.0, bp_fall_min=1e4, optimum_tol=1e-8, ascent=False, infer=True):
    """Two teacher–student regressions the student cannot fit, full-batch EM with warm-started inference (THEOREM,
    steady at max|dF/dx| <= 1e-9): a tanh ``student`` on a wider tanh ``teacher``, and a linear ``bottleneck`` (one
    hidden unit) on an affine teacher of full rank, whose BP optimum is known in closed form (Eckart–Young).
    ``ascent=True`` flips the M-step and ``infer=False`` skips the E-step (the must-fail twins)."""
    for name, sizes in (("student", student), ("bottleneck", bottleneck)):
        if len(sizes) < 3 or (sizes[0], sizes[-1]) != (teacher[0], teacher[-1]):
            raise ConfigError(f"pc_em_critical_point: {name}={tuple(sizes)} needs a hidden layer and the teacher's input and output widths "
                              f"({teacher[0]}, {teacher[-1]}), teacher={tuple(teacher)}")
    config = CHECK.replace(max_steps=4000, t1=1e3)
    k_tanh, k_lin = jax.random.split(jax.random.key(seed))
    problems = {"tanh": _em_problem(student, teacher, "tanh", n_samples, k_tanh), "linear": _em_problem(bottleneck, teacher, "linear", n_samples, k_lin)}
    recs = {name: _em_run(net, data, lr, steps, config, ascent, infer) for name, (net, data) in problems.items()}
    optimum = _rank_one_optimum(problems["linear"][1].y)
    names = list(recs)
    stack = np.stack([recs[n] for n in names])  # (problem, step, quantity)
    ds = xr.Dataset(
        {var: (("problem", "step"), stack[:, :, i]) for i, var in ((1, "energy"), (3, "energy_grad_norm"), (4, "bp_loss"), (5, "bp_grad_norm"), (6, "residual"))},
        coords={"problem": names, "step": np.arange(steps)},
        attrs={"rank_one_optimum": optimum},
    )
    tanh, lin = recs["tanh"], recs["linear"]
    verdict = Verdict.from_criteria(
        max_relative_energy_rise=at_most(max(_max_rise(r) for r in recs.values()), rise_tol),
        energy_grad_fall=at_least(tanh[0, 3] / tanh[-1, 3], fall_min),
        bottleneck_bp_grad_fall=at_least(lin[0, 5] / lin[-1, 5], bp_fall_min),
        bottleneck_loss_over_optimum_error=at_most(abs(lin[-1, 4] / optimum - 1.0), optimum_tol),
        bottleneck_optimum=reported(optimum),
        tanh_bp_grad_fall=reported(tanh[0, 5] / tanh[-1, 5]),
        tanh_final_energy_over_loss=reported(tanh[-1, 1] / tanh[-1, 4]),
        max_residual=reported(np.max(stack[:, :, 6])),
    )
    return ds, verdict


def _bounded_lsq(net, x0, y):
    """The minimiser of E over x ≥ 0 for a linear network, per sample, by scipy's bounded least squares (BVLS):
    E = ½‖A z − c‖² with z the stacked hidden rates (independent of the flow and of the model's code)."""
    from scipy.optimize import lsq_linear

    ws, bs = [np.asarray(w) for w in net.weights], [np.asarray(b) for b in net.biases]
    hidden = [w.shape[0] for w in ws[:-1]]
    offs = np.concatenate([[0], np.cumsum(hidden)])
    out = []
    for xs, ys in zip(np.asarray(x0), np.asarray(y)):
        rows, rhs = [], []
        for l, (w, b) in enumerate(zip(ws, bs), start=1):
            a = np.zeros((w.shape[0], offs[-1]))
            if l < len(ws):
                a[:, offs[l - 1] : offs[l]] = np.eye(w.shape[0])
            if l > 1:
                a[:, offs[l - 2] : offs[l - 1]] -= w
            c = b + (w @ xs if l == 1 else 0.0) - (ys if l == len(ws) else 0.0)
            rows.append(a)
            rhs.append(c)
        sol = lsq_linear(np.vstack(rows), np.concatenate(rhs), bounds=(0.0, np.inf), method="bvls", tol=1e-15)
        out.append(sol.x)
    z = np.stack(out)
    return tuple(z[:, offs[k] : offs[k + 1]] for k in range(len(hidden)))


@register_check(
    "pc_positive_kkt",
    family="pc",
    statement="the projected flow of PC with non-negative rates (B = W) never raises E, dE/dt <= -|dx/dt|^2, and stops at the KKT point of min_{x>=0} E (complementarity residual <= 1e-8; = bounded least squares to 1e-8)",
    theory="theory/pc_positive.md",
    quick={"seeds": (0,)},
    full={"seeds": (0, 1, 2, 3, 4), "random_feedback": True},
)
def pc_positive_kkt(*, sizes=(6, 8, 8, 4), batch=4, seeds=(0, 1), n_times=101, t_end=40.0, target_scale=3.0, rise_tol=1e-8,
                    descent_tol=1e-10, kkt_tol=1e-8, qp_tol=1e-8, min_active=0.05, random_feedback=False, model_cls=None):
    """Linear network (rates = states), output clamped to a large random target so that units reach the bound.
    Relax the projected flow with B = W (THEOREM_STRICT tolerances), record E and the descent inequality on a
    time grid, and compare the end state with scipy's bounded least squares. With ``random_feedback`` (full run) a
    fixed random B is relaxed too and its complementarity residual reported: the flow is then no gradient flow and
    need not settle."""
    from ..config import THEOREM_STRICT
    from ..models.pc_positive import PositivePC, kkt_residuals

    cls = PositivePC if model_cls is None else model_cls
    cfg = THEOREM_STRICT.replace(throw=False, t1=t_end * 5, max_steps=50_000)
    ts = jnp.linspace(0.0, t_end, n_times)
    rises, descent, comp, comp_b, conv_b, qp, active, energies = [], [], [], [], [], [], [], []
    for seed in seeds:
        k_net, k_x, k_y, k_b = jax.random.split(jax.random.key(seed), 4)
        net = init_network(sizes, key=k_net, activation="linear", bias_scale=0.3, dtype=jnp.float64)
        x = draws.normal(k_x, (batch, sizes[0]), jnp.float64)
        y = target_scale * draws.normal(k_y, (batch, sizes[-1]), jnp.float64)
        model, data = cls(net), Data(x, y)
        eq = equilibrium(model, data, cfg, save_ts=ts)
        ok = np.isfinite(np.asarray(eq.ts))
        ys = jax.tree.map(lambda a, ok=ok: a[ok], eq.ys)
        energy = eqx.Partial(lambda s, m, d: m.energy(s, d), m=model, d=data)
        e = np.asarray(jax.vmap(energy)(ys))
        grad = jax.vmap(jax.grad(energy))(ys)
        flow = jax.vmap(eqx.Partial(lambda s, m, d: m.vector_field(0.0, s, d), m=model, d=data))(ys)
        dot = sum(jnp.sum(g * f, axis=tuple(range(1, g.ndim))) for g, f in zip(grad, flow))
        fsq = sum(jnp.sum(f**2, axis=tuple(range(1, f.ndim))) for f in flow)
        gsq = sum(jnp.sum(g**2, axis=tuple(range(1, g.ndim))) for g in grad)
        descent.append(float(jnp.max((dot + fsq) / jnp.maximum(gsq, 1e-300))))
        energies.append(np.pad(e, (0, n_times - e.size), constant_values=np.nan))
        rises.append(float(np.max(np.maximum(np.diff(e), 0.0)) / abs(e[0])))
        k = kkt_residuals(model, eq.state, data)
        comp.append(float(k["complementarity"]))
        active.append(float(k["active_fraction"]))
        qp.append(_rel(eq.state, _bounded_lsq(net, x, y)))
        if not random_feedback:
            comp_b.append(np.nan)
            conv_b.append(np.nan)
            continue
        feedback = tuple(jnp.sqrt(2.0 / sum(w.shape)) * draws.normal(kk, w.shape, w.dtype) for kk, w in zip(jax.random.split(k_b, net.depth - 1), net.weights[1:]))
        model_b = PositivePC(net, feedback) if model_cls is None else cls(net, feedback)
        eq_b = equilibrium(model_b, data, cfg)
        comp_b.append(float(kkt_residuals(model_b, eq_b.state, data)["complementarity"]))
        conv_b.append(float(int(eq_b.status) == 0))
    ds = xr.Dataset(
        {"energy": (("seed", "time"), np.stack(energies)), "complementarity": ("seed", comp), "complementarity_random_feedback": ("seed", comp_b),
         "qp_error": ("seed", qp), "active_fraction": ("seed", active), "descent_gap": ("seed", descent)},
        coords={"seed": list(seeds), "time": np.asarray(ts)},
    )
    verdict = Verdict.from_criteria(
        max_relative_energy_rise=at_most(max(rises), rise_tol),
        descent_inequality=at_most(max(descent), descent_tol),
        complementarity=at_most(max(comp), kkt_tol),
        bounded_lsq_error=at_most(max(qp), qp_tol),
        min_active_fraction=at_least(min(active), min_active),
        complementarity_random_feedback=reported(max(comp_b)),
        random_feedback_converged=reported(min(conv_b)),
    )
    return ds, verdict
