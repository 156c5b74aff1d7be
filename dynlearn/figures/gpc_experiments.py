"""Figures for generalised PC beyond MLPs: the one-block transformer's learning curves and the VAE's reconstructions."""

from __future__ import annotations

import numpy as np

from ..theorems import run_check
from . import register_figure
from ._plot import new_figure, pass_line, verdict_title

_STYLE = {"gpc": ("C0", "o-", "generalised PC"), "bp": ("C1", "s--", "backprop")}


@register_figure("gpc_transformer", "A one-block causal transformer on next-token prediction of a Markov chain, trained by generalised PC vs backprop: held-out cross-entropy (with the chain's entropy floor) and accuracy per epoch")
def fig_gpc_transformer(quick: bool = True, seed: int = 0):
    from matplotlib.ticker import MaxNLocator

    r = run_check("gpc_transformer_vs_bp", quick=quick, **({"seed": seed} if seed else {}))
    ds, m = r.data, r.verdict.measured
    fig, (a, b) = new_figure(2)
    for method in ds.trained_by.values:
        color, style, label = _STYLE[str(method)]
        a.plot(ds.epoch, ds.test_ce.sel(trained_by=method), style, color=color, ms=4, label=label)
        b.plot(ds.epoch, ds.test_accuracy.sel(trained_by=method), style, color=color, ms=4, label=label)
    pass_line(a, ds.attrs["entropy_floor"], r"entropy floor $H(X_{t+1}\mid X_t)$", color="k")
    a.axhline(ds.attrs["unigram_entropy"], color="0.5", ls=":", lw=1, label="context-free (unigram) entropy")
    a.set(xlabel="epoch", ylabel="held-out cross-entropy per token (nats)")
    for ax in (a, b):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    verdict_title(a, "gPC trains a transformer as well as BP\n"
                  + f"(final CE gap {m['ce_gap_gpc_minus_bp']:.3f} nats, criterion $\\leq$ 0.05)", r.passed)
    pass_line(b, ds.attrs["accuracy_ceiling"], "accuracy ceiling (Bayes predictor)", color="k")
    b.set(xlabel="epoch", ylabel="held-out next-token accuracy")
    verdict_title(b, "next-token accuracy", None)
    a.legend(fontsize=7)
    b.legend(fontsize=7)
    return fig, ds, {"check": "gpc_transformer_vs_bp", "seed": seed}


def _digit_grid(ax, rows, labels):
    """Rows of 8x8 images side by side, one row per entry of ``rows`` ((n, 64) arrays), labelled on the left."""
    n = rows[0].shape[0]
    canvas = np.zeros((len(rows) * 9 - 1, n * 9 - 1))  # white gaps
    for i, imgs in enumerate(rows):
        for j in range(n):
            canvas[i * 9 : i * 9 + 8, j * 9 : j * 9 + 8] = np.asarray(imgs[j]).reshape(8, 8)
    ax.imshow(canvas, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks([i * 9 + 3.5 for i in range(len(rows))], labels)
    ax.set_xticks([])
    ax.grid(False)


@register_figure("gpc_vae", "A VAE on 8x8 digits trained by generalised PC vs backprop (reparametrisation trick): held-out reconstruction BCE per pixel per epoch, and held-out originals vs reconstructions")
def fig_gpc_vae(quick: bool = True, seed: int = 0):
    from matplotlib.ticker import MaxNLocator

    r = run_check("gpc_vae_vs_bp", quick=quick, **({"seed": seed} if seed else {}))
    ds, m = r.data, r.verdict.measured
    fig, (a, b) = new_figure(2, width=4.6)
    for method in ds.trained_by.values:
        color, style, label = _STYLE[str(method)]
        a.plot(ds.epoch, ds.test_bce.sel(trained_by=method), style, color=color, ms=4, label=label)
    base, bp_final = ds.attrs["mean_image_bce"], float(ds.test_bce.sel(trained_by="bp")[-1])
    a.axhline(base, color="0.4", lw=0.8, ls=":", label="mean image (no latent)")
    pass_line(a, base - 0.75 * (base - bp_final), r"criterion: $\frac{3}{4}$ of BP's fall below the mean image")
    a.set(xlabel="epoch", ylabel="held-out reconstruction BCE per pixel (nats)")
    a.xaxis.set_major_locator(MaxNLocator(integer=True))
    verdict_title(a, "a VAE trained by gPC uses its latent as BP's does\n"
                  + f"(gPC's fall below the mean image / BP's = {m['gain_over_mean_image_gpc_over_bp']:.2f}, criterion $\\geq$ 0.75)", r.passed)
    a.legend(fontsize=7)
    _digit_grid(b, [ds.original.values, ds.reconstruction.sel(trained_by="gpc").values, ds.reconstruction.sel(trained_by="bp").values],
                ["original", "gPC", "BP"])
    verdict_title(b, "held-out digits and their mean-code reconstructions", None)
    return fig, ds, {"check": "gpc_vae_vs_bp", "seed": seed}
