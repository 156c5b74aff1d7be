"""e-prop's adaptive feedback and the store-and-recall task: the adaptive update against the symmetric one and
BPTT's readout gradient, the task generator decoded from its own spikes, the ``eprop_recall`` check and its
must-fail twin (the adaptation eligibility dropped)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dynlearn as dl
from dynlearn.errors import ConfigError
from dynlearn.experiments.temporal_tasks import (
    POPULATIONS,
    learning_curves,
    store_recall,
    store_recall_length,
    variant_params,
)
from dynlearn.models import Data
from dynlearn.models.spiking.eprop import (
    AdaptiveParams,
    EProp,
    adaptive_feedback_grads,
    eprop_gradient,
    feedback_angle,
)
from dynlearn.models.spiking.recurrent import bptt_gradient
from dynlearn.rules import get_learner
from dynlearn.theorems import run_check
from dynlearn.theorems.eprop_tasks import TASK, eprop_recall

OPTS = {"neuron": "alif", "n_steps": 12, "recurrent": True, "tau_adapt": 30.0, "beta_adapt": 5.0, "loss": "mse"}


@pytest.fixture(scope="module")
def tiny():
    """Adaptive and symmetric e-prop learners on a recurrent ALIF 5-7-3 network, a spike sequence and a target."""
    adaptive = get_learner("snn/eprop", feedback="adaptive", feedback_decay=0.3, **OPTS)
    symmetric = get_learner("snn/eprop", feedback="symmetric", **OPTS)
    params = adaptive.init(jax.random.key(0), dl.init_network((5, 7, 3), key=jax.random.key(1), dtype=jnp.float64, bias_scale=0.3))
    x = (jax.random.uniform(jax.random.key(2), (12, 4, 5)) < 0.4).astype(jnp.float64)
    y = jax.random.normal(jax.random.key(3), (12, 4, 3), jnp.float64)
    return adaptive, symmetric, params, x, y


def test_adaptive_update_equals_symmetric_when_B_is_the_readout(tiny):
    adaptive, symmetric, params, x, y = tiny
    rs = adaptive.rule.init(jax.random.key(4), params)
    tied = AdaptiveParams(params.net, params.net.weights[-1])
    g, _, m = adaptive.rule.update(tied, rs, Data(x, y), jax.random.key(5))
    gs, _, _ = symmetric.rule.update(params.net, rs, Data(x, y), jax.random.key(5))
    for a, b in zip(jax.tree.leaves((g.net.weights[0], g.net.biases, g.net.recurrent)), jax.tree.leaves((gs.weights[0], gs.biases, gs.recurrent))):
        np.testing.assert_array_equal(a, b)  # the hidden layer: the same learning signal, bit for bit
    assert float(jnp.abs(gs.weights[0]).max()) > 1e-4 and float(m["feedback_angle"]) == 0.0
    # readout and B: the exact readout gradient (BPTT's, an independent code path) plus the weight decay 0.3
    gb, _, _ = bptt_gradient(params.net, adaptive.rule.cfg, x, y, jax.random.key(5))
    np.testing.assert_allclose(g.net.weights[-1], gb.weights[-1] + 0.3 * params.net.weights[-1], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g.feedback, gb.weights[-1] + 0.3 * tied.feedback, rtol=1e-10, atol=1e-12)


def test_adaptive_B_enters_the_learning_signal_and_gets_the_readouts_update(tiny):
    adaptive, _, params, x, y = tiny
    rs = adaptive.rule.init(jax.random.key(4), params)
    g, _, m = adaptive.rule.update(params, rs, Data(x, y), jax.random.key(5))
    ge, _, _ = eprop_gradient(params.net, adaptive.rule.cfg, x, y, jax.random.key(5), (params.feedback,))  # L = B δ
    np.testing.assert_array_equal(g.net.weights[0], ge.weights[0])
    np.testing.assert_allclose(g.feedback - 0.3 * params.feedback, g.net.weights[-1] - 0.3 * params.net.weights[-1], rtol=1e-12, atol=1e-14)
    b, w = np.ravel(params.feedback), np.ravel(params.net.weights[-1])
    np.testing.assert_allclose(float(m["feedback_angle"]), np.degrees(np.arccos(b @ w / np.linalg.norm(b) / np.linalg.norm(w))), rtol=1e-10)
    wrong = adaptive_feedback_grads(params.net, params.feedback, ge, -0.3)  # a sign-flipped decay is a different update
    assert float(jnp.abs(wrong.feedback - g.feedback).max()) > 1e-3


def test_symmetric_variant_ties_B_and_random_freezes_it(tiny):
    _, _, params, _, _ = tiny
    tied, plastic = variant_params(params, "symmetric")
    assert plastic == 1.0 and float(feedback_angle(tied)) == 0.0
    assert variant_params(params, "random")[1] == 0.0 and variant_params(params, "adaptive")[0] is params
    with pytest.raises(ValueError, match="variant"):
        variant_params(params, "mirror")


def test_store_recall_trials_decode_from_their_own_spikes():
    """With rate_on = 1 and rate_off = 0 the spikes are deterministic: the stored window is where the store
    population fires, its bit the value population firing there, and the target that bit."""
    cue, delay, n_values, n_per = 3, 7, 4, 2
    x, y = store_recall(np.random.default_rng(0), 64, cue=cue, delay=delay, n_values=n_values, n_per=n_per, rate_on=1.0, rate_off=0.0)
    T = store_recall_length(cue=cue, delay=delay, n_values=n_values)
    assert x.shape == (T, 64, 4 * n_per) and y.shape == (64, 2) and T == n_values * cue + delay + cue
    pops = x.reshape(T, 64, len(POPULATIONS), n_per)
    assert np.all(pops == pops[..., :1])  # a population fires together
    store, recall = pops[:, :, 2, 0], pops[:, :, 3, 0]
    np.testing.assert_array_equal(recall, np.broadcast_to((np.arange(T) >= T - cue)[:, None], (T, 64)))
    assert np.all(store.sum(0) == cue) and not np.any(pops[n_values * cue:T - cue])  # one stored window, a silent delay
    first = np.argmax(store, 0)
    bit = pops[first, np.arange(64), 1, 0]
    assert np.all(pops[first, np.arange(64), 0, 0] + bit == 1)  # exactly one value population per window
    np.testing.assert_array_equal(np.argmax(y, 1), bit)
    assert 0.2 < y[:, 1].mean() < 0.8 and len(set(first)) == n_values


class NoAdaptationTrace(EProp):
    """A broken e-prop: the eligibility vector without its threshold-adaptation component ε^a."""

    def update(self, params, rule_state, batch, key):
        fb = list(rule_state)
        fb[-1] = params.feedback
        grads, loss, _ = eprop_gradient(params.net, self.cfg, batch.x, batch.y, key, tuple(fb), components=("v",))
        metrics = {"loss": loss / batch.x.shape[-2], "feedback_angle": feedback_angle(params)}
        return adaptive_feedback_grads(params.net, params.feedback, grads, self.feedback_decay), rule_state, metrics


def test_eprop_recall_passes_and_without_the_adaptation_eligibility_fails():
    r = run_check("eprop_recall", quick=True)
    assert r.passed, r.verdict.summary()
    ds = r.data
    assert float(ds.recall_accuracy.sel(rule="symmetric").isel(evaluation=-1).min()) > 0.9
    assert float(np.nanmax(ds.feedback_angle.sel(rule="symmetric"))) < 1e-4  # the tied B stays W_out (arccos round-off ~1e-6 degrees)
    angle = ds.feedback_angle.sel(rule="adaptive").values
    assert angle[:, -1].max() < angle[:, 0].min() - 10.0  # the adaptive B turns towards W_out^T (measured 92° -> 70°)
    learner = get_learner("snn/eprop", feedback="adaptive", neuron="alif", n_steps=store_recall_length(cue=TASK["cue"], delay=50), n_loss=TASK["cue"],
                          recurrent=True, **{k: v for k, v in TASK.items() if k != "cue"})
    broken = dataclasses.replace(learner, rule=NoAdaptationTrace(learner.rule.cfg, "adaptive", learner.rule.feedback_decay))
    _, bad = eprop_recall(variants=("symmetric",), iterations=40, eval_every=20, eprop_learner=broken)
    assert not bad.passed and bad.measured["min_recall_accuracy"] < 0.7  # chance 0.5; the intact rule reaches > 0.9


def test_learning_curves_and_factory_reject_bad_options():
    with pytest.raises(ValueError, match="eval_every"):
        learning_curves(iterations=10, eval_every=3)
    with pytest.raises(ConfigError, match="feedback_decay"):
        get_learner("snn/eprop", feedback="adaptive", feedback_decay=-1.0)
    with pytest.raises(ConfigError, match="feedback"):
        get_learner("snn/eprop", feedback="kolen")


@pytest.mark.slow
def test_adaptive_eprop_trains_on_digits_through_train():
    _, hist = dl.learning.train(get_learner("snn/eprop", feedback="adaptive"), dl.data.load("digits"), hidden=(64,), epochs=3, lr=3e-3, progress=False)
    angle, loss = hist.train_feedback_angle.values, hist.train_loss.values
    assert angle[-1] < angle[0] and loss[-1] < 0.8 * loss[0]  # B turns towards W_out^T; the loss falls
