r"""SoftHebb: Hebbian plasticity in a soft winner-take-all layer (Moraitis, Toichkin, Journé, Chua & Guo,
"SoftHebb: Bayesian inference in unsupervised Hebbian soft winner-take-all networks", Neuromorph. Comput. Eng. 2,
044017, 2022).

A layer of ``K`` units with weights :math:`w_k` (rows of ``W``) sees a unit-norm input :math:`x` and answers with the
soft winner-take-all

.. math::  u_k = w_k \cdot x, \qquad y_k = \mathrm{softmax}_k(u / \tau),

(``tau`` = the paper's temperature τ). Its plasticity, written as a slow ODE on the weights averaged over the data,

.. math::  \dot w_k = \eta\, \big\langle y_k\, (x - u_k\, w_k) \big\rangle ,

is the paper's rule :math:`\Delta w_{ik} = \eta\, y_k (x_i - u_k w_{ik})`. Two consequences, both exact along the
flow (see ``theory/softhebb_norm.md`` and ``theory/softhebb_bayes.md``):

* the squared norm obeys :math:`\tfrac{d}{dt}(1 - \|w_k\|^2) = -2\eta\, m_k\, (1 - \|w_k\|^2)` with
  :math:`m_k = \langle y_k u_k \rangle` (:func:`norm_rate`), so the norms go to the fixed point 1 at rate
  :math:`2\eta m_k`;
* at a fixed point :math:`w_k = \langle y_k x\rangle / \|\langle y_k x\rangle\|`: the responsibility-weighted mean
  direction, the M-step of EM for a mixture of von Mises–Fisher components of concentration :math:`\kappa = 1/\tau`,
  whose E-step posterior is exactly :math:`y` (the paper's Bayesian-inference result).

:class:`SoftHebbPlasticity` holds the rule (and its broken variants: hard WTA, flipped sign, dropped decay term, for
the must-fail tests); :meth:`SoftHebbPlasticity.field` is the vector field ``f(t, W, args)`` that
:func:`dynlearn.dynamics.simulate` integrates. The learner ``softhebb`` trains the hidden layers of an MLP by this
rule (one Euler step of the ODE per batch, applied by the optimiser: ``grads`` = minus the Hebbian update) and its
output layer, a linear readout of the last soft-WTA layer, by the gradient of the loss.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ...losses import get_loss
from ...networks import Network
from ...rules.base import LEARNERS, Learner, Rule
from ..base import Data

#: the competition of the layer: ``"soft"`` (the paper's softmax) or ``"hard"`` (one-hot argmax, the classical WTA)
WTA_KINDS = ("soft", "hard")


def normalise(x: Array, axis: int = -1, eps: float = 1e-12) -> Array:
    r""":math:`x / \|x\|_2` along ``axis`` (a zero vector stays zero)."""
    return x / jnp.maximum(jnp.linalg.norm(x, axis=axis, keepdims=True), eps)


def competition(u: Array, tau: float, wta: str = "soft", axis: int = -1) -> Array:
    r"""The WTA's outputs: :math:`\mathrm{softmax}(u/\tau)` (``"soft"``) or the one-hot of :math:`\arg\max u` (``"hard"``)."""
    if wta == "soft":
        return jax.nn.softmax(u / tau, axis=axis)
    return jax.nn.one_hot(jnp.argmax(u, axis=axis), u.shape[axis], dtype=u.dtype, axis=axis)


class SoftHebbPlasticity(eqx.Module):
    r"""The SoftHebb rule :math:`\Delta w_k = \eta\,y_k(x - u_k w_k)` for a dense layer without bias.

    Attributes:
        tau: temperature τ of the soft WTA (:math:`1/\kappa` of the mixture it infers).
        wta: ``"soft"`` (the paper) or ``"hard"`` (classical WTA; a must-fail variant of the Bayesian check).
        sign: +1 for the rule; -1 flips it (anti-Hebbian, a must-fail variant).
        decay: keep the :math:`-u_k w_k` term (``False``: plain Hebb :math:`y_k x`, whose norms grow without bound).
    """

    tau: float = eqx.field(static=True, default=1.0)
    wta: str = eqx.field(static=True, default="soft")
    sign: float = eqx.field(static=True, default=1.0)
    decay: bool = eqx.field(static=True, default=True)

    def __post_init__(self):
        if self.wta not in WTA_KINDS:
            raise ValueError(f"wta must be one of {WTA_KINDS}, got {self.wta!r}")
        if not self.tau > 0:
            raise ValueError(f"tau must be > 0, got {self.tau!r}")

    def outputs(self, w: Float[Array, "K d"], x: Float[Array, "n d"]) -> tuple[Array, Array]:
        """``(u, y)``: activations :math:`u = x W^\\top` and the WTA outputs, ``(n, K)`` each."""
        u = x @ w.T
        return u, competition(u, self.tau, self.wta)

    def delta(self, w: Float[Array, "K d"], x: Float[Array, "n d"]) -> Float[Array, "K d"]:
        r""":math:`\sum_n y_{nk}(x_n - u_{nk} w_k)`: the Hebbian update summed over the samples ``x`` (rows)."""
        u, y = self.outputs(w, x)
        hebb = y.T @ x
        if self.decay:
            hebb = hebb - jnp.sum(y * u, axis=0)[:, None] * w
        return self.sign * hebb

    def field(self, t, w: Float[Array, "K d"], args) -> Float[Array, "K d"]:
        r""":math:`\dot W = \eta\,\langle \Delta W\rangle`; ``args = (x, eta)`` (the data average is over the rows of ``x``)."""
        x, eta = args
        return eta * self.delta(w, x) / x.shape[0]


def norm_rate(plasticity: SoftHebbPlasticity, w: Float[Array, "K d"], x: Float[Array, "n d"]) -> Float[Array, " K"]:
    r""":math:`m_k = \langle y_k u_k\rangle`: under the flow, :math:`\tfrac{d}{dt}(1 - \|w_k\|^2) = -2\eta m_k (1 - \|w_k\|^2)`."""
    u, y = plasticity.outputs(w, x)
    return jnp.mean(y * u, axis=0)


@dataclasses.dataclass(frozen=True)
class SoftWTA:
    r"""The hidden activation of a SoftHebb MLP: :math:`h = \mathrm{softmax}(u/\tau) / \|\mathrm{softmax}(u/\tau)\|_2`
    (the soft WTA, rescaled to the unit norm the next layer's rule assumes); a hashable callable."""

    tau: float = 1.0

    def __call__(self, u: Array) -> Array:
        return normalise(jax.nn.softmax(u / self.tau, axis=-1))

    @property
    def __name__(self) -> str:  # printable by networks.activation_name
        return f"soft_wta(tau={self.tau:g})"


def softhebb_network(network: Network, tau: float) -> Network:
    """``network`` (an MLP) with the soft-WTA activation :class:`SoftWTA` between its layers."""
    network._require_mlp("a SoftHebb network")
    return Network(network.layers, SoftWTA(tau), shapes=network.shapes)


def unit_inputs(x: Array, center: bool = True) -> Array:
    r"""The inputs the first layer sees: :math:`x - \bar x` (the sample's own mean over its features, with ``center``)
    scaled to unit norm (the rule's theory assumes :math:`\|x\| = 1`)."""
    return normalise(x - jnp.mean(x, axis=-1, keepdims=True) if center else x)


def predict(params: Network, x: Array) -> Array:
    """The readout of the last soft-WTA layer for inputs ``x`` (centred, unit norm)."""
    return params(unit_inputs(x, True))


def predict_uncentred(params: Network, x: Array) -> Array:
    """The readout of the last soft-WTA layer for inputs ``x`` (unit norm, not centred)."""
    return params(unit_inputs(x, False))


class SoftHebbRule(Rule):
    """Hidden layers: minus the summed SoftHebb update (descent sign); readout: the gradient of ``loss``.

    The hidden layers' biases get zero updates (the rule has none; they keep their initial value, 0 by default)."""

    plasticity: SoftHebbPlasticity
    loss: Callable = eqx.field(static=True)
    center: bool = eqx.field(static=True, default=True)

    def update(self, params: Network, rule_state, batch: Data, key):
        states = params.forward(unit_inputs(batch.x, self.center))  # states[l]: pre-activation of layer l, states[0] the unit input
        ws, bs = [], []
        for l in range(1, params.depth):
            h = params.presynaptic(l, states[l - 1])
            ws.append(-self.plasticity.delta(params.weights[l - 1], h))
            bs.append(jnp.zeros_like(params.biases[l - 1]))
        h_last = jax.lax.stop_gradient(params.presynaptic(params.depth, states[-2]))

        def readout_loss(wb):
            out = h_last @ wb[0].T + wb[1]
            return self.loss(out, batch.y)

        loss, (gw, gb) = jax.value_and_grad(readout_loss)((params.weights[-1], params.biases[-1]))
        grads = params.with_matrices((*ws, gw), (*bs, gb))
        n = batch.x.shape[0]
        metrics = {"loss": loss / n}
        for l in range(1, params.depth):
            norms = jnp.linalg.norm(params.weights[l - 1], axis=1)
            metrics[f"norm_gap_{l}"] = jnp.mean(jnp.abs(norms - 1.0))
        return grads, rule_state, metrics


def _check_tau(tau) -> float:
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0 < tau < math.inf:
        raise ValueError(f"tau must be a finite temperature > 0, got {tau!r}")
    return float(tau)


@LEARNERS.register("softhebb")
def softhebb_learner(*, tau: float = 0.05, loss: str = "ce", wta: str = "soft", center: bool = True) -> Learner:
    """SoftHebb hidden layers (unsupervised, local, no feedback) and a linear readout trained by the loss gradient."""
    tau = _check_tau(tau)
    if wta not in WTA_KINDS:
        raise ValueError(f"wta must be one of {WTA_KINDS}, got {wta!r}")
    return Learner(
        name="softhebb",
        rule=SoftHebbRule(SoftHebbPlasticity(tau=tau, wta=wta), get_loss(loss), bool(center)),
        init=lambda key, network: softhebb_network(network, tau),
        predict=predict if center else predict_uncentred,
        description="SoftHebb: soft winner-take-all hidden layers with Hebbian plasticity, no feedback; linear readout by the loss gradient (Moraitis et al. 2022)",
        defaults={"tau": tau, "loss": loss, "wta": wta, "center": bool(center), "lr": 1e-2, "activation": "relu"},
    )
