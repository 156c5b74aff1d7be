r"""Sign-symmetric feedback (Liao, Leibo & Poggio 2016, AAAI; Moskovitz, Litwin-Kumar & Abbott 2018; the BioTorch
variants of Sanfiz & Akrout 2021): the backward weights share the signs of the forward ones,
:math:`B_l = \operatorname{sign}(W_l) \odot M_l`, with magnitudes

* ``usf`` — uniform: :math:`M_l` is the Glorot scale :math:`\sqrt{2/(\text{fan}_\text{in}+\text{fan}_\text{out})}` everywhere;
* ``brsf`` — batchwise random: :math:`|N(0,1)|` redrawn every batch from the update's ``key``, scaled to the r.m.s. of
  the stored :math:`M_l`;
* ``frsf`` — fixed random: :math:`M_l = |N(0, 2/(\text{fan}_\text{in}+\text{fan}_\text{out}))|`, drawn once.

The stored feedback layers hold :math:`M_l`; ``B_l`` is rebuilt from the current ``W_l`` for every batch, under
``stop_gradient`` (no gradient may reach ``W`` through ``B``), for every weight array of any layer type.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import PRNGKeyArray

from ...losses import get_loss
from ...networks import Network
from ..base import LEARNERS, Learner
from .network import FeedbackNetwork, fan_std, map_weights, random_feedback, replace_weights, stop_gradient, weight_arrays
from .rule import FeedbackRule, feedback_learner
from ... import draws


class SignSymmetry(FeedbackRule):
    """``B_l = sign(W_l) ⊙ magnitudes``; the base class keeps the stored magnitudes fixed (frSF)."""

    def init_feedback(self, key: PRNGKeyArray, network: Network, *, scale: float = 1.0) -> tuple:
        return map_weights(jnp.abs, random_feedback(key, network, scale=scale))

    def magnitudes(self, params: FeedbackNetwork, key: PRNGKeyArray | None) -> list[list]:
        """Per feedback layer, the magnitude of each of its weight arrays on this batch."""
        return [weight_arrays(m) for m in params.feedback]

    def backward_layers(self, params: FeedbackNetwork, key: PRNGKeyArray | None = None) -> tuple:
        mags = self.magnitudes(params, key)
        layers = params.network.layers[1:]
        return stop_gradient(
            tuple(replace_weights(m, [jnp.sign(w) * a for w, a in zip(weight_arrays(layer), ms)]) for m, layer, ms in zip(params.feedback, layers, mags))
        )


class FixedRandomSignSymmetry(SignSymmetry):
    """frSF: fixed random magnitudes."""


class UniformSignSymmetry(SignSymmetry):
    """uSF: one magnitude per weight array, its Glorot scale."""

    def init_feedback(self, key: PRNGKeyArray, network: Network, *, scale: float = 1.0) -> tuple:
        return tuple(replace_weights(layer, [jnp.full(w.shape, fan_std(w.shape), w.dtype) for w in weight_arrays(layer)]) for layer in network.layers[1:])


class BatchRandomSignSymmetry(SignSymmetry):
    """brSF: magnitudes :math:`|N(0,1)|` redrawn from the update's key, scaled to the r.m.s. of the stored ones."""

    def magnitudes(self, params: FeedbackNetwork, key: PRNGKeyArray | None) -> list[list]:
        key = jax.random.key(0) if key is None else key  # reporting without a batch key: a fixed draw
        stored = super().magnitudes(params, key)
        keys = jax.random.split(key, len(stored))
        out = []
        for k, ms in zip(keys, stored):
            ks = jax.random.split(k, len(ms))
            out.append([jnp.abs(draws.normal(kk, m.shape, m.dtype)) * jnp.sqrt(jnp.mean(m**2)) for kk, m in zip(ks, ms)])
        return out


def _learner(name: str, rule_cls, description: str, activation, loss) -> Learner:
    return feedback_learner(name, rule_cls(get_loss(loss)), description, activation=activation, loss=loss)


@LEARNERS.register("usf")
def usf_learner(*, activation="tanh", loss: str = "mse") -> Learner:
    """Uniform sign-concordant feedback: B = sign(W) times one magnitude."""
    return _learner("usf", UniformSignSymmetry, "sign symmetry, uniform magnitude: B = sign(W) (Liao et al. 2016)", activation, loss)


@LEARNERS.register("brsf")
def brsf_learner(*, activation="tanh", loss: str = "mse") -> Learner:
    """Batchwise-random-magnitude sign-concordant feedback."""
    return _learner("brsf", BatchRandomSignSymmetry, "sign symmetry, magnitudes redrawn every batch", activation, loss)


@LEARNERS.register("frsf")
def frsf_learner(*, activation="tanh", loss: str = "mse") -> Learner:
    """Fixed-random-magnitude sign-concordant feedback."""
    return _learner("frsf", FixedRandomSignSymmetry, "sign symmetry, fixed random magnitudes", activation, loss)
