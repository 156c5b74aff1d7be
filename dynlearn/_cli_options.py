"""Helpers of the ``dynlearn`` command: ``--set KEY=VALUE`` learner options, the figures that belong to a selection
of checks, the ``--debug`` environment of the figure workers, and the warnings about figures' plotted data."""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path

import typer

from .errors import ConfigError

_FIGURE_LINK = re.compile(r"!\[[^\]]*\]\(figures/([A-Za-z0-9_]+)\.png\)")


def parse_set(items: list[str] | None) -> dict:
    """``["nudge=0.01", "activation=relu"]`` -> ``{"nudge": 0.01, "activation": "relu"}``.

    A value is read as JSON where it parses (numbers, ``true``/``false``, ``null``, lists), else kept as text; a
    key given twice or an item without ``=`` is a :class:`dynlearn.ConfigError` naming it."""
    options: dict = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ConfigError(f"--set takes KEY=VALUE with KEY a learner option name (e.g. --set nudge=0.01), got {item!r}")
        if key in options:
            raise ConfigError(f"--set {key} is given twice")
        try:
            value = json.loads(text)
        except ValueError:
            value = text.strip()
        options[key] = value
    return options


def figures_of_checks(check_names: list[str], theory_dir: Path, known: list[str]) -> list[str]:
    """The figures documenting ``check_names``: those embedded in each check's theory page (in page order), else a
    figure named like the check; registered figures only, each once."""
    from .theorems import checks

    registry = checks()
    out: list[str] = []
    for name in check_names:
        page = theory_dir / Path(registry[name].theory).name
        try:
            found = _FIGURE_LINK.findall(page.read_text(encoding="utf-8"))
        except OSError:
            found = []
        for fig in found or [name]:
            if fig in known and fig not in out:
                out.append(fig)
    return out


@contextlib.contextmanager
def debug_environment(on: bool):
    """``DYNLEARN_DEBUG=1`` for the duration (and for the workers spawned in it) when ``--debug`` is on."""
    saved = os.environ.get("DYNLEARN_DEBUG")
    if on:
        os.environ["DYNLEARN_DEBUG"] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("DYNLEARN_DEBUG", None)
        else:
            os.environ["DYNLEARN_DEBUG"] = saved


def warn_plot_problems(ncs) -> None:
    """One stderr line per figure whose data hold an empty or non-finite plotted series (see ``make_figure``)."""
    import xarray as xr

    for nc in ncs:
        with xr.open_dataset(nc) as ds:
            text = ds.attrs.get("plotted_problems", "")
        if text:
            typer.echo(f"warning: figure {Path(nc).stem} plots bad data: {text}", err=True)
