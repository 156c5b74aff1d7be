"""Activation learning (Zhou 2022) and the IB-Hebbian rule with working memory (Daruwalla & Lipasti 2024)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynlearn.data import load
from dynlearn.dynamics import simulate
from dynlearn.errors import ConfigError
from dynlearn.learning import train
from dynlearn.models.base import Data
from dynlearn.models.hebbian.activation_learning import (
    competitive_update,
    output_activation,
    unit,
)
from dynlearn.models.hebbian.ib_hebbian import (
    ib_objective,
    layer_modulator,
    window_gradients,
)
from dynlearn.models.hebbian.ib_memory import (
    Reservoir,
    exact_windows,
    fit_readout,
    recall,
    run_reservoir,
)
from dynlearn.networks import init_network
from dynlearn.rules.base import get_learner
from dynlearn.theorems import run_check
from dynlearn.theorems.hebbian_local import _subset


@pytest.fixture(scope="module")
def digits():
    return load("digits")


# ----------------------------------------------------------------------------- activation learning


def test_activation_likelihood_passes_and_fails_without_competition():
    good = run_check("activation_likelihood", quick=True)
    assert good.verdict.passed, good.verdict.summary()
    bad = run_check("activation_likelihood", quick=True, competition=False)
    assert not bad.verdict.passed and "spearman_rho" in bad.verdict.failed, bad.verdict.summary()


def _principal(v, k):
    c = v.T @ v / v.shape[0]
    _, evecs = np.linalg.eigh(np.asarray(c))
    return jnp.asarray(evecs[:, ::-1][:, :k].T)


def test_competitive_rule_fixes_any_basis_of_the_principal_subspace():
    """Oja's subspace rule: every orthonormal basis Q U of the top-k eigenspace is a zero of the mean flow; the rule
    without competition (Oja's single-unit rule per neuron) fixes only the eigenvectors themselves."""
    v = unit(jax.random.normal(jax.random.key(0), (400, 6)) * jnp.array([3.0, 2.0, 1.5, 1.0, 0.5, 0.3]))
    u = _principal(v, 3)
    q = jnp.linalg.qr(jax.random.normal(jax.random.key(1), (3, 3)))[0]
    rotated = q @ u
    assert float(jnp.max(jnp.abs(competitive_update(u, v)))) < 1e-12
    assert float(jnp.max(jnp.abs(competitive_update(rotated, v)))) < 1e-12
    assert float(jnp.max(jnp.abs(competitive_update(u, v, competition=False)))) < 1e-12
    assert float(jnp.max(jnp.abs(competitive_update(rotated, v, competition=False)))) > 1e-3
    # the activation of an orthonormal W is the squared length of the projection: ||v||^2 - reconstruction error
    a = output_activation([rotated], v)
    assert np.allclose(a, 1.0 - jnp.sum((v - (v @ rotated.T) @ rotated) ** 2, axis=-1), atol=1e-12)


def test_activation_learning_update_is_minus_the_hebbian_change():
    learner = get_learner("activation_learning", activation="linear")
    params = learner.init(jax.random.key(0), init_network((5, 4, 3), key=jax.random.key(1), dtype=jnp.float64))
    x = jax.random.uniform(jax.random.key(2), (7, 5))
    y = jax.nn.one_hot(jnp.arange(7) % 3, 3)
    grads, _, _ = eqx.filter_jit(learner.rule.update)(params, (), Data(x, y), jax.random.key(3))
    v = params.joint(x, y)
    w = params.network.weights[0]
    hebb = ((v @ w.T).T @ (v - (v @ w.T) @ w)) / 7  # Δw_ij = <h_i (v_j - sum_k w_kj h_k)>
    assert np.allclose(grads.network.weights[0], -hebb, atol=1e-12)
    assert np.allclose(grads.network.biases[0], 0.0)
    scores = learner.predict(params, x)
    assert scores.shape == (7, 3) and np.all(np.isfinite(scores))


def test_activation_learning_trains_on_digits(digits):
    learner = get_learner("activation_learning")
    _, hist = train(learner, digits, hidden=(64,), epochs=3, lr=3e-2, progress=False)
    assert float(hist.test_accuracy[-1]) > 0.6  # chance is 0.1


def test_fewshot_subset_has_the_requested_shots(digits):
    sub = _subset(digits, 5, seed=0, min_rows=100)
    assert sub.x_train.shape[0] == 100  # 50 examples, twice
    assert np.unique(sub.x_train, axis=0).shape[0] == 50
    assert np.all(np.bincount(sub.labels_train) == 10)
    assert np.allclose(sub.y_train.argmax(-1), sub.labels_train)


def test_bad_options_raise_config_errors():
    with pytest.raises(ConfigError, match="label_gain"):
        get_learner("activation_learning", label_gain=-1.0)
    with pytest.raises(ConfigError, match="capacity"):
        get_learner("ib_hebbian", capacity=1)
    with pytest.raises(ConfigError, match="memory"):
        get_learner("ib_hebbian", memory="tape")
    with pytest.raises(ConfigError, match="reservoir_size"):
        get_learner("ib_hebbian", memory="reservoir")


# ----------------------------------------------------------------------------- IB-Hebbian


def _window(key, b=5, n_x=4, n_y=3, n_z=6):
    kx, ky, kz = jax.random.split(key, 3)
    return jax.random.normal(kx, (b, n_x)), jax.nn.one_hot(jax.random.randint(ky, (b,), 0, n_y), n_y), jax.random.normal(kz, (b, n_z))


def test_hsic_objective_matches_the_trace_formula():
    x, y, z = _window(jax.random.key(0))
    b = x.shape[0]

    def k(a):
        d = np.sum((np.asarray(a)[:, None] - np.asarray(a)[None]) ** 2, -1)
        return np.exp(-d / (2 * 0.5**2 * a.shape[1]))

    h = np.eye(b) - 1.0 / b
    expected = (np.trace(k(x) @ h @ k(z) @ h) - 2.0 * np.trace(k(y) @ h @ k(z) @ h)) / (b - 1) ** 2
    assert abs(float(ib_objective(z, x, y, gamma=2.0, sigma=0.5)) - expected) < 1e-12


def test_layer_modulator_is_the_gradient_of_the_objective():
    x, y, z = _window(jax.random.key(1))
    auto = jax.grad(lambda z: ib_objective(z, x, y, gamma=3.0, sigma=0.7))(z)
    assert np.allclose(layer_modulator(z, x, y, gamma=3.0, sigma=0.7), auto, atol=1e-13)


def test_three_factor_updates_sum_to_the_batch_gradient():
    """Every sample of a batch as the current one (windows = cyclic rotations of the batch): the summed
    modulator × Hebbian updates are the autodiff gradient of the first layer's objective."""
    b = 6
    x = jax.random.normal(jax.random.key(2), (b, 4))
    y = jax.nn.one_hot(jnp.arange(b) % 3, 3)
    net = init_network((4, 5, 3), key=jax.random.key(3), activation="tanh", bias_scale=0.3, dtype=jnp.float64)
    rot = jnp.stack([jnp.roll(jnp.arange(b), -(i + 1)) for i in range(b)])  # current sample i last
    (dw, db), = eqx.filter_jit(lambda n, a, b: window_gradients(n, a, b, gamma=2.0, sigma=0.6))(net, x[rot], y[rot])[0]

    def loss(w, bias):
        return ib_objective(jnp.tanh(x @ w.T + bias), x, y, gamma=2.0, sigma=0.6)

    gw, gb = jax.grad(loss, argnums=(0, 1))(net.weights[0], net.biases[0])
    assert np.allclose(b * dw, gw, atol=1e-13) and np.allclose(b * db, gb, atol=1e-13)


@pytest.mark.slow  # default run under 10 min on 2 cores; runs with -m slow
def test_reservoir_flow_map_is_the_ode_flow():
    res = Reservoir.random(7, 3, key=jax.random.key(4), leak=0.7)
    phi, gam = res.flow_map()
    r0, s = jax.random.normal(jax.random.key(5), (7,)), jax.random.normal(jax.random.key(6), (3,))
    traj = simulate(lambda t, r, s: res.field(t, r, s), r0, s, t1=res.interval, dt0=1e-3, solver="tsit5")
    assert np.allclose(traj.final, phi @ r0 + gam @ s, atol=1e-9)


def test_cleared_reservoir_recalls_the_window_exactly():
    b, d_s = 3, 4
    res = Reservoir.random(b * d_s + 4, d_s, key=jax.random.key(7))
    phi, gam = res.flow_map()
    readout = fit_readout(phi, gam, b, key=jax.random.key(8))
    stream = jax.random.normal(jax.random.key(9), (b, d_s))
    state = run_reservoir(phi, gam, stream)[0]
    assert np.allclose(recall(readout, state[None], b)[0], exact_windows(stream, b)[0], atol=1e-9)


def test_ib_memory_modulator_passes_and_its_twins_fail():
    good = run_check("ib_memory_modulator", quick=True)
    assert good.verdict.passed, good.verdict.summary()
    running = run_check("ib_memory_modulator", quick=True, memory="running")  # older samples interfere
    assert "memory_error" in running.verdict.failed, running.verdict.summary()
    small = run_check("ib_memory_capacity", quick=True)  # N < B·D_s cannot hold the window
    err = small.data.modulator_error.sel(memory="cleared", capacity=4).max("seed")
    assert float(err.sel(size=24)) > 1e-3 and float(err.sel(size=48)) < 1e-10


def test_ib_hebbian_trains_on_digits(digits):
    _, hist = train(get_learner("ib_hebbian"), digits, hidden=(64,), epochs=2, lr=1e-2, progress=False)
    assert float(hist.test_accuracy[-1]) > 0.6


@pytest.mark.slow
def test_ib_hebbian_trains_with_a_reservoir_memory(digits):
    _, hist = train(get_learner("ib_hebbian", capacity=2, memory="reservoir", reservoir_size=160), digits, hidden=(32,), epochs=1,
                    lr=1e-2, progress=False)
    assert np.isfinite(float(hist.test_accuracy[-1]))
