r"""Theorem checks for dendritic cortical microcircuits (Sacramento et al. 2018) and Latent Equilibrium
(Haider et al. 2021). Each check is float64 and returns ``(xarray.Dataset, Verdict)``.

* ``mc_sps_exact`` — the closed-form self-predicting state silences every apical dendrite.
* ``mc_sps_learned`` — the lateral plasticity (Eqs. 8-9) learns the SPS from random lateral weights.
* ``mc_bp_alignment`` — in the SPS with weak feedback, hidden updates approach BP (``B = W^T``) or FA
  (fixed random ``B``).
* ``mc_apical_error`` — the apical potential carries the top-down projected error to O(lambda).
* ``le_instantaneous`` — prospective (LE) rates track the feedforward output instantly; standard rates lag
  by about depth x tau.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ..analysis import bp_gradient, cosine_similarity, loglog_slope, relative_error
from ..dynamics import model_flow, simulate
from ..models.latent_equilibrium import LayeredLE, StepInput
from ..models.microcircuit import Microcircuit, PatternStream, Plasticity, preset, simulate_learning
from ..networks import init_network
from .registry import Verdict, register_check

RELAX = dict(tol=1e-10, rtol=1e-10, atol=1e-12, t1=1e5, max_steps=20_000)
N_SAVE = 51
QUICK_SIZES = (4, 6, 5, 3)
QUICK_INPUTS = 8


def relax_microcircuit(model: Microcircuit, x, y=None, nudge=0.0, *, state0=None, exact: bool = True, throw: bool = True):
    """Relax (and with ``exact`` Newton-polish) a microcircuit, saving ``N_SAVE`` points over 50 tau_eff.

    All checks call this one function with array-valued ``y`` and ``nudge`` so that they share one compiled
    solve per model class and shape (``y=None`` becomes a zero target with ``nudge = 0``).
    """
    if y is None:
        y, nudge = _no_target(model, x)
    save_ts = jnp.linspace(0.0, 50.0, N_SAVE) * model.params.tau_hidden
    return model.equilibrium(x, y, jnp.asarray(nudge, x.dtype), exact=exact, state0=state0, save_ts=save_ts, throw=throw, **RELAX)


def _no_target(model, x):
    return jnp.zeros(x.shape[:-1] + (model.sizes[-1],), x.dtype), jnp.asarray(0.0, x.dtype)


def _max_abs(arrays) -> float:
    return max(float(jnp.max(jnp.abs(a))) for a in arrays)


# ----------------------------------------------------------------------------- mc_sps_exact


@register_check(
    "mc_sps_exact",
    family="microcircuit",
    statement="In the closed-form self-predicting state with no target, every apical potential relaxes to 0: max|v_A| < 1e-8.",
    theory="theory/mc_sps_exact.md",
    quick=dict(sizes=(5, 8, 6, 4), n_inputs=8),
    full=dict(sizes=(20, 30, 25, 10), n_inputs=64),
)
def mc_sps_exact(
    *,
    sizes=QUICK_SIZES,
    n_inputs: int = QUICK_INPUTS,
    presets=("bern", "sacramento2018"),
    seed: int = 0,
    tol: float = 1e-8,
    model_cls=Microcircuit,
    initialiser=None,
):
    """Relax from random potentials with the SPS weights (random fixed top-down) and no target.

    ``initialiser(model) -> model`` replaces :meth:`Microcircuit.self_predicting` (to show the check fails
    with a wrong one).
    """
    key = jax.random.key(seed)
    kx, km = jax.random.split(key)
    x = jax.random.uniform(kx, (n_inputs, sizes[0]), minval=-1.0, maxval=1.0)
    rows, curves, contrast, times = [], [], [], None
    for name in presets:
        params = preset(name).as_arrays()
        random = model_cls.create(sizes, key=km, params=params, top_down="random", lateral="random")
        model = random.self_predicting() if initialiser is None else initialiser(random)
        y, nudge = _no_target(model, x)
        tau = float(params.tau_hidden)
        state0 = model.init_state(x)
        leaves, treedef = jax.tree.flatten(state0)
        noise = [jax.random.normal(k, a.shape, a.dtype) for k, a in zip(jax.random.split(kx, len(leaves)), leaves)]
        state0 = jax.tree.unflatten(treedef, noise)  # relax from random potentials
        eq = relax_microcircuit(model, x, y, nudge, state0=state0)
        va = model.apical(eq.state, x, 0.0, y, nudge)
        rows.append((_max_abs(va), float(eq.residual), float(eq.time) / tau))
        # the apical potentials along the relaxation (times after the steady state are inf: the final value holds)
        ts = np.asarray(eq.ts)
        curve = []
        for i in range(N_SAVE):
            if np.isfinite(ts[i]):
                st = jax.tree.map(lambda a: a[i], eq.ys)
                curve.append(_max_abs(model.apical(st, x, 0.0, y, nudge)))
            else:
                curve.append(rows[-1][0])
        curves.append(curve)
        times = np.linspace(0.0, 50.0, N_SAVE)
        eq_r = relax_microcircuit(random, x, y, nudge, exact=False)
        contrast.append(_max_abs(random.apical(eq_r.state, x, 0.0, y, nudge)))
    rows = np.array(rows)
    ds = xr.Dataset(
        {
            "max_abs_apical": ("preset", rows[:, 0]),
            "residual": ("preset", rows[:, 1]),
            "t_relax_over_tau": ("preset", rows[:, 2]),
            "max_abs_apical_random_lateral": ("preset", np.array(contrast)),
            "apical_during_relaxation": (("preset", "time"), np.maximum(np.array(curves), 1e-17)),
        },
        coords={"preset": list(presets), "time": times},
        attrs={"time_unit": "tau_eff of the hidden pyramids"},
    )
    worst = float(rows[:, 0].max())
    verdict = Verdict.from_criteria(
        max_abs_apical=(worst, f"< {tol:g}", worst < tol),
        max_abs_apical_random_lateral=(min(contrast), "> 1e-3 (the measure sees a non-SPS circuit)", min(contrast) > 1e-3),
    )
    return ds, verdict


# ----------------------------------------------------------------------------- weak-feedback sweep (shared)


def _loss_wrt_rate(net, k, r_k, y):
    """The MSE loss of the effective network as a function of the layer-``k`` rate (k = 1..L-1)."""
    h = r_k
    for l in range(k + 1, net.depth + 1):
        h = net.weights[l - 1] @ h if h.ndim == 1 else h @ net.weights[l - 1].T
        h = h + net.biases[l - 1]
        if l < net.depth:
            h = net.phi(h)
    return 0.5 * jnp.sum((h - y) ** 2)


def fa_update(net, feedback, x, y):
    r"""The feedback-alignment update of the network ``net`` with feedback matrices ``feedback[k-1]`` (``n_k x n_{k+1}``):
    :math:`\delta_L = y - \hat x_L`, :math:`\delta_k = \varphi'(\hat x_k)\odot B_k\delta_{k+1}`, :math:`\Delta W_k = \delta_k\varphi_{k-1}(\hat x_{k-1})^\top`
    (Lillicrap et al. 2016, Nat. Commun. 7:13276); summed over the batch."""
    xs = net.forward(x)
    deltas = [y - xs[-1]]
    for k in range(net.depth - 1, 0, -1):
        dphi = jax.vmap(jax.grad(lambda v: jnp.sum(net.phi(v))))(xs[k]) if xs[k].ndim == 2 else jax.grad(lambda v: jnp.sum(net.phi(v)))(xs[k])
        deltas.insert(0, dphi * (deltas[0] @ feedback[k - 1].T))
    return [jnp.einsum("bo,bi->oi", d, net.presynaptic(k, xs[k - 1])) for k, d in enumerate(deltas, start=1)]


@functools.lru_cache(maxsize=16)
def _feedback_sweep(sizes, lams, n_inputs, seed, top_down, model_cls, preset_name, model_transform):
    key = jax.random.key(seed)
    kx, ky, km = jax.random.split(key, 3)
    x = jax.random.uniform(kx, (n_inputs, sizes[0]), minval=-1.0, maxval=1.0)
    base = model_cls.create(sizes, key=km, params=preset(preset_name).as_arrays(), top_down=top_down, lateral="sps")
    y = base.effective_network()(x) + 0.5 * jax.random.normal(ky, (n_inputs, sizes[-1]))
    n = len(sizes) - 1
    out = {k: [] for k in ("cos_ref", "cos_out", "apical_rel", "apical_cos", "rel_ref")}
    for lam in lams:
        params = base.params.with_feedback(jnp.asarray(lam, dtype=x.dtype))
        model = eqx.tree_at(lambda m: m.params, base, params).self_predicting()
        if model_transform is not None:
            model = model_transform(model)
        nudge = jnp.asarray(1.0, x.dtype)
        eq = relax_microcircuit(model, x, y, nudge)
        rule = model.plasticity(eq.state, x, 0.0, y, nudge)
        net = model.effective_network()
        if top_down == "transpose":
            ref = [-g for g in bp_gradient(net, x, y, "mse").weights]
        else:
            ref = fa_update(net, model.top_down, x, y)
        out["cos_ref"].append([float(cosine_similarity(rule.weights[k], ref[k])) for k in range(n - 1)])
        out["rel_ref"].append(
            [float(relative_error(rule.weights[k] / jnp.linalg.norm(rule.weights[k]), ref[k] / jnp.linalg.norm(ref[k]))) for k in range(n - 1)]
        )
        out["cos_out"].append(float(cosine_similarity(rule.weights[-1], ref[-1])))
        # apical potentials vs the top-down projection of the rate change above, and vs -dL/dr_k
        va = model.apical(eq.state, x, 0.0, y, nudge)
        free = net.forward(x)[1:]
        kappa = (params.g_lk + params.g_D) / params.g_inter
        rel, cos = [], []
        for k in range(1, n):
            dr = model.phi(k + 1, eq.state[0][k]) - model.phi(k + 1, free[k])
            pred = kappa * (dr @ model.top_down[k - 1].T)
            rel.append(float(relative_error(va[k - 1], pred)))
            r_free = model.phi(k, free[k - 1])
            grad_r = jax.grad(lambda r: _loss_wrt_rate(net, k, r, y))(r_free)
            cos.append(float(cosine_similarity(va[k - 1], -grad_r)))
        out["apical_rel"].append(rel)
        out["apical_cos"].append(cos)
    return {k: np.array(v) for k, v in out.items()}


_SWEEP_QUICK = dict(sizes=QUICK_SIZES, lams=(0.01, 0.02, 0.05, 0.1, 0.2), n_inputs=QUICK_INPUTS)
_SWEEP_FULL = dict(sizes=(10, 20, 15, 5), lams=(0.003, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3), n_inputs=32)


@register_check(
    "mc_bp_alignment",
    family="microcircuit",
    statement=(
        "In the SPS with weak feedback (g_A = g_som = lambda g_B), hidden updates align with BP (B = W^T): cos > 0.99 at small "
        "lambda, the direction error falls as lambda^2 (fitted slope >= 1.5) and 1 - cos as lambda^4 (slope >= 3); with fixed random B "
        "they equal the FA update (cos > 0.99)."
    ),
    theory="theory/mc_bp_alignment.md",
    quick=_SWEEP_QUICK,
    full=_SWEEP_FULL,
)
def mc_bp_alignment(
    *,
    sizes=QUICK_SIZES,
    lams=(0.01, 0.02, 0.05, 0.1, 0.2),
    n_inputs: int = QUICK_INPUTS,
    seed: int = 0,
    preset_name: str = "bern",
    model_cls=Microcircuit,
    model_transform=None,
    min_cos: float = 0.99,
    min_slope: float = 1.5,
):
    sizes, lams = tuple(sizes), tuple(float(v) for v in lams)
    bp = _feedback_sweep(sizes, lams, n_inputs, seed, "transpose", model_cls, preset_name, model_transform)
    fa = _feedback_sweep(sizes, lams, n_inputs, seed, "random", model_cls, preset_name, model_transform)
    layers = np.arange(1, len(sizes) - 1)
    ds = xr.Dataset(
        {
            "cos_bp": (("lam", "layer"), bp["cos_ref"]),
            "cos_fa": (("lam", "layer"), fa["cos_ref"]),
            "one_minus_cos_bp": (("lam", "layer"), 1.0 - bp["cos_ref"]),
            "rel_err_bp": (("lam", "layer"), bp["rel_ref"]),
            "cos_bp_output": ("lam", bp["cos_out"]),
            "cos_fa_output": ("lam", fa["cos_out"]),
        },
        coords={"lam": np.array(lams), "layer": layers},
        attrs={"lam": "g_A/g_B = g_som/g_B", "layer": "hidden layer k (weights W_k into it)"},
    )
    i0 = int(np.argmin(lams))
    cos_bp = float(bp["cos_ref"][i0].min())
    cos_fa = float(fa["cos_ref"][i0].min())
    # fitted orders in lambda, for the worst hidden layer: the direction error ||dW/|dW| - g/|g||| (theory 2, because the
    # interneurons subtract the bottom-up part of the upper layer's change) and 1 - cos (theory 4 = twice that)
    slope_dir = float(min(loglog_slope(lams, bp["rel_ref"][:, j]) for j in range(len(layers))))
    slope_cos = float(min(loglog_slope(lams, np.maximum(1.0 - bp["cos_ref"][:, j], 1e-300)) for j in range(len(layers))))
    cos_out = float(min(bp["cos_out"][i0], fa["cos_out"][i0]))
    verdict = Verdict.from_criteria(
        cos_bp_min_hidden=(cos_bp, f"> {min_cos} at lambda = {lams[i0]:g}", cos_bp > min_cos),
        slope_direction_error=(slope_dir, f">= {min_slope} (theory: 2)", slope_dir >= min_slope),
        slope_one_minus_cos=(slope_cos, f">= {2 * min_slope} (theory: 4)", slope_cos >= 2 * min_slope),
        cos_fa_min_hidden=(cos_fa, f"> {min_cos} at lambda = {lams[i0]:g}", cos_fa > min_cos),
        cos_output=(cos_out, f"> {min_cos} at lambda = {lams[i0]:g} (BP and FA)", cos_out > min_cos),
    )
    return ds, verdict


@register_check(
    "mc_apical_error",
    family="microcircuit",
    statement=(
        "In the SPS with weak feedback, v_A,k = kappa B_k (r_{k+1} - r^-_{k+1}) (1 + O(lambda)) with kappa = (g_lk+g_D)/(g_lk+g_D+g_nI): "
        "the relative error is <= 0.05 at small lambda with log-log slope 1 +- 0.2, and v_A is aligned with the backpropagated error -dL/dr_k (cos > 0.99)."
    ),
    theory="theory/mc_apical_error.md",
    quick=_SWEEP_QUICK,
    full=_SWEEP_FULL,
)
def mc_apical_error(
    *,
    sizes=QUICK_SIZES,
    lams=(0.01, 0.02, 0.05, 0.1, 0.2),
    n_inputs: int = QUICK_INPUTS,
    seed: int = 0,
    preset_name: str = "bern",
    model_cls=Microcircuit,
    model_transform=None,
    max_rel: float = 0.05,
    min_cos: float = 0.99,
):
    sizes, lams = tuple(sizes), tuple(float(v) for v in lams)
    bp = _feedback_sweep(sizes, lams, n_inputs, seed, "transpose", model_cls, preset_name, model_transform)
    layers = np.arange(1, len(sizes) - 1)
    ds = xr.Dataset(
        {"apical_rel_err": (("lam", "layer"), bp["apical_rel"]), "apical_cos_bp_error": (("lam", "layer"), bp["apical_cos"])},
        coords={"lam": np.array(lams), "layer": layers},
        attrs={"lam": "g_A/g_B = g_som/g_B"},
    )
    i0 = int(np.argmin(lams))
    rel = float(bp["apical_rel"][i0].max())
    slopes = [loglog_slope(lams, bp["apical_rel"][:, j]) for j in range(len(layers))]
    cos = float(bp["apical_cos"][i0].min())
    verdict = Verdict.from_criteria(
        apical_rel_err=(rel, f"<= {max_rel} at lambda = {lams[i0]:g}", rel <= max_rel),
        slope_min=(min(slopes), ">= 0.8 (theory: 1)", min(slopes) >= 0.8),
        slope_max=(max(slopes), "<= 1.2 (theory: 1)", max(slopes) <= 1.2),
        apical_cos_bp_error=(cos, f"> {min_cos}", cos > min_cos),
    )
    return ds, verdict


# ----------------------------------------------------------------------------- mc_sps_learned


def _save_lateral(t, y, args):
    return {k: y[1][k] for k in ("w_ip", "b_ip", "w_pi")}


def mean_apical_sq(model: Microcircuit, x) -> float:
    """Mean over inputs of ``sum_k ||v_A,k||^2`` at the free (no target) steady state (NaN if there is none)."""
    y, nudge = _no_target(model, x)
    eq = relax_microcircuit(model, x, y, nudge, exact=False, throw=False)
    if int(eq.status) != 0:
        return float("nan")
    va = model.apical(eq.state, x, 0.0, y, nudge)
    return float(sum(jnp.sum(a**2) for a in va) / x.shape[0])


@register_check(
    "mc_sps_learned",
    family="microcircuit",
    statement=(
        "From random lateral weights, the interneuron (Eq. 8) and apical (Eq. 9) plasticity with no target learns the SPS: "
        "mean ||v_A||^2 on held-out inputs drops at least 10-fold."
    ),
    theory="theory/mc_sps_learned.md",
    quick=dict(n_patterns=400),
    full=dict(n_patterns=4000, sizes=(10, 20, 15, 5), n_test=64),
)
def mc_sps_learned(
    *,
    sizes=QUICK_SIZES,
    n_patterns: int = 400,
    n_test: int = QUICK_INPUTS,
    t_pres: float = 20.0,
    dt: float = 0.5,
    eta_ip: float = 0.005,
    eta_pi: float = 0.005,
    tau_w: float | None = 5.0,
    n_snapshots: int = 9,
    seed: int = 0,
    preset_name: str = "bern",
    model_cls=Microcircuit,
    plasticity_cls=Plasticity,
    min_drop: float = 10.0,
):
    """Patterns (inputs ~ U(-1, 1)) for ``t_pres`` ms each, Euler steps ``dt``; forward and top-down weights fixed."""
    key = jax.random.key(seed)
    kx, kt, km = jax.random.split(key, 3)
    model = model_cls.create(sizes, key=km, params=preset(preset_name).as_arrays(), top_down="random", lateral="random")
    x_train = jax.random.uniform(kx, (n_patterns, sizes[0]), minval=-1.0, maxval=1.0)
    x_test = jax.random.uniform(kt, (n_test, sizes[0]), minval=-1.0, maxval=1.0)
    stream = PatternStream(x_train, None, t_pres)
    plasticity = plasticity_cls(eta_ip=eta_ip, eta_pi=eta_pi, tau_w=tau_w)
    t1 = n_patterns * t_pres
    ts = jnp.linspace(0.0, t1, n_snapshots)
    trained, traj = simulate_learning(model, plasticity, stream, t1=t1, dt=dt, nudge=0.0, ts=ts, save_fn=_save_lateral, throw=False)
    curve = []
    for i in range(n_snapshots):
        snap = eqx.tree_at(lambda m: (m.w_ip, m.b_ip, m.w_pi), model, tuple(jax.tree.map(lambda a: a[i], traj.ys[k]) for k in ("w_ip", "b_ip", "w_pi")))
        curve.append(mean_apical_sq(snap, x_test))
    curve = np.array(curve)
    sps = mean_apical_sq(model.self_predicting(), x_test)
    ds = xr.Dataset(
        {"mean_apical_sq_test": ("time", curve)},
        coords={"time": np.asarray(ts)},
        attrs={"time_unit": "ms", "sps_reference": sps, "t_pres": t_pres, "dt": dt},
    )
    drop = float(curve[0] / curve[-1]) if np.isfinite(curve[-1]) else float("nan")
    verdict = Verdict.from_criteria(
        drop_factor=(drop, f">= {min_drop}", drop >= min_drop),
        initial=(float(curve[0]), "(mean ||v_A||^2 before learning)", True),
        final=(float(curve[-1]), "(after learning)", True),
    )
    return ds, verdict


# ----------------------------------------------------------------------------- le_instantaneous


def _le_readout(t, y, args):
    model, inp = args
    return model.readout(t, y, inp)


def _le_run(sizes, tau, dt, t_end, n_t, seed, model_cls, solver, step):
    key = jax.random.key(seed)
    kn, k0, k1 = jax.random.split(key, 3)
    net = init_network(sizes, key=kn, activation="tanh", scheme="lecun", gain=1.5, bias_scale=0.1, dtype=jnp.zeros(()).dtype)
    x0 = jax.random.uniform(k0, (sizes[0],), minval=-1.0, maxval=1.0)
    x1 = x0 + step * (jax.random.uniform(k1, (sizes[0],), minval=-1.0, maxval=1.0) - x0)
    inp = StepInput(x0, x1, 0.0)
    y_ff = net(x1)
    ts = jnp.linspace(0.0, t_end, n_t)

    def run(p):
        model = model_cls(net, jnp.asarray(tau), p)
        state0 = tuple(net.forward(x0)[1:])  # at rest for the input before the step
        traj = simulate(model_flow, state0, (model, inp), t1=t_end, dt0=dt, ts=ts, solver=solver, save_fn=_le_readout, throw=False)
        return traj.ys

    outs = eqx.filter_vmap(run)(jnp.asarray([1.0, 0.0]))
    scale = jnp.linalg.norm(y_ff - net(x0))
    err = jnp.linalg.norm(outs - y_ff, axis=-1) / scale
    return np.asarray(ts), np.asarray(err), float(scale)


@register_check(
    "le_instantaneous",
    family="latent_equilibrium",
    statement=(
        "After an input step, a layered network with prospective rates (LE) has output error <= 1e-9 x (step size) at every time "
        "(the O(dt) bound holds with zero constant when u+tau du/dt is taken from the vector field), while the standard network lags: "
        "its integrated relative error is depth x tau within 5% (linear response to a small step), and its error exceeds 10% until t = depth x tau."
    ),
    theory="theory/le_instantaneous.md",
    quick=dict(depths=(1, 2, 3), width=8),
    full=dict(depths=(1, 2, 3, 4, 6), width=32),
)
def le_instantaneous(
    *,
    depths=(1, 2, 3),
    width: int = 8,
    n_in: int = 5,
    n_out: int = 3,
    tau: float = 1.0,
    step: float = 0.05,
    dt: float = 0.01,
    solver: str = "tsit5",
    seed: int = 0,
    model_cls=LayeredLE,
    tol: float = 1e-9,
    lag_tol: float = 0.05,
):
    """A step of size ``step`` (x1 = x0 + step (x' - x0)) from rest; the lag of a cascade of ``depth`` leaky layers is
    exactly depth x tau in the linear response (Erlang impulse response); the nonlinearity adds O(step)."""
    rows = []
    errs = []
    for d in depths:
        sizes = (n_in,) + (width,) * (d - 1) + (n_out,)
        t_end = 6.0 * tau * (max(depths) + 2)
        n_t = int(round(t_end / (0.05 * tau))) + 1
        ts, err, _ = _le_run(sizes, tau, dt, t_end, n_t, seed, model_cls, solver, step)
        le_max = float(err[0].max())
        lag = float(np.trapezoid(err[1], ts))
        early = ts < d * tau
        min_early = float(err[1][early].min())
        rows.append((le_max, lag, min_early))
        errs.append(err)
    rows = np.array(rows)
    ds = xr.Dataset(
        {
            "rel_err": (("depth", "coding", "time"), np.array(errs)),
            "le_max_rel_err": ("depth", rows[:, 0]),
            "lag": ("depth", rows[:, 1]),
            "plain_min_err_before_depth_tau": ("depth", rows[:, 2]),
        },
        coords={"depth": np.array(depths), "coding": ["prospective", "standard"], "time": ts},
        attrs={"tau": tau, "dt": dt, "solver": solver, "lag": "integral over t of the standard network's relative output error"},
    )
    lag_ratio = rows[:, 1] / (np.array(depths) * tau)
    le_worst = float(rows[:, 0].max())
    verdict = Verdict.from_criteria(
        le_max_rel_err=(le_worst, f"<= {tol:g}", le_worst <= tol),
        lag_over_depth_tau_min=(float(lag_ratio.min()), f">= {1 - lag_tol:g}", lag_ratio.min() >= 1 - lag_tol),
        lag_over_depth_tau_max=(float(lag_ratio.max()), f"<= {1 + lag_tol:g}", lag_ratio.max() <= 1 + lag_tol),
        plain_err_before_depth_tau=(float(rows[:, 2].min()), "> 0.1", rows[:, 2].min() > 0.1),
    )
    return ds, verdict
