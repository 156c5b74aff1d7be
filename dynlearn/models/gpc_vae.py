r"""A variational autoencoder trained by generalised predictive coding (Pinchetti et al., NeurIPS 2022, their §5.2).

:class:`VAE`: encoder :math:`x \to a_1 = W_1 x + b_1 \to a_2 = (m, \log v) = W_2\varphi(a_1) + b_2`, a reparametrised
sample :math:`z = m + e^{\log v/2}\odot\epsilon` (:math:`\epsilon \sim N(0, I)`, drawn once per update), decoder
:math:`a_3 = W_3 z + b_3 \to a_4 = W_4\varphi(a_3) + b_4` (logits of independent Bernoulli pixels). Backprop
minimises the negative ELBO with the reparametrisation trick,

.. math::  L = \sum_{\rm pixels} {\rm BCE}(x, a_4) + D_{\rm KL}\big(N(m, v)\,\|\,N(0, I)\big)
           = \sum {\rm BCE} + \tfrac12\sum_j (v_j + m_j^2 - 1 - \log v_j).

:class:`VAEGPC` (a :class:`dynlearn.models.gpc_transformer.ChainGPC`) makes the four pre-activations value nodes:
Gaussian nodes (σ = ``scale``) for :math:`a_1, a_2, a_3` and a Bernoulli node for the logits :math:`a_4`, the
reparametrised sample inside the prediction of :math:`a_3` (:math:`\mu_3 = W_3(m + e^{\log v/2}\epsilon) + b_3`
with :math:`(m, \log v)` read from the node :math:`x_2`), and the prior term :math:`R = D_{\rm KL}(N(m, v)\|N(0, I))`
on the latent node. With the output nudged toward the image (γ times the Bernoulli divergence from the data, which
is the BCE) the energy is :math:`\sum_l D_l + \gamma(R + {\rm BCE})`, and the update divided by γ tends to backprop's
gradient of :math:`L` at the same :math:`\epsilon` (``gpc_vae_elbo_limit``); ``"clamped"`` fixes the output to the
image and weighs :math:`R` by 1. Reconstructions use the mean code (:math:`\epsilon = 0`).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from ..config import RelaxConfig
from .base import Data
from .gpc import layer_families
from .gpc_transformer import ChainGPC, adam_training, gpc_gradient, key_rng
from .. import draws

#: the VAE experiment's inference: 1000 Euler steps of 0.02 (t = 20). The latent node's curvature, about 1 + |W_3|^2,
#: grows to ~50 in training and bounds the stable step; the slow modes are the logits of saturated pixels (curvature
#: s(1 - s)), which the adaptive TRAINING relaxation chases to its step budget on every batch. With t = 2 those
#: logits stay unrelaxed and training stalls at the mean image (measured: held-out BCE 0.421 after 10 epochs, the
#: mean image's 0.424; t = 20: 0.363, BP 0.357)
VAE_RELAX = RelaxConfig(solver="euler", dt0=0.02, t1=20.0, steady=False, throw=False)


class VAE(eqx.Module):
    """Weights ``w[0..3]``, biases ``b[0..3]`` of encoder (2 layers) and decoder (2 layers); tanh hidden units."""

    w: tuple
    b: tuple

    @property
    def latent(self) -> int:
        return self.w[2].shape[0]

    def encode(self, x: Array) -> Array:
        """:math:`a_2 = (m, \\log v)` of the feedforward encoder."""
        return jnp.tanh(x @ self.w[0] + self.b[0]) @ self.w[1] + self.b[1]

    def sample(self, a2: Array, eps: Array) -> Array:
        """:math:`z = m + e^{\\log v/2}\\epsilon` from :math:`a_2 = (m, \\log v)`."""
        m, logv = jnp.split(a2, 2, axis=-1)
        return m + jnp.exp(0.5 * logv) * eps

    def decode(self, z: Array) -> Array:
        """Logits :math:`a_4` of the pixels."""
        return jnp.tanh(z @ self.w[2] + self.b[2]) @ self.w[3] + self.b[3]

    def reconstruct(self, x: Array) -> Array:
        """Pixel means from the mean code (ε = 0)."""
        return jax.nn.sigmoid(self.decode(self.sample(self.encode(x), jnp.zeros(x.shape[:-1] + (self.latent,), x.dtype))))


def init_vae(n_in: int = 64, hidden: int = 32, latent: int = 4, *, key, dtype=jnp.float32) -> VAE:
    """Gaussian weights of variance 1/fan-in (the log-variance half of the encoder's output scaled by 0.1), zero biases."""
    if not (isinstance(latent, int) and latent >= 1 and isinstance(hidden, int) and hidden >= 1):
        raise ValueError(f"hidden and latent must be integers >= 1, got hidden={hidden!r}, latent={latent!r}")
    rng = key_rng(key)
    sizes = [(n_in, hidden), (hidden, 2 * latent), (latent, hidden), (hidden, n_in)]
    w = [rng.standard_normal(s) / math.sqrt(s[0]) for s in sizes]
    w[1][:, latent:] *= 0.1
    return VAE(tuple(jnp.asarray(a, dtype) for a in w), tuple(jnp.zeros(s[1], dtype) for s in sizes))


def negative_elbo(vae: VAE, x: Array, eps: Array) -> Array:
    """:math:`L` of the module docstring at noise ``eps``, summed over the batch (the backprop objective)."""
    a2 = vae.encode(x)
    m, logv = jnp.split(a2, 2, axis=-1)
    logits = vae.decode(vae.sample(a2, eps))
    bce = jnp.sum(jax.nn.softplus(logits) - x * logits)
    return bce + 0.5 * jnp.sum(jnp.exp(logv) + m**2 - 1.0 - logv)


def reconstruction_bce(vae: VAE, x: Array) -> Array:
    """Mean binary cross-entropy per pixel (nats) of the mean-code reconstruction of ``x``."""
    logits = vae.decode(vae.sample(vae.encode(x), jnp.zeros(x.shape[:-1] + (vae.latent,), x.dtype)))
    return jnp.mean(jax.nn.softplus(logits) - x * logits)


class VAEGPC(ChainGPC):
    """Generalised PC on :class:`VAE` at the noise ``eps`` (see the module docstring); target ``data.y`` = the image."""

    eps: Array = None

    def predict(self, l: int, below: Array) -> Array:
        v = self.network
        if l == 1:
            return below @ v.w[0] + v.b[0]
        if l == 3:
            return v.sample(below, self.eps) @ v.w[2] + v.b[2]
        return jnp.tanh(below) @ v.w[l - 1] + v.b[l - 1]

    def prior(self, state) -> Array:
        """:math:`D_{\\rm KL}(N(m, v)\\|N(0, I))` read from the latent node :math:`x_2 = (m, \\log v)`."""
        m, logv = jnp.split(state[1], 2, axis=-1)
        return 0.5 * jnp.sum(jnp.exp(logv) + m**2 - 1.0 - logv)

    @property
    def name(self) -> str:
        return f"VAEGPC(output={self.output!r}, families={[f.name for f in self.families]})"


def vae_gpc(params: VAE, eps: Array, *, output: str = "nudged", hidden_family: str = "gaussian", output_family: str = "bernoulli",
            scale: float = 1.0) -> VAEGPC:
    """:class:`VAEGPC` with ``hidden_family`` at the three hidden nodes and ``output_family`` at the pixel logits."""
    return VAEGPC(params, layer_families(4, hidden_family, output_family, scale=scale), output, eps=eps)


def train_vae(x_train, x_test, *, method: str, epochs: int, batch: int = 64, lr: float = 3e-3, hidden: int = 32, latent: int = 4,
              nudge: float = 0.1, output: str = "nudged", output_family: str = "bernoulli", config: RelaxConfig = VAE_RELAX, seed: int = 0, dtype=jnp.float64):
    """Train :class:`VAE` on images in [0, 1] by ``method`` ``"gpc"`` (:func:`gpc_gradient` of :func:`vae_gpc`, divided by
    γ·batch) or ``"bp"`` (autodiff of :func:`negative_elbo` / batch) with the same noise, initialisation and batches.
    Returns ``(params, history, residuals)``: the held-out reconstruction BCE per pixel per epoch."""
    if method not in ("gpc", "bp"):
        raise ValueError(f"method must be 'gpc' or 'bp', got {method!r}")
    x, xt = jnp.asarray(x_train, dtype), jnp.asarray(x_test, dtype)
    params = init_vae(x.shape[1], hidden, latent, key=jax.random.key(seed), dtype=dtype)
    weight = nudge if output == "nudged" else 1.0

    def grad_fn(p, xb, yb, key):
        eps = draws.normal(key, (xb.shape[0], latent), dtype)
        if method == "bp":
            return eqx.filter_grad(lambda q: negative_elbo(q, xb, eps) / xb.shape[0])(p), jnp.zeros((), dtype)
        g, res = gpc_gradient(vae_gpc(p, eps, output=output, output_family=output_family), Data(xb, yb, jnp.asarray(nudge, dtype)), config)
        return jax.tree.map(lambda a: a / (weight * xb.shape[0]), g), res

    def evaluate(p, xt):
        return {"test_bce": reconstruction_bce(p, xt)}

    return adam_training(params, grad_fn, evaluate, (x, x), (xt,), epochs=epochs, batch=batch, lr=lr, seed=seed)
