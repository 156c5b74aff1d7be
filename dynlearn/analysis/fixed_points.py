r"""Fixed points of a flow: the Jacobian there, its spectrum, stability, and energy monotonicity.

A fixed point :math:`y^*` of :math:`\dot y = f(y)` is linearly (exponentially) stable when every
eigenvalue of :math:`\partial f/\partial y(y^*)` has a negative real part. For a gradient flow
:math:`f = -\nabla E` the Jacobian is :math:`-\nabla^2 E`, so stability means a strict local minimum.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.flatten_util import ravel_pytree


def flow_jacobian(field, y, args=None, t=0.0):
    """Dense Jacobian :math:`\\partial f/\\partial y` at ``y``, with the state PyTree flattened."""
    flat, unravel = ravel_pytree(y)
    fn = lambda v: ravel_pytree(field(t, unravel(v), args))[0]
    return jax.jacfwd(fn)(flat)


def spectrum(field, y, args=None, t=0.0) -> np.ndarray:
    """Eigenvalues of the flow's Jacobian at ``y`` (numpy, sorted by real part, largest first)."""
    jac = np.asarray(flow_jacobian(field, y, args, t))
    ev = np.linalg.eigvals(jac)
    return ev[np.argsort(-ev.real)]


def is_stable(eigenvalues, margin: float = 0.0) -> bool:
    """True when every eigenvalue has real part ``< -margin``."""
    return bool(np.max(np.real(eigenvalues)) < -margin)


def energy_increase(energies, *, scale: float | None = None) -> float:
    """Largest rise of an energy between consecutive samples of a trajectory, relative to ``scale``.

    ``scale`` defaults to ``max(|E|)`` along the trajectory. A gradient flow has ``dE/dt = -|∇E|² ≤ 0``,
    so this is 0 up to the integration error.
    """
    e = np.asarray(energies, dtype=float)
    e = e[np.isfinite(e)]
    if e.size < 2:
        return 0.0
    scale = float(np.max(np.abs(e))) if scale is None else scale
    return float(max(np.max(np.diff(e)), 0.0) / max(scale, np.finfo(float).tiny))
