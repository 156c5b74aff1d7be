r"""PEPITA (Dellaferrera & Kreiman, "Error-driven input modulation: solving the credit assignment problem without a
backward pass", ICML 2022): two forward passes, the second with the input modulated by the error.

Pass 1 (standard): :math:`a_l`, :math:`h_l = \varphi(a_l)`, output error :math:`e = \partial L/\partial a_L`
(:math:`\mathrm{softmax}(a_L) - y` for cross-entropy). Pass 2 (modulated): the same network on
:math:`\tilde x = x + F e` with a fixed random matrix :math:`F` (paper: :math:`F`, input × output), giving
:math:`\tilde a_l`, :math:`\tilde h_l`. The updates (descent sign, :math:`W \leftarrow W - \eta\,\Delta W`) are

.. math::  \Delta W_1 = (h_1 - \tilde h_1)\,\tilde x^\top, \qquad
           \Delta W_l = (h_l - \tilde h_l)\,\tilde h_{l-1}^\top \;(1 < l < L), \qquad
           \Delta W_L = e\,\tilde h_{L-1}^\top ,

biases with the same signals. :math:`F = \mathrm{modulation}\cdot F_0`, :math:`F_0` uniform on
:math:`\pm\sqrt{6/n_0}` (the paper's "0.05 · He-uniform"; ``modulation`` is the paper's 0.05), drawn once in
:meth:`Pepita.init` (rule state, not trained).

Srinivasan et al. (ICLR 2024, "Forward learning with top-down feedback") read PEPITA as adaptive feedback alignment:
to first order in :math:`F`, :math:`h_1 - \tilde h_1 = -\varphi'(a_1)\odot W_1 F e`, so the first layer's update is
direct feedback alignment with the feedback matrix :math:`-(W_1F)^\top`, which changes as :math:`W_1` learns
(:func:`effective_feedback`; the ``pepita_as_fa`` check measures the limit).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from ..losses import get_loss
from ..models.base import Data
from ..networks import Network
from .base import LEARNERS, Learner, Rule
from .drtp import local_gradients, output_error
from .. import draws


def modulated_input(x: jax.Array, e: jax.Array, projection: jax.Array, in_shape: tuple[int, ...]) -> jax.Array:
    r""":math:`\tilde x = x + F e` for every sample; ``projection`` is :math:`F^\top`, shape ``(n_L, n_0)``."""
    return x + (e @ projection).reshape(x.shape[: x.ndim - len(in_shape)] + tuple(in_shape))


def effective_feedback(net: Network, projection: jax.Array) -> jax.Array:
    r"""The DFA matrix PEPITA's first layer follows as the modulation shrinks: :math:`D_1 = -(W_1 F)^\top`,
    shape ``(n_L, n_1)`` (an MLP's first layer; ``projection`` is :math:`F^\top`)."""
    return -projection @ net.weights[0].T


class Pepita(Rule):
    """PEPITA (see the module docstring). ``loss`` gives the output error; ``modulation`` scales :math:`F`;
    ``sign`` is +1 (the paper's rule; -1 reverses the hidden updates, a broken variant for tests)."""

    loss: Callable = eqx.field(static=True)
    modulation: float = eqx.field(static=True, default=0.05)
    sign: float = eqx.field(static=True, default=1.0)

    def init(self, key, params: Network) -> jax.Array:
        r""":math:`F^\top` (``(n_L, n_0)``), entries ``modulation`` × U(−√(6/n_0), √(6/n_0))."""
        n_in, n_out = params.sizes[0], params.sizes[-1]
        dtype = next((a.dtype for a in jax.tree.leaves(params) if eqx.is_inexact_array(a)), jnp.float32)
        bound = math.sqrt(6.0 / n_in)
        return self.modulation * draws.uniform(key, (n_out, n_in), dtype, -bound, bound)

    def update(self, params: Network, rule_state, batch: Data, key):
        x, y = batch.x, batch.y
        acts = params.forward(x)
        value, e = output_error(self.loss, acts[-1], y)
        flat_e = e.reshape(e.shape[: e.ndim - len(params.shapes[-1])] + (-1,))
        mod = params.forward(modulated_input(x, flat_e, rule_state, params.shapes[0]))
        hidden = [self.sign * (params.phi(a) - params.phi(m)) for a, m in zip(acts[1:-1], mod[1:-1])]
        grads = local_gradients(params, mod[:-1], [*hidden, e])
        return grads, rule_state, {"loss": value / x.shape[0]}


@LEARNERS.register("pepita")
def pepita_learner(*, activation="tanh", loss: str = "ce", modulation: float = 0.05) -> Learner:
    """PEPITA: a second forward pass on the error-modulated input replaces the backward pass."""
    if not (isinstance(modulation, (int, float)) and math.isfinite(modulation) and modulation > 0):
        raise ValueError(f"modulation must be a finite number > 0, got {modulation!r}")
    return Learner(
        name="pepita",
        rule=Pepita(get_loss(loss), float(modulation)),
        description="PEPITA: two forward passes, the second on the input modulated by a fixed random projection of the error (Dellaferrera & Kreiman 2022)",
        defaults={"activation": activation, "loss": loss, "modulation": modulation, "lr": 1e-2},
    )
