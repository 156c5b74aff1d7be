r"""Weight mirror (Akrout, Wilson, Humphreys, Lillicrap & Tweed 2019, NeurIPS, "Deep learning without weight transport").

The forward weights learn as in feedback alignment (errors down through ``B``); the feedback layers learn in
"mirror mode" from noise :math:`\xi \sim N(0, \sigma^2 I)` injected at the input of layer ``l``: the layer responds
with :math:`W_l \xi` (its bias left out) and the feedback synapse correlates the two,

.. math::  \Delta B_l = \eta\,\langle (W_l\xi)\,\xi^\top\rangle - \lambda_{WM} B_l ,

(``B_l`` shaped like ``W_l``) whose expectation :math:`\eta\sigma^2 W_l - \lambda_{WM} B_l` has the fixed point
:math:`B_l^* = (\eta\sigma^2/\lambda_{WM}) W_l` (``theory/weight_mirror_fixed_point.md``). The correlation is the
parameter VJP of the feedback layer at :math:`\xi` with cotangent :math:`W_l\xi`, so :func:`mirror_update` works for
any layer that is linear in its weights (dense, convolutional).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import PRNGKeyArray

from ...losses import get_loss
from ...networks import Network
from ..base import LEARNERS, Learner
from .fa import FeedbackAlignment
from .network import FeedbackNetwork, LayerApply, map_weights, replace_weights, weight_arrays
from .rule import feedback_learner
from ... import draws


def mirror_update(network: Network, feedback: tuple, key: PRNGKeyArray, *, sigma: float = 1.0, decay: float = 0.1, samples: int = 64, eta: float = 1.0) -> tuple:
    r"""The weight-mirror step of every feedback layer (``feedback[k]`` for layer ``l = k + 2``):
    :math:`\eta\langle (W_l\xi)\xi^\top\rangle - \lambda B_l` with ``samples`` noise vectors :math:`\xi` of s.d.
    ``sigma`` per layer (one key per layer, split from ``key``). An ascent step: ``B + mirror_update(...)``.
    """
    keys = jax.random.split(key, len(feedback))
    out = []
    for l, k, fb in zip(range(2, network.depth + 1), keys, feedback):
        layer = network.layers[l - 1]
        apply = LayerApply(len(network.shapes[l - 1]))
        w0 = weight_arrays(layer)[0]
        xi = sigma * draws.normal(k, (samples, *network.shapes[l - 1]), w0.dtype)
        response = apply(replace_weights(layer, weight_arrays(layer)), xi)  # W ξ, without the bias
        _, vjp = eqx.filter_vjp(lambda b: apply(b, xi), fb)
        (corr,) = vjp(response)  # Σ_s (W ξ_s) ξ_sᵀ, shaped like B
        out.append(map_weights(lambda c, b: eta * c / samples - decay * b, corr, fb, rest=lambda c, b: jnp.zeros_like(c)))
    return tuple(out)


class WeightMirror(FeedbackAlignment):
    """WM: FA for the forward weights; the feedback layers follow :func:`mirror_update` (noise from ``key``)."""

    sigma: float = 1.0
    decay: float = 0.1
    samples: int = eqx.field(static=True, default=64)

    def feedback_update(self, params: FeedbackNetwork, grads: tuple, key: PRNGKeyArray) -> tuple:
        step = mirror_update(params.network, params.feedback, key, sigma=self.sigma, decay=self.decay, samples=self.samples)
        return jax.tree.map(jnp.negative, step)  # descent sign: the optimiser's step then follows the mirror rule


@LEARNERS.register("wm")
def wm_learner(*, activation="tanh", loss: str = "mse", sigma: float = 1.0, decay: float = 0.1, samples: int = 64) -> Learner:
    """Weight mirror: FA for the forward weights, noise-correlation learning for the backward layers."""
    return feedback_learner(
        "wm", WeightMirror(get_loss(loss), sigma, decay, samples), "weight mirror: B learns sigma^2 W from injected noise (Akrout et al. 2019)",
        activation=activation, loss=loss, sigma=sigma, decay=decay, samples=samples,
    )
