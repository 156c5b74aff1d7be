r"""Integrating models in time: one wrapper around diffrax for every model in dynlearn.

* :func:`relax` integrates :math:`\dot y = f(t, y)` to a steady state — for energy models
  :math:`f = -\partial E/\partial y` — and returns an :class:`Equilibrium`. The steady-state test is on
  the vector field, :math:`\max|f(t,y)| \le \mathrm{tol}`, not on the state; errors and step sizes use
  the max-norm over the whole (batched) state, so one sample's relaxation does not depend on how many
  other samples share the batch. Energies are summed (not averaged) over the batch for the same reason.
* :func:`polish` takes a relaxed state to machine precision with a Newton root-find (optimistix), which
  theorem checks need: the error floor of a finite-difference estimator with nudge β is residual/β.
* :func:`simulate` integrates an ODE or an additive-noise SDE over a fixed horizon (models that never
  settle: learning with noise, microcircuits under a stream of inputs) and saves derived quantities.

Every function here takes the vector field as a plain function ``f(t, y, args)``; the model travels
in ``args`` so that a jitted solve is compiled once per model class and shape, not once per weight value.
Models reach a steady state through :func:`dynlearn.models.equilibrium`, which uses :func:`model_flow`
with ``args = (model, data)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, Bool, Float, Int, PyTree

from . import steady_state
from .config import DEFAULT, RelaxConfig, get_solver
from .errors import DivergedError, NotConvergedError
from . import validation as _validation
from .status import _SINKS, CONVERGED, DIVERGED, MAX_STEPS, NOT_STEADY, StatusSink, collect_status, status_error  # noqa: F401


def max_norm(tree: PyTree) -> Float[Array, ""]:
    """Largest absolute entry over all leaves of a PyTree (works for complex states)."""
    leaves = [jnp.max(jnp.abs(a)) for a in jax.tree.leaves(tree) if jnp.size(a)]
    return jnp.max(jnp.stack(leaves)) if leaves else jnp.zeros(())


def model_flow(t, y, args):
    """The generic vector field of every model: ``args = (model, data)`` gives ``model.vector_field(t, y, data)``."""
    model, data = args
    return model.vector_field(t, y, data)


class Equilibrium(eqx.Module):
    """The end of a relaxation.

    Attributes:
        state: the final state (same PyTree as the initial state).
        residual: :math:`\\max|f(t, y)|` at the final state.
        time: the time reached.
        num_steps: accepted + rejected solver steps (Newton iterations after :func:`polish`).
        status: ``CONVERGED`` (0), ``NOT_STEADY`` (1), ``MAX_STEPS`` (2) or ``DIVERGED`` (3).
        ts, ys: saved times and states (time is the leading axis) when ``save_ts`` was given; times after
            the steady state was reached are ``inf`` and are dropped by :func:`dynlearn.results.trajectory_dataset`.
    """

    state: PyTree
    residual: Float[Array, ""]
    time: Float[Array, ""]
    num_steps: Int[Array, ""]
    status: Int[Array, ""]
    ts: Float[Array, " T"] | None = None
    ys: PyTree | None = None

    @property
    def converged(self) -> Bool[Array, ""]:
        return self.status == CONVERGED


def _status_messages(name: str, tol) -> list[str]:
    return [
        f"{name}: converged",
        f"{name}: relaxation did not reach a steady state (max|dy/dt| <= {tol:g}) by t1; increase t1 or check that the model is stable",
        f"{name}: relaxation hit max_steps before reaching a steady state (max|dy/dt| <= {tol:g}); increase max_steps or t1",
        f"{name}: relaxation diverged (state left the bounded region or became NaN/inf)",
    ]


def raise_for_status(eq: Equilibrium, name: str = "model", tol: float | None = None) -> Equilibrium:
    """Raise :class:`NotConvergedError` / :class:`DivergedError` unless ``eq`` converged.

    With concrete values the message gives the time reached, the residual and the step count. Inside ``jit`` the
    status is recorded by an enclosing :func:`collect_status` (the training loop raises the typed error on the host);
    without one it becomes an :func:`equinox.error_if` runtime check with a fixed message.
    """
    if isinstance(eq.status, jax.core.Tracer):
        if _SINKS and _SINKS[-1].owns(eq.status):
            _SINKS[-1].entries.append((name, tol, eq))
            return eq
        msgs = _status_messages(name, tol if tol is not None else float("nan"))
        state = eqx.branched_error_if(eq.state, eq.status != CONVERGED, eq.status, msgs)
        return eqx.tree_at(lambda e: e.state, eq, state)
    err = status_error(int(eq.status), name, eq.time, eq.residual, eq.num_steps, tol)
    if err is not None:
        raise err
    return eq


@eqx.filter_jit
def _relax(field, y0, args, config: RelaxConfig, save_ts):
    tol, bound = config.tol, config.bound
    solver, controller = config.diffrax_solver(), config.step_controller()
    # steady mode: carry r = max|f(t, y)| with the state, (y, r), from the solver's own last evaluation (see
    # dynlearn.steady_state); the carried r at the end is the final residual
    track = config.steady and steady_state.tracks_residual(solver, controller)
    part = (lambda t, yr, args: yr[0]) if track else (lambda t, y, args: y)

    def diverged(t, y, args, **kwargs):
        n = max_norm(y[0] if track else y)
        return jnp.logical_not(jnp.isfinite(n)) | (n > bound)

    events = {"diverged": diverged} if config.steady else {}  # a fixed budget runs eventless: divergence is judged at t1
    if track:
        r0 = max_norm(field(0.0, y0, args)).astype(jnp.result_type(*jax.tree.leaves(y0)))  # the test at t0
        field_, solver, y0 = steady_state.AugmentedField(field), steady_state.ResidualTracking(solver), (y0, r0)
        events["steady"] = lambda t, yr, args, **kw: yr[1] <= tol
    else:
        field_ = field
        if config.steady:
            events["steady"] = steady_state.steady_event(field, tol)
    subs = [diffrax.SubSaveAt(t1=True, fn=lambda t, y, args: y)] + ([] if save_ts is None else [diffrax.SubSaveAt(ts=save_ts, fn=part)])
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field_),
        solver,
        t0=0.0,
        t1=config.t1,
        dt0=config.initial_step(),
        y0=y0,
        args=args,
        saveat=diffrax.SaveAt(subs=subs),
        stepsize_controller=controller,
        event=diffrax.Event(events) if events else None,
        max_steps=config.max_steps,
        throw=False,
    )
    end = jax.tree.map(lambda a: a[-1], sol.ys[0])
    t = sol.ts[0][-1]
    y, residual = end if track else (end, max_norm(field(t, end, args)))
    blown = (sol.event_mask["diverged"] if sol.event_mask is not None else False) | ~all_finite((y, residual)) | (max_norm(y) > bound)
    hit_max = sol.result == diffrax.RESULTS.max_steps_reached
    # a finite-time blow-up exhausts the step budget as the steps shrink toward the singularity: when the state still
    # moves so fast that at its current speed it would travel past the divergence bound before t1, it diverged
    blown = blown | (hit_max & (residual * (config.t1 - t) > bound))
    if config.steady:
        status = jnp.where(residual <= tol, CONVERGED, jnp.where(hit_max, MAX_STEPS, NOT_STEADY))
    else:  # a fixed budget: reaching t1 is success
        status = jnp.where(hit_max, MAX_STEPS, CONVERGED)
    status = jnp.where(blown, DIVERGED, status)
    ts = ys = None
    if save_ts is not None:
        ts, ys = sol.ts[1], sol.ys[1]
    return Equilibrium(y, residual, t, sol.stats["num_steps"], status, ts, ys)


def all_finite(tree: PyTree) -> Bool[Array, ""]:
    """Whether every entry of every inexact leaf of ``tree`` is finite (traceable)."""
    leaves = [jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(tree) if eqx.is_inexact_array(a)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def is_complex(tree: PyTree) -> bool:
    """Whether any leaf of ``tree`` is complex."""
    return any(jnp.iscomplexobj(a) for a in jax.tree.leaves(tree))


class _SplitComplex(eqx.Module):
    re: Array
    im: Array


def _split_complex_leaves(tree: PyTree) -> PyTree:
    """Complex array leaves as ``(Re, Im)`` pairs: diffrax sees only real arrays (its complex support is partial)."""
    return jax.tree.map(lambda a: _SplitComplex(jnp.real(a), jnp.imag(a)) if eqx.is_array(a) and jnp.iscomplexobj(a) else a, tree)


def _join_complex_leaves(tree: PyTree) -> PyTree:
    is_split = lambda a: isinstance(a, _SplitComplex)  # noqa: E731
    return jax.tree.map(lambda a: a.re + 1j * a.im if is_split(a) else a, tree, is_leaf=is_split)


def complex_as_real(t, y, args):
    """A holomorphic field ``f(t, z, inner_args)`` as a real field on ``(Re z, Im z)``; ``args = (f, inner_args)``
    with the complex leaves of ``inner_args`` split into real pairs.

    diffrax then integrates a real system (its error norms and events need real states); :func:`relax` does the
    conversion whenever the state or the arguments are complex.
    """
    field, inner = args
    f = field(t, from_real_pair(y), _join_complex_leaves(inner))
    return jax.tree.map(jnp.real, f), jax.tree.map(jnp.imag, f)


def to_real_pair(z: PyTree) -> tuple[PyTree, PyTree]:
    return jax.tree.map(jnp.real, z), jax.tree.map(jnp.imag, z)


def from_real_pair(y: tuple[PyTree, PyTree]) -> PyTree:
    re, im = y
    return jax.tree.map(lambda a, b: a + 1j * b, re, im)


def _complex_back(eq: Equilibrium) -> Equilibrium:
    ys = None if eq.ys is None else from_real_pair(eq.ys)
    return eqx.tree_at(lambda e: (e.state, e.ys), eq, (from_real_pair(eq.state), ys), is_leaf=lambda x: x is None)


def relax(
    field: Callable[[Any, PyTree, Any], PyTree],
    y0: PyTree,
    args: Any = None,
    config: RelaxConfig = DEFAULT,
    *,
    save_ts: Float[Array, " T"] | None = None,
    name: str = "model",
    **overrides,
) -> Equilibrium:
    """Integrate ``dy/dt = field(t, y, args)`` from ``y0`` at ``t = 0`` until it is steady (see :class:`RelaxConfig`).

    Args:
        field: the vector field ``f(t, y, args)``; for a model use :func:`dynlearn.models.equilibrium`.
        y0: initial state (any PyTree of arrays; batched states are fine). A complex state is integrated as the
            real system on ``(Re y, Im y)`` (:func:`complex_as_real`) and returned complex.
        config: a :class:`dynlearn.config.RelaxConfig` (solver, controller or tolerances, ``t1``, budget, polish);
            ``overrides`` change single fields (``relax(f, y0, args, THEOREM, t1=10.0)``).
        save_ts: times at which to save the trajectory (see :func:`dynlearn.results.trajectory_dataset`).
        name: the model's name, used in error messages.

    Returns:
        An :class:`Equilibrium`; raises :class:`NotConvergedError` / :class:`DivergedError` unless it converged
        and ``config.throw`` is false. With ``config.polish`` the state is finished by :func:`polish`.
    """
    _validation.relax_config(config, name)
    config = config.replace(**overrides) if overrides else config
    _validation.relax_args(config, y0, save_ts, name)
    if save_ts is not None:
        save_ts = jnp.asarray(save_ts)
    if is_complex(y0) or is_complex(eqx.filter(args, eqx.is_array)):
        split_args = (field, _split_complex_leaves(args))
        eq = _relax(complex_as_real, to_real_pair(y0), split_args, config, save_ts)
        if config.polish:
            eq = _polished(complex_as_real, eq, split_args, config, name)
        eq = _complex_back(eq)
    else:
        eq = _relax(field, y0, args, config, save_ts)
        if config.polish:
            eq = _polished(field, eq, args, config, name)
    return raise_for_status(eq, name, config.tol if not config.polish else config.polish_tol) if config.throw else eq


def _polished(field, eq: Equilibrium, args, config: RelaxConfig, name: str) -> Equilibrium:
    """``eq`` with the Newton-polished state, residual and status (the relaxation's time, steps and trajectory kept)."""
    p = polish(field, eq, args, tol=config.polish_tol, max_steps=config.polish_max_steps, name=name, throw=False)
    status = jnp.where(eq.status == DIVERGED, DIVERGED, p.status)
    return eqx.tree_at(lambda e: (e.state, e.residual, e.status), eq, (p.state, p.residual, status))


@eqx.filter_jit
def _polish(field, y, args, rtol, atol, max_steps):
    fn = lambda y, args: field(0.0, y, args)
    sol = optx.root_find(fn, optx.Newton(rtol=rtol, atol=atol, norm=optx.max_norm), y, args, max_steps=max_steps, throw=False)
    residual = max_norm(fn(sol.value, args))
    return sol.value, residual, sol.stats["num_steps"]


def polish(
    field: Callable[[Any, PyTree, Any], PyTree],
    eq: Equilibrium | PyTree,
    args: Any = None,
    *,
    tol: float = 1e-12,
    max_steps: int = 50,
    name: str = "model",
    throw: bool = True,
) -> Equilibrium:
    """Newton's method on ``field(0, y, args) = 0`` from a relaxed state, to residual ``<= tol``.

    Use after :func:`relax` for theorem checks; the Jacobian is formed densely, so keep states small
    (a few hundred numbers). Raises :class:`NotConvergedError` when the residual stays above ``tol``.
    """
    y0 = eq.state if isinstance(eq, Equilibrium) else eq
    y, residual, steps = _polish(field, y0, args, 0.0, tol * 1e-2, max_steps)
    status = jnp.where(jnp.isfinite(residual), jnp.where(residual <= tol, CONVERGED, NOT_STEADY), DIVERGED)
    t = eq.time if isinstance(eq, Equilibrium) else jnp.zeros(())
    out = Equilibrium(y, residual, t, steps, status)
    if throw and not isinstance(status, jax.core.Tracer) and int(status) != CONVERGED:
        raise NotConvergedError(
            f"{name}: Newton polish stopped at residual max|dy/dt| = {float(residual):.3e} > tol = {tol:g} "
            f"after {int(steps)} iterations; the equilibrium may be singular (check the Jacobian's spectrum)"
        )
    return out


class Trajectory(eqx.Module):
    """A fixed-horizon solution: saved times ``ts``, saved values ``ys`` (time leading) and the final state."""

    ts: Float[Array, " T"]
    ys: PyTree
    final: PyTree


@eqx.filter_jit
def _simulate(field, diffusion, y0, args, solver, t0, t1, dt0, ts, save_fn, key, max_steps, brownian_tol, noise_shape=None, brownian="virtual"):
    adjoint = diffrax.RecursiveCheckpointAdjoint()
    if diffusion is None:
        terms = diffrax.ODETerm(field)
    else:
        import lineax as lx

        if noise_shape is None:
            shape = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), y0)
            noise_vf = lambda t, y, a: lx.DiagonalLinearOperator(diffusion(t, y, a))
        else:
            shape = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), noise_shape)
            noise_vf = diffusion  # returns a lineax operator from the noise space to the state
        if brownian == "virtual":
            bm = diffrax.VirtualBrownianTree(t0, t1, tol=brownian_tol, shape=shape, key=key, levy_area=diffrax.SpaceTimeLevyArea)
        else:  # "unsafe": one Gaussian draw per step, fixed steps only, forward mode
            # Euler/Heun use only the increments; the stochastic Runge-Kutta solvers (ShARK, SRA1, SEA) need the Levy area
            levy = diffrax.BrownianIncrement if isinstance(solver, (diffrax.Euler, diffrax.Heun)) else diffrax.SpaceTimeLevyArea
            bm = diffrax.UnsafeBrownianPath(shape=shape, key=key, levy_area=levy)
            adjoint = diffrax.ForwardMode()
        terms = diffrax.MultiTerm(diffrax.ODETerm(field), diffrax.ControlTerm(noise_vf, bm))
    fn = (lambda t, y, a: y) if save_fn is None else save_fn
    # ts None: save t0 and t1 directly, not through the per-step search and interpolation that a ts grid costs
    saved_at = diffrax.SubSaveAt(t0=True, t1=True, fn=fn) if ts is None else diffrax.SubSaveAt(ts=ts, fn=fn)
    saveat = diffrax.SaveAt(subs=[saved_at, diffrax.SubSaveAt(t1=True)])
    sol = diffrax.diffeqsolve(
        terms, solver, t0=t0, t1=t1, dt0=dt0, y0=y0, args=args, saveat=saveat, max_steps=max_steps, throw=False, adjoint=adjoint
    )
    saved, last = sol.ys
    final = jax.tree.map(lambda a: a[-1], last)
    return Trajectory(sol.ts[0], saved, final), sol.result == diffrax.RESULTS.successful


def simulate(
    field: Callable[[Any, PyTree, Any], PyTree],
    y0: PyTree,
    args: Any = None,
    *,
    t1: float,
    dt0: float,
    ts: Float[Array, " T"] | None = None,
    t0: float = 0.0,
    solver: str | diffrax.AbstractSolver = "heun",
    diffusion: Callable[[Any, PyTree, Any], PyTree] | None = None,
    key: Array | None = None,
    save_fn: Callable[[Any, PyTree, Any], PyTree] | None = None,
    max_steps: int | None = None,
    brownian_tol: float | None = None,
    noise_shape: PyTree | None = None,
    brownian: str = "virtual",
    name: str = "model",
    throw: bool = True,
) -> Trajectory:
    """Integrate an ODE, or the additive-noise SDE ``dy = f dt + g ⊙ dW``, from ``t0`` to ``t1`` with step ``dt0``.

    Args:
        field: drift ``f(t, y, args)``.
        diffusion: ``g(t, y, args)``, a PyTree shaped like ``y`` (diagonal noise: each state entry gets its
            own Brownian motion scaled by ``g``); ``None`` for an ODE.
        key: PRNG key of the Brownian path (a :class:`diffrax.VirtualBrownianTree`: reproducible, any step size).
        ts: save times (default: ``t0`` and ``t1``); ``save_fn(t, y, args)`` saves derived quantities
            (angles, norms) instead of the full state.
        solver: for SDEs with additive noise ``"shark"`` (recommended), ``"sra1"``, ``"euler"``/``"heun"``.
        noise_shape: when only part of the state is noisy, the shape (PyTree of arrays or ShapeDtypeStructs)
            of the Brownian motion; ``diffusion`` then returns a lineax linear operator from that space to the
            state (e.g. a :class:`lineax.FunctionLinearOperator`) instead of a diagonal.
        brownian: ``"virtual"`` (:class:`diffrax.VirtualBrownianTree`, default) or ``"unsafe"``
            (:class:`diffrax.UnsafeBrownianPath`: one Gaussian increment per step, fixed steps and forward mode
            only, much cheaper for long runs; reproducible for a given key and step size).
        throw: raise :class:`DivergedError` when the solve fails or the final state is not finite.
    """
    _validation.simulate_args(t0, t1, dt0, max_steps, brownian_tol, y0, name)
    solver = get_solver(solver)
    if diffusion is not None and key is None:
        raise ValueError(f"{name}: an SDE needs a PRNG key for its Brownian motion (pass key=jax.random.key(seed))")
    ts = None if ts is None else jnp.asarray(ts)
    if max_steps is None:
        max_steps = int(np.ceil((t1 - t0) / dt0)) + 16
    if brownian_tol is None:
        brownian_tol = dt0 / 2
    if brownian not in ("virtual", "unsafe"):
        raise ValueError(f"{name}: brownian must be 'virtual' or 'unsafe', got {brownian!r}")
    traj, ok = _simulate(field, diffusion, y0, args, solver, t0, t1, dt0, ts, save_fn, key, max_steps, brownian_tol, noise_shape, brownian)
    # under vmap the solver's success can be concrete while the batched final state is traced: check only concrete values
    if throw and not any(isinstance(a, jax.core.Tracer) for a in (ok, *jax.tree.leaves(traj.final))):
        finite = all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(traj.final))
        if not bool(ok) or not finite:
            raise DivergedError(
                f"{name}: simulation from t = {t0:g} to {t1:g} failed ({'solver error' if not bool(ok) else 'NaN/inf in the final state'}); "
                "reduce dt0 or the learning rates, or check the parameters"
            )
    return traj
