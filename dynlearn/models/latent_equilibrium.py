r"""Latent Equilibrium (LE): prospective coding, :math:`r = \varphi(\breve u)` with :math:`\breve u = u + \tau\,\dot u`.

Haider, Ellenberger, Kriener, Jordan, Senn & Petrovici (2021), "Latent Equilibrium: A unified learning
theory for arbitrarily fast computation with arbitrarily slow neurons", NeurIPS 34.

A leaky neuron :math:`\tau\dot u = -u + I(t)` has the *prospective* potential

.. math::  \breve u = u + \tau\,\dot u = I(t),

so a rate read from :math:`\breve u` follows its input instantaneously, however slow :math:`\tau` is.
:func:`prospective` computes :math:`\breve u` for any model *exactly from its vector field*,
:math:`\breve y = y + \tau \odot f(t, y)` (no finite difference of consecutive integration steps).

:class:`LayeredLE` is the layered network of the paper (no error terms):

.. math::  \tau\,\dot u_l = -u_l + W_l\,\varphi_{l-1}(\breve u_{l-1}) + b_l, \qquad \breve u_0 = x(t),

with :math:`\varphi_0 = \mathrm{id}` (the :class:`dynlearn.Network` convention). Layer by layer
:math:`\breve u_l = W_l\varphi(\breve u_{l-1}) + b_l`, so the prospective output equals the feedforward
output :math:`f_{\mathrm{ff}}(x(t))` at every instant, while the standard network (rates from
:math:`u`) is a cascade of low-pass filters whose output lags by about ``depth`` x :math:`\tau`.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from ..networks import Network
from .base import Data, DynamicalModel


def prospective(field, t, y, args, tau):
    r"""The prospective state :math:`\breve y = y + \tau \odot f(t, y, \mathrm{args})`, exactly from the field.

    Args:
        field: a vector field ``f(t, y, args)`` (e.g. :func:`dynlearn.model_flow`).
        tau: the membrane time constant(s): a scalar, or a PyTree shaped like ``y``.
    """
    dy = field(t, y, args)
    if jax.tree.structure(tau) == jax.tree.structure(y):
        return jax.tree.map(lambda u, d, s: u + s * d, y, dy, tau)
    return jax.tree.map(lambda u, d: u + tau * d, y, dy)


class StepInput(eqx.Module):
    """An input stream that steps from ``x0`` to ``x1`` at ``t_step``: ``input(t) = x0`` for ``t < t_step``, else ``x1``
    (no target). Pass it as ``Data(None, stream=StepInput(...))``."""

    x0: Array
    x1: Array
    t_step: float = 0.0

    def input(self, t):
        return jnp.where(t < self.t_step, self.x0, self.x1)

    def target(self, t):
        return None


def _check_tau(tau, what="tau"):
    if not isinstance(tau, jax.core.Tracer):
        arr = jnp.asarray(tau)
        if not bool(jnp.all(jnp.isfinite(arr))) or not bool(jnp.all(arr > 0)):
            raise ValueError(f"{what} must be a positive, finite time constant, got {tau!r}")


class LayeredLE(DynamicalModel):
    r"""A layered rate network with (optionally) prospective rates (Haider et al. 2021).

    .. math::  \tau\,\dot u_l = -u_l + W_l\,\varphi_{l-1}(\breve u_{l-1}) + b_l,
       \qquad \breve u_l = u_l + p\,\tau\,\dot u_l ,

    The state is ``(u_1, ..., u_L)``; the input is ``data.inputs(t)``: ``data.x``, or a stream such as
    :class:`StepInput`. There is no target and no nudging. ``prospective = p``: 1 is Latent Equilibrium, 0 the
    standard (non-prospective) network; it is an array leaf, so both variants run in one compiled, vmapped solve.
    """

    network: Network
    tau: float | Array = 1.0
    prospective: float | Array = 1.0

    def __check_init__(self):
        _check_tau(self.tau)

    @property
    def name(self) -> str:
        return f"LayeredLE(sizes={self.network.sizes}, tau={self.tau})"

    def init_state(self, data: Data) -> tuple[Array, ...]:
        """The equilibrium for the input at ``t = 0``: the feedforward pass (standard and LE agree there)."""
        return tuple(self.network.forward(data.inputs(0.0))[1:])

    def vector_field(self, t, state, data: Data):
        r""":math:`\dot u_l = (-u_l + W_l\varphi(\breve u_{l-1}) + b_l)/\tau`, computed bottom-up so that each
        :math:`\breve u_{l-1}` comes exactly from the already computed :math:`\dot u_{l-1}`."""
        rate_source = data.inputs(t)
        out = []
        for l, u in enumerate(state, start=1):
            du = (self.network.predict_layer(l, rate_source) - u) / self.tau
            out.append(du)
            rate_source = u + self.prospective * self.tau * du
        return tuple(out)

    def prospective_state(self, t, state, data: Data) -> tuple[Array, ...]:
        r""":math:`\breve u = u + \tau\,\dot u` for every layer, with :math:`\dot u` from :meth:`vector_field`."""
        return prospective(lambda t, y, a: self.vector_field(t, y, data), t, state, None, self.tau)

    def readout(self, t, state, data: Data) -> Array:
        """The output the next stage sees: :math:`\\breve u_L` (LE) or :math:`u_L` (standard), blended by ``prospective``."""
        hat = self.prospective_state(t, state, data)[-1]
        return state[-1] + self.prospective * (hat - state[-1])
