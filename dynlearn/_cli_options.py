"""Option parsing of the ``dynlearn`` command that is more than a type: ``--set KEY=VALUE`` learner options and the
figures that belong to a selection of checks."""

from __future__ import annotations

import json
import re
from pathlib import Path

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
