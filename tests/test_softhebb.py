"""SoftHebb: the rule against the per-sample formula, the learner's descent-sign update, the checks and their twins."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dynlearn as dl
from dynlearn.data import load_digits
from dynlearn.errors import ConfigError
from dynlearn.learning import train
from dynlearn.models import Data
from dynlearn.models.hebbian.softhebb import (
    SoftHebbPlasticity,
    norm_rate,
    softhebb_network,
)
from dynlearn.rules import get_learner
from dynlearn.theorems import run_check
from dynlearn.theorems.softhebb import em_fixed_point, mean_resultant, vmf_mixture


def explicit_delta(w, x, tau, hard=False):
    """sum_n y_nk (x_ni - u_nk w_ik), one sample and one weight at a time."""
    k_units, d = w.shape
    out = np.zeros_like(w)
    for xn in x:
        u = np.array([sum(w[k, i] * xn[i] for i in range(d)) for k in range(k_units)])
        if hard:
            y = (np.arange(k_units) == np.argmax(u)).astype(float)
        else:
            e = np.exp((u - u.max()) / tau)
            y = e / e.sum()
        for k in range(k_units):
            for i in range(d):
                out[k, i] += y[k] * (xn[i] - u[k] * w[k, i])
    return out


@pytest.mark.parametrize("wta", ["soft", "hard"])
def test_delta_equals_per_sample_formula(wta):
    rng = np.random.default_rng(0)
    w, x = rng.standard_normal((3, 5)), rng.standard_normal((4, 5))
    got = SoftHebbPlasticity(tau=0.3, wta=wta).delta(jnp.asarray(w), jnp.asarray(x))
    np.testing.assert_allclose(got, explicit_delta(w, x, 0.3, hard=wta == "hard"), rtol=1e-12, atol=1e-13)
    field = SoftHebbPlasticity(tau=0.3, wta=wta).field(0.0, jnp.asarray(w), (jnp.asarray(x), 2.0))
    np.testing.assert_allclose(field, 2.0 * explicit_delta(w, x, 0.3, hard=wta == "hard") / 4, rtol=1e-12, atol=1e-13)


def test_norm_rate_is_the_derivative_of_the_norm_gap():
    """d(1 - |w_k|^2)/dt = -2 eta m_k (1 - |w_k|^2): the field's radial part, by the product rule, for any data."""
    rng = np.random.default_rng(1)
    w, x = jnp.asarray(rng.standard_normal((4, 6))), jnp.asarray(rng.standard_normal((9, 6)))
    p = SoftHebbPlasticity(tau=0.5)
    wdot = p.field(0.0, w, (x, 1.5))
    lhs = -2.0 * jnp.sum(w * wdot, axis=1)
    np.testing.assert_allclose(lhs, -2.0 * 1.5 * norm_rate(p, w, x) * (1.0 - jnp.sum(w**2, axis=1)), rtol=1e-12)


@pytest.fixture(scope="module")
def tiny():
    net = dl.init_network((5, 4, 3, 2), key=jax.random.key(0), dtype=jnp.float64)
    x = jax.random.uniform(jax.random.key(1), (6, 5), jnp.float64)
    y = jax.nn.one_hot(jnp.arange(6) % 2, 2, dtype=jnp.float64)
    return softhebb_network(net, 0.2), x, y


def test_learner_update_is_minus_hebbian_in_hidden_layers_and_the_loss_gradient_at_the_readout(tiny):
    params, x, y = tiny
    rule = get_learner("softhebb", tau=0.2).rule
    grads, _, metrics = rule.update(params, (), Data(x, y), jax.random.key(0))
    (w1, w2, w3), b3 = params.weights, params.biases[2]
    xc = np.asarray(x - x.mean(1, keepdims=True))
    h0 = xc / np.linalg.norm(xc, axis=1, keepdims=True)

    def soft(h, w):
        u = h @ np.asarray(w).T
        e = np.exp((u - u.max(1, keepdims=True)) / 0.2)
        s = e / e.sum(1, keepdims=True)
        return s / np.linalg.norm(s, axis=1, keepdims=True)

    h1 = soft(h0, w1)
    h2 = soft(h1, w2)
    np.testing.assert_allclose(grads.weights[0], -explicit_delta(np.asarray(w1), h0, 0.2), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads.weights[1], -explicit_delta(np.asarray(w2), h1, 0.2), rtol=1e-10, atol=1e-12)
    out = h2 @ np.asarray(w3).T + np.asarray(b3)
    p = np.exp(out - out.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(grads.weights[2], (p - np.asarray(y)).T @ h2, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads.biases[2], (p - np.asarray(y)).sum(0), rtol=1e-10, atol=1e-12)
    assert all(float(jnp.max(jnp.abs(b))) == 0.0 for b in grads.biases[:2])
    assert float(metrics["loss"]) > 0


def test_hidden_update_ignores_the_labels(tiny):
    """No feedback: changing the targets changes only the readout's update."""
    params, x, y = tiny
    rule = get_learner("softhebb", tau=0.2).rule
    g1, _, _ = rule.update(params, (), Data(x, y), jax.random.key(0))
    g2, _, _ = rule.update(params, (), Data(x, 1.0 - y), jax.random.key(0))
    np.testing.assert_array_equal(g1.weights[0], g2.weights[0])
    assert not np.allclose(g1.weights[2], g2.weights[2])


def test_factory_options_are_checked():
    for bad in ({"tau": 0.0}, {"tau": -1.0}, {"wta": "medium"}):
        with pytest.raises(ConfigError):
            get_learner("softhebb", **bad)


def test_learns_digits():
    data = load_digits()
    learner = get_learner("softhebb")
    _, hist = train(learner, data, hidden=(64,), epochs=3, lr=1e-2, progress=False)
    assert float(hist.test_accuracy[-1]) > 0.8  # chance 0.1; BP on the same network ~0.95
    assert float(hist.train_norm_gap_1[-1]) < 0.1  # the Hebbian weights near the unit-norm fixed point


@pytest.mark.slow
def test_trains_with_the_default_hidden_layers():
    data = load_digits()
    small = dataclasses.replace(data, x_train=data.x_train[:512], y_train=data.y_train[:512], labels_train=data.labels_train[:512])
    _, hist = train(get_learner("softhebb"), small, epochs=2, lr=1e-2, progress=False)  # hidden (128, 128): two Hebbian layers
    assert float(hist.test_accuracy[-1]) > 0.3


def test_vmf_sampler_has_the_mean_resultant_length_of_the_formula():
    x, labels, means = vmf_mixture(8, 3, 20.0, 3000, 5)
    c = np.sum(x * means[labels], axis=1)
    # E[mu.x] = A_d(kappa); the sample mean's standard error is sd/sqrt(n)
    assert abs(c.mean() - mean_resultant(8, 20.0)) < 4 * c.std() / np.sqrt(c.size)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-12)


def test_em_fixed_point_is_a_fixed_point_of_the_rule():
    x, _, means = vmf_mixture(6, 3, 15.0, 600, 2)
    mu = em_fixed_point(x, means + 0.1, 15.0)
    f = SoftHebbPlasticity(tau=1 / 15.0).field(0.0, jnp.asarray(mu), (jnp.asarray(x), 1.0))
    assert float(jnp.max(jnp.abs(f))) < 1e-10


# ----------------------------------------------------------------------------- the checks and their must-fail twins


def test_softhebb_norm_passes():
    r = run_check("softhebb_norm")
    assert r.passed, r.verdict.summary()


@pytest.mark.parametrize("broken", [SoftHebbPlasticity(tau=0.25, sign=-1.0), SoftHebbPlasticity(tau=0.25, decay=False)],
                         ids=["anti-hebbian", "no-decay"])
def test_softhebb_norm_fails_with_a_broken_rule(broken):
    r = run_check("softhebb_norm", plasticity=broken, seeds=(0,))
    assert not r.passed and "final_norm_gap" in r.verdict.failed


def test_softhebb_bayes_passes():
    r = run_check("softhebb_bayes")
    assert r.passed, r.verdict.summary()
    ds = r.data
    assert float(ds.cross_entropy_curve.isel(time=-1).max()) < float(ds.cross_entropy_curve.isel(time=0).min())


@pytest.mark.parametrize("broken", [SoftHebbPlasticity(tau=0.05, wta="hard"), SoftHebbPlasticity(tau=0.05, sign=-1.0),
                                    SoftHebbPlasticity(tau=0.1)], ids=["hard-wta", "anti-hebbian", "wrong-temperature"])
def test_softhebb_bayes_fails_with_a_broken_rule(broken):
    r = run_check("softhebb_bayes", plasticity=broken, seeds=(0,))
    assert not r.passed and "kl_ratio_to_oracle_worst" in r.verdict.failed


# ----------------------------------------------------------------------------- multilayer (conv) SoftHebb


def explicit_conv_delta(w, z, tau, anti):
    """Patch by patch: zero 'same' padding, y = softmax over channels at each position, winner +y / others -y."""
    k_out, _, kh, kw = w.shape
    b, _, hh, ww = z.shape
    zp = np.pad(z, ((0, 0), (0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2)))
    out = np.zeros_like(w)
    for n in range(b):
        for i in range(hh):
            for j in range(ww):
                patch = zp[n, :, i : i + kh, j : j + kw]
                u = np.array([np.sum(w[k] * patch) for k in range(k_out)])
                e = np.exp((u - u.max()) / tau)
                y = e / e.sum()
                if anti:
                    y = np.where(np.arange(k_out) == np.argmax(u), y, -y)
                for k in range(k_out):
                    out[k] += y[k] * (patch - u[k] * w[k])
    return out


@pytest.mark.parametrize("anti", [True, False])
def test_conv_delta_equals_patch_by_patch_formula(anti):
    from dynlearn.models.hebbian.softhebb_deep import conv_softhebb_delta

    rng = np.random.default_rng(3)
    w, z = rng.standard_normal((3, 2, 3, 3)), rng.standard_normal((2, 2, 4, 5))
    got = conv_softhebb_delta(jnp.asarray(w), jnp.asarray(z), 0.7, anti)
    np.testing.assert_allclose(got, explicit_conv_delta(w, z, 0.7, anti), rtol=1e-11, atol=1e-12)


@pytest.fixture(scope="module")
def deep_tiny():
    from dynlearn.models.hebbian.softhebb_deep import init_deep_softhebb

    params = init_deep_softhebb(jax.random.key(0), (64, 4, 6, 3), dtype=jnp.float64)
    x = jax.random.uniform(jax.random.key(1), (5, 64), jnp.float64)
    y = jax.nn.one_hot(jnp.arange(5) % 3, 3, dtype=jnp.float64)
    return params, x, y


@pytest.mark.slow  # default run under 10 min on 2 cores; runs with -m slow
def test_deep_rule_schedules_layers_and_trains_the_readout_by_the_loss_gradient(deep_tiny):
    params, x, y = deep_tiny
    greedy = get_learner("softhebb/deep", greedy_steps=2).rule
    for step, plastic in ((0, 0), (1, 0), (2, 1), (3, 1), (4, None)):
        g, state, _ = greedy.update(params, jnp.asarray(step), Data(x, y), jax.random.key(0))
        assert int(state) == step + 1
        for l, gk in enumerate(g.kernels):
            assert (float(jnp.max(jnp.abs(gk))) > 0) == (l == plastic)
    g, _, _ = get_learner("softhebb/deep", only_layer=2).rule.update(params, jnp.asarray(0), Data(x, y), jax.random.key(0))
    assert float(jnp.max(jnp.abs(g.kernels[0]))) == 0 and float(jnp.max(jnp.abs(g.kernels[1]))) > 0
    h = params.features(x)[-1][2].reshape(5, -1)
    expected = jax.grad(lambda w, b: dl.losses.cross_entropy_loss(h @ w.T + b, y), argnums=(0, 1))(params.readout.weight, params.readout.bias)
    np.testing.assert_allclose(g.readout.weight, expected[0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(g.readout.bias, expected[1], rtol=1e-12, atol=1e-14)
    g2, _, _ = get_learner("softhebb/deep", only_layer=2).rule.update(params, jnp.asarray(0), Data(x, 1.0 - y), jax.random.key(0))
    np.testing.assert_array_equal(g.kernels[1], g2.kernels[1])  # no feedback from the labels


def test_deep_learner_learns_digits_and_checks_its_options():
    data = load_digits()
    _, hist = train(get_learner("softhebb/deep"), data, hidden=(32,), epochs=2, lr=1e-2, progress=False)
    assert float(hist.test_accuracy[-1]) > 0.8  # one conv layer of 32 channels (measured 0.89); chance 0.1
    for bad in ({"tau": 0}, {"kernel": 0}, {"greedy_steps": 0}, {"only_layer": -1}):
        with pytest.raises(ConfigError):
            get_learner("softhebb/deep", **bad)


def test_fgsm_moves_each_input_by_eps_along_the_sign_of_the_loss_gradient():
    from dynlearn.models.hebbian.softhebb_robustness import fgsm
    from dynlearn.rules.base import Learner

    rng = np.random.default_rng(4)
    w, x = jnp.asarray(rng.standard_normal((3, 5))), jnp.asarray(rng.standard_normal((4, 5)))
    y = jax.nn.one_hot(jnp.array([0, 2, 1, 0]), 3, dtype=jnp.float64)
    linear = Learner("linear", get_learner("bp").rule, predict=lambda p, xx: xx @ p.T)
    out = np.asarray(x @ w.T)
    p = np.exp(out - out.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    grad = (p - np.asarray(y)) @ np.asarray(w)  # d CE / dx of a linear readout
    np.testing.assert_allclose(fgsm(linear, w, x, y, 0.1), np.asarray(x) + 0.1 * np.sign(grad), rtol=1e-12)
