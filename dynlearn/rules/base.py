r"""The rule protocol (optax-like) and the learner registry.

A :class:`Rule` turns a batch into a weight update, always in **descent sign** — the update is what ``jax.grad`` of a
loss would return, so any optax optimiser applies it as it applies a gradient:

.. code-block:: python

    rule_state = rule.init(key, params)
    grads, rule_state, metrics = rule.update(params, rule_state, Data(x, y), key)
    updates, opt_state = optimizer.update(grads, opt_state, params)

``rule_state`` holds what a rule carries between batches that is not a trained parameter (traces, filters, step
counters); randomness comes only from the ``key`` argument. A :class:`Learner` bundles a rule with how to build its
parameters from a :class:`dynlearn.Network` and how to predict; learners are registered in :data:`LEARNERS`
by the module that defines the rule, so a new rule is one module and edits no shared file.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Any

import equinox as eqx
from jaxtyping import Array, PRNGKeyArray, PyTree

from ..models.base import Data
from ..registry import Registry


class Rule(eqx.Module):
    """A learning rule: ``init(key, params) -> rule_state`` and
    ``update(params, rule_state, batch, key) -> (grads, rule_state, metrics)`` in descent sign."""

    def init(self, key: PRNGKeyArray, params: PyTree) -> PyTree:
        """The rule's state before the first batch (default: none)."""
        return ()

    @abc.abstractmethod
    def update(self, params: PyTree, rule_state: PyTree, batch: Data, key: PRNGKeyArray) -> tuple[PyTree, PyTree, dict[str, Array]]:
        """``(grads, rule_state, metrics)``: ``grads`` has the structure of ``params`` and the sign of a loss gradient;
        ``metrics`` maps names to scalars (summed-over-batch quantities divided by the batch size)."""


def _identity_params(key, network):
    return network


def _network_output(params, x):
    return params(x)


@dataclasses.dataclass(frozen=True)
class Learner:
    """How to train one model with one rule: ``train``, sweeps and comparisons use only these fields.

    Attributes:
        name: ``"model"`` or ``"model/rule"`` (what ``dynlearn train`` and ``dynlearn list`` show).
        rule: the :class:`Rule`.
        init: ``init(key, network) -> params``: the trained PyTree built around a :class:`dynlearn.Network`
            (the network itself, or the network plus feedback matrices, a microcircuit, ...).
        predict: ``predict(params, x) -> output`` for accuracy.
        description: one line for ``dynlearn list``.
        defaults: the options the learner was built with, and its default learning rate ``lr`` and ``activation``.
        options: the keyword options given to :func:`get_learner` (recorded in a run's ``config.json``).
    """

    name: str
    rule: Rule
    init: Callable[[PRNGKeyArray, Any], Any] = _identity_params
    predict: Callable[[Any, Array], Array] = _network_output
    description: str = ""
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


#: the learner factories, ``factory(**options) -> Learner``, by name (``"pc"``, ``"fa"``, ``"ep"``, ...)
LEARNERS: Registry[Callable[..., Learner]] = Registry("model/rule", ("dynlearn.models", "dynlearn.rules"), skip=("base",))


def learner_names() -> list[str]:
    """All registered learner names."""
    return sorted(LEARNERS.names())


#: allowed ranges of the options learners share, by name: ``(low, low_open)`` for finite numbers; checked by
#: :func:`get_learner` before the factory runs (a factory checks its own special options itself)
OPTION_RANGES: dict[str, tuple[float, bool]] = {
    "lr": (0.0, True), "nudge": (0.0, True), "beta": (0.0, False), "decay": (0.0, False), "alpha": (0.0, False),
    "sigma": (0.0, False), "tau_xi": (0.0, True), "tau_hp": (0.0, True), "t_noise": (0.0, True), "dt": (0.0, True),
    "init_gain": (0.0, True), "scale": (0.0, True), "gain": (0.0, True),
}
#: integer options, by name: the smallest allowed value
INTEGER_OPTIONS: dict[str, int] = {"n_points": 1, "samples": 1}


def validate_options(name: str, factory: Callable[..., Learner], options: dict[str, Any]) -> None:
    """Raise :class:`dynlearn.ConfigError` for an option ``factory`` does not take or a value outside its range."""
    import inspect

    from .. import validation
    from ..errors import ConfigError
    from ..networks import activation as get_activation

    params = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    known = sorted(k for k, p in params.items() if p.kind is p.KEYWORD_ONLY)
    bad = sorted(k for k in options if k not in params and not takes_any)
    if bad:
        raise ConfigError(f"learner {name!r} has no option(s) {bad}; its options: {known}")
    for key, value in options.items():
        if key in OPTION_RANGES:
            low, low_open = OPTION_RANGES[key]
            validation.number(f"{name}: {key}", value, low=low, low_open=low_open)
        elif key in INTEGER_OPTIONS:
            validation.integer(f"{name}: {key}", value, low=INTEGER_OPTIONS[key])
        elif key == "activation":
            get_activation(value)


def get_learner(name: str, **options) -> Learner:
    """The learner registered as ``name``, built with ``options``.

    Raises :class:`dynlearn.UnknownNameError` for an unknown name and :class:`dynlearn.ConfigError` for an option the
    learner does not take or a value outside its range (:data:`OPTION_RANGES`: ``lr`` and ``nudge`` > 0, ``decay``,
    ``alpha``, ``sigma``, ``beta`` >= 0, time constants > 0, ...), before anything is built.
    """
    factory = LEARNERS[name]
    validate_options(name, factory, options)
    try:
        learner = factory(**options)
    except ValueError as e:  # a factory's own range check
        from ..errors import ConfigError, DynlearnError

        if isinstance(e, DynlearnError):
            raise
        raise ConfigError(f"learner {name!r}: {e}") from None
    return dataclasses.replace(learner, options=dict(options))
