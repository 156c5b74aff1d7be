"""Figures: one registered function per paper figure, each returning the figure and its data.

``paper_figs/fig_<name>.py`` scripts, ``dynlearn figs`` and the notebooks all go through
:func:`make_figure`, which writes ``<name>.png`` and ``<name>.nc`` (the plotted data, with provenance)
atomically into the output folder. Figure modules live beside this file and register themselves
with :func:`register_figure`.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..registry import Registry


@dataclasses.dataclass(frozen=True)
class FigureSpec:
    name: str
    fn: Callable[..., tuple[Any, Any, dict]]
    description: str


#: every figure by name
FIGURES: Registry[FigureSpec] = Registry("figure", (__name__,))


def register_figure(name: str, description: str):
    """Decorator: ``fn(quick: bool, seed: int) -> (matplotlib Figure, xarray Dataset, config dict)``."""

    def deco(fn):
        FIGURES.register(name, FigureSpec(name, fn, description))
        return fn

    return deco


def figure_specs() -> dict[str, FigureSpec]:
    return dict(FIGURES.items())


def make_figure(name: str, *, quick: bool = True, out: str | Path = "figures", seed: int = 0) -> tuple[Path, Path]:
    """Make figure ``name``; write ``out/<name>.png`` (200 dpi), ``out/<name>.pdf`` and ``out/<name>.nc``; return the PNG and .nc paths.

    A plotted series that is empty or non-finite (or <= 0 on a log axis) is named in a warning and in the data's
    ``plotted_problems`` attribute (:func:`._health.plotted_problems`); the figure is still written.

    The figure is a bare :class:`matplotlib.figure.Figure` (see :func:`._plot.new_figure`); ``savefig`` renders the PNG
    with Agg whatever the backend, so neither the caller's matplotlib backend (an interactive session, say) nor
    pyplot's list of figures is touched."""
    import warnings

    from ..results import atomic_write, save_dataset
    from ._health import plotted_problems

    fig, ds, config = FIGURES[name].fn(quick=quick, seed=seed)
    problems = plotted_problems(fig)
    ds = ds.assign_attrs(plotted_problems="; ".join(problems))  # empty when every series is finite
    if problems:
        warnings.warn(f"figure {name}: " + "; ".join(problems), stacklevel=2)
    out = Path(out)
    png = atomic_write(out / f"{name}.png", lambda tmp: fig.savefig(tmp, dpi=200, bbox_inches="tight", format="png"))
    atomic_write(out / f"{name}.pdf", lambda tmp: fig.savefig(tmp, bbox_inches="tight", format="pdf"))  # vector copy beside the PNG
    nc = save_dataset(ds, out / f"{name}.nc", config={**config, "quick": quick}, seed=seed)
    return png, nc


def figure_main(name: str) -> None:
    """Command line of a ``paper_figs/fig_<name>.py`` script."""
    spec = FIGURES[name]
    parser = argparse.ArgumentParser(
        prog=f"fig_{name}.py",
        description=f"{spec.description}\n\nWrites OUT/{name}.png and OUT/{name}.nc (the plotted data with provenance).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--full", action="store_true", help="paper-scale run (slower); the default is a quick run")
    parser.add_argument("--out", default="figures", help="output folder (default: figures/)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args()
    png, nc = make_figure(name, quick=not args.full, out=args.out, seed=args.seed)
    print(f"wrote {png} and {nc}")
