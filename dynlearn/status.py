"""Relaxation status codes, the typed error each one raises, and how a jitted step carries them to the host.

Inside ``jit`` a status is a tracer, so no Python exception can be raised where the relaxation runs. A training
step opens :class:`collect_status` while it is traced; :func:`dynlearn.dynamics.raise_for_status` then records
each relaxation's status, residual and time instead of planting an :func:`equinox.error_if` (whose fixed message
loses the type, the time and the residual); the step returns the worst of them, and the host raises
:func:`status_error`'s :class:`dynlearn.NotConvergedError` or :class:`dynlearn.DivergedError`.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array

from .errors import DivergedError, NotConvergedError

# status codes of an Equilibrium
CONVERGED, NOT_STEADY, MAX_STEPS, DIVERGED = 0, 1, 2, 3


def status_error(status: int, name: str, time: float, residual: float, num_steps: int | None, tol, context: str = "") -> Exception | None:
    """The :class:`NotConvergedError` / :class:`DivergedError` for a status code (``None`` for ``CONVERGED``), naming the
    model, the time reached and the residual (``context``, e.g. "at epoch 2, step 5", is added after the name)."""
    status = int(status)
    if status == CONVERGED:
        return None
    steps = "" if num_steps is None else f" after {int(num_steps)} steps"
    when = f"t = {float(time):.4g}{steps}, " if jnp.isfinite(float(time)) else ""
    where = f"{when}residual max|dy/dt| = {float(residual):.3e}"
    name = f"{name} {context}".strip()
    if status == DIVERGED:
        return DivergedError(f"{name}: relaxation diverged at {where} (state left the bounded region, blew up in finite time or became NaN/inf)")
    what = {NOT_STEADY: "did not reach a steady state by t1", MAX_STEPS: "hit max_steps before reaching a steady state"}[status]
    tol_s = "tol" if tol is None else f"{tol:g}"
    return NotConvergedError(
        f"{name}: relaxation {what}: {where} > tol = {tol_s}. Increase t1/max_steps, loosen tol, or check the model's stability."
    )


class StatusSink:
    """Relaxation statuses collected while a function is traced (see :func:`collect_status`)."""

    def __init__(self, trace):
        self.trace = trace
        self.entries: list[tuple[str, float | None, object]] = []

    def owns(self, x) -> bool:
        return getattr(x, "_trace", None) is self.trace

    def worst(self) -> dict[str, Array] | None:
        """``{"relax_status", "relax_residual", "relax_time", "relax_index"}`` of the worst relaxation collected
        (DIVERGED > MAX_STEPS > NOT_STEADY > CONVERGED), or ``None`` when none was."""
        if not self.entries:
            return None
        statuses = jnp.stack([jnp.asarray(e.status, jnp.int32) for _, _, e in self.entries])
        i = jnp.argmax(statuses)
        pick = lambda a: jnp.stack([jnp.asarray(getattr(e, a)) for _, _, e in self.entries])[i]  # noqa: E731
        return {"relax_status": statuses[i], "relax_residual": pick("residual"), "relax_time": pick("time"), "relax_index": i}


_SINKS: list[StatusSink] = []


class collect_status:
    """Inside a function being traced (a jitted training step), ``with collect_status() as sink:`` makes
    :func:`raise_for_status` record the status of every relaxation of that trace in ``sink`` instead of planting an
    :func:`equinox.error_if` with a fixed message. The step returns ``sink.worst()`` and the host raises the typed
    error with :func:`status_error` (what :func:`dynlearn.learning.train` does). Relaxations inside a nested
    transformation (``vmap``, an inner ``jit``) keep the runtime check."""

    def __enter__(self) -> StatusSink:
        try:
            from jax._src.core import trace_ctx

            trace = trace_ctx.trace
        except (ImportError, AttributeError):  # another JAX: every relaxation keeps its runtime check
            trace = object()
        _SINKS.append(StatusSink(trace))
        return _SINKS[-1]

    def __exit__(self, *exc) -> None:
        _SINKS.pop()
