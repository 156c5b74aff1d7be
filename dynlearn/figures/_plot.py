"""Small plotting helpers shared by the figure modules."""

from __future__ import annotations

import numpy as np


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 4.2, height: float = 3.4):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, constrained_layout=True)
    return fig, axes.ravel()


def slope_guide(ax, x, y0: float, slope: float, label: str | None = None, **kw) -> None:
    """Draw a reference line of the given log-log slope through ``(x[0], y0)``."""
    x = np.asarray(x, dtype=float)
    ax.plot(x, y0 * (x / x[0]) ** slope, ls="--", color=kw.pop("color", "0.5"), lw=1, label=label or f"slope {slope:g}", **kw)


def verdict_title(ax, title: str, passed: bool | None = None) -> None:
    mark = "" if passed is None else ("  [pass]" if passed else "  [FAIL]")
    ax.set_title(title + mark, fontsize=10)
