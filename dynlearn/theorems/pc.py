r"""Theorem checks for predictive coding (float64).

* ``pc_energy_descent`` — the inference flow is a gradient flow, so :math:`dE/dt = -\|\nabla E\|^2 \le 0`
  (worst case over seeds and saved times, 5-point differences of E against autodiff's gradient of E).
* ``pc_fixed_point`` — the clamped-output relaxation reaches an isolated, linearly stable equilibrium,
  the same one from several initial states, and it satisfies PC's equilibrium condition written out from the
  network's matrices (so a model with a wrong energy, stable and unique as it may be, fails).
* ``pc_feedforward`` — with the output free, the equilibrium is the feedforward pass and :math:`E = 0`.
* ``pc_bp_limit`` — with the output nudged by :math:`\gamma`, the update :math:`\partial E/\partial W` divided by
  γ tends to :math:`\nabla_W L` (BP) with error :math:`O(\gamma)` (Whittington & Bogacz 2017).
* ``pc_fixed_prediction_exact`` — under the fixed-prediction assumption the equilibrium errors are
  exactly backprop's deltas (Millidge, Tschantz & Buckley 2022).

Every relaxation is :func:`dynlearn.models.equilibrium` with the :data:`dynlearn.config.THEOREM` preset
(steady at max|dE/dx| <= 1e-9). Every check takes the model class as an argument, so a test can hand it a
deliberately broken model and see it fail. See ``theory/pc_*.md`` for statements, assumptions and tolerances.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ..analysis import bp_deltas, bp_gradient, compare_per_layer, energy_increase, loglog_slope, relative_error, spectrum
from ..config import THEOREM
from ..dynamics import CONVERGED, max_norm, model_flow
from ..models.base import Data, equilibrium
from ..models.pc import FixedPredictionPC, PredictiveCoding, fixed_prediction_update, pc_update
from ..networks import init_network
from .criteria import at_least, at_most, below, reported, within
from .registry import Verdict, register_check
from .. import draws

#: a check's relaxation: THEOREM, returning unconverged results (a broken model must fail, not raise)
CHECK = THEOREM.replace(throw=False)
#: the same, finished by Newton's method to max|dE/dx| <= 1e-12 (POLISHED.polish_tol)
POLISHED = CHECK.replace(polish=True)


def _problem(sizes, batch, seed, activation="tanh", gain=1.0):
    """A random float64 network with random inputs and targets."""
    k_net, k_x, k_y = jax.random.split(jax.random.key(seed), 3)
    net = init_network(sizes, key=k_net, activation=activation, gain=gain, bias_scale=0.1, dtype=jnp.float64)
    x = draws.normal(k_x, (batch, sizes[0]), jnp.float64)
    y = draws.normal(k_y, (batch, sizes[-1]), jnp.float64)
    return net, x, y


def _random_state(model, data, key, scale=1.0):
    ref = model.init_state(data)
    keys = jax.random.split(key, len(ref))
    return tuple(scale * draws.normal(k, s.shape, s.dtype) for k, s in zip(keys, ref))


def _distance(a, b):
    return max_norm(jax.tree.map(lambda u, v: u - v, a, b))


def _saved(eq, values):
    """``values`` along a saved trajectory, NaN at the times after the steady state (diffrax saves them as inf)."""
    v = np.array(values)
    v[~np.isfinite(np.asarray(eq.ts))] = np.nan
    return v


def _five_point(e, dt, k=1):
    """``(indices, dE/dt)``: the 5-point central difference with spacing ``k`` samples along the last axis (error
    ``(k dt)^4/30 |E^(5)|``)."""
    i = np.arange(2 * k, e.shape[-1] - 2 * k)
    return i, (e[..., i - 2 * k] - 8 * e[..., i - k] + 8 * e[..., i + k] - e[..., i + 2 * k]) / (12 * k * dt)


def _identity_error(energies, grad_sq, dt):
    """Worst relative error of dE/dt = -|dE/dx|^2 over seeds and saved times (5-point central differences of E, where
    |dE/dx|^2 > 1e-6 of its largest value), and the Richardson estimate of the stencil's own error there,
    ``|D(2 dt) - D(dt)| / 15`` relative to |dE/dx|^2 (the part of the first figure that is discretisation)."""
    i1, d1 = _five_point(energies, dt)
    i2, d2 = _five_point(energies, dt, 2)
    g1, g2 = grad_sq[:, i1], grad_sq[:, i2]
    with np.errstate(invalid="ignore"):
        keep1 = np.isfinite(d1) & np.isfinite(g1) & (g1 > 1e-6 * np.nanmax(grad_sq))
        keep2 = np.isfinite(d2) & np.isfinite(g2) & (g2 > 1e-6 * np.nanmax(grad_sq))
        if not (keep1.any() and keep2.any()):
            return np.nan, np.nan
        err = np.abs(d1 + g1)[keep1] / g1[keep1]
        trunc = (np.abs(d2 - d1[:, np.isin(i1, i2)]) / 15)[keep2] / g2[keep2]
    return float(err.max()), float(trunc.max())


@register_check(
    "pc_energy_descent",
    family="pc",
    statement="E never increases along the PC inference flow and dE/dt = -|dE/dx|^2 at every saved time (worst relative error <= 5e-3)",
    theory="theory/pc_energy_descent.md",
    quick={"seeds": (0, 1, 2)},
    full={"seeds": tuple(range(10)), "n_times": 1601},
)
def pc_energy_descent(
    *, sizes=(5, 10, 10, 3), batch=4, seeds=(0, 1, 2), n_times=801, t_end=40.0, rel_tol=1e-8, identity_tol=5e-3, model_cls=PredictiveCoding
):
    """Relax from random states (random nets and data, output clamped); record E on a dense time grid.

    Measured: the largest rise of E between saved times relative to E(0), and the worst (over seeds and saved times)
    relative error of the identity dE/dt = −|∂E/∂x|² (∂E/∂x by autodiff of the energy, not the model's field;
    dE/dt by 5-point central differences of E). At dt = 0.05 the stencil's truncation error (dt⁴/30)|E⁽⁵⁾| is
    ≲ 2e-4 of |∂E/∂x|² (its Richardson estimate is reported) and the solver's rtol 1e-10 adds less: 5e-3 is ten
    times the measured worst case and eight times below a flow 4% too fast (whose error is 4% at every time).
    """
    ts = jnp.linspace(0.0, t_end, n_times)
    energies, grad_sq, rises, converged = [], [], [], []
    for seed in seeds:
        net, x, y = _problem(sizes, batch, seed)
        model, data = model_cls(net, "clamped"), Data(x, y)
        s0 = _random_state(model, data, jax.random.key(1000 + seed))
        eq = equilibrium(model, data, CHECK, state0=s0, save_ts=ts)
        e = _saved(eq, jax.vmap(lambda s: model.energy(s, data))(eq.ys))
        g = _saved(eq, jax.vmap(lambda s: sum(jnp.sum(v**2) for v in jax.tree.leaves(jax.grad(model.energy)(s, data))))(eq.ys))
        energies.append(e)
        grad_sq.append(g)
        rises.append(energy_increase(e[np.isfinite(e)], scale=abs(e[0])))
        converged.append(int(eq.status) == CONVERGED)
    energies, grad_sq = np.stack(energies), np.stack(grad_sq)
    identity_err, truncation = _identity_error(energies, grad_sq, float(ts[1] - ts[0]))
    ds = xr.Dataset(
        {
            "energy": (("seed", "time"), energies),
            "grad_norm_sq": (("seed", "time"), grad_sq),
            "max_rise": ("seed", np.asarray(rises)),
        },
        coords={"seed": list(seeds), "time": np.asarray(ts)},
    )
    verdict = Verdict.from_criteria(
        max_relative_rise=at_most(max(rises), rel_tol),
        all_converged=at_least(float(all(converged)), 1.0),
        dEdt_identity_error=at_most(identity_err, identity_tol),
        fd_truncation_estimate=reported(truncation),
    )
    return ds, verdict


def _stationarity_error(net, x, y, state) -> float:
    r"""Relative violation of the clamped PC equilibrium condition, written out from the network's matrices (not the
    model's energy or field): :math:`\varepsilon_l = \varphi'(x_l)\odot W_{l+1}^\top\varepsilon_{l+1}` for every free
    layer, :math:`\varepsilon_l = x_l - W_l\varphi_{l-1}(x_{l-1}) - b_l` (:math:`\varphi_0` = id, :math:`x_L = y`);
    max-norm of the violation over that of the errors."""
    xs = [x, *state, y]
    phi = [xs[0]] + [net.phi(a) for a in xs[1:]]
    eps = [xs[l] - (phi[l - 1] @ net.weights[l - 1].T + net.biases[l - 1]) for l in range(1, len(xs))]
    dphi = [jax.jvp(net.phi, (a,), (jnp.ones_like(a),))[1] for a in xs[1:-1]]
    gap = max_norm([eps[l - 1] - dphi[l - 1] * (eps[l] @ net.weights[l]) for l in range(1, len(xs) - 1)])
    return float(gap / max_norm(eps))


@register_check(
    "pc_fixed_point",
    family="pc",
    statement="the clamped PC relaxation reaches a stable equilibrium (residual <= 1e-8, Re eig < 0), the same from 5 initial states, where eps_l = phi'(x_l) W_{l+1}^T eps_{l+1}",
    theory="theory/pc_fixed_point.md",
    quick={},
    full={"n_starts": 20},
)
def pc_fixed_point(
    *,
    sizes=(5, 10, 10, 3),
    batch=4,
    seed=0,
    n_starts=5,
    init_scale=1.0,
    residual_tol=1e-8,
    polished_tol=POLISHED.polish_tol,
    spread_tol=1e-7,
    condition_tol=1e-10,
    model_cls=PredictiveCoding,
):
    """Relax from the feedforward pass and from ``n_starts`` random states; polish the first; compare. The polished
    state must also satisfy PC's equilibrium condition written out independently of the model (``condition_tol``:
    relative to the errors; the polished residual is <= 1e-12, a model whose energy or field is wrong misses it by O(1)).
    """
    net, x, y = _problem(sizes, batch, seed)
    model, data = model_cls(net, "clamped"), Data(x, y)
    eq = equilibrium(model, data, CHECK)
    ok_relax = int(eq.status) == CONVERGED
    finals = []
    for i in range(n_starts):
        e = equilibrium(model, data, CHECK, state0=_random_state(model, data, jax.random.key(seed * 7919 + i), init_scale))
        ok_relax &= int(e.status) == CONVERGED
        finals.append(e.state)
    spread = max(float(_distance(f, eq.state)) for f in finals)
    if ok_relax:  # Newton from the relaxed state (the flow stops at once: it starts steady)
        pol = equilibrium(model, data, POLISHED, state0=eq.state)
        polished_residual = float(pol.residual)
        ev = spectrum(model_flow, pol.state, (model, data))
        condition = _stationarity_error(net, x, y, pol.state)
    else:  # NaN fails the criteria
        polished_residual, ev, condition = np.nan, np.full(2, np.nan + 0j), np.nan
    ds = xr.Dataset(
        {"eig_real": ("mode", np.real(ev)), "eig_imag": ("mode", np.imag(ev))},
        coords={"mode": np.arange(ev.size)},
        attrs={"relaxed_residual": float(eq.residual), "polished_residual": polished_residual, "spread": spread, "equilibrium_condition": condition},
    )
    verdict = Verdict.from_criteria(
        relaxed_residual=at_most(eq.residual, residual_tol),
        polished_residual=at_most(polished_residual, polished_tol),
        max_real_eigenvalue=below(np.max(np.real(ev)), 0.0),
        start_spread=at_most(spread, spread_tol),
        equilibrium_condition=at_most(condition, condition_tol),
    )
    return ds, verdict


@register_check(
    "pc_feedforward",
    family="pc",
    statement="with the output free, the PC equilibrium is the feedforward pass and E = 0",
    theory="theory/pc_feedforward.md",
    quick={},
    full={"seeds": tuple(range(10))},
)
def pc_feedforward(
    *, sizes=(5, 10, 10, 3), batch=4, seeds=(0, 1, 2), n_times=101, t_end=60.0, distance_tol=1e-10, energy_tol=1e-20, model_cls=PredictiveCoding
):
    """Relax the free-output network from random states, then polish; distance to the feedforward pass and energy."""
    ts = jnp.linspace(0.0, t_end, n_times)
    dists, energies, curves = [], [], []
    for seed in seeds:
        net, x, _ = _problem(sizes, batch, seed)
        model, data = model_cls(net, "free"), Data(x)
        s0 = _random_state(model, data, jax.random.key(500 + seed))
        eq = equilibrium(model, data, POLISHED, state0=s0, save_ts=ts)
        ff = tuple(net.forward(x)[1:])
        curves.append(_saved(eq, jax.vmap(lambda s: _distance(s, ff))(eq.ys)))
        dists.append(float(_distance(eq.state, ff)))
        energies.append(float(model.energy(eq.state, data)))
    ds = xr.Dataset(
        {"distance_to_ff": (("seed", "time"), np.stack(curves)), "final_distance": ("seed", dists), "final_energy": ("seed", energies)},
        coords={"seed": list(seeds), "time": np.asarray(ts)},
    )
    verdict = Verdict.from_criteria(
        max_distance_to_feedforward=at_most(max(dists), distance_tol),
        max_energy=at_most(max(energies), energy_tol),
    )
    return ds, verdict


@register_check(
    "pc_bp_limit",
    family="pc",
    statement="PC's update with the output nudged by gamma, divided by gamma, tends to the BP gradient with error O(gamma)",
    theory="theory/pc_bp_limit.md",
    quick={"gammas": tuple(np.logspace(-4, -1, 7))},
    full={"gammas": tuple(np.logspace(-4, -1, 13)), "seed": 1},
)
def pc_bp_limit(
    *,
    sizes=(5, 10, 10, 3),
    batch=4,
    seed=0,
    gammas=tuple(np.logspace(-4, -1, 7)),
    slope_tol=0.15,
    cos_min=0.9999,
    residual_tol=POLISHED.polish_tol,
    model_cls=PredictiveCoding,
):
    """Per layer and nudge γ (``gammas``, the sweep of ``Data.nudge``): cosine and relative error of
    ``pc_update / γ`` (descent sign) against ∂L/∂W (BP, same network)."""
    net, x, y = _problem(sizes, batch, seed)
    model = model_cls(net, "nudged")
    reference = bp_gradient(net, x, y)
    def update_at(gamma):
        data = Data(x, y, gamma)
        eq = equilibrium(model, data, POLISHED)
        return jax.tree.map(lambda u: u / gamma, pc_update(model, data, state=eq.state)), eq.residual

    return nudge_limit(gammas, update_at, reference, net.depth, cos_min=cos_min, slope_tol=slope_tol, residual_tol=residual_tol)


@register_check(
    "pc_fixed_prediction_exact",
    family="pc",
    statement="under the fixed-prediction assumption PC's equilibrium errors equal BP's deltas (rel. error <= 1e-10)",
    theory="theory/pc_fixed_prediction_exact.md",
    quick={},
    full={"seeds": tuple(range(10))},
)
def pc_fixed_prediction_exact(*, sizes=(5, 10, 10, 3), batch=4, seeds=(0, 1), n_times=81, t_end=40.0, tol=1e-10, model_cls=FixedPredictionPC):
    """Relax the fixed-prediction dynamics (large output error: the target is random), polish, compare to autodiff."""
    ts = jnp.linspace(0.0, t_end, n_times)
    err_eps, err_w, curves = [], [], []
    for seed in seeds:
        net, x, y = _problem(sizes, batch, seed)
        model, data = model_cls(net), Data(x, y)
        eq = equilibrium(model, data, POLISHED, save_ts=ts)
        curves.append(_saved(eq, jax.vmap(lambda s: max_norm(model.vector_field(0.0, s, data)))(eq.ys)))
        eps = model.errors(eq.state, data)
        err_eps.append([float(relative_error(e, -d)) for e, d in zip(eps, bp_deltas(net, x, y))])
        cmp = compare_per_layer(fixed_prediction_update(model, eq.state, data), bp_gradient(net, x, y))
        err_w.append(np.asarray(cmp["relative_error"]))
    err_eps, err_w = np.asarray(err_eps), np.asarray(err_w)
    ds = xr.Dataset(
        {
            "error_vs_delta": (("seed", "layer"), err_eps),
            "update_vs_bp": (("seed", "layer"), err_w),
            "residual": (("seed", "time"), np.stack(curves)),
        },
        coords={"seed": list(seeds), "layer": np.arange(1, len(sizes)), "time": np.asarray(ts)},
    )
    verdict = Verdict.from_criteria(
        max_error_vs_delta=at_most(err_eps.max(), tol),
        max_update_vs_bp=at_most(err_w.max(), tol),
    )
    return ds, verdict


def nudge_limit(gammas, update_at, reference, depth: int, *, cos_min: float, slope_tol: float, residual_tol: float):
    """The small-nudge limit of an update: ``update_at(gamma) -> (update / gamma, residual)`` against ``reference`` per
    layer, for each nudge in ``gammas``: ``(Dataset, Verdict)`` with the cosine at the smallest nudge, the worst
    layer's log-log slope of the relative error (1 for an O(gamma) error) and the worst relaxation residual."""
    cos, rel, res = [], [], []
    for gamma in gammas:
        update, residual = update_at(gamma)
        cmp = compare_per_layer(update, reference)
        cos.append(np.asarray(cmp["cosine"]))
        rel.append(np.asarray(cmp["relative_error"]))
        res.append(float(residual))
    cos, rel, gammas = np.stack(cos), np.stack(rel), np.asarray(gammas)
    try:
        slopes = np.array([loglog_slope(gammas, rel[:, i]) for i in range(depth)])
    except ValueError:
        slopes = np.full(depth, np.nan)
    ds = xr.Dataset(
        {
            "cosine": (("gamma", "layer"), cos),
            "relative_error": (("gamma", "layer"), rel),
            "residual": ("gamma", np.asarray(res)),
            "slope": ("layer", slopes),
        },
        coords={"gamma": gammas, "layer": np.arange(1, depth + 1)},
    )
    verdict = Verdict.from_criteria(
        min_cosine_at_smallest_gamma=at_least(np.min(cos[np.argmin(gammas)]), cos_min),
        worst_slope=within(slopes[np.argmax(np.abs(slopes - 1))], 1.0, slope_tol),
        max_residual=at_most(max(res), residual_tol),
    )
    return ds, verdict
