"""Generalised PC: each family's divergence against an independent formula, the checks and their must-fail twins."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special, stats

import dynlearn as dl
from dynlearn.data import load_digits
from dynlearn.errors import ConfigError
from dynlearn.learning import train
from dynlearn.models import Data
from dynlearn.models.gpc import GeneralisedPC, family, layer_families
from dynlearn.rules import get_learner
from dynlearn.theorems import run_check
from dynlearn.theorems.gpc import gpc_ce_limit, gpc_gaussian_equals_pc


def test_gaussian_and_bernoulli_and_categorical_divergences():
    rng = np.random.default_rng(0)
    x, mu = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    g = family("gaussian", scale=0.7)
    assert np.isclose(float(g.divergence(g.mean(x), mu)), np.sum((x - mu) ** 2) / (2 * 0.49), rtol=1e-13)
    b = family("bernoulli")
    s, t = special.expit(x), special.expit(mu)
    assert np.isclose(float(b.divergence(b.mean(x), mu)), np.sum(special.rel_entr(s, t) + special.rel_entr(1 - s, 1 - t)), rtol=1e-12)
    c = family("categorical")
    p, q = special.softmax(x, axis=-1), special.softmax(mu, axis=-1)
    assert np.isclose(float(c.divergence(c.mean(x), mu)), np.sum(special.rel_entr(p, q)), rtol=1e-12)
    y = np.eye(4)[[0, 2, 3]]  # a clamped one-hot output: the divergence is the cross-entropy
    assert np.isclose(float(c.divergence(y, mu)), -np.sum(y * np.log(q)), rtol=1e-12)


def test_laplace_divergence_is_the_kl_of_two_laplace_laws():
    lap = family("laplace", scale=0.8)
    for m, mu in ((0.3, -0.4), (2.0, 2.5), (-1.0, 3.0)):
        p, q = stats.laplace(m, 0.8), stats.laplace(mu, 0.8)
        kl, _ = integrate.quad(lambda z, p=p, q=q: p.pdf(z) * (p.logpdf(z) - q.logpdf(z)), -40, 40, points=[m, mu], limit=200)
        assert np.isclose(float(lap.divergence(jnp.asarray(m), jnp.asarray(mu))), kl, rtol=1e-8)


@pytest.mark.parametrize("hidden,out", [("bernoulli", "categorical"), ("laplace", "gaussian"), ("gaussian", "bernoulli")])
def test_free_output_equilibrium_is_the_feedforward_pass(hidden, out):
    net = dl.init_network((4, 6, 3), key=jax.random.key(0), bias_scale=0.1, dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(1), (5, 4), jnp.float64)
    model = GeneralisedPC(net, layer_families(2, hidden, out), "free")
    data = Data(x)
    s = model.init_state(data)
    assert abs(float(model.energy(s, data))) < 1e-14
    assert max(float(jnp.max(jnp.abs(f))) for f in model.vector_field(0.0, s, data)) < 1e-14
    moved = (s[0] + 0.1, s[1])
    assert float(model.energy(moved, data)) > 1e-4  # a KL energy: zero only at the feedforward pass


@pytest.fixture(scope="module")
def gaussian_check():
    return run_check("gpc_gaussian_equals_pc")


def test_gaussian_case_equals_pc(gaussian_check):
    assert gaussian_check.passed, gaussian_check.verdict.summary()


@pytest.mark.slow
def test_gaussian_case_relaxed_equilibrium_is_pcs():
    r = run_check("gpc_gaussian_equals_pc", quick=False)
    assert r.passed and "pc_residual_at_gpc_equilibrium" in r.verdict.measured


def test_gaussian_check_must_fail_for_another_energy():
    _, v = gpc_gaussian_equals_pc(seeds=(0,), scale=2.0, relax=False)  # sigma = 2: a quarter of PC's energy
    assert {"energy_gap", "field_gap", "update_gap"} <= set(v.failed)


def test_ce_limit_and_its_twin():
    r = run_check("gpc_ce_limit")
    assert r.passed, r.verdict.summary()
    _, v = gpc_ce_limit(output_family="gaussian", gammas=(1e-3, 1e-2, 1e-1))  # MSE output: tends to another gradient
    assert not v.passed and "min_cosine_at_smallest_gamma" in v.failed


def test_gpc_rejects_bad_options():
    with pytest.raises(ConfigError, match="hidden_family"):
        get_learner("gpc", hidden_family="poisson")
    with pytest.raises(ConfigError, match="output"):
        get_learner("gpc", output="free")


@pytest.mark.slow
def test_gpc_learns_digits():
    learner = get_learner("gpc")
    _, hist = train(learner, load_digits(), hidden=(64,), epochs=2, lr=learner.defaults["lr"], progress=False)
    assert float(hist.test_accuracy[-1]) > 0.7  # chance 0.1
