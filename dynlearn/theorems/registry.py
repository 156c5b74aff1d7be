"""The one registry of theorem checks and the verdict type they return.

A check is a function of a small configuration (keyword arguments) that measures something a theorem
predicts and returns ``(dataset, verdict)``: an :class:`xarray.Dataset` of the measured quantities over
the swept variable, and a :class:`Verdict` with every measured figure and the tolerance it was held to.
Tests call checks, figure scripts plot their datasets, and ``dynlearn check`` reports them — one source
of truth. Checks run in float64: :func:`run_check` enables it for the duration of the check only.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import xarray as xr

from ..errors import ConfigError, DynlearnError
from ..registry import Registry
from .criteria import is_reported
from .overrides import validate_overrides


@dataclasses.dataclass(frozen=True)
class Verdict:
    """Whether a check passed, with each measured figure and its tolerance.

    Attributes:
        passed: all criteria hold.
        measured: ``{quantity: value}``.
        tolerance: ``{quantity: "<= 1e-8"-style requirement}``.
        failed: the quantities whose criterion failed.
    """

    passed: bool
    measured: dict[str, float]
    tolerance: dict[str, str]
    failed: tuple[str, ...] = ()

    @classmethod
    def from_criteria(cls, **criteria: tuple[Any, str, Any]) -> Verdict:
        """Build from ``quantity=(measured, requirement text, ok)`` triples."""
        measured, tolerance, failed = {}, {}, []
        for key, (value, requirement, ok) in criteria.items():
            measured[key] = float(value)
            tolerance[key] = requirement
            if is_reported(requirement):
                continue
            if not bool(ok) or math.isnan(measured[key]):
                failed.append(key)
        return cls(not failed, measured, tolerance, tuple(failed))

    def summary(self) -> str:
        return ", ".join(f"{k}={_fmt(v)} ({self.tolerance[k]})" for k, v in self.measured.items())


def _fmt(v: float) -> str:
    return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: its name, dataset, verdict and wall time."""

    name: str
    data: xr.Dataset
    verdict: Verdict
    seconds: float = float("nan")

    @property
    def passed(self) -> bool:
        return self.verdict.passed

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.verdict.passed,
            "measured": self.verdict.measured,
            "tolerance": self.verdict.tolerance,
            "failed": list(self.verdict.failed),
            "seconds": round(self.seconds, 3),
        }


@dataclasses.dataclass(frozen=True)
class Check:
    """A registered check: the function, its quick and full configurations, and where it is documented."""

    name: str
    fn: Callable[..., tuple[xr.Dataset, Verdict]]
    family: str
    statement: str
    quick: dict[str, Any]
    full: dict[str, Any]
    theory: str


#: every theorem check by name, in registration order (families in :data:`dynlearn.registry.FAMILY_ORDER`)
CHECKS: Registry[Check] = Registry("check", ("dynlearn.theorems",), skip=("registry", "criteria", "pages", "overrides"))


def register_check(
    name: str,
    *,
    family: str,
    statement: str,
    theory: str,
    quick: dict[str, Any] | None = None,
    full: dict[str, Any] | None = None,
):
    """Decorator registering ``fn(**config) -> (Dataset, Verdict)`` as the check ``name``.

    ``quick`` and ``full`` override the function's keyword defaults for ``--quick`` and ``--full`` runs;
    ``theory`` is the page under ``theory/`` that states the theorem.
    """

    def deco(fn):
        CHECKS.register(name, Check(name, fn, family, statement, dict(quick or {}), dict(full or {}), theory))
        return fn

    return deco


def checks() -> dict[str, Check]:
    """All registered checks by name, in registration order."""
    return dict(CHECKS.items())


def get_check(name: str) -> Check:
    return CHECKS[name]


_MEMO: dict[Any, CheckResult] = {}


def run_check(name: str, *, quick: bool = True, cache: bool = True, **overrides) -> CheckResult:
    """Run one check in float64 with its quick (default) or full configuration plus ``overrides``.

    Results are remembered for the life of the process (``cache=False`` recomputes), so a figure made
    after ``dynlearn check`` in the same run does not repeat the computation. The configuration is validated first
    (:func:`dynlearn.theorems.overrides.validate_overrides`): an option the check does not take or a value outside
    its range raises :class:`dynlearn.ConfigError` naming it, before any work.
    """
    import jax

    try:
        memo_key = (name, quick, tuple(sorted(overrides.items())))
        hash(memo_key)
    except TypeError:
        memo_key = None
    if cache and memo_key in _MEMO:
        return _MEMO[memo_key]

    check = get_check(name)
    if not isinstance(quick, bool):
        raise ConfigError(f"run_check: quick must be True or False, got {quick!r}")
    config = {**(check.quick if quick else check.full), **overrides}
    validate_overrides(name, check.fn, config)
    start = time.perf_counter()
    with jax.enable_x64(True):  # scoped: the caller's setting is restored afterwards
        ds, verdict = check.fn(**config)
    seconds = time.perf_counter() - start
    ds.attrs.update(
        check=name,
        statement=check.statement,
        passed=int(verdict.passed),
        measured=json.dumps(verdict.measured),
        tolerance=json.dumps(verdict.tolerance),
        check_config=json.dumps(config, default=str),
    )
    result = CheckResult(name, ds, verdict, seconds)
    if cache and memo_key is not None:
        _MEMO[memo_key] = result
    return result


def run_checks(names: Iterable[str] | None = None, *, quick: bool = True, progress: bool = False) -> list[CheckResult]:
    """Run several checks (all by default); with ``progress`` show a progress bar.

    A check that raises (a relaxation that does not converge, say) stops the run with the same error, its message
    prefixed with the check's name."""
    names = list(names) if names is not None else list(checks())
    iterator = names
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(names, desc="theorem checks", unit="check")
    results = []
    for n in iterator:
        if progress:
            iterator.set_postfix_str(n)
        try:
            results.append(run_check(n, quick=quick))
        except DynlearnError as e:
            raise type(e)(f"{n}: {e}") from e
    if progress:
        iterator.close()
    return results
