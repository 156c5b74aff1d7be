"""A training epoch is one compiled call: compiled once per shape, a bad step stops training naming its step and is
not applied, and the progress bar advances per step."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dynlearn as dl
from dynlearn.data import load_digits
from dynlearn.learning import train
from dynlearn.rules import get_learner
from dynlearn.rules.base import Learner, Rule

TRACES = {"n": 0}


class CountingBP(Rule):
    """Backprop's gradient; counts its traces; from step ``bad_from`` on (rule state counts steps) the update is NaN."""

    bad_from: int = eqx.field(static=True, default=10**9)

    def init(self, key, params):
        return jnp.zeros((), jnp.int32)

    def update(self, params, rule_state, batch, key):
        TRACES["n"] += 1
        loss = lambda p: 0.5 * jnp.sum((p(batch.x) - batch.y) ** 2)  # noqa: E731
        value, grads = eqx.filter_value_and_grad(loss)(params)
        scale = jnp.where(rule_state >= self.bad_from, jnp.nan, 1.0)
        grads = jax.tree.map(lambda g: g * scale, grads)
        return grads, rule_state + 1, {"loss": value / batch.x.shape[0]}


@pytest.fixture(scope="module")
def small():
    d = load_digits()
    return dataclasses.replace(d, x_train=d.x_train[:160], y_train=d.y_train[:160], labels_train=d.labels_train[:160])


def test_an_epoch_compiles_once_per_shape_and_matches_backprop(small):
    learner = Learner("counting", CountingBP(), defaults={"activation": "tanh"})
    TRACES["n"] = 0
    p1, h1 = train(learner, small, hidden=(8,), epochs=3, batch_size=32, lr=1e-2, progress=False)
    after_first = TRACES["n"]
    train(learner, small, hidden=(8,), epochs=2, batch_size=32, lr=1e-2, seed=1, progress=False)
    assert after_first > 0 and TRACES["n"] == after_first, "a second run of the same shapes recompiled the epoch"
    bp, hb = train(get_learner("bp"), small, hidden=(8,), epochs=3, batch_size=32, lr=1e-2, progress=False)
    for a, b in zip(jax.tree.leaves(eqx.filter(p1, eqx.is_array)), jax.tree.leaves(eqx.filter(bp, eqx.is_array)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)  # float32 parameters: round-off of two gradient formulas
    np.testing.assert_allclose(h1.train_loss.values, hb.train_loss.values, rtol=1e-4)


class ScaledBP(CountingBP):
    """CountingBP with its gradient scaled by an array field: a rule that cannot be hashed."""

    scale: object = 1.0

    def update(self, params, rule_state, batch, key):
        grads, rule_state, metrics = super().update(params, rule_state, batch, key)
        return jax.tree.map(lambda g: g * self.scale, grads), rule_state, metrics


@pytest.mark.parametrize("scale, reused", [(jnp.asarray(1.0, jnp.float32), True), (np.asarray(1.0, np.float32), False)], ids=["jax-array", "numpy-array"])
def test_a_rule_holding_arrays_compiles_once_when_it_is_the_same_immutable_rule(small, scale, reused):
    """A rule with a JAX array (PAL's constants) is reused by identity; one with a NumPy array (mutable) never."""
    learner = Learner("scaled", ScaledBP(scale=scale), defaults={"activation": "tanh"})
    TRACES["n"] = 0
    train(learner, small, hidden=(8,), epochs=1, batch_size=32, lr=1e-2, progress=False)
    after_first = TRACES["n"]
    train(learner, small, hidden=(8,), epochs=1, batch_size=32, lr=1e-2, seed=1, progress=False)
    assert after_first > 0 and (TRACES["n"] == after_first) is reused
    other = Learner("scaled", ScaledBP(scale=jnp.asarray(2.0, jnp.float32)), defaults={"activation": "tanh"})
    train(other, small, hidden=(8,), epochs=1, batch_size=32, lr=1e-2, progress=False)
    assert TRACES["n"] > after_first * (1 if reused else 2), "another rule object reused a compiled epoch"


def test_a_bad_step_stops_training_naming_epoch_and_step(small):
    learner = Learner("counting", CountingBP(bad_from=7), defaults={"activation": "tanh"})
    with pytest.raises(dl.DivergedError, match=r"non-finite update at epoch 2, step 3"):  # 5 steps per epoch: step 8
        train(learner, small, hidden=(8,), epochs=3, batch_size=32, lr=1e-2, progress=False)


def test_the_state_returned_after_a_bad_step_is_the_one_before_it(small):
    """The scan carries the state on unconditionally; the segment recomputes the state before the first bad step."""
    import optax

    from dynlearn.compiled_epoch import make_epoch
    from dynlearn.learning import init_params

    learner = Learner("counting", CountingBP(bad_from=3), defaults={"activation": "tanh"})
    opt = optax.sgd(1e-2)
    params = init_params(learner, jax.random.key(0), (64, 8, 10))
    state = (params, learner.rule.init(None, params), opt.init(eqx.filter(params, eqx.is_inexact_array)))
    x, y, key = jnp.asarray(small.x_train), jnp.asarray(small.y_train), jax.random.key(1)
    order = jnp.arange(160).reshape(5, 32)
    run = make_epoch(learner, opt)
    *after, _, bad = run(*state, x, y, order, jnp.arange(10, 15, dtype=jnp.int32), key)
    assert int(bad["index"]) == 13 and not bool(bad["finite"])  # the fourth step, global number 13
    *three, _, good = run(*state, x, y, order[:3], jnp.arange(10, 13, dtype=jnp.int32), key)
    assert int(good["index"]) == -1 and int(after[1]) == 3
    for a, b in zip(jax.tree.leaves(eqx.filter(after, eqx.is_array)), jax.tree.leaves(eqx.filter(three, eqx.is_array)), strict=True):
        np.testing.assert_array_equal(a, b)
    *same, _, bad = run(*three, x, y, order, jnp.arange(13, 18, dtype=jnp.int32), key)  # its first step is bad
    assert int(bad["index"]) == 13
    for a, b in zip(jax.tree.leaves(eqx.filter(same, eqx.is_array)), jax.tree.leaves(eqx.filter(three, eqx.is_array)), strict=True):
        np.testing.assert_array_equal(a, b)


def test_progress_bar_counts_every_step(small, capsys):
    train(get_learner("bp"), small, hidden=(8,), epochs=2, batch_size=32, lr=1e-2, progress=True)
    err = capsys.readouterr().err
    assert "10/10" in err


def test_a_network_with_max_pooling_trains_in_the_compiled_epoch():
    """Layers with non-array fields (max pooling keeps a callable) stay outside the scan's carry."""
    from dynlearn.data import Dataset, one_hot
    from dynlearn.learning import train
    from dynlearn.networks import lenet5
    from dynlearn.rules import get_learner

    x = np.random.default_rng(0).random((32, 1, 16, 16)).astype(np.float32)
    labels = np.arange(32) % 10
    data = Dataset("tiny images", x, one_hot(labels, 10), x, one_hot(labels, 10), labels, labels)
    net = lenet5(key=jax.random.key(0), in_shape=(1, 16, 16), pool="max")
    _, hist = train(get_learner("bp"), data, network=net, epochs=1, batch_size=32, progress=False)
    assert np.isfinite(float(hist.test_accuracy[-1])) and np.isfinite(float(hist.train_loss[-1]))
