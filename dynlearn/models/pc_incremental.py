r"""Incremental predictive coding (iPC): the weights change during inference (Salvatori, Song, Yordanov, Millidge,
Sha, Emde, Xu, Bogacz & Lukasiewicz, "A stable, fast, and fully automatic learning algorithm for predictive coding
networks", ICLR 2024; arXiv 2212.00720).

Standard PC alternates a full relaxation of the activities with one weight step. iPC runs both at once, as one
flow on the clamped-output PC energy :math:`F(x, \theta) = \sum_l \tfrac12\|\varepsilon_l\|^2` (summed over the
batch of ``n`` samples):

.. math::  \dot x = -\partial F/\partial x, \qquad \dot\theta = -\frac{\alpha}{n}\,\partial F/\partial\theta,

for a fixed inference time ``t1`` (no steady state is awaited), with α = ``weight_rate``. Over one batch the
weights move by :math:`\theta(t_1) - \theta(0) = -\tfrac{\alpha}{n}\int_0^{t_1}\partial F/\partial\theta\,dt`; the rule
returns the time average :math:`\tfrac1{t_1}\int_0^{t_1}\partial F/\partial\theta\,dt / n` (descent sign), which an optax
optimiser then applies (with ``optimizer="sgd"`` and ``lr = α t1`` that is exactly the in-flow change). The
joint flow is a gradient flow of F in :math:`(x, \theta)` with metric :math:`\mathrm{diag}(1, n/\alpha)`, so F never
increases along it.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ..config import TRAINING, RelaxConfig
from ..losses import mse_loss
from ..networks import Network
from ..rules.base import LEARNERS, Learner, Rule
from .base import Data, DynamicalModel, equilibrium
from .pc import PredictiveCoding


class IncrementalPC(DynamicalModel):
    """The joint flow of activities and weights; the state is ``(x_1..x_{L-1}, network)``."""

    network: Network
    weight_rate: float = eqx.field(static=True, default=0.1)

    @property
    def name(self) -> str:
        return f"IncrementalPC(sizes={self.network.sizes}, weight_rate={self.weight_rate})"

    def init_state(self, data: Data):
        return (PredictiveCoding(self.network, "clamped").init_state(data), self.network)

    def energy(self, state, data: Data):
        """:math:`F(x, \\theta)`, summed over the batch."""
        xs, net = state
        return PredictiveCoding(net, "clamped").energy(xs, data)

    def vector_field(self, t, state, data: Data):
        xs, net = state
        n = data.x.shape[0] if data.x.ndim > len(net.shapes[0]) else 1
        gx, gnet = eqx.filter_grad(lambda s: self.energy(s, data))((xs, net))
        rate = self.weight_rate / n
        return (jax.tree.map(jnp.negative, gx), jax.tree.map(lambda g: -rate * g, gnet))

    def validate(self, data: Data) -> None:
        PredictiveCoding(self.network, "clamped").validate(data)


class IncrementalPCRule(Rule):
    """One batch of iPC: the joint flow for ``config.t1`` (fixed budget), then the time-averaged weight gradient."""

    config: RelaxConfig
    weight_rate: float = eqx.field(static=True, default=0.1)

    def update(self, params: Network, rule_state, batch: Data, key):
        model = IncrementalPC(params, self.weight_rate)
        data = Data(batch.x, batch.y)
        eq = equilibrium(model, data, self.config)
        net = eq.state[1]
        n = batch.x.shape[0]
        scale = 1.0 / (self.weight_rate * self.config.t1)  # (θ0 - θ(t1)) n / (α t1) / n
        grads = jax.tree.map(lambda a, b: ((a - b) * scale).astype(a.dtype), eqx.filter(params, eqx.is_inexact_array), eqx.filter(net, eqx.is_inexact_array))
        metrics = {
            "energy": model.energy(eq.state, data) / n,
            "loss": mse_loss(params(batch.x), batch.y) / n,
            "inference_steps": eq.num_steps.astype(jnp.float32),
        }
        return grads, rule_state, metrics


@LEARNERS.register("ipc")
def ipc_learner(*, weight_rate: float = 0.1, t1: float = 5.0, activation="gelu", config: RelaxConfig | None = None, **relax) -> Learner:
    """Incremental PC: activities and weights flow together for inference time ``t1`` (no steady state awaited), the
    weights at rate ``weight_rate`` per sample; ``relax`` changes other fields of the (fixed-budget) inference."""
    from ..rules.pc import relax_config

    for name, v in (("weight_rate", weight_rate), ("t1", t1)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ValueError(f"{name} must be a number > 0, got {v!r}")
    cfg = relax_config(config if config is not None else TRAINING, steady=False, t1=float(t1), **relax)
    rule = IncrementalPCRule(cfg, float(weight_rate))
    return Learner(
        name="ipc",
        rule=rule,
        description="incremental predictive coding: weights and activities flow together for a fixed inference time (Salvatori et al. 2024)",
        defaults={"activation": activation, "lr": 3e-3, "weight_rate": weight_rate, "t1": t1},
    )
