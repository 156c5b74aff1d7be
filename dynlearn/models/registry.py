"""The registry of learners: the names that ``dynlearn train --model NAME [--rule RULE]`` accepts.

A :class:`Learner` bundles what the generic training loop (:func:`dynlearn.learning.train`) needs to
train one model with one rule: how to make its parameters, how to compute the update for a batch, and
how to predict. Model modules register theirs with :func:`register_learner`; the CLI looks them up with
:func:`get_learner`. Nothing here knows any model by name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from .._discovery import import_modules
from ..errors import UnknownNameError


@dataclasses.dataclass(frozen=True)
class Learner:
    """How to train one model with one learning rule.

    Attributes:
        name: ``"model"`` or ``"model/rule"``.
        init: ``init(key, sizes, **options) -> params`` (an equinox PyTree).
        update: ``update(params, x, y) -> (grads, metrics)``, pure and jit-able; ``grads`` has the
            structure of ``params`` and is a *descent* direction's negative (like ``jax.grad`` of a loss),
            so optax applies it as usual; ``metrics`` is a dict of scalars.
        predict: ``predict(params, x) -> output`` used for accuracy.
        description: one line for ``--help``.
        defaults: default options (learning rate, activation, solver settings, ...).
    """

    name: str
    init: Callable[..., Any]
    update: Callable[..., Any]
    predict: Callable[..., Any]
    description: str = ""
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)


_LEARNERS: dict[str, Callable[..., Learner]] = {}


def register_learner(name: str):
    """Decorator: register ``factory(**options) -> Learner`` under ``name`` (``"pc"``, ``"fa"``, ...)."""

    def deco(factory):
        if name in _LEARNERS:
            raise ValueError(f"learner {name!r} is registered twice")
        _LEARNERS[name] = factory
        return factory

    return deco


def _load_all() -> None:
    """Importing the model modules registers their learners."""
    import_modules(__package__, skip=("base", "registry"))


def learner_names() -> list[str]:
    """All registered learner names."""
    _load_all()
    return sorted(_LEARNERS)


def get_learner(name: str, **options) -> Learner:
    """The learner registered as ``name``, built with ``options`` (raises :class:`UnknownNameError`)."""
    _load_all()
    try:
        factory = _LEARNERS[name]
    except KeyError:
        raise UnknownNameError(f"unknown model/rule {name!r}; known: {', '.join(sorted(_LEARNERS))}") from None
    return factory(**options)
