r"""Theorem checks for local Hebbian learning without feedback (float64).

* ``activation_likelihood`` — activation learning (Zhou, arXiv 2209.13400): after the competitive Hebbian ODE
  :math:`\dot W = \langle h (v - W^\top h)^\top\rangle` on samples of an angular central Gaussian density on the
  sphere (known likelihood), the output activation :math:`\|h\|^2` ranks held-out inputs as their log-likelihood
  does: Spearman :math:`\rho \ge 0.9` (worst seed). Without competition the same ODE fails.
* ``activation_fewshot`` — the few-shot claim, measured: digits accuracy with 1, 5, 10, 50 examples per class,
  activation learning against BP on the same hidden width (reported).
* ``ib_memory_modulator`` — IB-Hebbian (Daruwalla & Lipasti 2024): the modulator × local-Hebbian decomposition is
  the autodiff gradient of the layer's HSIC objective, and with an ideal memory (a rate reservoir of
  :math:`N \ge B D_s` units, cleared at each window) the reservoir-supplied modulator equals the batch modulator
  (both <= 1e-10, relative, worst seed).
* ``ib_memory_capacity`` — the approximation error of the modulator as a function of reservoir size for several
  window sizes :math:`B` (continuously running reservoir, synthetic data), and, in the full run, digits accuracy
  against :math:`B` and :math:`N` (reported curves).

See ``theory/activation_learning.md`` and ``theory/ib_hebbian.md``.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from scipy.stats import spearmanr

from ..models.hebbian.activation_learning import hebbian_flow, output_activation, unit
from ..models.hebbian.ib_hebbian import ib_objective, layer_modulator
from ..models.hebbian.ib_memory import (
    Reservoir,
    cleared_states,
    exact_windows,
    fit_readout,
    recall,
    run_reservoir,
)
from .criteria import at_least, at_most, reported
from .registry import Verdict, register_check
from .. import draws

# ----------------------------------------------------------------------------- activation_likelihood


def acg_samples(key, n, dim, spikes):
    r"""``n`` samples of the angular central Gaussian :math:`x = z/\|z\|`, :math:`z \sim N(0, \Sigma)`,
    :math:`\Sigma = I + \sum_i \kappa_i u_i u_i^\top`, and their log-likelihood up to a constant,
    :math:`\log p(x) = -\tfrac{d}{2}\log(x^\top\Sigma^{-1}x) = -\tfrac{d}{2}\log(1 - \sum_i \tfrac{\kappa_i}{1+\kappa_i}(u_i\cdot x)^2)`."""
    k_u, k_z = jax.random.split(key)
    kap = jnp.asarray(spikes, jnp.float64)
    u = jnp.linalg.qr(draws.normal(k_u, (dim, dim)))[0][:, : kap.shape[0]]
    root = jnp.eye(dim) + u @ jnp.diag(jnp.sqrt(1.0 + kap) - 1.0) @ u.T
    x = unit(draws.normal(k_z, (n, dim)) @ root.T)
    logp = -0.5 * dim * jnp.log(1.0 - jnp.sum(kap / (1.0 + kap) * (x @ u) ** 2, axis=-1))
    return x, logp, u


@register_check(
    "activation_likelihood",
    family="hebbian",
    statement="activation learning: output activation ||h||^2 ranks inputs by log-likelihood (Spearman rho >= 0.9, worst seed)",
    theory="theory/activation_learning.md",
    quick={},
    full={"n": 8000, "seeds": tuple(range(5)), "t1": 300.0},
)
def activation_likelihood(*, dim=16, spikes=(9.0, 7.0, 5.0, 3.0), n=1500, t1=120.0, dt0=1.0, init_scale=0.3, seeds=(0, 1), competition=True, bound=0.9):
    """Integrate the one-layer competitive Hebbian ODE on ACG samples; Spearman(activation, log p) on held-out samples."""
    k = len(spikes)
    rhos, subspace, curves, pairs = [], [], [], []
    ts = jnp.linspace(0.0, t1, 9)
    for seed in seeds:
        key = jax.random.key(seed)
        x, logp, u = acg_samples(jax.random.fold_in(key, 1), 2 * n, dim, spikes)
        w0 = init_scale * jnp.linalg.qr(draws.normal(jax.random.fold_in(key, 2), (dim, dim)))[0][:k]
        traj = hebbian_flow(w0, x[:n], t1=t1, dt0=dt0, competition=competition, ts=ts)
        x_test = x[n:]
        a_test = np.asarray(jax.vmap(lambda w, v=x_test: output_activation([w], v))(traj.ys))
        rho_t = [spearmanr(a, np.asarray(logp[n:])).statistic for a in a_test]
        rhos.append(rho_t[-1])
        curves.append(rho_t)
        pairs.append((a_test[-1][:300], np.asarray(logp[n:])[:300]))
        subspace.append(float(jnp.linalg.norm(traj.final.T @ traj.final - u @ u.T)))
    worst = int(np.argmin(rhos))
    ds = xr.Dataset(
        {"spearman": (("seed", "t"), np.array(curves)), "subspace_error": ("seed", np.array(subspace)),
         "activation": ("sample", pairs[int(np.argmin(rhos))][0]), "log_likelihood": ("sample", pairs[int(np.argmin(rhos))][1])},
        coords={"seed": list(seeds), "t": np.asarray(ts), "sample": np.arange(len(pairs[0][0]))},
        attrs={"competition": int(competition), "dim": dim, "spikes": str(tuple(spikes)), "n": n},
    )
    verdict = Verdict.from_criteria(
        spearman_rho=at_least(min(rhos), bound),
        subspace_error=reported(subspace[worst]),
    )
    return ds, verdict


# ----------------------------------------------------------------------------- activation_fewshot


def _subset(data, shots, seed, min_rows=100):
    """``shots`` training examples per class (drawn with ``seed``), repeated to at least ``min_rows`` rows (so that an
    epoch holds several steps: the same examples, fewer epoch boundaries to evaluate at); the full test set."""
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.permutation(np.flatnonzero(data.labels_train == c))[:shots] for c in np.unique(data.labels_train)])
    idx = np.tile(idx, int(np.ceil(min_rows / idx.size)))
    return dataclasses.replace(data, x_train=data.x_train[idx], y_train=data.y_train[idx], labels_train=data.labels_train[idx])


@register_check(
    "activation_fewshot",
    family="hebbian",
    statement="activation learning vs BP on digits with 1, 5, 10, 50 examples per class (reported)",
    theory="theory/activation_learning.md",
    quick={},
    full={"shots": (1, 5, 10, 50), "seeds": (0, 1, 2), "steps": 400},
)
def activation_fewshot(*, shots=(1, 10), seeds=(0,), steps=60, hidden=(64,), batch_size=10, lr_al=3e-2, lr_bp=1e-2):
    """Train activation learning and BP (tanh, cross-entropy, Adam) for ``steps`` steps on ``shots`` examples per class."""
    from ..data import load
    from ..learning import train
    from ..rules.base import get_learner

    data = load("digits")
    learners = {"activation_learning": (get_learner("activation_learning"), lr_al), "bp": (get_learner("bp", loss="ce"), lr_bp)}
    acc = np.zeros((len(learners), len(shots), len(seeds)))
    for i, (learner, lr) in enumerate(learners.values()):
        for j, s in enumerate(shots):
            for k, seed in enumerate(seeds):
                sub = _subset(data, s, seed)
                epochs = max(1, int(np.ceil(steps * batch_size / sub.x_train.shape[0])))
                _, hist = train(learner, sub, hidden=hidden, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, progress=False)
                acc[i, j, k] = float(hist.test_accuracy[-1])
    ds = xr.Dataset({"accuracy": (("learner", "shots", "seed"), acc)},
                    coords={"learner": list(learners), "shots": list(shots), "seed": list(seeds)}, attrs={"steps": steps, "hidden": str(hidden)})
    mean = acc.mean(-1)
    crit = {}
    for j, s in enumerate(shots):
        crit[f"al_{s}shot"] = reported(mean[0, j])
        crit[f"bp_{s}shot"] = reported(mean[1, j])
    return ds, Verdict.from_criteria(**crit)


# ----------------------------------------------------------------------------- IB-Hebbian working memory


def synthetic_stream(key, n, *, dim=5, classes=3, spread=0.5, hidden=6):
    """A labelled Gaussian-mixture stream ``s = (x, y)`` and a random tanh layer ``W`` (``(hidden, dim)``)."""
    k_l, k_m, k_x, k_w = jax.random.split(key, 4)
    labels = jax.random.randint(k_l, (n,), 0, classes)
    x = draws.normal(k_m, (classes, dim))[labels] + spread * draws.normal(k_x, (n, dim))
    w = draws.normal(k_w, (hidden, dim)) / jnp.sqrt(dim)
    return jnp.concatenate([x, jax.nn.one_hot(labels, classes)], axis=1), w


@eqx.filter_jit
def modulator_errors(g, w_in, size, stream, w, key, capacity: int, n_x: int, gamma: float, sigma: float, leak: float):
    """For the reservoir of ``size`` active units (traced: one compilation for all sizes, see
    :meth:`Reservoir.from_draws`): the relative error
    ``||m_res - m_batch|| / ||m_batch||`` over the stream of the reservoir-supplied modulators of the current samples
    against the batch modulators of the true windows, for the running and for the cleared reservoir (``(2,)``)."""

    def mods(wins):
        def one(win):
            wx, wy = win[:, :n_x], win[:, n_x:]
            return layer_modulator(jnp.tanh(wx @ w.T), wx, wy, gamma=gamma, sigma=sigma)[-1]

        return jax.vmap(one)(wins)

    wins = exact_windows(stream, capacity)
    m_batch = mods(wins)

    phi, gam = Reservoir.from_draws(g, w_in, size, leak=leak).flow_map()
    out = []
    for clear in (False, True):
        readout = fit_readout(phi, gam, capacity, key=key, clear=clear)
        states = cleared_states(phi, gam, wins) if clear else run_reservoir(phi, gam, stream)[1][capacity - 1:]
        recalled = recall(readout, states, capacity).at[:, -1].set(wins[:, -1])
        out.append(jnp.linalg.norm(mods(recalled) - m_batch) / jnp.linalg.norm(m_batch))
    return jnp.stack(out)


def _reservoir_errors(seed, n, capacity, sizes, n_max, gamma, sigma, leak):
    key = jax.random.key(seed)
    stream, w = synthetic_stream(jax.random.fold_in(key, 1), n)
    k_g, k_in = jax.random.split(jax.random.fold_in(key, 2))
    g = draws.normal(k_g, (n_max, n_max))
    w_in = draws.normal(k_in, (n_max, stream.shape[1])) / jnp.sqrt(stream.shape[1])
    k_fit = jax.random.fold_in(key, 3)
    errors = [modulator_errors(g, w_in, jnp.asarray(size), stream, w, k_fit, capacity, w.shape[1], gamma, sigma, leak) for size in sizes]
    return np.stack([np.asarray(e) for e in errors], axis=1), stream, w


@register_check(
    "ib_memory_modulator",
    family="hebbian",
    statement="IB-Hebbian: modulator x Hebbian term = autodiff HSIC gradient, and an ideal reservoir memory supplies the batch modulator (both <= 1e-10)",
    theory="theory/ib_hebbian.md",
    quick={},
    full={"seeds": tuple(range(5)), "n": 400},
)
def ib_memory_modulator(*, capacity=4, n_max=64, n=120, gamma=10.0, sigma=0.5, leak=2.0, seeds=(0, 1), memory="cleared", tol=1e-10):
    """Worst seed: (a) max|m - autodiff ∂ℓ/∂z| / max|∂ℓ/∂z| on one window; (b) relative modulator error of a reservoir of
    ``n_max`` units (>= B·D_s: the ideal memory when ``memory="cleared"``; ``"running"``: the interfering memory)."""
    decomp, err = [], []
    for seed in seeds:
        errors, stream, w = _reservoir_errors(seed, n, capacity, (n_max,), n_max, gamma, sigma, leak)
        n_x = w.shape[1]
        win = stream[:capacity]
        z = jnp.tanh(win[:, :n_x] @ w.T)
        wx, wy = win[:, :n_x], win[:, n_x:]
        auto = jax.grad(lambda z, wx=wx, wy=wy: ib_objective(z, wx, wy, gamma=gamma, sigma=sigma))(z)
        mine = layer_modulator(z, wx, wy, gamma=gamma, sigma=sigma)
        decomp.append(float(jnp.max(jnp.abs(mine - auto)) / jnp.max(jnp.abs(auto))))
        err.append(float(errors[1 if memory == "cleared" else 0, 0]))
    ds = xr.Dataset({"decomposition_error": ("seed", decomp), "memory_error": ("seed", err)}, coords={"seed": list(seeds)},
                    attrs={"capacity": capacity, "reservoir_size": n_max, "memory": memory, "d_s": int(stream.shape[1])})
    return ds, Verdict.from_criteria(decomposition_error=at_most(max(decomp), tol), memory_error=at_most(max(err), tol))


@register_check(
    "ib_memory_capacity",
    family="hebbian",
    statement="IB-Hebbian: modulator error vs reservoir size for window sizes B; the needed size grows with B (reported)",
    theory="theory/ib_hebbian.md",
    quick={},
    full={"capacities": (2, 4, 8), "sizes": (8, 16, 24, 32, 48, 64, 96, 128), "seeds": (0, 1, 2), "accuracy": True, "n": 400},
)
def ib_memory_capacity(*, capacities=(4,), sizes=(8, 16, 24, 32, 48, 64), n=120, gamma=10.0, sigma=0.5, leak=2.0, seeds=(0,), accuracy=False,
                       acc_capacities=(2, 4, 8, 16), acc_sizes=(74, 148, 296, 592), acc_epochs=5):
    """Synthetic stream: error of a running (``leak``) and of a cleared reservoir per (B, N); full run: digits accuracy."""
    n_max = max(sizes)
    err = np.zeros((2, len(capacities), len(sizes), len(seeds)))
    for k, seed in enumerate(seeds):
        for i, b in enumerate(capacities):
            err[:, i, :, k], stream, _ = _reservoir_errors(seed, n, b, sizes, n_max, gamma, sigma, leak)
    ds = xr.Dataset({"modulator_error": (("memory", "capacity", "size", "seed"), err)},
                    coords={"memory": ["running", "cleared"], "capacity": list(capacities), "size": list(sizes), "seed": list(seeds)},
                    attrs={"d_s": int(stream.shape[1]), "leak": leak})
    crit = {}
    worst = err.max(-1)
    for i, b in enumerate(capacities):
        crit[f"running_err_B{b}_N{sizes[-1]}"] = reported(worst[0, i, -1])
        ok = np.flatnonzero(worst[1, i] <= 1e-8)
        crit[f"cleared_size_needed_B{b}"] = reported(sizes[ok[0]] if ok.size else np.nan)
    if accuracy:
        ds = ds.merge(_digits_accuracy(acc_capacities, acc_sizes, acc_epochs))
        for v in ("acc_vs_capacity", "acc_vs_size"):
            for c, val in zip(ds[v].coords[ds[v].dims[0]].values, ds[v].values):
                crit[f"{v}_{int(c)}"] = reported(val)
    return ds, Verdict.from_criteria(**crit)


def _digits_accuracy(capacities, sizes, epochs, lr=1e-2):
    """Digits test accuracy of ``ib_hebbian``: exact memory per capacity ``B``; reservoir memory (``B = 4``) per size ``N``."""
    from ..data import load
    from ..learning import train
    from ..rules.base import get_learner

    data = load("digits")
    by_b = [float(train(get_learner("ib_hebbian", capacity=b), data, hidden=(64,), epochs=epochs, lr=lr, progress=False)[1].test_accuracy[-1]) for b in capacities]
    by_n = [float(train(get_learner("ib_hebbian", capacity=4, memory="reservoir", reservoir_size=s), data, hidden=(64,), epochs=epochs, lr=lr,
                        progress=False)[1].test_accuracy[-1]) for s in sizes]
    return xr.Dataset({"acc_vs_capacity": ("acc_capacity", by_b), "acc_vs_size": ("acc_size", by_n)},
                      coords={"acc_capacity": list(capacities), "acc_size": list(sizes)})
