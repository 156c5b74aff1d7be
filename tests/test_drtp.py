"""DRTP: the library's update against the update written out with explicit matrices, in every layer."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dynlearn as dl
import dynlearn.analysis  # noqa: F401
from dynlearn.data import load_digits
from dynlearn.learning import train
from dynlearn.models import Data
from dynlearn.rules import get_learner


@pytest.fixture(scope="module")
def problem():
    net = dl.init_network((4, 6, 5, 3), key=jax.random.key(0), bias_scale=0.1, dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(1), (7, 4))
    y = jax.nn.one_hot(jnp.arange(7) % 3, 3, dtype=jnp.float64)
    return net, x, y


def explicit_drtp(net, bs, x, y):
    """δ_l = −(y B_l) ⊙ tanh'(a_l) for hidden layers, δ_L = ŷ − y (MSE); g_W = δᵀ h, g_b = Σ δ."""
    (w1, w2, w3), (b1, b2, b3) = net.weights, net.biases
    a1 = x @ w1.T + b1
    a2 = jnp.tanh(a1) @ w2.T + b2
    out = jnp.tanh(a2) @ w3.T + b3
    d1 = -(y @ bs[0]) * (1 - jnp.tanh(a1) ** 2)
    d2 = -(y @ bs[1]) * (1 - jnp.tanh(a2) ** 2)
    d3 = out - y
    hs = (x, jnp.tanh(a1), jnp.tanh(a2))
    return [d.T @ h for d, h in zip((d1, d2, d3), hs)], [d.sum(0) for d in (d1, d2, d3)]


def test_drtp_update_equals_explicit_formula_in_every_layer(problem):
    net, x, y = problem
    rule = get_learner("drtp").rule
    state = rule.init(jax.random.key(2), net)
    assert [b.shape for b in state] == [(3, 6), (3, 5)]
    grads, state2, metrics = rule.update(net, state, Data(x, y), jax.random.key(3))
    ws, bs = explicit_drtp(net, state, x, y)
    for l in range(3):
        np.testing.assert_allclose(grads.weights[l], ws[l], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(grads.biases[l], bs[l], rtol=1e-12, atol=1e-14)
    assert state2 is state and float(metrics["loss"]) > 0


def test_drtp_hidden_update_is_not_backprop_and_ignores_the_output(problem):
    """The must-fail direction: hidden updates do not depend on the network's output, unlike BP's."""
    net, x, y = problem
    rule = get_learner("drtp").rule
    state = rule.init(jax.random.key(2), net)
    g, _, _ = rule.update(net, state, Data(x, y), jax.random.key(3))
    bp = dl.analysis.bp_gradient(net, x, y)
    assert float(dl.analysis.cosine_similarity(g.weights[0], bp.weights[0])) < 0.99
    moved = net.with_matrices((*net.weights[:2], 3.0 * net.weights[2]), net.biases)
    g2, _, _ = rule.update(moved, state, Data(x, y), jax.random.key(3))
    np.testing.assert_allclose(g2.weights[0], g.weights[0], rtol=1e-12)
    assert not np.allclose(g2.weights[2], g.weights[2])


@pytest.mark.slow  # default run under 10 min on 2 cores; runs with -m slow
def test_drtp_learns_digits_and_runs_on_a_conv_net():
    _, hist = train(get_learner("drtp"), load_digits(), hidden=(64,), epochs=3, lr=1e-2, progress=False)
    assert float(hist.test_accuracy[-1]) > 0.6  # chance 0.1
    conv = dl.lenet5(key=jax.random.key(0), in_shape=(1, 16, 16), dtype=jnp.float64)
    rule = get_learner("drtp").rule
    state = rule.init(jax.random.key(1), conv)
    x, y = jnp.ones((2, 1, 16, 16)), jax.nn.one_hot(jnp.array([1, 4]), 10, dtype=jnp.float64)
    g, _, _ = eqx.filter_jit(rule.update)(conv, state, Data(x, y), jax.random.key(2))  # compiled: cheaper than op by op
    assert jax.tree.structure(g) == jax.tree.structure(eqx.filter(conv, eqx.is_inexact_array))
    assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(g))


def test_scanned_runs_of_equal_layers_give_the_unrolled_update(problem):
    """The ``lax.scan`` over equal hidden layers (depth-independent memory) changes nothing in the update. TPSGD runs
    the same loop with its own ``hidden_signal`` (tested against explicit matrices in test_forward_only.py)."""
    from dynlearn.rules.drtp import equal_runs

    net = dl.init_network((4, 6, 6, 6, 6, 3), key=jax.random.key(5), bias_scale=0.1, dtype=jnp.float64)
    assert equal_runs(net) == [(2, 5)]  # layers 2, 3, 4 (6 -> 6); layer 1 (4 -> 6) and the output are not stacked
    assert equal_runs(problem[0]) == []  # 4-6-5-3: no two equal hidden layers
    x = jax.random.normal(jax.random.key(6), (5, 4), jnp.float64)
    y = jax.nn.one_hot(jnp.arange(5) % 3, 3, dtype=jnp.float64)
    rule = get_learner("drtp").rule
    state = rule.init(jax.random.key(7), net)

    def both(n, s):
        return rule.update(n, s, Data(x, y), None)[0], rule.layerwise_update(n, s, Data(x, y), stack=False)[0]

    lowered = jax.jit(both).lower(net, state)
    assert lowered.as_text().count("while") >= 1  # the scanned path is a loop, the unrolled one is not
    scanned, unrolled = lowered.compile()(net, state)
    for g, u in zip(jax.tree.leaves(scanned), jax.tree.leaves(unrolled), strict=True):
        np.testing.assert_allclose(g, u, rtol=1e-12, atol=1e-14)
