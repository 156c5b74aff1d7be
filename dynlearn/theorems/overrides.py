"""The configuration a check is run with, validated before any work: :func:`run_check`'s ``overrides``.

A check's keyword defaults say what each option is: a float default asks for a finite number; an int default for
an integer (a count, at least 1, ``None`` for "all" where the name starts with ``n_``; a seed, at least 0); a tuple
default for a non-empty sequence of the same kind of items; a bool, string or callable default for one of those.
Names add ranges: tolerances (``*_tol``, ``tol*``), noise levels and secondary time constants (``tau_*``: 0 turns a
filter off) are >= 0; steps, durations, the time constant ``tau`` and learning rates are > 0. A value outside its
range, or an option the check does not take, is a :class:`dynlearn.ConfigError` naming the check, the option, the
value and the allowed range, so a mistyped override never runs a check for minutes and never reaches JAX as garbage.
A check may refine these ranges itself; this is the floor every check gets.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any

import numpy as np

from .. import validation
from ..errors import ConfigError

#: integer options that may be 0 (every other integer option is a count, at least 1)
_MAY_BE_ZERO = re.compile(r"^(seed|delay|rank|tail|order|shift)$")
#: float options that must be > 0: steps, durations, time constants, learning rates, finite-difference steps
_POSITIVE = re.compile(r"^(dt|dt0|t1|t_end|t_pres|h|fd_step|step|lr|lr_\w+|\w+_lr|tau)$")
#: float options that must be >= 0: tolerances and noise levels
_NON_NEGATIVE = re.compile(r"^(tol|tol_\w+|\w+_tol|sigma|sigmas|\w+_noise|noise_\w+|tau_\w+)$")
#: tuple options whose items are sizes (integers >= 1) or seeds (integers >= 0)
_SIZES = re.compile(r"^(sizes|hidden|widths)$")
_SEEDS = re.compile(r"^seeds$")


def _is_number(v) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool)


def _integer(label: str, name: str, value) -> None:
    validation.integer(label, value, low=0 if _MAY_BE_ZERO.match(name) else 1, allow_none=name.startswith("n_"))


def _float(label: str, name: str, value) -> None:
    if _POSITIVE.match(name):
        validation.number(label, value, low=0.0, low_open=True)
    elif _NON_NEGATIVE.match(name):
        validation.number(label, value, low=0.0)
    else:
        validation.number(label, value)


def _sequence(label: str, name: str, value, default: tuple) -> None:
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list, np.ndarray)):
        raise ConfigError(f"{label} must be a tuple like its default {default!r}, got {value!r}")
    items = list(np.ravel(value)) if isinstance(value, np.ndarray) else list(value)
    if not items:
        raise ConfigError(f"{label} must be a non-empty tuple like its default {default!r}, got {value!r}")
    first = default[0] if default else None
    for i, item in enumerate(items):
        where = f"{label}[{i}]"
        if _SIZES.match(name):
            validation.integer(where, item, low=1)
        elif _SEEDS.match(name):
            validation.integer(where, item, low=0, high=2**31 - 1)
        elif isinstance(first, Integral) and not isinstance(first, bool):
            validation.integer(where, item)
        elif _is_number(first):
            validation.number(where, item)
        elif isinstance(first, str) and not isinstance(item, str):
            raise ConfigError(f"{where} must be a string like {first!r}, got {item!r}")


def _one(label: str, name: str, value, default) -> None:
    """Raise :class:`ConfigError` when ``value`` does not fit option ``name`` whose default is ``default``."""
    if default is inspect.Parameter.empty or default is None:
        return
    if isinstance(default, bool):
        if not isinstance(value, (bool, np.bool_)):
            raise ConfigError(f"{label} must be True or False, got {value!r}")
    elif isinstance(default, Integral):
        _integer(label, name, value)
    elif _is_number(default):
        _float(label, name, value)
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{label} must be a string like {default!r}, got {value!r}")
    elif isinstance(default, tuple):
        _sequence(label, name, value, default)
    elif callable(default) and not callable(value):
        raise ConfigError(f"{label} must be callable like its default {getattr(default, '__name__', default)!r}, got {value!r}")


def validate_overrides(name: str, fn: Callable[..., Any], overrides: dict[str, Any]) -> None:
    """Check ``overrides`` of the check ``name`` (function ``fn``) against its signature; raise :class:`ConfigError`."""
    params = inspect.signature(fn).parameters
    known = sorted(k for k, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
    unknown = sorted(k for k in overrides if k not in params)
    if unknown:
        raise ConfigError(f"check {name!r} has no option(s) {unknown}; its options: {known}")
    for key, value in overrides.items():
        _one(f"check {name!r}: {key}", key, value, params[key].default)
