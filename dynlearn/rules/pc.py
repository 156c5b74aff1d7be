r"""Predictive-coding learners: relax the PC energy with the target applied at the output, then the local update.

Two rules (Whittington & Bogacz 2017, Neural Comput. 29:1229), both in descent sign
(:math:`\partial E/\partial\theta` at the inference equilibrium, :func:`dynlearn.models.pc.pc_update`):

* :class:`NudgedPC` (learner ``"pc"``): the output is free with the cost :math:`\gamma\,\tfrac12\|x_L - y\|^2`,
  γ = ``nudge`` (0.1 by default) — the weak-feedback regime in which the update approaches
  γ times backprop's gradient; its size scales with γ, which Adam normalises away (with SGD, scale the rate by 1/γ).
* :class:`ClampedPC` (learner ``"pc/clamped"``): the output is clamped to the target (standard supervised PC;
  on digits it trails backprop by 1–1.6 points, against 0–0.4 for the nudged rule).

Inference uses a :class:`dynlearn.config.RelaxConfig`, :data:`dynlearn.config.TRAINING` by default (steady state at
max|dx/dt| <= 1e-2 with the solver's local error 100x below it: the residual cannot be resolved below the solver's
own error). ``steady=False`` integrates to ``t1`` without a steady-state test (the fixed-budget inference of the
discrete-iteration literature, e.g. ``solver="euler", dt0=0.1, t1=2``).
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp

from ..config import TRAINING, RelaxConfig
from ..losses import mse_loss
from ..models.base import Data, equilibrium
from ..models.pc import PredictiveCoding
from ..networks import Network
from .base import LEARNERS, Learner, Rule


class _PCRule(Rule):
    """Relax :class:`PredictiveCoding` with ``output`` and ``nudge``, then ``∂E/∂θ`` at the equilibrium."""

    config: RelaxConfig = TRAINING
    output: ClassVar[str] = "clamped"

    def nudge_of(self) -> float:
        return 0.0

    def update(self, params: Network, rule_state, batch: Data, key):
        model = PredictiveCoding(params, self.output)
        data = Data(batch.x, batch.y, self.nudge_of())
        eq = equilibrium(model, data, self.config)
        grads = model.parameter_gradient(eq.state, data)
        n = batch.x.shape[0]
        metrics = {
            "energy": model.energy(eq.state, data) / n,
            "loss": mse_loss(params(batch.x), batch.y) / n,
            "inference_steps": eq.num_steps.astype(jnp.float32),
            "residual": eq.residual,
        }
        return grads, rule_state, metrics


class NudgedPC(_PCRule):
    """PC with the output free and nudged toward the target with strength ``nudge`` (γ of the paper)."""

    nudge: float = eqx.field(static=True, default=0.1)
    output: ClassVar[str] = "nudged"

    def nudge_of(self) -> float:
        return self.nudge


class ClampedPC(_PCRule):
    """PC with the output clamped to the target."""

    output: ClassVar[str] = "clamped"


def relax_config(config: RelaxConfig | None = None, *, steady: bool | None = None, **relax) -> RelaxConfig:
    """:data:`TRAINING` (or ``config``) with ``relax`` fields changed; ``steady=False`` is a fixed budget
    (integrate to ``t1``; no error when the state is still moving at ``t1``)."""
    changes = dict(relax)
    if steady is not None:
        changes["steady"] = steady
        if not steady:
            changes.setdefault("throw", False)
    return (TRAINING if config is None else config).replace(**changes)


def _learner(name: str, rule: _PCRule, activation, description: str) -> Learner:
    c = rule.config
    relax = dict(solver=c.solver, t1=c.t1, tol=c.tol, rtol=c.rtol, atol=c.atol, dt0=c.dt0, max_steps=c.max_steps, steady=c.steady)
    extra = {"nudge": rule.nudge} if isinstance(rule, NudgedPC) else {}
    return Learner(
        name=name,
        rule=rule,
        description=description,
        defaults={"activation": activation, "lr": 3e-3, "output": rule.output, **extra, **relax},
    )


@LEARNERS.register("pc")
def pc_learner(*, output: str = "nudged", activation="gelu", nudge: float = 0.1, config: RelaxConfig | None = None, steady: bool | None = None, **relax) -> Learner:
    """Supervised PC, output nudged (γ = ``nudge``; default) or, with ``output="clamped"``, clamped to the target.

    Defaults: a smooth activation (GELU; with ReLU the flow is discontinuous at the kinks and can slide along them
    without a classical steady state) and :data:`TRAINING` inference; ``relax`` (``solver=``, ``dt0=``, ``t1=``,
    ``tol=``, ``max_steps=``, ...) changes its fields, ``config=`` replaces it.
    """
    if output == "clamped":
        return pc_clamped_learner(activation=activation, config=config, steady=steady, **relax)
    if output != "nudged":
        raise ValueError(f"PC's output is 'nudged' (pulled toward the target with strength nudge) or 'clamped' (fixed to the target), got {output!r}")
    rule = NudgedPC(relax_config(config, steady=steady, **relax), nudge)
    return _learner("pc", rule, activation, "predictive coding: nudge the output toward the target (pc/clamped: fix it), relax, apply the local Hebbian rule")


@LEARNERS.register("pc/clamped")
def pc_clamped_learner(*, activation="gelu", config: RelaxConfig | None = None, steady: bool | None = None, **relax) -> Learner:
    """Supervised PC with the output clamped to the target (see :func:`pc_learner` for the options)."""
    rule = ClampedPC(relax_config(config, steady=steady, **relax))
    return _learner("pc/clamped", rule, activation, "predictive coding: clamp the output to the target, relax, apply the local Hebbian rule")
