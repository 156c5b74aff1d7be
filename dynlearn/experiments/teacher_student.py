r"""Nonlinear teacher-student regression of Sacramento et al. (2018, NeurIPS 31, §3.2), learned in continuous time.

A 30-50-10 microcircuit (soft-plus rates, start in the SPS) learns from a 30-20-10 teacher
(:func:`sacramento_teacher`) with every weight plastic at every instant (no phases); the learners
(:data:`TS_LEARNERS`) differ in which weights learn, in the top-down weights and in the rates (with or without LE).
"""

from __future__ import annotations

import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ..models.base import Data
from ..models.microcircuit import Microcircuit, PatternStream, Plasticity, plastic_weights, preset, save_plastic, simulate_learning, with_weights
from ..networks import activation as get_activation
from .common import free_steady_state
from .. import draws

SIZES = (30, 50, 10)

TS_LEARNERS = {
    # name: (hidden layer learns, top-down = W^T at every instant, prospective (LE) rates)
    "microcircuit_fa": (True, False, True),
    "microcircuit_wt": (True, True, True),
    "shallow": (False, False, True),
    "microcircuit_fa_no_le": (True, False, False),
}


def sacramento_teacher(key, n_in: int = 30, n_hidden: int = 20, n_out: int = 10, k10: float = 2.0, k21: float = 10.0, activation: str = "sacramento_softplus"):
    r"""The teacher of Sacramento et al. (2018, NeurIPS 31, §3.2): target potentials
    :math:`u^{trgt} = k_{21} W^{trgt}_{21}\,\varphi(k_{10} W^{trgt}_{10} r_0)`, weights ~ U(-1, 1); the target rates are
    :math:`r^{trgt} = \varphi(u^{trgt})` with the soft-plus :math:`\varphi(u) = 0.1\log(1 + e^{u - 3})`.
    Returns ``u_trgt(x)``."""
    phi = get_activation(activation)
    k1, k2 = jax.random.split(key)
    w10 = draws.uniform(k1, (n_hidden, n_in), minval=-1.0, maxval=1.0)
    w21 = draws.uniform(k2, (n_out, n_hidden), minval=-1.0, maxval=1.0)
    return lambda x: k21 * phi(k10 * x @ w10.T) @ w21.T


def _solvers(params, stream: Data, ts, x_test, r_test, *, t1, dt, eta_out, eta_lateral, hidden_scale, output_scale, le_iterations):
    """``run(key, eta_hidden, transpose, prospective) -> saved weights`` and ``evaluate(key, transpose, weights) -> test MSE``."""
    phi = get_activation("sacramento_softplus")

    def student(key, prospective):
        m = Microcircuit.create(
            SIZES, key=key, params=params, activation="sacramento_softplus", output_activation="sacramento_softplus",
            top_down="random", prospective=prospective, le_iterations=le_iterations,
        )
        w1 = draws.uniform(jax.random.fold_in(key, 1), m.weights[0].shape, minval=-hidden_scale, maxval=hidden_scale)
        w2 = draws.uniform(jax.random.fold_in(key, 2), m.weights[1].shape, minval=-output_scale, maxval=output_scale)
        return eqx.tree_at(lambda q: q.weights, m, (w1, w2))

    def run(key, eta_h, transpose, prospective):
        m = with_weights(student(key, prospective), plastic_weights(student(key, prospective)), transpose).self_predicting()
        plast = Plasticity(eta_fw=(eta_h, eta_out), eta_ip=eta_lateral, eta_pi=eta_lateral, transpose_top_down=transpose)
        _, traj = simulate_learning(m, plast, stream, t1=t1, dt=dt, ts=ts, save_fn=save_plastic, throw=False)
        return traj.ys

    def evaluate(key, transpose, w):
        # the free steady state does not depend on LE (u-dot = 0 there): relax the non-prospective circuit
        m = with_weights(student(key, False), {**plastic_weights(student(key, False)), **w}, transpose)
        eq = free_steady_state(m, x_test, SIZES[-1])
        err = jnp.mean(jnp.sum((phi(eq.state[0][-1]) - r_test) ** 2, -1))
        return jnp.where(eq.status == 0, err, jnp.nan)

    return run, evaluate


def _sweep(run, evaluate, learners, seed_keys, eta_hidden, n_snap):
    """Test MSE ``(learner, seed, snapshot)``: every learner with the same coding in one compiled, vmapped solve."""
    n_seeds = seed_keys.shape[0]
    mse = np.full((len(learners), n_seeds, n_snap), np.nan)
    for prospective in (True, False):
        names = [n for n in learners if TS_LEARNERS[n][2] == prospective]
        if not names:
            continue
        # (learner, seed) flattened
        eta_h = jnp.repeat(jnp.asarray([eta_hidden if TS_LEARNERS[n][0] else 0.0 for n in names]), n_seeds)
        transpose = jnp.repeat(jnp.asarray([1.0 if TS_LEARNERS[n][1] else 0.0 for n in names]), n_seeds)
        keys = jnp.tile(seed_keys, (len(names),))
        ys = eqx.filter_jit(eqx.filter_vmap(run, in_axes=(0, 0, 0, None)))(keys, eta_h, transpose, prospective)
        per_snap = eqx.filter_vmap(evaluate, in_axes=(None, None, 0))
        errs = np.asarray(eqx.filter_jit(eqx.filter_vmap(per_snap))(keys, transpose, ys)).reshape(len(names), n_seeds, n_snap)
        for i, n in enumerate(names):
            mse[learners.index(n)] = errs[i]
    return mse


def teacher_student_experiment(
    *,
    quick: bool = True,
    seed: int = 0,
    n_seeds: int | None = None,
    n_patterns: int | None = None,
    learners: tuple[str, ...] | None = None,
    t_pres: float = 20.0,
    dt: float = 1.0,
    eta_out: float = 0.5,
    eta_hidden: float = 2.0,
    eta_lateral: float = 0.5,
    hidden_scale: float = 3.8,
    output_scale: float = 0.5,
    le_iterations: int = 5,
    n_snap: int | None = None,
    n_test: int = 200,
    preset_name: str = "bern",
):
    r"""Nonlinear teacher-student regression of Sacramento et al. (2018) §3.2, learned in continuous time.

    A 30-50-10 microcircuit (soft-plus rates, start in the SPS, fixed random top-down B) learns from a 30-20-10
    teacher (:func:`sacramento_teacher`); patterns (inputs ~ U(-1, 1)) change every ``t_pres`` ms and every weight
    (forward, W_IP, W_PI) learns at every instant (no phases), Euler steps ``dt``, the output nudged toward the
    target potential (nudge 1). Learners (:data:`TS_LEARNERS`): ``microcircuit_fa`` (fixed random B: feedback
    alignment), ``microcircuit_wt`` (B = W^T at every instant), ``shallow`` (the hidden weights stay fixed: only the
    output layer learns), and, with ``quick=False``, ``microcircuit_fa_no_le`` (non-prospective rates).

    Initial weights: ``W_1 ~ U(-hidden_scale, hidden_scale)`` (3.8 = k_10 / g_B-attenuation: the student's
    hidden drive has the teacher's spread), ``W_2 ~ U(-output_scale, output_scale)``, biases 0. Learning rates
    per ms: ``eta_out`` (output layer), ``eta_hidden`` (hidden layer), ``eta_lateral`` (W_IP and W_PI).

    Returns an xarray Dataset with dims ``(learner, seed, time)``: ``test_mse`` = mean over ``n_test`` held-out
    inputs of ``||r_2 - r_trgt||^2`` at the free (no target), noise-free steady state, relaxed from the learned
    weights at each snapshot.
    """
    n_seeds = n_seeds or (2 if quick else 5)
    n_patterns = n_patterns or (250 if quick else 20_000)
    n_snap = n_snap or (6 if quick else 21)
    learners = tuple(learners or (("microcircuit_fa", "microcircuit_wt", "shallow") if quick else tuple(TS_LEARNERS)))
    phi = get_activation("sacramento_softplus")
    params = preset(preset_name).as_arrays()
    kt, kx, kxt = jax.random.split(jax.random.key(seed), 3)
    teacher = sacramento_teacher(kt)
    x = draws.uniform(kx, (n_patterns, SIZES[0]), minval=-1.0, maxval=1.0)
    x_test = draws.uniform(kxt, (n_test, SIZES[0]), minval=-1.0, maxval=1.0)
    r_test = phi(teacher(x_test))
    stream = Data(None, None, 1.0, PatternStream(x, teacher(x), t_pres))
    t1 = n_patterns * t_pres
    ts = jnp.linspace(0.0, t1, n_snap)
    run, evaluate = _solvers(
        params, stream, ts, x_test, r_test, t1=t1, dt=dt, eta_out=eta_out, eta_lateral=eta_lateral,
        hidden_scale=hidden_scale, output_scale=output_scale, le_iterations=le_iterations,
    )
    start = time.perf_counter()
    mse = _sweep(run, evaluate, learners, jax.random.split(jax.random.key(seed + 1), n_seeds), eta_hidden, n_snap)
    seconds = time.perf_counter() - start
    attrs = {
        "time_unit": "s (simulated)", "patterns": n_patterns, "t_pres_ms": t_pres, "dt_ms": dt, "tau_eff_ms": float(params.tau_hidden),
        "eta_out": eta_out, "eta_hidden": eta_hidden, "eta_lateral": eta_lateral, "le_iterations": le_iterations,
        "mse_of_mean_predictor": float(jnp.mean(jnp.sum((r_test - r_test.mean(0)) ** 2, -1))),
        "wall_seconds": seconds, "simulated_seconds_per_run": t1 / 1000.0, "seed": seed,
    }
    coords = {"learner": list(learners), "seed": np.arange(n_seeds), "time": np.asarray(ts) / 1000.0}
    return xr.Dataset({"test_mse": (("learner", "seed", "time"), mse)}, coords=coords, attrs=attrs)
