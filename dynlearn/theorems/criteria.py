"""Criteria of theorem checks: each builds the requirement text and the test from the same number.

A check states each criterion once, e.g. ``residual=at_most(res, 1e-8)`` or ``slope=within(s, 1.0, 0.15)``;
:meth:`dynlearn.theorems.Verdict.from_criteria` collects ``(measured, requirement, ok)`` triples. A value that is
NaN fails every criterion. ``reported`` values are shown but are not criteria: they never pass or fail a check.
"""

from __future__ import annotations

import math


def _num(v) -> float:
    return float(v)


def _g(v: float) -> str:
    return f"{v:g}"


def at_most(value, bound: float) -> tuple[float, str, bool]:
    """``value <= bound``."""
    v = _num(value)
    return v, f"<= {_g(bound)}", v <= bound


def below(value, bound: float) -> tuple[float, str, bool]:
    """``value < bound``."""
    v = _num(value)
    return v, f"< {_g(bound)}", v < bound


def at_least(value, bound: float) -> tuple[float, str, bool]:
    """``value >= bound``."""
    v = _num(value)
    return v, f">= {_g(bound)}", v >= bound


def above(value, bound: float) -> tuple[float, str, bool]:
    """``value > bound``."""
    v = _num(value)
    return v, f"> {_g(bound)}", v > bound


def within(value, target: float, tol: float) -> tuple[float, str, bool]:
    """``|value - target| <= tol`` (a two-sided bound, e.g. a convergence order)."""
    v = _num(value)
    return v, f"{_g(target)} ± {_g(tol)}", abs(v - target) <= tol


def between(value, low: float, high: float) -> tuple[float, str, bool]:
    """``low <= value <= high``."""
    v = _num(value)
    return v, f"in [{_g(low)}, {_g(high)}]", low <= v <= high


REPORTED = "reported (not a criterion)"


def reported(value) -> tuple[float, str, bool]:
    """A measured figure shown beside the criteria; it does not decide the verdict."""
    return _num(value), REPORTED, True


def is_reported(requirement: str) -> bool:
    return requirement.lower().startswith("reported")


def finite(value) -> bool:
    return math.isfinite(_num(value))
