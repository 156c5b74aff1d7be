r"""Direct feedback alignment (Nøkland 2016, NeurIPS): the output error reaches every hidden layer directly.

Hidden layer ``l`` (``1..L-1``) receives :math:`\delta_l = \varphi'(\hat x_l) \odot D_l^\top e` with the output error
:math:`e = \partial L/\partial \hat x_L` and a fixed random matrix ``D_l`` of shape ``(n_L, n_l)``, where ``n_l`` is the
number of units of layer ``l`` (a convolutional state is flattened). The wiring reuses
:func:`.mechanism.feedback_call`: a *zero* Linear layer from the flattened hidden rate :math:`\varphi(\hat x_l)` to the
output adds nothing to the output, but its backward layer ``D_l`` routes :math:`D_l^\top e` to layer ``l``; the
forward path between layers is cut (``stop_gradient``), so no error travels down through ``W``.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from ...losses import get_loss
from ...networks import Network, linear_layer
from ..base import LEARNERS, Learner
from .mechanism import feedback_call
from .network import VECTOR_APPLY, FeedbackNetwork, fan_std, stop_gradient, transposed_normal
from .rule import FeedbackRule, feedback_learner


class DirectFeedbackAlignment(FeedbackRule):
    """DFA: ``feedback[l-1]`` is the direct map ``D_l`` (a bias-free Linear layer ``(n_L, n_l)``) of hidden layer ``l``."""

    def init_feedback(self, key: PRNGKeyArray, network: Network, *, scale: float = 1.0) -> tuple:
        n_out = network.sizes[-1]
        keys = jax.random.split(key, max(network.depth - 1, 1))
        dtype = jax.tree.leaves(eqx.filter(network, eqx.is_inexact_array))[0].dtype
        shapes = [(n_out, n) for n in network.sizes[1:-1]]
        return tuple(linear_layer((scale * fan_std(s)) * transposed_normal(k, s, dtype), None) for k, s in zip(keys, shapes))

    def feedback_shapes(self, network: Network):
        return tuple(((network.sizes[-1], n),) for n in network.sizes[1:-1])

    def wired_output(self, params: FeedbackNetwork, x: Array, key: PRNGKeyArray | None = None) -> Array:
        net = params.network
        direct_maps = self.backward_layers(params, key)
        a = net.predict_layer(1, x)
        direct = []
        for l in range(2, net.depth + 1):
            h = net.phi(a)
            flat = h.reshape(h.shape[: h.ndim - len(net.shapes[l - 1])] + (-1,))
            zero = linear_layer(jnp.zeros((net.sizes[-1], flat.shape[-1]), h.dtype), None)
            direct.append(feedback_call((zero, direct_maps[l - 2], flat), VECTOR_APPLY))
            a = net.apply(l, jax.lax.stop_gradient(h))
        return a + sum(d.reshape(a.shape) for d in direct)

    def backward_pairs(self, params: FeedbackNetwork, key: PRNGKeyArray | None = None):
        """``(f"B{l}", D_l, W_L ⋯ W_{l+1})``: the linearised path from layer ``l`` to the output, for the hidden layers
        whose path is made of Linear layers (a path through pooling has no matrix to compare with)."""
        layers = params.network.layers
        direct_maps = stop_gradient(self.backward_layers(params, key))
        out, prod = [], None
        for l in range(len(layers) - 1, 0, -1):  # hidden layer l, from the top
            if not isinstance(layers[l], eqx.nn.Linear):
                break
            prod = layers[l].weight if prod is None else prod @ layers[l].weight
            out.append((f"B{l}", direct_maps[l - 1].weight, prod))
        return out[::-1]


@LEARNERS.register("dfa")
def dfa_learner(*, activation="tanh", loss: str = "mse") -> Learner:
    """Direct feedback alignment: the output error reaches every hidden layer through its own fixed random matrix."""
    return feedback_learner(
        "dfa", DirectFeedbackAlignment(get_loss(loss)), "direct feedback alignment: output error broadcast through fixed random matrices (Nøkland 2016)",
        activation=activation, loss=loss,
    )

