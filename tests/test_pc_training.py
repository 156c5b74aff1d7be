"""Predictive-coding learners: a training step on a convolutional network, and PC against backprop on digits (slow)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynlearn.config import TRAINING
from dynlearn.data import load_digits
from dynlearn.learning import train
from dynlearn.models import Data
from dynlearn.networks import Network
from dynlearn.rules import get_learner
from dynlearn.rules.pc import ClampedPC, NudgedPC


def test_learners_and_their_relax_settings():
    pc, clamped = get_learner("pc"), get_learner("pc/clamped")
    assert isinstance(pc.rule, NudgedPC) and pc.rule.nudge == 0.1 and pc.rule.config == TRAINING
    assert isinstance(clamped.rule, ClampedPC) and get_learner("pc", output="clamped").rule == clamped.rule
    fixed = get_learner("pc", solver="euler", dt0=0.2, t1=1.0, steady=False)
    assert fixed.rule.config == TRAINING.replace(solver="euler", dt0=0.2, t1=1.0, steady=False, throw=False)
    with pytest.raises(ValueError, match="output"):
        get_learner("pc", output="free")


def _tiny_conv_net():
    """conv 3x3 (1 -> 2 channels, 6x6 images) then [flatten, linear 32 -> 3]: a two-layer Network of equinox layers."""
    k1, k2 = jax.random.split(jax.random.key(0))
    conv = eqx.nn.Conv2d(1, 2, 3, key=k1, dtype=jnp.float64)
    head = eqx.nn.Sequential([eqx.nn.Lambda(jnp.ravel), eqx.nn.Linear(2 * 4 * 4, 3, key=k2, dtype=jnp.float64)])
    return Network((conv, head), "gelu", in_shape=(1, 6, 6))


@pytest.mark.parametrize("name", ["pc", "pc/clamped"])
def test_pc_step_on_a_conv_network(name):
    """One update of each PC rule on a conv network: a steady state, descent-sign grads with the network's structure
    (the conv kernel included) that lower the loss for a small step. (float64: the tests run with x64 on, and diffrax
    then promotes a float32 state to float64, which a float32 convolution refuses.)"""
    net = _tiny_conv_net()
    x = jax.random.normal(jax.random.key(1), (4, 1, 6, 6))
    y = jax.nn.one_hot(jnp.arange(4) % 3, 3)
    rule = get_learner(name).rule
    grads, _, metrics = eqx.filter_jit(rule.update)(net, (), Data(x, y), jax.random.key(2))
    assert float(metrics["residual"]) <= rule.config.tol and float(metrics["inference_steps"]) >= 1
    params = eqx.filter(net, eqx.is_inexact_array)
    assert jax.tree.structure(eqx.filter(grads, eqx.is_inexact_array)) == jax.tree.structure(params)
    assert grads.layers[0].weight.shape == net.layers[0].weight.shape
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    loss = lambda n: float(jnp.sum((n(x) - y) ** 2))
    scale = 1e-3 / max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads))
    stepped = eqx.apply_updates(net, jax.tree.map(lambda g: -scale * g, eqx.filter(grads, eqx.is_inexact_array)))
    assert loss(stepped) < loss(net)


@pytest.mark.slow
def test_pc_within_one_point_of_bp_on_digits():
    """64-128-128-10, GELU, Adam 3e-3, batch 64, 30 epochs, seeds 0-2: PC's test accuracy (mean over the
    last 5 epochs and the seeds, to average out epoch-to-epoch noise of ±0.5 points on 360 test images) is
    within 1 point of BP's on the same network, data order and optimiser."""
    data = load_digits()
    pc = get_learner("pc")
    bp = get_learner("bp", activation=pc.defaults["activation"])
    acc = {"pc": [], "bp": []}
    for seed in (0, 1, 2):
        for name, learner in (("pc", pc), ("bp", bp)):
            _, hist = train(learner, data, hidden=(128, 128), epochs=30, batch_size=64, lr=3e-3, seed=seed, progress=False)
            acc[name].append(float(np.mean(hist.test_accuracy.values[-5:])))
    print(acc)
    assert np.mean(acc["bp"]) > 0.95
    assert np.mean(acc["pc"]) >= np.mean(acc["bp"]) - 0.01


def test_nonsmooth_activation_defaults_to_the_fixed_budget_and_options_override():
    """ReLU's flow has no classical steady state at a kink: the default inference is T = 20 Euler steps, unless the
    caller asks for a relaxation; a smooth activation keeps the steady-state default; a bad init scheme is named."""
    from dynlearn.errors import ConfigError
    from dynlearn.rules import get_learner
    from dynlearn.rules.pc import FIXED_BUDGET

    relu = get_learner("pc", activation="relu").rule.config
    assert relu == FIXED_BUDGET and not relu.steady and relu.t1 / relu.dt0 == pytest.approx(20)
    assert get_learner("pc/clamped", activation="relu").rule.config == FIXED_BUDGET
    assert get_learner("pc", activation="relu", tol=1e-3).rule.config.steady
    assert get_learner("pc").rule.config.steady
    with pytest.raises(ConfigError, match="init"):
        get_learner("pc", init="glorot")
