r"""Simulating PAL (:mod:`dynlearn.models.pal`): patterns presented in turn, one additive-noise SDE, state checks.

:func:`simulate_pal` presents ``inputs[k]`` (and ``targets[k]``) for ``T_pres`` each with the noise, the filters and
both plasticity rules on, one :func:`dynlearn.simulate` call per pattern inside ``lax.scan`` (Max et al. 2024, Nat.
Mach. Intell. 6:619, Fig. 3: patterns presented for :math:`T_{pres} = 1` ms, Euler–Maruyama with dt = 0.01 ms).
The drift is ``model.vector_field(t, state, data)`` with ``args = (model, data)`` and ``data = Data(x_k, y_k, β)``
(β, PAL's output nudging, is ``data.nudge``); the diffusion receives the same ``args``. :func:`check_state` names the
part of a state that became NaN/inf or left ``|·| ≤ bound``.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from ..dynamics import all_finite, max_norm, model_flow, simulate
from ..errors import DivergedError, NonFiniteError, ShapeError
from .base import Data
from .pal import PAL, PALState


def _pal_diffusion(t, y, args):
    return args[0].noise_operator(y)


def _pal_diffusion_dense(t, y, args):
    return args[0].noise_operator_dense(y)


def _zero_save(t, y, args):
    return jnp.zeros(())


def run_patterns(model: PAL, state: PALState, inputs, targets, key, t_pres, dt, solver="euler", brownian="unsafe", save_fn=None, nudge=1.0):
    """Present ``inputs[k]`` (and ``targets[k]``) for ``t_pres`` each, one :func:`simulate` call per pattern inside
    ``lax.scan`` (traceable: no checks; :func:`simulate_pal` is the checked entry point). Returns ``(final, saved)``."""
    save_fn = _zero_save if save_fn is None else save_fn
    # one dtype for state and parameters: the network's, promoted like diffrax promotes y0 to the time's dtype
    dtype = jnp.result_type(state.network.weights[0].dtype, jnp.asarray(t_pres).dtype)
    model = jax.tree.map(lambda a: a.astype(dtype), model.dynamics_only())
    state = jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, state)
    nudge = jnp.asarray(nudge, dtype)

    def segment(y, pattern):
        x, tgt, k = pattern
        traj = simulate(
            model_flow,
            y,
            (model, Data(x, tgt, nudge)),
            t1=t_pres,
            dt0=dt,
            ts=jnp.asarray([t_pres]),
            solver=solver,
            diffusion=_pal_diffusion if solver in ("euler", "heun") else _pal_diffusion_dense,
            noise_shape=model.noise_shape(y),
            key=jax.random.fold_in(key, k),
            save_fn=save_fn,
            brownian=brownian,
            throw=False,
        )
        return traj.final, jax.tree.map(lambda a: a[0], traj.ys)

    ks = jnp.arange(inputs.shape[0])
    return jax.lax.scan(segment, state, (inputs, targets, ks))


@eqx.filter_jit
def _run_batch(model, states, inputs, targets, keys, nudge, t_pres, dt, solver, brownian, save_fn):
    def one(m, s, i, t, k, b):
        return run_patterns(m, s, i, t, k, t_pres, dt, solver, brownian, save_fn, b)

    return jax.vmap(one)(model, states, inputs, targets, keys, nudge)


_run_one = eqx.filter_jit(run_patterns)


def _check_run(model: PAL, state: PALState, inputs, targets, *, dt, t_pres, batched, bound, name):
    """Validate a run's arguments; returns ``(inputs, targets)`` as arrays of the network's dtype."""
    ws = state.network.weights
    inputs = jnp.asarray(inputs, ws[0].dtype)
    sizes = (ws[0].shape[-1],) + tuple(w.shape[-2] for w in ws)
    lead = 1 if batched else 0
    if inputs.ndim != 2 + lead or inputs.shape[-1] != sizes[0]:
        raise ShapeError(f"{name}: inputs must have shape ({'S, ' if batched else ''}K, {sizes[0]}), got {inputs.shape}")
    if not bool(all_finite(inputs)):
        raise NonFiniteError(f"{name}: inputs contain NaN or inf")
    if targets is not None:
        targets = jnp.asarray(targets, ws[0].dtype)
        if targets.shape != inputs.shape[:-1] + (sizes[-1],):
            raise ShapeError(f"{name}: targets must have shape {inputs.shape[:-1] + (sizes[-1],)}, got {targets.shape}")
    check_state(state, name=f"{name} (initial state)", bound=bound)
    if dt <= 0 or t_pres <= 0 or t_pres / dt < 1:
        raise ValueError(f"{name}: need 0 < dt <= t_pres, got dt={dt}, t_pres={t_pres}")
    if abs(t_pres / dt - round(t_pres / dt)) > 1e-9:
        raise ValueError(f"{name}: t_pres = {t_pres} must be a whole number of steps dt = {dt}")
    for what in ("tau", "tau_xi", "tau_hp"):
        smallest = float(jnp.min(getattr(model, what)))
        if dt >= 2 * smallest:
            raise ValueError(f"{name}: dt = {dt} does not resolve {what} = {smallest} (the explicit step is unstable for dt >= 2 {what}; use dt <= {what}/5)")
    if model.rule_lag_stages:
        stage = float(jnp.min(model.rule_lag)) / model.rule_lag_stages
        if dt > stage * (1 + 1e-9):
            raise ValueError(f"{name}: dt = {dt} is longer than a stage of the rule's lag (rule_lag / rule_lag_stages = {stage:g}); use dt <= {stage:g}")
    return inputs, targets


def simulate_pal(
    model: PAL,
    state: PALState,
    inputs: Array,
    targets: Array | None = None,
    *,
    key: Array,
    nudge: float | Array = 1.0,
    t_pres: float = 1.0,
    dt: float = 0.01,
    solver: str = "euler",
    brownian: str = "unsafe",
    save_fn=None,
    batched: bool = False,
    bound: float = 1e6,
    name: str = "PAL",
):
    r"""Integrate PAL while the patterns ``inputs[k]`` are shown for ``t_pres`` ms each (noise, filters and both rules on).

    Args:
        model: a :class:`PAL` (with ``batched=True`` its parameters may carry a leading seed/condition axis).
        state: initial :class:`PALState` (leading axis ``S`` when ``batched``).
        inputs: ``(K, n_0)`` patterns in presentation order (``(S, K, n_0)`` when batched).
        targets: ``(K, n_N)`` targets (nudged output), or ``None`` for no teacher.
        key: PRNG key of the noise (``(S,)`` keys when batched); the Brownian path of pattern ``k`` is drawn from
            ``fold_in(key, k)``, so a run is reproducible for a given key, ``dt`` and solver.
        nudge: PAL's output nudging strength β (``data.nudge`` of every pattern; ``(S,)`` values when batched).
        dt: fixed step; it must resolve ``τ_ξ`` and ``τ_HP`` (``dt ≤ τ_ξ/5`` is a good rule).
        solver: an additive-noise SDE solver: ``"euler"`` (Euler–Maruyama, the reference codes' choice),
            ``"heun"``, ``"shark"``, ``"sra1"``.
        brownian: ``"unsafe"`` (one Gaussian draw per step; fast) or ``"virtual"`` (a VirtualBrownianTree per pattern).
        save_fn: ``save_fn(t, state, args) -> PyTree`` of derived quantities saved at the end of every pattern
            (e.g. alignment angles), instead of the full state; ``args = (model, data)``.
        batched: vmap over a leading axis of ``state``, ``inputs``, ``targets``, ``key`` (and ``model``'s arrays):
            all seeds and conditions in one compiled call.
        bound: the run counts as diverged when any weight or potential exceeds this in absolute value.

    Returns:
        ``(final_state, saved)``: ``saved`` has a leading pattern axis (after the seed axis when batched).

    Raises:
        ShapeError: inputs/targets/backward matrices of the wrong shape.
        NonFiniteError: NaN/inf in the inputs, or in a high-pass-filtered rate during the run.
        DivergedError: the state left ``|·| ≤ bound`` or became NaN/inf.
    """
    inputs, targets = _check_run(model, state, inputs, targets, dt=dt, t_pres=t_pres, batched=batched, bound=bound, name=name)
    model = model.dynamics_only()
    if batched:
        n = inputs.shape[0]
        model = jax.tree.map(lambda a: jnp.broadcast_to(a, (n,)) if jnp.ndim(a) == 0 else a, model)
        nudge = jnp.broadcast_to(jnp.asarray(nudge), (n,))
        final, saved = _run_batch(model, state, inputs, targets, key, nudge, t_pres, dt, solver, brownian, save_fn)
    else:
        final, saved = _run_one(model, state, inputs, targets, key, t_pres, dt, solver, brownian, save_fn, nudge)
    check_state(final, name=name, bound=bound)
    return final, saved


@eqx.filter_jit
def _state_stats(state: PALState):
    """Per part: (all finite, max |.|), in one compiled call."""
    parts = {"forward weights": state.network, "backward matrices B": state.feedback, "potentials u": state.u, "noise xi": state.xi}
    return [(all_finite(r), max_norm(r)) for r in state.rbar], {k: (all_finite(v), max_norm(v)) for k, v in parts.items()}


def check_state(state: PALState, *, name: str = "PAL", bound: float = 1e6) -> None:
    """Raise a clear error if a PAL state is not finite or has left ``|·| ≤ bound``, naming the part that failed.

    Raises:
        NonFiniteError: a high-pass-filter state (the low-passed rate ``r̄``) is NaN/inf.
        DivergedError: any other part is NaN/inf or exceeds ``bound``, or ``r̄`` exceeds ``bound``.
    """
    rbar, parts = jax.device_get(_state_stats(state))
    for l, (finite, big) in enumerate(rbar, start=2):
        if not bool(finite):
            raise NonFiniteError(
                f"{name}: the high-pass filter of layer {l} (its low-passed rate r̄) is NaN/inf; "
                "dt must resolve tau_hp (dt <= tau_hp/5) and the rates must stay finite"
            )
        if float(big) > bound:
            raise DivergedError(f"{name}: the high-pass filter of layer {l} diverged (max|r̄| = {float(big):.3g} > {bound:g}); reduce dt")
    for what, (finite, big) in parts.items():
        if not bool(finite) or float(big) > bound:
            big = float(big) if bool(finite) else float("inf")
            raise DivergedError(
                f"{name}: the SDE diverged: {what} reached max|.| = {big:.3g} (bound {bound:g}); "
                "reduce dt or the learning rates eta_bw/eta_fw (Euler needs eta_bw * alpha * dt < 1)"
            )
