"""PC in the standard regime (precisions, closed forms, TP/BP limits, EM), positive-rate PC and incremental PC."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynlearn.data import Dataset, load
from dynlearn.errors import ConfigError
from dynlearn.learning import train
from dynlearn.models.base import Data, equilibrium
from dynlearn.models.pc_incremental import IncrementalPC
from dynlearn.models.pc_positive import PositivePC, kkt_residuals
from dynlearn.models.pc_standard import (
    PrecisionPC,
    linear_equilibrium,
    linear_equilibrium_energy,
)
from dynlearn.networks import init_network
from dynlearn.rules import get_learner
from dynlearn.theorems import run_check
from dynlearn.theorems.pc_standard import (
    CHECK,
    pc_em_critical_point,
    pc_linear_equilibrium,
    pc_positive_kkt,
    pc_tp_interpolation,
)

QUICK = ("pc_linear_equilibrium", "pc_tp_interpolation", "pc_em_critical_point", "pc_positive_kkt")


@pytest.mark.parametrize("name", QUICK)
def test_check_passes(name):
    assert run_check(name, quick=True).passed


# -- broken variants (must-fail twins) ------------------------------------------------------------------------


class UnweightedPC(PrecisionPC):
    """Drops the precisions from the energy."""

    def energy(self, state, data):
        return sum(0.5 * jnp.sum(e**2) for e in self.errors(state, data))


class SwappedPC(PrecisionPC):
    """Puts the precisions on the wrong layers (reversed)."""

    def energy(self, state, data):
        p = self.precisions[::-1]
        return sum(0.5 * p[i] * jnp.sum(e**2) for i, e in enumerate(self.errors(state, data)))


class UnprojectedPC(PositivePC):
    """The plain gradient flow: the non-negativity projection dropped."""

    def vector_field(self, t, state, data):
        return tuple(-g for g in self.drive(state, data))


class FlippedFeedbackPC(PositivePC):
    """The top-down term with the wrong sign."""

    def drive(self, state, data):
        eps = self.errors(state, data)
        mats = self.network.weights[1:] if self.feedback is None else self.feedback
        return tuple(eps[k] + eps[k + 1] @ mats[k] for k in range(len(state)))


def test_linear_equilibrium_fails_without_precisions():
    _, v = pc_linear_equilibrium(depths=(1,), precision_sets=2, model_cls=UnweightedPC)
    assert not v.passed and v.measured["max_state_error"] > 1e-3


def test_tp_interpolation_fails_with_swapped_precisions():
    _, v = pc_tp_interpolation(seeds=(0,), ratios=tuple(np.logspace(-3, 3, 4)), fit_decades=1.0, model_cls=SwappedPC)
    assert not v.passed


def test_em_fails_for_ascent():
    _, v = pc_em_critical_point(steps=10, ascent=True)
    assert not v.passed and v.measured["max_relative_energy_rise"] > 1e-6
    assert {"energy_grad_fall", "bottleneck_bp_grad_fall"} <= set(v.failed)


def test_em_fails_when_the_library_equilibrium_does_not_relax(monkeypatch):
    """Break the library path the check runs through: ``equilibrium`` hands back its starting state unrelaxed (the
    feedforward pass, where the hidden errors are zero). The bottleneck then stops short of backprop's optimum."""
    import types

    import dynlearn.theorems.pc_standard as mod

    monkeypatch.setattr(mod, "equilibrium", lambda model, data, config, state0: types.SimpleNamespace(state=state0, residual=jnp.zeros(())))
    _, v = pc_em_critical_point(steps=100)
    assert {"bottleneck_bp_grad_fall", "bottleneck_loss_over_optimum_error"} <= set(v.failed), v.summary()


def test_em_refuses_a_student_of_another_shape():
    from dynlearn.errors import ConfigError

    with pytest.raises(ConfigError, match="bottleneck=\\(4, 1, 2\\)"):
        pc_em_critical_point(bottleneck=(4, 1, 2))


def test_em_fails_without_inference():
    """The M-step at the feedforward state (no E-step): only the output layer learns, so the bottleneck student stops
    short of backprop's optimum."""
    _, v = pc_em_critical_point(infer=False)
    assert set(v.failed) == {"bottleneck_bp_grad_fall", "bottleneck_loss_over_optimum_error"}
    assert v.measured["bottleneck_loss_over_optimum_error"] > 0.1


def test_rank_one_optimum_is_the_best_rank_one_fit():
    """The Eckart–Young reference against a direct search: least squares of y on x through every rank-1 direction u
    of the output space (u fixed, the rest linear least squares), minimised over a fine grid of angles."""
    from dynlearn.theorems.pc_standard import _rank_one_optimum

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (16, 3))
    y = x @ rng.normal(size=(3, 2)) + rng.normal(size=2)
    best = np.inf
    for a in np.linspace(0, np.pi, 20001):
        u = np.array([np.cos(a), np.sin(a)])
        # ŷ = u (vᵀx) + c: the free offset c centres both; v is least squares of the projection yc·u on xc
        yc, xc = y - y.mean(0), x - x.mean(0)
        proj = yc @ u
        v = np.linalg.lstsq(xc, proj, rcond=None)[0]
        best = min(best, 0.5 * np.sum((yc - np.outer(xc @ v, u)) ** 2))
    assert abs(best / _rank_one_optimum(y) - 1) < 1e-6


@pytest.mark.parametrize("cls", [UnprojectedPC, FlippedFeedbackPC])
def test_positive_kkt_fails_for_broken_flows(cls):
    _, v = pc_positive_kkt(seeds=(0,), n_times=11, model_cls=cls)
    assert not v.passed


# -- closed forms against independent formulas on a tiny case ---------------------------------------------------


def _linear_problem():
    net = init_network((3, 4, 5, 2), key=jax.random.key(3), activation="linear", bias_scale=0.2, dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(4), (2, 3), jnp.float64)
    y = jax.random.normal(jax.random.key(5), (2, 2), jnp.float64)
    return net, x, y, jnp.array([0.5, 2.0, 3.0])


def test_linear_closed_forms_match_numpy_least_squares():
    """Minimise F = sum_l pi_l/2 |x_l - W_l x_{l-1} - b_l|^2 as one weighted least-squares problem (numpy lstsq)."""
    net, x, y, p = _linear_problem()
    (w1, w2, w3), (b1, b2, b3) = [np.asarray(w) for w in net.weights], [np.asarray(b) for b in net.biases]
    s = np.sqrt(np.asarray(p))
    for n in range(x.shape[0]):
        x0, yn = np.asarray(x[n]), np.asarray(y[n])
        a = np.block([[s[0] * np.eye(4), np.zeros((4, 5))], [-s[1] * w2, s[1] * np.eye(5)], [np.zeros((2, 4)), -s[2] * w3]])
        c = np.concatenate([s[0] * (w1 @ x0 + b1), s[1] * b2, s[2] * (b3 - yn)])
        z, *_ = np.linalg.lstsq(a, c, rcond=None)
        got = linear_equilibrium(net, x[n : n + 1], y[n : n + 1], p)
        np.testing.assert_allclose(np.concatenate([np.asarray(g[0]) for g in got]), z, rtol=1e-10, atol=1e-12)
    closed = linear_equilibrium(net, x, y, p)
    energy = PrecisionPC(net, p).energy(closed, Data(x, y))
    np.testing.assert_allclose(float(linear_equilibrium_energy(net, x, y, p)), float(energy), rtol=1e-10)


def test_kkt_residuals_on_a_hand_made_point():
    """x = (0, 1) with drive g = (2, 0): a KKT point; x = (0, 1), g = (-1, 0): dual infeasible."""
    net = init_network((1, 2, 1), key=jax.random.key(0), activation="linear", dtype=jnp.float64)

    class Fixed(PositivePC):
        g: jax.Array = eqx.field(default=None)

        def drive(self, state, data):
            return (self.g,)

    data = Data(jnp.ones((1, 1)), jnp.ones((1, 1)))
    good = kkt_residuals(Fixed(net, None, g=jnp.array([[2.0, 0.0]])), (jnp.array([[0.0, 1.0]]),), data)
    bad = kkt_residuals(Fixed(net, None, g=jnp.array([[-1.0, 0.0]])), (jnp.array([[0.0, 1.0]]),), data)
    assert float(good["complementarity"]) == 0.0 and float(good["active_fraction"]) == 0.5
    assert float(bad["complementarity"]) == 1.0 and float(bad["dual"]) == 1.0


# -- incremental PC -----------------------------------------------------------------------------------------------


@pytest.mark.slow  # default run under 10 min on 2 cores; runs with -m slow
def test_ipc_joint_flow_never_raises_energy():
    net = init_network((4, 6, 3), key=jax.random.key(1), activation="tanh", dtype=jnp.float64)
    data = Data(jax.random.normal(jax.random.key(2), (5, 4), jnp.float64), jax.random.normal(jax.random.key(3), (5, 3), jnp.float64))
    model = IncrementalPC(net, 0.5)
    eq = equilibrium(model, data, CHECK.replace(steady=False, t1=5.0), save_ts=jnp.linspace(0, 5, 51))
    e = np.asarray(jax.vmap(lambda s: model.energy(s, data))(eq.ys))
    assert np.all(np.diff(e) <= 1e-12 * abs(e[0])) and e[-1] < 0.5 * e[0]


@pytest.mark.slow
def test_ipc_sgd_step_equals_in_flow_weight_change():
    """With SGD at lr = weight_rate * t1 the step lands on the weights the joint flow reached."""
    d = load("digits")
    tiny = Dataset("tiny", d.x_train[:32], d.y_train[:32], d.x_test[:16], d.y_test[:16])
    learner = get_learner("ipc", weight_rate=0.2, t1=2.0)
    params, _ = train(learner, tiny, hidden=(8,), epochs=1, batch_size=32, optimizer="sgd", lr=0.4, progress=False)
    start, _ = train(learner, tiny, hidden=(8,), epochs=1, batch_size=32, optimizer="sgd", lr=1e-30, progress=False)
    model = IncrementalPC(start, 0.2)
    x, y = jnp.asarray(tiny.x_train), jnp.asarray(tiny.y_train)
    eq = equilibrium(model, Data(x, y), learner.rule.config)  # one batch of 32 = the whole set, in any order
    for a, b in zip(jax.tree.leaves(eqx.filter(params, eqx.is_inexact_array)), jax.tree.leaves(eqx.filter(eq.state[1], eqx.is_inexact_array))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


# -- learners -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,opts", [("pc/positive", {"feedback": "symmetric"}), ("ipc", {})])
def test_learners_train_and_reduce_loss(name, opts):
    """The training loss falls over 3 epochs on a small subset."""
    d = load("digits")
    small = Dataset("small", d.x_train[:256], d.y_train[:256], d.x_test[:128], d.y_test[:128])
    _, h = train(get_learner(name, **opts), small, hidden=(16,), epochs=3, batch_size=64, lr=3e-3, progress=False)
    loss = h["train_loss"].values
    assert np.all(np.isfinite(loss)) and loss[-1] < 0.9 * loss[0]


@pytest.mark.parametrize("name,opts", [("pc/positive", {"feedback": "mirror"}), ("pc/positive", {"decay": -1.0}), ("ipc", {"t1": 0.0}), ("ipc", {"weight_rate": -1})])
def test_bad_options_raise(name, opts):
    with pytest.raises(ConfigError):
        get_learner(name, **opts)
