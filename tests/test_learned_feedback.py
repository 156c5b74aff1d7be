"""Learned and local credit assignment: the NTK-regime rule, directional DFA and meta-learned plasticity against
their updates written out by hand, their theorem checks, and the must-fail twins of every check."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynlearn.analysis import bp_gradient, cosine_similarity
from dynlearn.data import load_digits
from dynlearn.learning import train
from dynlearn.models.base import Data
from dynlearn.networks import init_network, linear_layer
from dynlearn.rules import get_learner
from dynlearn.rules import meta_plasticity as mp
from dynlearn.rules.ddfa import (
    DirectionalDFA,
    ddfa_learner,
    jacobian_estimates,
    mean_jacobian,
)
from dynlearn.rules.feedback import FeedbackNetwork
from dynlearn.rules.ntk_rule import NTKNetwork, ntk_network
from dynlearn.theorems import run_check


@pytest.fixture(scope="module")
def problem():
    net = init_network((4, 6, 5, 3), key=jax.random.key(0), bias_scale=0.1, dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(1), (7, 4))
    y = jax.nn.one_hot(jnp.arange(7) % 3, 3, dtype=jnp.float64)
    return net, x, y


# ----------------------------------------------------------------------------- ntk_rule


def test_ntk_rule_equals_explicit_formula_and_bp_at_initialisation(problem):
    net, x, y = problem
    learner = get_learner("ntk_rule")
    p = learner.init(None, net)
    (w1, w2, w3), (b1, b2, b3) = p.network.weights, p.network.biases
    s = [1 / np.sqrt(n) for n in (4, 6, 5)]
    # moved forward weights, frozen pathway at the initial ones: the rule uses B = W(0), BP the current W
    w2m, w3m = w2 + 0.5 * jax.random.normal(jax.random.key(2), w2.shape), 0.7 * w3
    moved = NTKNetwork(p.network.with_matrices((w1, w2m, w3m), p.network.biases), "ntk")
    g, _, _ = learner.rule.update(moved, learner.rule.init(None, p), Data(x, y), None)
    a1 = s[0] * x @ w1.T + b1
    a2 = s[1] * jnp.tanh(a1) @ w2m.T + b2
    out = s[2] * jnp.tanh(a2) @ w3m.T + b3
    d3 = out - y
    d2 = (1 - jnp.tanh(a2) ** 2) * (s[2] * d3 @ w3)  # frozen W3(0)
    d1 = (1 - jnp.tanh(a1) ** 2) * (s[1] * d2 @ w2)  # frozen W2(0)
    for got, d, h, sc in zip(g.network.weights, (d1, d2, d3), (x, jnp.tanh(a1), jnp.tanh(a2)), s):
        np.testing.assert_allclose(got, sc * d.T @ h, rtol=1e-12, atol=1e-14)
    # at initialisation the rule is backprop through the same parametrisation (autodiff, an independent path)
    g0, _, _ = learner.rule.update(p, learner.rule.init(None, p), Data(x, y), None)
    bp = jax.grad(lambda q: learner.rule.loss(q(x), y))(p)
    for a, b in zip(g0.network.weights + g0.network.biases, bp.network.weights + bp.network.biases):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-14)
    assert float(cosine_similarity(g.network.weights[0], jax.grad(lambda q: learner.rule.loss(q(x), y))(moved).network.weights[0])) < 1 - 1e-6


def test_ntk_parametrisation_keeps_the_function_of_its_standard_twin(problem):
    net, x, _ = problem
    np.testing.assert_allclose(ntk_network(net, "ntk")(x), ntk_network(net, "standard")(x), rtol=1e-12)
    with pytest.raises(Exception, match="parametrisation"):
        get_learner("ntk_rule", parametrisation="mean_field")


def test_ntk_rule_width_check_and_its_standard_parametrisation_twin():
    r = run_check("ntk_rule_width", quick=True)
    assert r.passed, r.verdict.summary()
    slopes = r.data.slope.values
    assert np.all(np.abs(slopes + 1.0) <= 0.2)
    twin = run_check("ntk_rule_width", quick=True, parametrisation="standard")
    assert not twin.passed and "slope_worst_layer" in twin.verdict.failed


# ----------------------------------------------------------------------------- ddfa


def test_jacobian_estimates_match_the_outer_product_formula_on_a_linear_net():
    net = init_network((3, 4, 2), key=jax.random.key(3), activation="linear", dtype=jnp.float64)
    h = jax.random.normal(jax.random.key(4), (5, 4))
    key = jax.random.key(5)
    est = jacobian_estimates(net, 1, h, key, 3)
    us = jax.random.normal(key, (3, 5, 4), jnp.float64)
    w2 = net.weights[1]
    want = jnp.stack([jnp.mean(jnp.einsum("oi,bi,bj->boj", w2, u, u), axis=0) for u in us])
    np.testing.assert_allclose(est, want, rtol=1e-12)
    np.testing.assert_allclose(mean_jacobian(net, 1, h), w2, rtol=1e-12)


def test_ddfa_update_is_dfa_through_the_momentum_averaged_estimate(problem):
    net, x, y = problem
    rule = get_learner("ddfa", momentum=0.5).rule
    state = rule.init(jax.random.key(2), net)
    key = jax.random.key(6)
    g, new_state, _ = rule.update(net, state, Data(x, y), key)
    acts = net.forward(x)
    keys = jax.random.split(key, 2)
    for l, (b_old, b_new, k) in enumerate(zip(state, new_state, keys), start=1):
        est = jacobian_estimates(net, l, jnp.tanh(acts[l]), k, 1).mean(axis=0)
        np.testing.assert_allclose(b_new, 0.5 * b_old + 0.5 * est, rtol=1e-12)
    e = acts[-1] - y
    for l, b in enumerate(new_state, start=1):
        d = (e @ b) * (1 - jnp.tanh(acts[l]) ** 2)
        h = x if l == 1 else jnp.tanh(acts[l - 1])
        np.testing.assert_allclose(g.weights[l - 1], d.T @ h, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(g.weights[-1], bp_gradient(net, x, y).weights[-1], rtol=1e-12)


def _uniform_directions(key, shape, dtype):
    """A broken direction law: U[0, 1) is not centred, so E[u u^T] != I and the estimate is biased."""
    return jax.random.uniform(key, shape, dtype)


def test_ddfa_unbiased_check_and_its_biased_directions_twin():
    r = run_check("ddfa_unbiased", quick=True)
    assert r.passed, r.verdict.summary()
    twin = run_check("ddfa_unbiased", quick=True, directions=_uniform_directions)
    assert not twin.passed and {"slope_worst_layer", "bias_ratio_max"} <= set(twin.verdict.failed)


def test_ddfa_alignment_check_and_its_biased_feedback_twin():
    r = run_check("ddfa_alignment", quick=True)
    assert r.passed, r.verdict.summary()

    def broken(**options):
        learner = ddfa_learner(**options)
        return dataclasses.replace(learner, rule=DirectionalDFA(learner.rule.loss, 1, 0.9, _uniform_directions))

    twin = run_check("ddfa_alignment", quick=True, learner_factory=broken)
    assert not twin.passed and "final_angle_worst" in twin.verdict.failed


# ----------------------------------------------------------------------------- meta_plasticity


def test_plasticity_terms_match_the_explicit_formulas(problem):
    net, x, y = problem
    fb = mp.random_feedback(jax.random.key(8), net.sizes, jnp.float64)
    terms, _, _ = mp.plasticity_terms(net, fb, x, y, mp.cross_entropy_loss)
    (w1, w2, w3), (b1, b2, b3) = net.weights, net.biases
    a1 = x @ w1.T + b1
    h1 = jnp.tanh(a1)
    a2 = h1 @ w2.T + b2
    h2 = jnp.tanh(a2)
    o = h2 @ w3.T + b3
    d3 = jax.nn.softmax(o) - y
    d2 = (1 - h2**2) * (d3 @ fb[2])
    d1 = (1 - h1**2) * (d2 @ fb[1])
    d0 = d1 @ fb[0]
    for t, w, pre, post, d, dprev in zip(terms, (w1, w2, w3), (x, h1, h2), (h1, h2, o), (d1, d2, d3), (d0, d1, d2)):
        hebb = post.T @ pre
        want = [d.T @ pre, -hebb, -(hebb - (post**2).sum(0)[:, None] * w), d.T @ dprev, w]
        for got, expected in zip(t, want):
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-13)


def test_fa_coefficients_give_the_feedback_family_fa_update(problem):
    """theta = (1, 0, 0, 0, 0) is feedback alignment: the same update as the feedback package's FA (custom VJP)."""
    net, x, y = problem
    learner = get_learner("meta_plasticity", loss="mse")
    fb = learner.rule.init(jax.random.key(9), net)
    g, _, _ = learner.rule.update(net, fb, Data(x, y), None)
    fa = get_learner("fa")
    params = FeedbackNetwork(net, tuple(linear_layer(b, None) for b in fb[1:]))
    g_fa, _, _ = fa.rule.update(params, (), Data(x, y), jax.random.key(0))
    for a, b in zip(g.weights + g.biases, g_fa.network.weights + g_fa.network.biases):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)
    with pytest.raises(Exception, match="coefficients"):
        get_learner("meta_plasticity", coefficients=(1.0, 0.0))


def test_meta_plasticity_check_and_its_fa_only_twin():
    r = run_check("meta_plasticity_low_data", quick=True)
    assert r.passed, r.verdict.summary()
    assert float(np.abs(r.data.coefficient_history[-1] - r.data.coefficient_history[0]).sum()) > 0
    twin = run_check("meta_plasticity_low_data", quick=True, terms=(True, False, False, False, False))
    assert not twin.passed


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize("name,lr", [("ddfa", 1e-2), ("meta_plasticity", 1e-2)])
def test_learners_train_on_digits(name, lr):
    _, hist = train(get_learner(name), load_digits(), hidden=(64,), epochs=3, lr=lr, progress=False)
    assert float(hist.test_accuracy[-1]) > 0.6  # chance 0.1


# ----------------------------------------------------------------------------- accuracy figures (NTK widths, conv dDFA)


def _digits32():
    d = load_digits()
    return (jnp.asarray(d.x_train, jnp.float32), jnp.asarray(d.y_train, jnp.float32),
            jnp.asarray(d.x_test, jnp.float32), jnp.asarray(d.y_test.argmax(-1)))


def test_accuracy_runner_trains_every_learner_from_the_same_network_on_the_same_batches():
    """After one step the NTK rule and BP in its parametrisation coincide (the rule is BP at initialisation), so their
    accuracies agree only if both started from the same network and saw the same batch; BP in the standard
    parametrisation at its own rate does not."""
    from dynlearn.figures.local_accuracy import _runner, accuracy_learner, xavier_mlp

    x, y, xt, lt = _digits32()
    learners = [accuracy_learner(n) for n in ("ntk_rule", "bp_ntk", "bp")]
    nets = jax.tree.map(lambda *a: np.stack(a), *[xavier_mlp((64, 16, 10), s) for s in (0, 1)])
    idx = jnp.asarray(np.random.default_rng(0).integers(0, 1437, (2, 1, 64)))
    keys = jnp.stack([jax.random.split(jax.random.key(s), 1) for s in (0, 1)])
    acc = np.asarray(_runner(learners, 1)(nets, idx, keys, x, y, xt, lt))  # (runs, learners)
    np.testing.assert_array_equal(acc[:, 0], acc[:, 1])
    assert np.any(acc[:, 2] != acc[:, 0])
    w = np.asarray(xavier_mlp((64, 4096, 10), 0).weights[0])
    assert abs(w.var() * (64 + 4096) / 2 - 1.0) < 0.02  # Xavier variance 2 / (n_in + n_out)


def test_accuracy_vs_width_learns_and_the_fraction_limits_the_data():
    from dynlearn.figures.local_accuracy import accuracy_vs_width

    ds = accuracy_vs_width(learners=("ntk_rule", "bp_ntk"), widths=(32,), fractions=(1.0, 0.02), seeds=(0,), epochs=3)
    acc = ds.test_accuracy.isel(width=0, seed=0)
    assert acc.shape == (2, 2) and ds.attrs["steps"] == 3 * (1437 // 64)
    assert float(acc.sel(fraction=1.0).min()) > 0.8  # chance 0.1
    assert float(acc.sel(fraction=0.02).max()) < float(acc.sel(fraction=1.0).min())  # 64 samples, not 1437


@pytest.mark.slow  # conv variant (compiling dDFA through conv layers); runs with -m slow
def test_ddfa_updates_a_conv_net_for_digits():
    """dDFA on conv layers: output layer BP's, conv layers through the learned (flattened) feedback."""
    import equinox as eqx

    from dynlearn.figures.local_accuracy import digits_convnet

    net = eqx.filter_jit(lambda k: digits_convnet(key=k, dtype=jnp.float64))(jax.random.key(0))
    assert net.shapes == ((1, 8, 8), (8, 8, 8), (16, 4, 4), (64,), (10,))
    x = jax.random.uniform(jax.random.key(1), (4, 1, 8, 8), jnp.float64)
    y = jax.nn.one_hot(jnp.arange(4), 10, dtype=jnp.float64)
    learner = get_learner("ddfa")

    @eqx.filter_jit
    def run(net):
        state = learner.rule.init(jax.random.key(3), net)
        return learner.rule.update(net, state, Data(x, y), jax.random.key(4)), bp_gradient(net, x, y)

    (g, state, _), bp = run(net)
    assert [b.shape for b in state] == [(10, 512), (10, 256), (10, 64)]  # conv states flattened
    np.testing.assert_allclose(g.layers[-1].weight, bp.layers[-1].weight, rtol=1e-10, atol=1e-14)  # output: BP's
    assert float(cosine_similarity(g.layers[0].weight, bp.layers[0].weight)) < 0.999  # conv 1: through the feedback
    assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(eqx.filter(g, eqx.is_inexact_array)))


@pytest.mark.slow  # three conv trainings; the full ddfa_alignment figure runs them at scale
def test_conv_accuracy_trains_bp_dfa_and_ddfa():
    from dynlearn.figures.local_accuracy import conv_accuracy

    ds = conv_accuracy(epochs=2, n_train=512, seeds=(0,))
    assert ds.test_accuracy.shape == (3, 1, 2) and float(ds.test_accuracy.sel(learner="bp").isel(seed=0, epoch=-1)) > 0.5
