r"""Reference gradients and ways to compare a learning rule's update with them.

:func:`bp_gradient` is the autodiff gradient of the loss of the *same* feedforward network
(:meth:`dynlearn.Network.forward`), summed over the batch — the quantity that predictive coding,
equilibrium propagation and the microcircuit models approximate.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..losses import get_loss, mse_loss  # noqa: F401
from ..networks import Network


def bp_gradient(network: Network, x: Array, y: Array, loss: str = "mse") -> Network:
    """:math:`\\partial L/\\partial \\theta` of the feedforward network by reverse-mode autodiff (backprop)."""
    loss_fn = get_loss(loss)
    return eqx.filter_grad(lambda net: loss_fn(net(x), y))(network)


def bp_deltas(network: Network, x: Array, y: Array, loss: str = "mse") -> list[Array]:
    r"""Backprop's deltas :math:`\delta_l = \partial L/\partial \hat x_l` for every layer ``l = 1..L`` of the feedforward pass."""
    loss_fn = get_loss(loss)
    shapes = [a.shape for a in network.forward(x)[1:]]

    def perturbed_loss(ps):
        h = x
        for l, p in enumerate(ps, start=1):
            h = network.predict_layer(l, h) + p
        return loss_fn(h, y)

    return list(jax.grad(perturbed_loss)([jnp.zeros(s, x.dtype) for s in shapes]))


def _flat(a) -> Array:
    return jnp.ravel(jnp.asarray(a))


def cosine_similarity(a, b) -> Float[Array, ""]:
    """Cosine of the angle between two arrays (or PyTrees, flattened and concatenated)."""
    a = jnp.concatenate([_flat(x) for x in jax.tree.leaves(a)])
    b = jnp.concatenate([_flat(x) for x in jax.tree.leaves(b)])
    return jnp.vdot(a, b).real / (jnp.linalg.norm(a) * jnp.linalg.norm(b))


def relative_error(estimate, reference) -> Float[Array, ""]:
    """:math:`\\|a - b\\| / \\|b\\|` over all leaves."""
    diff = jax.tree.map(lambda u, v: u - v, estimate, reference)
    num = jnp.sqrt(sum(jnp.sum(jnp.abs(d) ** 2) for d in jax.tree.leaves(diff)))
    den = jnp.sqrt(sum(jnp.sum(jnp.abs(r) ** 2) for r in jax.tree.leaves(reference)))
    return num / den


def _has_weight(m) -> bool:
    return isinstance(m, eqx.Module) and eqx.is_inexact_array(getattr(m, "weight", None))


def layer_weights(network: Network) -> list[list[Array]]:
    """Per layer, the ``weight`` arrays of its sub-layers (matrices and kernels; biases excluded)."""
    return [[m.weight for m in jax.tree.leaves(layer, is_leaf=_has_weight) if _has_weight(m)] for layer in network.layers]


def compare_per_layer(estimate: Network, reference: Network) -> dict[str, Array]:
    """Per-layer weight comparison: ``{"cosine": (L,), "relative_error": (L,)}`` (any layer type: its weight arrays)."""
    pairs = list(zip(layer_weights(estimate), layer_weights(reference)))
    cos = jnp.stack([cosine_similarity(e, r) for e, r in pairs])
    rel = jnp.stack([relative_error(e, r) for e, r in pairs])
    return {"cosine": cos, "relative_error": rel}


def loglog_slope(x, y) -> float:
    """Least-squares slope of ``log y`` against ``log x`` (the order of an error in a small parameter)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if np.any(x <= 0) or np.any(y <= 0) or x.size < 2:
        raise ValueError("loglog_slope needs at least two positive points")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])
