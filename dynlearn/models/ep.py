r"""Equilibrium propagation (EP): a layered Hopfield energy, its free and nudged phases, and three gradient estimators.

Model (Scellier & Bengio 2017, Front. Comput. Neurosci. 11:24). Layers :math:`s_0 = x` (clamped input),
:math:`s_1, \dots, s_L` (free; :math:`s_L` is the output), weights only between adjacent layers:

.. math::  E(s) = \tfrac12 \sum_{l=1}^{L} \|s_l\|^2 - \sum_{l=1}^{L} \rho(s_l)^\top \big(W_l\,\rho_{l-1}(s_{l-1}) + b_l\big),
           \qquad C(s) = \tfrac12 \|y - s_L\|^2, \qquad F = E + \beta\,C,

with :math:`\rho_0 = \mathrm{id}` on the input (the :class:`dynlearn.Network` convention) and :math:`\rho` a
bounded activation (hard sigmoid, logistic or tanh). The nudge :math:`\beta` of the paper is ``Data.nudge``. The
dynamics are the plain gradient flow :math:`\dot s = -\partial F/\partial s`; the factor :math:`\rho'(s_l)` in
:math:`\dot s_l = \rho'(s_l)\odot(W_l\rho(s_{l-1}) + b_l + W_{l+1}^\top\rho(s_{l+1})) - s_l` is part of the
gradient. Everything is summed over the batch.

EP's theorem: with :math:`G(\beta) = \partial F/\partial\theta(s^*_\beta)` and :math:`J(\theta) = C(s^*_0)`,
:math:`dJ/d\theta = G'(0)`. The estimators of :math:`G'(0)` (all return a loss gradient, like ``jax.grad``):

* ``"one_sided"``: :math:`(G(\beta) - G(0))/\beta`, bias :math:`O(\beta)` (Scellier & Bengio 2017);
* ``"symmetric"``: :math:`(G(\beta) - G(-\beta))/2\beta`, bias :math:`O(\beta^2)` (Laborieux et al. 2021,
  Front. Neurosci. 15:633674);
* ``"holomorphic"``: :math:`\beta_k = r e^{2\pi i k/N}`, :math:`\hat g = \mathrm{Re}\,\frac{1}{Nr}\sum_k G(\beta_k)e^{-2\pi ik/N}`,
  the first Fourier coefficient of :math:`G` on the circle, with error :math:`O((r/R)^N)` — exact at finite
  :math:`r` as :math:`N` grows (Laborieux & Zenke 2022, NeurIPS). :math:`N = 2` is the symmetric estimator.

Complex nudged phases go through :func:`dynlearn.models.equilibrium` like every other relaxation: the flow
:math:`-\partial F/\partial s` is holomorphic in :math:`s` for a holomorphic :math:`\rho` (tanh, logistic), and the
core integrates its real and imaginary parts as one real system (:func:`dynlearn.dynamics.complex_as_real`).
"""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ..config import DEFAULT, RelaxConfig
from ..dynamics import Equilibrium, is_complex, max_norm
from ..errors import NotConvergedError
from ..networks import Network
from .base import Data, EnergyModel, equilibrium

BOUNDED = ("hard_sigmoid", "logistic", "tanh")
HOLOMORPHIC = ("logistic", "tanh")


def _complexify(tree):
    return jax.tree.map(lambda a: a.astype(jnp.result_type(a.dtype, jnp.complex64)) if eqx.is_inexact_array(a) else a, tree)


class HopfieldEP(EnergyModel):
    r"""The layered Hopfield energy of equilibrium propagation (Scellier & Bengio 2017).

    The state is the tuple ``(s_1, ..., s_L)`` of free layers (hidden layers and the output), each
    ``(batch, n_l)`` or ``(n_l,)``; the input ``data.x`` is clamped and the total energy is
    :math:`F = E + \beta C` with :math:`\beta` = ``data.nudge``. States may be complex (holomorphic EP) when
    :math:`\rho` is holomorphic (tanh, logistic).
    """

    network: Network

    def __check_init__(self):
        if self.network.activation_name not in BOUNDED:
            raise ValueError(
                f"EP's Hopfield energy needs a bounded activation (one of {BOUNDED}) so that F is bounded below; "
                f"got {self.network.activation_name!r}"
            )

    @property
    def name(self) -> str:
        return f"HopfieldEP(sizes={self.network.sizes}, rho={self.network.activation_name!r})"

    def rho(self, s: Array) -> Array:
        return self.network.phi(s)

    def rates(self, state, x) -> list[Array]:
        """``[x, ρ(s_1), ..., ρ(s_L)]`` (identity on the clamped input)."""
        return [x, *(self.rho(s) for s in state)]

    def hopfield_energy(self, state, x) -> Array:
        """:math:`E(s)`, without the cost."""
        r = self.rates(state, x)
        e = sum(0.5 * jnp.sum(s * s) for s in state)  # s*s, not |s|^2: holomorphic in s
        for l in range(1, self.network.depth + 1):
            e = e - jnp.sum(r[l] * self.network.apply(l, r[l - 1]))
        return e

    def cost(self, state, data: Data) -> Array:
        r""":math:`C = \tfrac12\|y - s_L\|^2`, summed over the batch: the nudge's cost and EP's objective
        :math:`J = C(s^*_0)` (the loss of :func:`dynlearn.analysis.implicit_gradient`)."""
        d = data.y - state[-1]
        return 0.5 * jnp.sum(d * d)

    def energy(self, state, data: Data) -> Array:
        """:math:`F = E + \\beta C` (``β = data.nudge``; just :math:`E` without a target)."""
        e = self.hopfield_energy(state, data.x)
        if data.y is not None:
            e = e + data.nudge * self.cost(state, data)
        return e

    def vector_field(self, t, state, data: Data):
        r""":math:`-\partial F/\partial s` (the complex derivative for complex states or a complex nudge)."""
        cplx = is_complex(state) or jnp.iscomplexobj(data.nudge)
        if cplx:
            state = _complexify(state)
        grads = jax.grad(self.energy, holomorphic=cplx)(state, data)
        return jax.tree.map(jnp.negative, grads)

    def parameter_gradient(self, state, data: Data) -> Network:
        r""":math:`\partial F/\partial\theta = \partial E/\partial\theta` at ``state`` (complex for complex states)."""
        if not is_complex(state):
            return super().parameter_gradient(state, data)

        def energy_of(network):
            return eqx.tree_at(lambda m: m.network, self, network).energy(state, data)

        return jax.grad(energy_of, holomorphic=True)(_complexify(self.network))

    def init_state(self, data: Data) -> tuple[Array, ...]:
        """All free layers at zero."""
        x = data.x
        return tuple(jnp.zeros((*x.shape[:-1], n), x.dtype) for n in self.network.sizes[1:])

    def hessian_min_eigenvalues(self, state, x) -> Array:
        r"""Smallest eigenvalue of :math:`\partial^2 E/\partial s^2` per sample (``(batch,)`` or ``()``).

        Positive everywhere ⇔ ``state`` is a strict local minimum, a linearly stable equilibrium of the flow.
        """
        ev = jnp.linalg.eigvalsh(energy_hessians(self, state, x))[:, 0]
        return ev[0] if x.ndim == 1 else ev


@eqx.filter_jit
def energy_hessians(model: HopfieldEP, state, x) -> Array:
    r"""Per-sample Hessians :math:`\partial^2 E/\partial s^2` of the Hopfield energy over the flattened free layers,
    shape ``(batch, n, n)`` (a single sample gets a batch axis of 1)."""
    if x.ndim == 1:
        x, state = x[None], tuple(s[None] for s in state)
    sizes = model.network.sizes[1:]

    def one(flat, xi):
        return model.hopfield_energy(tuple(jnp.split(flat, np.cumsum(sizes)[:-1])), xi)

    return jax.vmap(jax.hessian(one))(jnp.concatenate(state, axis=-1), x)


# ----------------------------------------------------------------------------- phases


def free_phase(model: HopfieldEP, data: Data, config: RelaxConfig = DEFAULT, *, state0=None) -> Equilibrium:
    r"""The free equilibrium :math:`s^*_0` (nudge :math:`\beta = 0` whatever ``data.nudge``), relaxed from ``state0``
    (default: zeros) by :func:`dynlearn.models.equilibrium`; ``config.polish`` finishes with Newton's method."""
    return equilibrium(model, Data(data.x, data.y, jnp.zeros((), jnp.result_type(float))), config, state0=state0)


def nudged_gradients(model: HopfieldEP, data: Data, nudges, config: RelaxConfig = DEFAULT, *, free_state):
    r""":math:`G(\beta_k) = \partial F/\partial\theta(s^*_{\beta_k})` for every ``nudges[k]`` (real or complex β), each
    nudged phase relaxed from ``free_state`` by :func:`~dynlearn.models.equilibrium`; one compiled relaxation,
    vmapped over β (``data.nudge`` is not used).

    Returns ``(G, residuals, status)``: ``G`` is a :class:`Network` with a leading β axis on every leaf.
    """
    return _nudged_gradients(model, data.x, data.y, jnp.asarray(nudges), free_state, config)


@eqx.filter_jit
def _nudged_gradients(model, x, y, nudges, free_state, config):
    def one(nudge):
        data = Data(x, y, nudge)
        eq = equilibrium(model, data, config, state0=free_state)
        return model.parameter_gradient(eq.state, data), eq.residual, eq.status

    return jax.vmap(one)(nudges)


# ----------------------------------------------------------------------------- estimators


class Estimator(eqx.Module):
    r"""An EP estimator: nudges :math:`\beta_k` and weights :math:`c_k` with :math:`\hat g = c_0 G(0) + \sum_k c_k G(\beta_k)`."""

    holomorphic: ClassVar[bool] = False  # needs complex nudges (a holomorphic ρ)
    uses_free: ClassVar[bool] = False  # c0 != 0: the free phase's G(0) enters the estimate

    @abc.abstractmethod
    def points(self, nudge, n_points: int):
        """``(nudges, weights, c0)``; ``c0 = 0`` when the free phase's G(0) is not used."""


def _nudge_array(nudge):
    """A concrete nudge as a numpy 64-bit array, a jax array or tracer as given: nudges made while float64 is off keep
    64 bits until jax consumes them, so inside ``jax.enable_x64(True)`` they are not silently 32-bit."""
    if isinstance(nudge, jax.Array):
        return nudge
    a = np.asarray(nudge)
    return a.astype(np.result_type(a.dtype, np.float64))


class OneSided(Estimator):
    r""":math:`(G(\beta) - G(0))/\beta` (Scellier & Bengio 2017), bias :math:`O(\beta)`."""

    uses_free: ClassVar[bool] = True

    def points(self, nudge, n_points):
        b = _nudge_array(nudge)
        return b.reshape((1,)), (1.0 / b).reshape((1,)), -1.0 / nudge


class Symmetric(Estimator):
    r""":math:`(G(\beta) - G(-\beta))/2\beta` (Laborieux et al. 2021), bias :math:`O(\beta^2)`."""

    def points(self, nudge, n_points):
        b = _nudge_array(nudge)
        xp = np if isinstance(b, np.ndarray) else jnp
        return xp.stack([b, -b]), xp.stack([0.5 / b, -0.5 / b]), 0.0


class Holomorphic(Estimator):
    r"""The first Fourier coefficient of :math:`G` on :math:`|\beta| = r` from ``n_points`` nudges
    (Laborieux & Zenke 2022); ``nudge`` is the radius :math:`r > 0`."""

    holomorphic: ClassVar[bool] = True

    def points(self, nudge, n_points):
        if not isinstance(nudge, jax.core.Tracer) and np.asarray(nudge) <= 0:
            raise ValueError(f"holomorphic EP needs a radius (nudge) beta > 0, got {nudge!r}")
        if int(n_points) < 2:
            raise ValueError(f"holomorphic EP needs n_points >= 2, got {n_points}")
        phase = np.exp(2j * np.pi * np.arange(int(n_points)) / n_points)  # complex128 whatever jax's x64 setting
        r = _nudge_array(nudge)
        return r * phase, np.conj(phase) / (n_points * r), 0.0


ESTIMATORS: dict[str, Estimator] = {"one_sided": OneSided(), "symmetric": Symmetric(), "holomorphic": Holomorphic()}


def get_estimator(estimator: str | Estimator) -> Estimator:
    """The estimator named ``estimator`` (``one_sided``, ``symmetric``, ``holomorphic``), or as given."""
    if isinstance(estimator, Estimator):
        return estimator
    try:
        return ESTIMATORS[estimator]
    except (KeyError, TypeError):
        raise ValueError(f"unknown EP estimator {estimator!r}; choose one of {tuple(ESTIMATORS)}") from None


def nudge_points(estimator: str | Estimator, nudge, n_points: int = 4):
    r"""The nudges :math:`\beta_k`, their weights :math:`c_k` and the free-phase weight :math:`c_0` of an estimator:
    :math:`\hat g = c_0 G(0) + \sum_k c_k G(\beta_k)`. ``nudge`` is β (the radius for holomorphic EP)."""
    est = get_estimator(estimator)
    if not isinstance(nudge, jax.core.Tracer):
        b = np.asarray(nudge)
        if b.ndim != 0 or not np.isfinite(b) or b == 0:
            raise ValueError(f"EP divides by the nudge beta: it must be a finite nonzero number, got {nudge!r}")
    return est.points(nudge, n_points)


def _check_phase(residual, status, what: str, tol) -> None:
    if isinstance(status, jax.core.Tracer):
        return
    status, residual = np.atleast_1d(np.asarray(status)), np.atleast_1d(np.asarray(residual))
    if np.any(status != 0) or not np.all(np.isfinite(residual)):
        bad = int(np.argmax((status != 0) | ~np.isfinite(residual)))
        raise NotConvergedError(
            f"EP {what} phase did not converge (nudge #{bad}: residual max|ds/dt| = {residual[bad]:.3e}, tol {tol}); "
            "increase t1/max_steps, lower the nudge, or check that the network is contracting"
        )


def _check_stable(model: HopfieldEP, free_state, x) -> None:
    lam = np.asarray(model.hessian_min_eigenvalues(free_state, x))
    if np.any(lam <= 0):
        raise NotConvergedError(
            f"EP free equilibrium is not a stable minimum (smallest Hessian eigenvalue {lam.min():.3e} <= 0): "
            "the network is not contracting; reduce the weights"
        )


def ep_gradient(
    model: HopfieldEP,
    data: Data,
    *,
    estimator: str | Estimator = "symmetric",
    nudge=None,
    n_points: int = 4,
    config: RelaxConfig = DEFAULT,
    free_state=None,
    check_stability: bool = False,
) -> tuple[Network, dict]:
    r"""EP's estimate of :math:`dJ/d\theta`, in descent sign (a loss gradient, what ``jax.grad`` of :math:`J` gives).

    Args:
        data: inputs ``x`` and targets ``y``.
        estimator: ``"one_sided"``, ``"symmetric"`` or ``"holomorphic"`` (``n_points`` nudges on the circle of
            radius ``nudge``), or an :class:`Estimator`.
        nudge: the nudge strength β of Scellier & Bengio (default ``data.nudge``); finite and nonzero.
        config: the relaxation of every phase (a :class:`dynlearn.config.RelaxConfig`; ``polish=True`` for checks).
        free_state: a free equilibrium to reuse (skips the free phase).
        check_stability: raise when the free equilibrium is not a strict minimum of E.

    Returns ``(grads, info)``; ``info`` has the free state, the free residual and the nudged residuals.
    Raises ``ValueError`` for a zero nudge or an unknown estimator, :class:`NotConvergedError` when a phase does not
    converge. Jit-able (errors then become equinox runtime errors).
    """
    model.validate(data)
    est = get_estimator(estimator)
    if est.holomorphic and model.network.activation_name not in HOLOMORPHIC:
        raise ValueError(f"holomorphic EP needs a holomorphic activation {HOLOMORPHIC}, got {model.network.activation_name!r}")
    nudges, coefs, c0 = nudge_points(est, data.nudge if nudge is None else nudge, n_points)
    free_data = Data(data.x, data.y, jnp.zeros((), jnp.result_type(float)))
    if free_state is None:
        free = free_phase(model, data, config)
        free_state, free_res = free.state, free.residual
        _check_phase(free.residual, free.status, "free", config.tol)
    else:
        free_res = max_norm(model.vector_field(0.0, free_state, free_data))
    if check_stability and not isinstance(free_res, jax.core.Tracer):
        _check_stable(model, free_state, data.x)
    traced = any(isinstance(a, jax.core.Tracer) for a in jax.tree.leaves((model, data, free_state)))
    nudged_config = config if traced else config.replace(throw=False)  # concrete: reported below
    grads, residuals, status = nudged_gradients(model, data, nudges, nudged_config, free_state=free_state)
    _check_phase(residuals, status, "nudged", config.tol)
    g = jax.tree.map(lambda g: jnp.real(jnp.tensordot(jnp.asarray(coefs).astype(g.dtype), g, axes=1)), grads)
    if est.uses_free:
        g0 = model.parameter_gradient(free_state, free_data)
        g = jax.tree.map(lambda e, f: e + jnp.asarray(c0, e.dtype) * f, g, g0)
    return g, {"free_state": free_state, "free_residual": free_res, "nudged_residual": jnp.max(residuals)}


__all__ = [
    "BOUNDED",
    "ESTIMATORS",
    "HOLOMORPHIC",
    "Estimator",
    "Holomorphic",
    "HopfieldEP",
    "OneSided",
    "Symmetric",
    "energy_hessians",
    "ep_gradient",
    "free_phase",
    "get_estimator",
    "nudge_points",
    "nudged_gradients",
]
