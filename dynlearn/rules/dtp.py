r"""Difference target propagation (DTP; Lee, Zhang, Fischer & Bengio 2015, ECML-PKDD) and fixed-weight DTP
(FW-DTP; Shibuya, Inoue, Kawakami & Sato 2023, AAAI).

Target propagation works on the layer *rates* :math:`h_0 = x`, :math:`h_l = f_l(h_{l-1}) = \varphi(W_l h_{l-1} + b_l)`
for hidden layers and :math:`h_L = W_L h_{L-1} + b_L` at the (linear) output — the same :class:`dynlearn.Network`
as every other rule (:math:`h_l = \varphi(\hat x_l)`). No error travels back; *targets* do:

.. math::  \tau_L = h_L - \eta\,\frac{\partial L}{\partial h_L}, \qquad
           \tau_{l-1} = h_{l-1} + g_l(\tau_l) - g_l(h_l) \quad (l = L, \dots, 2),

where :math:`\eta` is ``step`` (the paper's :math:`\hat\eta`) and :math:`g_l(h) = \varphi(V_l h + c_l)` is the
feedback function of layer ``l``. The term :math:`h_{l-1} - g_l(h_l)` is the *difference correction*: it makes
:math:`\tau_{l-1} = h_{l-1}` whenever :math:`\tau_l = h_l`, however poor an inverse :math:`g_l` is. Each layer then
descends its own local loss (its input detached),

.. math::  \mathcal L_l = \tfrac12\|f_l(h_{l-1}) - \tau_l\|^2, \qquad \Delta\theta_l \propto -\partial\mathcal L_l/\partial\theta_l .

* ``dtp``: :math:`g_l` is trained as a denoising inverse of :math:`f_l` (Lee et al. 2015):
  :math:`\mathcal L^{\rm inv}_l = \tfrac12\|g_l(f_l(h_{l-1} + \xi)) - (h_{l-1} + \xi)\|^2`,
  :math:`\xi \sim N(0, \sigma^2)` (``sigma``), one step per batch alongside the forward update.
* ``fwdtp``: :math:`V_l` is a fixed random matrix and :math:`c_l = 0` (Shibuya et al. 2023): no feedback training.

``difference=False`` drops the correction (plain target propagation, :math:`\tau_{l-1} = g_l(\tau_l)`).
The update is returned in descent sign, like every rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from ..losses import get_loss
from ..models.base import Data
from ..networks import Network, linear_layer, matvec
from .base import LEARNERS, Learner, Rule
from .feedback.network import (
    FeedbackNetwork,
    random_feedback,
    stop_gradient,
    weight_arrays,
    zeros_update,
)
from .. import draws


#: the trained PyTree of ``dtp``/``fwdtp`` is the feedback family's: the forward ``network`` and the feedback layers,
#: ``feedback[k]`` being :math:`g_l` for forward layer ``l = k + 2`` (an :class:`equinox.nn.Linear` from ``n_l`` to
#: ``n_{l-1}`` units holding :math:`V_l` and :math:`c_l`; :math:`g_l(h) = \varphi(V_l h + c_l)`)
TargetPropagationNetwork = FeedbackNetwork


def layer_map(network: Network, l: int, h_prev: Array) -> Array:
    """:math:`f_l(h_{l-1})`: :math:`\\varphi(W_l h_{l-1} + b_l)` for hidden layers, linear at the output."""
    a = network.apply(l, h_prev)
    return a if l == network.depth else network.phi(a)


def rates(network: Network, x: Array) -> list[Array]:
    """The rates ``[h_0, ..., h_L]`` of target propagation (:math:`h_l = \\varphi(\\hat x_l)`, :math:`h_L = \\hat x_L`)."""
    hs = [x]
    for l in range(1, network.depth + 1):
        hs.append(layer_map(network, l, hs[-1]))
    return hs


def feedback_map(network: Network, layer: eqx.nn.Linear, h: Array) -> Array:
    """:math:`g_l(h) = \\varphi(V_l h + c_l)` with ``layer`` holding :math:`V_l, c_l`."""
    return network.phi(matvec(layer.weight, h) + layer.bias)


def output_target(h_out: Array, y: Array, loss: Callable, step) -> Array:
    """:math:`\\tau_L = h_L - \\eta\\,\\partial L/\\partial h_L` (``step`` = η)."""
    return h_out - step * jax.grad(loss)(h_out, y)


def propagate_targets(hs: Sequence[Array], tau_out: Array, feedback: Sequence[Callable], *, difference: bool = True) -> list[Array]:
    """Targets ``[τ_1, ..., τ_L]`` from the output target down.

    ``hs`` are the rates ``[h_0, ..., h_L]``; ``feedback[k]`` is the feedback function :math:`g_{k+2}` (any callable
    from layer ``k + 2`` to layer ``k + 1``, e.g. an exact inverse). DTP (``difference=True``):
    :math:`\\tau_{l-1} = h_{l-1} + g_l(\\tau_l) - g_l(h_l)`; plain TP: :math:`\\tau_{l-1} = g_l(\\tau_l)`.
    """
    depth = len(hs) - 1
    if len(feedback) != depth - 1:
        raise ValueError(f"{depth} layers need {depth - 1} feedback functions, got {len(feedback)}")
    targets = [tau_out]
    for l in range(depth, 1, -1):
        g = feedback[l - 2]
        tau = g(targets[0])
        if difference:
            tau = hs[l - 1] + tau - g(hs[l])
        targets.insert(0, tau)
    return targets


class DifferenceTargetPropagation(Rule):
    """DTP / FW-DTP (see the module docstring): ``step`` = η, ``sigma`` = the reconstruction noise σ,
    ``learn_feedback`` (DTP) or fixed feedback (FW-DTP), ``difference`` = use the difference correction."""

    loss: Callable = eqx.field(static=True)
    step: float = 0.5
    sigma: float = eqx.field(static=True, default=0.1)
    learn_feedback: bool = eqx.field(static=True, default=True)
    difference: bool = eqx.field(static=True, default=True)

    def targets(self, params: TargetPropagationNetwork, x: Array, y: Array) -> tuple[list[Array], list[Array]]:
        """``(rates, targets)`` of a batch: ``[h_0..h_L]`` and ``[τ_1..τ_L]`` (no gradient flows through either)."""
        net = stop_gradient(params.network)
        hs = rates(net, x)
        fb = [lambda h, layer=layer: feedback_map(net, stop_gradient(layer), h) for layer in params.feedback]
        taus = propagate_targets(hs, output_target(hs[-1], y, self.loss, self.step), fb, difference=self.difference)
        return [jax.lax.stop_gradient(h) for h in hs], [jax.lax.stop_gradient(t) for t in taus]

    def forward_update(self, network: Network, hs, taus) -> Network:
        """:math:`\\partial/\\partial\\theta \\sum_l \\tfrac12\\|f_l(h_{l-1}) - \\tau_l\\|^2`, each layer's input detached."""

        def local_losses(net):
            return sum(0.5 * jnp.sum((layer_map(net, l, hs[l - 1]) - taus[l - 1]) ** 2) for l in range(1, net.depth + 1))

        return eqx.filter_grad(local_losses)(network)

    def feedback_update(self, params: TargetPropagationNetwork, hs, key) -> tuple:
        """:math:`\\partial/\\partial(V, c) \\sum_l \\tfrac12\\|g_l(f_l(h_{l-1}+\\xi)) - (h_{l-1}+\\xi)\\|^2`; zero if fixed."""
        if not self.learn_feedback:
            return zeros_update(params.feedback)
        net = stop_gradient(params.network)
        keys = jax.random.split(key, len(params.feedback))
        noisy = [hs[l - 1] + self.sigma * draws.normal(keys[l - 2], hs[l - 1].shape, hs[l - 1].dtype) for l in range(2, net.depth + 1)]
        outs = [jax.lax.stop_gradient(layer_map(net, l, noisy[l - 2])) for l in range(2, net.depth + 1)]

        def reconstruction(feedback):
            return sum(0.5 * jnp.sum((feedback_map(net, g, o) - h) ** 2) for g, o, h in zip(feedback, outs, noisy))

        return eqx.filter_grad(reconstruction)(params.feedback)

    def update(self, params: TargetPropagationNetwork, rule_state, batch: Data, key):
        hs, taus = self.targets(params, batch.x, batch.y)
        grads = TargetPropagationNetwork(self.forward_update(params.network, hs, taus), self.feedback_update(params, hs, key))
        n = batch.x.shape[0]
        metrics = {"loss": self.loss(hs[-1], batch.y) / n, "hidden_target_shift": sum(jnp.sum((t - h) ** 2) for t, h in zip(taus[:-1], hs[1:-1])) / n}
        return grads, rule_state, metrics


def init_feedback(key, network: Network, *, scale: float = 1.0) -> tuple:
    """Random feedback :math:`V_l` (``scale`` × Glorot normal, shape ``(n_{l-1}, n_l)``) and :math:`c_l = 0`, ``l = 2..L``,
    drawn with :func:`dynlearn.rules.feedback.network.random_feedback` (its matrices are shaped like :math:`W_l`;
    :math:`V_l` is their transpose)."""
    if not network.is_mlp:
        raise ValueError("target propagation here needs a network of Linear layers (its feedback maps are dense)")
    out = []
    for layer in random_feedback(key, network, scale=scale):
        (b,) = weight_arrays(layer)
        out.append(linear_layer(b.T, jnp.zeros((b.shape[1],), b.dtype)))
    return tuple(out)


def _predict(params: TargetPropagationNetwork, x):
    return params.network(x)


def _learner(name, rule, activation, loss, scale, description, **extra) -> Learner:
    if not (isinstance(rule.step, (int, float)) and rule.step > 0):
        raise ValueError(f"step (the output target step eta) must be a number > 0, got {rule.step!r}")
    return Learner(
        name=name,
        rule=rule,
        init=lambda key, network: TargetPropagationNetwork(network, init_feedback(key, network, scale=scale)),
        predict=_predict,
        description=description,
        defaults={"activation": activation, "loss": loss, "lr": 1e-2, "step": rule.step, "scale": scale, "difference": rule.difference, **extra},
    )


@LEARNERS.register("dtp")
def dtp_learner(*, activation="tanh", loss: str = "ce", step: float = 0.5, sigma: float = 0.1, scale: float = 1.0, difference: bool = True) -> Learner:
    """DTP (Lee et al. 2015): targets through learned denoising inverses with the difference correction."""
    rule = DifferenceTargetPropagation(get_loss(loss), step, sigma, learn_feedback=True, difference=difference)
    return _learner("dtp", rule, activation, loss, scale, "difference target propagation: targets travel down through learned layer inverses (Lee et al. 2015)", sigma=sigma)


@LEARNERS.register("fwdtp")
def fwdtp_learner(*, activation="tanh", loss: str = "ce", step: float = 0.5, scale: float = 1.0, difference: bool = True) -> Learner:
    """FW-DTP (Shibuya et al. 2023): DTP with fixed random feedback weights (no inverse training)."""
    rule = DifferenceTargetPropagation(get_loss(loss), step, 0.0, learn_feedback=False, difference=difference)
    return _learner("fwdtp", rule, activation, loss, scale, "fixed-weight difference target propagation: DTP with fixed random feedback (Shibuya et al. 2023)")
