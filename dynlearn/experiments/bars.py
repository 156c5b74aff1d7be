r"""The bars task of Haider et al. (2021, NeurIPS 34): a microcircuit learning in continuous time, with and without
Latent Equilibrium, against the presentation time of the patterns (``theory/mc_bars.md``)."""

from __future__ import annotations

import dataclasses
import json
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ..models.base import Data
from ..models.microcircuit import Microcircuit, PatternStream, Plasticity, preset, save_plastic, simulate_learning
from .common import free_steady_state

SIZES = (9, 30, 3)


def bars_dataset(low: float = 0.1, high: float = 1.0):
    """The 3x3 "bars" images of Haider et al. (2021, NeurIPS 34): three horizontal and three vertical bars and the
    two diagonals (pixels 1 on the bar, 0 elsewhere), three classes; target potentials ``high`` for the class and
    ``low`` otherwise. Returns ``(x (8, 9), labels (8,), targets (8, 3))``."""
    images, labels = [], []
    for i in range(3):
        h = np.zeros((3, 3))
        h[i] = 1.0
        images += [h, h.T]
        labels += [0, 1]
    images += [np.eye(3), np.eye(3)[::-1]]
    labels += [2, 2]
    order = np.argsort(labels, kind="stable")
    x = np.array([images[i].ravel() for i in order])
    labels = np.array(labels)[order]
    targets = np.full((len(labels), 3), low)
    targets[np.arange(len(labels)), labels] = high
    return x, labels, targets


@dataclasses.dataclass(frozen=True)
class _Schedule:
    """The training stream (nudged toward the targets), the snapshot times and the validation stream (free)."""

    train: Data
    t1: float
    ts: jax.Array
    snap_epochs: np.ndarray
    val_order: np.ndarray
    val: Data
    val_ts: jax.Array


def _schedule(x, y, seed, epochs, n_snap, steps_per_pattern, t_pres, dt) -> _Schedule:
    n_pat = x.shape[0]
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(n_pat) for _ in range(epochs)])
    snap_epochs = np.unique(np.linspace(0, epochs, n_snap).round().astype(int))
    val_order = np.concatenate([[rng.integers(n_pat)], rng.permutation(n_pat)])  # first pattern unscored
    return _Schedule(
        train=Data(None, None, 1.0, PatternStream(x[order], y[order], t_pres)),
        t1=len(order) * t_pres,
        ts=jnp.asarray(snap_epochs * n_pat * t_pres, float),
        snap_epochs=snap_epochs,
        val_order=val_order,
        val=Data(None, None, 0.0, PatternStream(x[val_order], None, t_pres)),
        val_ts=jnp.arange(1, len(val_order) * steps_per_pattern + 1) * dt,
    )


def _readout(t, y, args):
    # what the next stage would see: the prospective output potential with LE, the somatic one without
    model, _, data = args
    return model.prospective_potentials(t, y[0], data)[0][-1]


def _solvers(base, sched: _Schedule, x, y, labels, *, plast, t_pres, dt, steps_per_pattern, activation, le_iterations):
    """``run(key, ratio, prospective) -> saved weights`` and ``evaluate(key, ratio, prospective, weights)`` ->
    ``(real-time accuracy, real-time MSE, steady-state accuracy)``."""
    n_val = len(sched.val_order)

    def circuit(key, ratio, prospective):
        # tau_eff = c_m / g_hidden = T_pres / ratio
        params = base.replace(c_m=base.g_hidden * t_pres / ratio).as_arrays()
        return Microcircuit.create(
            SIZES, key=key, params=params, activation=activation, output_activation=activation, weight_scale=1.0, top_down="random",
            prospective=prospective, le_iterations=le_iterations,
        )

    def run(key, ratio, prospective):
        _, traj = simulate_learning(circuit(key, ratio, prospective), plast, sched.train, t1=sched.t1, dt=dt, ts=sched.ts, save_fn=save_plastic, throw=False)
        return traj.ys

    def evaluate(key, ratio, prospective, w):
        m = eqx.tree_at(lambda q: tuple(getattr(q, k) for k in w), circuit(key, ratio, prospective), tuple(w.values()))
        _, traj = simulate_learning(m, Plasticity(), sched.val, t1=n_val * t_pres, dt=dt, ts=sched.val_ts, save_fn=_readout, throw=False)
        out = traj.ys.reshape(n_val, steps_per_pattern, -1).mean(1)[1:]
        acc_rt = jnp.mean(jnp.argmax(out, -1) == jnp.asarray(labels[sched.val_order[1:]]))
        mse_rt = jnp.mean(jnp.sum((out - y[sched.val_order[1:]]) ** 2, -1))
        # the steady state depends neither on LE nor on c_m: relax the standard circuit with the preset's c_m
        plain = dataclasses.replace(m, prospective=False, params=m.params.replace(c_m=jnp.asarray(base.c_m, float)))
        eq = free_steady_state(plain, x, y.shape[-1])
        acc_ss = jnp.where(eq.status == 0, jnp.mean(jnp.argmax(eq.state[0][-1], -1) == jnp.asarray(labels)), jnp.nan)
        return acc_rt, mse_rt, acc_ss

    return run, evaluate


def bars_experiment(
    *,
    quick: bool = True,
    seed: int = 0,
    ratios=None,
    epochs: int | None = None,
    n_seeds: int | None = None,
    steps_per_pattern: int | None = None,
    eta_hidden: float = 1.0,
    eta_out: float = 0.5,
    eta_ip: float = 0.4,
    n_snap: int = 6,
    le_iterations: int = 5,
    activation: str = "softplus",
    codings=("LE", "standard"),
    preset_name: str = "bern",
):
    r"""Learning the bars task (9-30-3 microcircuit) with patterns presented for ``T_pres``, with and without LE.

    Haider et al. (2021) §5 (microcircuits): the network starts in the SPS, everything learns at every instant
    (forward weights and W_IP; W_PI and the random top-down B fixed), the output is nudged (nudge 1) toward target
    potentials (1.0 for the class, 0.1 otherwise). The swept variable is ``T_pres / tau_eff``, realised by the membrane
    time constant (``c_m``) at a fixed ``T_pres`` = 1 time unit, so all ratios run in one vmapped solve; Euler with
    ``steps_per_pattern`` steps per pattern. Learning rates scale as ``1 / T_pres`` (the per-pattern change is the
    same for every ratio, as in the reference configurations): ``eta_hidden``, ``eta_out``, ``eta_ip`` per ``T_pres``.

    Measured at ``n_snap`` epochs: the *real-time* validation accuracy (all 8 patterns presented for ``T_pres`` each
    in a random order without target or plasticity, the output potential averaged over each presentation, the
    predicted class its argmax; the scored sequence is preceded by one unscored pattern) and the *steady-state*
    accuracy of the learned weights (output of the relaxed circuit), plus the MSE of the averaged output to the targets.
    """
    ratios = np.asarray(ratios if ratios is not None else ((0.5, 1.0, 2.0, 10.0) if quick else (0.2, 0.5, 1.0, 2.0, 5.0, 20.0, 50.0, 100.0)), float)
    epochs = epochs or (24 if quick else 300)
    n_seeds = n_seeds or (2 if quick else 4)
    steps_per_pattern = steps_per_pattern or (25 if quick else 250)
    x_np, labels, targets = bars_dataset()
    x, y = jnp.asarray(x_np), jnp.asarray(targets)
    base = preset(preset_name)
    g_max = max(float(base.g_hidden), float(base.g_inter), float(base.g_out_free + base.g_som))
    if steps_per_pattern < 2.5 * g_max / float(base.g_hidden) * ratios.max():
        raise ValueError(f"steps_per_pattern = {steps_per_pattern} is too few for T_pres/tau = {ratios.max():g} (Euler needs dt/tau <= 0.4)")
    t_pres, dt = 1.0, 1.0 / steps_per_pattern
    sched = _schedule(x, y, seed, epochs, n_snap, steps_per_pattern, t_pres, dt)
    plast = Plasticity(eta_fw=(eta_hidden, eta_out), eta_ip=eta_ip, eta_pi=0.0)
    run, evaluate = _solvers(
        base, sched, x, y, labels, plast=plast, t_pres=t_pres, dt=dt, steps_per_pattern=steps_per_pattern, activation=activation,
        le_iterations=le_iterations,
    )
    start = time.perf_counter()
    codings = tuple(codings)
    shape = (len(codings), len(ratios), n_seeds, len(sched.snap_epochs))
    acc_rt, mse_rt, acc_ss = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    keys = jnp.tile(jax.random.split(jax.random.key(seed + 1), n_seeds), (len(ratios),))
    rr = jnp.repeat(jnp.asarray(ratios), n_seeds)
    for c, prospective in enumerate(coding == "LE" for coding in codings):
        ys = eqx.filter_jit(eqx.filter_vmap(run, in_axes=(0, 0, None)))(keys, rr, prospective)
        per_snap = eqx.filter_vmap(evaluate, in_axes=(None, None, None, 0))
        res = eqx.filter_jit(eqx.filter_vmap(per_snap, in_axes=(0, 0, None, 0)))(keys, rr, prospective, ys)
        for arr, r in zip((acc_rt, mse_rt, acc_ss), res):
            arr[c] = np.asarray(r).reshape(shape[1:])
    seconds = time.perf_counter() - start
    dims = ("coding", "t_pres_over_tau", "seed", "epoch")
    coords = {"coding": list(codings), "t_pres_over_tau": ratios, "seed": np.arange(n_seeds), "epoch": sched.snap_epochs}
    attrs = {
        "sizes": "9-30-3", "patterns": x.shape[0], "epochs": epochs, "steps_per_pattern": steps_per_pattern,
        "eta_per_t_pres": json.dumps(dict(hidden=eta_hidden, out=eta_out, ip=eta_ip, pi=0.0)), "le_iterations": le_iterations,
        "wall_seconds": seconds, "seed": seed,
    }
    return xr.Dataset({"accuracy_realtime": (dims, acc_rt), "mse_realtime": (dims, mse_rt), "accuracy_steady_state": (dims, acc_ss)}, coords=coords, attrs=attrs)
