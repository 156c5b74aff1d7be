"""Figures for predictive coding: one per theorem check, plus PC vs BP training on digits."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..theorems import run_check
from . import register_figure
from ._plot import (
    ROUNDOFF,
    energy_gap,
    log_floor,
    new_figure,
    pass_line,
    slope_guide,
    verdict_title,
)


@register_figure("pc_bp_limit", "PC's nudged update / gamma against BP's gradient: cosine and relative error vs gamma, per layer")
def fig_pc_bp_limit(quick: bool = True, seed: int = 0):
    r = run_check("pc_bp_limit", quick=quick)
    ds = r.data
    fig, (a, b) = new_figure(2)
    for layer in ds.layer.values:
        sel = ds.sel(layer=layer)
        a.loglog(ds.gamma, 1 - sel.cosine, "o-", ms=3, label=f"layer {layer}")
        b.loglog(ds.gamma, sel.relative_error, "o-", ms=3, label=f"layer {layer} (slope {float(sel.slope):.3f})")
    slope_guide(b, ds.gamma.values, float(ds.relative_error.isel(layer=0).values[0]) * 0.5, 1.0)
    slope_guide(a, ds.gamma.values, max(float((1 - ds.cosine).isel(layer=0).values[0]) * 0.5, 1e-300), 2.0)
    a.set(xlabel=r"output nudge $\gamma$", ylabel=r"$1 - \cos(\partial_W E/\gamma,\ \nabla_W L)$")
    b.set(xlabel=r"output nudge $\gamma$", ylabel=r"$\|\partial_W E/\gamma - \nabla_W L\| / \|\nabla_W L\|$")
    verdict_title(a, r"PC → BP as $\gamma \to 0$: $1-\cos = O(\gamma^2)$", r.passed)
    verdict_title(b, r"relative error is $O(\gamma)$ (slope 1)", r.passed)
    a.legend(fontsize=8)
    b.legend(fontsize=8)
    return fig, ds, {"check": "pc_bp_limit", "seed": seed}


@register_figure("pc_energy_descent", "PC energy and squared gradient norm along the inference flow, several random nets")
def fig_pc_energy_descent(quick: bool = True, seed: int = 0):
    r = run_check("pc_energy_descent", quick=quick)
    ds = r.data
    fig, (a, b) = new_figure(2)
    floors = []
    for s in ds.seed.values:
        sel = ds.sel(seed=s)
        gap, floor = energy_gap(ds.time, sel.energy, sel.grad_norm_sq)
        floors.append(floor)
        a.semilogy(ds.time, gap, lw=1.2, label=f"net {s}")
        b.semilogy(ds.time, sel.grad_norm_sq, lw=1.2, label=f"net {s}")
    a.axhline(max(floors), color="0.5", ls=":", lw=1, label=f"round-off floor ({ROUNDOFF:g}·|E|); values below are clipped to it")
    a.set(xlabel="inference time t", ylabel=r"$E(t) - E_\infty$")
    b.set(xlabel="inference time t", ylabel=r"$\|\partial E/\partial x\|^2 = -dE/dt$")
    rise = r.verdict.measured["max_relative_rise"]
    verdict_title(a, f"E never rises along the flow\n(max relative rise {rise:.1e} ≤ 1e-8)", r.passed)
    verdict_title(b, r"$-dE/dt = \|\partial E/\partial x\|^2 \geq 0$, decays exponentially", None)
    a.legend(fontsize=7, title=r"$E_\infty = E(T) - g(T)/k$, $g \propto e^{-kt}$", title_fontsize=7)
    return fig, ds, {"check": "pc_energy_descent", "seed": seed}


@register_figure("pc_fixed_point", "Spectrum of the PC flow's Jacobian at the clamped equilibrium (all Re < 0)")
def fig_pc_fixed_point(quick: bool = True, seed: int = 0):
    r = run_check("pc_fixed_point", quick=quick)
    ds = r.data
    fig, (a,) = new_figure(1, width=4.6)
    a.scatter(ds.eig_real, ds.eig_imag, s=14)
    a.axvline(0, color="k", lw=0.8)
    a.set(xlabel="Re λ", ylabel="Im λ")
    m = r.verdict.measured
    verdict_title(a, f"stable equilibrium: max Re λ = {m['max_real_eigenvalue']:.3f}\nresidual {m['polished_residual']:.1e}, spread {m['start_spread']:.1e}", r.passed)
    return fig, ds, {"check": "pc_fixed_point", "seed": seed}


@register_figure("pc_feedforward", "With the output free, PC relaxes to the feedforward pass: distance vs time")
def fig_pc_feedforward(quick: bool = True, seed: int = 0):
    r = run_check("pc_feedforward", quick=quick)
    ds = r.data
    fig, (a,) = new_figure(1, width=4.8, height=3.6)
    t_end = float(ds.time[-1])
    for s in ds.seed.values:
        (line,) = a.semilogy(ds.time, ds.distance_to_ff.sel(seed=s), label=f"net {s}: flow")
        polished, _ = log_floor([float(ds.final_distance.sel(seed=s))], 1e-17)
        a.semilogy([t_end], polished, "*", ms=9, color=line.get_color(), label=f"net {s}: Newton-polished equilibrium")
    pass_line(a, 1e-10, "criterion ≤ 1e-10 (on the polished equilibrium)")
    a.set(xlabel="inference time t", ylabel=r"$\max\,|x(t) - \hat x_{\rm ff}|$")
    flow_end = float(ds.distance_to_ff.isel(time=-1).max())
    final = r.verdict.measured["max_distance_to_feedforward"]
    verdict_title(a, f"free output → feedforward pass\nflow at t = {t_end:g}: {flow_end:.1e}; polished: {final:.1e}", r.passed)
    a.legend(fontsize=6.5, loc="lower left")
    return fig, ds, {"check": "pc_feedforward", "seed": seed}


@register_figure("pc_fixed_prediction_exact", "Fixed-prediction PC: residual vs time and the equilibrium error against BP's deltas")
def fig_pc_fixed_prediction(quick: bool = True, seed: int = 0):
    r = run_check("pc_fixed_prediction_exact", quick=quick)
    ds = r.data
    fig, (a, b) = new_figure(2)
    for s in ds.seed.values:
        res = ds.residual.sel(seed=s).values
        reached = np.isfinite(res)  # the relaxation stops at the steady state: later samples are NaN in the data
        a.semilogy(ds.time.values[reached], res[reached], label=f"net {s}")
    a.set(xlabel="inference time t", ylabel="max |dx/dt|")
    verdict_title(a, "linear inference converges exponentially", None)
    a.legend(fontsize=7)
    width, floor = 0.35, 1e-17
    layers = ds.layer.values
    err, zero_e = log_floor(ds.error_vs_delta.max("seed"), floor)
    upd, zero_u = log_floor(ds.update_vs_bp.max("seed"), floor)
    b.bar(layers - width / 2, err, width, label=r"$\|\epsilon_l + \delta_l\| / \|\delta_l\|$")
    b.bar(layers + width / 2, upd, width, label=r"$\|\Delta W_l - \nabla_{W_l} L\| / \|\nabla_{W_l} L\|$")
    for x0, zero in ((layers - width / 2, zero_e), (layers + width / 2, zero_u)):
        for xi in x0[zero]:
            b.annotate("0\n(exact)", (xi, floor), xytext=(0, 3), textcoords="offset points", ha="center", fontsize=7)
    b.set_yscale("log")
    b.set_ylim(floor / 3, 1e-8)
    pass_line(b, 1e-10, "criterion ≤ 1e-10")
    b.set(xlabel=f"layer (bars at {floor:g} are exactly 0)", ylabel="relative error (after Newton polish), max over nets", xticks=layers)
    verdict_title(b, "equilibrium errors = BP's deltas exactly", r.passed)
    b.legend(fontsize=7, loc="upper left")
    return fig, ds, {"check": "pc_fixed_prediction_exact", "seed": seed}


@register_figure("pc_digits", "PC vs BP on scikit-learn digits: test accuracy per epoch, same network and optimiser")
def fig_pc_digits(quick: bool = True, seed: int = 0):
    from ..data import load_digits
    from ..learning import train
    from ..rules import get_learner

    config = dict(hidden=(64, 64), epochs=8, lr=3e-3, batch_size=64) if quick else dict(hidden=(128, 128), epochs=30, lr=3e-3, batch_size=64)
    data = load_digits()
    pc = get_learner("pc")
    learners = {"pc": pc, "pc/clamped": get_learner("pc/clamped"), "bp": get_learner("bp", activation=pc.defaults["activation"])}
    hist = {name: train(learner, data, seed=seed, progress=False, **config)[1] for name, learner in learners.items()}
    names = list(learners)
    ds = xr.concat([hist[n].test_accuracy for n in names], dim="learner").to_dataset(name="test_accuracy")
    ds = ds.assign_coords(learner=names)
    ds["seconds_per_epoch"] = ("learner", [float(hist[n].seconds[1:].mean()) for n in names])
    fig, (a,) = new_figure(1, width=4.6)
    labels = {"pc": rf"PC, output nudged ($\gamma$ = {pc.defaults['nudge']:g})", "pc/clamped": "PC, output clamped", "bp": "BP"}
    for name in names:
        acc = ds.test_accuracy.sel(learner=name)
        a.plot(ds.epoch, 100 * acc, "o-", ms=3, label=f"{labels[name]}: {100 * float(acc[-1]):.1f}%")
    a.set(xlabel="epoch", ylabel="test accuracy (%)", ylim=(80, 100))
    sizes = "-".join(map(str, (64, *config["hidden"], 10)))
    gap = 100 * float(ds.test_accuracy.sel(learner="bp")[-1] - ds.test_accuracy.sel(learner="pc")[-1])
    verdict_title(a, f"PC trains as BP does: {gap:+.1f} points behind BP\ndigits, {sizes}, {pc.defaults['activation']}, Adam {config['lr']:g}", None)
    a.legend(fontsize=8)
    return fig, ds, {**config, "seed": seed}
