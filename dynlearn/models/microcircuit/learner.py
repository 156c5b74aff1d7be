"""The registered ``microcircuit`` learner: nudge, relax to the steady state, apply the dendritic-prediction rules.

Sacramento et al. (2018), trained batch by batch: start in the SPS, nudge the output toward the target (nudge 1,
λ of the paper), relax the circuit to its steady state with :func:`dynlearn.models.equilibrium` (or the paper's fast
two-step approximation), and use the Urbanczik-Senn rule terms of :meth:`Microcircuit.plasticity` (descent sign) as
the update of the forward weights (and of ``W^{IP}``, keeping the SPS as the forward weights change).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ...config import RelaxConfig
from ...losses import mse_loss
from ...rules.base import LEARNERS, Learner, Rule
from ..base import Data, equilibrium
from .circuit import Microcircuit
from .parameters import preset

#: inference inside a training step: a loose steady state, no error when it is not reached (the update is still used)
LEARNER_RELAX = RelaxConfig(tol=1e-5, rtol=1e-4, atol=1e-6, t1=2000.0, max_steps=4096, throw=False)

#: the fields that the learner trains: forward always, lateral W^IP (and its bias) with ``learn_lateral``
FORWARD_FIELDS = ("weights", "biases")
LATERAL_FIELDS = ("w_ip", "b_ip")


def steady_state(model: Microcircuit, data: Data, inference: str, config: RelaxConfig = LEARNER_RELAX):
    """The steady state for ``data``: relaxed (``inference="ode"``) or the two-step approximation (``"two_step"``)."""
    if inference == "two_step":
        return model.two_step(data)
    return equilibrium(model, data, config).state


class DendriticPrediction(Rule):
    """Steady-state Urbanczik-Senn update (descent sign) of the forward (and lateral) weights; top-down ``B`` and
    ``W^{PI}`` (and the conductances) get zero updates."""

    inference: str = eqx.field(static=True, default="ode")
    learn_lateral: bool = eqx.field(static=True, default=True)
    config: RelaxConfig = LEARNER_RELAX

    def update(self, params: Microcircuit, rule_state, batch: Data, key):
        data = Data(batch.x, batch.y, 1.0)
        state = steady_state(params, data, self.inference, self.config)
        terms = params.plasticity(0.0, state, data)
        trained = FORWARD_FIELDS + (LATERAL_FIELDS if self.learn_lateral else ())
        grads = jax.tree.map(jnp.zeros_like, eqx.filter(params, eqx.is_inexact_array))
        grads = eqx.tree_at(lambda m: tuple(getattr(m, k) for k in trained), grads, tuple(getattr(terms, k) for k in trained))
        n = batch.x.shape[0]
        metrics = {
            "loss": mse_loss(params.effective_network()(batch.x), batch.y) / n,
            "apical_sq": sum(jnp.sum(a**2) for a in params.apical(0.0, state, data)) / n,
        }
        return grads, rule_state, metrics


@LEARNERS.register("microcircuit")
def microcircuit_learner(
    *,
    preset_name: str = "bern",
    activation: str = "logistic",
    top_down: str = "random",
    inference: str = "ode",
    learn_lateral: bool = True,
    config: RelaxConfig = LEARNER_RELAX,
    lr: float = 3e-2,
) -> Learner:
    """Sacramento et al. (2018): start in the SPS, nudge the output toward the target, relax the ODE to its
    steady state (``inference="ode"``, with ``config``; ``"two_step"``: the paper's fast approximation), apply the
    dendritic prediction rules to the forward weights (and ``W^{IP}`` when ``learn_lateral``). Top-down ``B`` and
    ``W^{PI}`` stay fixed; ``top_down="random"`` is the feedback-alignment setting of the paper, ``"transpose"`` the
    BP-like one. The given network supplies the layer sizes; the circuit draws its own weights (``Microcircuit.create``).
    Default ``lr``: the best of {3e-3, 1e-2, 3e-2} on digits with Adam (``dynlearn.experiments.digits``).
    """
    if inference not in ("ode", "two_step"):
        raise ValueError(f"inference must be 'ode' or 'two_step', got {inference!r}")

    def init(key, network):
        return Microcircuit.create(network.sizes, key=key, params=preset(preset_name).as_arrays(), activation=activation, top_down=top_down)

    def predict(model: Microcircuit, x):
        return steady_state(model, Data(x), inference, config)[0][-1]

    return Learner(
        name="microcircuit",
        rule=DendriticPrediction(inference, learn_lateral, config),
        init=init,
        predict=predict,
        description="dendritic cortical microcircuit (Sacramento et al. 2018): nudge, relax, dendritic-prediction plasticity",
        defaults=dict(preset=preset_name, activation=activation, top_down=top_down, inference=inference, learn_lateral=learn_lateral, lr=lr),
    )
