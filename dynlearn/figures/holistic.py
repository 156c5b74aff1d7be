"""The holistic BP-versus-bio comparison (Gupta et al., "Is Bio-Inspired Learning Better than Backprop?
Benchmarking Bio Learning vs. Backprop", arXiv 2212.04614), drawn from the shipped sweep's Dataset.

Four panels, one line per learner (mean ± s.d. over seeds): test accuracy against (a) the training-set fraction,
(b) the epoch (at the full training set), (c) the fraction of weights removed by global magnitude pruning, and
(d) the Gaussian input-noise sigma at test time. The sweep is ``dynlearn/sweep/configs/holistic_quick.toml``
(``--full``: ``holistic_full.toml``); it runs into ``$DYNLEARN_SWEEPS/<config>`` when that variable is set (and is
then resumed, not recomputed), else into a temporary folder.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

from . import register_figure
from ._plot import mean_band, new_figure, verdict_title


def holistic_dataset(quick: bool = True, *, quiet: bool = True) -> xr.Dataset:
    """Run (or resume) the shipped holistic sweep and return its Dataset."""
    from ..results import open_result
    from ..sweep import run_sweep, shipped_config

    name = "holistic_quick" if quick else "holistic_full"
    base = os.environ.get("DYNLEARN_SWEEPS")
    if base:
        out = Path(base) / name
        run_sweep(shipped_config(name), out, quiet=quiet)
        return open_result(out)
    with tempfile.TemporaryDirectory(prefix="dynlearn-holistic-") as tmp:
        run_sweep(shipped_config(name), tmp, quiet=quiet)
        return open_result(tmp)


def holistic_table(ds: xr.Dataset) -> str:
    """A plain-text table per learner: final accuracy at each training fraction, epochs to 95% of final, accuracy at
    the strongest pruning and the strongest noise (full training set), means over seeds."""
    full = ds.sel(train_fraction=ds.train_fraction.max())
    cols = [f"acc@{f:g}" for f in ds.train_fraction.values] + ["ep→95%", f"prune {ds.prune.values[-1]:g}", f"noise {ds.noise.values[-1]:g}"]
    lines = [f"{'learner':<14}" + "".join(f"{c:>12}" for c in cols)]
    for lrn in ds.learner.values:
        row = [float(ds.final_accuracy.sel(learner=lrn, train_fraction=f).mean("seed")) for f in ds.train_fraction.values]
        row += [float(full.epochs_to_95.sel(learner=lrn).mean("seed")), float(full.pruned_accuracy.sel(learner=lrn).isel(prune=-1).mean("seed")),
                float(full.noisy_accuracy.sel(learner=lrn).isel(noise=-1).mean("seed"))]
        lines.append(f"{str(lrn):<14}" + "".join(f"{v:>12.3f}" for v in row))
    return "\n".join(lines)


def _lines(ax, ds, x, var, dim):
    for i, lrn in enumerate(ds.learner.values):
        v = ds[var].sel(learner=lrn).transpose("seed", dim)
        mean_band(ax, x, v, color=f"C{i % 10}", ls="-" if lrn == "bp" else "--", lw=2.2 if lrn == "bp" else 1.2, marker="o", ms=3, label=str(lrn))


@register_figure("holistic_comparison", "BP vs bio-inspired learners (Gupta et al. 2212.04614): accuracy vs data fraction, epochs, pruning, input noise")
def fig_holistic_comparison(quick: bool = True, seed: int = 0):
    ds = holistic_dataset(quick)
    done = ds.drop_vars([v for v in ("error",) if v in ds])
    full = done.sel(train_fraction=done.train_fraction.max())
    fig, axes = new_figure(4, width=3.6, height=3.2)
    _lines(axes[0], done, done.train_fraction.values, "final_accuracy", "train_fraction")
    axes[0].set(xlabel="fraction of the training set", ylabel="test accuracy", xscale="log")
    verdict_title(axes[0], "(a) data efficiency")
    _lines(axes[1], full, full.epoch.values, "accuracy_per_epoch", "epoch")
    axes[1].set(xlabel="epoch", ylabel="test accuracy (full training set)")
    verdict_title(axes[1], "(b) epoch budget")
    _lines(axes[2], full, 100 * full.prune.values, "pruned_accuracy", "prune")
    axes[2].set(xlabel="% of weights pruned (global magnitude)", ylabel="test accuracy")
    verdict_title(axes[2], "(c) sparsity")
    _lines(axes[3], full, full.noise.values, "noisy_accuracy", "noise")
    axes[3].set(xlabel="input noise sigma (test time)", ylabel="test accuracy")
    verdict_title(axes[3], "(d) robustness")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{ds.attrs.get('description', 'holistic comparison')} ({ds.seed.size} seed(s); bp: solid)", fontsize=9.5)
    ok = int(np.sum(ds.status.values == 1))
    return fig, ds, {"sweep": "holistic_quick" if quick else "holistic_full", "points_done": ok, "seed": seed}
