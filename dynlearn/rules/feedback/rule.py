r"""What every rule of the feedback-alignment family shares: the layered backward pass and the update.

Every rule trains the same feedforward :class:`dynlearn.Network`, :math:`\hat x_l = f_l(\varphi(\hat x_{l-1}))`, and
differs from backprop only in the layer that carries the error down. Backprop uses
:math:`\delta_{l-1} = \varphi'(\hat x_{l-1}) \odot W_l^\top \delta_l`; a rule replaces :math:`W_l` by the weights of
its backward layer :math:`B_l` (same structure as :math:`f_l`; for a Linear layer ``B_l`` has the shape of ``W_l``).
The forward weights then get their usual update :math:`\delta_l h_{l-1}^\top` with the rule's deltas.

A rule is a :class:`FeedbackRule` subclass that says

* ``init_feedback(key, network)`` — the feedback layers stored in the parameters;
* ``backward_layers(params, key)`` — the layers the error travels through for this batch (the stored ones, or a
  function of ``W`` such as ``sign(W) ⊙ M``, or a draw from ``key``);
* ``wired_output(params, x, key)`` — the forward pass wired so that reverse-mode autodiff gives the rule's deltas
  (layered through :func:`.mechanism.feedback_call` by default; DFA overrides it);
* ``network_update`` / ``feedback_update`` — what the forward weights and the feedback layers receive (by default
  the wired gradient and nothing: fixed feedback).

:meth:`FeedbackRule.update` returns ``(grads, rule_state, metrics)`` in descent sign, as every
:class:`dynlearn.rules.Rule`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import equinox as eqx
import jax
from jaxtyping import Array, PRNGKeyArray

from ...errors import ShapeError
from ...losses import mse_loss
from ...models.base import Data
from ...networks import Network
from ..base import Learner, Rule
from .mechanism import feedback_call
from .network import FeedbackNetwork, layer_apply, stop_gradient, weight_arrays, zeros_update


class FeedbackRule(Rule):
    """A rule of the feedback-alignment family (see the module docstring); ``loss`` is summed over the batch."""

    loss: Callable = eqx.field(static=True, default=mse_loss)

    # -- what the rule is ------------------------------------------------------------------------

    @abc.abstractmethod
    def init_feedback(self, key: PRNGKeyArray, network: Network, *, scale: float = 1.0) -> tuple:
        """The feedback layers of ``network`` (one per forward layer ``2..L`` for the layered rules)."""

    def backward_layers(self, params: FeedbackNetwork, key: PRNGKeyArray | None = None) -> tuple:
        """The layers the error travels down through on this batch (default: the stored feedback layers)."""
        return tuple(params.feedback)

    def feedback_shapes(self, network: Network) -> tuple[tuple[tuple[int, ...], ...], ...]:
        """Weight shapes of the feedback layers: those of the forward layers ``2..L``."""
        return tuple(tuple(w.shape for w in weight_arrays(layer)) for layer in network.layers[1:])

    def network_update(self, params: FeedbackNetwork, grads: Network) -> Network:
        """The forward weights' update from the wired gradient ``grads`` (default: ``grads`` itself)."""
        return grads

    def feedback_update(self, params: FeedbackNetwork, grads: tuple, key: PRNGKeyArray) -> tuple:
        """The feedback layers' update from their wired cotangents ``grads`` (default: none, the feedback is fixed)."""
        return zeros_update(params.feedback)

    # -- the pass and the update -----------------------------------------------------------------

    def wired_output(self, params: FeedbackNetwork, x: Array, key: PRNGKeyArray | None = None) -> Array:
        r"""The network output, wired so that the gradient of the loss is this rule's update: every layer ``l >= 2``
        goes through :func:`.mechanism.feedback_call` with backward layer :math:`B_l`."""
        net = params.network
        backward = self.backward_layers(params, key)
        a = net.predict_layer(1, x)
        for l in range(2, net.depth + 1):
            a = feedback_call((net.layers[l - 1], backward[l - 2], net.phi(a)), layer_apply(net, l))
        return a

    def check(self, params: FeedbackNetwork) -> None:
        """Raise :class:`ShapeError` if the feedback layers do not fit the network (static shapes: works under jit)."""
        want = self.feedback_shapes(params.network)
        got = tuple(tuple(tuple(w.shape) for w in weight_arrays(fb)) for fb in params.feedback)
        if got != want:
            raise ShapeError(f"{type(self).__name__} on a network of sizes {params.network.sizes} needs backward layers with weights of shapes {want}, got {got}")

    def update(self, params: FeedbackNetwork, rule_state, batch: Data, key: PRNGKeyArray):
        """``(grads, rule_state, {"loss": L / batch})`` in descent sign; ``key`` splits into the backward pass's key and
        the feedback update's key."""
        self.check(params)
        k_backward, k_feedback = jax.random.split(key)
        value, grads = eqx.filter_value_and_grad(lambda p: self.loss(self.wired_output(p, batch.x, k_backward), batch.y))(params)
        out = FeedbackNetwork(self.network_update(params, grads.network), self.feedback_update(params, grads.feedback, k_feedback))
        return out, rule_state, {"loss": value / batch.x.shape[0]}

    # -- reporting -------------------------------------------------------------------------------

    def backward_pairs(self, params: FeedbackNetwork, key: PRNGKeyArray | None = None) -> list[tuple[str, list[Array], list[Array]]]:
        """``(label, B, target)`` per backward layer: its weight arrays and those it stands in for under backprop
        (the forward layer's, same shapes); :func:`dynlearn.analysis.backward_alignment` compares them."""
        backward = stop_gradient(self.backward_layers(params, key))
        return [(f"B{l}", weight_arrays(b), weight_arrays(layer)) for l, (b, layer) in enumerate(zip(backward, params.network.layers[1:]), start=2)]


def predict_network(params: FeedbackNetwork, x: Array) -> Array:
    """``params.network(x)``: every feedback learner predicts with its forward network."""
    return params.network(x)


def feedback_learner(name: str, rule: FeedbackRule, description: str, *, activation="tanh", loss="mse", lr: float = 1e-3, **options) -> Learner:
    """The :class:`Learner` of a feedback rule: ``init(key, network)`` adds the rule's feedback layers drawn from ``key``."""

    def init(key: PRNGKeyArray, network: Network) -> FeedbackNetwork:
        return FeedbackNetwork(network, rule.init_feedback(key, network))

    return Learner(
        name=name,
        rule=rule,
        init=init,
        predict=predict_network,
        description=description,
        defaults={"activation": activation, "loss": loss, "lr": lr, **options},
    )
