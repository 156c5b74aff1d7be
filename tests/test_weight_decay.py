"""Decoupled weight decay (`train(weight_decay=...)`, `dynlearn train --weight-decay`): the step equals the written-out
AdamW rule, Kolen-Pollack aligns B with it, bad values are named, and the CLI records and resumes it."""

import dataclasses
import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from typer.testing import CliRunner

import dynlearn as dl
from dynlearn.cli import app
from dynlearn.data import load_digits
from dynlearn.learning import train
from dynlearn.rules import get_learner
from dynlearn.rules.feedback import with_weight_decay

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny():
    d = load_digits()
    return dataclasses.replace(d, x_train=d.x_train[:256], y_train=d.y_train[:256], labels_train=d.labels_train[:256])


def test_step_is_adam_plus_the_decay_on_weights_only():
    """One step: Δθ = adam(g) - lr λ θ on every weight array (W and B), Δb = adam(g) on biases (written out)."""
    learner = get_learner("kp", decay=0.0)
    params = learner.init(jax.random.key(0), dl.init_network((4, 5, 3), key=jax.random.key(1)))
    grads = jax.tree.map(lambda a: jnp.full_like(a, 0.3) if eqx.is_inexact_array(a) else a, params)
    lr, lam = 1e-2, 0.5
    ours = with_weight_decay(optax.adam(lr), lr, lam)
    plain = optax.adam(lr)
    u, _ = ours.update(grads, ours.init(params), params)
    v, _ = plain.update(grads, plain.init(params), params)
    flat_u = jax.tree_util.tree_flatten_with_path(u)[0]
    flat_v, flat_p = jax.tree.leaves(v), jax.tree.leaves(params)
    n_weights = 0
    for (path, a), b, p in zip(flat_u, flat_v, flat_p):
        is_weight = getattr(path[-1], "name", None) == "weight"
        n_weights += is_weight
        np.testing.assert_allclose(a, b - lr * lam * p if is_weight else b, rtol=1e-6, atol=1e-9)
    assert n_weights == 3  # W1, W2 and the feedback matrix B2


def test_kolen_pollack_aligns_only_with_the_decay(tiny):
    """KP with its decay outside Adam pulls B toward W (Kolen & Pollack 1994); without any decay it does not.
    Both W and B shrink by (1 - lr λ) = 0.95 per step and get the same update, so W - B shrinks by that factor while
    the gradients regrow W: in 48 steps B turns from its random start (82°) about 30° toward Wᵀ."""
    from dynlearn.analysis import feedback_report

    angles = {}
    for lam in (0.0, 1.0):  # off, on
        learner = get_learner("kp", decay=0.0)
        params, _ = train(learner, tiny, hidden=(16,), epochs=6, batch_size=32, lr=1e-2, weight_decay=5.0 * lam, progress=False)
        angles[lam] = float(feedback_report(learner, params, jnp.asarray(tiny.x_train[:64]), jnp.asarray(tiny.y_train[:64])).angle_B.mean())
    assert angles[0.0] > 75 and angles[1.0] < angles[0.0] - 20, angles


def test_bad_weight_decay_is_named(tiny):
    for bad in (-1.0, float("nan"), "x"):
        with pytest.raises(dl.ConfigError, match="weight_decay"):
            train(get_learner("bp"), tiny, hidden=(4,), epochs=1, weight_decay=bad, progress=False)
    with pytest.raises(dl.ConfigError, match="weight_decay needs the learning rate"):
        train(get_learner("bp"), tiny, hidden=(4,), epochs=1, optimizer=optax.sgd(0.1), lr=None, weight_decay=0.1, progress=False)


def test_cli_records_weight_decay_and_resumes_with_it(tmp_path):
    args = ["train", "--rule", "kp", "--set", "decay=0", "--weight-decay", "1", "--epochs", "1", "--hidden", "8",
            "--no-compare-bp", "--no-progress", "--out", str(tmp_path), "--name", "kp"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    config = json.loads((tmp_path / "kp" / "config.json").read_text())
    assert config["weight_decay"] == 1.0 and config["metadata"]["cli"]["weight_decay"] == 1.0
    r = runner.invoke(app, ["train", "--resume", str(tmp_path / "kp"), "--epochs", "2", "--no-progress"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["train", "--rule", "kp", "--weight-decay", "-1", "--out", str(tmp_path), "--no-progress"])
    assert r.exit_code == 2 and "weight-decay" in r.output
