r"""Direct random target projection (DRTP; Frenkel, Lefebvre & Bol 2021, Front. Neurosci. 15:629892).

Forward-only learning: no error travels back. Each hidden layer :math:`l < L` learns from a fixed random projection of
the *target* — the label stands in for the (unknown, at update time) sign of the output error — and only the output
layer sees the error:

.. math::  \delta_l = -(B_l\, y) \odot \varphi'(a_l) \quad (l < L), \qquad \delta_L = \partial L/\partial a_L, \qquad
           \Delta\theta_l \propto \frac{\partial a_l}{\partial\theta_l}^{\!\top} \delta_l ,

where :math:`a_l = f_l(\varphi_{l-1}(a_{l-1}))` is layer ``l``'s pre-activation and :math:`B_l` is a fixed random
matrix from the output space to layer ``l`` (Gaussian, variance :math:`1/n_L`). The minus sign makes :math:`-B_l y`
play the role of :math:`B_l e` in direct feedback alignment when the outputs are small (:math:`e = \hat y - y \approx -y`);
because :math:`B_l` is symmetric in distribution, the sign convention does not change what is learnable.

The fixed projections are the rule's state (drawn in :meth:`DirectRandomTargetProjection.init`), not trained
parameters. The update works on any :class:`dynlearn.Network`: each layer's input is detached, so every layer's
update is local, and the layer may be dense, convolutional or a composite.
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


class DirectRandomTargetProjection(Rule):
    """DRTP (see the module docstring); ``loss`` trains the output layer."""

    loss: Callable = eqx.field(static=True)

    def init(self, key, params: Network) -> tuple[jax.Array, ...]:
        """One fixed projection per hidden layer, shape ``(n_out, *shape_l)``, entries N(0, 1/n_out)."""
        n_out = params.sizes[-1]
        keys = jax.random.split(key, max(params.depth - 1, 1))
        dtype = params.layers[0].weight.dtype if hasattr(params.layers[0], "weight") else jnp.float32
        return tuple(
            jax.random.normal(k, (n_out, *shape), dtype) / math.sqrt(n_out) for k, shape in zip(keys, params.shapes[1:-1])
        )

    def update(self, params: Network, rule_state, batch: Data, key):
        x, y = batch.x, batch.y
        batch_axes = x.ndim - len(params.shapes[0])
        acts = params.forward(x)  # acts[l] = a_l
        signals = [
            -jnp.tensordot(y, b, axes=(list(range(batch_axes, y.ndim)), [0])) * jax.jvp(params.phi, (a,), (jnp.ones_like(a),))[1]
            for b, a in zip(rule_state, acts[1:-1])
        ]

        def surrogate(net):
            hidden = sum(jnp.sum(jax.lax.stop_gradient(s) * net.predict_layer(l, jax.lax.stop_gradient(acts[l - 1])))
                         for l, s in enumerate(signals, start=1))
            out = net.predict_layer(net.depth, jax.lax.stop_gradient(acts[-2]))
            return hidden + self.loss(out, y), out

        grads, out = eqx.filter_grad(surrogate, has_aux=True)(params)
        return grads, rule_state, {"loss": self.loss(out, y) / x.shape[0]}


@LEARNERS.register("drtp")
def drtp_learner(*, activation="tanh", loss: str = "mse") -> Learner:
    """DRTP: hidden layers learn from fixed random projections of the target; forward only."""
    return Learner(
        name="drtp",
        rule=DirectRandomTargetProjection(get_loss(loss)),
        description="direct random target projection: fixed random projections of the label train hidden layers, no backward pass (Frenkel et al. 2021)",
        defaults={"activation": activation, "loss": loss, "lr": 1e-2},
    )
