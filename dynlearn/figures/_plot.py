"""The shared style of every figure and the helpers that keep them honest.

* :func:`new_figure` returns a bare constrained-layout figure in the shared :data:`STYLE` (grid, sizes);
* :func:`log_floor` clips a series to a floor before it goes on a log axis (never log 0) and says so;
* :func:`energy_gap` is :math:`E(t) - E_\\infty` with :math:`E_\\infty` extrapolated from the gradient norm, with
  the values below round-off masked (no spikes, no plunge at the last sample);
* :func:`pass_line` draws a criterion's threshold; :func:`mean_band` a mean over seeds with a ±1 s.d. band;
* :func:`verdict_title` puts the claim and ``[pass]``/``[FAIL]`` in the title.
"""

from __future__ import annotations

import numpy as np

#: the style of every figure, applied per figure (no global rcParams are changed): grid, title and label sizes
STYLE = {"grid_alpha": 0.25, "title_size": 9.5, "label_size": 9, "tick_size": 8}

#: the relative round-off floor of float64 energies: differences below ``ROUNDOFF * |E|`` are noise
ROUNDOFF = 1e-13


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 4.2, height: float = 3.4):
    """A bare :class:`matplotlib.figure.Figure` (not registered with pyplot, so no backend is touched) with a
    constrained-layout grid of axes in the shared :data:`STYLE`; returns ``(fig, flat array of axes)``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = np.asarray(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax in axes:
        ax.grid(True, alpha=STYLE["grid_alpha"], lw=0.6)
        ax.tick_params(labelsize=STYLE["tick_size"])
        ax.xaxis.label.set_size(STYLE["label_size"])
        ax.yaxis.label.set_size(STYLE["label_size"])
    return fig, axes


def slope_guide(ax, x, y0: float, slope: float, label: str | None = None, **kw) -> None:
    """Draw a reference line of the given log-log slope through ``(x[0], y0)``."""
    x = np.asarray(x, dtype=float)
    ax.plot(x, y0 * (x / x[0]) ** slope, ls="--", color=kw.pop("color", "0.5"), lw=1, label=label or f"slope {slope:g}", **kw)


def verdict_title(ax, title: str, passed: bool | None = None) -> None:
    mark = "" if passed is None else ("  [pass]" if passed else "  [FAIL]")
    ax.set_title(title + mark, fontsize=STYLE["title_size"])


def pass_line(ax, y: float, label: str, *, color: str = "tab:red", horizontal: bool = True) -> None:
    """A criterion's threshold as a dashed line, with its label in the legend."""
    (ax.axhline if horizontal else ax.axvline)(y, color=color, ls="--", lw=1, label=label, zorder=1)


def log_floor(values, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """``(max(values, floor), mask)``: what a log axis can show, and where a value was at or below the floor
    (exactly 0, or round-off); mark those points and say so in the legend."""
    v = np.asarray(values, dtype=float)
    below = ~(v > floor)
    return np.where(below, floor, v), below


def energy_gap(time, energy, grad_norm2, *, tail: float = 0.2) -> tuple[np.ndarray, float]:
    r""":math:`E(t) - E_\infty` along a gradient flow, and the floor below which it is round-off.

    :math:`E_\infty = E(T) - g(T)/k`, where :math:`g = \|\partial E/\partial s\|^2 = -dE/dt` decays as
    :math:`e^{-kt}` near the fixed point (``k`` fitted on the last ``tail`` of the run), so
    :math:`\int_T^\infty g\,dt = g(T)/k` — the part of the descent the run did not reach. Values below
    ``ROUNDOFF · |E|`` are float round-off, not the dynamics: they are clipped to that floor (a log axis never gets
    log 0), and the figures draw and name the floor.
    """
    t, e, g = (np.asarray(a, dtype=float) for a in (time, energy, grad_norm2))
    n = max(int(tail * t.size), 3)
    tt, lg = t[-n:], np.log(np.maximum(g[-n:], 1e-300))
    k = -np.polyfit(tt, lg, 1)[0] if np.ptp(lg) > 1e-6 else 0.0
    rest = g[-1] / k if k > 0 else 0.0
    gap = e - (e[-1] - rest)
    floor = ROUNDOFF * float(np.max(np.abs(e)))
    return np.maximum(gap, floor), floor


def mean_band(ax, x, values, *, axis: int = 0, color=None, label: str | None = None, **kw):
    """Plot the mean of ``values`` over ``axis`` (the seeds) with a ±1 s.d. band; return the line."""
    v = np.asarray(values, dtype=float)
    mean, sd = v.mean(axis), v.std(axis)
    (line,) = ax.plot(x, mean, color=color, label=label, **kw)
    ax.fill_between(x, mean - sd, mean + sd, color=line.get_color(), alpha=0.2, lw=0)
    return line
