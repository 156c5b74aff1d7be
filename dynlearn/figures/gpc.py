"""Figures for generalised predictive coding: the categorical output's weak-nudge limit (cross-entropy gradient)."""

from __future__ import annotations

from ..theorems import run_check
from . import register_figure
from ._plot import new_figure, pass_line, slope_guide, verdict_title


@register_figure("gpc_ce_limit", "Generalised PC with a categorical output: 1 - cos and the relative error of update/gamma against BP's cross-entropy gradient vs gamma, per layer")
def fig_gpc_ce_limit(quick: bool = True, seed: int = 0):
    r = run_check("gpc_ce_limit", quick=quick)
    ds, m = r.data, r.verdict.measured
    fig, (a, b) = new_figure(2)
    g = ds.gamma.values
    for i, layer in enumerate(ds.layer.values):
        a.loglog(g, ds.relative_error.sel(layer=layer), "o-", color=f"C{i}", label=f"layer {layer}")
        b.loglog(g, 1 - ds.cosine.sel(layer=layer), "o-", color=f"C{i}", label=f"layer {layer}")
    slope_guide(a, g, float(ds.relative_error.isel(gamma=0).max()) * 2, 1.0)
    slope_guide(b, g, float((1 - ds.cosine).isel(gamma=0).max()) * 3, 2.0)
    a.set(xlabel=r"nudge $\gamma$", ylabel=r"$\|\partial F/\partial W_l\,/\gamma - \nabla_{W_l} L_{\rm CE}\| / \|\nabla_{W_l} L_{\rm CE}\|$")
    verdict_title(a, r"softmax output: update/$\gamma$ → BP's cross-entropy gradient" + f"\n(worst slope {m['worst_slope']:.3f}, 1 ± 0.15)", r.passed)
    pass_line(b, 1e-4, r"criterion $\cos \geq 0.9999$ at the smallest $\gamma$")
    b.set(xlabel=r"nudge $\gamma$", ylabel=r"$1 - \cos$")
    verdict_title(b, r"and the direction agrees to $O(\gamma^2)$", None)
    a.legend(fontsize=7)
    b.legend(fontsize=7)
    return fig, ds, {"check": "gpc_ce_limit", "seed": seed}
