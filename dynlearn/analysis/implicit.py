r"""Exact gradients of a loss at an equilibrium: implicit differentiation, and backprop through the relaxation.

For any model with a vector field :math:`f(s, \theta)` (``model.vector_field(t, s, data)``; an
:class:`~dynlearn.models.EnergyModel` has :math:`f = -\partial E/\partial s`) and an equilibrium
:math:`f(s^*, \theta) = 0` with invertible Jacobian :math:`A = \partial f/\partial s`, the implicit-function
theorem gives :math:`ds^*/d\theta = -A^{-1}\partial f/\partial\theta`, so for a loss :math:`L(s^*)`

.. math::  \frac{dL}{d\theta} = -v^\top \frac{\partial f}{\partial\theta}, \qquad A^\top v = \frac{\partial L}{\partial s^*}.

For a fixed-point map :math:`s = g(s)` (:math:`f = g - s`) this is :math:`(I - J_g)^\top v' = \partial L/\partial s^*`,
the recurrent backprop of Almeida (1987) and Pineda (1987) and the backward pass of deep equilibrium models
(Bai, Kolter & Koltun 2019, NeurIPS); for a gradient flow it is
:math:`dL/d\theta = -(\partial L/\partial s)^\top H^{-1}\partial^2E/\partial s\partial\theta`. The linear system is
solved with lineax (LU on the materialised Jacobian; the states here are small).

:func:`bptt_gradient` is the second reference: reverse-mode autodiff through a fixed-horizon
:func:`dynlearn.simulate` relaxation from an initial state (diffrax's checkpointed adjoint). It tends to
the implicit gradient as the horizon grows, at the contraction rate of the flow.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np

from ..dynamics import max_norm, model_flow, simulate
from ..errors import NonFiniteError, NotConvergedError
from ..models.base import Data
from .fixed_points import flow_jacobian, is_stable


def _params_of(model):
    """The part of ``model`` that is differentiated: ``model.network`` when it has one, else the whole model."""
    return getattr(model, "network", None)


def _with_params(model, params):
    if hasattr(model, "network"):
        return eqx.tree_at(lambda m: m.network, model, params)
    return params


def _diff_target(model):
    params = _params_of(model)
    return model if params is None else params


def _loss_of(model, loss):
    if loss is not None:
        return loss
    if not hasattr(model, "cost"):
        raise TypeError(f"{type(model).__name__} has no cost(state, data): pass loss=")
    return model.cost


def implicit_gradient(
    model,
    state,
    data: Data,
    *,
    loss: Callable | None = None,
    residual_tol: float = 1e-8,
    check_stable: bool = True,
    solver: lx.AbstractLinearSolver | None = None,
):
    r""":math:`dL(s^*)/d\theta` at the equilibrium ``state`` by the implicit-function theorem.

    Args:
        model: any model with ``vector_field(t, state, data)``; the gradient is taken with respect to
            ``model.network`` when the model has one (else every inexact array in the model).
        state: the equilibrium (relax and, for theorem checks, polish it first).
        data: the :class:`~dynlearn.models.Data` of the equilibrium (``nudge = 0`` for EP's free phase).
        loss: ``loss(state, data) -> scalar``; default ``model.cost``.
        residual_tol: ``state`` must satisfy :math:`\max|f| \le` ``residual_tol``.
        check_stable: also require every eigenvalue of :math:`\partial f/\partial s` to have negative real part
            (an isolated, linearly stable equilibrium; the linear system is then well posed).
        solver: a lineax solver (default LU).

    Raises:
        NotConvergedError: ``state`` is not an equilibrium, or not a stable one (non-contracting network).
        NonFiniteError: the linear solve produced NaN/inf (singular Jacobian).
    """
    target = _diff_target(model)
    loss = _loss_of(model, loss)
    concrete = not any(isinstance(a, jax.core.Tracer) for a in jax.tree.leaves((state, model, data)))
    if concrete:
        jac, res = _jacobian_and_residual(model, state, data)
        res = float(res)
        if not np.isfinite(res) or res > residual_tol:
            raise NotConvergedError(
                f"implicit_gradient: the state is not an equilibrium (max|ds/dt| = {res:.3e} > {residual_tol:g}); "
                "relax (and polish) the model first"
            )
        if check_stable:
            ev = np.linalg.eigvals(np.asarray(jac))
            if not is_stable(ev):
                raise NotConvergedError(
                    f"implicit_gradient: the equilibrium is not linearly stable (largest real part of an eigenvalue of "
                    f"the flow's Jacobian = {float(np.max(ev.real)):.3e} >= 0); the network is not contracting there"
                )
    grad = _implicit_core(model, target, state, data, loss, solver or lx.LU())
    if concrete and not all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(eqx.filter(grad, eqx.is_inexact_array))):
        raise NonFiniteError("implicit_gradient: the linear solve gave NaN/inf; the Jacobian at the equilibrium is singular")
    return grad


@eqx.filter_jit
def _jacobian_and_residual(model, state, data):
    args = (model, data)
    return flow_jacobian(model_flow, state, args), max_norm(model_flow(0.0, state, args))


@eqx.filter_jit
def _implicit_core(model, target, state, data, loss, solver):
    def field(s, params):
        return _with_params(model, params).vector_field(0.0, s, data)

    dlds = jax.grad(lambda s: loss(s, data))(state)
    op = lx.JacobianLinearOperator(lambda s, args: field(s, target), state)
    v = lx.linear_solve(op.T, dlds, solver=solver, throw=False).value
    _, vjp = jax.vjp(lambda p: field(state, p), target)
    (grad,) = vjp(v)
    return jax.tree.map(jnp.negative, grad)


def bptt_gradient(
    model,
    state0,
    data: Data,
    *,
    loss: Callable | None = None,
    t1: float,
    dt0: float,
    solver: str = "heun",
    horizons=None,
):
    r""":math:`dL(s(t_1))/d\theta` by backprop through time: autodiff through :func:`dynlearn.simulate` of the
    model's flow from ``state0`` over ``[0, t1]`` with fixed step ``dt0`` (``solver="euler"`` gives the
    discrete iteration :math:`s_{k+1} = s_k + dt\,f(s_k)`); ``loss(state, data)`` defaults to ``model.cost``.

    With ``horizons`` (times ``<= t1``), the gradients of :math:`L(s(T))` for every ``T`` in ``horizons``, stacked
    on a leading axis (one simulation, one reverse pass per horizon).
    Raises :class:`NonFiniteError` when the gradient is not finite (diverging relaxation).
    """
    target = _diff_target(model)
    loss = _loss_of(model, loss)
    ts = jnp.asarray([t1] if horizons is None else horizons, dtype=jnp.result_type(float))
    grad = _bptt_core(model, target, state0, data, loss, float(t1), float(dt0), solver, ts)
    if horizons is None:
        grad = jax.tree.map(lambda g: g[0], grad)
    leaves = [a for a in jax.tree.leaves(eqx.filter(grad, eqx.is_inexact_array)) if not isinstance(a, jax.core.Tracer)]
    if not all(bool(jnp.all(jnp.isfinite(a))) for a in leaves):
        raise NonFiniteError("bptt_gradient: NaN/inf gradient; the relaxation diverges or dt0 is too large")
    return grad


@eqx.filter_jit
def _bptt_core(model, target, state0, data, loss, t1, dt0, solver, ts):
    def losses(params):
        m = _with_params(model, params)
        traj = simulate(model_flow, state0, (m, data), t1=t1, dt0=dt0, ts=ts, solver=solver, name="bptt")
        return jax.vmap(lambda i: loss(jax.tree.map(lambda a: a[i], traj.ys), data))(jnp.arange(ts.shape[0]))

    return jax.jacrev(losses)(target)
