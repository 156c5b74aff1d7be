"""Latent Equilibrium (Haider et al. 2021): exact prospective potentials and instantaneous tracking."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynlearn.dynamics import model_flow
from dynlearn.models import Data
from dynlearn.models.latent_equilibrium import LayeredLE, StepInput, prospective
from dynlearn.networks import init_network
from dynlearn.theorems import run_check


class HalfProspective(LayeredLE):
    """Prospective potential with tau/2 instead of tau: still faster than standard, but not instantaneous."""

    def vector_field(self, t, state, data):
        rate_source = data.inputs(t)
        out = []
        for l, u in enumerate(state, start=1):
            du = (self.network.predict_layer(l, rate_source) - u) / self.tau
            out.append(du)
            rate_source = u + self.prospective * 0.5 * self.tau * du
        return tuple(out)

    def readout(self, t, state, data):
        du = self.vector_field(t, state, data)[-1]
        return state[-1] + self.prospective * 0.5 * self.tau * du


@pytest.fixture(scope="module")
def le_result():
    return run_check("le_instantaneous")


def test_le_instantaneous_passes(le_result):
    assert le_result.passed, le_result.verdict.summary()
    ds = le_result.data
    assert float(ds.rel_err.sel(coding="prospective").max()) < 1e-9
    # the standard network's lag grows with depth, about one tau per layer
    lag = ds.lag.values
    assert np.all(np.diff(lag) > 0.5)


def test_le_instantaneous_fails_with_wrong_prospective_factor():
    r = run_check("le_instantaneous", model_cls=HalfProspective, depths=(2,), cache=False)
    assert r.passed is False
    assert "le_max_rel_err" in r.verdict.failed


def test_prospective_helper_is_exact_for_leaky_neuron():
    """For tau du/dt = -u + I(t), u + tau du/dt = I(t) exactly, whatever u is."""
    tau = 3.0
    field = lambda t, u, a: (-u + jnp.sin(t)) / tau  # noqa: E731
    u = jnp.array([0.3, -2.0, 7.0])
    np.testing.assert_allclose(prospective(field, 1.2, u, None, tau), jnp.sin(1.2) * jnp.ones(3), atol=1e-15)
    # PyTree tau, one per leaf
    y = (u, 2 * u)
    out = prospective(lambda t, y, a: tuple((-v + 1.0) / s for v, s in zip(y, (1.0, 4.0))), 0.0, y, None, (1.0, 4.0))
    for o in out:
        np.testing.assert_allclose(o, 1.0, atol=1e-15)


def test_prospective_state_equals_feedforward_pass_anywhere():
    net = init_network((3, 7, 7, 2), key=jax.random.key(0), activation="tanh", dtype=jnp.float64)
    model = LayeredLE(net, 2.5)
    x = jnp.array([0.2, -0.4, 0.9])
    state = tuple(jax.random.normal(jax.random.key(i), (n,)) for i, n in enumerate((7, 7, 2)))
    hat = model.prospective_state(0.0, state, Data(x))
    for a, b in zip(hat, net.forward(x)[1:]):
        np.testing.assert_allclose(a, b, atol=1e-13)
    # the generic helper through model_flow gives the same
    hat2 = prospective(model_flow, 0.0, state, (model, Data(x)), 2.5)
    for a, b in zip(hat, hat2):
        np.testing.assert_allclose(a, b, atol=1e-15)


def test_step_input():
    inp = StepInput(jnp.zeros(2), jnp.ones(2), 1.0)
    np.testing.assert_array_equal(inp.input(0.5), jnp.zeros(2))
    np.testing.assert_array_equal(inp.input(1.0), jnp.ones(2))
    data = Data(None, stream=inp)
    np.testing.assert_array_equal(data.inputs(1.5), jnp.ones(2))
    assert data.target(1.5) is None


def test_bad_tau():
    net = init_network((3, 2), key=jax.random.key(0))
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="tau"):
            LayeredLE(net, bad)


def test_bars_dataset():
    from dynlearn.experiments.bars import bars_dataset

    x, labels, targets = bars_dataset()
    assert x.shape == (8, 9) and targets.shape == (8, 3)
    assert np.all(x.sum(1) == 3) and len({tuple(r) for r in x}) == 8
    assert np.bincount(labels).tolist() == [3, 3, 2]
    np.testing.assert_array_equal(np.argmax(targets, 1), labels)


@pytest.mark.slow
def test_bars_le_learns_at_short_presentation_times():
    """Haider et al. (2021): with LE the microcircuit learns the bars at T_pres ~ tau_eff; without LE it does not,
    and it improves only as T_pres grows well beyond tau_eff."""
    from dynlearn.experiments.bars import bars_experiment

    ds = bars_experiment(quick=True, seed=0, epochs=100)
    final = ds.isel(epoch=-1).mean("seed")
    acc, mse = final.accuracy_realtime, final.mse_realtime
    at_tau = dict(t_pres_over_tau=1.0)
    longest = dict(t_pres_over_tau=float(ds.t_pres_over_tau.max()))
    assert float(acc.sel(coding="LE", **at_tau)) >= 0.85
    assert float(acc.sel(coding="standard", **at_tau)) <= 0.5
    assert float(mse.sel(coding="LE", **at_tau)) < 0.5 * float(mse.sel(coding="standard", **at_tau))
    # LE hardly depends on T_pres; the standard circuit does better only at T_pres >> tau
    assert float(mse.sel(coding="LE", **at_tau)) < 2.0 * float(mse.sel(coding="LE", **longest))
    assert float(acc.sel(coding="standard", **longest)) > float(acc.sel(coding="standard", **at_tau))
