"""Cost of one training step per learner, as XLA counts it (:mod:`dynlearn.analysis.costs`)."""

from __future__ import annotations

import numpy as np

from ..analysis.costs import learner_costs
from . import register_figure
from ._plot import new_figure, verdict_title

#: the quick figure: local rules without a relaxation loop (exact counts) and PC (a loop); the full one has every learner
QUICK_LEARNERS = ("bp", "fa", "dfa", "pc")


@register_figure("learner_costs", "MACs (XLA cost analysis), peak memory and time of one compiled training step, every learner")
def fig_learner_costs(quick: bool = True, seed: int = 0):
    sizes, batch = ((16, 32, 32, 10), 16) if quick else ((64, 128, 128, 10), 64)
    ds = learner_costs(QUICK_LEARNERS if quick else None, sizes, batch, seed=seed, time_repeats=3 if quick else 20)
    names = [str(n) for n in ds.learner.values]
    loops = ds.loops.values > 0
    colors = ["tab:orange" if lp else "tab:blue" for lp in loops]
    fig, axes = new_figure(3, width=4.4)
    for ax, var, label in zip(axes, ("macs", "peak_bytes", "step_ms"), ("MACs per step (XLA)", "peak memory (bytes)", "time per step (ms, min)")):
        ax.bar(np.arange(len(names)), ds[var].values, color=colors)
        ax.set_yscale("log")
        ax.set_xticks(np.arange(len(names)), names, rotation=60, fontsize=7)
        ax.set_ylabel(label)
    ref = float(ds.macs.sel(learner="bp")) if "bp" in names else None
    if ref:
        axes[0].axhline(ref, color="k", lw=0.8, ls="--", label="bp")
        axes[0].legend(fontsize=7)
    verdict_title(axes[0], f"MLP {ds.attrs['sizes']}, batch {batch}\norange: a while loop (its body counted once)", None)
    verdict_title(axes[1], "argument + output + temporaries − aliased", None)
    verdict_title(axes[2], f"compiled step on {ds.attrs['backend']}", None)
    return fig, ds, {"sizes": list(sizes), "batch": batch, "seed": seed}
