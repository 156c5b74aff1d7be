"""Figures for dendritic cortical microcircuits and Latent Equilibrium.

Theorem figures plot the datasets of the registered checks (``run_check`` is memoised); the experiment figures plot
the experiments of :mod:`dynlearn.experiments` (teacher-student regression, digits, bars with/without LE): quick by
default (seconds), paper-scale with ``--full``.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..experiments.bars import bars_experiment
from ..experiments.digits import digits_experiment
from ..experiments.teacher_student import teacher_student_experiment
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
    verdict_title(a, "LE output follows an input step at once;\nstandard rates lag depth × τ", res.passed)
    b.semilogy(ds.time, np.maximum(ds.rel_err.sel(coding="prospective").max("depth"), 1e-17), "k-", label="prospective (LE)")
    for d in ds.depth.values:
        b.semilogy(ds.time, ds.rel_err.sel(depth=d, coding="standard"), label=f"standard, depth {d}")
    b.axhline(1e-9, color="0.5", ls=":", lw=1, label="tolerance 1e-9")
    b.set_ylim(1e-17, 2)
    b.set_xlabel(r"time [$\tau$]")
    b.set_ylabel("relative output error (log)")
    b.legend(fontsize=7)
    verdict_title(b, r"lag / (depth $\tau$): " + f"{res.verdict.measured['lag_over_depth_tau_min']:.2f}–{res.verdict.measured['lag_over_depth_tau_max']:.2f}")
    return fig, ds, {"check": "le_instantaneous"}


# ----------------------------------------------------------------------------- experiments


TS_LABELS = {
    "microcircuit_fa": "microcircuit, random B (FA)",
    "microcircuit_wt": r"microcircuit, $B \parallel W^\top$",
    "shallow": "shallow (output layer only)",
    "microcircuit_fa_no_le": "microcircuit FA, no LE",
}


@register_figure("mc_teacher_student", "Nonlinear teacher-student regression (Sacramento et al. 2018): microcircuit (FA, transposed feedback) vs shallow learner")
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
        "the microcircuit learns the hidden layer: below the shallow learner\n"
        + "teacher 30-20-10, student 30-50-10, LE rates, " + r"$T_{\rm pres}$" + f" = {ds.attrs['t_pres_ms']:g} ms = {ds.attrs['t_pres_ms'] / ds.attrs['tau_eff_ms']:.1f} " + r"$\tau_{\rm eff}$" + f", {ds.sizes['seed']} seeds (band: min–max)", fontsize=8
    )
    a.legend(fontsize=7)
    return fig, ds, {"quick": quick}


@register_figure("mc_digits", "scikit-learn digits: microcircuit (FA and transposed top-down weights) vs backprop")
def fig_mc_digits(quick: bool = True, seed: int = 0):
    ds = digits_experiment(quick=quick, seed=seed)
    fig, (a,) = new_figure(1, width=5.0)
    labels = {"microcircuit": "microcircuit, random B (FA)", "microcircuit_bp": r"microcircuit, $B = W^\top$", "bp": "backprop"}
    for k in ds.learner.values:
        acc = 100 * ds.test_accuracy.sel(learner=k)
        last = float(acc[-5:].mean())
        a.plot(ds.epoch, acc, "o-", ms=3, label=f"{labels[str(k)]} (lr {float(ds.lr.sel(learner=k)):g}): last {min(5, ds.sizes['epoch'])} epochs {last:.1f}%")
    a.set_xlabel("epoch")
    a.set_ylabel("test accuracy [%]")
    last = {str(k): float(100 * ds.test_accuracy.sel(learner=k)[-5:].mean()) for k in ds.learner.values}
    gap = last["bp"] - min(last["microcircuit"], last["microcircuit_bp"])
    a.set_title(f"the microcircuit learns digits within {gap:.1f} points of backprop\n64-64-10, Adam, batch 32 (360 test images)", fontsize=9)
    a.legend(fontsize=7)
    return fig, ds, {"quick": quick}


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
    fig.suptitle(r"with LE the microcircuit learns at $T_{\rm pres} \approx \tau_{\rm eff}$; without LE it needs $T_{\rm pres} \gg \tau_{\rm eff}$", fontsize=10)
    a.legend(fontsize=7)
    b.axhline(100 / 3, color="0.5", ls="--", lw=1, label="chance")
    b.set_ylabel("validation accuracy [%] (real time)")
    b.set_ylim(0, 105)
    b.set_title(f"{ds.sizes['seed']} seeds (band: min-max)", fontsize=9)
    b.legend(fontsize=7)
    r1 = float(ds.t_pres_over_tau.sel(t_pres_over_tau=1.0, method="nearest"))
    for coding in ds.coding.values:
        curve = ds.mse_realtime.sel(coding=coding, t_pres_over_tau=r1)
        c.semilogy(ds.epoch, curve.mean("seed"), "o-", color=colors[str(coding)], label=f"{labels[str(coding)]}, " + r"$T_{\rm pres}$" + f" = {r1:g} " + r"$\tau$")
    c.set_xlabel("epoch (8 patterns)")
    c.set_ylabel("validation MSE (real time)")
    c.set_title(r"learning at $T_{\rm pres} = \tau_{\rm eff}$", fontsize=9)
    c.legend(fontsize=7)
    return fig, ds, {"quick": quick}
