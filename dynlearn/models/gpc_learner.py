r"""The ``gpc`` learner: generalised predictive coding (Pinchetti et al., NeurIPS 2022; :mod:`dynlearn.models.gpc`).

Relax :class:`dynlearn.models.gpc.GeneralisedPC` with the target applied at the output (nudged by γ = ``nudge`` by
default, or clamped), then apply :math:`\partial F/\partial\theta` at the equilibrium (descent sign). With a
categorical output the weak-nudge update approaches γ times backprop's cross-entropy gradient; Adam normalises
the factor γ away. Inference uses :data:`dynlearn.config.TRAINING` unless ``relax`` options change it (as for
``pc``: ``solver=``, ``dt0=``, ``t1=``, ``tol=``, ``steady=False`` for a fixed budget, ...).
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from ..config import TRAINING, RelaxConfig
from ..losses import cross_entropy_loss
from ..networks import Network
from ..rules.base import LEARNERS, Learner, Rule
from ..rules.pc import relax_config
from .base import Data, equilibrium
from .gpc import FAMILIES, GeneralisedPC, layer_families


class GeneralisedPCRule(Rule):
    """Relax :class:`GeneralisedPC` (families ``hidden_family`` / ``output_family``), then ``∂F/∂θ`` at equilibrium."""

    config: RelaxConfig = TRAINING
    hidden_family: str = eqx.field(static=True, default="gaussian")
    output_family: str = eqx.field(static=True, default="categorical")
    output: str = eqx.field(static=True, default="nudged")
    nudge: float = eqx.field(static=True, default=0.1)
    scale: float = eqx.field(static=True, default=1.0)

    def model(self, params: Network) -> GeneralisedPC:
        return GeneralisedPC(params, layer_families(params.depth, self.hidden_family, self.output_family, scale=self.scale), self.output)

    def update(self, params: Network, rule_state, batch: Data, key):
        model = self.model(params)
        data = Data(batch.x, batch.y, self.nudge if self.output == "nudged" else 0.0)
        eq = equilibrium(model, data, self.config)
        grads = model.parameter_gradient(eq.state, data)
        n = batch.x.shape[0]
        metrics = {
            "energy": model.energy(eq.state, data) / n,
            "loss": cross_entropy_loss(params(batch.x), batch.y) / n,
            "inference_steps": eq.num_steps.astype(jnp.float32),
            "residual": eq.residual,
        }
        return grads, rule_state, metrics


@LEARNERS.register("gpc")
def gpc_learner(*, hidden_family: str = "gaussian", output_family: str = "categorical", output: str = "nudged", nudge: float = 0.1,
                scale: float = 1.0, activation="gelu", config: RelaxConfig | None = None, steady: bool | None = None, **relax) -> Learner:
    """Generalised PC: ``hidden_family`` for the hidden layers and ``output_family`` for the output (one of
    ``gaussian``, ``bernoulli``, ``categorical``, ``laplace``; ``scale`` is σ / b of the Gaussian / Laplace ones); the
    output ``"nudged"`` with strength ``nudge`` (γ) or ``"clamped"`` to the target."""
    for opt, name in (("hidden_family", hidden_family), ("output_family", output_family)):
        if name not in FAMILIES:
            raise ValueError(f"{opt} must be one of {', '.join(FAMILIES)}, got {name!r}")
    if output not in ("nudged", "clamped"):
        raise ValueError(f"output must be 'nudged' or 'clamped', got {output!r}")
    layer_families(2, hidden_family, output_family, scale=scale)  # checks scale
    rule = GeneralisedPCRule(relax_config(config, steady=steady, **relax), hidden_family, output_family, output, float(nudge), float(scale))
    c = rule.config
    relax_opts = {"solver": c.solver, "t1": c.t1, "tol": c.tol, "rtol": c.rtol, "atol": c.atol, "dt0": c.dt0, "max_steps": c.max_steps, "steady": c.steady}
    return Learner(
        name="gpc",
        rule=rule,
        description="generalised predictive coding: per-layer distribution families, energy a sum of KL divergences (Pinchetti et al. 2022)",
        defaults={"activation": activation, "lr": 3e-3, "hidden_family": hidden_family, "output_family": output_family, "output": output,
                  "nudge": nudge, "scale": scale, **relax_opts},
    )
