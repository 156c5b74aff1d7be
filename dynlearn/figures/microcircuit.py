"""Figures and experiments for dendritic cortical microcircuits and Latent Equilibrium.

Theorem figures plot the datasets of the registered checks (``run_check`` is memoised). The experiments
(teacher-student regression, digits, bars with/without LE) live here: quick by default (seconds),
paper-scale with ``--full``.
"""

from __future__ import annotations

import dataclasses
import json
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ..models.microcircuit import Microcircuit, PatternStream, Plasticity, plastic_weights, preset, simulate_learning, with_weights
from ..theorems import run_check
from . import register_figure
from ._plot import new_figure, slope_guide, verdict_title

# ----------------------------------------------------------------------------- theorem figures


def _check(name: str, quick: bool, seed: int):
    """``run_check`` exactly as ``dynlearn check`` calls it (seed 0: no override), so the memoised result is reused."""
    return run_check(name, quick=quick) if seed == 0 else run_check(name, quick=quick, seed=seed)


@register_figure("mc_sps", "Self-predicting state: exact SPS silences the apical dendrites; lateral plasticity learns it")
def fig_mc_sps(quick: bool = True, seed: int = 0):
    exact = _check("mc_sps_exact", quick, seed)
    learned = _check("mc_sps_learned", quick, seed)
    fig, (a, b) = new_figure(2, width=4.4)
    for p in exact.data.preset.values:
        a.semilogy(exact.data.time, exact.data.apical_during_relaxation.sel(preset=p), marker=".", label=f"closed-form SPS ({p})")
    a.axhline(1e-8, color="0.5", ls=":", lw=1, label="tolerance 1e-8")
    a.set_xlabel(r"time [$\tau_{\mathrm{eff}}$]")
    a.set_ylabel(r"max $|v_A|$ (no target)")
    a.legend(fontsize=7)
    verdict_title(a, "exact SPS: relaxation from random potentials", exact.passed)
    ds = learned.data
    b.semilogy(ds.time / 1000.0, ds.mean_apical_sq_test, marker="o", label="learned (Eqs. 8-9)")
    b.axhline(ds.mean_apical_sq_test.values[0] / 10, color="0.5", ls=":", lw=1, label="10x below start")
    b.set_xlabel("simulated time [s]")
    b.set_ylabel(r"held-out mean $\|v_A\|^2$")
    b.legend(fontsize=7)
    verdict_title(b, f"learning the SPS (drop {learned.verdict.measured['drop_factor']:.0f}x)", learned.passed)
    data = xr.merge([exact.data.rename(time="time_exact"), learned.data.rename(time="time_learning")], compat="override", combine_attrs="drop")
    return fig, data, {"checks": ["mc_sps_exact", "mc_sps_learned"]}


@register_figure("mc_error_vs_lambda", "Weak-feedback limit: microcircuit updates vs BP/FA and the apical error code, against lambda")
def fig_mc_error_vs_lambda(quick: bool = True, seed: int = 0):
    bp = _check("mc_bp_alignment", quick, seed)
    ap = _check("mc_apical_error", quick, seed)
    lam = bp.data.lam.values
    fig, (a, b) = new_figure(2, width=4.4)
    for k in bp.data.layer.values:
        a.loglog(lam, bp.data.one_minus_cos_bp.sel(layer=k), "o-", label=f"1 - cos(dW, BP), layer {k}")
        a.loglog(lam, 1 - bp.data.cos_fa.sel(layer=k), "s--", label=f"1 - cos(dW, FA), layer {k} (random B)")
    slope_guide(a, lam, float(bp.data.one_minus_cos_bp.isel(lam=0).min()), 4.0, label="slope 4")
    a.set_xlabel(r"feedback strength $\lambda = g_A/g_B = g_{som}/g_B$")
    a.set_ylabel("1 - cosine")
    a.legend(fontsize=6)
    verdict_title(a, "hidden updates vs BP / FA", bp.passed)
    for k in ap.data.layer.values:
        b.loglog(lam, ap.data.apical_rel_err.sel(layer=k), "o-", label=f"layer {k}")
    slope_guide(b, lam, float(ap.data.apical_rel_err.isel(lam=0).min()), 1.0, label="slope 1")
    b.set_xlabel(r"$\lambda$")
    b.set_ylabel(r"$\|v_A - \kappa B (r - r^-)\| / \|\kappa B (r - r^-)\|$")
    b.legend(fontsize=7)
    verdict_title(b, "apical potential = projected error", ap.passed)
    data = xr.merge([bp.data, ap.data], combine_attrs="drop")
    return fig, data, {"checks": ["mc_bp_alignment", "mc_apical_error"]}


@register_figure("le_tracking", "Latent Equilibrium: prospective output tracks an input step instantly; standard rates lag depth x tau")
def fig_le_tracking(quick: bool = True, seed: int = 0):
    res = _check("le_instantaneous", quick, seed)
    ds = res.data
    fig, (a, b) = new_figure(2, width=4.4)
    for d in ds.depth.values:
        line = a.plot(ds.time, ds.rel_err.sel(depth=d, coding="standard"), label=f"standard, depth {d}")[0]
        a.axvline(d * ds.attrs["tau"], color=line.get_color(), ls=":", lw=0.8)
    a.plot(ds.time, np.maximum(ds.rel_err.sel(coding="prospective").max("depth"), 0), "k-", lw=2, label="prospective (LE), all depths")
    a.set_xlabel(r"time after the input step [$\tau$]")
    a.set_ylabel(r"$\|out(t) - f_{ff}(x(t))\| / \|\Delta f_{ff}\|$")
    a.set_xlim(0, 4 * max(ds.depth.values) + 2)
    a.legend(fontsize=7)
    verdict_title(a, "output error after an input step", res.passed)
    b.semilogy(ds.time, np.maximum(ds.rel_err.sel(coding="prospective").max("depth"), 1e-17), "k-", label="prospective (LE)")
    for d in ds.depth.values:
        b.semilogy(ds.time, ds.rel_err.sel(depth=d, coding="standard"), label=f"standard, depth {d}")
    b.axhline(1e-9, color="0.5", ls=":", lw=1, label="tolerance 1e-9")
    b.set_ylim(1e-17, 2)
    b.set_xlabel(r"time [$\tau$]")
    b.set_ylabel("relative output error (log)")
    b.legend(fontsize=7)
    verdict_title(b, f"lag / (depth tau): {res.verdict.measured['lag_over_depth_tau_min']:.2f}-{res.verdict.measured['lag_over_depth_tau_max']:.2f}")
    return fig, ds, {"check": "le_instantaneous"}


# ----------------------------------------------------------------------------- teacher-student regression


def sacramento_teacher(key, n_in: int = 30, n_hidden: int = 20, n_out: int = 10, k10: float = 2.0, k21: float = 10.0, activation: str = "sacramento_softplus"):
    r"""The teacher of Sacramento et al. (2018, NeurIPS 31, §3.2): target potentials
    :math:`u^{trgt} = k_{21} W^{trgt}_{21}\,\varphi(k_{10} W^{trgt}_{10} r_0)`, weights ~ U(-1, 1); the target rates are
    :math:`r^{trgt} = \varphi(u^{trgt})` with the soft-plus :math:`\varphi(u) = 0.1\log(1 + e^{u - 3})`.
    Returns ``u_trgt(x)``."""
    from ..networks import activation as act

    phi = act(activation)
    k1, k2 = jax.random.split(key)
    w10 = jax.random.uniform(k1, (n_hidden, n_in), minval=-1.0, maxval=1.0)
    w21 = jax.random.uniform(k2, (n_out, n_hidden), minval=-1.0, maxval=1.0)
    return lambda x: k21 * phi(k10 * x @ w10.T) @ w21.T


def _save_plastic(t, y, args):
    return {"weights": y[1]["weights"], "biases": y[1]["biases"], "w_ip": y[1]["w_ip"], "b_ip": y[1]["b_ip"], "w_pi": y[1]["w_pi"]}


TS_LEARNERS = {
    # name: (hidden layer learns, top-down = W^T at every instant, prospective (LE) rates)
    "microcircuit_fa": (True, False, True),
    "microcircuit_wt": (True, True, True),
    "shallow": (False, False, True),
    "microcircuit_fa_no_le": (True, False, False),
}


def teacher_student_experiment(
    *,
    quick: bool = True,
    seed: int = 0,
    n_seeds: int | None = None,
    n_patterns: int | None = None,
    learners: tuple[str, ...] | None = None,
    t_pres: float = 20.0,
    dt: float = 1.0,
    eta_out: float = 0.5,
    eta_hidden: float = 2.0,
    eta_lateral: float = 0.5,
    hidden_scale: float = 3.8,
    output_scale: float = 0.5,
    le_iterations: int = 5,
    n_snap: int | None = None,
    n_test: int = 200,
    preset_name: str = "bern",
):
    r"""Nonlinear teacher-student regression of Sacramento et al. (2018) §3.2, learned in continuous time.

    A 30-50-10 microcircuit (soft-plus rates, start in the SPS, fixed random top-down B) learns from a 30-20-10
    teacher (:func:`sacramento_teacher`); patterns (inputs ~ U(-1, 1)) change every ``t_pres`` ms and every weight
    (forward, W_IP, W_PI) learns at every instant (no phases), Euler steps ``dt``. Learners (:data:`TS_LEARNERS`):
    ``microcircuit_fa`` (fixed random B: feedback alignment), ``microcircuit_wt`` (B = W^T at every instant),
    ``shallow`` (the hidden weights stay fixed: only the output layer learns), and, with ``quick=False``,
    ``microcircuit_fa_no_le`` (the same circuit with the original, non-prospective rates).

    Initial weights: ``W_1 ~ U(-hidden_scale, hidden_scale)`` (3.8 = k_10 / g_B-attenuation: the student's
    hidden drive has the teacher's spread), ``W_2 ~ U(-output_scale, output_scale)``, biases 0. Learning rates
    per ms: ``eta_out`` (output layer), ``eta_hidden`` (hidden layer), ``eta_lateral`` (W_IP and W_PI).

    Returns an xarray Dataset with dims ``(learner, seed, time)``: ``test_mse`` = mean over ``n_test`` held-out
    inputs of ``||r_2 - r_trgt||^2`` at the free (no target), noise-free steady state, relaxed from the learned
    weights at each snapshot.
    """
    from ..networks import activation as act

    n_seeds = n_seeds or (2 if quick else 5)
    n_patterns = n_patterns or (1500 if quick else 20_000)
    n_snap = n_snap or (6 if quick else 21)
    learners = tuple(learners or (("microcircuit_fa", "microcircuit_wt", "shallow") if quick else tuple(TS_LEARNERS)))
    phi = act("sacramento_softplus")
    params = preset(preset_name).as_arrays()
    sizes = (30, 50, 10)
    kt, kx, kxt = jax.random.split(jax.random.key(seed), 3)
    teacher = sacramento_teacher(kt)
    x = jax.random.uniform(kx, (n_patterns, sizes[0]), minval=-1.0, maxval=1.0)
    x_test = jax.random.uniform(kxt, (n_test, sizes[0]), minval=-1.0, maxval=1.0)
    u_trgt, r_test = teacher(x), phi(teacher(x_test))
    stream = PatternStream(x, u_trgt, t_pres)
    t1 = n_patterns * t_pres
    ts = jnp.linspace(0.0, t1, n_snap)
    seed_keys = jax.random.split(jax.random.key(seed + 1), n_seeds)

    def student(key, prospective):
        m = Microcircuit.create(
            sizes, key=key, params=params, activation="sacramento_softplus", output_activation="sacramento_softplus",
            top_down="random", prospective=prospective, le_iterations=le_iterations,
        )
        w1 = jax.random.uniform(jax.random.fold_in(key, 1), m.weights[0].shape, minval=-hidden_scale, maxval=hidden_scale)
        w2 = jax.random.uniform(jax.random.fold_in(key, 2), m.weights[1].shape, minval=-output_scale, maxval=output_scale)
        return eqx.tree_at(lambda q: q.weights, m, (w1, w2))

    def run(key, eta_h, transpose, prospective):
        m = with_weights(student(key, prospective), plastic_weights(student(key, prospective)), transpose).self_predicting()
        plast = Plasticity(eta_fw=(eta_h, eta_out), eta_ip=eta_lateral, eta_pi=eta_lateral, transpose_top_down=transpose)
        _, traj = simulate_learning(m, plast, stream, t1=t1, dt=dt, ts=ts, save_fn=_save_plastic, throw=False)
        return traj.ys

    def evaluate(key, transpose, w):
        # the free steady state does not depend on LE (u-dot = 0 there): relax the non-prospective circuit
        m = with_weights(student(key, False), {**plastic_weights(student(key, False)), **w}, transpose)
        eq = m.equilibrium(x_test, jnp.zeros((n_test, sizes[-1])), jnp.asarray(0.0), tol=1e-7, rtol=1e-6, atol=1e-8, t1=1e4, max_steps=4096, throw=False)
        err = jnp.mean(jnp.sum((phi(eq.state[0][-1]) - r_test) ** 2, -1))
        return jnp.where(eq.status == 0, err, jnp.nan)

    start = time.perf_counter()
    mse = np.full((len(learners), n_seeds, n_snap), np.nan)
    for prospective in (True, False):
        names = [n for n in learners if TS_LEARNERS[n][2] == prospective]
        if not names:
            continue
        # every learner with the same coding in one compiled, vmapped solve: (learner, seed) flattened
        eta_h = jnp.repeat(jnp.asarray([eta_hidden if TS_LEARNERS[n][0] else 0.0 for n in names]), n_seeds)
        transpose = jnp.repeat(jnp.asarray([1.0 if TS_LEARNERS[n][1] else 0.0 for n in names]), n_seeds)
        keys = jnp.tile(seed_keys, (len(names),))
        ys = eqx.filter_jit(eqx.filter_vmap(run, in_axes=(0, 0, 0, None)))(keys, eta_h, transpose, prospective)
        per_snap = eqx.filter_vmap(evaluate, in_axes=(None, None, 0))
        errs = eqx.filter_jit(eqx.filter_vmap(per_snap))(keys, transpose, ys)
        errs = np.asarray(errs).reshape(len(names), n_seeds, n_snap)
        for i, n in enumerate(names):
            mse[learners.index(n)] = errs[i]
    seconds = time.perf_counter() - start
    baseline = float(jnp.mean(jnp.sum((r_test - r_test.mean(0)) ** 2, -1)))
    return xr.Dataset(
        {"test_mse": (("learner", "seed", "time"), mse)},
        coords={"learner": list(learners), "seed": np.arange(n_seeds), "time": np.asarray(ts) / 1000.0},
        attrs={
            "time_unit": "s (simulated)",
            "patterns": n_patterns,
            "t_pres_ms": t_pres,
            "dt_ms": dt,
            "tau_eff_ms": float(params.tau_hidden),
            "eta_out": eta_out,
            "eta_hidden": eta_hidden,
            "eta_lateral": eta_lateral,
            "le_iterations": le_iterations,
            "mse_of_mean_predictor": baseline,
            "wall_seconds": seconds,
            "simulated_seconds_per_run": t1 / 1000.0,
            "seed": seed,
        },
    )


TS_LABELS = {
    "microcircuit_fa": "microcircuit, random B (FA)",
    "microcircuit_wt": "microcircuit, B \u2225 W$^T$",
    "shallow": "shallow (output layer only)",
    "microcircuit_fa_no_le": "microcircuit FA, no LE",
}


@register_figure("mc_teacher_student", "Nonlinear teacher-student regression (Sacramento et al. 2018): microcircuit (FA, W^T) vs shallow learner")
def fig_mc_teacher_student(quick: bool = True, seed: int = 0):
    ds = teacher_student_experiment(quick=quick, seed=seed)
    fig, (a,) = new_figure(1, width=5.6)
    styles = {"microcircuit_fa": "-", "microcircuit_wt": "-.", "shallow": "--", "microcircuit_fa_no_le": ":"}
    for name in ds.learner.values:
        m = ds.test_mse.sel(learner=name)
        final = float(m.isel(time=-1).mean("seed"))
        a.plot(ds.time, m.mean("seed"), styles[str(name)], lw=2, label=f"{TS_LABELS[str(name)]}: {final:.3f}")
        a.fill_between(ds.time, m.min("seed"), m.max("seed"), alpha=0.2)
    a.axhline(ds.attrs["mse_of_mean_predictor"], color="0.5", ls=":", lw=1, label="predict the mean rate")
    a.set_yscale("log")
    a.set_xlabel("simulated time [s]")
    a.set_ylabel(r"test $\|r_2 - r^{trgt}\|^2$ (free steady state)")
    a.set_title(
        f"teacher 30-20-10, student 30-50-10, LE rates, T_pres = {ds.attrs['t_pres_ms']:g} ms = {ds.attrs['t_pres_ms'] / ds.attrs['tau_eff_ms']:.1f} tau_eff, {ds.sizes['seed']} seeds (band: min-max)", fontsize=7
    )
    a.legend(fontsize=7)
    return fig, ds, {"quick": quick}


# ----------------------------------------------------------------------------- digits vs BP


DIGITS_LR = {"microcircuit": 3e-2, "microcircuit_bp": 3e-2, "bp": 3e-2}


def digits_experiment(*, quick: bool = True, seed: int = 0, epochs: int | None = None, lrs: dict | None = None):
    """scikit-learn digits, 64-64-10: the microcircuit learner (steady-state ODE inference; random top-down = FA, or
    top-down = W^T) vs BP, same optimiser (Adam, batch 32). Learning rates (:data:`DIGITS_LR`): each learner's best of
    {3e-3, 1e-2, 3e-2} after 40 epochs (seed 0)."""
    from ..data import load_digits
    from ..learning import train
    from ..models import get_learner

    data = load_digits(seed=seed)
    epochs = epochs or (4 if quick else 40)
    lrs = {**DIGITS_LR, **(lrs or {})}
    hidden = (64,)
    runs = {}
    for name, learner in (
        ("microcircuit", get_learner("microcircuit", top_down="random")),
        ("microcircuit_bp", get_learner("microcircuit", top_down="transpose")),
        ("bp", get_learner("bp", activation="logistic")),
    ):
        start = time.perf_counter()
        _, hist = train(learner, data, hidden=hidden, epochs=epochs, batch_size=32, lr=lrs[name], seed=seed, progress=False)
        hist.attrs["wall_seconds"] = time.perf_counter() - start
        runs[name] = hist
    acc = np.array([runs[k].test_accuracy.values for k in runs])
    secs = np.array([runs[k].attrs["wall_seconds"] for k in runs])
    return xr.Dataset(
        {"test_accuracy": (("learner", "epoch"), acc), "wall_seconds": ("learner", secs), "lr": ("learner", [lrs[k] for k in runs])},
        coords={"learner": list(runs), "epoch": np.arange(1, epochs + 1)},
        attrs={"hidden": str(hidden), "batch_size": 32, "optimizer": "adam"},
    )


@register_figure("mc_digits", "scikit-learn digits: microcircuit (FA and W^T top-down) vs backprop")
def fig_mc_digits(quick: bool = True, seed: int = 0):
    ds = digits_experiment(quick=quick, seed=seed)
    fig, (a,) = new_figure(1, width=5.0)
    labels = {"microcircuit": "microcircuit, random B (FA)", "microcircuit_bp": "microcircuit, B = W^T", "bp": "backprop"}
    for k in ds.learner.values:
        acc = 100 * ds.test_accuracy.sel(learner=k)
        last = float(acc[-5:].mean())
        a.plot(ds.epoch, acc, "o-", ms=3, label=f"{labels[str(k)]} (lr {float(ds.lr.sel(learner=k)):g}): last {min(5, ds.sizes['epoch'])} epochs {last:.1f}%")
    a.set_xlabel("epoch")
    a.set_ylabel("test accuracy [%]")
    a.set_title("digits, 64-64-10, Adam, batch 32 (360 test images)", fontsize=9)
    a.legend(fontsize=7)
    return fig, ds, {"quick": quick}


# ----------------------------------------------------------------------------- bars: presentation time with and without LE


def bars_dataset(low: float = 0.1, high: float = 1.0):
    """The 3x3 "bars" images of Haider et al. (2021, NeurIPS 34): three horizontal and three vertical bars and the
    two diagonals (pixels 1 on the bar, 0 elsewhere), three classes; target potentials ``high`` for the class and
    ``low`` otherwise. Returns ``(x (8, 9), labels (8,), targets (8, 3))``."""
    images, labels = [], []
    for i in range(3):
        h = np.zeros((3, 3))
        h[i] = 1.0
        images += [h, h.T]
        labels += [0, 1]
    images += [np.eye(3), np.eye(3)[::-1]]
    labels += [2, 2]
    order = np.argsort(labels, kind="stable")
    x = np.array([images[i].ravel() for i in order])
    labels = np.array(labels)[order]
    targets = np.full((len(labels), 3), low)
    targets[np.arange(len(labels)), labels] = high
    return x, labels, targets


def bars_experiment(
    *,
    quick: bool = True,
    seed: int = 0,
    ratios=None,
    epochs: int | None = None,
    n_seeds: int | None = None,
    steps_per_pattern: int | None = None,
    eta_hidden: float = 1.0,
    eta_out: float = 0.5,
    eta_ip: float = 0.4,
    n_snap: int = 6,
    le_iterations: int = 5,
    activation: str = "softplus",
    codings=("LE", "standard"),
    preset_name: str = "bern",
):
    r"""Learning the bars task (9-30-3 microcircuit) with patterns presented for ``T_pres``, with and without LE.

    Haider et al. (2021) §5 (microcircuits): the network starts in the SPS, everything learns at every instant
    (forward weights and W_IP; W_PI and the random top-down B fixed), the output is nudged toward target potentials
    (1.0 for the class, 0.1 otherwise). The swept variable is ``T_pres / tau_eff``, realised by the membrane time
    constant (``c_m``) at a fixed ``T_pres`` = 1 time unit, so all ratios run in one vmapped solve; Euler with
    ``steps_per_pattern`` steps per pattern. Learning rates scale as ``1 / T_pres`` (the per-pattern change is the
    same for every ratio, as in the reference configurations): ``eta_hidden``, ``eta_out``, ``eta_ip`` per ``T_pres``.

    Measured at ``n_snap`` epochs: the *real-time* validation accuracy (all 8 patterns presented for ``T_pres`` each
    in a random order without target or plasticity, the output potential averaged over each presentation, the
    predicted class its argmax; the scored sequence is preceded by one unscored pattern) and the *steady-state*
    accuracy of the learned weights (output of the relaxed circuit), plus the MSE of the averaged output to the targets.
    """
    ratios = np.asarray(ratios if ratios is not None else ((0.5, 1.0, 2.0, 10.0) if quick else (0.2, 0.5, 1.0, 2.0, 5.0, 20.0, 50.0, 100.0)), float)
    epochs = epochs or (100 if quick else 300)
    n_seeds = n_seeds or (2 if quick else 4)
    steps_per_pattern = steps_per_pattern or (25 if quick else 250)
    x_np, labels, targets = bars_dataset()
    x, y = jnp.asarray(x_np), jnp.asarray(targets)
    n_pat = x.shape[0]
    base = preset(preset_name)
    g_max = max(float(base.g_hidden), float(base.g_inter), float(base.g_out_free + base.g_som))
    if steps_per_pattern < 2.5 * g_max / float(base.g_hidden) * ratios.max():
        raise ValueError(f"steps_per_pattern = {steps_per_pattern} is too few for T_pres/tau = {ratios.max():g} (Euler needs dt/tau <= 0.4)")
    t_pres, dt = 1.0, 1.0 / steps_per_pattern
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(n_pat) for _ in range(epochs)])
    stream = PatternStream(x[order], y[order], t_pres)
    t1 = len(order) * t_pres
    snap_epochs = np.unique(np.linspace(0, epochs, n_snap).round().astype(int))
    ts = jnp.asarray(snap_epochs * n_pat * t_pres, float)
    val_order = np.concatenate([[rng.integers(n_pat)], rng.permutation(n_pat)])  # first pattern unscored
    val_stream = PatternStream(x[val_order], None, t_pres)
    val_ts = jnp.arange(1, len(val_order) * steps_per_pattern + 1) * dt
    plast = Plasticity(eta_fw=(eta_hidden, eta_out), eta_ip=eta_ip, eta_pi=0.0)
    frozen = Plasticity()
    seed_keys = jax.random.split(jax.random.key(seed + 1), n_seeds)

    def circuit(key, ratio, prospective):
        # tau_eff = c_m / g_hidden = T_pres / ratio
        params = base.replace(c_m=base.g_hidden * t_pres / ratio).as_arrays()
        return Microcircuit.create(
            (9, 30, 3), key=key, params=params, activation=activation, output_activation=activation, weight_scale=1.0, top_down="random",
            prospective=prospective, le_iterations=le_iterations,
        )

    def readout(t, y, args):
        # what the next stage would see: the prospective output potential with LE, the somatic one without
        model, _, inp, target, nudge = args
        return model.prospective_potentials(t, y[0], inp, target, nudge)[0][-1]

    def realtime_output(m):
        _, traj = simulate_learning(m, frozen, val_stream, t1=len(val_order) * t_pres, dt=dt, nudge=0.0, ts=val_ts, save_fn=readout, throw=False)
        return traj.ys.reshape(len(val_order), steps_per_pattern, -1).mean(1)[1:]

    def run(key, ratio, prospective):
        m = circuit(key, ratio, prospective)
        _, traj = simulate_learning(m, plast, stream, t1=t1, dt=dt, ts=ts, save_fn=_save_plastic, throw=False)
        return traj.ys

    def evaluate(key, ratio, prospective, w):
        m = circuit(key, ratio, prospective)
        m = eqx.tree_at(lambda q: (q.weights, q.biases, q.w_ip, q.b_ip, q.w_pi), m, (w["weights"], w["biases"], w["w_ip"], w["b_ip"], w["w_pi"]))
        out = realtime_output(m)
        target = y[val_order[1:]]
        lab = jnp.asarray(labels[val_order[1:]])
        acc_rt = jnp.mean(jnp.argmax(out, -1) == lab)
        mse_rt = jnp.mean(jnp.sum((out - target) ** 2, -1))
        # the steady state depends neither on LE nor on c_m: relax the standard circuit with the preset's c_m
        plain = dataclasses.replace(m, prospective=False, params=m.params.replace(c_m=jnp.asarray(base.c_m, float)))
        eq = plain.equilibrium(x, jnp.zeros_like(y), jnp.asarray(0.0), tol=1e-7, rtol=1e-6, atol=1e-8, t1=1e4 * t_pres, max_steps=4096, throw=False)
        acc_ss = jnp.where(eq.status == 0, jnp.mean(jnp.argmax(eq.state[0][-1], -1) == jnp.asarray(labels)), jnp.nan)
        return acc_rt, mse_rt, acc_ss

    start = time.perf_counter()
    codings = tuple(codings)
    shape = (len(codings), len(ratios), n_seeds, len(snap_epochs))
    acc_rt, mse_rt, acc_ss = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    keys = jnp.tile(seed_keys, (len(ratios),))
    rr = jnp.repeat(jnp.asarray(ratios), n_seeds)
    for c, prospective in enumerate(coding == "LE" for coding in codings):
        ys = eqx.filter_jit(eqx.filter_vmap(run, in_axes=(0, 0, None)))(keys, rr, prospective)
        per_snap = eqx.filter_vmap(evaluate, in_axes=(None, None, None, 0))
        res = eqx.filter_jit(eqx.filter_vmap(per_snap, in_axes=(0, 0, None, 0)))(keys, rr, prospective, ys)
        for arr, r in zip((acc_rt, mse_rt, acc_ss), res):
            arr[c] = np.asarray(r).reshape(len(ratios), n_seeds, len(snap_epochs))
    seconds = time.perf_counter() - start
    dims = ("coding", "t_pres_over_tau", "seed", "epoch")
    coords = {"coding": list(codings), "t_pres_over_tau": ratios, "seed": np.arange(n_seeds), "epoch": snap_epochs}
    return xr.Dataset(
        {"accuracy_realtime": (dims, acc_rt), "mse_realtime": (dims, mse_rt), "accuracy_steady_state": (dims, acc_ss)},
        coords=coords,
        attrs={
            "sizes": "9-30-3",
            "patterns": n_pat,
            "epochs": epochs,
            "steps_per_pattern": steps_per_pattern,
            "eta_per_t_pres": json.dumps(dict(hidden=eta_hidden, out=eta_out, ip=eta_ip, pi=0.0)),
            "le_iterations": le_iterations,
            "wall_seconds": seconds,
            "seed": seed,
        },
    )


@register_figure("mc_bars", "Bars task (Haider et al. 2021): with LE the microcircuit learns at T_pres ~ tau; without LE it needs T_pres >> tau")
def fig_mc_bars(quick: bool = True, seed: int = 0):
    ds = bars_experiment(quick=quick, seed=seed)
    fig, (a, b, c) = new_figure(3, width=4.0)
    final = ds.isel(epoch=-1)
    colors = {"LE": "C0", "standard": "C3"}
    labels = {"LE": "with LE (prospective rates)", "standard": "without LE (original)"}
    for coding in ds.coding.values:
        col, lab = colors[str(coding)], labels[str(coding)]
        mse = final.mse_realtime.sel(coding=coding)
        a.loglog(ds.t_pres_over_tau, mse.mean("seed"), "o-", color=col, label=lab)
        a.fill_between(ds.t_pres_over_tau, mse.min("seed"), mse.max("seed"), color=col, alpha=0.2)
        acc = 100 * final.accuracy_realtime.sel(coding=coding)
        b.semilogx(ds.t_pres_over_tau, acc.mean("seed"), "o-", color=col, label=lab)
        b.fill_between(ds.t_pres_over_tau, acc.min("seed"), acc.max("seed"), color=col, alpha=0.2)
    for ax in (a, b):
        ax.axvline(1.0, color="0.5", ls=":", lw=1)
        ax.set_xlabel(r"presentation time $T_{pres}/\tau_{eff}$")
    a.set_ylabel("validation MSE of the output (real time)")
    a.set_title(f"after {ds.attrs['epochs']} epochs", fontsize=9)
    a.legend(fontsize=7)
    b.axhline(100 / 3, color="0.5", ls="--", lw=1, label="chance")
    b.set_ylabel("validation accuracy [%] (real time)")
    b.set_ylim(0, 105)
    b.set_title(f"{ds.sizes['seed']} seeds (band: min-max)", fontsize=9)
    b.legend(fontsize=7)
    r1 = float(ds.t_pres_over_tau.sel(t_pres_over_tau=1.0, method="nearest"))
    for coding in ds.coding.values:
        curve = ds.mse_realtime.sel(coding=coding, t_pres_over_tau=r1)
        c.semilogy(ds.epoch, curve.mean("seed"), "o-", color=colors[str(coding)], label=f"{labels[str(coding)]}, T_pres = {r1:g} tau")
    c.set_xlabel("epoch (8 patterns)")
    c.set_ylabel("validation MSE (real time)")
    c.set_title("learning at T_pres = tau", fontsize=9)
    c.legend(fontsize=7)
    return fig, ds, {"quick": quick}
