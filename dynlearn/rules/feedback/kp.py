r"""Kolen–Pollack (Kolen & Pollack 1994; Akrout et al. 2019, NeurIPS, "Deep learning without weight transport").

The feedback layer ``B_l`` (shaped like ``W_l``) receives the same update as ``W_l`` — the parameter cotangent that
:func:`.mechanism.feedback_call` sends it — and both decay:

.. math::  \Delta W_l = -\eta\,(\delta_l h_{l-1}^\top + \lambda W_l), \qquad \Delta B_l = -\eta\,(\delta_l h_{l-1}^\top + \lambda B_l),

so with plain SGD :math:`W_l - B_l \leftarrow (1 - \eta\lambda)(W_l - B_l)` at every step, whatever the data
(``theory/kp_exact_decay.md``). The deltas travel down through ``B`` (no weight transport). The decay acts on weight
arrays only (all layers' ``W``, every ``B``), not on biases; it works for any layer type.

Under an adaptive optimiser (Adam) the decay must not go through the optimiser: Adam divides each coordinate's
step by the r.m.s. of its gradient, so a decay :math:`\lambda W` added to a gradient of size :math:`|g|` shrinks
:math:`W - B` at the rate :math:`\eta\lambda/|g|` only (measured: B ends 76° from ``W`` on digits). Use
``kp_learner(decay=0.0)`` with :func:`decoupled_decay` (AdamW-style, the paper's weight decay outside the
adaptive step): ``W`` and ``B`` get the same gradient, hence the same Adam moments and the same Adam step, so
:math:`W - B \leftarrow (1 - \eta\lambda)(W - B)` exactly again.
"""

from __future__ import annotations

import jax.numpy as jnp
import optax
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


def weight_mask(params):
    """``True`` on every weight array of ``params`` (forward ``W`` and feedback ``B``), ``False`` on biases."""
    return map_weights(lambda w: True, params, rest=lambda a, *_: False)


def decoupled_decay(lr: float, decay: float, *, b1: float = 0.9, b2: float = 0.999) -> optax.GradientTransformation:
    r"""Adam with the Kolen–Pollack decay applied outside the adaptive step (optax's AdamW on the weight arrays):
    :math:`W \leftarrow W - \eta(\mathrm{adam}(g) + \lambda W)`, :math:`B \leftarrow B - \eta(\mathrm{adam}(g) + \lambda B)`,
    so :math:`\|W - B\|` shrinks by :math:`1 - \eta\lambda` per step. Pair it with ``kp_learner(decay=0.0)``."""
    return optax.adamw(lr, b1=b1, b2=b2, weight_decay=decay, mask=weight_mask)


def with_weight_decay(optimizer: optax.GradientTransformation, lr: float, decay: float) -> optax.GradientTransformation:
    r"""``optimizer`` followed by the decoupled weight decay :math:`-\eta\lambda W` on every weight array of any
    learner's parameters (arrays under a ``weight`` attribute: forward and feedback matrices; not biases), outside the
    adaptive step (Loshchilov & Hutter 2019), so Adam does not rescale it; with Adam it is :func:`decoupled_decay`.
    ``train(weight_decay=...)`` and ``dynlearn train --weight-decay`` use it."""
    return optax.chain(optimizer, optax.add_decayed_weights(-lr * decay, mask=weight_mask))


@LEARNERS.register("kp")
def kp_learner(*, activation="tanh", loss: str = "mse", decay: float = 1e-3) -> Learner:
    """Kolen–Pollack: backward layers get the forward weights' update; both decay."""
    return feedback_learner(
        "kp", KolenPollack(get_loss(loss), decay), "Kolen-Pollack: the same update plus weight decay align B with W",
        activation=activation, loss=loss, decay=decay,
    )
