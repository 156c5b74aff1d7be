r"""Target projection SGD (TPSGD; Lomnitz, Daniels, Soderberg et al., "Learning with local gradients at the edge",
arXiv 2208.08503).

Every hidden layer :math:`l < L` gets a layer-local target, a fixed random projection :math:`P_l y` of the label, and
descends its own loss :math:`J_l` through that layer alone (its input detached); the output layer descends the task
loss:

.. math::  J_l = \tfrac12 \|\varphi(a_l) - P_l y\|^2 \;\Rightarrow\;
           \delta_l = \partial J_l/\partial a_l = (\varphi(a_l) - P_l y)\odot\varphi'(a_l),
           \qquad \delta_L = \partial L/\partial a_L ,

or, for the paper's :math:`\ell_1` variant (``norm="l1"``), :math:`J_l = \|\varphi(a_l) - P_l y\|_1` and
:math:`\delta_l = \mathrm{sign}(\varphi(a_l) - P_l y)\odot\varphi'(a_l)`. Dropping the :math:`\varphi(a_l)` term of the
:math:`\ell_2` signal gives DRTP's :math:`-(P_l y)\odot\varphi'(a_l)` (:mod:`dynlearn.rules.drtp`), which TPSGD
generalises. The paper's :math:`P_i` is ``rule_state[l-1]`` here (shape ``(n_L, *shape_l)``, entries N(0, 1/n_L)).

Because no signal travels between layers, a layer's activations are needed only while that layer is updated: the
step's working memory does not grow with depth (the ``drtp_memory`` check measures it with XLA's memory analysis).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ..losses import get_loss
from .base import LEARNERS, Learner
from .drtp import DirectRandomTargetProjection, phi_prime

NORMS = ("l2", "l1")


class TargetProjectionSGD(DirectRandomTargetProjection):
    """TPSGD (see the module docstring): ``norm`` is ``"l2"`` (squared error to the target) or ``"l1"`` (its sign)."""

    norm: str = eqx.field(static=True, default="l2")

    def hidden_signal(self, net, a: jax.Array, target: jax.Array) -> jax.Array:
        r""":math:`\partial J_l/\partial a_l`: :math:`(\varphi(a_l) - P_l y)\odot\varphi'(a_l)` (l2) or its sign form (l1)."""
        gap = net.phi(a) - target
        return (gap if self.norm == "l2" else jnp.sign(gap)) * phi_prime(net, a)


@LEARNERS.register("tpsgd")
def tpsgd_learner(*, activation="tanh", loss: str = "mse", norm: str = "l2") -> Learner:
    """TPSGD: each hidden layer descends its distance to a fixed random projection of the label; forward only."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    return Learner(
        name="tpsgd",
        rule=TargetProjectionSGD(get_loss(loss), norm),
        description="target projection SGD: layer-local losses to fixed random projections of the label, no backward pass (Lomnitz et al. 2022)",
        defaults={"activation": activation, "loss": loss, "norm": norm, "lr": 1e-2},
    )
