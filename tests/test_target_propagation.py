"""DTP and FW-DTP: the library's update against explicit matrices, training, the checks and their must-fail twins."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dynlearn as dl
from dynlearn.data import load_digits
from dynlearn.errors import ConfigError
from dynlearn.learning import train
from dynlearn.models import Data
from dynlearn.rules import get_learner
from dynlearn.theorems import run_check
from dynlearn.theorems.target_propagation import (
    dtp_difference_correction,
    fwdtp_propagation_architecture,
)


@pytest.fixture(scope="module")
def problem():
    net = dl.init_network((4, 6, 5, 3), key=jax.random.key(0), bias_scale=0.1, dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(1), (7, 4), jnp.float64)
    y = jax.nn.one_hot(jnp.arange(7) % 3, 3, dtype=jnp.float64)
    return net, x, y


def explicit_dtp(params, x, y, step):
    """Rates, cross-entropy output target, difference-corrected targets through tanh(V h + c), local-loss gradients,
    and (σ = 0) the reconstruction gradients, all with explicit matrices."""
    (w1, w2, w3), (b1, b2, b3) = params.network.weights, params.network.biases
    (v2, c2), (v3, c3) = [(f.weight, f.bias) for f in params.feedback]
    h1 = np.tanh(x @ w1.T + b1)
    h2 = np.tanh(h1 @ w2.T + b2)
    h3 = h2 @ w3.T + b3
    p = np.exp(h3 - h3.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    t3 = h3 - step * (p - y)
    t2 = h2 + np.tanh(t3 @ v3.T + c3) - np.tanh(h3 @ v3.T + c3)
    t1 = h1 + np.tanh(t2 @ v2.T + c2) - np.tanh(h2 @ v2.T + c2)
    d1, d2, d3 = (h1 - t1) * (1 - h1**2), (h2 - t2) * (1 - h2**2), h3 - t3
    gw = [d.T @ h for d, h in zip((d1, d2, d3), (x, h1, h2))]
    gb = [d.sum(0) for d in (d1, d2, d3)]
    fb = []
    for v, c, below, above in ((v2, c2, h1, h2), (v3, c3, h2, h3)):
        g = np.tanh(above @ v.T + c)
        r = (g - below) * (1 - g**2)
        fb.append((r.T @ above, r.sum(0)))
    return gw, gb, fb


def test_dtp_update_equals_explicit_formula(problem):
    net, x, y = problem
    learner = get_learner("dtp", sigma=0.0, step=0.3)
    params = learner.init(jax.random.key(2), net)
    grads, _, metrics = eqx.filter_jit(learner.rule.update)(params, (), Data(x, y), jax.random.key(3))
    gw, gb, fb = explicit_dtp(params, np.asarray(x), np.asarray(y), 0.3)
    for l in range(3):
        np.testing.assert_allclose(grads.network.weights[l], gw[l], rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(grads.network.biases[l], gb[l], rtol=1e-11, atol=1e-13)
    for k in range(2):
        np.testing.assert_allclose(grads.feedback[k].weight, fb[k][0], rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(grads.feedback[k].bias, fb[k][1], rtol=1e-11, atol=1e-13)
    assert float(metrics["loss"]) > 0


def test_fwdtp_feedback_is_fixed_and_the_update_is_not_backprop(problem):
    net, x, y = problem
    learner = get_learner("fwdtp")
    params = learner.init(jax.random.key(2), net)
    grads, _, _ = eqx.filter_jit(learner.rule.update)(params, (), Data(x, y), jax.random.key(3))
    assert all(float(jnp.max(jnp.abs(a))) == 0.0 for a in jax.tree.leaves(grads.feedback))
    bp = dl.analysis.bp_gradient(net, x, y, loss="ce")
    assert float(dl.analysis.cosine_similarity(grads.network.weights[0], bp.weights[0])) < 0.99
    # the output layer's update is eta times backprop's there (its target is one gradient step)
    np.testing.assert_allclose(grads.network.weights[2], 0.5 * bp.weights[2], rtol=1e-10)


@pytest.mark.parametrize("name", ["fwdtp", pytest.param("dtp", marks=pytest.mark.slow)])
def test_target_propagation_learns_digits(name):
    learner = get_learner(name)
    _, hist = train(learner, load_digits(), hidden=(64,), epochs=2, lr=learner.defaults["lr"], progress=False)
    assert float(hist.test_accuracy[-1]) > 0.8  # chance 0.1


def test_bad_options():
    with pytest.raises(ConfigError, match="step"):
        get_learner("dtp", step=-1.0)
    with pytest.raises(ConfigError):
        get_learner("fwdtp", sigma=0.1)  # FW-DTP trains no inverse


@pytest.fixture(scope="module")
def correction():
    return run_check("dtp_difference_correction")


def test_difference_correction_check(correction):
    assert correction.passed, correction.verdict.summary()
    assert correction.verdict.measured["plain_tp_zero_step_error"] > 1e-3  # without the correction a target moves


def test_difference_correction_must_fail_without_the_correction():
    _, v = dtp_difference_correction(difference=False, inverse_noise=0.05)
    assert not v.passed and "zero_step_target_error" in v.failed


def test_difference_correction_must_fail_with_inexact_inverses():
    _, v = dtp_difference_correction(inverse_noise=0.05)
    assert v.failed == ("forward_consistency",)  # the correction still keeps tau = h at eta = 0


def test_propagation_architecture_check_and_its_twin():
    r = run_check("fwdtp_propagation_architecture")
    assert r.passed, r.verdict.summary()
    _, v = fwdtp_propagation_architecture(difference=False)
    assert not v.passed and "worst_slope" in v.failed


@pytest.mark.slow
def test_fwdtp_vs_dtp_check_runs():
    r = run_check("fwdtp_vs_dtp")
    assert r.passed, r.verdict.summary()
