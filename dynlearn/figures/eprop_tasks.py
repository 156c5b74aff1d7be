"""Figure of e-prop on the store-and-recall task: learning curves (loss, recall accuracy) of e-prop with symmetric,
random and adaptive feedback against BPTT, and the adaptive feedback's angle to the readout."""

from __future__ import annotations

import numpy as np

from ..theorems import run_check
from . import register_figure
from ._plot import mean_band, new_figure, pass_line, verdict_title

COLORS = {"symmetric": "C0", "random": "C2", "adaptive": "C1", "bptt": "k"}
LABELS = {"symmetric": r"e-prop, $B = W_{\rm out}^\top$", "random": "e-prop, random $B$", "adaptive": "e-prop, adaptive $B$", "bptt": "BPTT"}


@register_figure("eprop_recall", "e-prop (symmetric, random, adaptive feedback) vs BPTT on store-and-recall with ALIF neurons: loss, recall accuracy, feedback angle")
def fig_eprop_recall(quick: bool = True, seed: int = 0):
    r = run_check("eprop_recall", quick=quick)
    ds, m, tol = r.data, r.verdict.measured, r.verdict.tolerance
    fig, (a, b, c) = new_figure(3, width=3.9)
    for rule in ds.rule.values:
        kw = {"color": COLORS.get(rule, "C3"), "label": LABELS.get(rule, rule), "ls": "--" if rule == "bptt" else "-"}
        mean_band(a, ds.iteration, ds.loss.sel(rule=rule).values, **kw)
        mean_band(b, ds.evaluation, ds.recall_accuracy.sel(rule=rule).values, marker="o", **kw)
    a.axhline(ds.attrs["chance_loss"], color="0.6", ls=":", lw=1, label=r"chance ($\ln 2$)")
    a.set(xlabel="Adam iteration (one batch of trials)", ylabel=r"loss $\frac{1}{c}\sum_{t \geq T-c}$ CE$(y^t, b)$")
    verdict_title(a, f"store-recall, delay {ds.attrs['delay']} ms = {ds.attrs['delay'] / 5:g} $\\tau_m$\n"
                     f"final loss e-prop/BPTT {m['final_loss_ratio_eprop_bptt']:.2f} ({tol['final_loss_ratio_eprop_bptt']})", None)
    a.legend(fontsize=7)
    pass_line(b, float(tol["min_recall_accuracy"].split()[-1]), f"pass: accuracy {tol['min_recall_accuracy']}")
    b.axhline(ds.attrs["chance_accuracy"], color="0.6", ls=":", lw=1, label="chance")
    b.set(xlabel="Adam iteration", ylabel=f"recall accuracy ({ds.attrs['eval_batch']} held-out trials)", ylim=(0.3, 1.05))
    verdict_title(b, f"recurrent ALIF ({ds.attrs['n_rec']} neurons): e-prop recalls the bit\n(worst feedback {m['min_recall_accuracy']:.2f})", r.passed)
    b.legend(fontsize=7, loc="lower right")
    for rule in ("random", "adaptive"):
        if rule in ds.rule.values:
            mean_band(c, ds.iteration, ds.feedback_angle.sel(rule=rule).values, color=COLORS[rule], label=LABELS[rule])
    c.axhline(90.0, color="0.6", ls=":", lw=1, label="orthogonal")
    c.set(xlabel="Adam iteration", ylabel=r"$\angle(B, W_{\rm out}^\top)$ (degrees)")
    verdict_title(c, f"adaptive $B$ turns towards $W_{{\\rm out}}^\\top$\n({m.get('adaptive_angle_start_deg', np.nan):.0f}° → {m.get('adaptive_angle_end_deg', np.nan):.0f}°)", None)
    c.legend(fontsize=7)
    return fig, ds, {"check": "eprop_recall", "seed": seed, "quick": quick}
