r"""Multilayer SoftHebb (Journé, Garcia Rodriguez, Guo & Moraitis, "Hebbian deep learning without feedback",
ICLR 2023): convolutional soft winner-take-all layers trained by SoftHebb plasticity, no feedback of any kind, then a
linear classifier trained by the loss gradient.

Layer ``l`` takes the pooled map :math:`h_{l-1}` (channels × height × width) and computes

.. math::  z = \mathrm{standardise}(h_{l-1}), \quad u = W_l \ast z, \quad
           a = \mathrm{relu}(u - \bar u), \quad h_l = \mathrm{maxpool}_{2\times 2}(a),

with :math:`\bar u` the mean over channels at each position (the paper's *triangle* activation, after Coates et al.
2011) and ``standardise`` the per-sample, per-channel centring and scaling that stands in for the paper's batch
normalisation without affine parameters (so a prediction does not depend on the rest of the batch). Plasticity is
SoftHebb at every position :math:`p` of every sample, with the soft WTA over the channels:

.. math::  y_{kp} = \mathrm{softmax}_k(u_{\cdot p}/\tau), \qquad
           \Delta w_k = \sum_{p} \tilde y_{kp}\,(z_{p} - u_{kp} w_k),

where :math:`z_p` is the input patch under the kernel and :math:`\tilde y = y` (``anti_hebbian=False``) or the paper's
soft anti-Hebbian variant :math:`\tilde y_{kp} = y_{kp}` for the winner :math:`k = \arg\max_j u_{jp}` and
:math:`-y_{kp}` for the others. :math:`\sum_p y_{kp} z_p` is the vector-Jacobian product of the convolution with
respect to its kernel (``jax.vjp``), so no patch matrix is formed.

Learner ``softhebb/deep``: each hidden width of the network it is given becomes a conv layer of that many channels
(``(64,)``: one layer of 64; ``(16, 64, 128)``: three). Every Hebbian layer learns from the current output of the one
below (no signal comes down), all at once, or greedily one after the other: with ``greedy_steps`` ``S`` layer ``l``
is plastic during steps ``[(l-1) S, l S)``, then frozen; with ``only_layer`` only that layer is plastic (one training
run per layer, :mod:`dynlearn.models.hebbian.softhebb_depth`). The readout learns throughout from the gradient of
``loss``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from ...losses import get_loss
from ...rules.base import LEARNERS, Learner, Rule
from ..base import Data
from ... import draws


def standardise(h: Array, eps: float = 1e-5) -> Array:
    """Per-sample, per-channel centring and scaling of maps ``(batch, channels, height, width)``."""
    mean = jnp.mean(h, axis=(-2, -1), keepdims=True)
    return (h - mean) / jnp.sqrt(jnp.var(h, axis=(-2, -1), keepdims=True) + eps)


def triangle(u: Array, axis: int = -3) -> Array:
    r"""The triangle activation :math:`\mathrm{relu}(u_k - \bar u)`, :math:`\bar u` the mean over channels (``axis``)."""
    return jax.nn.relu(u - jnp.mean(u, axis=axis, keepdims=True))


def max_pool(a: Array) -> Array:
    """2x2 max pooling, stride 2 (a 1x1 map is left as it is)."""
    if a.shape[-1] < 2 or a.shape[-2] < 2:
        return a
    return jax.lax.reduce_window(a, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")


def conv(weight: Array, z: Array) -> Array:
    """``weight`` (K, C, k, k) over maps ``z`` (B, C, H, W), 'same' zero padding, stride 1."""
    return jax.lax.conv_general_dilated(z, weight, (1, 1), "SAME", dimension_numbers=("NCHW", "OIHW", "NCHW"))


class DeepSoftHebb(eqx.Module):
    """Hebbian conv kernels ``kernels[l]`` of shape (channels_l, channels_{l-1}, k, k) and a linear ``readout``."""

    kernels: tuple[Array, ...]
    readout: eqx.nn.Linear
    in_shape: tuple[int, int, int] = eqx.field(static=True)

    def features(self, x: Array) -> list[tuple[Array, Array, Array]]:
        """``[(z_l, u_l, h_l)]`` per layer for flat or image inputs ``x`` (batch first)."""
        h = x.reshape((x.shape[0], *self.in_shape))
        out = []
        for w in self.kernels:
            z = standardise(h)
            u = conv(w, z)
            h = max_pool(triangle(u))
            out.append((z, u, h))
        return out

    def __call__(self, x: Array) -> Array:
        h = self.features(x)[-1][2]
        return h.reshape(h.shape[0], -1) @ self.readout.weight.T + self.readout.bias


def conv_softhebb_delta(weight: Array, z: Array, tau: float, anti_hebbian: bool = True) -> Array:
    r""":math:`\Delta w_k = \sum_{b,p} \tilde y_{bkp}(z_{bp} - u_{bkp} w_k)` for kernels ``weight`` on inputs ``z``."""
    u, vjp = jax.vjp(lambda w: conv(w, z), weight)
    y = jax.nn.softmax(u / tau, axis=1)
    if anti_hebbian:
        win = jax.nn.one_hot(jnp.argmax(u, axis=1), u.shape[1], axis=1, dtype=u.dtype)
        y = y * (2.0 * win - 1.0)
    (hebb,) = vjp(y)
    return hebb - jnp.sum(y * u, axis=(0, 2, 3))[:, None, None, None] * weight


class DeepSoftHebbRule(Rule):
    """Hebbian layers: minus :func:`conv_softhebb_delta` (descent sign, greedy schedule); readout: the loss gradient."""

    tau: float = eqx.field(static=True)
    loss: Callable = eqx.field(static=True)
    anti_hebbian: bool = eqx.field(static=True, default=True)
    greedy_steps: int | None = eqx.field(static=True, default=None)
    only_layer: int | None = eqx.field(static=True, default=None)

    def init(self, key, params):
        return jnp.zeros((), jnp.int32)  # the step counter of the greedy schedule

    def update(self, params: DeepSoftHebb, rule_state, batch: Data, key):
        feats = params.features(batch.x)
        grads_k = []
        for l, (w, (z, _, _)) in enumerate(zip(params.kernels, feats)):
            g = -conv_softhebb_delta(w, jax.lax.stop_gradient(z), self.tau, self.anti_hebbian)
            if self.greedy_steps is not None:
                g = g * (rule_state // self.greedy_steps == l).astype(g.dtype)
            if self.only_layer is not None and self.only_layer != l + 1:
                g = jnp.zeros_like(g)
            grads_k.append(g)
        h = jax.lax.stop_gradient(feats[-1][2])
        h = h.reshape(h.shape[0], -1)
        loss, g_ro = eqx.filter_value_and_grad(lambda ro: self.loss(h @ ro.weight.T + ro.bias, batch.y))(params.readout)
        grads = DeepSoftHebb(tuple(grads_k), g_ro, params.in_shape)
        metrics = {"loss": loss / batch.x.shape[0]}
        for l, w in enumerate(params.kernels, start=1):
            norms = jnp.sqrt(jnp.sum(w**2, axis=(1, 2, 3)))
            metrics[f"norm_gap_{l}"] = jnp.mean(jnp.abs(norms - 1.0))
        return grads, rule_state + 1, metrics


def image_shape(n_features: int, in_shape=None) -> tuple[int, int, int]:
    """``in_shape`` as (channels, height, width), or a square single-channel image of ``n_features`` pixels."""
    if in_shape is not None:
        return tuple(int(s) for s in in_shape)
    side = math.isqrt(n_features)
    if side * side != n_features:
        raise ValueError(f"in_shape: {n_features} input features are not a square image; give in_shape=(C, H, W)")
    return (1, side, side)


def init_deep_softhebb(key, sizes, *, kernel: int = 3, in_shape=None, dtype=jnp.float32) -> DeepSoftHebb:
    """Kernels of unit norm per unit (random directions) for the hidden widths ``sizes[1:-1]``, and a zero readout."""
    shape = image_shape(sizes[0], in_shape)
    keys = jax.random.split(key, len(sizes) - 1)
    kernels, c = [], shape[0]
    for k_, ch in zip(keys, sizes[1:-1]):
        w = draws.normal(k_, (ch, c, kernel, kernel), dtype)
        kernels.append(w / jnp.sqrt(jnp.sum(w**2, axis=(1, 2, 3), keepdims=True)))
        c = ch
    probe = DeepSoftHebb(tuple(kernels), eqx.nn.Linear(1, sizes[-1], key=keys[-1]), shape)
    n_flat = math.prod(jax.eval_shape(lambda: probe.features(jnp.zeros((1, *shape), dtype))[-1][2]).shape[1:])
    readout = eqx.nn.Linear(n_flat, sizes[-1], key=keys[-1], dtype=dtype)
    readout = eqx.tree_at(lambda r: (r.weight, r.bias), readout, (jnp.zeros_like(readout.weight), jnp.zeros_like(readout.bias)))
    return DeepSoftHebb(tuple(kernels), readout, shape)


def _network_sizes(network) -> tuple[int, ...]:
    return tuple(int(s) for s in network.sizes)


def _predict(params: DeepSoftHebb, x: Array) -> Array:
    return params(x)


@LEARNERS.register("softhebb/deep")
def softhebb_deep_learner(*, tau: float = 0.3, loss: str = "ce", kernel: int = 3, anti_hebbian: bool = True,
                          greedy_steps: int | None = None, only_layer: int | None = None,
                          in_shape: tuple[int, int, int] | None = None) -> Learner:
    """Multilayer convolutional SoftHebb (triangle activation, max pooling) and a linear readout by the loss gradient."""
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0 < tau < float("inf"):
        raise ValueError(f"tau must be a finite temperature > 0, got {tau!r}")
    if isinstance(kernel, bool) or not isinstance(kernel, int) or kernel < 1:
        raise ValueError(f"kernel must be a positive integer, got {kernel!r}")
    if greedy_steps is not None and (isinstance(greedy_steps, bool) or not isinstance(greedy_steps, int) or greedy_steps < 1):
        raise ValueError(f"greedy_steps must be a positive integer or None, got {greedy_steps!r}")
    if only_layer is not None and (isinstance(only_layer, bool) or not isinstance(only_layer, int) or only_layer < 0):
        raise ValueError(f"only_layer must be a layer number >= 1 (0: no Hebbian layer learns) or None, got {only_layer!r}")
    dtype_of = lambda net: net.weights[0].dtype
    return Learner(
        name="softhebb/deep",
        rule=DeepSoftHebbRule(float(tau), get_loss(loss), bool(anti_hebbian), greedy_steps, only_layer),
        init=lambda key, network: init_deep_softhebb(key, _network_sizes(network), kernel=kernel, in_shape=in_shape, dtype=dtype_of(network)),
        predict=_predict,
        description="multilayer SoftHebb: conv soft-WTA layers (triangle activation, max pooling) with Hebbian plasticity, no feedback; linear readout (Journe et al. 2023)",
        defaults={"tau": float(tau), "loss": loss, "kernel": kernel, "anti_hebbian": bool(anti_hebbian), "greedy_steps": greedy_steps,
                  "only_layer": only_layer, "lr": 1e-2, "activation": "relu"},
    )
