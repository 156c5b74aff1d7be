"""Predictive coding in rate form (``form="post"``): its errors, weight update and weak-nudge limit against
independent formulas on a tiny network, and the learner option that selects it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynlearn import ConfigError, init_network
from dynlearn.analysis import bp_gradient
from dynlearn.config import THEOREM
from dynlearn.models.base import Data
from dynlearn.models.pc import PredictiveCoding, pc_update
from dynlearn.rules import get_learner

SIZES = (4, 6, 5, 3)


@pytest.fixture(scope="module")
def problem():
    net = init_network(SIZES, key=jax.random.key(0), activation="tanh", bias_scale=0.1, dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(1), (5, SIZES[0]), jnp.float64)
    y = jax.random.normal(jax.random.key(2), (5, SIZES[-1]), jnp.float64)
    return net, x, y


def _hand_post_gradient(net, xs):
    """∂E/∂W_l = -(φ'(a_l) ⊙ ε_l) h_{l-1}ᵀ, ∂E/∂b_l = -Σ φ'(a_l) ⊙ ε_l (linear output: φ' = 1), written out."""
    W, b = net.weights, net.biases
    L = len(W)
    grads_w, grads_b = [], []
    for l in range(L):
        a = xs[l] @ W[l].T + b[l]
        pred, gate = (a, jnp.ones_like(a)) if l == L - 1 else (jnp.tanh(a), 1 - jnp.tanh(a) ** 2)
        d = gate * (xs[l + 1] - pred)
        grads_w.append(-(d.T @ xs[l]))
        grads_b.append(-d.sum(0))
    return grads_w, grads_b


def test_post_form_feedforward_state_has_zero_errors(problem):
    net, x, _ = problem
    m = PredictiveCoding(net, "free", "post")
    state = m.init_state(Data(x))
    np.testing.assert_allclose(state[0], jnp.tanh(x @ net.weights[0].T + net.biases[0]), rtol=0, atol=1e-15)  # rates
    assert max(float(jnp.max(jnp.abs(e))) for e in m.errors(state, Data(x))) == 0.0
    np.testing.assert_allclose(state[-1], net(x), rtol=0, atol=1e-15)  # the output is the network's (linear)


def test_post_form_update_equals_the_written_out_rule_in_every_layer(problem):
    """At a random state (not an equilibrium), the library's ∂E/∂θ equals the hand formula; the "pre" form's does not."""
    net, x, y = problem
    keys = jax.random.split(jax.random.key(3), len(SIZES) - 2)
    hidden = tuple(jax.random.normal(k, (5, n), jnp.float64) for k, n in zip(keys, SIZES[1:-1]))
    data = Data(x, y)
    hand_w, hand_b = _hand_post_gradient(net, [x, *hidden, y])
    got = PredictiveCoding(net, "clamped", "post").parameter_gradient(hidden, data)
    for l in range(len(SIZES) - 1):
        np.testing.assert_allclose(got.weights[l], hand_w[l], rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(got.biases[l], hand_b[l], rtol=1e-12, atol=1e-13)
    pre = PredictiveCoding(net, "clamped", "pre").parameter_gradient(hidden, data)
    assert max(float(jnp.max(jnp.abs(pre.weights[l] - hand_w[l]))) for l in range(len(SIZES) - 2)) > 1e-3


def test_post_form_weak_nudge_limit_is_backprop(problem):
    """γ → 0: the nudged equilibrium's update / γ tends to BP's gradient of ½‖ŷ − y‖² in every layer."""
    net, x, y = problem
    bp = bp_gradient(net, x, y)
    errs = []
    for gamma in (1e-3, 1e-4):
        u = pc_update(PredictiveCoding(net, "nudged", "post"), Data(x, y, gamma), THEOREM.replace(polish=True))
        errs.append(max(float(jnp.linalg.norm(u.weights[l] / gamma - bp.weights[l]) / jnp.linalg.norm(bp.weights[l])) for l in range(len(SIZES) - 1)))
    # O(γ) (error ≈ 7.8 γ in the worst layer here): a ten times smaller nudge gives a ten times smaller error
    assert errs[1] < 1e-3 and 0.05 < errs[1] / errs[0] < 0.2


def test_learner_form_option_and_its_validation(problem):
    learner = get_learner("pc/clamped", activation="relu", form="post")
    assert learner.rule.form == "post" and learner.defaults["form"] == "post"
    assert get_learner("pc").rule.form == "pre"
    with pytest.raises(ConfigError, match="form"):
        get_learner("pc", form="rates")
    with pytest.raises(ValueError, match="form"):
        PredictiveCoding(problem[0], "clamped", "rates")


def test_the_model_name_states_the_output_the_form_only_when_it_is_post_and_the_sizes(problem):
    """The name that errors and results carry: ``PredictiveCoding(output=..., [form='post', ]sizes=...)``."""
    net = problem[0]
    assert PredictiveCoding(net).name == f"PredictiveCoding(output='clamped', sizes={SIZES})"
    assert PredictiveCoding(net, "nudged", "post").name == f"PredictiveCoding(output='nudged', form='post', sizes={SIZES})"


def test_the_model_is_a_pytree_of_arrays_that_plain_jax_jit_takes(problem):
    """Output mode and form are static: the model's leaves are arrays only, so ``jax.jit`` (not only
    ``eqx.filter_jit``) takes it as an argument and gives the eager energy."""
    net, x, y = problem
    for output, form in (("clamped", "pre"), ("nudged", "post")):
        model = PredictiveCoding(net, output, form)
        assert all(isinstance(a, jax.Array) for a in jax.tree.leaves(model))
        data = Data(x, y, 0.1)
        state = model.init_state(data)
        state = jax.tree.map(lambda s: s + 0.01, state)
        np.testing.assert_allclose(jax.jit(lambda m, s: m.energy(s, data))(model, state), model.energy(state, data), rtol=1e-12)
