"""Figures for Phaseless Alignment Learning: alignment from noise (with negative controls) and the 1-1-1 sign task."""

from __future__ import annotations

import numpy as np

from ..theorems import run_check
from . import register_figure
from ._plot import new_figure, verdict_title

_STYLE = {"pal": ("tab:red", "PAL"), "noise_off": ("0.4", "noise off (σ = 0)"), "alpha_zero": ("tab:blue", "no decay (α = 0)")}


@register_figure("pal_alignment", "PAL: angle(B_l, W_(l+1)^T) vs simulated time, mean ± sd over seeds, with the noise-off and alpha = 0 controls")
def fig_pal_alignment(quick: bool = True, seed: int = 0):
    r = run_check("pal_alignment", quick=quick)
    ds = r.data
    t = ds.time.values
    mats = list(ds.matrix.values)
    fig, axes = new_figure(2, width=4.8)
    a, b = axes
    for cond in ds.condition.values:
        color, label = _STYLE[str(cond)]
        for i, m in enumerate(mats):
            ang = ds.angle.sel(condition=cond, matrix=m)
            mean, sd = ang.mean("seed").values, ang.std("seed").values
            ls = ["-", "--", ":", "-."][i % 4]
            a.plot(t, mean, ls=ls, color=color, lw=1.5, label=f"{label}, {m}" if cond == "pal" or i == 0 else None)
            a.fill_between(t, mean - sd, mean + sd, color=color, alpha=0.15, lw=0)
        nrm = (ds.norm_B.sel(condition=cond) / ds.norm_B.sel(condition=cond).isel(time=0)).mean(("seed", "matrix"))
        b.plot(t, nrm, color=color, lw=1.8, label=label)
    a.axhline(25, color="tab:red", ls="--", lw=1, label="pass: < 25° per matrix")
    a.set(xlabel="simulated time (s)", ylabel=r"angle$(B_l, W_{l+1}^\top)$ (deg), mean ± s.d.", ylim=(0, 110))
    m = r.verdict.measured
    verdict_title(a, "PAL aligns B with " + r"$W^\top$" + f" from noise; controls do not\n{ds.attrs['sizes']}: final B1/B2/B3 {m['final_angle_B1']:.1f}/{m['final_angle_B2']:.1f}/{m['final_angle_B3']:.1f}° (mean of {ds.seed.size} seeds)", r.passed)
    a.legend(fontsize=6.5, loc="center right")
    b.set(xlabel="simulated time (s)", ylabel=r"$\|B\| / \|B(0)\|$ (mean)", yscale="log")
    verdict_title(b, "α bounds ‖B‖; without it ‖B‖ keeps growing", None)
    b.legend(fontsize=7)
    return fig, ds, {"check": "pal_alignment", "quick": quick, "seed": seed}


@register_figure("pal_vs_fa_sign", "1-1-1 chain with a wrong-sign backward weight: PAL learns the teacher, FA does not (weights and loss vs time)")
def fig_pal_vs_fa_sign(quick: bool = True, seed: int = 0):
    r = run_check("pal_vs_fa_sign", quick=quick)
    ds = r.data
    t = ds.time.values
    fig, (a, b) = new_figure(2, width=4.6)
    colors = {"pal": "tab:red", "fa": "tab:blue"}
    for rule in ("pal", "fa"):
        c = colors[rule]
        sel = ds.sel(rule=rule)
        a.plot(t, sel.w1.mean("seed"), color=c, lw=1.8, label=f"{rule.upper()} " + r"$w_1$")
        a.plot(t, sel.B.mean("seed"), color=c, lw=1.2, ls="--", label=f"{rule.upper()} B")
        b.semilogy(t, np.maximum(sel.loss.values.T, 1e-12), color=c, lw=0.8, alpha=0.6)
        b.plot([], [], color=c, label=rule.upper())
    a.axhline(ds.attrs["teacher_weight"], color="k", ls=":", lw=0.8, label="teacher")
    a.axhline(0, color="0.6", lw=0.6)
    a.set(xlabel="simulated time (s)", ylabel="weight (mean over seeds)", yscale="symlog")
    verdict_title(a, "PAL flips B, then w₁ finds the teacher", r.passed)
    b.axhline(ds.attrs["constant_fit_loss"], color="k", ls=":", lw=0.8, label="best constant fit")
    b.set(xlabel="simulated time (s)", ylabel="loss on a grid (per seed)")
    verdict_title(b, "FA stays above the best constant fit", None)
    a.legend(fontsize=7)
    b.legend(fontsize=7)
    return fig, ds, {"check": "pal_vs_fa_sign", "quick": quick, "seed": seed}
