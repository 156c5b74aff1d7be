"""Generalised PC on a transformer and a VAE: the data's entropy floor, the energies against independent formulas,
the weak-nudge limits and the training comparisons, each with a must-fail twin."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special, stats

from dynlearn.experiments.gpc_sequences import markov_sequences
from dynlearn.models import Data
from dynlearn.models.gpc_transformer import (
    init_transformer,
    train_transformer,
    transformer_gpc,
)
from dynlearn.models.gpc_vae import init_vae, negative_elbo, vae_gpc
from dynlearn.theorems import run_check
from dynlearn.theorems.gpc_experiments import (
    gpc_transformer_ce_limit,
    gpc_transformer_vs_bp,
    gpc_vae_elbo_limit,
    gpc_vae_vs_bp,
)


def test_markov_floor_is_the_stationary_conditional_entropy():
    task = markov_sequences(vocab=5, length=6, n_train=4000, n_test=10, seed=3)
    p = task.transition
    pi = np.full(5, 0.2)
    for _ in range(500):  # power iteration, independent of the eigen-solver in the module
        pi = pi @ p
    assert np.isclose(task.entropy_floor, np.sum(pi * stats.entropy(p, axis=1)), rtol=1e-10)
    assert np.isclose(task.accuracy_ceiling, np.sum(pi * p.max(axis=1)), rtol=1e-10)
    # the Bayes predictor's empirical cross-entropy on sampled data sits at the floor (a few standard errors)
    prev, nxt = task.x_train.argmax(-1).ravel(), task.y_train.argmax(-1).ravel()
    losses = -np.log(p[prev, nxt])
    assert abs(losses.mean() - task.entropy_floor) < 4 * losses.std() / np.sqrt(losses.size / 6)


def test_order_two_floor_below_order_one_floor_of_the_same_tokens():
    task = markov_sequences(vocab=4, length=5, order=2, n_train=20000, n_test=10, seed=1)
    tok = np.concatenate([task.x_train.argmax(-1)[:, :1], task.y_train.argmax(-1)], axis=1)
    # empirical H(X_{t+1} | X_{t-1}, X_t) at t >= 1 and H(X_1 | X_0) at t = 0, averaged over positions
    ents = []
    for t in range(task.length):
        ctx = tok[:, max(0, t - 1) : t + 1] @ (4 ** np.arange(min(t + 1, 2)))
        joint = np.zeros((16, 4))
        np.add.at(joint, (ctx, tok[:, t + 1]), 1.0)
        joint /= joint.sum()
        ents.append(special.entr(joint).sum() - special.entr(joint.sum(1)).sum())
    assert abs(np.mean(ents) - task.entropy_floor) < 0.02


@pytest.mark.parametrize("bad", [{"vocab": 1}, {"order": 0}, {"concentration": 0.0}])
def test_markov_bad_options_raise(bad):
    with pytest.raises(ValueError):
        markov_sequences(**bad)


def _tokens(seed, shape=(2, 4), vocab=5):
    return jax.nn.one_hot(jax.random.randint(jax.random.key(seed), shape, 0, vocab), vocab, dtype=jnp.float64)


def test_transformer_energy_zero_at_feedforward_and_clamped_energy_is_the_cross_entropy():
    net = init_transformer(5, 4, width=6, mlp=8, heads=2, key=jax.random.key(0), dtype=jnp.float64)
    x, y = _tokens(1), _tokens(2)
    data = Data(x, y, 0.0)

    @eqx.filter_jit
    def at_feedforward(model, data):
        s = model.init_state(data)
        return model.energy(s, data), jnp.max(jnp.stack([jnp.max(jnp.abs(f)) for f in model.vector_field(0.0, s, data)]))

    energy, field = at_feedforward(transformer_gpc(net), data)
    assert abs(float(energy)) < 1e-13 and float(field) < 1e-13
    logits = np.asarray(net(x))
    ce = -np.sum(np.asarray(y) * (logits - special.logsumexp(logits, axis=-1, keepdims=True)))
    assert np.isclose(float(at_feedforward(transformer_gpc(net, output="clamped"), data)[0]), ce, rtol=1e-12)
    # causality: changing the last token leaves every earlier position's logits unchanged
    x2 = x.at[:, -1].set(jnp.roll(x[:, -1], 1, axis=-1))
    assert np.allclose(net(x2)[:, :-1], net(x)[:, :-1], atol=1e-14) and not np.allclose(net(x2)[:, -1], net(x)[:, -1])


def test_vae_objective_against_independent_formulas():
    vae = init_vae(6, 5, 1, key=jax.random.key(0), dtype=jnp.float64)
    x = jax.random.uniform(jax.random.key(1), (1, 6), jnp.float64)
    eps = jnp.asarray([[0.7]])
    m, logv = (float(a) for a in np.asarray(vae.encode(x))[0])
    q = stats.norm(m, np.exp(0.5 * logv))
    kl, _ = integrate.quad(lambda z: q.pdf(z) * (q.logpdf(z) - stats.norm.logpdf(z)), -30, 30)
    s = special.expit(np.asarray(vae.decode(jnp.asarray([[m + np.exp(0.5 * logv) * 0.7]]))))
    bce = -np.sum(np.asarray(x) * np.log(s) + (1 - np.asarray(x)) * np.log(1 - s))
    assert np.isclose(float(negative_elbo(vae, x, eps)), bce + kl, rtol=1e-8)
    # the gPC energy with the output clamped to the image, at the feedforward nodes, is the same objective less the
    # image's entropy (the Bernoulli divergence is a KL: BCE minus the entropy of the grey-level pixels, constant in theta)
    model = vae_gpc(vae, eps, output="clamped")
    data = Data(x, x, 0.0)
    h = np.sum(special.entr(np.asarray(x)) + special.entr(1 - np.asarray(x)))
    energy = eqx.filter_jit(lambda m, d: m.energy(m.init_state(d), d))(model, data)
    assert np.isclose(float(energy), bce - h + kl, rtol=1e-8)


def test_bad_options_raise():
    net = init_transformer(5, 4, key=jax.random.key(0))
    with pytest.raises(ValueError):
        transformer_gpc(net, output="free")
    with pytest.raises(ValueError):
        transformer_gpc(net, output_family="poisson")
    with pytest.raises(ValueError):
        init_transformer(5, 4, width=6, heads=4, key=jax.random.key(0))
    with pytest.raises(ValueError):
        train_transformer(markov_sequences(n_train=8, n_test=8), method="sgd", epochs=1)


@pytest.mark.parametrize("name", ["gpc_transformer_ce_limit", "gpc_vae_elbo_limit"])
def test_limit_checks_pass(name):
    r = run_check(name)
    assert r.passed, r.verdict.summary()


def test_transformer_limit_twin_gaussian_output_fails():
    """A Gaussian output (squared-error nudge on the logits) tends to the MSE gradient, not the cross-entropy's."""
    _, v = gpc_transformer_ce_limit(gammas=(1e-4, 1e-2), output_family="gaussian")
    assert "min_cosine_at_smallest_gamma" in v.failed, v.summary()


def test_vae_limit_twin_without_prior_fails():
    """Dropping the prior term from the energy loses the KL part of the ELBO gradient in the encoder."""
    _, v = gpc_vae_elbo_limit(gammas=(1e-4, 1e-2), prior=False)
    assert "min_cosine_at_smallest_gamma" in v.failed, v.summary()


def test_transformer_training_check_passes():
    r = run_check("gpc_transformer_vs_bp")
    assert r.passed, r.verdict.summary()
    ce = r.data.test_ce.sel(trained_by="gpc").values
    assert ce[-1] < ce[0] - 0.5  # it learned: from ~log V toward the floor


@pytest.mark.slow
def test_vae_training_check_passes():
    r = run_check("gpc_vae_vs_bp")
    assert r.passed, r.verdict.summary()


@pytest.mark.slow
def test_training_twins_fail():
    """Wrong output families: a Gaussian output trains the logits by squared error toward one-hot targets; a categorical
    output over the 64 pixels treats an image as one draw of a pixel index. Both miss the comparison with BP."""
    _, v = gpc_transformer_vs_bp(output_family="gaussian")
    assert "ce_gap_gpc_minus_bp" in v.failed, v.summary()
    _, v = gpc_vae_vs_bp(output_family="categorical")
    assert "gain_over_mean_image_gpc_over_bp" in v.failed, v.summary()


def test_vae_twin_fails_with_short_inference():
    """With inference ending at t = 2 the saturated pixels' logits stay unrelaxed: gPC's decoder learns the mean image
    and its encoder nothing, which the criterion must catch (a ratio of BCEs alone did not: 1.04 at the old quick size)."""
    _, v = gpc_vae_vs_bp(inference_time=2.0)
    assert "gain_over_mean_image_gpc_over_bp" in v.failed, v.summary()
    assert v.measured["gain_over_mean_image_gpc_over_bp"] < 0.5


def test_vae_check_fails_when_bp_does_not_beat_the_mean_image():
    """At a learning rate too small for either method to leave the untrained VAE, both BCEs sit above the mean
    image's; their ratio of falls is then a ratio of two negative numbers, and the BP criterion must fail the check."""
    _, v = gpc_vae_vs_bp(n_train=64, epochs=1, lr=1e-6)
    assert "bp_fall_below_mean_image" in v.failed and v.measured["bp_fall_below_mean_image"] < 0, v.summary()
