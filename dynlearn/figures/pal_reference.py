"""Figure for PAL in the authors' Fig. 3a–c setting: each backward matrix's angle to Wᵀ against their stored data."""

from __future__ import annotations

import numpy as np

from ..theorems import run_check
from . import register_figure
from ._plot import mean_band, new_figure, verdict_title

_COLORS = ("tab:red", "tab:green", "tab:blue")


@register_figure("pal_reference_fig3", "PAL, reference setting: angle(B_l, W_(l+1)^T) per matrix vs time (mean ± sd over seeds), with the authors' data (mean ± 2 sd)")
def fig_pal_reference_fig3(quick: bool = True, seed: int = 0):
    r = run_check("pal_reference_fig3", quick=quick)
    ds = r.data
    t = ds.time.values
    fig, axes = new_figure(ds.matrix.size, width=3.4)
    for i, (ax, m) in enumerate(zip(np.atleast_1d(axes), ds.matrix.values)):
        mean_band(ax, t, ds.angle.sel(matrix=m).transpose("seed", "time").values, color=_COLORS[i % len(_COLORS)], lw=1.6,
                  label=f"model, mean ± sd of {ds.seed.size} seeds")
        ref_t = ds.reference_time.values
        ax.errorbar(ref_t, ds.reference_mean.sel(matrix=m), yerr=2 * ds.reference_sd.sel(matrix=m), fmt="o", color="k", ms=4,
                    capsize=3, label="authors' data, mean ± 2 sd (pass band)")
        ax.set(xlabel="simulated time (s)", ylim=(0, 100), xlim=(0, max(t[-1], 0.1) * 1.04))
        ax.set_ylabel(rf"angle$(B_{i + 1}, W_{i + 2}^\top)$ (deg)")
        failed = [k for k in r.verdict.failed if k.startswith(f"{m}_")]
        verdict_title(ax, f"{m}: inside the band at every time" if not failed else f"{m}: outside at {', '.join(failed)}", not failed)
        ax.legend(fontsize=6.5, loc="upper right")
    fig.suptitle("PAL in the reference setting follows the authors' Fig. 3a–c matrix by matrix", fontsize=9)
    return fig, ds, {"check": "pal_reference_fig3", "quick": quick, "seed": seed}
