"""The feedback-alignment family: one custom-VJP mechanism, the learners, and three theorem checks that must also fail."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynlearn.analysis import alignment_angle, bp_gradient, feedback_report, relative_error, weight_norm_ratio
from dynlearn.errors import ShapeError, UnknownNameError
from dynlearn.models import get_learner, learner_names
from dynlearn.models.feedback import FeedbackNetwork, feedback_matmul, init_feedback_network, kp_learner, mirror_update, rule_update
from dynlearn.models.registry import Learner
from dynlearn.theorems import run_check

RULES = ["fa", "dfa", "kp", "wm", "usf", "brsf", "frsf"]


def _batch(sizes=(5, 7, 6, 3), n=8, seed=1):
    x = jax.random.normal(jax.random.key(seed), (n, sizes[0]))
    y = jax.random.normal(jax.random.key(seed + 1), (n, sizes[-1]))
    return x, y


# ----------------------------------------------------------------------------- broken components (must fail)


def broken_kp_factory(**options):
    """KP whose backward matrices only decay: they never receive the transposed update."""
    good = kp_learner(**options)
    decay = options["decay"]

    def update(params, x, y):
        grads, metrics = good.update(params, x, y)
        return eqx.tree_at(lambda g: g.feedback, grads, tuple(decay * b for b in params.feedback)), metrics

    return Learner("kp_broken", good.init, update, good.predict)


class FlippedFA(FeedbackNetwork):
    """FA whose backward pass uses -B while the reported backward matrix is B (a sign bug)."""

    def backward_matrices(self, key=None):
        return tuple(-b for b in super().backward_matrices(key))

    def backward_pairs(self):
        return [(f"B{l + 2}", b, w.T) for l, (b, w) in enumerate(zip(self.feedback, self.network.weights[1:]))]


def decorrelated_mirror(network, feedback, key, *, sigma, decay, samples, eta):
    """Weight mirror whose response comes from a fresh noise sample, not the injected one."""
    k1, k2 = jax.random.split(key)
    a = mirror_update(network, feedback, k1, sigma=sigma, decay=0.0, samples=samples, eta=0.0)  # zeros, keeps shapes
    out = []
    for k, w, b, z in zip(jax.random.split(k2, len(feedback)), network.weights[1:], feedback, a):
        k_in, k_out = jax.random.split(k)
        xi = sigma * jax.random.normal(k_in, (samples, w.shape[1]), w.dtype)
        other = sigma * jax.random.normal(k_out, (samples, w.shape[1]), w.dtype)
        out.append(z + eta * jnp.einsum("si,so->io", xi, other @ w.T) / samples - decay * b)
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
    r = run_check("fa_alignment", network_cls=FlippedFA, seeds=(0, 1), steps=600, cache=False)
    assert r.passed is False
    assert r.verdict.measured["final_angle_worst_seed"] > 90  # W aligns with -B


def test_weight_mirror_fixed_point(results):
    r = results["weight_mirror_fixed_point"]
    assert r.passed, r.verdict.summary()
    assert r.verdict.measured["final_angle_worst"] < 5
    assert r.verdict.measured["start_angle"] > 45


def test_weight_mirror_fails_with_decorrelated_noise():
    r = run_check("weight_mirror_fixed_point", mirror_fn=decorrelated_mirror, seeds=(0,), steps=200, cache=False)
    assert r.passed is False
    assert r.verdict.measured["final_angle_worst"] > 45


# ----------------------------------------------------------------------------- the mechanism


def test_feedback_matmul_with_transpose_is_backprop():
    x, y = _batch()
    p = init_feedback_network((5, 7, 6, 3), key=jax.random.key(0), rule="bp", dtype=jnp.float64)
    grads, _ = rule_update(p, x, y)
    assert float(relative_error(grads.network, bp_gradient(p.network, x, y))) < 1e-14


def test_feedback_matmul_cotangents():
    w = jax.random.normal(jax.random.key(0), (3, 4))
    b = jax.random.normal(jax.random.key(1), (4, 3))
    h = jax.random.normal(jax.random.key(2), (5, 4))
    g = jax.random.normal(jax.random.key(3), (5, 3))
    _, vjp = jax.vjp(feedback_matmul, w, h, b)
    gw, gh, gb = vjp(g)
    np.testing.assert_allclose(gw, g.T @ h, rtol=1e-12)
    np.testing.assert_allclose(gh, g @ b.T, rtol=1e-12)  # B δ, not Wᵀ δ
    np.testing.assert_allclose(gb, gw.T, rtol=1e-12)


def test_dfa_equals_fa_with_one_hidden_layer():
    x, y = _batch((5, 7, 3))
    fa = init_feedback_network((5, 7, 3), key=jax.random.key(0), rule="fa", dtype=jnp.float64)
    dfa = FeedbackNetwork(fa.network, fa.feedback, fa.key, "dfa")
    g_fa, _ = rule_update(fa, x, y)
    g_dfa, _ = rule_update(dfa, x, y)
    assert float(relative_error(g_dfa.network, g_fa.network)) < 1e-14


def test_kp_backward_gets_transposed_update():
    x, y = _batch()
    p = init_feedback_network((5, 7, 6, 3), key=jax.random.key(0), rule="kp", dtype=jnp.float64)
    grads, _ = rule_update(p, x, y, kp_decay=0.0)
    for gw, gb in zip(grads.network.weights[1:], grads.feedback):
        np.testing.assert_allclose(gb, gw.T, rtol=1e-12)


def test_fa_hidden_update_uses_b_not_wt():
    x, y = _batch()
    p = init_feedback_network((5, 7, 6, 3), key=jax.random.key(0), rule="fa", dtype=jnp.float64)
    grads, _ = rule_update(p, x, y)
    bp = bp_gradient(p.network, x, y)
    np.testing.assert_allclose(grads.network.weights[-1], bp.weights[-1], rtol=1e-12)  # output layer: exact
    assert float(relative_error(grads.network.weights[0], bp.weights[0])) > 0.1  # hidden: through B
    assert all(float(jnp.abs(g).max()) == 0 for g in grads.feedback)  # B fixed


@pytest.mark.parametrize("rule", RULES)
def test_learners_update_and_report(rule):
    assert rule in learner_names()
    learner = get_learner(rule)
    x, y = _batch()
    params = learner.init(jax.random.key(0), (5, 7, 6, 3))
    grads, metrics = eqx.filter_jit(learner.update)(params, x, y)
    assert np.isfinite(float(metrics["loss"]))
    assert jax.tree.structure(eqx.filter(grads, eqx.is_inexact_array)) == jax.tree.structure(eqx.filter(params, eqx.is_inexact_array))
    rep = feedback_report(learner, params, x, y)
    assert np.all((rep.angle_B >= 0) & (rep.angle_B <= 180))
    assert np.all(rep.norm_ratio > 0)
    assert float(rep.angle_update_bp.sel(layer=3)) < 0.1  # output layer: every rule equals BP (KP adds a small decay)


def test_sign_symmetry_is_sign_concordant():
    p = get_learner("frsf").init(jax.random.key(0), (5, 7, 6, 3))
    for b, w in zip(p.backward_matrices(), p.network.weights[1:]):
        assert bool(jnp.all(jnp.sign(b) == jnp.sign(w.T)))
    assert float(alignment_angle(p.backward_matrices()[0], p.network.weights[1].T)) < 60


def test_alignment_metrics():
    a = jnp.arange(6.0).reshape(2, 3) + 1
    assert float(alignment_angle(a, 2 * a)) < 1e-5
    assert abs(float(alignment_angle(a, -a)) - 180) < 1e-5
    assert abs(float(weight_norm_ratio(2 * a, a)) - 2) < 1e-12


def test_bad_inputs_raise():
    p = init_feedback_network((5, 7, 6, 3), key=jax.random.key(0), rule="fa")
    with pytest.raises(ShapeError, match="backward matrices"):
        FeedbackNetwork(p.network, (p.feedback[0].T, p.feedback[1]), p.key, "fa")
    with pytest.raises(UnknownNameError, match="unknown feedback rule"):
        FeedbackNetwork(p.network, p.feedback, p.key, "nope")
    with pytest.raises(ShapeError, match="backward matrices"):
        FeedbackNetwork(p.network, p.feedback, p.key, "dfa")  # DFA needs (n_l, n_L) matrices


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
