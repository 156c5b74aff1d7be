r"""PAL in the authors' Fig. 3a–c setting, matrix by matrix, against their stored data (float64).

Max, Kriener, García Pineda, Sacramento, Senn & Petrovici (2024), Nat. Mach. Intell. 6:619, Fig. 3a–c: a
5-20-10-20-5 network with W fixed and no teacher learns its three backward matrices from neuronal noise for 10 s
(100 epochs × 100 patterns × 1 ms). The authors' stored angles (10 seeds) are :data:`REFERENCE_ANGLES`.

``pal_reference_fig3`` runs :class:`dynlearn.models.pal.PAL` with the reference protocol, which differs from
``pal_alignment``'s (the mechanism check) in four ways:

* the output unit is a logistic rate of its basal drive with gain :math:`g_B/(g_l+g_B)`
  (:data:`dynlearn.models.pal.REFERENCE_OUTPUT`), where ``pal_alignment`` reads a linear output of unit gain;
* the inputs are 100 fixed patterns :math:`x \sim U(0,1)^{5}` (one set for every seed), presented in a new random
  order every epoch, where ``pal_alignment`` draws :math:`U(-1,1)` afresh for every pattern;
* a settling phase first shows the 100 patterns once (100 ms) with the noise off and B frozen, so the potentials
  and the high-pass filter start at the stimulus-driven state;
* the rule pairs the noise with the high-passed rate it caused 0.04 ms earlier, as the authors' discrete update does
  (:data:`dynlearn.models.pal.REFERENCE_LAG`, a chain of low-pass stages: exactly 4 steps at dt = 0.01 ms);

and in nothing else: conductances, τ_ξ = τ_HP = 0.1 ms, σ = 0.05, α = 1e-5, η_bw = 50, dt = 0.01 ms, W and B ~ U(−1, 1).

Each criterion compares one matrix's mean angle over seeds at one time with the reference mean, within
``n_sd`` reference standard deviations (2: the spread of the authors' own seeds; our mean over ``S`` seeds
fluctuates by about sd/√S, so 2 sd leaves room for that and for the differences listed on the theory page).
See ``theory/pal_reference_fig3.md``.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ..models.pal import PAL, REFERENCE_LAG, REFERENCE_OUTPUT
from ..models.pal_simulation import simulate_pal
from ..errors import ConfigError
from .criteria import within
from .pal import _angles_and_norms, _thinned, _uniform_states
from .registry import Verdict, register_check

#: angle(B_l, W_{l+1}^T) in degrees, mean and standard deviation over the authors' 10 seeds, for B1, B2, B3, at
#: simulated seconds after the settling phase (computed from the stored arrays of their Fig. 3a–c run)
REFERENCE_ANGLES = {
    0.0: ((89.9, 91.5, 90.1), (4.36, 4.39, 5.19)),
    1.0: ((75.0, 76.5, 70.9), (4.73, 4.48, 4.16)),
    2.5: ((47.9, 45.5, 37.5), (2.67, 3.13, 3.29)),
    5.0: ((25.8, 16.1, 14.8), (1.18, 1.83, 3.81)),
    10.0: ((20.7, 10.3, 11.4), (1.92, 1.19, 4.56)),
}


def epoch_orders(n_patterns: int, n_epochs: int, seeds) -> np.ndarray:
    """``(S, n_epochs * n_patterns)`` presentation order: a fresh permutation of the pattern set every epoch, per seed."""
    out = []
    for seed in seeds:
        rng = np.random.default_rng(7000 + seed)
        out.append(np.concatenate([rng.permutation(n_patterns) for _ in range(n_epochs)]))
    return np.stack(out)


def _settle(model, states, patterns, keys, t_pres, dt, solver):
    """Show every pattern once in order, noise off and B frozen (the reference's 100 ms settling phase)."""
    quiet = eqx.tree_at(lambda m: (m.sigma, m.eta_bw), model, (jnp.zeros_like(model.sigma), jnp.zeros_like(model.eta_bw)))
    n = keys.shape[0]
    inputs = jnp.broadcast_to(patterns, (n,) + patterns.shape)
    settled, _ = simulate_pal(quiet, states, inputs, key=keys, t_pres=t_pres, dt=dt, solver=solver, batched=True)
    return settled


def _reference_criteria(ds, n_sd: float):
    """One criterion per (time, matrix) the run reaches: the seed-mean angle within ``n_sd`` reference sd."""
    crit = {}
    for t_s, (means, sds) in REFERENCE_ANGLES.items():
        if t_s > float(ds.time.values[-1]) + 1e-9:
            continue
        at = ds.angle.sel(time=t_s, method="nearest").mean("seed").values
        for i, (ours, ref, sd) in enumerate(zip(at, means, sds), start=1):
            crit[f"B{i}_at_{t_s:g}s"] = within(float(ours), ref, n_sd * sd)
    return crit


@register_check(
    "pal_reference_fig3",
    family="pal",
    statement="PAL in the authors' Fig. 3a-c setting (logistic output with its gain, 100 fixed patterns, settling phase, the rule's 0.04 ms lag): each backward matrix's mean angle to W^T at 0, 1, 2.5 (full: and 5, 10) s within 2 seed sd of the authors' stored data",
    theory="theory/pal_reference_fig3.md",
    quick=dict(seeds=tuple(range(4)), t_end=2500.0),
    full=dict(seeds=tuple(range(10)), t_end=10_000.0),
)
def pal_reference_fig3(
    *,
    sizes=(5, 20, 10, 20, 5),
    seeds=tuple(range(10)),
    n_patterns: int = 100,
    t_end: float = 10_000.0,
    dt: float = 0.01,
    t_pres: float = 1.0,
    tau_xi: float = 0.1,
    tau_hp: float = 0.1,
    sigma: float = 0.05,
    alpha: float = 1e-5,
    eta_bw: float = 50.0,
    settle: bool = True,
    reference_output: bool = True,
    reference_lag: bool = True,
    n_sd: float = 2.0,
    n_save: int = 201,
    solver: str = "euler",
    model_cls=PAL,
):
    """Simulate the reference protocol for ``t_end`` ms after the settling phase; compare each matrix with the data.

    ``reference_output=False`` keeps ``pal_alignment``'s linear output (a must-fail twin: B3 then aligns too fast);
    ``reference_lag=False`` pairs the noise with the high-passed rate it causes at once (no 0.04 ms lag);
    ``settle=False`` skips the settling phase.
    """
    if n_patterns is None:
        raise ConfigError("pal_reference_fig3: n_patterns must be an integer >= 1 (the size of the fixed pattern set), got None")
    seeds = tuple(int(s) for s in seeds)
    sizes = tuple(int(n) for n in sizes)
    n_epochs = max(1, int(round(t_end / (t_pres * n_patterns))))
    output = dict(REFERENCE_OUTPUT if reference_output else {}, **(REFERENCE_LAG if reference_lag else {}))
    base = model_cls(tau_xi=tau_xi, tau_hp=tau_hp, sigma=sigma, alpha=alpha, eta_bw=eta_bw, eta_fw=0.0, **output)
    model = jax.tree.map(lambda a: jnp.broadcast_to(a, (len(seeds),)), base)
    states = _uniform_states(sizes, seeds, base)
    patterns = jnp.asarray(np.random.default_rng(4321).uniform(0.0, 1.0, (n_patterns, sizes[0])))
    keys = jnp.stack([jax.random.key(9100 + s) for s in seeds])
    if settle:
        states = _settle(model, states, patterns, jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys), t_pres, dt, solver)
    inputs = patterns[jnp.asarray(epoch_orders(n_patterns, n_epochs, seeds))]
    _, (ang, nrm) = simulate_pal(model, states, inputs, key=keys, t_pres=t_pres, dt=dt, solver=solver, save_fn=_angles_and_norms, batched=True)
    ang0, nrm0 = jax.vmap(lambda st: _angles_and_norms(0.0, st, None))(states)
    keep = [int(round(t * 1000.0 / t_pres)) for t in REFERENCE_ANGLES]  # the reference times, saved exactly
    idx, full_ang = _thinned(ang0, ang, inputs.shape[1], n_save, keep)
    _, full_nrm = _thinned(nrm0, nrm, inputs.shape[1], n_save, keep)
    mats = [f"B{l}" for l in range(1, len(sizes) - 1)]
    ds = xr.Dataset(
        {"angle": (("seed", "time", "matrix"), full_ang), "norm_B": (("seed", "time", "matrix"), full_nrm)},
        coords={"seed": list(seeds), "time": idx * t_pres / 1000.0, "matrix": mats},
        attrs={"time_units": "s (simulated, after the settling phase)", "sizes": str(sizes), "dt_ms": dt, "t_pres_ms": t_pres,
               "n_patterns": n_patterns, "settle": int(settle), "reference_output": int(reference_output), "reference_lag": int(reference_lag)},
    )
    ref_t = sorted(REFERENCE_ANGLES)
    ds["reference_mean"] = (("reference_time", "matrix"), np.array([REFERENCE_ANGLES[t][0] for t in ref_t]))
    ds["reference_sd"] = (("reference_time", "matrix"), np.array([REFERENCE_ANGLES[t][1] for t in ref_t]))
    ds = ds.assign_coords(reference_time=ref_t)
    return ds, Verdict.from_criteria(**_reference_criteria(ds, n_sd))
