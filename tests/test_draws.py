"""dynlearn.draws: bit for bit the numbers of jax.random, for every shape, dtype, key type and trace context."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynlearn import draws

SHAPES = [(), 3, (5, 4), (2, 33), (0, 3)]  # a scalar, an int shape, a matrix, one over a size class, empty
KEYS = {"raw": jax.random.PRNGKey(1), "typed": jax.random.key(2), "folded": jax.random.fold_in(jax.random.PRNGKey(5), 3)}


def _same(a, b):
    assert a.shape == b.shape and a.dtype == b.dtype
    assert np.array_equal(np.asarray(a, np.float64), np.asarray(b, np.float64))


@pytest.mark.parametrize("key, dtype", [(KEYS["raw"], jnp.float64), (KEYS["typed"], jnp.float32), (KEYS["folded"], None)], ids=list(KEYS))
def test_same_numbers_as_jax_random(key, dtype):
    for shape in SHAPES:
        _same(draws.normal(key, shape, dtype), jax.random.normal(key, shape, dtype))
        _same(draws.uniform(key, shape, dtype, -0.3, 2.0), jax.random.uniform(key, shape, dtype, -0.3, 2.0))
        _same(draws.uniform(key, shape, dtype), jax.random.uniform(key, shape, dtype))


def test_one_compiled_size_serves_many_shapes():
    """Shapes of one size class draw the same flat length: their numbers are prefixes of one another."""
    key = jax.random.PRNGKey(0)
    a, b = draws.normal(key, (3, 4)), draws.normal(key, (50,))
    np.testing.assert_array_equal(np.asarray(a).ravel(), np.asarray(b)[:12])
    assert draws._size_class(1) == draws._size_class(64) == 64 and draws._size_class(65) == 128


def test_inside_jit_and_under_vmap():
    key = jax.random.PRNGKey(3)
    _same(jax.jit(lambda k: draws.normal(k, (5, 3)))(key), jax.random.normal(key, (5, 3)))
    _same(jax.jit(lambda: draws.uniform(key, (5, 3), None, -1.0, 1.0))(), jax.random.uniform(key, (5, 3), None, -1.0, 1.0))
    keys = jax.random.split(key, 4)
    _same(jax.vmap(lambda k: draws.normal(k, (2, 3)))(keys), jax.vmap(lambda k: jax.random.normal(k, (2, 3)))(keys))
    lo = jnp.array([0.0, 1.0, 2.0])  # array bounds go to jax.random as given
    _same(draws.uniform(key, (3,), None, lo, lo + 1), jax.random.uniform(key, (3,), None, lo, lo + 1))


def test_other_generators_and_large_draws_are_passed_through():
    big = (2, (1 << 21) + 1)  # over the largest cut size
    _same(draws.uniform(KEYS["raw"], big), jax.random.uniform(KEYS["raw"], big))
    key = jax.random.key(4, impl="rbg")
    _same(draws.normal(key, (5, 4)), jax.random.normal(key, (5, 4)))
    with jax.threefry_partitionable(False):
        k = jax.random.PRNGKey(6)
        _same(draws.normal(k, (5, 4)), jax.random.normal(k, (5, 4)))
        _same(draws.uniform(k, (5, 4)), jax.random.uniform(k, (5, 4)))
