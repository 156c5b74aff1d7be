r"""The model protocol: what every model in dynlearn is, how it receives its data, and how it reaches equilibrium.

* :class:`Data` — the inputs of one relaxation: inputs ``x``, target ``y``, the **nudge strength** and an optional
  time-varying ``stream``. The nudge strength has one name across the library, ``nudge``; the papers call it
  γ (predictive coding: Whittington & Bogacz 2017; contrastive Hebbian feedback: Xie & Seung 2003), β
  (equilibrium propagation: Scellier & Bengio 2017; PAL's output nudging) and λ (the microcircuits' top-down
  feedback: Sacramento et al. 2018).
* :class:`DynamicalModel` declares ``init_state(data)`` and ``vector_field(t, state, data)``: models that are not
  gradient systems (cortical microcircuits, PAL, fixed-prediction PC) define the field directly.
* :class:`EnergyModel` declares ``energy(state, data)`` (a scalar summed over the batch, so one sample's flow does not
  depend on the batch size) and inherits the gradient flow :math:`\dot s = -\partial E/\partial s` and the
  parameter gradient :math:`\partial E/\partial\theta`.
* :func:`equilibrium` is the one road to a steady state, for models, checks and learners alike.
"""

from __future__ import annotations

import abc
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PyTree

from ..config import DEFAULT, RelaxConfig
from ..dynamics import Equilibrium, model_flow, relax
from ..networks import Network


def _as_array(v):
    return v if isinstance(v, jax.Array) else jnp.asarray(v)


class Data(eqx.Module):
    """What a model is given: inputs, target, nudge strength and (optionally) a stream of inputs in time.

    Attributes:
        x: inputs, ``(batch, *in_shape)`` or ``(*in_shape,)``.
        y: target (``None`` for a free relaxation).
        nudge: the nudge strength (γ, β or λ of the papers; see the module docstring), an array so that models
            differing only in its value share one compilation. It may be complex (holomorphic EP).
        stream: an equinox module with ``input(t)`` and ``target(t)`` for inputs that change in time
            (microcircuits under a pattern stream); ``x``/``y`` are then the defaults when it returns ``None``.
    """

    x: Array | None
    y: Array | None = None
    nudge: Array = eqx.field(converter=_as_array, default=0.0)
    stream: Any = None

    def __check_init__(self):
        # shapes are static, so this holds under jit and vmap too: an empty batch would give a NaN mean further down
        for field in ("x", "y"):
            shape = getattr(getattr(self, field), "shape", None)
            if shape is not None and 0 in tuple(shape):
                from ..errors import ShapeError

                raise ShapeError(f"Data: {field} has shape {tuple(shape)}, an empty axis (an empty batch?); give at least one sample")

    def inputs(self, t=0.0) -> Array:
        """The input at time ``t``: ``stream.input(t)`` when there is a stream, else ``x``."""
        return self.x if self.stream is None else self.stream.input(t)

    def target(self, t=0.0) -> Array | None:
        """The target at time ``t``: ``stream.target(t)`` when there is a stream, else ``y``."""
        return self.y if self.stream is None else self.stream.target(t)

    def with_nudge(self, nudge) -> Data:
        return Data(self.x, self.y, nudge, self.stream)


class DynamicalModel(eqx.Module):
    """A model given by a vector field ``d state/dt = vector_field(t, state, data)``."""

    @abc.abstractmethod
    def init_state(self, data: Data) -> PyTree:
        """The state a relaxation starts from (usually the feedforward pass)."""

    @abc.abstractmethod
    def vector_field(self, t, state: PyTree, data: Data) -> PyTree:
        """Time derivative of ``state`` given ``data``."""

    @property
    def name(self) -> str:
        return type(self).__name__

    def validate(self, data: Data) -> None:
        """Raise :class:`dynlearn.ShapeError` / :class:`dynlearn.NonFiniteError` for data that do not fit the model
        (NaN checks on concrete arrays only). Default: checked against ``self.network`` if it has one."""
        net = getattr(self, "network", None)
        if isinstance(net, Network) and data.stream is None:
            y = data.y if (data.y is not None and getattr(data.y, "ndim", 0) >= 1) else None
            net.validate_inputs(data.x, y)


class EnergyModel(DynamicalModel):
    """A model given by an energy; its dynamics are the gradient flow of that energy.

    Subclasses define ``network`` (a :class:`dynlearn.Network`), :meth:`energy` and :meth:`init_state`.
    """

    network: eqx.AbstractVar[Network]

    @abc.abstractmethod
    def energy(self, state: PyTree, data: Data) -> Array:
        """Scalar energy, summed over the batch (so each sample's flow is independent of the batch size)."""

    def vector_field(self, t, state, data: Data):
        """:math:`-\\partial E/\\partial s`."""
        return jax.tree.map(jnp.negative, jax.grad(self.energy)(state, data))

    def parameter_gradient(self, state, data: Data) -> Network:
        """:math:`\\partial E/\\partial \\theta` at ``state``: a :class:`Network`-shaped PyTree."""
        return self.energy_and_parameter_gradient(state, data)[1]

    def energy_and_parameter_gradient(self, state, data: Data) -> tuple[Array, Network]:
        """:math:`E` and :math:`\\partial E/\\partial \\theta` at ``state`` from one forward and backward pass."""

        def energy_of(network):
            return eqx.tree_at(lambda m: m.network, self, network).energy(state, data)

        return eqx.filter_value_and_grad(energy_of)(self.network)


def equilibrium(
    model: DynamicalModel,
    data: Data,
    config: RelaxConfig = DEFAULT,
    *,
    state0: PyTree | None = None,
    save_ts: Array | None = None,
    **overrides,
) -> Equilibrium:
    """Relax ``model`` given ``data`` from ``state0`` (default ``model.init_state(data)``) with ``config``.

    This is the only way a model, a check or a learner reaches a steady state. Data are checked first
    (:meth:`DynamicalModel.validate`: shapes, and NaN/inf when they are concrete arrays), so a bad batch fails
    with a :class:`dynlearn.ShapeError` or :class:`dynlearn.NonFiniteError` instead of a NaN equilibrium.
    A complex ``state0`` or nudge (holomorphic EP) relaxes the real system on ``(Re s, Im s)``.

    ``config.polish`` finishes with Newton's method (:func:`dynlearn.polish`) to residual ``<= config.polish_tol``, as
    theorem checks need (the error floor of a finite-nudge estimate is residual / nudge); the result keeps the
    relaxation's time, step count and trajectory with the polished state, residual and status.
    ``overrides`` change single fields of ``config``.
    """
    if not isinstance(data, Data):
        raise TypeError(f"{model.name}: equilibrium takes a dynlearn.models.Data, got {type(data).__name__}")
    model.validate(data)
    state0 = model.init_state(data) if state0 is None else state0
    if getattr(config, "method", "flow") != "flow" or overrides.get("method", "flow") != "flow":
        return _solved(model, data, state0, config.replace(**overrides), save_ts)
    if jnp.iscomplexobj(data.nudge):
        state0 = jax.tree.map(lambda a: a.astype(jnp.result_type(a.dtype, jnp.complex64)), state0)
    return relax(model_flow, state0, (model, data), config, save_ts=save_ts, name=model.name, **overrides)


def _solved(model, data, state0, config: RelaxConfig, save_ts) -> Equilibrium:
    """The equilibrium by minimisation or root-finding (:mod:`dynlearn.minimise`), then the optional Newton polish."""
    from ..dynamics import _polished, raise_for_status
    from ..errors import ConfigError
    from ..minimise import solve_equilibrium

    if save_ts is not None:
        raise ConfigError(f"{model.name}: save_ts needs a trajectory; RelaxConfig.method={config.method!r} has none (use method='flow')")
    eq = solve_equilibrium(model, data, state0, config.replace(throw=False), model.name)
    if config.polish:
        eq = _polished(model_flow, eq, (model, data), config, model.name)
    return raise_for_status(eq, model.name, config.polish_tol if config.polish else config.tol) if config.throw else eq
