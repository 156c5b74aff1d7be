r"""Contrastive Hebbian learning (CHL) in a layered network with weak symmetric feedback.

:class:`ContrastiveHebbian` is the network of Xie & Seung (2003, Neural Comput. 15:441) whose contrastive Hebbian
update tends to backprop's gradient as the feedback strength :math:`\gamma \to 0`; :math:`\gamma` is ``Data.nudge``.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array

from ..config import DEFAULT, RelaxConfig
from ..networks import Network, matvec
from .base import Data, DynamicalModel, equilibrium


class ContrastiveHebbian(DynamicalModel):
    r"""Layered network with weak symmetric feedback (Xie & Seung 2003, Neural Comput. 15:441).

    Pre-activations :math:`u_l` of layers :math:`l = 1..L`, rates :math:`r_0 = x`, :math:`r_l = \varphi(u_l)`
    (hidden), :math:`r_L = u_L` (linear output, the :class:`dynlearn.Network` convention), and

    .. math::  \dot u_l = -u_l + W_l r_{l-1} + b_l + \gamma\, W_{l+1}^\top r_{l+1}, \qquad l < L,

    :math:`\dot u_L = -u_L + W_L r_{L-1} + b_L` when the output is free; ``clamped=True`` fixes
    :math:`r_L = y`. The feedback strength :math:`\gamma` is ``data.nudge``. The equilibria are the critical points
    of the layer-weighted Hopfield energy :math:`\sum_l \gamma^{l}[\sum_i \int^{r_{l,i}}\varphi^{-1} - r_l^\top(W_l r_{l-1} + b_l)]`.
    As :math:`\gamma\to 0` the free phase is the feedforward pass and the CHL update
    :math:`-\gamma^{-(L-l)}(r^c_l r^{c\top}_{l-1} - r^f_l r^{f\top}_{l-1})` tends to backprop's
    :math:`\partial L/\partial W_l` with :math:`L = \tfrac12\|\hat x_L - y\|^2`, with relative error :math:`O(\gamma)`.
    """

    network: Network
    clamped: bool = eqx.field(static=True, default=False)

    @property
    def name(self) -> str:
        return f"ContrastiveHebbian(sizes={self.network.sizes}, clamped={self.clamped})"

    def rates(self, state, data: Data) -> list[Array]:
        net = self.network
        u = list(state) + ([data.y] if self.clamped else [])
        return [data.x] + [net.phi(v) for v in u[:-1]] + [u[-1]]

    def cost(self, state, data: Data) -> Array:
        r""":math:`\tfrac12\|u_L - y\|^2` of the free output, summed over the batch (the loss of the implicit gradient)."""
        return 0.5 * jnp.sum((state[-1] - data.y) ** 2)

    def vector_field(self, t, state, data: Data):
        net = self.network
        r = self.rates(state, data)
        out = []
        for l in range(1, len(state) + 1):
            drive = net.apply(l, r[l - 1])
            if l < net.depth:
                drive = drive + data.nudge * matvec(net.weights[l].T, r[l + 1])
            out.append(drive - state[l - 1])
        return tuple(out)

    def init_state(self, data: Data):
        """The feedforward pass (pre-activations), restricted to the free layers."""
        xs = self.network.forward(data.x)[1:]
        return tuple(xs[:-1]) if self.clamped else tuple(xs)


def chl_gradient(network: Network, data: Data, config: RelaxConfig = DEFAULT) -> Network:
    r"""The CHL estimate of :math:`\partial L/\partial\theta`, in descent sign (what ``jax.grad`` of
    :math:`L = \tfrac12\|\hat x_L - y\|^2` gives as :math:`\gamma \to 0`): free and clamped phases at feedback
    :math:`\gamma` = ``data.nudge``, each relaxed by :func:`~dynlearn.models.equilibrium` with ``config``,

    .. math::  g_{W_l} = -\gamma^{-(L-l)}(r^c_l r^{c\top}_{l-1} - r^f_l r^{f\top}_{l-1}), \qquad
               g_{b_l} = -\gamma^{-(L-l)}(r^c_l - r^f_l).
    """
    gamma = data.nudge
    rates = []
    for clamped in (False, True):
        model = ContrastiveHebbian(network, clamped)
        eq = equilibrium(model, data, config)
        rates.append(model.rates(eq.state, data))
    free, clamp = rates
    L = network.depth
    ws, bs = [], []
    for l in range(1, L + 1):
        scale = -(gamma ** (-(L - l)))
        outer = lambda r: jnp.einsum("...i,...j->ij", r[l], r[l - 1])
        ws.append(scale * (outer(clamp) - outer(free)))
        bs.append(scale * jnp.sum(jnp.reshape(clamp[l] - free[l], (-1, clamp[l].shape[-1])), axis=0))
    return network.with_matrices(ws, bs)


__all__ = ["ContrastiveHebbian", "chl_gradient"]
