r"""LLS (Apolinario, Roy & Roy, "LLS: local learning rule for deep neural networks inspired by neural activity
synchronization", WACV 2025), with its variants LLS-M and LLS-MxM.

Each hidden layer :math:`l < L` reads its own activity out through **fixed periodic basis vectors**, one per class,
and descends a local cross-entropy through that layer alone (its input detached); the output layer descends the task
loss. With :math:`z_l = \mathrm{pool}(\varphi(a_l))` (a convolutional state is averaged over space, one value per
channel; a vector state is used as it is) normalised to unit length, :math:`\hat z_l = z_l/\|z_l\|`:

.. math::  o_l = \frac{1}{T}\, B_l \hat z_l \ (\text{LLS}), \qquad o_l = \frac{1}{T}\, m_l \odot B_l \hat z_l \ (\text{LLS-M}),
           \qquad o_l = \frac{1}{T}\, M_l^{\top} B_l \hat z_l \ (\text{LLS-MxM}),

.. math::  J_l = \mathrm{CE}(\mathrm{softmax}(o_l), y), \qquad \delta_l = \partial J_l/\partial a_l ,

with :math:`B_l[k, j] = \cos(\pi f_k (j + \tfrac12)/n_l)` (:func:`periodic_basis`: a DCT-II basis, exactly orthogonal,
frequencies :math:`f_k = 1..C`; ``waveform="square"`` takes its sign), :math:`T` the ``temperature``, and the
modulations :math:`m_l \in \mathbb R^C` (LLS-M) or :math:`M_l \in \mathbb R^{C\times C}` (LLS-MxM) the only trained
parameters a layer adds (:class:`LocalParams`). No error crosses a layer: the saving against backprop is the
:math:`W_l^\top\delta_l` products of the backward pass (``lls_macs`` counts them with XLA's cost analysis).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from ..losses import cross_entropy_loss, get_loss
from ..models.base import Data
from ..networks import Network
from .base import LEARNERS, Learner, Rule
from .drtp import local_gradients, output_error
from .. import draws

WAVEFORMS = ("cosine", "square")
MODULATIONS = (None, "m", "mxm")


def periodic_basis(n_classes: int, n_units: int, waveform: str = "cosine", dtype=jnp.float32) -> jax.Array:
    r""":math:`B[k, j] = \cos(\pi (k+1)(j + \tfrac12)/n)`, shape ``(n_classes, n_units)``; ``"square"``: its sign."""
    k = jnp.arange(1, n_classes + 1, dtype=dtype)[:, None]
    j = jnp.arange(n_units, dtype=dtype)[None, :]
    b = jnp.cos(math.pi * k * (j + 0.5) / n_units)
    return jnp.sign(b) if waveform == "square" else b


class LocalParams(eqx.Module):
    """What LLS trains: the forward ``network`` and one modulation per hidden layer (``()`` for plain LLS)."""

    network: Network
    modulation: tuple

    def __call__(self, x):
        return self.network(x)

    @property
    def sizes(self) -> tuple[int, ...]:
        return self.network.sizes


def pooled(net: Network, l: int, h: jax.Array) -> jax.Array:
    """Layer ``l``'s activity as the readout sees it: a vector state as it is, any other state averaged over all
    but its first axis (channels of a convolution)."""
    shape = net.shapes[l]
    lead = h.shape[: h.ndim - len(shape)]
    if len(shape) > 1:
        h = h.reshape(lead + (shape[0], -1)).mean(-1)
    return h.reshape(lead + (-1,))


class LocalLearningSynchronization(Rule):
    """LLS (see the module docstring): ``modulation`` is ``None`` (LLS), ``"m"`` (LLS-M) or ``"mxm"`` (LLS-MxM)."""

    loss: Callable = eqx.field(static=True)
    modulation: str | None = eqx.field(static=True, default=None)
    temperature: float = eqx.field(static=True, default=1.0)
    waveform: str = eqx.field(static=True, default="cosine")

    def local_loss(self, net: Network, l: int, a: jax.Array, mod, y: jax.Array) -> jax.Array:
        r""":math:`J_l` of hidden layer ``l`` from its pre-activation ``a`` and modulation ``mod`` (summed over the batch)."""
        z = pooled(net, l, net.phi(a))
        z = z / jnp.sqrt(jnp.sum(z**2, axis=-1, keepdims=True) + 1e-12)
        o = z @ periodic_basis(y.shape[-1], z.shape[-1], self.waveform, z.dtype).T
        if self.modulation == "m":
            o = o * mod
        elif self.modulation == "mxm":
            o = o @ mod
        return cross_entropy_loss(o / self.temperature, y)

    def update(self, params: LocalParams, rule_state, batch: Data, key):
        net, x, y = params.network, batch.x, batch.y
        acts = net.forward(x)
        mods = params.modulation if self.modulation else (None,) * (net.depth - 1)
        signals, mod_grads, local = [], [], 0.0
        for l, (a, m) in enumerate(zip(acts[1:-1], mods), start=1):
            if self.modulation:
                j, (d, gm) = jax.value_and_grad(lambda a_, m_, l=l: self.local_loss(net, l, a_, m_, y), argnums=(0, 1))(a, m)
                mod_grads.append(gm)
            else:
                j, d = jax.value_and_grad(lambda a_, l=l: self.local_loss(net, l, a_, None, y))(a)
            signals.append(d)
            local = local + j
        value, e = output_error(self.loss, acts[-1], y)
        grads = LocalParams(local_gradients(net, acts[:-1], [*signals, e]), tuple(mod_grads))
        n = x.shape[0]
        return grads, rule_state, {"loss": value / n, "local_loss": local / n / max(net.depth - 1, 1)}


def init_modulation(key, network: Network, modulation: str | None) -> tuple:
    """Per hidden layer: ``m`` = 1 + N(0, 0.01²) (LLS-M) or ``M`` = I + N(0, 0.01²) (LLS-MxM); ``()`` for LLS."""
    if modulation is None:
        return ()
    c = network.sizes[-1]
    dtype = next((a.dtype for a in jax.tree.leaves(network) if eqx.is_inexact_array(a)), jnp.float32)
    keys = jax.random.split(key, max(network.depth - 1, 1))[: network.depth - 1]
    if modulation == "m":
        return tuple(1.0 + 0.01 * draws.normal(k, (c,), dtype) for k in keys)
    return tuple(jnp.eye(c, dtype=dtype) + 0.01 * draws.normal(k, (c, c), dtype) for k in keys)


def _predict(params: LocalParams, x):
    return params.network(x)


def lls_learner_for(name: str, modulation: str | None, *, activation="tanh", loss="ce", temperature=1.0, waveform="cosine") -> Learner:
    """The :class:`Learner` of LLS with ``modulation`` (``None``, ``"m"``, ``"mxm"``)."""
    if waveform not in WAVEFORMS:
        raise ValueError(f"waveform must be one of {WAVEFORMS}, got {waveform!r}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    rule = LocalLearningSynchronization(get_loss(loss), modulation, float(temperature), waveform)
    label = {None: "LLS", "m": "LLS-M", "mxm": "LLS-MxM"}[modulation]
    return Learner(
        name=name,
        rule=rule,
        init=lambda key, network: LocalParams(network, init_modulation(key, network, modulation)),
        predict=_predict,
        description=f"{label}: local cross-entropy through fixed periodic basis vectors per layer, no backward pass (Apolinario et al. 2025)",
        defaults={"activation": activation, "loss": loss, "temperature": temperature, "waveform": waveform, "lr": 1e-2},
    )


@LEARNERS.register("lls")
def lls_learner(*, activation="tanh", loss: str = "ce", temperature: float = 1.0, waveform: str = "cosine") -> Learner:
    """LLS: each hidden layer learns from a local cross-entropy through fixed periodic basis vectors."""
    return lls_learner_for("lls", None, activation=activation, loss=loss, temperature=temperature, waveform=waveform)


@LEARNERS.register("lls/m")
def lls_m_learner(*, activation="tanh", loss: str = "ce", temperature: float = 1.0, waveform: str = "cosine") -> Learner:
    """LLS-M: LLS with a trained per-class modulation vector per layer."""
    return lls_learner_for("lls/m", "m", activation=activation, loss=loss, temperature=temperature, waveform=waveform)


@LEARNERS.register("lls/mxm")
def lls_mxm_learner(*, activation="tanh", loss: str = "ce", temperature: float = 1.0, waveform: str = "cosine") -> Learner:
    """LLS-MxM: LLS with a trained class-by-class modulation matrix per layer."""
    return lls_learner_for("lls/mxm", "mxm", activation=activation, loss=loss, temperature=temperature, waveform=waveform)
