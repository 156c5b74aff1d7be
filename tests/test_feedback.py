"""The feedback-alignment family: every rule against its update written out by hand, the three theorem checks that
must also fail, and the rules on a convolutional network (LeNet-5)."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynlearn.analysis import alignment_angle, bp_gradient, feedback_report, relative_error, weight_norm_ratio
from dynlearn.errors import ShapeError, UnknownNameError
from dynlearn.models.base import Data
from dynlearn.networks import init_network, lenet5, linear_layer
from dynlearn.rules import get_learner, learner_names
from dynlearn.rules.feedback import FeedbackAlignment, FeedbackNetwork, KolenPollack, fa_learner, init_feedback_network, kp_learner
from dynlearn.theorems import run_check

RULES = ["fa", "dfa", "kp", "wm", "usf", "brsf", "frsf"]
SIZES = (5, 7, 6, 3)
KEY = jax.random.key(7)


def _batch(sizes=SIZES, n=8, seed=1):
    x = jax.random.normal(jax.random.key(seed), (n, sizes[0]))
    y = jax.random.normal(jax.random.key(seed + 1), (n, sizes[-1]))
    return x, y


def _update(learner, params, x, y, key=KEY):
    return eqx.filter_jit(learner.rule.update)(params, learner.rule.init(key, params), Data(x, y), key)


def _same_structure(a, b):
    return jax.tree.structure(eqx.filter(a, eqx.is_inexact_array)) == jax.tree.structure(eqx.filter(b, eqx.is_inexact_array))


# ----------------------------------------------------------------------------- broken components (must fail)


class BrokenKP(KolenPollack):
    """KP whose backward matrices only decay: they never receive W's update."""

    def feedback_update(self, params, grads, key):
        return jax.tree.map(lambda b: self.decay * b, params.feedback)


def broken_kp_factory(**options):
    good = kp_learner(**options)
    return dataclasses.replace(good, name="kp_broken", rule=BrokenKP(good.rule.loss, good.rule.decay))


class FlippedFA(FeedbackAlignment):
    """FA whose backward pass uses -B while the stored backward matrix is B (a sign bug)."""

    def backward_layers(self, params, key=None):
        return jax.tree.map(jnp.negative, super().backward_layers(params, key))


def flipped_fa_factory(**options):
    good = fa_learner(**options)
    return dataclasses.replace(good, name="fa_flipped", rule=FlippedFA(good.rule.loss))


class OffAxisFA(FeedbackAlignment):
    """FA whose first-layer update gets a fixed random matrix added, of 0.7 times the update's norm: W still aligns with
    B and the loss still falls to round-off, but the update is 84 degrees from BP's (the old bound was 90). With
    ``mark`` set, only on the seed whose stored B[0, 0] is ``mark`` (FA's B never changes): one bad seed among good."""

    mark: float | None = None

    def network_update(self, params, grads):
        w = grads.weights[0]
        r = jax.random.normal(jax.random.key(42), w.shape, w.dtype)
        c = 0.7 if self.mark is None else jnp.where(jnp.abs(params.feedback[0].weight[0, 0] - self.mark) < 1e-12, 0.7, 0.0)
        return grads.with_matrices((w + c * jnp.linalg.norm(w) * r / jnp.linalg.norm(r), *grads.weights[1:]), grads.biases)


def off_axis_fa_factory(mark=None, **options):
    good = fa_learner(**options)
    return dataclasses.replace(good, name="fa_off_axis", rule=OffAxisFA(good.rule.loss, mark))


def off_axis_on_seed_1(**options):
    from dynlearn.theorems.feedback import _fa_params

    mark = float(_fa_params((10, 20, 5), 1, 0.1, fa_learner().rule).feedback[0].weight[0, 0])
    return off_axis_fa_factory(mark, **options)


def decorrelated_mirror(network, feedback, key, *, sigma, decay, samples, eta):
    """Weight mirror whose response comes from a fresh noise sample, not the injected one."""
    out = []
    for k, w, fb in zip(jax.random.split(key, len(feedback)), network.weights[1:], feedback):
        k_in, k_out = jax.random.split(k)
        xi = sigma * jax.random.normal(k_in, (samples, w.shape[1]), w.dtype)
        other = sigma * jax.random.normal(k_out, (samples, w.shape[1]), w.dtype)
        out.append(linear_layer(eta * (other @ w.T).T @ xi / samples - decay * fb.weight, None))
    return tuple(out)


# ----------------------------------------------------------------------------- the checks


@pytest.fixture(scope="module")
def results():
    return {n: run_check(n) for n in ("kp_exact_decay", "fa_alignment", "weight_mirror_fixed_point")}


def test_kp_exact_decay(results):
    r = results["kp_exact_decay"]
    assert r.passed, r.verdict.summary()
    assert r.verdict.measured["max_relative_error"] <= 1e-10
    gap = r.data.gap.values
    assert np.all(np.diff(gap, axis=1) < 0)  # shrinks every step
    assert np.all(r.data.angle_B_WT.isel(step=-1) < r.data.angle_B_WT.isel(step=0))


def test_kp_exact_decay_fails_without_transposed_update():
    r = run_check("kp_exact_decay", learner_factory=broken_kp_factory, steps=60, seeds=(0,), cache=False)
    assert r.passed is False
    assert r.verdict.measured["max_relative_error"] > 1e-3


def test_fa_alignment(results):
    r = results["fa_alignment"]
    assert r.passed, r.verdict.summary()
    ang = r.data.angle_WT_B
    assert float(ang.isel(step=0).min()) > 60  # random B: near 90 degrees at the start
    assert float(ang.isel(step=-1).max()) < 60
    assert float(r.data.angle_update_bp.isel(step=slice(5, None)).median()) < 90


def test_fa_alignment_fails_with_sign_bug():
    r = run_check("fa_alignment", learner_factory=flipped_fa_factory, seeds=(0, 1), steps=600, cache=False)
    assert r.passed is False
    assert r.verdict.measured["final_angle_worst_seed"] > 90  # W aligns with -B


def test_fa_alignment_update_angle_fails_off_axis():
    r = run_check("fa_alignment", learner_factory=off_axis_fa_factory, seeds=(0, 1), steps=600, cache=False)
    assert r.verdict.failed == ("update_angle_to_bp_worst_seed",), r.verdict.summary()
    assert 70 < r.verdict.measured["update_angle_to_bp_worst_seed"] < 90


def test_fa_alignment_update_angle_takes_the_worst_seed():
    r = run_check("fa_alignment", learner_factory=off_axis_on_seed_1, seeds=(0, 1), steps=600, cache=False)
    assert r.verdict.failed == ("update_angle_to_bp_worst_seed",), r.verdict.summary()


def test_weight_mirror_fixed_point(results):
    r = results["weight_mirror_fixed_point"]
    assert r.passed, r.verdict.summary()
    assert r.verdict.measured["final_angle_worst"] < 5
    assert r.verdict.measured["start_angle"] > 45


def test_weight_mirror_fails_with_decorrelated_noise():
    r = run_check("weight_mirror_fixed_point", mirror_fn=decorrelated_mirror, seeds=(0,), steps=200, cache=False)
    assert r.passed is False
    assert r.verdict.measured["final_angle_worst"] > 45


# ----------------------------------------------------------------------------- every rule against explicit matrices


def _explicit(net, x, y, down, *, direct=False):
    """FA / DFA written out (tanh, MSE). ``down[l]`` (shaped like ``W_{l+2}``, or ``(n_L, n_{l+1})`` for DFA) carries
    the error to layer ``l + 1``. Returns the rates, the deltas and the updates ``(δ_l h_{l-1}ᵀ, Σ δ_l)`` of every layer."""
    ws, bs = net.weights, net.biases
    pre = [x @ ws[0].T + bs[0]]
    for w, b in zip(ws[1:], bs[1:]):
        pre.append(jnp.tanh(pre[-1]) @ w.T + b)
    rates = [x] + [jnp.tanh(p) for p in pre[:-1]]
    deltas = [None] * len(ws)
    deltas[-1] = pre[-1] - y
    for l in range(len(ws) - 2, -1, -1):
        err = deltas[-1] @ down[l] if direct else deltas[l + 1] @ down[l]
        deltas[l] = (1 - rates[l + 1] ** 2) * err
    return rates, deltas, [(d.T @ r, d.sum(0)) for d, r in zip(deltas, rates)]


def _assert_network_update(grads, expected):
    for l, ((gw, gb), layer) in enumerate(zip(expected, grads.network.layers), start=1):
        np.testing.assert_allclose(layer.weight, gw, rtol=1e-11, atol=1e-13, err_msg=f"W{l}")
        np.testing.assert_allclose(layer.bias, gb, rtol=1e-11, atol=1e-13, err_msg=f"b{l}")


def _params(rule, sizes=SIZES):
    return init_feedback_network(sizes, key=jax.random.key(0), rule=rule, dtype=jnp.float64)


def test_fa_matches_explicit_deltas_in_every_layer():
    x, y = _batch()
    p = _params("fa")
    grads, _, metrics = _update(get_learner("fa"), p, x, y)
    _, _, expected = _explicit(p.network, x, y, [fb.weight for fb in p.feedback])
    _assert_network_update(grads, expected)
    assert all(float(jnp.abs(fb.weight).max()) == 0 for fb in grads.feedback)  # B is fixed
    bp = bp_gradient(p.network, x, y)
    assert float(relative_error(grads.network.weights[0], bp.weights[0])) > 0.1  # hidden layers: through B, not W
    assert np.isclose(float(metrics["loss"]), 0.5 * float(jnp.sum((p.network(x) - y) ** 2)) / x.shape[0])


def test_dfa_matches_explicit_deltas_in_every_layer():
    x, y = _batch()
    p = _params("dfa")
    assert [fb.weight.shape for fb in p.feedback] == [(3, 7), (3, 6)]  # (n_L, n_l) per hidden layer
    grads, _, _ = _update(get_learner("dfa"), p, x, y)
    _, _, expected = _explicit(p.network, x, y, [fb.weight for fb in p.feedback], direct=True)
    _assert_network_update(grads, expected)


def test_kp_matches_explicit_update_in_every_layer():
    x, y = _batch()
    decay = 0.3
    p = _params("kp")
    grads, _, _ = _update(get_learner("kp", decay=decay), p, x, y)
    _, _, expected = _explicit(p.network, x, y, [fb.weight for fb in p.feedback])
    with_decay = [(gw + decay * w, gb) for (gw, gb), w in zip(expected, p.network.weights)]
    _assert_network_update(grads, with_decay)
    for l, (fb_g, fb, (gw, _)) in enumerate(zip(grads.feedback, p.feedback, expected[1:]), start=2):
        np.testing.assert_allclose(fb_g.weight, gw + decay * fb.weight, rtol=1e-11, err_msg=f"B{l}")  # W's update, plus decay


def test_wm_matches_explicit_mirror_update():
    x, y = _batch()
    sigma, decay, samples = 0.7, 0.05, 16
    p = _params("wm")
    grads, _, _ = _update(get_learner("wm", sigma=sigma, decay=decay, samples=samples), p, x, y)
    _, _, expected = _explicit(p.network, x, y, [fb.weight for fb in p.feedback])
    _assert_network_update(grads, expected)  # forward weights: FA
    _, k_feedback = jax.random.split(KEY)  # the update's key: (backward pass, feedback update)
    for k, w, fb, fb_g in zip(jax.random.split(k_feedback, 2), p.network.weights[1:], p.feedback, grads.feedback):
        xi = sigma * jax.random.normal(k, (samples, w.shape[1]), w.dtype)
        step = (xi @ w.T).T @ xi / samples - decay * fb.weight  # η⟨(Wξ)ξᵀ⟩ − λB, η = 1
        np.testing.assert_allclose(-fb_g.weight, step, rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("rule", ["usf", "frsf", "brsf"])
def test_sign_symmetry_matches_explicit_deltas(rule):
    x, y = _batch()
    p = _params(rule)
    grads, _, _ = _update(get_learner(rule), p, x, y)
    ws, mags = p.network.weights[1:], [fb.weight for fb in p.feedback]
    if rule == "brsf":  # magnitudes redrawn from the backward pass's key, at the r.m.s. of the stored ones
        k_backward, _ = jax.random.split(KEY)
        keys = [jax.random.split(k, 1)[0] for k in jax.random.split(k_backward, 2)]
        mags = [jnp.abs(jax.random.normal(k, m.shape, m.dtype)) * jnp.sqrt(jnp.mean(m**2)) for k, m in zip(keys, mags)]
    if rule == "usf":
        assert all(np.allclose(m, np.sqrt(2.0 / sum(m.shape))) for m in mags)
    _, _, expected = _explicit(p.network, x, y, [jnp.sign(w) * m for w, m in zip(ws, mags)])
    _assert_network_update(grads, expected)
    for b, w in zip(get_learner(rule).rule.backward_layers(p, jax.random.split(KEY)[0]), ws):
        assert bool(jnp.all(jnp.sign(b.weight) == jnp.sign(w)))


def test_feedback_equal_to_the_forward_weights_is_backprop():
    x, y = _batch()
    p = _params("fa")
    exact = FeedbackNetwork(p.network, tuple(linear_layer(w, None) for w in p.network.weights[1:]))
    grads, _, _ = _update(get_learner("fa"), exact, x, y)
    assert float(relative_error(grads.network, bp_gradient(p.network, x, y))) < 1e-14


def test_dfa_equals_fa_with_one_hidden_layer():
    x, y = _batch((5, 7, 3))
    fa = _params("fa", (5, 7, 3))
    g_fa, _, _ = _update(get_learner("fa"), fa, x, y)
    g_dfa, _, _ = _update(get_learner("dfa"), fa, x, y)
    assert float(relative_error(g_dfa.network, g_fa.network)) < 1e-14


def test_init_feedback_network_keeps_the_old_draws():
    """The feedback matrices are the old (n_in, n_out) draws of k_fb = split(key, 3)[1], transposed."""
    p = init_feedback_network(SIZES, key=jax.random.key(3), rule="fa")
    k_net, k_fb, _ = jax.random.split(jax.random.key(3), 3)
    np.testing.assert_array_equal(p.network.weights[0], init_network(SIZES, key=k_net).weights[0])
    for k, fb, (n_in, n_out) in zip(jax.random.split(k_fb, 2), p.feedback, [(7, 6), (6, 3)]):
        old = jnp.sqrt(2.0 / (n_in + n_out)) * jax.random.normal(k, (n_in, n_out), jnp.float32)
        np.testing.assert_allclose(fb.weight, old.T, rtol=1e-6)


# ----------------------------------------------------------------------------- every learner, and reporting


@pytest.mark.parametrize("rule", RULES)
def test_learners_update_and_report(rule):
    assert rule in learner_names()
    learner = get_learner(rule)
    x, y = _batch()
    params = learner.init(jax.random.key(0), init_network(SIZES, key=jax.random.key(1)))
    grads, _, metrics = _update(learner, params, x, y)
    assert np.isfinite(float(metrics["loss"]))
    assert _same_structure(grads, params)
    rep = feedback_report(learner, params, x, y)
    assert rep.matrix.size == 2
    assert np.all((rep.angle_B >= 0) & (rep.angle_B <= 180))
    assert np.all(rep.norm_ratio > 0)
    assert float(rep.angle_update_bp.sel(layer=3)) < 0.1  # output layer: every rule equals BP (KP adds a small decay)


def test_randomness_comes_from_the_key():
    x, y = _batch()
    for rule in ("wm", "brsf"):
        learner = get_learner(rule)
        p = learner.init(jax.random.key(0), init_network(SIZES, key=jax.random.key(1)))
        a, _, _ = _update(learner, p, x, y, jax.random.key(1))
        b, _, _ = _update(learner, p, x, y, jax.random.key(1))
        c, _, _ = _update(learner, p, x, y, jax.random.key(2))
        assert float(relative_error(a, b)) == 0 and float(relative_error(a, c)) > 1e-6, rule


def test_alignment_metrics():
    a = jnp.arange(6.0).reshape(2, 3) + 1
    assert float(alignment_angle(a, 2 * a)) < 1e-5
    assert abs(float(alignment_angle(a, -a)) - 180) < 1e-5
    assert abs(float(weight_norm_ratio(2 * a, a)) - 2) < 1e-12


def test_bad_inputs_raise():
    x, y = _batch()
    p = _params("fa")
    wrong = FeedbackNetwork(p.network, (linear_layer(p.feedback[0].weight.T, None), p.feedback[1]))
    with pytest.raises(ShapeError, match="backward layers"):
        get_learner("fa").rule.update(wrong, (), Data(x, y), KEY)
    with pytest.raises(ShapeError, match="backward layers"):
        get_learner("dfa").rule.update(_params("fa", (5, 7, 6, 4)), (), Data(x, jnp.zeros((8, 4))), KEY)  # DFA needs (n_L, n_l)
    with pytest.raises(UnknownNameError):
        init_feedback_network(SIZES, key=KEY, rule="nope")


# ----------------------------------------------------------------------------- convolutional networks


@pytest.fixture(scope="module")
def conv_problem():
    net = lenet5(key=jax.random.key(0), in_shape=(1, 16, 16), dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(1), (4, 1, 16, 16))
    y = jax.nn.one_hot(jnp.arange(4), 10)
    return net, x, y, bp_gradient(net, x, y)


@pytest.mark.parametrize("rule", ["fa", pytest.param("dfa", marks=pytest.mark.slow), pytest.param("usf", marks=pytest.mark.slow)])
def test_rules_on_a_lenet(conv_problem, rule):
    net, x, y, bp = conv_problem
    learner = get_learner(rule)
    params = learner.init(jax.random.key(2), net)
    grads, _, metrics = _update(learner, params, x, y)
    assert np.isfinite(float(metrics["loss"]))
    assert _same_structure(grads, params)
    assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(eqx.filter(grads, eqx.is_inexact_array)))
    out = grads.network.layers
    np.testing.assert_allclose(out[-1].weight, bp.layers[-1].weight, rtol=1e-10, atol=1e-14)  # output layer: BP's
    assert float(relative_error(out[0].weight, bp.layers[0].weight)) > 0.1  # first conv layer: through B
    rep = feedback_report(learner, params, x, y)  # does not crash on a conv net
    assert rep.layer.size == 5 and np.all(np.isfinite(rep.angle_update_bp))


def test_fa_feedback_of_a_conv_layer_is_a_conv_copy(conv_problem):
    net, *_ = conv_problem
    p = get_learner("fa").init(jax.random.key(2), net)
    conv_b, conv_w = p.feedback[0].layers[1], net.layers[1].layers[1]  # [pool, conv] of layer 2
    assert type(conv_b) is type(conv_w) and conv_b.weight.shape == conv_w.weight.shape
    assert float(jnp.abs(conv_b.bias).max()) == 0  # biases need no feedback
    assert float(alignment_angle(conv_b.weight, conv_w.weight)) > 45  # independent random draw


# ----------------------------------------------------------------------------- training


def test_fa_learns_digits():
    from dynlearn.data import load_digits
    from dynlearn.learning import train

    _, hist = train(get_learner("fa"), load_digits(), hidden=(32,), epochs=8, lr=1e-2, progress=False)
    assert float(hist.test_accuracy[-1]) > 0.8


def test_fashion_mnist_small_run_or_skip():
    from dynlearn.data import DataUnavailableError, load_fashion_mnist
    from dynlearn.learning import train

    try:
        data = load_fashion_mnist(n_train=2048, n_test=512)
    except DataUnavailableError:
        pytest.skip("Fashion-MNIST files not installed (apt-get install dataset-fashion-mnist)")
    _, hist = train(get_learner("usf"), data, hidden=(64,), epochs=3, lr=3e-3, progress=False)
    assert float(hist.test_accuracy[-1]) > 0.6  # 10 classes: chance is 0.1
