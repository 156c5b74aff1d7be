r"""Equilibrium propagation as a learning rule: free phase, nudged phase(s), EP estimate (Scellier & Bengio 2017).

The rule is :func:`dynlearn.models.ep.ep_gradient` on the layered Hopfield energy of the trained network; the
estimator (``one_sided``, ``symmetric``, ``holomorphic``) is a field of the rule, the nudge β is ``nudge``, and every
phase relaxes with one :class:`~dynlearn.config.RelaxConfig`. Learners ``ep`` (symmetric by default) and
``ep/one_sided``, ``ep/symmetric``, ``ep/holomorphic``.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax.numpy as jnp

from ..config import TRAINING, RelaxConfig
from ..dynamics import CONVERGED, DIVERGED, NOT_STEADY, Equilibrium, raise_for_status
from ..losses import mse_loss
from ..models.base import Data
from ..models.ep import BOUNDED, ESTIMATORS, HOLOMORPHIC, HopfieldEP, ep_gradient, free_phase, get_estimator, nudge_points
from ..networks import Network
from .base import LEARNERS, Learner, Rule

#: the relaxation of EP's phases during training: max|ds/dt| <= 1e-3 (EP needs the nudged phase well below β)
EP_TRAINING = TRAINING.replace(tol=1e-3, rtol=1e-4, atol=1e-6, t1=1000.0, max_steps=8192)


class EquilibriumPropagation(Rule):
    """``grads`` = EP's estimate of ∂L/∂θ (descent sign), ``L = ½|y - s*_L|²`` at the free equilibrium.

    Attributes:
        estimator: ``"one_sided"``, ``"symmetric"`` or ``"holomorphic"``.
        nudge: β (the radius of the complex nudges for holomorphic EP).
        n_points: complex nudges of holomorphic EP.
        config: the relaxation of every phase.
    """

    estimator: str = eqx.field(static=True, default="symmetric")
    nudge: float = eqx.field(static=True, default=0.5)
    n_points: int = eqx.field(static=True, default=4)
    config: RelaxConfig = eqx.field(static=True, default=EP_TRAINING)

    def update(self, params: Network, rule_state, batch: Data, key):
        # phases relax without a runtime check; their status is raised below (on the host, in a training step)
        grads, info = ep_gradient(
            HopfieldEP(params), batch, estimator=self.estimator, nudge=self.nudge, n_points=self.n_points, config=self.config.replace(throw=False)
        )
        if self.config.throw:
            res = jnp.maximum(info["free_residual"], info["nudged_residual"])
            status = jnp.where(jnp.isfinite(res), jnp.where(res <= self.config.tol, CONVERGED, NOT_STEADY), DIVERGED)
            raise_for_status(Equilibrium(info["free_state"], res, jnp.asarray(jnp.nan), jnp.zeros((), int), status), "EP phases", self.config.tol)
        metrics = {
            "loss": mse_loss(info["free_state"][-1], batch.y) / batch.x.shape[0],
            "free_residual": info["free_residual"],
            "nudged_residual": info["nudged_residual"],
        }
        return grads, rule_state, metrics


def _predict(config: RelaxConfig, params: Network, x):
    return free_phase(HopfieldEP(params), Data(x), config).state[-1]


def _scaled_init(gain: float, key, network: Network) -> Network:
    """The network with its weights times ``gain`` (biases kept)."""
    return network if gain == 1.0 else network.with_matrices([gain * w for w in network.weights], network.biases)


def ep_learner(
    *,
    estimator: str = "symmetric",
    nudge: float | None = None,
    n_points: int = 4,
    activation: str = "tanh",
    config: RelaxConfig = EP_TRAINING,
    init_gain: float = 1.0,
    lr: float = 1e-3,
) -> Learner:
    r"""Equilibrium propagation on the layered Hopfield energy of the network.

    ``estimator`` is ``"one_sided"`` (free + one nudged phase), ``"symmetric"`` (phases at ±β) or
    ``"holomorphic"`` (``n_points`` complex nudges of modulus β; needs tanh or logistic). ``nudge`` (β) defaults to
    0.5 for the real estimators and 0.05 for holomorphic EP, whose estimate is exact at any radius inside the disc
    where β ↦ s*_β is analytic; with larger radii the complex relaxation of a trained network can run into the poles
    of tanh and fail to settle (a clear error, not NaNs). ``init_gain`` scales the initial weights. Prediction is the
    output layer of the free equilibrium.
    """
    est = get_estimator(estimator)
    if nudge is None:
        nudge = 0.05 if est.holomorphic else 0.5
    if activation not in BOUNDED:
        raise ValueError(f"EP needs a bounded activation {BOUNDED}, got {activation!r}")
    if est.holomorphic and activation not in HOLOMORPHIC:
        raise ValueError(f"holomorphic EP needs a holomorphic activation {HOLOMORPHIC}, got {activation!r}")
    nudge_points(est, nudge, n_points)  # validates the nudge
    return Learner(
        name=f"ep/{estimator}",
        rule=EquilibriumPropagation(estimator, float(nudge), int(n_points), config),
        init=functools.partial(_scaled_init, float(init_gain)),
        predict=functools.partial(_predict, config),
        description="equilibrium propagation on a layered Hopfield energy (one_sided, symmetric or holomorphic nudging)",
        defaults={"estimator": estimator, "nudge": nudge, "n_points": n_points, "activation": activation, "config": config, "init_gain": init_gain, "lr": lr},
    )


LEARNERS.register("ep", ep_learner)
for _name in ESTIMATORS:
    LEARNERS.register(f"ep/{_name}", functools.partial(ep_learner, estimator=_name))

__all__ = ["EP_TRAINING", "EquilibriumPropagation", "ep_learner"]
