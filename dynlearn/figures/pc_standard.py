"""Figures for PC in the standard regime and with non-negative rates: one per theorem check."""

from __future__ import annotations

import numpy as np

from ..theorems import run_check
from . import register_figure
from ._plot import log_floor, new_figure, pass_line, slope_guide, verdict_title


@register_figure("pc_linear_equilibrium", "Linear PCN: relaxed equilibrium vs the closed form (state, energy, per-layer formula) per depth and precisions")
def fig_pc_linear_equilibrium(quick: bool = True, seed: int = 0):
    r = run_check("pc_linear_equilibrium", quick=quick)
    ds = r.data
    fig, (a,) = new_figure(1, width=5.4, height=3.6)
    case = ds.case.values
    for name, marker, label in (("state_error", "o", r"state $\|x^* - x_{\rm closed}\|/\|x_{\rm closed}\|$"),
                                ("energy_error", "s", r"energy $|F - \frac{1}{2} r^\top S^{-1} r|/F$"),
                                ("layer_formula_residual", "^", r"per-layer formula $(\Pi_l + W^\top\Pi_{l+1}W)^{-1}(\dots)$")):
        v, _ = log_floor(ds[name].values, 1e-17)
        a.semilogy(case, v, marker, ms=5, label=label)
    pass_line(a, 1e-10, "pass threshold 1e-10")
    ticks = [f"L-1={int(d)}\nset {int(p)}" for d, p in zip(ds.depth.values, ds.precision_set.values)]
    a.set_xticks(case, ticks, fontsize=6)
    a.set(xlabel="hidden layers, precision set (0: all ones)", ylabel="relative error (float64; 1e-17 = exact)")
    verdict_title(a, "linear PCN: relaxed equilibrium = closed form", r.passed)
    a.legend(fontsize=7)
    return fig, ds, {"check": "pc_linear_equilibrium", "seed": seed}


@register_figure("pc_tp_interpolation", "Distance of the PC equilibrium to TP's and to BP's targets vs the precision ratio")
def fig_pc_tp_interpolation(quick: bool = True, seed: int = 0):
    r = run_check("pc_tp_interpolation", quick=quick)
    ds = r.data
    fig, (a,) = new_figure(1, width=5.2, height=3.8)
    rho = ds.ratio.values
    for s in ds.seed.values:
        sel = ds.sel(seed=s)
        a.loglog(rho, sel.distance_to_tp, "o-", ms=3, color="tab:blue", label=f"to TP targets (slope {float(sel.slope_tp):.3f})")
        a.loglog(rho, sel.distance_to_bp, "s-", ms=3, color="tab:orange", label=f"to BP targets (slope {float(sel.slope_bp):.3f})")
    d0 = ds.distance_to_tp.isel(seed=0).values
    slope_guide(a, rho[: len(rho) // 2], d0[0] * 0.3, 1.0, label="slope +1")
    slope_guide(a, rho[len(rho) // 2 :], ds.distance_to_bp.isel(seed=0).values[len(rho) // 2] * 0.3, -1.0, label="slope -1")
    pass_line(a, 1e-2, "limit tolerance 1e-2")
    a.set(xlabel=r"precision ratio $\rho = \Pi_1/\Pi_2$", ylabel="relative distance of $x_1^*$")
    verdict_title(a, r"PC interpolates: TP as $\rho\to 0$, BP as $\rho\to\infty$", r.passed)
    handles, labels = a.get_legend_handles_labels()
    keep = {l: h for h, l in zip(handles, labels)}
    a.legend(keep.values(), keep.keys(), fontsize=6)
    return fig, ds, {"check": "pc_tp_interpolation", "seed": seed}


@register_figure("pc_em_critical_point", "PC learning with prospective configuration: F, the BP loss and both gradient norms vs EM step, on a tanh and a linear-bottleneck regression")
def fig_pc_em_critical_point(quick: bool = True, seed: int = 0):
    r = run_check("pc_em_critical_point", quick=quick)
    ds, m = r.data, r.verdict.measured
    fig, axes = new_figure(2, width=4.4)
    step = ds.step.values + 1
    for a, problem in zip(axes, ("tanh", "linear")):
        sel = ds.sel(problem=problem)
        a.loglog(step, sel.energy, label=r"$F^*$ (PC energy at equilibrium)")
        a.loglog(step, sel.bp_loss, label=r"$L$ (BP loss, feedforward)")
        a.loglog(step, sel.energy_grad_norm, label=r"$\|\partial F/\partial\theta\|$ at equilibrium")
        a.loglog(step, sel.bp_grad_norm, label=r"$\|\nabla_\theta L\|$")
        a.set(xlabel="EM step", ylabel="value")
    axes[1].axhline(ds.attrs["rank_one_optimum"], color="k", lw=0.8, ls=":", label=r"Eckart–Young optimum $L^*$")
    pass_line(axes[0], float(ds.energy_grad_norm.sel(problem="tanh")[0]) / 100, r"$\|\partial F/\partial\theta\|_0/100$ (pass)")
    pass_line(axes[1], float(ds.bp_grad_norm.sel(problem="linear")[0]) / 1e4, r"$\|\nabla L\|_0/10^4$ (pass)")
    verdict_title(axes[0], f"tanh 3-3-2: F never rises, $\\partial F/\\partial\\theta$ falls {m['energy_grad_fall']:.0f}x, $\\nabla L$ {m['tanh_bp_grad_fall']:.0f}x", r.passed)
    verdict_title(axes[1], f"linear 3-1-2: $\\nabla L$ falls {m['bottleneck_bp_grad_fall']:.1e}x, $L/L^*-1$ = {m['bottleneck_loss_over_optimum_error']:.0e}", r.passed)
    for a in axes:
        a.legend(fontsize=6)
    return fig, ds, {"check": "pc_em_critical_point", "seed": seed}


@register_figure("pc_positive_kkt", "Positive-rate PC: energy along the projected flow, and KKT residuals at its end")
def fig_pc_positive_kkt(quick: bool = True, seed: int = 0):
    r = run_check("pc_positive_kkt", quick=quick)
    ds = r.data
    fig, (a, b) = new_figure(2, width=4.4)
    for s in ds.seed.values:
        e = ds.energy.sel(seed=s).values
        a.semilogy(ds.time, e - np.nanmin(e) + 1e-16 * np.nanmax(e), label=f"net {s}")
    a.set(xlabel="inference time t", ylabel=r"$E(t) - \min E$")
    names = ["complementarity", "qp_error", "complementarity_random_feedback"]
    labels = [r"$\max|\min(x, g)|$, $B=W$", "vs bounded LSQ", r"$\max|\min(x, g)|$, random $B$"]
    for i, n in enumerate(names):
        finite = ds[n].values[np.isfinite(ds[n].values)]
        if finite.size == 0:  # the random-feedback relaxation runs in the full configuration only
            b.text(i, 0.5, "full run\nonly", ha="center", fontsize=7, transform=b.get_xaxis_transform())
            continue
        v, _ = log_floor(finite, 1e-17)
        b.semilogy(np.full(v.size, i), v, "o", ms=6)
    b.set_xticks(range(len(names)), labels, fontsize=7)
    b.set_xlim(-0.5, len(names) - 0.5)
    pass_line(b, 1e-8, "pass threshold 1e-8 (first two)")
    b.set(ylabel="relative residual")
    verdict_title(a, r"projected flow: $\dot E \leq -\|\dot x\|^2$", r.passed)
    verdict_title(b, f"KKT at the end; {100 * float(ds.active_fraction.min()):.0f}% of rates at 0", r.passed)
    a.legend(fontsize=7)
    b.legend(fontsize=7)
    return fig, ds, {"check": "pc_positive_kkt", "seed": seed}
