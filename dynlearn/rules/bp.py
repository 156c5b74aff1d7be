"""Backpropagation: the reference rule, autodiff of the loss through the feedforward network."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx

from ..losses import get_loss
from ..models.base import Data
from ..networks import Network
from .base import LEARNERS, Learner, Rule


class Backprop(Rule):
    """``grads = ∂L/∂θ`` with ``L = loss(network(x), y)`` summed over the batch (the energies' convention)."""

    loss: Callable = eqx.field(static=True)

    def update(self, params: Network, rule_state, batch: Data, key):
        value, grads = eqx.filter_value_and_grad(lambda net: self.loss(net(batch.x), batch.y))(params)
        return grads, rule_state, {"loss": value / batch.x.shape[0]}


@LEARNERS.register("bp")
def bp_learner(*, activation="tanh", loss: str = "mse") -> Learner:
    """Backprop on the feedforward network (the reference every other rule is compared with)."""
    return Learner(
        name="bp",
        rule=Backprop(get_loss(loss)),
        description="backpropagation through the feedforward network (the reference)",
        defaults={"activation": activation, "loss": loss, "lr": 1e-3},
    )
