"""PEPITA, TPSGD and LLS: updates against explicit formulas, the forward-only checks, and their must-fail twins."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dynlearn as dl
from dynlearn.analysis import costs
from dynlearn.models import Data
from dynlearn.rules import get_learner
from dynlearn.rules.lls import LocalParams, periodic_basis
from dynlearn.rules.pepita import Pepita, effective_feedback, pepita_learner
from dynlearn.rules.tpsgd import TargetProjectionSGD
from dynlearn.theorems import get_check, run_check


@pytest.fixture(scope="module")
def problem():
    net = dl.init_network((4, 6, 5, 3), key=jax.random.key(0), bias_scale=0.1, dtype=jnp.float64)
    x = jax.random.uniform(jax.random.key(1), (7, 4), jnp.float64)
    y = jax.nn.one_hot(jnp.arange(7) % 3, 3, dtype=jnp.float64)
    return net, x, y


def _forward(net, x):
    (w1, w2, w3), (b1, b2, b3) = net.weights, net.biases
    h1 = np.tanh(x @ w1.T + b1)
    h2 = np.tanh(h1 @ w2.T + b2)
    return h1, h2, h2 @ w3.T + b3


def _softmax(o):
    z = np.exp(o - o.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def test_pepita_update_equals_explicit_two_pass_formula(problem):
    net, x, y = problem
    rule = get_learner("pepita").rule
    ft = rule.init(jax.random.key(2), net)  # F^T, (n_L, n_0)
    assert ft.shape == (3, 4) and float(jnp.abs(ft).max()) <= 0.05 * np.sqrt(6 / 4)
    g, _, _ = eqx.filter_jit(rule.update)(net, ft, Data(x, y), jax.random.key(3))
    h1, h2, out = _forward(net, np.asarray(x))
    e = _softmax(out) - np.asarray(y)  # cross-entropy error
    xm = np.asarray(x) + e @ np.asarray(ft)
    m1, m2, _ = _forward(net, xm)
    want = [(h1 - m1).T @ xm, (h2 - m2).T @ m1, e.T @ m2]
    for l in range(3):
        np.testing.assert_allclose(g.weights[l], want[l], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(g.biases[0], (h1 - m1).sum(0), rtol=1e-10, atol=1e-14)


def test_tpsgd_update_equals_explicit_local_losses(problem):
    net, x, y = problem
    for norm in ("l2", "l1"):
        rule = get_learner("tpsgd", norm=norm).rule
        ps = rule.init(jax.random.key(2), net)
        g, _, _ = eqx.filter_jit(rule.update)(net, ps, Data(x, y), jax.random.key(3))
        h1, h2, out = _forward(net, np.asarray(x))
        gap1, gap2 = h1 - np.asarray(y) @ np.asarray(ps[0]), h2 - np.asarray(y) @ np.asarray(ps[1])
        if norm == "l1":
            gap1, gap2 = np.sign(gap1), np.sign(gap2)
        d1, d2, d3 = gap1 * (1 - h1**2), gap2 * (1 - h2**2), out - np.asarray(y)
        for l, (d, h) in enumerate(zip((d1, d2, d3), (np.asarray(x), h1, h2))):
            np.testing.assert_allclose(g.weights[l], d.T @ h, rtol=1e-10, atol=1e-14)
    with pytest.raises(dl.ConfigError, match="norm"):
        get_learner("tpsgd", norm="l3")


def test_lls_update_equals_local_cross_entropy_by_hand(problem):
    net, x, y = problem
    for name in ("lls", "lls/m", "lls/mxm"):
        learner = get_learner(name)
        params = learner.init(jax.random.key(4), net)
        g, _, m = eqx.filter_jit(learner.rule.update)(params, (), Data(x, y), jax.random.key(3))
        h1, h2, out = _forward(net, np.asarray(x))
        mods = [np.asarray(v) for v in params.modulation]
        ds = []
        for l, h in enumerate((h1, h2)):
            n = h.shape[1]
            b = np.cos(np.pi * np.arange(1, 4)[:, None] * (np.arange(n)[None] + 0.5) / n)
            r = np.linalg.norm(h, axis=1, keepdims=True)
            z = h / r
            o = z @ b.T
            if name == "lls/m":
                o = o * mods[l]
            elif name == "lls/mxm":
                o = o @ mods[l]
            do = _softmax(o) - np.asarray(y)
            dz = (do * mods[l]) @ b if name == "lls/m" else (do @ mods[l].T) @ b if name == "lls/mxm" else do @ b
            dh = (dz - z * np.sum(dz * z, axis=1, keepdims=True)) / r  # through h / |h|
            ds.append(dh * (1 - h**2))
            if name == "lls/m":
                np.testing.assert_allclose(g.modulation[l], np.sum(do * (z @ b.T), 0), rtol=1e-9, atol=1e-12)
        ds.append(_softmax(out) - np.asarray(y))
        for l, (d, h) in enumerate(zip(ds, (np.asarray(x), h1, h2))):
            np.testing.assert_allclose(g.network.weights[l], d.T @ h, rtol=1e-8, atol=1e-12)
        assert float(m["local_loss"]) > 0
    b = np.asarray(periodic_basis(5, 40, dtype=jnp.float64))
    np.testing.assert_allclose(b @ b.T, 20 * np.eye(5), atol=1e-10)  # DCT-II rows: orthogonal, norm^2 = n/2


@pytest.mark.parametrize("name", ["lls/mxm"])  # tpsgd trains in tpsgd_accuracy, pepita in pepita_as_fa
def test_forward_only_learners_learn_digits(name):
    _, hist = dl.learning.train(get_learner(name), dl.data.load("digits"), hidden=(32,), epochs=3, lr=1e-2, progress=False)
    assert float(hist.test_accuracy[-1]) > 0.6  # chance 0.1


# ----------------------------------------------------------------------------- pepita_as_fa


@pytest.fixture(scope="module")
def pepita_check():
    return run_check("pepita_as_fa", quick=True)


def test_pepita_as_fa_passes(pepita_check):
    assert pepita_check.passed, pepita_check.verdict.summary()
    ds = pepita_check.data
    assert ds.one_minus_cos.sel(modulation=ds.modulation.max()).min() > ds.one_minus_cos.sel(modulation=ds.modulation.min()).max()


def _twin_args():
    return {k: v for k, v in get_check("pepita_as_fa").quick.items()} | {"steps": 0, "seeds": (0,)}


def test_pepita_as_fa_fails_with_reversed_modulation_sign():
    def flipped(**kw):
        learner = pepita_learner(**kw)
        return dataclasses.replace(learner, rule=Pepita(learner.rule.loss, learner.rule.modulation, sign=-1.0))

    _, verdict = get_check("pepita_as_fa").fn(**_twin_args(), learner_factory=flipped)
    assert not verdict.passed and "one_minus_cos_at_smallest" in verdict.failed
    assert verdict.measured["one_minus_cos_at_smallest"] > 1.0  # cos -> -1


def test_pepita_as_fa_fails_without_the_W1_factor():
    """Srinivasan et al.'s feedback is -(W_1 F)^T; a fixed random feedback (non-adaptive FA) is not PEPITA's limit."""
    def fixed(net, ft):  # a fixed random feedback: does not follow W_1
        return jax.random.normal(jax.random.key(9), (net.sizes[-1], net.sizes[1]), ft.dtype)

    _, verdict = get_check("pepita_as_fa").fn(**_twin_args(), feedback_fn=fixed)
    assert not verdict.passed and "one_minus_cos_at_smallest" in verdict.failed
    _, ok = get_check("pepita_as_fa").fn(**_twin_args(), feedback_fn=effective_feedback)
    assert ok.passed


# ----------------------------------------------------------------------------- drtp_memory


class BackpropagatedTPSGD(TargetProjectionSGD):
    """Broken TPSGD: the local losses' gradients flow down through every layer (a backward pass)."""

    def update(self, params, rule_state, batch, key):
        def total(net):
            acts = net.forward(batch.x)
            local = sum(0.5 * jnp.sum((net.phi(a) - batch.y @ p) ** 2) for a, p in zip(acts[1:-1], rule_state))
            return local + self.loss(acts[-1], batch.y)

        return eqx.filter_grad(total)(params), rule_state, {"loss": jnp.zeros(())}


@pytest.fixture(scope="module")
def memory_check():
    return run_check("drtp_memory", quick=True)


def test_drtp_memory_passes(memory_check):
    assert memory_check.passed, memory_check.verdict.summary()
    assert memory_check.verdict.measured["bp_activation_layers_per_added_layer"] > 0.9  # BP keeps each layer for its backward pass


def test_drtp_memory_fails_when_the_local_losses_are_backpropagated(monkeypatch):
    real = costs.get_learner

    def patched(name, **kw):
        learner = real(name, **kw)
        return dataclasses.replace(learner, rule=BackpropagatedTPSGD(learner.rule.loss)) if name == "tpsgd" else learner

    monkeypatch.setattr(costs, "get_learner", patched)
    _, verdict = get_check("drtp_memory").fn()
    assert not verdict.passed and "tpsgd_activation_layers_per_added_layer" in verdict.failed
    assert verdict.measured["tpsgd_activation_layers_per_added_layer"] >= 0.9  # as much as BP keeps


class UnrolledTPSGD(TargetProjectionSGD):
    """TPSGD with every layer unrolled (no ``lax.scan``): the same update, scheduled by XLA at will."""

    def update(self, params, rule_state, batch, key):
        return self.layerwise_update(params, rule_state, batch, stack=False)


def test_drtp_memory_fails_when_the_layers_are_unrolled(monkeypatch):
    """Unrolled, XLA's CPU schedule keeps part of every layer's activations to the end: memory grows with depth."""
    real = costs.get_learner

    def patched(name, **kw):
        learner = real(name, **kw)
        return dataclasses.replace(learner, rule=UnrolledTPSGD(learner.rule.loss)) if name == "tpsgd" else learner

    monkeypatch.setattr(costs, "get_learner", patched)
    _, verdict = get_check("drtp_memory").fn()
    assert not verdict.passed and "tpsgd_activation_layers_per_added_layer" in verdict.failed


# ----------------------------------------------------------------------------- tpsgd_accuracy and lls_macs


def test_tpsgd_accuracy_passes():
    r = run_check("tpsgd_accuracy", quick=True)
    assert r.passed, r.verdict.summary()


def test_lls_macs_passes_and_fails_with_a_backward_pass(monkeypatch):
    r = run_check("lls_macs", quick=True)
    assert r.passed, r.verdict.summary()
    assert np.all(r.data.saving_error.sel(learner="lls").values < 0.25)  # the hand count explains the saving

    real = costs.get_learner

    def with_backward(name, **kw):  # "LLS" whose errors travel down through W^T: backprop's cost
        return real("bp", **kw) if name.startswith("lls") else real(name, **kw)

    monkeypatch.setattr(costs, "get_learner", with_backward)
    _, verdict = get_check("lls_macs").fn(networks=((32, 64, 64, 10),))
    assert not verdict.passed and "ratio_worst" in verdict.failed


def test_lls_params_and_options():
    learner = get_learner("lls/mxm")
    net = dl.init_network((4, 6, 3), key=jax.random.key(0))
    params = learner.init(jax.random.key(1), net)
    assert isinstance(params, LocalParams) and params.modulation[0].shape == (3, 3)
    with pytest.raises(dl.ConfigError, match="waveform"):
        get_learner("lls", waveform="saw")
    with pytest.raises(dl.ConfigError, match="modulation"):
        get_learner("pepita", modulation=-1.0)
