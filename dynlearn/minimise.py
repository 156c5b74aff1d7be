r"""Equilibria the fast way: minimise the energy (or root-find the field) with optimistix instead of integrating a flow.

A gradient flow :math:`\dot s = -\nabla_s E` is a slow road to the minimum it ends at: explicit steps must stay
below :math:`2/\lambda_{\max}` of the Hessian, so reaching :math:`\max|\nabla E| \le` ``tol`` costs
:math:`O(\kappa \log(1/\mathrm{tol}))` field evaluations (:math:`\kappa` its condition number). A quasi-Newton
method learns the curvature as it goes. :class:`dynlearn.RelaxConfig`'s ``method`` chooses:

* ``"flow"`` (default): integrate the vector field with diffrax (:func:`dynlearn.dynamics.relax`);
* ``"bfgs"``, ``"lbfgs"``, ``"nonlinear_cg"``: minimise :meth:`EnergyModel.energy` with optimistix's BFGS
  (dense inverse-Hessian estimate per sample, Cholesky-free update), L-BFGS (limited memory) or nonlinear
  conjugate gradients, each with its backtracking Armijo line search. One step evaluates the energy and its
  gradient once (a forward and a backward pass: the cost of one vector-field evaluation);
* ``"newton"``: root-find the vector field of any :class:`~dynlearn.models.DynamicalModel` with optimistix's Newton
  method (its Jacobian formed densely with a lineax LU solve per step: for small states, e.g. theorem checks).

The stopping test is the flow's: :math:`\max|f(s)| \le` ``tol`` on the vector field :math:`f = -\nabla E`, tested
on the gradient the minimiser already holds (no extra evaluation), besides optimistix's own Cauchy test on steps
of round-off size, 10 machine epsilons of the state's dtype (it stops a solve that can no longer move: its status
then says whether ``tol`` was met).
The minimisers' line search compares energy values, whose round-off (~1e-16 |E| in float64) limits the gradient
they can certify to about :math:`\sqrt{\epsilon}` (~1e-8); for residuals below that, add ``polish=True`` (Newton on
the field, to ``polish_tol``) or use ``"newton"`` directly.
Precision matters more than for a flow: in float32 per-sample BFGS certifies the training tolerance (1e-2) and
trains PC as the flow does, while nonlinear CG stalls above it (measured on digits: residual 0.11); use float64 for
``"nonlinear_cg"`` and ``"lbfgs"`` (which needs the state in JAX's default float anyway).

The energy of the protocol is a sum of per-sample energies. The dense methods (``bfgs``: an inverse-Hessian
estimate, ``newton``: a Jacobian) therefore minimise a batch as independent problems, one per sample (``vmap``), so
their matrices stay the size of one sample's state; L-BFGS and nonlinear CG keep a few vectors and run on the whole
batch at once (``benchmarks/equilibria.py`` counts the evaluations of each against the best Euler step).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx

from .config import METHODS  # noqa: F401  (re-exported: the choices of RelaxConfig.method)
from .dynamics import (
    CONVERGED,
    DIVERGED,
    MAX_STEPS,
    NOT_STEADY,
    Equilibrium,
    all_finite,
    max_norm,
)
from .errors import ConfigError

MINIMISERS = ("bfgs", "lbfgs", "nonlinear_cg")
#: methods with a dense matrix per problem, run sample by sample on a batch (the others run on the whole batch)
PER_SAMPLE = ("bfgs", "newton")


class StopOnGradient(optx.AbstractMinimiser):
    """An optimistix minimiser that also stops once the gradient it holds has max-norm ``<= gtol``."""

    inner: optx.AbstractMinimiser
    gtol: float
    rtol: float = 0.0
    atol: float = 0.0
    norm: Any = optx.max_norm

    def init(self, fn, y, args, options, f_struct, aux_struct, tags):
        return self.inner.init(fn, y, args, options, f_struct, aux_struct, tags)

    def step(self, fn, y, args, options, state, tags):
        return self.inner.step(fn, y, args, options, state, tags)

    def terminate(self, fn, y, args, options, state, tags):
        done, result = self.inner.terminate(fn, y, args, options, state, tags)
        small = jnp.logical_not(state.first_step) & (max_norm(state.f_info.grad) <= self.gtol)
        return done | small, result

    def postprocess(self, fn, y, aux, args, options, state, tags, result):
        return self.inner.postprocess(fn, y, aux, args, options, state, tags, result)


def minimiser(method: str, tol: float, atol: float) -> optx.AbstractMinimiser:
    """The optimistix minimiser of ``method`` stopping at gradient max-norm ``tol`` (or steps below ``atol``)."""
    kw = {"rtol": 0.0, "atol": atol, "norm": optx.max_norm}
    inner = {"bfgs": optx.BFGS, "lbfgs": optx.LBFGS, "nonlinear_cg": optx.NonlinearCG}[method](**kw)
    return StopOnGradient(inner, tol)


def _batched(model, data, state0) -> bool:
    """Whether ``state0`` and ``data`` carry one leading batch axis to minimise over sample by sample."""
    x = data.x
    if x is None or data.stream is not None or getattr(x, "ndim", 0) < 2:
        return False
    n = x.shape[0]
    leaves = jax.tree.leaves(state0) + ([] if data.y is None or getattr(data.y, "ndim", 0) == 0 else [data.y])
    return all(getattr(a, "ndim", 0) >= 1 and a.shape[0] == n for a in leaves)


def _one_sample(data, x, y):
    from .models.base import Data

    return Data(x[None], None if y is None else y[None], data.nudge, None)


@eqx.filter_jit
def _solve(model, data, state0, method: str, tol: float, atol: float, max_steps: int, bound: float) -> Equilibrium:
    batched = method in PER_SAMPLE and _batched(model, data, state0)
    if method == "newton":
        solver = optx.Newton(rtol=0.0, atol=atol, norm=optx.max_norm)

        def solve(s, d):
            fn = lambda s, d: model.vector_field(0.0, s, d)
            return optx.root_find(fn, solver, s, d, max_steps=max_steps, throw=False)
    else:
        solver = minimiser(method, tol, atol)

        def solve(s, d):
            return optx.minimise(lambda s, d: model.energy(s, d), solver, s, d, max_steps=max_steps, throw=False)

    if batched:  # one problem per sample, each state with a batch axis of 1
        per = jax.vmap(lambda s, x, y: solve(jax.tree.map(lambda a: a[None], s), _one_sample(data, x, y)), in_axes=(0, 0, None if data.y is None else 0))
        sol = per(state0, data.x, data.y)
    else:
        sol = solve(state0, data)
    state = jax.tree.map(lambda a, b: a.reshape(b.shape), sol.value, state0)
    steps = jnp.max(sol.stats["num_steps"])
    residual = max_norm(model.vector_field(0.0, state, data))
    blown = ~all_finite((state, residual)) | (max_norm(state) > bound)
    status = jnp.where(residual <= tol, CONVERGED, jnp.where(steps >= max_steps, MAX_STEPS, NOT_STEADY))
    status = jnp.where(blown, DIVERGED, status)
    return Equilibrium(state, residual, jnp.zeros((), residual.dtype), steps, status)


def solve_equilibrium(model, data, state0, config, name: str) -> Equilibrium:
    """``model``'s steady state from ``state0`` by ``config.method`` (not ``"flow"``), status as :func:`relax`'s.

    ``tol`` is the residual the solve stops at and the status is judged on (the controller tolerances ``rtol``/``atol``
    of a flow do not apply); ``max_steps`` bounds the iterations; the state counts as diverged beyond ``bound``.
    """
    from .dynamics import raise_for_status
    from .models.base import EnergyModel

    if config.method in MINIMISERS and not isinstance(model, EnergyModel):
        raise ConfigError(
            f"{name}: RelaxConfig.method={config.method!r} minimises an energy, and {name} is not an EnergyModel; "
            "use method='flow' or 'newton' (a root-find of its vector field)"
        )
    if jnp.iscomplexobj(data.nudge) or any(jnp.iscomplexobj(a) for a in jax.tree.leaves(state0)):
        raise ConfigError(f"{name}: RelaxConfig.method={config.method!r} needs a real state and nudge; use method='flow'")
    default = jnp.result_type(float)
    if config.method == "lbfgs" and any(a.dtype != default for a in jax.tree.leaves(state0) if eqx.is_inexact_array(a)):
        raise ConfigError(
            f"{name}: RelaxConfig.method='lbfgs' needs the state in JAX's default float ({default}; optimistix's L-BFGS "
            "mixes it with the state's own); cast the network, or use method='bfgs' or 'nonlinear_cg'"
        )
    floats = [a.dtype for a in jax.tree.leaves(state0) if eqx.is_inexact_array(a)]
    atol = 10 * float(jnp.finfo(floats[0] if floats else default).eps)
    eq = _solve(model, data, state0, config.method, config.tol, atol, config.max_steps, config.bound)
    return raise_for_status(eq, name, config.tol) if config.throw else eq
