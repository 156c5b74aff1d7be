r"""Theorem checks for predictive coding (float64).

* ``pc_energy_descent`` — the inference flow is a gradient flow, so :math:`dE/dt = -\|\nabla E\|^2 \le 0`.
* ``pc_fixed_point`` — the clamped-output relaxation reaches an isolated, linearly stable equilibrium,
  the same one from several initial states.
* ``pc_feedforward`` — with the output free, the equilibrium is the feedforward pass and :math:`E = 0`.
* ``pc_bp_limit`` — with the output nudged by :math:`\gamma`, :math:`\Delta W/\gamma \to -\nabla_W L` (BP)
  with error :math:`O(\gamma)` (Whittington & Bogacz 2017).
* ``pc_fixed_prediction_exact`` — under the fixed-prediction assumption the equilibrium errors are
  exactly backprop's deltas (Millidge, Tschantz & Buckley 2022).

Every check takes the model class as an argument, so a test can hand it a deliberately broken model
and see it fail. See ``theory/pc_*.md`` for statements, assumptions and tolerances.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ..analysis import bp_deltas, bp_gradient, compare_per_layer, energy_increase, loglog_slope, relative_error, spectrum
from ..dynamics import CONVERGED, max_norm, model_flow, polish, relax
from ..models.base import equilibrium
from ..models.pc import FixedPredictionPC, PredictiveCoding, pc_update
from ..networks import init_network
from .registry import Verdict, register_check

# tight settings for theorem checks: the steady-state test is on max|dE/dx|
TIGHT = dict(tol=1e-9, rtol=1e-10, atol=1e-12, t1=5e3, max_steps=100_000)


def _problem(sizes, batch, seed, activation="tanh", gain=1.0):
    """A random float64 network with random inputs and targets."""
    k_net, k_x, k_y = jax.random.split(jax.random.key(seed), 3)
    net = init_network(sizes, key=k_net, activation=activation, gain=gain, bias_scale=0.1, dtype=jnp.float64)
    x = jax.random.normal(k_x, (batch, sizes[0]), jnp.float64)
    y = jax.random.normal(k_y, (batch, sizes[-1]), jnp.float64)
    return net, x, y


def _random_state(model, x, key, scale=1.0):
    ref = model.init_state(x)
    keys = jax.random.split(key, len(ref))
    return tuple(scale * jax.random.normal(k, s.shape, s.dtype) for k, s in zip(keys, ref))


@register_check(
    "pc_energy_descent",
    family="pc",
    statement="E never increases along the PC inference flow (dE/dt = -|dE/dx|^2)",
    theory="theory/pc_energy_descent.md",
    quick={"seeds": (0, 1, 2)},
    full={"seeds": tuple(range(10)), "n_times": 801},
)
def pc_energy_descent(
    *, sizes=(5, 10, 10, 3), batch=4, seeds=(0, 1, 2), n_times=201, t_end=40.0, rel_tol=1e-8, model_cls=PredictiveCoding
):
    """Relax from random states (random nets and data, output clamped); record E on a dense time grid.

    Measured: the largest rise of E between saved times relative to E(0), and the mean relative error of
    the identity dE/dt = −|∇E|² (finite differences of E against the squared gradient norm).
    """
    ts = jnp.linspace(0.0, t_end, n_times)
    energies, grad_sq, rises, converged = [], [], [], []
    for seed in seeds:
        net, x, y = _problem(sizes, batch, seed)
        model = model_cls(net, "clamped")
        s0 = _random_state(model, x, jax.random.key(1000 + seed))
        eq = relax(model_flow, s0, (model, x, y, 0.0), save_ts=ts, throw=False, name=model.name, **TIGHT)
        e = jax.vmap(lambda s: model.energy(s, x, y))(eq.ys)
        g = jax.vmap(lambda s: sum(jnp.sum(v**2) for v in jax.tree.leaves(model.vector_field(0.0, s, x, y))))(eq.ys)
        e, g = np.array(e), np.array(g)
        finite = np.isfinite(np.asarray(eq.ts))
        e[~finite] = np.nan
        g[~finite] = np.nan
        energies.append(e)
        grad_sq.append(g)
        rises.append(energy_increase(e[finite], scale=abs(e[0])))
        converged.append(int(eq.status) == CONVERGED)
    energies, grad_sq = np.stack(energies), np.stack(grad_sq)
    # identity dE/dt = -|grad E|^2, central differences where the grid is dense relative to the dynamics
    dt = float(ts[1] - ts[0])
    dEdt = (energies[:, 2:] - energies[:, :-2]) / (2 * dt)
    mid = grad_sq[:, 1:-1]
    mask = np.isfinite(dEdt) & np.isfinite(mid) & (mid > 1e-6 * np.nanmax(mid))
    identity_err = float(np.median(np.abs(dEdt[mask] + mid[mask]) / mid[mask])) if mask.any() else np.nan
    ds = xr.Dataset(
        {
            "energy": (("seed", "time"), energies),
            "grad_norm_sq": (("seed", "time"), grad_sq),
            "max_rise": ("seed", np.asarray(rises)),
        },
        coords={"seed": list(seeds), "time": np.asarray(ts)},
    )
    verdict = Verdict.from_criteria(
        max_relative_rise=(max(rises), f"<= {rel_tol:g}", max(rises) <= rel_tol),
        all_converged=(float(all(converged)), "== 1", all(converged)),
        # central differences on the grid have error O(dt^2 |E'''|): a few per cent at dt = 0.2
        dEdt_identity_error=(identity_err, "<= 0.05", identity_err <= 0.05),
    )
    return ds, verdict


@register_check(
    "pc_fixed_point",
    family="pc",
    statement="the clamped PC relaxation reaches a stable equilibrium (residual <= 1e-8, Re eig < 0), the same from 5 initial states",
    theory="theory/pc_fixed_point.md",
    quick={},
    full={"n_starts": 20},
)
def pc_fixed_point(*, sizes=(5, 10, 10, 3), batch=4, seed=0, n_starts=5, init_scale=1.0, model_cls=PredictiveCoding):
    """Relax from the feedforward pass and from ``n_starts`` random states; polish; compare."""
    net, x, y = _problem(sizes, batch, seed)
    model = model_cls(net, "clamped")
    args = (model, x, y, 0.0)
    eq = equilibrium(model, x, y, throw=False, **TIGHT)
    relaxed_residual = float(eq.residual)
    ok_relax = int(eq.status) == CONVERGED
    finals = []
    for i in range(n_starts):
        s0 = _random_state(model, x, jax.random.key(seed * 7919 + i), init_scale)
        e = relax(model_flow, s0, args, throw=False, name=model.name, **TIGHT)
        ok_relax &= int(e.status) == CONVERGED
        finals.append(e.state)
    spread = max(float(max_norm(jax.tree.map(lambda a, b: a - b, f, eq.state))) for f in finals)
    if ok_relax:
        pol = polish(model_flow, eq, args, throw=False)
        polished_residual = float(pol.residual)
        ev = spectrum(model_flow, pol.state, args)
    else:
        polished_residual, ev = np.nan, np.full(2, np.nan + 0j)
    ds = xr.Dataset(
        {"eig_real": ("mode", np.real(ev)), "eig_imag": ("mode", np.imag(ev))},
        coords={"mode": np.arange(ev.size)},
        attrs={"relaxed_residual": relaxed_residual, "polished_residual": polished_residual, "spread": spread},
    )
    max_re = float(np.max(np.real(ev)))
    verdict = Verdict.from_criteria(
        relaxed_residual=(relaxed_residual, "<= 1e-8", ok_relax and relaxed_residual <= 1e-8),
        polished_residual=(polished_residual, "<= 1e-12", polished_residual <= 1e-12),
        max_real_eigenvalue=(max_re, "< 0", max_re < 0),
        start_spread=(spread, "<= 1e-7", spread <= 1e-7),
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
def pc_feedforward(*, sizes=(5, 10, 10, 3), batch=4, seeds=(0, 1, 2), n_times=101, t_end=60.0, model_cls=PredictiveCoding):
    """Relax the free-output network from random states; distance to the feedforward pass and energy at the end."""
    ts = jnp.linspace(0.0, t_end, n_times)
    dists, energies, curves = [], [], []
    for seed in seeds:
        net, x, _ = _problem(sizes, batch, seed)
        model = model_cls(net, "free")
        s0 = _random_state(model, x, jax.random.key(500 + seed))
        args = (model, x, None, 0.0)
        eq = relax(model_flow, s0, args, save_ts=ts, throw=False, name=model.name, **TIGHT)
        ff = tuple(net.forward(x)[1:])
        curve = jax.vmap(lambda s: max_norm(jax.tree.map(lambda a, b: a - b, s, ff)))(eq.ys)
        curves.append(np.where(np.isfinite(np.asarray(eq.ts)), np.asarray(curve), np.nan))
        if int(eq.status) == CONVERGED:
            eq = polish(model_flow, eq, args, throw=False)
        dists.append(float(max_norm(jax.tree.map(lambda a, b: a - b, eq.state, ff))))
        energies.append(float(model.energy(eq.state, x, None)))
    ds = xr.Dataset(
        {"distance_to_ff": (("seed", "time"), np.stack(curves)), "final_distance": ("seed", dists), "final_energy": ("seed", energies)},
        coords={"seed": list(seeds), "time": np.asarray(ts)},
    )
    verdict = Verdict.from_criteria(
        max_distance_to_feedforward=(max(dists), "<= 1e-10", max(dists) <= 1e-10),
        max_energy=(max(energies), "<= 1e-20", max(energies) <= 1e-20),
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
    *, sizes=(5, 10, 10, 3), batch=4, seed=0, gammas=tuple(np.logspace(-4, -1, 7)), slope_tol=0.15, cos_min=0.9999, model_cls=PredictiveCoding
):
    """Per layer and nudge γ: cosine and relative error of ΔW/γ against −∂L/∂W (BP, same network)."""
    net, x, y = _problem(sizes, batch, seed)
    model = model_cls(net, "nudged")
    reference = jax.tree.map(jnp.negative, bp_gradient(net, x, y))
    cos, rel, res = [], [], []
    for gamma in gammas:
        eq = equilibrium(model, x, y, gamma, polish=True, throw=False, **TIGHT)
        update = jax.tree.map(lambda u: u / gamma, pc_update(model, x, y, gamma, state=eq.state))
        cmp = compare_per_layer(update, reference)
        cos.append(np.asarray(cmp["cosine"]))
        rel.append(np.asarray(cmp["relative_error"]))
        res.append(float(eq.residual))
    cos, rel = np.stack(cos), np.stack(rel)
    gammas = np.asarray(gammas)
    layers = np.arange(1, net.depth + 1)
    try:
        slopes = np.array([loglog_slope(gammas, rel[:, i]) for i in range(net.depth)])
    except ValueError:
        slopes = np.full(net.depth, np.nan)
    ds = xr.Dataset(
        {
            "cosine": (("gamma", "layer"), cos),
            "relative_error": (("gamma", "layer"), rel),
            "residual": ("gamma", np.asarray(res)),
            "slope": ("layer", slopes),
        },
        coords={"gamma": gammas, "layer": layers},
    )
    min_cos = float(np.min(cos[np.argmin(gammas)]))
    worst_slope = float(slopes[np.argmax(np.abs(slopes - 1))])
    verdict = Verdict.from_criteria(
        min_cosine_at_smallest_gamma=(min_cos, f">= {cos_min}", min_cos >= cos_min),
        worst_slope=(worst_slope, f"1 ± {slope_tol}", np.all(np.abs(slopes - 1) <= slope_tol)),
        max_residual=(max(res), "<= 1e-12", max(res) <= 1e-12),
    )
    return ds, verdict


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
        model = model_cls(net)
        args = (model, x, y, None)
        eq = relax(model_flow, model.init_state(x), args, save_ts=ts, throw=False, name=model.name, **TIGHT)
        curves.append(np.where(np.isfinite(np.asarray(eq.ts)), np.asarray(jax.vmap(lambda s: max_norm(model.vector_field(0.0, s, x, y)))(eq.ys)), np.nan))
        eq = polish(model_flow, eq, args, throw=False)
        eps = model.errors(eq.state, x, y)
        deltas = bp_deltas(net, x, y)
        err_eps.append([float(relative_error(e, -d)) for e, d in zip(eps, deltas)])
        update = model.update(eq.state, x, y)
        cmp = compare_per_layer(update, jax.tree.map(jnp.negative, bp_gradient(net, x, y)))
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
        max_error_vs_delta=(err_eps.max(), f"<= {tol:g}", err_eps.max() <= tol),
        max_update_vs_bp=(err_w.max(), f"<= {tol:g}", err_w.max() <= tol),
    )
    return ds, verdict
