"""Figures for target propagation: DTP's difference correction and FW-DTP's propagation architecture (one per check)."""

from __future__ import annotations

import numpy as np

from ..theorems import run_check
from . import register_figure
from ._plot import log_floor, new_figure, pass_line, slope_guide, verdict_title


@register_figure("dtp_difference_correction", "DTP with exact inverses: f_l(tau_{l-1}) = tau_l per output step and layer; at eta = 0 the targets equal the rates (with and without the correction)")
def fig_dtp_difference_correction(quick: bool = True, seed: int = 0):
    r = run_check("dtp_difference_correction", quick=quick)
    ds, m = r.data, r.verdict.measured
    fig, (a, b) = new_figure(2)
    floor = 1e-17
    for i, layer in enumerate(ds.layer.values):
        worst, _ = log_floor(ds.forward_consistency.sel(layer=layer).max("seed"), floor)
        a.loglog(ds.step, worst, "o-", color=f"C{i}", label=rf"layer $l = {layer}$ (worst of {ds.seed.size} nets)")
    pass_line(a, 1e-10, "criterion ≤ 1e-10")
    a.set(xlabel=r"output step $\eta$", ylabel=r"$\max|f_l(\tau_{l-1}) - \tau_l|\,/\,\max|\tau_l - h_l|$", ylim=(floor / 3, 1e-6))
    a.set_xticks(ds.step.values, [f"{v:g}" for v in ds.step.values], minor=False)
    a.set_xticks([], minor=True)
    verdict_title(a, "exact inverses: the DTP target of layer l−1\nis mapped exactly onto layer l's target", r.passed)
    a.legend(fontsize=7)
    vals, zero = log_floor([m["zero_step_target_error"], m["plain_tp_zero_step_error"]], floor)
    b.bar([0, 1], vals, color=["C0", "C3"])
    for xi in np.flatnonzero(zero):
        b.annotate("0 (exact)", (xi, floor), xytext=(0, 3), textcoords="offset points", ha="center", fontsize=7)
    b.set_yscale("log")
    b.set_ylim(floor / 3, 10)
    pass_line(b, 1e-10, "criterion ≤ 1e-10 (DTP)")
    b.set(xticks=[0, 1], xticklabels=["DTP, exact inverses", "plain TP, inverses\nperturbed by 5%"], ylabel=r"$\max_l |\tau_l - h_l|$ at $\eta = 0$")
    verdict_title(b, r"$\tau_L = h_L$: the correction keeps every $\tau_l = h_l$", r.passed)
    b.legend(fontsize=7)
    return fig, ds, {"check": "dtp_difference_correction", "seed": seed}


@register_figure("fwdtp_propagation_architecture", "FW-DTP: update / eta against the linear propagation e_{l-1} = J_g e_l, per layer, with a slope-1 guide")
def fig_fwdtp_propagation(quick: bool = True, seed: int = 0):
    r = run_check("fwdtp_propagation_architecture", quick=quick)
    ds, m = r.data, r.verdict.measured
    fig, (a, b) = new_figure(2)
    steps = ds.step.values
    for i, layer in enumerate(ds.layer.values):
        err, _ = log_floor(ds.relative_error.sel(layer=layer), 1e-17)
        a.loglog(steps, err, "o-", color=f"C{i}", label=f"layer {layer}" + (" (output: exact)" if layer == ds.layer.values[-1] else ""))
    slope_guide(a, steps, float(ds.relative_error.isel(layer=0, step=0)) * 2, 1.0)
    a.set(xlabel=r"output step $\eta$", ylabel=r"$\|\Delta W_l/\eta - \Delta W_l^{\rm lin}\| / \|\Delta W_l^{\rm lin}\|$")
    verdict_title(a, r"update/$\eta$ → linear propagation $e_{l-1} = J_{g_l} e_l$" + f"\n(worst slope {m['worst_slope']:.3f}, 1 ± 0.15)", r.passed)
    a.legend(fontsize=7)
    one_minus, _ = log_floor(1 - ds.cosine.min("layer"), 1e-17)
    b.loglog(steps, one_minus, "o-", color="k", label=r"$1 - \cos$, worst layer")
    pass_line(b, 1e-4, r"criterion $\cos \geq 0.9999$ at the smallest $\eta$")
    b.set(xlabel=r"output step $\eta$", ylabel=r"$1 - \cos(\Delta W_l/\eta, \Delta W_l^{\rm lin})$")
    verdict_title(b, f"FW-DTP is not BP: cos to BP's gradient ≥ {m['min_cosine_to_bp']:.2f}", None)
    b.legend(fontsize=7)
    return fig, ds, {"check": "fwdtp_propagation_architecture", "seed": seed}
