"""Predictive coding: the five theorem checks, each also shown to fail on a deliberately broken model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynlearn import NonFiniteError, NotConvergedError, ShapeError, init_network
from dynlearn.models.base import equilibrium
from dynlearn.models.pc import FixedPredictionPC, PredictiveCoding, pc_update
from dynlearn.theorems import run_check

# ----------------------------------------------------------------------------- broken models (must fail)


class AscentPC(PredictiveCoding):
    """Sign error in the inference flow: climbs the energy instead of descending it."""

    def vector_field(self, t, state, *data):
        return jax.tree.map(jnp.negative, super().vector_field(t, state, *data))


class TransposedPC(PredictiveCoding):
    """Uses W_l^T instead of W_l for square layers in the prediction (a classic indexing bug)."""

    def errors(self, state, x, y=None):
        xs = self.layers(state, x, y)
        net = self.network
        out = []
        for l in range(1, net.depth + 1):
            w = net.weights[l - 1]
            w = w.T if w.shape[0] == w.shape[1] else w
            out.append(xs[l] - (jnp.einsum("oi,...i->...o", w, net.presynaptic(l, xs[l - 1])) + net.biases[l - 1]))
        return out


class WrongNudgePC(PredictiveCoding):
    """Nudges the output away from the target (sign error in the cost term)."""

    def energy(self, state, x, y=None, gamma=0.0):
        return super().energy(state, x, y, -gamma)


class NoDerivativeFixedPrediction(FixedPredictionPC):
    """Propagates errors with W^T but forgets the activation's derivative."""

    def vector_field(self, t, state, x, y, nudge=None):
        eps = self.errors(state, x, y)
        net = self.network
        return tuple(-eps[l - 1] + eps[l] @ net.weights[l] for l in range(1, net.depth))


# ----------------------------------------------------------------------------- the checks


@pytest.fixture(scope="module")
def results():
    names = ["pc_energy_descent", "pc_fixed_point", "pc_feedforward", "pc_bp_limit", "pc_fixed_prediction_exact"]
    return {n: run_check(n) for n in names}


def test_energy_descent(results):
    r = results["pc_energy_descent"]
    assert r.passed, r.verdict.summary()
    e = r.data.energy.values
    assert np.all(np.nanmax(np.diff(e, axis=1), axis=1) <= 1e-8 * np.abs(e[:, 0]))
    assert r.verdict.measured["dEdt_identity_error"] < 0.05


def test_fixed_point(results):
    r = results["pc_fixed_point"]
    assert r.passed, r.verdict.summary()
    assert r.verdict.measured["polished_residual"] <= 1e-12
    assert float(r.data.eig_real.max()) < 0


def test_feedforward(results):
    r = results["pc_feedforward"]
    assert r.passed, r.verdict.summary()
    # the distance to the feedforward pass shrinks along the flow
    d = r.data.distance_to_ff.values
    assert np.all(np.nanmin(d, axis=1) < 1e-3 * d[:, 0])  # within the saved window t <= 60


def test_bp_limit(results):
    r = results["pc_bp_limit"]
    assert r.passed, r.verdict.summary()
    slopes = r.data.slope.values
    assert np.all(np.abs(slopes - 1) <= 0.15)
    # error falls monotonically with gamma in every layer
    rel = r.data.relative_error.sortby("gamma").values
    assert np.all(np.diff(rel, axis=0) > 0)


def test_fixed_prediction_exact(results):
    r = results["pc_fixed_prediction_exact"]
    assert r.passed, r.verdict.summary()
    assert r.verdict.measured["max_error_vs_delta"] <= 1e-10


def test_json_report_fields(results):
    for r in results.values():
        j = r.to_json()
        assert set(j) >= {"name", "passed", "measured", "tolerance"}
        assert set(j["measured"]) == set(j["tolerance"])


def test_energy_descent_fails_for_ascent_flow():
    r = run_check("pc_energy_descent", seeds=(0,), model_cls=AscentPC)
    assert not r.passed
    assert "max_relative_rise" in r.verdict.failed


def test_fixed_point_fails_for_ascent_flow():
    assert not run_check("pc_fixed_point", model_cls=AscentPC).passed


def test_feedforward_fails_for_transposed_weights():
    r = run_check("pc_feedforward", seeds=(0,), model_cls=TransposedPC)
    assert not r.passed
    assert r.verdict.measured["max_distance_to_feedforward"] > 1e-3


def test_bp_limit_fails_for_wrong_nudge_sign():
    r = run_check("pc_bp_limit", model_cls=WrongNudgePC)
    assert not r.passed
    assert r.verdict.measured["min_cosine_at_smallest_gamma"] < 0


def test_fixed_prediction_fails_without_derivative():
    r = run_check("pc_fixed_prediction_exact", seeds=(0,), model_cls=NoDerivativeFixedPrediction)
    assert not r.passed
    assert r.verdict.measured["max_error_vs_delta"] > 1e-3


# ----------------------------------------------------------------------------- model behaviour and errors


@pytest.fixture(scope="module")
def small():
    net = init_network((4, 6, 3), key=jax.random.key(3), dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(4), (5, 4))
    y = jax.random.normal(jax.random.key(5), (5, 3))
    return net, x, y


def test_update_is_local_hebbian_rule(small):
    """ΔW_l = ε_l φ(x_{l-1})ᵀ summed over the batch, ΔW_1 uses the raw input."""
    net, x, y = small
    model = PredictiveCoding(net, "clamped")
    eq = equilibrium(model, x, y, tol=1e-10, rtol=1e-10, atol=1e-12)
    update = pc_update(model, x, y, state=eq.state)
    eps = model.errors(eq.state, x, y)
    np.testing.assert_allclose(update.weights[0], eps[0].T @ x, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(update.weights[1], eps[1].T @ jnp.tanh(eq.state[0]), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(update.biases[1], eps[1].sum(0), rtol=1e-12, atol=1e-14)


def test_relaxation_time_independent_of_batch(small):
    """A sample relaxes to the same state alone or in a batch (energies are summed, norms are max-norms)."""
    net, x, y = small
    model = PredictiveCoding(net, "clamped")
    opts = dict(tol=1e-10, rtol=1e-10, atol=1e-12)
    batch = equilibrium(model, x, y, **opts)
    alone = equilibrium(model, x[:1], y[:1], **opts)
    np.testing.assert_allclose(batch.state[0][:1], alone.state[0], atol=1e-9)


def test_wrong_target_shape_is_an_error(small):
    net, x, y = small
    with pytest.raises(ShapeError, match="targets have 2 units"):
        net.validate_inputs(x, y[:, :2])


def test_not_converged_names_model_and_time(small):
    net, x, y = small
    model = PredictiveCoding(net, "clamped")
    with pytest.raises(NotConvergedError, match=r"PredictiveCoding.*t = 0\.01.*residual"):
        equilibrium(model, x, y, tol=1e-12, t1=0.01)


def test_nan_input_is_an_error_not_a_nan_equilibrium(small):
    net, x, y = small
    with pytest.raises(NonFiniteError, match="inputs contain NaN"):
        equilibrium(PredictiveCoding(net, "clamped"), x.at[0, 0].set(jnp.nan), y)
    with pytest.raises(ValueError, match="needs a target"):
        equilibrium(PredictiveCoding(net, "clamped"), x, None)


def test_invalid_output_mode(small):
    with pytest.raises(ValueError, match="output must be"):
        PredictiveCoding(small[0], "sideways")
