r"""What every model in dynlearn is: an energy or a vector field over neural state.

An :class:`EnergyModel` defines :meth:`EnergyModel.energy` — a scalar summed over the batch — and
inherits the gradient-flow vector field :math:`\dot s = -\partial E/\partial s`. Models that are not
gradient systems (cortical microcircuits, PAL) subclass :class:`DynamicalModel` and define
:meth:`DynamicalModel.vector_field` directly. Both are integrated by :func:`dynlearn.relax` /
:func:`dynlearn.simulate` with :func:`dynlearn.model_flow` as the field and ``args = (model, *data)``.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
from jaxtyping import Array, PyTree

from .. import dynamics
from ..dynamics import Equilibrium, model_flow, relax
from ..networks import Network


class DynamicalModel(eqx.Module):
    """A model given by a vector field ``d state/dt = vector_field(t, state, *data)``."""

    @abc.abstractmethod
    def vector_field(self, t, state: PyTree, *data) -> PyTree:
        """Time derivative of ``state``."""

    @property
    def name(self) -> str:
        return type(self).__name__

    def validate_inputs(self, x, y=None) -> None:
        """Raise :class:`dynlearn.ShapeError` / :class:`dynlearn.NonFiniteError` for inputs or targets that do not
        fit the model (NaN checks on concrete arrays only). Default: checked against ``self.network`` if it has one."""
        net = getattr(self, "network", None)
        if isinstance(net, Network):
            net.validate_inputs(x, y)


class EnergyModel(DynamicalModel):
    """A model given by an energy; its dynamics are the gradient flow of that energy.

    Subclasses define ``network`` (a :class:`dynlearn.Network`) and :meth:`energy`.
    """

    network: eqx.AbstractVar[Network]

    @abc.abstractmethod
    def energy(self, state: PyTree, *data) -> Array:
        """Scalar energy, summed over the batch (so each sample's flow is independent of the batch size)."""

    def vector_field(self, t, state, *data):
        """:math:`-\\partial E/\\partial s`."""
        grads = jax.grad(self.energy)(state, *data)
        return jax.tree.map(lambda g: -g, grads)

    def parameter_gradient(self, state, *data) -> Network:
        """:math:`\\partial E/\\partial \\theta` at ``state``: a :class:`Network`-shaped PyTree."""

        def energy_of(network):
            return eqx.tree_at(lambda m: m.network, self, network).energy(state, *data)

        return jax.grad(energy_of)(self.network)


def equilibrium(
    model: DynamicalModel,
    x: Array,
    y: Array | None = None,
    nudge=0.0,
    *,
    state0=None,
    polish: bool = False,
    polish_tol: float = 1e-12,
    **relax_options,
) -> Equilibrium:
    """Relax ``model`` with data ``(x, y, nudge)`` from ``state0`` (default ``model.init_state(x)``).

    Inputs and targets are checked first (:meth:`DynamicalModel.validate_inputs`: shapes, and NaN/inf when they
    are concrete arrays), so a bad batch fails with a :class:`dynlearn.ShapeError` or
    :class:`dynlearn.NonFiniteError` instead of a NaN equilibrium.

    ``polish=True`` finishes with Newton's method (:func:`dynlearn.polish`) to residual ``<= polish_tol``, as theorem
    checks need (the error floor of a finite-nudge estimate is residual / nudge). The result keeps the relaxation's
    time, step count and saved trajectory, with the polished state, residual and status.
    """
    model.validate_inputs(x, y if (y is not None and getattr(y, "ndim", 0) >= 1) else None)
    state0 = model.init_state(x) if state0 is None else state0
    relax_options.setdefault("name", model.name)
    args = (model, x, y, nudge)
    eq = relax(model_flow, state0, args, **relax_options)
    if polish:
        p = dynamics.polish(model_flow, eq, args, tol=polish_tol, name=relax_options["name"], throw=relax_options.get("throw", True))
        eq = eqx.tree_at(lambda e: (e.state, e.residual, e.status), eq, (p.state, p.residual, p.status))
    return eq
