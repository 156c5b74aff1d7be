"""Figure of ``pc_positive_accuracy``: positive-rate PC with learned one-way feedback against unconstrained PC."""

from __future__ import annotations

import numpy as np

from ..theorems import run_check
from . import register_figure
from ._plot import new_figure, pass_line, verdict_title


@register_figure("pc_positive_accuracy", "Positive-rate PC with learned one-way feedback vs clamped PC: test accuracy per seed and the gap")
def fig_pc_positive_accuracy(quick: bool = True, seed: int = 0):
    r = run_check("pc_positive_accuracy", quick=quick)
    ds = r.data
    fig, (a, b) = new_figure(2, width=4.4)
    hiddens = list(ds.hidden.values)
    for k, (name, color) in enumerate(zip(ds.learner.values, ("tab:blue", "tab:orange"))):
        for i, h in enumerate(hiddens):
            acc = 100 * ds.test_accuracy.sel(hidden=h, learner=name).values
            x = i + (k - 0.5) * 0.3
            a.plot(np.full(acc.size, x), acc, "o", color=color, ms=5, alpha=0.6, label=name if i == 0 else None)
            a.plot([x - 0.1, x + 0.1], [acc.mean()] * 2, "-", color=color, lw=2)
    a.set_xticks(range(len(hiddens)), [f"hidden {h}" for h in hiddens])
    a.set(ylabel="test accuracy (%)", xlim=(-0.6, len(hiddens) - 0.4))
    a.legend(fontsize=7)
    b.bar(range(len(hiddens)), 100 * ds.gap.values, color="0.5", label=r"$\overline{acc}_{PC} - \overline{acc}_{x\geq0}$")
    pass_line(b, 1.0, "pass threshold: 1 point")
    b.axhline(0.0, color="k", lw=0.5)
    b.set_xticks(range(len(hiddens)), [f"hidden {h}" for h in hiddens])
    b.set(ylabel="accuracy gap (points)", ylim=(min(-1.5, 100 * float(ds.gap.min()) - 0.5), max(1.5, 100 * float(ds.gap.max()) + 0.5)))
    b.legend(fontsize=7)
    cos = float(np.nanmin(ds.feedback_cosine.values))
    verdict_title(a, f"{ds.attrs['dataset']}, {ds.attrs['epochs']} epochs, " + r"$\cos(B, W)$" + f" = {cos:.2f}", r.passed)
    verdict_title(b, r"rates $x \geq 0$, one-way $B$: within 1 point of PC", r.passed)
    return fig, ds, {"check": "pc_positive_accuracy", "seed": seed}
