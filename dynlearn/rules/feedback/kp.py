r"""Kolen–Pollack (Kolen & Pollack 1994; Akrout et al. 2019, NeurIPS, "Deep learning without weight transport").

The feedback layer ``B_l`` (shaped like ``W_l``) receives the same update as ``W_l`` — the parameter cotangent that
:func:`.mechanism.feedback_call` sends it — and both decay:

.. math::  \Delta W_l = -\eta\,(\delta_l h_{l-1}^\top + \lambda W_l), \qquad \Delta B_l = -\eta\,(\delta_l h_{l-1}^\top + \lambda B_l),

so with plain SGD :math:`W_l - B_l \leftarrow (1 - \eta\lambda)(W_l - B_l)` at every step, whatever the data
(``theory/kp_exact_decay.md``). The deltas travel down through ``B`` (no weight transport). The decay acts on weight
arrays only (all layers' ``W``, every ``B``), not on biases; it works for any layer type.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import PRNGKeyArray

from ...losses import get_loss
from ...networks import Network
from ..base import LEARNERS, Learner
from .fa import FeedbackAlignment
from .network import FeedbackNetwork, map_weights
from .rule import feedback_learner


def _zeros(g, *_):
    return jnp.zeros_like(g)


class KolenPollack(FeedbackAlignment):
    """KP: random initial feedback (as FA) that learns ``W``'s update; ``decay`` is λ (per unit learning rate)."""

    decay: float = 1e-3

    def network_update(self, params: FeedbackNetwork, grads: Network) -> Network:
        return map_weights(lambda g, w: g + self.decay * w, grads, params.network)

    def feedback_update(self, params: FeedbackNetwork, grads: tuple, key: PRNGKeyArray) -> tuple:
        return map_weights(lambda g, b: g + self.decay * b, grads, params.feedback, rest=_zeros)


@LEARNERS.register("kp")
def kp_learner(*, activation="tanh", loss: str = "mse", decay: float = 1e-3) -> Learner:
    """Kolen–Pollack: backward layers get the forward weights' update; both decay."""
    return feedback_learner(
        "kp", KolenPollack(get_loss(loss), decay), "Kolen-Pollack: the same update plus weight decay align B with W",
        activation=activation, loss=loss, decay=decay,
    )
