r"""Gaussian and uniform draws, the same numbers as :func:`jax.random.normal` and :func:`jax.random.uniform`, from a few
compiled sizes.

Outside ``jit`` every new ``(shape, dtype)`` of a ``jax.random`` draw is a new XLA compilation (0.2–0.4 s on one CPU
core for a 5×4 matrix), and initialising networks of many widths spends most of its time compiling random-number
kernels. With JAX's partitionable threefry (``jax_threefry_partitionable``, the default), element ``i`` of a flat draw
is threefry applied to the counter ``i``, and the element-wise Gaussian or uniform transform follows, so a draw of
``shape`` equals the first ``prod(shape)`` elements of a longer flat draw with the same key, reshaped. :func:`normal`
and :func:`uniform` draw a flat array of the next power of two (at least 64) and cut it: the values are bit for bit
those of ``jax.random``, and a process compiles one kernel per size class instead of one per shape.

For more than 2²² elements, a traced key or bound, a non-threefry key, array-valued bounds, or with the partitionable
mode switched off, they call ``jax.random`` directly.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

_SMALLEST = 64
_LARGEST = 1 << 22  # larger draws go to jax.random as they are: a cut would cost up to twice the memory


def _size_class(n: int) -> int:
    """The flat length drawn for ``n`` elements: the next power of two, at least ``_SMALLEST``."""
    return max(_SMALLEST, 1 << (n - 1).bit_length())


def _cuttable(key, *bounds) -> bool:
    """True when a longer flat draw, cut, gives ``jax.random``'s numbers: concrete threefry keys and scalar bounds."""
    if not jax.config.jax_threefry_partitionable:
        return False
    if any(isinstance(a, jax.core.Tracer) for a in (key, *bounds)):
        return False
    if any(np.ndim(b) != 0 for b in bounds):
        return False
    try:
        impl = str(jax.random.key_impl(key))
    except (TypeError, ValueError):
        return False
    return impl == "threefry2x32" and np.shape(key) in ((), (2,))


def _shape(shape) -> tuple[int, ...]:
    return (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)


def _draw(fn, key, shape, *args) -> Array:
    """``fn(key, shape, *args)`` (a ``jax.random`` sampler) as the first ``prod(shape)`` elements of a draw of the
    shape's size class, cut on the host. Inside ``jit`` (a concrete key whose draw comes back traced) it draws
    ``shape`` itself, so a compiled program draws no extra numbers; the unused flat draw is dead code there."""
    shape = _shape(shape)
    n = math.prod(shape)
    if not 0 < n <= _LARGEST or not _cuttable(key, *args[1:]):
        return fn(key, shape, *args)
    flat = fn(key, (_size_class(n),), *args)
    if isinstance(flat, jax.core.Tracer):
        return fn(key, shape, *args)
    return jnp.asarray(np.asarray(flat)[:n].reshape(shape))


def normal(key: PRNGKeyArray, shape=(), dtype=None) -> Array:
    """:func:`jax.random.normal` ``(key, shape, dtype)``, the same values, compiled once per size class."""
    return _draw(jax.random.normal, key, shape, dtype)


def uniform(key: PRNGKeyArray, shape=(), dtype=None, minval=0.0, maxval=1.0) -> Array:
    """:func:`jax.random.uniform` ``(key, shape, dtype, minval, maxval)``, the same values, compiled once per size
    class (scalar bounds; array bounds go to ``jax.random`` as given)."""
    return _draw(jax.random.uniform, key, shape, dtype, minval, maxval)
