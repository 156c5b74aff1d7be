"""The model protocol of ``dynlearn.models.base``: abstract methods enforced, data validated against the model's
network before any relaxation, and models without a network relaxed without that check."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dynlearn as dl
from dynlearn.config import THEOREM
from dynlearn.models.base import Data, DynamicalModel, EnergyModel, equilibrium
from dynlearn.models.pc import PredictiveCoding
from dynlearn.networks import Network


class Leaky(DynamicalModel):
    """ds/dt = x - s: no network; the equilibrium is s* = x."""

    def init_state(self, data):
        return jnp.zeros_like(data.x)

    def vector_field(self, t, state, data):
        return data.x - state


def test_a_model_without_a_network_relaxes_without_the_network_check():
    x = jnp.asarray([0.5, -1.0, 2.0])
    eq = equilibrium(Leaky(), Data(x, None), THEOREM)
    np.testing.assert_allclose(eq.state, x, atol=1e-8)


def test_an_energy_model_without_an_energy_cannot_be_built():
    class NoEnergy(EnergyModel):
        network: Network

        def init_state(self, data):
            return ()

    net = dl.init_network((2, 3), key=jax.random.key(0))
    with pytest.raises(TypeError, match="energy"):
        NoEnergy(net)


def test_an_unbatched_target_of_the_wrong_size_is_a_shape_error_before_any_relaxation():
    net = dl.init_network((4, 6, 3), key=jax.random.key(0), dtype=jnp.float64)
    model = PredictiveCoding(net, "clamped")
    equilibrium(model, Data(jnp.ones(4), jnp.ones(3)), dl.TRAINING)  # the right sizes relax
    with pytest.raises(dl.ShapeError):
        equilibrium(model, Data(jnp.ones(4), jnp.ones(5)), dl.TRAINING)


def test_a_model_is_named_by_its_class_in_errors():
    assert Leaky().name == "Leaky"
    with pytest.raises(TypeError, match=r"^Leaky: equilibrium takes a dynlearn.models.Data"):
        equilibrium(Leaky(), (jnp.ones(3), None))


@pytest.mark.parametrize("method", ["lbfgs", "newton"])
def test_a_method_given_as_an_override_is_the_method_of_the_config(method):
    """``equilibrium(..., method=m)`` is ``equilibrium(..., config.replace(method=m))``, not the flow."""
    net = dl.init_network((4, 6, 3), key=jax.random.key(0), dtype=jnp.float64)
    model = PredictiveCoding(net, "clamped")
    data = Data(jnp.linspace(-1.0, 1.0, 8).reshape(2, 4), jnp.ones((2, 3)))
    by_override = equilibrium(model, data, dl.TRAINING, method=method)
    by_config = equilibrium(model, data, dl.TRAINING.replace(method=method))
    flow = equilibrium(model, data, dl.TRAINING)
    for a, b, c in zip(by_override.state, by_config.state, flow.state, strict=True):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
