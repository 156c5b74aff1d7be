"""What a figure actually plots, checked from the data matplotlib holds: no series empty, none non-finite.

:func:`plotted_problems` walks every axes of a rendered :class:`matplotlib.figure.Figure` and lists, in words, each
line, bar set, scatter/band collection or image whose data are empty or contain NaN/inf, and each log axis asked to
show a value <= 0 (matplotlib drops those points silently, so a curve that reaches exactly 0 loses its end). An
empty line with a label is a legend entry for a style (``plot([], [], label=...)``), not a series, and is skipped.
:func:`dynlearn.figures.make_figure` stores the list in the figure's netCDF attributes (``plotted_problems``) and
warns; the main job reports the figures that have any.
"""

from __future__ import annotations

import numpy as np


def _label(artist, kind: str, i: int) -> str:
    label = str(artist.get_label() or "")
    return f"{kind} {label!r}" if label and not label.startswith("_") else f"{kind} #{i}"


def _values(a) -> np.ndarray:
    return np.asarray(np.ma.filled(np.ma.asarray(a, dtype=float), np.nan), dtype=float)


def _check_series(where: str, name: str, xs, ys, log_x: bool, log_y: bool) -> list[str]:
    x, y = _values(xs).ravel(), _values(ys).ravel()
    if y.size == 0:
        return [f"{where}: {name} is empty"]
    out = []
    bad = ~np.isfinite(y) | (~np.isfinite(x) if x.size == y.size else False)
    if bad.all():
        out.append(f"{where}: {name} has no finite point")
    elif bad.any():
        out.append(f"{where}: {name} has {int(bad.sum())} non-finite of {y.size} points")
    if log_y and np.any(y[np.isfinite(y)] <= 0):
        out.append(f"{where}: {name} has values <= 0 on a log y axis")
    if log_x and x.size and np.any(x[np.isfinite(x)] <= 0):
        out.append(f"{where}: {name} has values <= 0 on a log x axis")
    return out


def _axes_problems(ax, where: str) -> list[str]:
    from matplotlib.collections import PathCollection, PolyCollection
    from matplotlib.container import BarContainer

    log_x, log_y = ax.get_xscale() == "log", ax.get_yscale() == "log"
    out: list[str] = []
    for i, line in enumerate(ax.get_lines()):
        if line.get_transform() != ax.transData:
            continue  # axhline / axvline: reference lines, half in axes coordinates
        xs, ys = line.get_data()
        if _values(ys).size == 0 and not str(line.get_label() or "_").startswith("_"):
            continue  # plot([], [], label=...): a legend entry drawn for a style, not a series
        out += _check_series(where, _label(line, "line", i), xs, ys, log_x, log_y)
    for i, bars in enumerate(c for c in ax.containers if isinstance(c, BarContainer)):
        heights = [p.get_height() if bars.orientation == "vertical" else p.get_width() for p in bars.patches]
        out += _check_series(where, _label(bars, "bar set", i), [], heights, False, log_y if bars.orientation == "vertical" else log_x)
    for i, coll in enumerate(ax.collections):
        if isinstance(coll, PolyCollection):  # fill_between bands
            paths = coll.get_paths()
            verts = np.concatenate([p.vertices for p in paths]) if paths else np.empty((0, 2))
            if verts.size == 0:
                out.append(f"{where}: {_label(coll, 'band', i)} is empty")
            elif not np.isfinite(verts).all():
                out.append(f"{where}: {_label(coll, 'band', i)} has non-finite vertices")
            continue
        offsets = _values(coll.get_offsets())
        if isinstance(coll, PathCollection) and offsets.ndim == 2 and offsets.shape[1] == 2:  # scatter
            out += _check_series(where, _label(coll, "scatter", i), offsets[:, 0], offsets[:, 1], log_x, log_y)
    for i, im in enumerate(ax.get_images()):
        a = _values(im.get_array())
        if a.size == 0 or not np.isfinite(a).any():
            out.append(f"{where}: {_label(im, 'image', i)} has no finite pixel")
    return out


def plotted_problems(fig) -> list[str]:
    """Every empty or non-finite plotted series of ``fig`` (and values <= 0 on log axes), as readable lines."""
    out: list[str] = []
    for k, ax in enumerate(fig.axes):
        title = ax.get_title() or ax.get_ylabel() or ""
        where = f"panel {k + 1}" + (f" ({title.splitlines()[0][:50]})" if title else "")
        out += _axes_problems(ax, where)
    return out
