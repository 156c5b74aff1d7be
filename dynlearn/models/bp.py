"""Backpropagation: the reference learner, the same network trained by autodiff of the loss."""

from __future__ import annotations

import jax

from ..losses import LOSSES
from ..networks import Network, init_network
from .registry import Learner, register_learner


@register_learner("bp")
def bp_learner(*, activation: str = "tanh", loss: str = "mse") -> Learner:
    """Backprop on the feedforward network (loss summed over the batch, like the energies)."""
    loss_fn = LOSSES[loss]

    def update(network: Network, x, y):
        value, grads = jax.value_and_grad(lambda net: loss_fn(net(x), y))(network)
        return grads, {"loss": value / x.shape[0]}

    return Learner(
        name="bp",
        init=lambda key, sizes: init_network(sizes, key=key, activation=activation),
        update=update,
        predict=lambda network, x: network(x),
        description="backpropagation through the feedforward network (the reference)",
        defaults={"activation": activation, "loss": loss},
    )
