r"""Directional DFA (Bacho & Chu, "Low-variance forward gradients using direct feedback alignment and momentum",
Neural Networks 2024): direct feedback alignment whose feedback is *learned online* from forward-mode estimates.

Hidden layer ``l`` (``1..L-1``) receives the output error through a feedback matrix :math:`B_l` of shape
:math:`(n_L, n_l)`, as in DFA: :math:`\delta_l = \varphi'(a_l) \odot B_l^\top e` with :math:`e = \partial L/\partial a_L`.
Backprop would use the Jacobian :math:`J_l(x) = \partial a_L/\partial h_l` of the output with respect to the layer's
rate :math:`h_l = \varphi(a_l)`. One forward-mode pass (``jax.jvp``) along a random direction
:math:`u \sim \mathcal N(0, I)` gives :math:`J_l u` exactly; because :math:`E[u u^\top] = I`,

.. math::  \hat J_l = \frac{1}{k\,|\mathcal B|} \sum_{x \in \mathcal B} \sum_{i=1}^{k} (J_l(x)\, u_i)\, u_i^\top

is an unbiased estimate of the batch-mean Jacobian :math:`\bar J_l`, with a mean error :math:`\propto k^{-1/2}`. The
feedback follows the estimates with momentum (an exponential average, the variance reduction of the paper):

.. math::  B_l \leftarrow \mu B_l + (1 - \mu)\, \hat J_l .

The feedback matrices are the rule's state (they are not trained by the optimiser); the update of the forward
weights is local, as in :mod:`dynlearn.rules.drtp`: each layer's input is detached, so it works for dense,
convolutional or composite layers (a convolutional state is flattened for :math:`B_l`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from ..losses import get_loss
from ..models.base import Data
from ..networks import Network
from .base import LEARNERS, Learner, Rule
from .. import draws


def _normal_directions(key: PRNGKeyArray, shape, dtype) -> Array:
    """Directions :math:`u \\sim \\mathcal N(0, I)` (so :math:`E[u u^\\top] = I`)."""
    return draws.normal(key, shape, dtype)


def output_from(net: Network, l: int, h: Array) -> Array:
    """The output :math:`a_L` computed from the rate ``h`` of hidden layer ``l`` (layers ``l+1..L``)."""
    a = net.apply(l + 1, h)
    for m in range(l + 2, net.depth + 1):
        a = net.predict_layer(m, a)
    return a


def jacobian_estimates(net: Network, l: int, h: Array, key: PRNGKeyArray, k: int, directions: Callable = _normal_directions) -> Array:
    r"""``k`` single-direction estimates :math:`\frac{1}{|\mathcal B|}\sum_x (J_l(x) u_i(x)) u_i(x)^\top`, shape
    ``(k, n_L, n_l)``, for the rates ``h`` (``(batch, *shape_l)``) of hidden layer ``l``; their mean is
    :math:`\hat J_l`. One ``jax.jvp`` per direction, no backward pass."""
    us = directions(key, (k, *h.shape), h.dtype)
    jus = jax.vmap(lambda u: jax.jvp(lambda z: output_from(net, l, z), (h,), (u,))[1])(us)  # (k, batch, n_L)
    flat = us.reshape(k, h.shape[0], -1)
    return jnp.einsum("kbo,kbi->koi", jus, flat) / h.shape[0]


def mean_jacobian(net: Network, l: int, h: Array) -> Array:
    """The exact batch-mean Jacobian :math:`\\bar J_l = \\frac{1}{|\\mathcal B|}\\sum_x \\partial a_L/\\partial h_l`,
    shape ``(n_L, n_l)`` (reverse-mode, for reference)."""
    jac = jax.vmap(jax.jacrev(lambda z: output_from(net, l, z[None])[0]))(h)  # (batch, n_L, *shape_l)
    return jac.reshape(jac.shape[0], jac.shape[1], -1).mean(axis=0)


class DirectionalDFA(Rule):
    """Directional DFA (module docstring): ``n_directions`` forward-mode directions per batch, feedback ``momentum``."""

    loss: Callable = eqx.field(static=True)
    n_directions: int = eqx.field(static=True, default=1)
    momentum: float = eqx.field(static=True, default=0.9)
    directions: Callable = eqx.field(static=True, default=_normal_directions)

    def init(self, key, params: Network) -> tuple[Array, ...]:
        """Random initial feedback, entries N(0, 2/(n_L + n_l)) (DFA's draw), one ``(n_L, n_l)`` matrix per hidden layer."""
        n_out = params.sizes[-1]
        keys = jax.random.split(key, max(params.depth - 1, 1))
        dtype = jax.tree.leaves(eqx.filter(params, eqx.is_inexact_array))[0].dtype
        return tuple(math.sqrt(2.0 / (n_out + n)) * draws.normal(k, (n_out, n), dtype) for k, n in zip(keys, params.sizes[1:-1]))

    def update(self, params: Network, rule_state, batch: Data, key):
        x, y = batch.x, batch.y
        acts = params.forward(x)
        out = acts[-1]
        e = jax.grad(lambda o: self.loss(o, y))(out).reshape(x.shape[0], -1)
        keys = jax.random.split(key, max(params.depth - 1, 1))
        feedback, signals = [], []
        for l, (b, k) in enumerate(zip(rule_state, keys), start=1):
            h = jax.lax.stop_gradient(params.phi(acts[l]))
            estimate = jacobian_estimates(params, l, h, k, self.n_directions, self.directions).mean(axis=0)
            b = self.momentum * b + (1.0 - self.momentum) * jax.lax.stop_gradient(estimate)
            feedback.append(b)
            dphi = jax.jvp(params.phi, (acts[l],), (jnp.ones_like(acts[l]),))[1]
            signals.append((e @ b).reshape(acts[l].shape) * dphi)

        def surrogate(net):
            hidden = sum(jnp.sum(jax.lax.stop_gradient(s) * net.predict_layer(l, jax.lax.stop_gradient(acts[l - 1])))
                         for l, s in enumerate(signals, start=1))
            top = net.predict_layer(net.depth, jax.lax.stop_gradient(acts[-2]))
            return hidden + self.loss(top, y)

        grads = eqx.filter_grad(surrogate)(params)
        return grads, tuple(feedback), {"loss": self.loss(out, y) / x.shape[0]}


@LEARNERS.register("ddfa")
def ddfa_learner(*, activation="tanh", loss: str = "mse", n_directions: int = 1, momentum: float = 0.9) -> Learner:
    """Directional DFA: DFA whose feedback follows forward-mode (jvp) Jacobian estimates with momentum."""
    if isinstance(n_directions, bool) or not isinstance(n_directions, int) or n_directions < 1:
        raise ValueError(f"n_directions must be an integer >= 1, got {n_directions!r}")
    if not (isinstance(momentum, (int, float)) and 0.0 <= momentum < 1.0):
        raise ValueError(f"momentum must be a number in [0, 1), got {momentum!r}")
    return Learner(
        name="ddfa",
        rule=DirectionalDFA(get_loss(loss), n_directions, float(momentum)),
        description="directional DFA: feedback learned online from forward-mode (jvp) Jacobian estimates with momentum (Bacho & Chu 2024)",
        defaults={"activation": activation, "loss": loss, "n_directions": n_directions, "momentum": momentum, "lr": 1e-3},
    )
