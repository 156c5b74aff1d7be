"""PC with non-negative rates and one-way synapses (``pc/positive``): the free equilibrium, the backprop limit, the
gate on the top-down drive, feedback alignment and the accuracy check against unconstrained PC."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynlearn.config import THEOREM
from dynlearn.data import load
from dynlearn.errors import ConfigError
from dynlearn.learning import train
from dynlearn.models.base import Data, equilibrium
from dynlearn.models.pc_positive import (
    PositiveParams,
    PositivePC,
    feedback_cosine,
    init_positive_params,
    kkt_residuals,
    positive_forward,
)
from dynlearn.networks import init_network
from dynlearn.rules import get_learner
from dynlearn.theorems import run_check
from dynlearn.theorems.pc_positive_accuracy import pc_positive_accuracy

SIZES = (5, 7, 6, 3)


def _problem(seed=0, batch=4):
    k_net, k_x = jax.random.split(jax.random.key(seed))
    net = init_network(SIZES, key=k_net, activation="linear", bias_scale=0.3, dtype=jnp.float64)
    x = jax.random.normal(k_x, (batch, SIZES[0]), jnp.float64)
    return net, x


class UngatedPC(PositivePC):
    """The top-down term without the gate rho'(a_l): silent units can be recruited from above."""

    def drive(self, state, data):
        eps, a = self.errors(state, data), self.drives(state, data)
        mats = self.network.weights[1:]
        ups = [eps[k + 1] if k + 2 == self.network.depth else (a[k + 1] > 0) * eps[k + 1] for k in range(len(state))]
        return tuple(eps[k] - ups[k] @ mats[k] for k in range(len(state)))


# -- the free equilibrium: the feedforward ReLU pass ------------------------------------------------------------


def test_feedforward_pass_has_zero_energy_with_relu_rates():
    """Output clamped to the network's own prediction: with rho = ReLU the feedforward pass is a fixed point with E = 0."""
    net, x = _problem()
    fwd = positive_forward(net, x, "relu")
    model, data = PositivePC(net, rate="relu"), Data(x, fwd[-1])
    state = tuple(fwd[1:-1])
    assert float(model.energy(state, data)) == 0.0
    assert max(float(jnp.max(jnp.abs(v))) for v in model.vector_field(0.0, state, data)) == 0.0


def test_linear_prediction_has_spurious_energy_at_feedforward_pass():
    """Must-fail twin of the above: with rho = linear, E at the feedforward pass is sum 1/2 relu(-a)^2 over hidden units
    (numpy formula), nonzero wherever a unit is silent."""
    net, x = _problem()
    fwd = positive_forward(net, x, "relu")
    model, data = PositivePC(net, rate="linear"), Data(x, fwd[-1])
    w, b = [np.asarray(m) for m in net.weights], [np.asarray(v) for v in net.biases]
    h, expected = np.asarray(x), 0.0
    for l in range(len(w) - 1):
        a = h @ w[l].T + b[l]
        expected += 0.5 * np.sum(np.maximum(-a, 0.0) ** 2)
        h = np.maximum(a, 0.0)
    e = float(model.energy(tuple(fwd[1:-1]), data))
    assert expected > 0.1 and e == pytest.approx(expected, rel=1e-12)


# -- the small-error equilibrium: a masked least-squares problem ------------------------------------------------


def _masked_lstsq(net, x, y):
    """Independent formula (numpy): with the feedforward activity pattern D_l = diag(a_l > 0) frozen and silent
    units at 0, E is a quadratic in the active rates; its minimiser per sample from ``np.linalg.lstsq``."""
    w, b = [np.asarray(m) for m in net.weights], [np.asarray(v) for v in net.biases]
    x, y = np.asarray(x), np.asarray(y)
    n1, n2 = w[0].shape[0], w[1].shape[0]
    out = []
    for x0, yy in zip(x, y):
        d1 = (w[0] @ x0 + b[0] > 0).astype(float)
        d2 = (w[1] @ (d1 * (w[0] @ x0 + b[0])) + b[1] > 0).astype(float)
        a = np.block([[np.eye(n1), np.zeros((n1, n2))], [-d2[:, None] * w[1], np.eye(n2)], [np.zeros((w[2].shape[0], n1)), w[2]]])
        c = np.concatenate([d1 * (w[0] @ x0 + b[0]), d2 * b[1], yy - b[2]])
        keep = np.concatenate([d1, d2]) > 0
        z = np.zeros(n1 + n2)
        z[keep] = np.linalg.lstsq(a[:, keep], c, rcond=None)[0]
        out.append(z)
    z = np.stack(out)
    return z[:, :n1], z[:, n1:]


def _small_error_distance(cls, delta=1e-3):
    net, x = _problem(1, batch=6)
    out = positive_forward(net, x, "relu")[-1]
    y = out + delta * jax.random.normal(jax.random.key(9), out.shape, jnp.float64)
    eq = equilibrium(cls(net, rate="relu"), Data(x, y), THEOREM.replace(throw=False))
    ref = _masked_lstsq(net, x, y)
    dist = max(float(np.max(np.abs(np.asarray(s) - r))) for s, r in zip(eq.state, ref))
    move = max(float(np.max(np.abs(r - np.asarray(f)))) for r, f in zip(ref, positive_forward(net, x, "relu")[1:-1]))
    return dist / move


def test_small_error_equilibrium_is_masked_least_squares():
    """A small output error: the equilibrium is the minimiser over the active rates with the feedforward activity
    pattern frozen (distance relative to how far the rates moved from the feedforward pass)."""
    assert _small_error_distance(PositivePC) <= 1e-5


def test_small_error_equilibrium_differs_without_gate():
    """Must-fail twin: the ungated flow recruits silent units, which the masked problem holds at 0."""
    assert _small_error_distance(UngatedPC) > 1e-2


# -- the gate: silent units stay silent, KKT on the rest ------------------------------------------------------


def _gated_equilibrium(cls):
    net, x = _problem(2, batch=6)  # the shapes of the small-error case: one compiled relaxation per class
    y = 3.0 * jax.random.normal(jax.random.key(5), (6, SIZES[-1]), jnp.float64)
    model, data = cls(net, rate="relu"), Data(x, y)
    eq = equilibrium(model, data, THEOREM.replace(throw=False))
    silent = [np.asarray(a <= 0) for a in model.drives(eq.state, data)[:-1]]
    leak = max(float(np.max(np.where(s, np.asarray(v), 0.0))) for s, v in zip(silent, eq.state))
    return leak, float(kkt_residuals(model, eq.state, data)["complementarity"]), int(eq.status)


def test_gated_flow_keeps_silent_units_at_zero_and_meets_kkt():
    leak, comp, status = _gated_equilibrium(PositivePC)
    assert status == 0 and leak == 0.0 and comp <= 1e-8


def test_ungated_flow_recruits_silent_units():
    """Must-fail twin: without the gate, units with a_l <= 0 end with positive rates."""
    leak, _, _ = _gated_equilibrium(UngatedPC)
    assert leak > 1e-3


# -- feedback -------------------------------------------------------------------------------------------------


def test_feedback_cosine_matches_numpy_and_init_scales():
    net, _ = _problem()
    p = init_positive_params(jax.random.key(3), net, "learned", "relu", scale=0.1, top_scale=0.1)
    for w0, w in zip(net.weights[1:], p.network.weights[1:]):
        np.testing.assert_allclose(np.asarray(w), 0.1 * np.asarray(w0), rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(p.network.weights[0]), np.asarray(net.weights[0]))
    b, w = [np.asarray(v).ravel() for v in p.feedback], [np.asarray(v).ravel() for v in p.network.weights[1:]]
    expected = min(float(u @ v / np.linalg.norm(u) / np.linalg.norm(v)) for u, v in zip(b, w))
    assert float(feedback_cosine(p)) == pytest.approx(expected, rel=1e-10)
    assert float(feedback_cosine(PositiveParams(p.network, tuple(p.network.weights[1:]), "relu"))) == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize("opts", [{"rate": "tanh"}, {"feedback_scale": 0.0}, {"top_scale": -1.0}, {"feedback": "mirror"}])
def test_bad_options_raise(opts):
    with pytest.raises(ConfigError):
        get_learner("pc/positive", **opts)


# -- accuracy against unconstrained PC -----------------------------------------------------------------------


def test_accuracy_check_passes():
    r = run_check("pc_positive_accuracy", quick=True)
    assert r.passed, r.verdict.measured


def test_accuracy_check_fails_for_linear_predictions():
    """Must-fail twin: the previous model (rate = linear: spurious errors on silent units) misses the 1-point bar."""
    _, v = pc_positive_accuracy(rate="linear")
    assert not v.passed and v.measured["max_gap_to_pc"] > 0.01


@pytest.mark.slow
@pytest.mark.parametrize("hidden", [(64,), (128, 128)])
def test_learned_feedback_learns_digits(hidden):
    """Learned one-way feedback, 10 epochs, seed 0: 96.9 % (64) and 98.6 % (128-128) measured."""
    _, h = train(get_learner("pc/positive"), load("digits"), hidden=hidden, epochs=10, lr=3e-3, progress=False)
    assert float(h["test_accuracy"].values[-1]) > 0.95
