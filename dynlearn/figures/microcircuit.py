"""Figures and experiments for dendritic cortical microcircuits and Latent Equilibrium.

Theorem figures plot the datasets of the registered checks (``run_check`` is memoised). The experiments
(teacher-student regression, digits, bars with/without LE) live here: quick by default (seconds),
paper-scale with ``--full``.
"""

from __future__ import annotations

import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ..models.microcircuit import Microcircuit, PatternStream, Plasticity, preset, simulate_learning
from ..theorems import run_check
from . import register_figure
from ._plot import new_figure, slope_guide, verdict_title

# ----------------------------------------------------------------------------- theorem figures


@register_figure("mc_sps", "Self-predicting state: exact SPS silences the apical dendrites; lateral plasticity learns it")
def fig_mc_sps(quick: bool = True, seed: int = 0):
    exact = run_check("mc_sps_exact", quick=quick, seed=seed)
    learned = run_check("mc_sps_learned", quick=quick, seed=seed)
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
    bp = run_check("mc_bp_alignment", quick=quick, seed=seed)
    ap = run_check("mc_apical_error", quick=quick, seed=seed)
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
    res = run_check("le_instantaneous", quick=quick, seed=seed)
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


def teacher_targets(x, key, *, n_hidden=20, n_out=10, k10=2.0, k21=1.0, activation="logistic"):
    """Teacher after Sacramento et al. (2018): ``u_trgt = k21 W21 (phi(k10 W10 x) - 1/2)``, weights ~ U(-1, 1)
    (``W10`` scaled by sqrt(3 / n_in), so that ``k10`` is the standard deviation of the teacher's hidden drive).

    The targets are potentials of a linear output; the constant 1/2 removes the mean rate so that the task is
    the input-dependent part (the paper's targets are softplus rates of a 30-20-10 teacher with k21 = 10).
    """
    from ..networks import activation as act

    k1, k2 = jax.random.split(key)
    w10 = jax.random.uniform(k1, (n_hidden, x.shape[-1]), x.dtype, -1.0, 1.0) * np.sqrt(3.0 / x.shape[-1])
    w21 = jax.random.uniform(k2, (n_out, n_hidden), x.dtype, -1.0, 1.0)
    return k21 * (act(activation)(k10 * x @ w10.T) - 0.5) @ w21.T


def _save_forward(t, y, args):
    return {"weights": y[1]["weights"], "biases": y[1]["biases"], "w_ip": y[1]["w_ip"], "b_ip": y[1]["b_ip"], "w_pi": y[1]["w_pi"]}


def teacher_student_experiment(
    *, quick: bool = True, seed: int = 0, n_seeds: int | None = None, n_patterns: int | None = None, t_pres: float = 10.0, dt: float = 1.0, lr: float = 0.05, n_snap: int | None = None,
    hidden_lr_factor: float = 0.1, weight_gain: float = 3.0,
):
    """Continuous-time learning (no phases) of a 30-50-10 microcircuit from a 30-20-10 teacher, all plasticity on,
    fixed random top-down (feedback alignment), vs a shallow learner (only the output weights learn).

    Returns an xarray Dataset with dims ``(learner, seed, time)``: test MSE of the free steady-state output.
    """
    n_seeds = n_seeds or (3 if quick else 10)
    n_patterns = n_patterns or (2000 if quick else 50_000)
    params = preset("bern")
    sizes = (30, 50, 10)
    key = jax.random.key(seed)
    kt, kx, kxt = jax.random.split(key, 3)
    x = jax.random.uniform(kx, (n_patterns, 30), minval=-1.0, maxval=1.0)
    x_test = jax.random.uniform(kxt, (100, 30), minval=-1.0, maxval=1.0)
    y, y_test = teacher_targets(x, kt), teacher_targets(x_test, kt)
    stream = PatternStream(x, y, t_pres)
    t1 = n_patterns * t_pres
    n_snap = n_snap or (11 if quick else 41)
    ts = jnp.linspace(0.0, t1, n_snap)
    eta = lr / t_pres
    eta_h = hidden_lr_factor * eta

    def run(seed_key, eta_hidden):
        model = Microcircuit.create(sizes, key=seed_key, params=params.as_arrays(), top_down="random", lateral="sps", weight_scale=None, bias_scale=0.0)
        model = eqx.tree_at(lambda m: m.weights, model, (weight_gain * model.weights[0], model.weights[1])).self_predicting()
        plast = Plasticity(eta_fw=(eta_hidden, eta), eta_ip=eta, eta_pi=eta, tau_w=None)
        _, traj = simulate_learning(model, plast, stream, t1=t1, dt=dt, ts=ts, save_fn=_save_forward, throw=False)
        return traj.ys

    keys = jax.random.split(jax.random.key(seed + 1), n_seeds)
    start = time.perf_counter()
    runs = {}
    for name, eh in (("microcircuit", eta_h), ("shallow", 0.0)):
        runs[name] = eqx.filter_jit(eqx.filter_vmap(run, in_axes=(0, None)))(keys, jnp.asarray(eh))
    seconds = time.perf_counter() - start
    template = Microcircuit.create(sizes, key=keys[0], params=params.as_arrays(), top_down="random")  # structure only
    mse = np.zeros((2, n_seeds, n_snap))
    for i, name in enumerate(runs):
        for s in range(n_seeds):
            for j in range(n_snap):
                w = jax.tree.map(lambda a: a[s, j], runs[name])
                m = eqx.tree_at(lambda q: (q.weights, q.biases, q.w_ip, q.b_ip, q.w_pi), template, (w["weights"], w["biases"], w["w_ip"], w["b_ip"], w["w_pi"]))
                eq = m.equilibrium(x_test, jnp.zeros_like(y_test), jnp.asarray(0.0), tol=1e-5, rtol=1e-5, atol=1e-7, t1=1e4, throw=False)
                out = eq.state[0][-1]
                mse[i, s, j] = float(jnp.mean(jnp.sum((out - y_test) ** 2, -1))) if int(eq.status) == 0 else np.nan
    return xr.Dataset(
        {"test_mse": (("learner", "seed", "time"), mse)},
        coords={"learner": list(runs), "seed": np.arange(n_seeds), "time": np.asarray(ts) / 1000.0},
        attrs={
            "time_unit": "s (simulated)",
            "patterns": n_patterns,
            "t_pres_ms": t_pres,
            "dt_ms": dt,
            "wall_seconds_training": seconds,
            "simulated_seconds_per_run": t1 / 1000.0,
        },
    )


@register_figure("mc_teacher_student", "Nonlinear teacher-student regression: microcircuit (all plasticity, FA) vs shallow learner")
def fig_mc_teacher_student(quick: bool = True, seed: int = 0):
    ds = teacher_student_experiment(quick=quick, seed=seed)
    fig, (a,) = new_figure(1, width=5.0)
    for name, style in (("microcircuit", "-"), ("shallow", "--")):
        m = ds.test_mse.sel(learner=name)
        a.plot(ds.time, m.mean("seed"), style, lw=2, label=f"{name} (mean of {ds.sizes['seed']} seeds)")
        a.fill_between(ds.time, m.min("seed"), m.max("seed"), alpha=0.2)
    a.set_yscale("log")
    a.set_xlabel("simulated time [s]")
    a.set_ylabel("test MSE (free steady state)")
    final = ds.test_mse.isel(time=-1).mean("seed")
    a.set_title(f"teacher-student: final MSE {float(final.sel(learner='microcircuit')):.3g} vs shallow {float(final.sel(learner='shallow')):.3g}", fontsize=9)
    a.legend(fontsize=8)
    return fig, ds, {"quick": quick}


# ----------------------------------------------------------------------------- digits vs BP


def digits_experiment(*, quick: bool = True, seed: int = 0):
    """scikit-learn digits, 64-H-10: the microcircuit learner (steady-state ODE inference) vs BP, same optimiser."""
    from ..data import load_digits
    from ..learning import train
    from ..models import get_learner

    data = load_digits(seed=seed)
    epochs = 8 if quick else 40
    hidden = (64,) if quick else (100,)
    runs = {}
    for name, learner, lr in (
        ("microcircuit", get_learner("microcircuit", top_down="random"), 3e-3),
        ("microcircuit_bp", get_learner("microcircuit", top_down="transpose"), 3e-3),
        ("bp", get_learner("bp", activation="logistic"), 3e-3),
    ):
        start = time.perf_counter()
        _, hist = train(learner, data, hidden=hidden, epochs=epochs, batch_size=32, lr=lr, seed=seed, progress=False)
        hist.attrs["wall_seconds"] = time.perf_counter() - start
        runs[name] = hist
    acc = np.array([runs[k].test_accuracy.values for k in runs])
    secs = np.array([runs[k].attrs["wall_seconds"] for k in runs])
    return xr.Dataset(
        {"test_accuracy": (("learner", "epoch"), acc), "wall_seconds": ("learner", secs)},
        coords={"learner": list(runs), "epoch": np.arange(1, epochs + 1)},
        attrs={"hidden": str(hidden), "batch_size": 32, "optimizer": "adam"},
    )


@register_figure("mc_digits", "scikit-learn digits: microcircuit (FA and W^T top-down) vs backprop")
def fig_mc_digits(quick: bool = True, seed: int = 0):
    ds = digits_experiment(quick=quick, seed=seed)
    fig, (a,) = new_figure(1, width=5.0)
    labels = {"microcircuit": "microcircuit, random B (FA)", "microcircuit_bp": "microcircuit, B = W^T", "bp": "backprop"}
    for k in ds.learner.values:
        a.plot(ds.epoch, 100 * ds.test_accuracy.sel(learner=k), "o-", label=f"{labels[str(k)]}: {100 * float(ds.test_accuracy.sel(learner=k)[-1]):.1f}%")
    a.set_xlabel("epoch")
    a.set_ylabel("test accuracy [%]")
    a.set_title("digits (360 test images)", fontsize=9)
    a.legend(fontsize=8)
    return fig, ds, {"quick": quick}
