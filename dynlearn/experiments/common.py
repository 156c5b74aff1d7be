"""What the microcircuit experiments share: the free steady state of learned weights."""

from __future__ import annotations

import jax.numpy as jnp

from ..config import RelaxConfig
from ..models.base import Data, equilibrium

#: the free (no target) steady state of a learned circuit, for evaluation; NaN-marked by the caller if not reached
FREE_RELAX = RelaxConfig(tol=1e-7, rtol=1e-6, atol=1e-8, t1=1e4, max_steps=4096, throw=False)
#: the same in single precision, whose round-off floor of max|du/dt| (potentials ~10, time constants ~ms) is ~1e-5:
#: a test at 1e-7 would never pass and every evaluation would run to max_steps and come back NaN
FREE_RELAX_FLOAT32 = FREE_RELAX.replace(tol=1e-4, rtol=1e-5, atol=1e-6)


def free_steady_state(model, x, n_out: int):
    """The relaxed free circuit for inputs ``x`` (zero target, nudge 0): an :class:`dynlearn.dynamics.Equilibrium`."""
    config = FREE_RELAX if jnp.finfo(x.dtype).bits >= 64 else FREE_RELAX_FLOAT32
    return equilibrium(model, Data(x, jnp.zeros(x.shape[:-1] + (n_out,), x.dtype), jnp.asarray(0.0)), config)
