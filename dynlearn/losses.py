"""Losses, summed over the batch (the same convention as every energy in dynlearn)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .errors import UnknownNameError


def mse_loss(output: Array, target: Array) -> Float[Array, ""]:
    r""":math:`\tfrac12 \sum_{\text{batch}} \|\hat y - y\|^2`."""
    return 0.5 * jnp.sum((output - target) ** 2)


def cross_entropy_loss(output: Array, target: Array) -> Float[Array, ""]:
    """Softmax cross-entropy of logits ``output`` against one-hot (or soft) ``target``, summed over the batch."""
    return -jnp.sum(target * jax.nn.log_softmax(output, axis=-1))


LOSSES = {"mse": mse_loss, "ce": cross_entropy_loss}


def get_loss(name: str | Callable) -> Callable[[Array, Array], Array]:
    """The loss called ``name`` (``mse`` or ``ce``), or ``name`` itself when it is a callable."""
    if callable(name):
        return name
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise UnknownNameError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)} or pass a callable") from None
