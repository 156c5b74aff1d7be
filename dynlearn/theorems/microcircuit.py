r"""Theorem checks for dendritic cortical microcircuits (Sacramento et al. 2018). Each check is float64 and returns
``(xarray.Dataset, Verdict)``.

* ``mc_sps_exact`` — the closed-form self-predicting state silences every apical dendrite.
* ``mc_sps_learned`` — the lateral plasticity (Eqs. 8-9) learns the SPS from random lateral weights.
* ``mc_bp_alignment`` — in the SPS with weak feedback, hidden updates approach BP (``B = W^T``) or FA
  (fixed random ``B``).
* ``mc_apical_error`` — the apical potential carries the top-down projected error to O(lambda).

Latent Equilibrium's check (``le_instantaneous``) is in :mod:`dynlearn.theorems.latent_equilibrium`.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ..analysis import bp_gradient, cosine_similarity, loglog_slope, relative_error
from ..config import THEOREM
from ..losses import mse_loss
from ..models.base import Data, equilibrium
from ..models.microcircuit import Microcircuit, PatternStream, Plasticity, preset, simulate_learning
from ..networks import linear_layer, matvec
from ..rules.feedback.mechanism import feedback_call
from .criteria import above, at_least, at_most, below, reported, within
from .registry import Verdict, register_check
from .. import draws

#: the relaxation of every microcircuit check (the free and nudged steady states to max|du/dt| <= 1e-10)
RELAX = THEOREM.replace(tol=1e-10, t1=1e5, max_steps=20_000)
#: the same, Newton-polished to residual 1e-12
EXACT = RELAX.replace(polish=True)
N_SAVE = 51
QUICK_SIZES = (4, 6, 5, 3)
QUICK_INPUTS = 8


def circuit_equilibrium(model: Microcircuit, data: Data, *, exact: bool = True, state0=None, **overrides):
    """:func:`dynlearn.models.equilibrium` with :data:`EXACT` (or :data:`RELAX`), saving ``N_SAVE`` points over 50 tau_eff."""
    save_ts = jnp.linspace(0.0, 50.0, N_SAVE) * model.params.tau_hidden
    return equilibrium(model, data, EXACT if exact else RELAX, state0=state0, save_ts=save_ts, **overrides)


def free_data(model: Microcircuit, x) -> Data:
    """No target: a zero target with nudge 0, as arrays, so that free and nudged relaxations share one compiled solve."""
    return Data(x, jnp.zeros(x.shape[:-1] + (model.sizes[-1],), x.dtype), jnp.asarray(0.0, x.dtype))


def _furthest(values, target: float) -> float:
    """The value furthest from ``target`` (the worst layer of a two-sided criterion)."""
    return float(values[int(np.argmax(np.abs(np.asarray(values) - target)))])


def _max_abs(arrays) -> float:
    return max(float(jnp.max(jnp.abs(a))) for a in arrays)


# ----------------------------------------------------------------------------- mc_sps_exact


def _sps_relaxation(model, random, x, key):
    """From random potentials: ``(max|v_A|, residual, time, max|v_A| along the relaxation, max|v_A| of ``random``)``."""
    data = free_data(model, x)
    leaves, treedef = jax.tree.flatten(model.init_state(data))
    state0 = jax.tree.unflatten(treedef, [draws.normal(k, a.shape, a.dtype) for k, a in zip(jax.random.split(key, len(leaves)), leaves)])
    eq = circuit_equilibrium(model, data, state0=state0)
    final = _max_abs(model.apical(0.0, eq.state, data))
    # the apical potentials along the relaxation (times after the steady state are inf: the final value holds)
    ts = np.asarray(eq.ts)
    curve = [_max_abs(model.apical(0.0, jax.tree.map(lambda a: a[i], eq.ys), data)) if np.isfinite(ts[i]) else final for i in range(N_SAVE)]
    eq_r = circuit_equilibrium(random, data, exact=False)
    return final, float(eq.residual), float(eq.time), curve, _max_abs(random.apical(0.0, eq_r.state, data))


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
    min_contrast: float = 1e-3,
    model_cls=Microcircuit,
    initialiser=None,
):
    """Relax from random potentials with the SPS weights (random fixed top-down) and no target.

    ``initialiser(model) -> model`` replaces :meth:`Microcircuit.self_predicting` (to show the check fails
    with a wrong one); ``min_contrast``: the circuit with random lateral weights must show ``max|v_A|`` above it
    (the measure sees a non-SPS circuit).
    """
    kx, km = jax.random.split(jax.random.key(seed))
    x = draws.uniform(kx, (n_inputs, sizes[0]), minval=-1.0, maxval=1.0)
    rows, curves, contrast = [], [], []
    for name in presets:
        params = preset(name).as_arrays()
        random = model_cls.create(sizes, key=km, params=params, top_down="random", lateral="random")
        model = random.self_predicting() if initialiser is None else initialiser(random)
        final, residual, time, curve, random_apical = _sps_relaxation(model, random, x, kx)
        rows.append((final, residual, time / float(params.tau_hidden)))
        curves.append(curve)
        contrast.append(random_apical)
    rows = np.array(rows)
    ds = xr.Dataset(
        {
            "max_abs_apical": ("preset", rows[:, 0]),
            "residual": ("preset", rows[:, 1]),
            "t_relax_over_tau": ("preset", rows[:, 2]),
            "max_abs_apical_random_lateral": ("preset", np.array(contrast)),
            "apical_during_relaxation": (("preset", "time"), np.maximum(np.array(curves), 1e-17)),
        },
        coords={"preset": list(presets), "time": np.linspace(0.0, 50.0, N_SAVE)},
        attrs={"time_unit": "tau_eff of the hidden pyramids"},
    )
    verdict = Verdict.from_criteria(
        max_abs_apical=below(rows[:, 0].max(), tol),
        max_abs_apical_random_lateral=above(min(contrast), min_contrast),
    )
    return ds, verdict


# ----------------------------------------------------------------------------- weak-feedback sweep (shared)


def _loss_wrt_rate(net, k, r_k, y):
    """The MSE loss of the effective network as a function of the layer-``k`` rate (k = 1..L-1)."""
    h = net.apply(k + 1, r_k)
    for l in range(k + 2, net.depth + 1):
        h = net.predict_layer(l, h)
    return mse_loss(h, y)


def _dense(layer, h):
    out = matvec(layer.weight, h)
    return out if layer.bias is None else out + layer.bias


def fa_gradient(net, feedback, x, y):
    r"""The feedback-alignment update of the network ``net`` with feedback matrices ``feedback[k-1]`` (``n_k x n_{k+1}``,
    shaped like :math:`W_{k+1}^\top`), in descent sign and summed over the batch: the MSE gradient with the backward
    pass :math:`\delta_k = \varphi'(\hat x_k)\odot B_k\delta_{k+1}` (Lillicrap et al. 2016, Nat. Commun. 7:13276),
    computed by the library's feedback mechanism (:func:`dynlearn.rules.feedback.mechanism.feedback_call`)."""
    feedback_layers = [None] + [linear_layer(b.T, None) for b in feedback]

    def loss(layers):
        h = x
        for l, (layer, fb) in enumerate(zip(layers, feedback_layers), start=1):
            r = net.presynaptic(l, h)
            h = _dense(layer, r) if fb is None else feedback_call((layer, fb, r), _dense)
        return mse_loss(h, y)

    return [g.weight for g in eqx.filter_grad(loss)(net.layers)]


def _apical_vs_error(model, params, eq_state, data, net):
    """Per hidden layer: relative error of ``v_A`` against :math:`\\kappa B_k (r_{k+1} - r^-_{k+1})`, and its cosine with
    the backpropagated error :math:`-\\partial L/\\partial r_k`."""
    x, y = data.x, data.y
    va = model.apical(0.0, eq_state, data)
    free = net.forward(x)[1:]
    kappa = (params.g_lk + params.g_D) / params.g_inter
    rel, cos = [], []
    for k in range(1, model.depth):
        dr = model.phi(k + 1, eq_state[0][k]) - model.phi(k + 1, free[k])
        pred = kappa * (dr @ model.top_down[k - 1].T)
        rel.append(float(relative_error(va[k - 1], pred)))
        grad_r = jax.grad(lambda r: _loss_wrt_rate(net, k, r, y))(model.phi(k, free[k - 1]))
        cos.append(float(cosine_similarity(va[k - 1], -grad_r)))
    return rel, cos


@functools.lru_cache(maxsize=16)
def _feedback_sweep(sizes, lams, n_inputs, seed, top_down, model_cls, preset_name, model_transform):
    kx, ky, km = jax.random.split(jax.random.key(seed), 3)
    x = draws.uniform(kx, (n_inputs, sizes[0]), minval=-1.0, maxval=1.0)
    base = model_cls.create(sizes, key=km, params=preset(preset_name).as_arrays(), top_down=top_down, lateral="sps")
    y = base.effective_network()(x) + 0.5 * draws.normal(ky, (n_inputs, sizes[-1]))
    data = Data(x, y, jnp.asarray(1.0, x.dtype))
    out = {k: [] for k in ("cos_ref", "cos_out", "apical_rel", "apical_cos", "rel_ref")}
    for lam in lams:
        params = base.params.with_feedback(jnp.asarray(lam, dtype=x.dtype))
        model = eqx.tree_at(lambda m: m.params, base, params).self_predicting()
        if model_transform is not None:
            model = model_transform(model)
        eq = circuit_equilibrium(model, data)
        dw = model.plasticity(0.0, eq.state, data).weights
        net = model.effective_network()
        ref = bp_gradient(net, x, y, "mse").weights if top_down == "transpose" else fa_gradient(net, model.top_down, x, y)
        hidden = range(len(sizes) - 2)
        out["cos_ref"].append([float(cosine_similarity(dw[k], ref[k])) for k in hidden])
        out["rel_ref"].append([float(relative_error(dw[k] / jnp.linalg.norm(dw[k]), ref[k] / jnp.linalg.norm(ref[k]))) for k in hidden])
        out["cos_out"].append(float(cosine_similarity(dw[-1], ref[-1])))
        rel, cos = _apical_vs_error(model, params, eq.state, data, net)
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
        "lambda, the direction error falls as lambda^2 (fitted slope 2 +- 0.2) and 1 - cos as lambda^4 (slope 4 +- 0.4); with fixed random B "
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
    slope_tol: float = 0.2,
):
    """``lams``: the feedback ratios λ = g_A/g_B = g_som/g_B swept; the fitted order of the direction error must be
    2 ± ``slope_tol`` and that of 1 - cos 4 ± 2 ``slope_tol`` (theory; 10%, as for EP's orders: the fit over λ <= 0.2
    carries the O(λ) correction of the next order), in the hidden layer furthest from it."""
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
        attrs={"lam": "g_A/g_B = g_som/g_B", "layer": "hidden layer k (weights W_k into it)", "criteria_at_lam": min(lams)},
    )
    i0 = int(np.argmin(lams))
    # fitted orders in lambda, for the worst hidden layer: the direction error ||dW/|dW| - g/|g||| (theory 2, because the
    # interneurons subtract the bottom-up part of the upper layer's change) and 1 - cos (theory 4 = twice that)
    slope_dir = _furthest([loglog_slope(lams, bp["rel_ref"][:, j]) for j in range(len(layers))], 2.0)
    slope_cos = _furthest([loglog_slope(lams, np.maximum(1.0 - bp["cos_ref"][:, j], 1e-300)) for j in range(len(layers))], 4.0)
    verdict = Verdict.from_criteria(
        cos_bp_min_hidden=above(bp["cos_ref"][i0].min(), min_cos),
        slope_direction_error=within(slope_dir, 2.0, slope_tol),
        slope_one_minus_cos=within(slope_cos, 4.0, 2 * slope_tol),
        cos_fa_min_hidden=above(fa["cos_ref"][i0].min(), min_cos),
        cos_output=above(min(bp["cos_out"][i0], fa["cos_out"][i0]), min_cos),
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
    slope_tol: float = 0.2,
    min_cos: float = 0.99,
):
    """The relative error at the smallest λ (``<= max_rel``), its log-log slopes (``1 ± slope_tol``) and the alignment
    with the backpropagated error (``> min_cos``)."""
    sizes, lams = tuple(sizes), tuple(float(v) for v in lams)
    bp = _feedback_sweep(sizes, lams, n_inputs, seed, "transpose", model_cls, preset_name, model_transform)
    layers = np.arange(1, len(sizes) - 1)
    ds = xr.Dataset(
        {"apical_rel_err": (("lam", "layer"), bp["apical_rel"]), "apical_cos_bp_error": (("lam", "layer"), bp["apical_cos"])},
        coords={"lam": np.array(lams), "layer": layers},
        attrs={"lam": "g_A/g_B = g_som/g_B", "criteria_at_lam": min(lams)},
    )
    i0 = int(np.argmin(lams))
    slopes = [loglog_slope(lams, bp["apical_rel"][:, j]) for j in range(len(layers))]
    verdict = Verdict.from_criteria(
        apical_rel_err=at_most(bp["apical_rel"][i0].max(), max_rel),
        slope_worst_layer=within(_furthest(slopes, 1.0), 1.0, slope_tol),
        apical_cos_bp_error=above(bp["apical_cos"][i0].min(), min_cos),
    )
    return ds, verdict


# ----------------------------------------------------------------------------- mc_sps_learned


def _save_lateral(t, y, args):
    return {k: y[1][k] for k in ("w_ip", "b_ip", "w_pi")}


def mean_apical_sq(model: Microcircuit, x) -> float:
    """Mean over inputs of ``sum_k ||v_A,k||^2`` at the free (no target) steady state (NaN if there is none)."""
    data = free_data(model, x)
    eq = circuit_equilibrium(model, data, exact=False, throw=False)
    if int(eq.status) != 0:
        return float("nan")
    return float(sum(jnp.sum(a**2) for a in model.apical(0.0, eq.state, data)) / x.shape[0])


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
    reference_tol: float = 1e-20,
):
    """Patterns (inputs ~ U(-1, 1)) for ``t_pres`` ms each, Euler steps ``dt``; forward and top-down weights fixed.

    The same measure at the closed-form SPS (:meth:`Microcircuit.self_predicting`) must read 0 (``<= reference_tol``):
    the learned circuit drops towards the value of the state the rules are meant to find (the floor of the measure
    is round-off), and a wrong closed form, or an apical potential that is not silenced in it, fails."""
    kx, kt, km = jax.random.split(jax.random.key(seed), 3)
    model = model_cls.create(sizes, key=km, params=preset(preset_name).as_arrays(), top_down="random", lateral="random")
    x_train = draws.uniform(kx, (n_patterns, sizes[0]), minval=-1.0, maxval=1.0)
    x_test = draws.uniform(kt, (n_test, sizes[0]), minval=-1.0, maxval=1.0)
    stream = Data(None, None, 0.0, PatternStream(x_train, None, t_pres))
    plasticity = plasticity_cls(eta_ip=eta_ip, eta_pi=eta_pi, tau_w=tau_w)
    t1 = n_patterns * t_pres
    ts = jnp.linspace(0.0, t1, n_snapshots)
    _, traj = simulate_learning(model, plasticity, stream, t1=t1, dt=dt, ts=ts, save_fn=_save_lateral, throw=False)
    curve = []
    for i in range(n_snapshots):
        snap = eqx.tree_at(lambda m: (m.w_ip, m.b_ip, m.w_pi), model, tuple(jax.tree.map(lambda a: a[i], traj.ys[k]) for k in ("w_ip", "b_ip", "w_pi")))
        curve.append(mean_apical_sq(snap, x_test))
    curve = np.array(curve)
    reference = mean_apical_sq(model.self_predicting(), x_test)
    ds = xr.Dataset(
        {"mean_apical_sq_test": ("time", curve)},
        coords={"time": np.asarray(ts)},
        attrs={"time_unit": "ms", "sps_reference": reference, "t_pres": t_pres, "dt": dt},
    )
    drop = float(curve[0] / curve[-1]) if np.isfinite(curve[-1]) else float("nan")
    verdict = Verdict.from_criteria(
        drop_factor=at_least(drop, min_drop),
        sps_reference=at_most(reference, reference_tol),
        initial=reported(curve[0]),
        final=reported(curve[-1]),
    )
    return ds, verdict
