"""One generic registry: checks, figures and learners are each an instance.

A registry fills itself on first use by importing every module of its packages (recursively), so a new model
family or rule adds files and edits none: the module's ``@REGISTRY.register(name)`` decorator is its entry. Entries
are listed in the order of that walk (families of :data:`FAMILY_ORDER` first), whatever was imported before it.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")

#: families in the order users meet them; the order in which checks and figures are listed
FAMILY_ORDER = ("pc", "ep", "feedback", "pal", "microcircuit")


def _module_names(package: str, path) -> list[str]:
    """Every module below ``package`` (found on ``path``), without importing any of them."""
    names = []
    for m in pkgutil.iter_modules(path):
        full = f"{package}.{m.name}"
        names.append(full)
        if m.ispkg:
            names += _module_names(full, [os.path.join(p, m.name) for p in path])
    return names


def import_modules(package: str, skip: tuple[str, ...] = ()) -> None:
    """Import every public module of ``package`` and its subpackages except ``skip``: the families of
    :data:`FAMILY_ORDER` first, in that order, then the rest by name (so entries register in that order)."""
    pkg = importlib.import_module(package)
    found = [
        name for name in _module_names(package, pkg.__path__)
        if not any(part.startswith("_") for part in name.split(".")) and name.rsplit(".", 1)[-1] not in skip
    ]
    for name in sorted(found, key=lambda n: module_order(package, n)):
        importlib.import_module(name)


def module_order(package: str, module: str) -> tuple[int, str]:
    """The sort key of ``module`` below ``package``: its family's place in :data:`FAMILY_ORDER`, then its name."""
    first = module[len(package) + 1 :].split(".")[0] if module.startswith(package + ".") else module
    rank = {name: i for i, name in enumerate(FAMILY_ORDER)}
    return (rank.get(first, len(rank)), module)


class Registry(Generic[T]):
    """Named entries of one kind, discovered by importing ``packages``.

    >>> CHECKS = Registry("check", ("dynlearn.theorems",))       # doctest: +SKIP
    >>> @CHECKS.register("pc_bp_limit")                           # doctest: +SKIP
    ... def pc_bp_limit(**config): ...
    """

    def __init__(self, kind: str, packages: tuple[str, ...], skip: tuple[str, ...] = ()):
        self.kind = kind
        self.packages = packages
        self.skip = skip
        self._entries: dict[str, T] = {}
        self._modules: dict[str, str] = {}
        self._loaded = False

    def register(self, name: str, entry: T | None = None) -> Callable[[T], T] | T:
        """Register ``entry`` under ``name``; without ``entry``, a decorator that registers what it decorates."""

        def add(item: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = item
            self._modules[name] = getattr(getattr(item, "fn", item), "__module__", "") or ""
            return item

        return add if entry is None else add(entry)

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for package in self.packages:
                import_modules(package, self.skip)
            # the walk's order whatever was imported before it (a test importing one family first, say)
            position = {name: i for i, name in enumerate(self._entries)}
            self._entries = dict(sorted(self._entries.items(), key=lambda kv: (self._order(kv[0]), position[kv[0]])))

    def _order(self, name: str) -> tuple:
        module = self._modules.get(name, "")
        for i, package in enumerate(self.packages):
            if module.startswith(package + "."):
                return (i, *module_order(package, module))
        return (len(self.packages), 0, module)

    def __getitem__(self, name: str) -> T:
        self._load()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {', '.join(self._entries)}") from None

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(list(self._entries))

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def names(self) -> list[str]:
        self._load()
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        self._load()
        return list(self._entries.items())
