"""Registries fill themselves by importing their package's modules: a new model family adds files, edits none."""

from __future__ import annotations

import importlib
import pkgutil

FAMILY_ORDER = ("pc", "ep", "feedback", "pal", "microcircuit")


def import_modules(package: str, skip: tuple[str, ...] = ()) -> None:
    """Import every public module of ``package`` except ``skip``: the model families in the order users meet them
    (:data:`FAMILY_ORDER`, which is the order their checks and figures are listed), then the rest by name."""
    pkg = importlib.import_module(package)
    found = [m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_") and m.name not in skip]
    rank = {name: i for i, name in enumerate(FAMILY_ORDER)}
    for name in sorted(found, key=lambda n: (rank.get(n, len(rank)), n)):
        importlib.import_module(f"{package}.{name}")
