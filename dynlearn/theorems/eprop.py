r"""Theorem checks for e-prop (Bellec et al., Nat. Commun. 11:3625, 2020), float64.

* ``eprop_exact`` — without recurrent weights, one hidden layer and the exact (symmetric) learning signal, e-prop's
  forward-in-time gradient equals surrogate-gradient BPTT's (both through the same network code), for LIF and ALIF
  neurons with synaptic filter, on a rate-coded classification and a regression sequence.
* ``eprop_vs_bptt`` — with recurrent weights, e-prop drops the paths through other neurons: the cosine of its
  gradient to BPTT's, for losses on longer and longer prefixes of the pattern-generation task (regress a sum of
  sinusoids from frozen Poisson input), and the learning curves of both on that task (the paper's Fig. 2 claim:
  e-prop approaches BPTT).

Every check takes the gradient function under test as an argument (``eprop_fn``), so a test can hand it a broken
one and see it fail. See ``theory/eprop.md``.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import xarray as xr

from ..models.spiking.eprop import eprop_gradient
from ..models.spiking.recurrent import (
    SNNConfig,
    bptt_gradient,
    init_spiking_net,
    make_neuron,
)
from ..networks import init_network
from .criteria import at_least, at_most, reported
from .registry import Verdict, register_check
from .. import draws


def flat(tree) -> jax.Array:
    """All leaves of a gradient PyTree in one vector."""
    return jnp.concatenate([jnp.ravel(a) for a in jax.tree.leaves(tree)])


def cosine(a, b):
    return jnp.dot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b))


@eqx.filter_jit
def _compare(net, cfg, x, y, key, eprop_fn):
    """max |g_e-prop - g_BPTT| / max |g_BPTT|, their cosine, and the hidden layer's spike rate (one compiled call)."""
    gb, _, rates = bptt_gradient(net, cfg, x, y, key)
    ge, _, _ = eprop_fn(net, cfg, x, y, key, (None,))
    a, b = flat(gb), flat(ge)
    return jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a)), cosine(a, b), rates[0]


def pattern_generation(n_in: int = 20, n_steps: int = 200, n_out: int = 1, rate: float = 0.05, seed: int = 0):
    r"""The paper's pattern-generation task on ``n_steps`` steps: ``n_in`` frozen Poisson inputs (spike probability
    ``rate`` per step) and a target that sums sinusoids of 0.5, 1, 2, 3 and 4 cycles per 1000 steps rescaled to
    the sequence (so the target has the paper's shape), random amplitudes U(0.5, 2) and phases; returns
    ``x (T, 1, n_in)``, ``y (T, 1, n_out)``."""
    rng = np.random.default_rng(seed)
    x = (rng.random((n_steps, 1, n_in)) < rate).astype(np.float64)
    t = np.arange(n_steps)[:, None] / n_steps
    cycles = np.array([0.5, 1.0, 2.0, 3.0, 4.0])
    ys = []
    for _ in range(n_out):
        amp, phase = rng.uniform(0.5, 2.0, 5), rng.uniform(0, 2 * np.pi, 5)
        ys.append((amp * np.sin(2 * np.pi * cycles * t + phase)).sum(1) / 5)
    return jnp.asarray(x), jnp.asarray(np.stack(ys, -1)[:, None, :])


def _net(sizes, seed, recurrent, gain=1.0, rec_gain=0.5):
    network = init_network(sizes, key=jax.random.key(seed), dtype=jnp.float64, bias_scale=0.1)
    return init_spiking_net(network, key=jax.random.key(seed + 1000), recurrent=recurrent, init_gain=gain, rec_gain=rec_gain)


@register_check(
    "eprop_exact",
    family="spiking",
    statement="without recurrent weights and with the exact learning signal, e-prop's gradient equals BPTT's (max relative error <= 1e-10, LIF and ALIF)",
    theory="theory/eprop.md",
    quick={"neurons": ("alif",), "tasks": ("classify",), "seeds": (0,), "tau_syn": 0.0},
    full={"neurons": ("lif", "alif"), "tasks": ("classify", "regress"), "seeds": (0, 1, 2), "tau_syn": 5.0},
)
def eprop_exact(*, sizes=(10, 14, 3), n_steps=30, batch=4, neurons=("lif", "alif"), tasks=("classify", "regress"), tau_syn=5.0, seeds=(0,), tol=1e-10, eprop_fn=eprop_gradient):
    """e-prop (symmetric feedback, ``recurrent=False``) against ``jax.grad`` through the scan: max |Δg| / max |g|,
    worst over neuron models, tasks (rate-coded classification, regression sequence) and seeds."""
    rows, spikes = [], []
    for kind in neurons:
        nrn = make_neuron(kind, tau_syn=tau_syn, tau_adapt=50.0)
        for task in tasks:
            loss = "ce" if task == "classify" else "mse"
            cfg = SNNConfig(nrn, n_steps=n_steps, loss=loss, coding="rate", rate_max=0.6)
            for seed in seeds:
                net = _net(sizes, seed, False, gain=1.5)
                kx, ky, kk = jax.random.split(jax.random.key(seed + 7), 3)
                if task == "classify":
                    x = draws.uniform(kx, (batch, sizes[0]), jnp.float64)
                    y = jax.nn.one_hot(jnp.arange(batch) % sizes[-1], sizes[-1], dtype=jnp.float64)
                else:
                    x = (draws.uniform(kx, (n_steps, batch, sizes[0])) < 0.2).astype(jnp.float64)
                    y = jnp.sin(jnp.linspace(0, 3, n_steps))[:, None, None] * draws.normal(ky, (1, batch, sizes[-1]), jnp.float64)
                err, cos, rate = _compare(net, cfg, x, y, kk, eprop_fn)
                rows.append((kind, task, seed, float(err), float(cos)))
                spikes.append(float(rate))
    errs = np.array([r[3] for r in rows])
    ds = xr.Dataset(
        {"relative_error": ("case", errs), "cosine": ("case", np.array([r[4] for r in rows])), "spike_rate": ("case", np.array(spikes))},
        coords={"case": [f"{r[0]}/{r[1]}/seed{r[2]}" for r in rows]},
        attrs={"sizes": str(sizes), "n_steps": n_steps},
    )
    verdict = Verdict.from_criteria(
        max_relative_error=at_most(errs.max(), tol),
        min_spike_rate=at_least(min(spikes), 0.01),
        min_cosine=reported(float(ds.cosine.min())),
    )
    return ds, verdict


def _train_curve(grad_fn, net, x, y, w, steps, lr):
    """Adam on the full (single-sequence) pattern task; the loss before every step (one compiled step)."""
    opt = optax.adam(lr)

    @eqx.filter_jit
    def step(net, state):
        g, loss = grad_fn(net, x, y, w)
        upd, state = opt.update(g, state, net)
        return eqx.apply_updates(net, upd), state, loss

    state, losses = opt.init(net), []
    for _ in range(steps):
        net, state, loss = step(net, state)
        losses.append(float(loss))
    return np.array(losses)


@register_check(
    "eprop_vs_bptt",
    family="spiking",
    statement="with recurrent weights e-prop approximates BPTT: gradient cosine >= 0.2 on every loss horizon of the pattern-generation task, and e-prop's learning curve ends within 3x of BPTT's loss",
    theory="theory/eprop.md",
    quick={"n_steps": 100, "n_rec": 30, "train_steps": 40, "seeds": (0,)},
    full={"n_steps": 1000, "n_rec": 200, "n_in": 100, "train_steps": 1000, "seeds": (0, 1, 2)},
)
def eprop_vs_bptt(*, n_in=20, n_rec=40, n_steps=200, horizons=(0.1, 0.25, 0.5, 1.0), train_steps=60, lr=3e-3, in_gain=1.0, rec_gain=0.5, surrogate_width=3.0, seeds=(0,), min_cosine=0.2, max_loss_ratio=3.0, eprop_fn=eprop_gradient):
    """Recurrent LIF network (``n_rec`` neurons, readout leak 20 steps) on :func:`pattern_generation`.

    Cosine of e-prop's (symmetric feedback) gradient to BPTT's for the loss :math:`\\frac1H\\sum_{t<H}\\ell_t` on a
    prefix of ``H`` = horizon × T steps (one compiled function per rule, the horizon is a weight mask); then both
    train the network from the same start with Adam, ``train_steps`` full-sequence steps."""
    cfg = SNNConfig(make_neuron("lif", tau_mem=20.0, surrogate_width=surrogate_width), n_steps=n_steps, loss="mse", tau_out=20.0)
    def eprop(p, x, y, w):
        return eprop_fn(p, cfg, x, y, jax.random.key(0), (None,), w)[:2]

    def bptt(p, x, y, w):
        return bptt_gradient(p, cfg, x, y, jax.random.key(0), w)[:2]

    @eqx.filter_jit
    def cos_at(p, x, y, w):
        return cosine(flat(eprop(p, x, y, w)[0]), flat(bptt(p, x, y, w)[0]))

    hs = [max(1, round(h * n_steps)) for h in horizons]
    cos, curves = np.zeros((len(seeds), len(hs))), np.zeros((len(seeds), 2, train_steps))
    for i, seed in enumerate(seeds):
        x, y = pattern_generation(n_in, n_steps, seed=seed)
        net = _net((n_in, n_rec, 1), seed, True, gain=in_gain, rec_gain=rec_gain)
        for j, h in enumerate(hs):
            w = jnp.where(jnp.arange(n_steps) < h, 1.0 / h, 0.0)
            cos[i, j] = float(cos_at(net, x, y, w))
        w = jnp.full((n_steps,), 1.0 / n_steps)
        for k, fn in enumerate((eprop, bptt)):
            curves[i, k] = _train_curve(fn, net, x, y, w, train_steps, lr)
    ratio = curves[:, 0, -1] / curves[:, 1, -1]
    ds = xr.Dataset(
        {"cosine": (("seed", "horizon"), cos), "loss": (("seed", "rule", "step"), curves)},
        coords={"seed": list(seeds), "horizon": hs, "rule": ["e-prop", "BPTT"], "step": np.arange(train_steps)},
        attrs={"n_steps": n_steps, "n_rec": n_rec, "n_in": n_in, "claim": "e-prop approaches BPTT (Bellec et al. 2020, Fig. 2)"},
    )
    verdict = Verdict.from_criteria(
        min_cosine=at_least(cos.min(), min_cosine),
        final_loss_ratio_eprop_bptt=at_most(ratio.max(), max_loss_ratio),
        eprop_loss_drop=at_most(float((curves[:, 0, -1] / curves[:, 0, 0]).max()), 0.5),
        cosine_full_sequence=reported(float(cos[:, -1].min())),
    )
    return ds, verdict
