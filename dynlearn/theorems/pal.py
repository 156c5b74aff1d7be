r"""Theorem checks for Phaseless Alignment Learning (Max et al. 2024, Nat. Mach. Intell. 6:619), float64.

* ``pal_alignment`` — with the forward weights fixed and no teacher, the noise-correlation rule
  :math:`\dot B_l = \eta_{bw}(\xi_l (r^{HP}_{l+1})^\top - \alpha B_l)` turns random backward matrices (≈ 90° from
  :math:`W_{l+1}^\top`) into aligned ones; the two negative controls — noise off (no alignment) and
  :math:`\alpha = 0` (unbounded growth of :math:`\|B\|`) — run in the same compiled call.
* ``pal_vs_fa_sign`` — on the 1-1-1 chain whose backward weight starts with the wrong sign, PAL (B learned from
  noise while W learns) learns the teacher and feedback alignment (B fixed) does not.

Both checks take ``model_cls`` so that a test can pass a deliberately broken PAL and see the check fail.
See ``theory/pal_alignment.md`` and ``theory/pal_vs_fa_sign.md``.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ..analysis import alignment_angle
from ..models.pal import PAL, PALState, pal_state
from ..models.pal_simulation import simulate_pal
from ..networks import Network
from .criteria import above, at_most, below, within
from .registry import Verdict, register_check

CONDITIONS = ("pal", "noise_off", "alpha_zero")


def _angles_and_norms(t, y: PALState, args):
    """Derived quantities saved at the end of every pattern: angle(B_l, W_{l+1}^T) and ||B_l||_F."""
    ang = jnp.stack([alignment_angle(b, w.T) for b, w in zip(y.feedback, y.network.weights[1:])])
    nrm = jnp.stack([jnp.linalg.norm(b) for b in y.feedback])
    return ang, nrm


def _thinned(first, saved, n_pat: int, n_save: int, keep=()):
    """``(pattern indices, values)``: the values before the first pattern prepended to the per-pattern ``saved``
    (run axis first), thinned to at most ``n_save`` time points plus the pattern indices in ``keep``."""
    idx = np.unique(np.linspace(0, n_pat, min(n_save, n_pat + 1)).round().astype(int))
    idx = np.unique(np.concatenate([idx, np.asarray([k for k in keep if 0 <= k <= n_pat], dtype=int)]))
    full = np.concatenate([np.asarray(first)[:, None], np.asarray(saved)], axis=1)
    return idx, full[:, idx]


def _uniform_states(sizes, seeds, model):
    """Reference initial states, W and B ~ U(-1, 1), biases 0, one per seed, stacked on a leading axis.

    Drawn with numpy (seeded per seed): compiling JAX's random bits for dozens of small matrices costs seconds on a
    CPU, more than the draws are worth here.
    """
    states = []
    for seed in seeds:
        rng = np.random.default_rng(1000 + seed)
        ws = tuple(jnp.asarray(rng.uniform(-1.0, 1.0, (b, a))) for a, b in zip(sizes[:-1], sizes[1:]))
        net = Network.from_matrices(ws, tuple(jnp.zeros(b) for b in sizes[1:]), "logistic")
        fb = tuple(jnp.asarray(rng.uniform(-1.0, 1.0, (a, b))) for a, b in zip(sizes[1:-1], sizes[2:]))
        states.append(pal_state(model, net, fb))
    return jax.tree.map(lambda *a: jnp.stack(a), *states)


def _alignment_measures(ds):
    """Worst-case figures of ``pal_alignment`` (seeds and matrices): the largest rise of PAL's angle above its running
    minimum (a monotone decrease gives 0; noise makes the angles jitter by about a degree), its largest final angle,
    the noise-off control's mean final angle, and |B(T)|/|B(T/2)| of the least growing alpha = 0 run and of the most
    growing PAL run."""
    pal = ds.sel(condition="pal")
    half = int(np.argmin(np.abs(ds.time.values - ds.time.values[-1] / 2)))
    max_rise = float(np.max(pal.angle.values - np.minimum.accumulate(pal.angle.values, axis=1)))
    worst = float(pal.angle.isel(time=-1).max())
    off_final = float(ds.angle.sel(condition="noise_off").isel(time=-1).mean())
    a0 = ds.norm_B.sel(condition="alpha_zero")
    growth_a0 = float((a0.isel(time=-1) / a0.isel(time=half)).min())
    growth_pal = float((pal.norm_B.isel(time=-1) / pal.norm_B.isel(time=half)).max())
    return max_rise, worst, off_final, growth_a0, growth_pal


@register_check(
    "pal_alignment",
    family="pal",
    statement="PAL aligns B with W^T from neuronal noise alone (W fixed): angle from ~90 deg to < 25 deg for each matrix (mean over seeds; < 30 deg for every seed), decreasing all along; no alignment with the noise off, unbounded |B| with alpha = 0",
    theory="theory/pal_alignment.md",
    quick=dict(seeds=tuple(range(4)), t_end=5000.0, dt=0.1, t_pres=5.0, tau_xi=0.5, tau_hp=0.5, sigma=0.5, alpha=1.2e-3, eta_bw=0.7),
    full=dict(sizes=(5, 20, 10, 20, 5), seeds=tuple(range(16)), t_end=10_000.0, dt=0.01, t_pres=1.0),
)
def pal_alignment(
    *,
    sizes=(5, 20, 10, 20, 5),
    seeds=tuple(range(16)),
    t_end: float = 10_000.0,
    dt: float = 0.01,
    t_pres: float = 1.0,
    tau_xi: float = 0.1,
    tau_hp: float = 0.1,
    sigma: float = 0.05,
    alpha: float = 1e-5,
    eta_bw: float = 50.0,
    n_save: int = 101,
    start_angle_tol: float = 15.0,
    max_angle: float = 25.0,
    max_angle_worst: float = 30.0,
    max_rise_tol: float = 3.0,
    control_min_angle: float = 60.0,
    alpha_zero_min_growth: float = 1.3,
    pal_max_growth: float = 1.2,
    solver: str = "euler",
    model_cls=PAL,
):
    """Simulate PAL (W fixed, random input patterns, no target) for ``t_end`` ms, seeds × {pal, noise off, alpha = 0}.

    Defaults are the paper's Fig. 3a–c setting (5-20-10-20-5, reference conductances, dt = 0.01 ms, 10 s); the quick
    configuration is a smaller, time-rescaled version (see ``theory/pal_alignment.md``).

    Each matrix's mean final angle over seeds must be below ``max_angle`` (25°: the authors' largest per-matrix mean
    at 10 s, B1's 20.7 ± 1.9°, plus 2 sd; ``pal_reference_fig3`` compares each matrix with their data), and every seed and matrix must end below ``max_angle_worst`` (30°: a
    third of the unaligned 90°; the quick run's worst is 18°) and never rise more than ``max_rise_tol`` (3°, twice the
    worst jitter of the quick run) above its running minimum: the angle decreases all along, not only between T/2 and T.
    """
    seeds = tuple(int(s) for s in seeds)
    n_seed, n_cond = len(seeds), len(CONDITIONS)
    n_pat = int(round(t_end / t_pres))
    base = model_cls(tau_xi=tau_xi, tau_hp=tau_hp, sigma=sigma, alpha=alpha, eta_bw=eta_bw, eta_fw=0.0)
    sig = jnp.array([sigma, 0.0, sigma])
    alp = jnp.array([alpha, alpha, 0.0])
    # one batch: condition-major, seed-minor; the same seed starts from the same weights in every condition
    sig_b, alp_b = jnp.repeat(sig, n_seed), jnp.repeat(alp, n_seed)
    model = jax.tree.map(lambda a: jnp.broadcast_to(a, (n_cond * n_seed,)), base)
    model = eqx.tree_at(lambda m: (m.sigma, m.alpha), model, (sig_b, alp_b))
    sizes = tuple(int(n) for n in sizes)
    states = _uniform_states(sizes, seeds, base)
    inputs = jnp.asarray(np.stack([np.random.default_rng(5000 + s).uniform(-1.0, 1.0, (n_pat, sizes[0])) for s in seeds]))
    rep = lambda tree: jax.tree.map(lambda a: jnp.concatenate([a] * n_cond), tree)
    noise_keys = jnp.concatenate([jnp.stack([jax.random.key(9000 + s) for s in seeds])] * n_cond)
    _, (ang, nrm) = simulate_pal(model, rep(states), rep(inputs), key=noise_keys, t_pres=t_pres, dt=dt, solver=solver, save_fn=_angles_and_norms, batched=True)
    ang0, nrm0 = jax.vmap(lambda st: _angles_and_norms(0.0, st, None))(rep(states))
    idx, ang = _thinned(ang0, ang, n_pat, n_save)
    _, nrm = _thinned(nrm0, nrm, n_pat, n_save)
    time_ms = idx * t_pres
    shape = (n_cond, n_seed, idx.size, len(sizes) - 2)
    ds = xr.Dataset(
        {"angle": (("condition", "seed", "time", "matrix"), ang.reshape(shape)), "norm_B": (("condition", "seed", "time", "matrix"), nrm.reshape(shape))},
        coords={"condition": list(CONDITIONS), "seed": list(seeds), "time": time_ms / 1000.0, "matrix": [f"B{l}" for l in range(1, len(sizes) - 1)]},
        attrs={"time_units": "s (simulated)", "sizes": str(tuple(sizes)), "dt_ms": dt, "t_pres_ms": t_pres},
    )
    pal = ds.sel(condition="pal")
    start = float(pal.angle.isel(time=0).mean())
    final_per_matrix = pal.angle.isel(time=-1).mean("seed").values
    max_rise, worst, off_final, growth_a0, growth_pal = _alignment_measures(ds)
    ds["final_angle_per_matrix"] = ("matrix", final_per_matrix)
    # angles in degrees; growths are |B(T)|/|B(T/2)|
    verdict = Verdict.from_criteria(
        start_angle=within(start, 90.0, start_angle_tol),  # random B: about 90 deg from W^T
        final_angle_worst=below(worst, max_angle_worst),  # every seed and matrix
        max_rise_above_running_min=at_most(max_rise, max_rise_tol),  # decreasing all along, worst seed and matrix
        noise_off_final_angle=above(off_final, control_min_angle),  # no alignment without noise
        alpha_zero_norm_growth=above(growth_a0, alpha_zero_min_growth),  # no bound on |B| without alpha
        pal_norm_growth=below(growth_pal, pal_max_growth),  # |B| saturates with alpha > 0
        **{f"final_angle_B{i}": below(v, max_angle) for i, v in enumerate(final_per_matrix, start=1)},  # mean over seeds
    )
    return ds, verdict


# ----------------------------------------------------------------------------- pal_vs_fa_sign


def _chain_save(grid, teacher):
    def save(t, y: PALState, args):
        model = args[0]
        err = model.predict(y.network, grid) - teacher
        return jnp.stack([y.network.weights[0][0, 0], y.network.weights[1][0, 0], y.feedback[0][0, 0], 0.5 * jnp.mean(err**2)])

    return save


@functools.lru_cache(maxsize=None)
def _chain_problem(n_grid: int):
    grid = jnp.linspace(-1.0, 1.0, n_grid, dtype=jnp.float64)[:, None]
    return grid


@register_check(
    "pal_vs_fa_sign",
    family="pal",
    statement="1-1-1 chain whose backward weight starts with the wrong sign: PAL (B learned from noise while W learns) fits the teacher (loss < 5% of the best constant fit, B flips sign); FA (B fixed) stays no better than a constant",
    theory="theory/pal_vs_fa_sign.md",
    quick=dict(seeds=tuple(range(4)), t_end=3000.0),
    full=dict(seeds=tuple(range(10)), t_end=20_000.0, dt=0.05),
)
def pal_vs_fa_sign(
    *,
    seeds=tuple(range(4)),
    t_end: float = 3000.0,
    dt: float = 0.1,
    t_pres: float = 5.0,
    tau_xi: float = 0.5,
    tau_hp: float = 0.5,
    sigma: float = 0.5,
    alpha: float = 1e-3,
    eta_bw: float = 2.0,
    eta_fw: float = 0.02,
    teacher_weight: float = 2.0,
    n_save: int = 101,
    pal_max_loss_ratio: float = 0.05,
    fa_min_loss_ratio: float = 0.9,
    w1_tol: float = 0.2,
    model_cls=PAL,
):
    """Teacher ``w1 = w2 = 2`` (logistic hidden unit); student ``w1, w2, B ~ U(-1, 0)``; inputs ``x ~ U(-1, 1)``.

    Both conditions — PAL (``eta_bw > 0``) and FA (``eta_bw = 0``: the same SDE with B frozen) — run for the same
    seeds from the same initial weights, noise and inputs, in one compiled call.
    """
    seeds = tuple(int(s) for s in seeds)
    n_seed = len(seeds)
    n_pat = int(round(t_end / t_pres))
    base = model_cls(tau_xi=tau_xi, tau_hp=tau_hp, sigma=sigma, alpha=alpha, eta_bw=eta_bw, eta_fw=eta_fw, learn_bias=False)
    teacher_net = Network.from_matrices((jnp.full((1, 1), teacher_weight),) * 2, (jnp.zeros(1),) * 2, "logistic")
    grid = _chain_problem(41)
    teacher = base.predict(teacher_net, grid)
    def init(seed):
        w1, w2, b = (jnp.asarray(v).reshape(1, 1) for v in np.random.default_rng(2000 + seed).uniform(-1.0, 0.0, 3))
        net = Network.from_matrices((w1, w2), (jnp.zeros(1), jnp.zeros(1)), "logistic")
        return pal_state(base, net, (b,))

    states = jax.tree.map(lambda *a: jnp.stack(a), *[init(s) for s in seeds])
    inputs = jnp.asarray(np.stack([np.random.default_rng(6000 + s).uniform(-1.0, 1.0, (n_pat, 1)) for s in seeds]))
    targets = base.predict(teacher_net, inputs)
    rep = lambda tree: jax.tree.map(lambda a: jnp.concatenate([a, a]), tree)
    model = jax.tree.map(lambda a: jnp.broadcast_to(a, (2 * n_seed,)), base)
    model = eqx.tree_at(lambda m: m.eta_bw, model, jnp.repeat(jnp.array([eta_bw, 0.0]), n_seed))
    noise_keys = rep(jnp.stack([jax.random.key(9000 + s) for s in seeds]))
    _, saved = simulate_pal(
        model, rep(states), rep(inputs), rep(targets), key=noise_keys, t_pres=t_pres, dt=dt, save_fn=_chain_save(grid, teacher), batched=True
    )
    saved0 = np.stack([np.asarray(_chain_save(grid, teacher)(0.0, jax.tree.map(lambda a: a[i], states), (base, None))) for i in range(n_seed)])
    idx, saved = _thinned(np.concatenate([saved0, saved0]), saved, n_pat, n_save)
    saved = saved.reshape(2, n_seed, idx.size, 4)
    names = ["w1", "w2", "B", "loss"]
    ds = xr.Dataset(
        {n: (("rule", "seed", "time"), saved[..., i]) for i, n in enumerate(names)},
        coords={"rule": ["pal", "fa"], "seed": list(seeds), "time": idx * t_pres / 1000.0},
        attrs={"time_units": "s (simulated)", "teacher_weight": teacher_weight},
    )
    # a student with w1 <= 0 computes a non-increasing function of x; the teacher increases, so the best such student
    # is the constant mean, whose loss is half the teacher's variance on the grid: the floor FA cannot beat
    floor = float(0.5 * jnp.var(teacher))
    ds.attrs["constant_fit_loss"] = floor
    final = ds.loss.isel(time=-1) / floor
    pal_ratio = float(final.sel(rule="pal").max())
    fa_ratio = float(final.sel(rule="fa").min())
    pal_b = float(ds.B.sel(rule="pal").isel(time=-1).min())
    w1_pal = ds.w1.sel(rule="pal").isel(time=-1).values
    # loss ratios are final loss / best constant fit (worst PAL seed, best FA seed); the teacher's w1 is teacher_weight
    verdict = Verdict.from_criteria(
        pal_loss_vs_constant_fit_worst=below(pal_ratio, pal_max_loss_ratio),
        fa_loss_vs_constant_fit_best=above(fa_ratio, fa_min_loss_ratio),  # FA no better than a constant
        pal_final_B_min=above(pal_b, 0.0),  # PAL flips the sign of B
        fa_final_w1_max=below(ds.w1.sel(rule="fa").isel(time=-1).max(), 0.0),  # FA drives w1 the wrong way
        pal_final_w1_worst=within(w1_pal[np.argmax(np.abs(w1_pal - teacher_weight))], teacher_weight, w1_tol * teacher_weight),
    )
    return ds, verdict
