r"""The steady-state test of :func:`dynlearn.dynamics.relax` at no extra vector-field evaluation.

A relaxation stops when :math:`\max|f(t_n, y_n)| \le \mathrm{tol}` after an accepted step. Testing that in a
diffrax event evaluates the whole field once more per step (an event sees only ``(t, y)``), although
the solver often holds the value already:

* explicit Runge–Kutta pairs that are FSAL with the last stage at :math:`y_{n+1}` (Tsit5, Dopri5, Dopri8,
  Bosh3: ``tableau.fsal and tableau.ssal``) keep :math:`k_s = f(t_{n+1}, y_{n+1})` in their solver state for
  the next step;
* forward Euler needs :math:`f(t_{n+1}, y_{n+1})` for its next step anyway; :class:`ResidualTracking` runs
  it "FSAL": the value computed at the end of one step is the first of the next,
  :math:`y_{n+1} = y_n + \Delta t\, f(t_n, y_n)`, one evaluation per step.

:class:`ResidualTracking` wraps such a solver and carries :math:`r_n = \max|f(t_n, y_n)|` as an extra
scalar of the state, ``(y, r)``; the event tests ``r <= tol``. The scalar has zero derivative and zero
error estimate, so the step-size controller's max-norm and the trajectory of ``y`` are those of the
wrapped solver (bit for bit, up to summation order in XLA). Other solvers (Heun, implicit ones) keep
the direct test (:func:`steady_event`). The carried ``r`` at the last step is the relaxation's final residual, so
a tracked relaxation evaluates the field no more than its solver does.
A fixed budget has no test at all; its final residual is one evaluation at the end.
"""

from __future__ import annotations

from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp


def tracks_residual(solver: diffrax.AbstractSolver, controller: diffrax.AbstractStepSizeController) -> bool:
    """Whether :class:`ResidualTracking` can carry the residual of ``solver`` without extra evaluations."""
    if type(solver) is diffrax.Euler:
        return isinstance(controller, diffrax.ConstantStepSize)
    tab = getattr(solver, "tableau", None)
    return isinstance(solver, diffrax.AbstractRungeKutta) and isinstance(tab, diffrax.ButcherTableau) and tab.fsal and tab.ssal and not tab.implicit


class AugmentedField(eqx.Module):
    """``(y, r) -> (f(t, y), 0)``: the field on the state carrying the residual scalar."""

    field: Any

    def __call__(self, t, yr, args):
        y, r = yr
        return self.field(t, y, args), jnp.zeros_like(r)


class _Interpolation(eqx.Module):
    inner: Any
    r1: Any

    def evaluate(self, t0, t1=None, left=True):
        y = self.inner.evaluate(t0, t1, left)
        return y, (jnp.zeros_like(self.r1) if t1 is not None else self.r1)


class ResidualTracking(diffrax.AbstractAdaptiveSolver):
    """Wraps an FSAL Runge–Kutta solver or Euler; the state is ``(y, r)`` with ``r = max|f(t, y)|`` after each step."""

    solver: diffrax.AbstractSolver

    term_structure = diffrax.AbstractTerm

    @property
    def interpolation_cls(self):
        inner_cls = self.solver.interpolation_cls
        return lambda *, t0, t1, inner, r1: _Interpolation(inner_cls(t0=t0, t1=t1, **inner), r1)

    def order(self, terms):
        return self.solver.order(terms)

    def strong_order(self, terms):
        return self.solver.strong_order(terms)

    def error_order(self, terms):
        return self.solver.error_order(terms)

    @staticmethod
    def _inner(terms, r):
        return diffrax.ODETerm(lambda t, y, args: terms.vf(t, (y, r), args)[0])

    def init(self, terms, t0, t1, y0, args):
        y, r = y0
        if type(self.solver) is diffrax.Euler:
            return self._inner(terms, r).vf(t0, y, args)  # f(t0, y0): the first Euler step's slope
        return self.solver.init(self._inner(terms, r), t0, t1, y, args)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        from .dynamics import max_norm

        y, r = y0
        inner = self._inner(terms, r)
        if type(self.solver) is diffrax.Euler:
            # y_{n+1} = y_n + dt f(t_n, y_n) with f(t_n, y_n) from the previous step's end
            control = terms.contr(t0, t1)
            y1 = jax.tree.map(lambda a, v: a + control * v, y, solver_state)
            f1 = inner.vf(t1, y1, args)
            dense, err, result = {"y0": y, "y1": y1}, None, diffrax.RESULTS.successful
            new_state = f1
        else:
            y1, err, dense, new_state, result = self.solver.step(inner, t0, t1, y, args, solver_state, made_jump)
            f1 = new_state[1]  # FSAL: f(t1, y1)
        r1 = max_norm(f1).astype(r.dtype)
        y_err = None if err is None else (err, jnp.zeros_like(r))
        return (y1, r1), y_err, {"inner": dense, "r1": r1}, new_state, result

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)


def steady_event(field, tol):
    """The direct steady-state test ``max|f(t, y)| <= tol`` (one extra field evaluation per step)."""

    from .dynamics import max_norm

    def steady(t, y, args, **kwargs):
        return max_norm(field(t, y, args)) <= tol

    return steady
