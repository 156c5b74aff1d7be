r"""How to relax a model to its steady state: one configuration type and its named presets, defined once.

Every relaxation in dynlearn — a learner's inference phase, a theorem check's tight equilibrium, an EP
nudged phase — is :func:`dynlearn.models.equilibrium` with a :class:`RelaxConfig`. The presets below are
the only place a tolerance of a relaxation is written; derive a variant with :meth:`RelaxConfig.replace`.

The steady-state test is on the vector field, :math:`\max|f(t, y)| \le` ``tol``; ``rtol``/``atol`` are the
adaptive controller's local-error tolerances (keep ``atol`` well below ``tol``: the residual cannot be
resolved below the solver's own error).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import diffrax
import equinox as eqx
import optimistix as optx

from .errors import ConfigError, UnknownNameError

_SOLVERS = {
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
    "heun": diffrax.Heun,
    "euler": diffrax.Euler,
    "kvaerno5": diffrax.Kvaerno5,
    "shark": diffrax.ShARK,
    "sra1": diffrax.SRA1,
    "sea": diffrax.SEA,
}


def get_solver(solver: str | diffrax.AbstractSolver) -> diffrax.AbstractSolver:
    """A diffrax solver from its lower-case name (``tsit5``, ``euler``, ``heun``, ``shark``, ...) or as given."""
    if isinstance(solver, diffrax.AbstractSolver):
        return solver
    try:
        return _SOLVERS[solver]()
    except (KeyError, TypeError):
        raise UnknownNameError(f"unknown solver {solver!r}; choose one of {sorted(_SOLVERS)} or pass a diffrax solver") from None


#: how a relaxation reaches its steady state (:attr:`RelaxConfig.method`; see :mod:`dynlearn.minimise`)
METHODS = ("flow", "bfgs", "lbfgs", "nonlinear_cg", "newton")


def _is_fixed_step(solver: diffrax.AbstractSolver) -> bool:
    return isinstance(solver, (diffrax.Euler, diffrax.SemiImplicitEuler)) or not isinstance(
        solver, diffrax.AbstractAdaptiveSolver
    )


class RelaxConfig(eqx.Module):
    """Settings of one relaxation to a steady state (static: a new value compiles a new solve).

    Attributes:
        solver: a diffrax solver or its name (``"tsit5"``, ``"euler"``, ``"kvaerno5"``, ...).
        controller: any diffrax step-size controller; ``None`` builds a PID controller from ``rtol``/``atol``
            (max-norm over the whole state) for adaptive solvers and a constant step for fixed-step ones.
        tol: steady state when :math:`\\max|f(t,y)| \\le` ``tol``.
        rtol, atol: local-error tolerances of the default controller.
        t1: latest time. dt0: initial (adaptive) or fixed step; fixed-step solvers default to 0.1.
        max_steps: solver step budget. bound: the state counts as diverged when :math:`\\max|y|` exceeds it.
        steady: ``False`` integrates to ``t1`` with no steady-state test (a fixed budget: no extra field
            evaluation per step, and no error when the state is still moving at ``t1``).
        polish: finish with Newton's method (optimistix) to residual ``<= polish_tol``.
        polish_max_steps: Newton iterations allowed.
        throw: raise :class:`dynlearn.NotConvergedError` / :class:`dynlearn.DivergedError` unless converged.
        method: ``"flow"`` integrates the vector field (the solver and controller above); ``"bfgs"``, ``"lbfgs"``,
            ``"nonlinear_cg"`` minimise an energy model's energy and ``"newton"`` root-finds the field, with
            optimistix (:mod:`dynlearn.minimise`; ``tol``, ``atol``, ``max_steps``, ``bound`` keep their meaning).
    """

    solver: Any = eqx.field(static=True, default="tsit5")
    controller: Any = eqx.field(static=True, default=None)
    tol: float = eqx.field(static=True, default=1e-6)
    rtol: float = eqx.field(static=True, default=1e-6)
    atol: float = eqx.field(static=True, default=1e-8)
    t1: float = eqx.field(static=True, default=1e3)
    dt0: float | None = eqx.field(static=True, default=None)
    max_steps: int = eqx.field(static=True, default=10_000)
    bound: float = eqx.field(static=True, default=1e6)
    steady: bool = eqx.field(static=True, default=True)
    polish: bool = eqx.field(static=True, default=False)
    polish_tol: float = eqx.field(static=True, default=1e-12)
    polish_max_steps: int = eqx.field(static=True, default=50)
    throw: bool = eqx.field(static=True, default=True)
    method: str = eqx.field(static=True, default="flow")

    def __check_init__(self):
        from .validation import integer, number

        if self.method not in METHODS:
            raise ConfigError(f"RelaxConfig.method must be one of {METHODS}, got {self.method!r}")

        get_solver(self.solver)
        for name in ("tol", "rtol", "atol", "polish_tol"):
            number(f"RelaxConfig.{name}", getattr(self, name), low=0.0)
        number("RelaxConfig.t1 (a time)", self.t1, low=0.0, low_open=True)
        number("RelaxConfig.dt0 (or None)", self.dt0, low=0.0, low_open=True, high=self.t1, allow_none=True)
        for name in ("max_steps", "polish_max_steps"):
            integer(f"RelaxConfig.{name}", getattr(self, name), low=1)
        if isinstance(self.bound, bool) or not isinstance(self.bound, (int, float)) or not self.bound > 0:
            raise ConfigError(f"RelaxConfig.bound must be a number > 0 (inf: no bound), got {self.bound!r}")
        if self.controller is not None and not isinstance(self.controller, diffrax.AbstractStepSizeController):
            raise ConfigError(f"RelaxConfig.controller must be a diffrax step-size controller or None, got {self.controller!r}")

    def replace(self, **changes) -> RelaxConfig:
        """A copy with some fields changed (unknown names raise :class:`dynlearn.ConfigError`)."""
        names = {f.name for f in dataclasses.fields(self)}
        bad = sorted(set(changes) - names)
        if bad:
            raise ConfigError(f"RelaxConfig has no field(s) {bad}; fields: {sorted(names)}")
        return dataclasses.replace(self, **changes)

    def diffrax_solver(self) -> diffrax.AbstractSolver:
        return get_solver(self.solver)

    def step_controller(self) -> diffrax.AbstractStepSizeController:
        """The step-size controller: as given, else PID (max-norm) for adaptive solvers, constant steps otherwise."""
        if self.controller is not None:
            return self.controller
        if _is_fixed_step(self.diffrax_solver()):
            return diffrax.ConstantStepSize()
        return diffrax.PIDController(rtol=self.rtol, atol=self.atol, norm=optx.max_norm)

    def initial_step(self) -> float | None:
        if self.dt0 is None and isinstance(self.step_controller(), diffrax.ConstantStepSize):
            return 0.1
        return self.dt0


#: the library default: adaptive Tsit5 to max|dy/dt| <= 1e-6
DEFAULT = RelaxConfig()
#: inference inside a training step: a loose steady state (max|dx/dt| <= 1e-2) with the local error 100x below it
TRAINING = RelaxConfig(tol=1e-2, rtol=1e-4, atol=1e-4, t1=200.0, max_steps=2048)
#: theorem checks: max|dy/dt| <= 1e-9 from the relaxation alone
THEOREM = RelaxConfig(tol=1e-9, rtol=1e-10, atol=1e-12, t1=5e3, max_steps=100_000)
#: theorem checks that use the relaxed state without a Newton polish and need it to round-off
THEOREM_STRICT = RelaxConfig(tol=1e-11, rtol=1e-12, atol=1e-13, t1=2000.0, max_steps=20_000)
#: relax only into Newton's basin of attraction, then polish to 1e-12
NEWTON = RelaxConfig(tol=1e-6, rtol=1e-7, atol=1e-9, t1=2000.0, max_steps=20_000, polish=True)

PRESETS = {"default": DEFAULT, "training": TRAINING, "theorem": THEOREM, "theorem_strict": THEOREM_STRICT, "newton": NEWTON}
