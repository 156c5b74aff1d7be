r"""The ``pal`` learner: Phaseless Alignment Learning (Max et al. 2024, Nat. Mach. Intell. 6:619) for mini-batches.

Two updates per batch, both in descent sign (what ``jax.grad`` of a loss returns):

* **Forward weights** — feedback alignment through the *current* backward matrices :math:`B_l` (shape of
  :math:`W_{l+1}^\top`): :math:`\delta_N = \partial L/\partial \hat x_N`,
  :math:`\delta_l = \varphi'(\hat x_l) \odot B_l \delta_{l+1}`, :math:`g_{W_l} = \sum_{\text{batch}} \delta_l
  h_{l-1}^\top`, :math:`g_{b_l} = \sum \delta_l`, computed by the one feedback-alignment mechanism
  :func:`dynlearn.rules.feedback.mechanism.feedback_call` with ``linear_layer(B_l.T, None)`` as layer ``l+1``'s
  feedback (Lillicrap et al. 2016; in PAL's notation the dendritic error :math:`e_l = \varphi'_l \odot B_l e_{l+1}`).
* **Backward matrices** — PAL's noise SDE (:mod:`dynlearn.models.pal`): every sample of the batch is presented to its
  own copy of the network for ``t_noise`` ms with the OU noise, the high-pass filter and the PAL rule on and ``W``
  held; :math:`g_{B_l} = -\big(\langle \xi_l (r^{HP}_{l+1})^\top\rangle - \alpha B_l\big)`, minus the mean rate of
  change over samples and time (the batch mean of the authors' GLE-PAL layers), so a descent step follows the PAL rule.

The noise comes only from the ``key`` argument of :meth:`PALRule.update`.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from ..errors import ShapeError
from ..losses import get_loss
from ..models.base import Data
from ..models.pal import PAL, feedback_shapes, pal_state
from ..models.pal_simulation import run_patterns
from ..networks import Network, init_network, linear_layer, matvec
from .base import LEARNERS, Learner, Rule
from .feedback.mechanism import feedback_call
from .feedback.network import random_feedback
from .. import draws


class PALParams(eqx.Module):
    """What the ``pal`` learner trains: the forward network and the backward matrices ``B_l`` (shape of ``W_{l+1}ᵀ``)."""

    network: Network
    feedback: tuple[Array, ...]

    def __check_init__(self):
        sizes = self.network.sizes
        want = feedback_shapes(sizes)
        got = tuple(tuple(b.shape) for b in self.feedback)
        if got != want:
            raise ShapeError(f"PAL: backward matrices must have shapes {want} for layer sizes {sizes}, got {got}")

    def backward_pairs(self):
        """``(label, B_l, W_{l+1}ᵀ)`` per backward matrix: what each ``B_l`` stands in for under backprop."""
        return [(f"B{l + 1}", b, w.T) for l, (b, w) in enumerate(zip(self.feedback, self.network.weights[1:]))]


def draw_feedback(network: Network, key, *, scale: float = 1.0) -> tuple[Array, ...]:
    """PAL's backward matrices ``B_k`` (shaped like ``W_{k+1}ᵀ``): the feedback-alignment family's random draw
    (:func:`dynlearn.rules.feedback.network.random_feedback`), transposed into PAL's layout."""
    return tuple(layer.weight.T for layer in random_feedback(key, network, scale=scale))


def init_params(key, network: Network, *, scale: float = 1.0) -> PALParams:
    """The learner's ``init(key, network)``: ``network`` plus :func:`draw_feedback` from the second key of ``split(key, 3)``."""
    _, k_fb, _ = jax.random.split(key, 3)
    return PALParams(network, draw_feedback(network, k_fb, scale=scale))


def init_pal_params(sizes, *, key, activation: str = "tanh", scale: float = 1.0, dtype=jnp.float32) -> PALParams:
    """Xavier forward weights from ``k_net`` and backward matrices from ``k_fb`` (``k_net, k_fb, _ = split(key, 3)``)."""
    k_net, _, _ = jax.random.split(key, 3)
    return init_params(key, init_network(sizes, key=k_net, activation=activation, dtype=dtype), scale=scale)


def fa_output(network: Network, feedback, x: Array) -> Array:
    """The feedforward output; in reverse mode layer ``l+1`` sends ``B_l δ`` down (not ``W_{l+1}ᵀ δ``)."""
    skeleton = eqx.filter(network, eqx.is_array, inverse=True)  # shapes only: the apply closes over no array
    a = network.predict_layer(1, x)
    for l in range(2, network.depth + 1):
        feedback_layer = linear_layer(feedback[l - 2].T, None)
        apply = lambda layer, h, l=l: skeleton.apply(l, h, layer)  # noqa: E731
        a = feedback_call((network.layers[l - 1], feedback_layer, network.phi(a)), apply)
    return a


def forward_update(network: Network, feedback, x: Array, y: Array, loss: Callable) -> tuple[Network, Array]:
    """``(g_W, L)``: feedback alignment through ``feedback`` (descent sign) and the loss summed over the batch."""
    value, grads = jax.value_and_grad(lambda net: loss(fa_output(net, feedback, x), y))(network)
    return grads, value


def backward_update(model: PAL, network: Network, feedback, x: Array, key, *, t_noise: float, dt: float) -> tuple[Array, ...]:
    """``g_B = -(⟨ξ r^HPᵀ⟩ − αB)`` from PAL's SDE, one noisy presentation of ``t_noise`` ms per sample (``W`` held)."""
    noise_model = eqx.tree_at(
        lambda m: (m.eta_bw, m.eta_fw, m.basal_gain, m.apical_gain), model.dynamics_only(), tuple(jnp.asarray(v) for v in (1.0, 0.0, 1.0, 1.0))
    )
    # the input projection W_1 x + b_1 is constant during a presentation: run the SDE on the network above it
    # (identity first layer fed with the projection), which has the same dynamics and costs far less for wide inputs
    n1, dtype = network.sizes[1], network.weights[0].dtype
    top = Network.from_matrices((jnp.eye(n1, dtype=dtype),) + network.weights[1:], (jnp.zeros(n1, dtype),) + network.biases[1:], network.activation)
    proj = matvec(network.weights[0], x) + network.biases[0]

    def per_sample(xs, k):
        k0, k1 = jax.random.split(k)
        s0 = pal_state(noise_model, top, feedback, xs)
        xi_keys = jax.random.split(k0, len(s0.xi))
        xi0 = tuple((model.sigma / jnp.sqrt(2.0) * draws.normal(kk, a.shape, a.dtype)).astype(a.dtype) for kk, a in zip(xi_keys, s0.xi))
        s0 = eqx.tree_at(lambda s: s.xi, s0, xi0)
        final, _ = run_patterns(noise_model, s0, xs[None], None, k1, t_noise, dt, "euler", "unsafe", None, 0.0)
        return tuple(((b1 - b0) / t_noise).astype(b0.dtype) for b1, b0 in zip(final.feedback, feedback))

    dB = jax.vmap(per_sample)(proj, jax.random.split(key, x.shape[0]))
    return tuple(-jnp.mean(d, axis=0) for d in dB)


class PALRule(Rule):
    """PAL on a mini-batch: ``W`` by feedback alignment through the current ``B``, ``B`` by PAL's noise SDE."""

    model: PAL
    loss: Callable = eqx.field(static=True)
    t_noise: float = eqx.field(static=True, default=1.0)
    dt: float = eqx.field(static=True, default=0.02)

    def update(self, params: PALParams, rule_state, batch: Data, key):
        net = params.network
        x, y = batch.x.astype(net.weights[0].dtype), batch.y.astype(net.weights[0].dtype)
        g_net, value = forward_update(net, params.feedback, x, y, self.loss)
        g_b = backward_update(self.model, net, params.feedback, x, key, t_noise=self.t_noise, dt=self.dt)
        return PALParams(g_net, g_b), rule_state, {"loss": value / x.shape[0]}


def _predict(params: PALParams, x):
    return params.network(x)


@LEARNERS.register("pal")
def pal_learner(
    *,
    activation: str = "tanh",
    loss: str = "mse",
    lr: float = 1e-3,
    sigma: float = 0.3,
    alpha: float = 0.01,
    tau_xi: float = 0.1,
    tau_hp: float = 0.1,
    t_noise: float = 1.0,
    dt: float = 0.02,
) -> Learner:
    """PAL for mini-batch training: FA-style forward learning through backward matrices that PAL's noise SDE aligns."""
    model = PAL(tau_xi=tau_xi, tau_hp=tau_hp, sigma=sigma, alpha=alpha, basal_gain=1.0, apical_gain=1.0)
    return Learner(
        name="pal",
        rule=PALRule(model, get_loss(loss), t_noise, dt),
        init=init_params,
        predict=_predict,
        description="phaseless alignment learning: B aligns with W^T from neuronal noise while W learns (Max et al. 2024)",
        defaults=dict(activation=activation, loss=loss, lr=lr, sigma=sigma, alpha=alpha, tau_xi=tau_xi, tau_hp=tau_hp, t_noise=t_noise, dt=dt),
    )
