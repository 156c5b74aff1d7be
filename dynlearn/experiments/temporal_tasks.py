r"""A temporal credit-assignment task for recurrent spiking networks, and its learning curves under e-prop and BPTT.

**Store and recall** (after Bellec et al., NeurIPS 2018 and Nat. Commun. 11:3625, 2020): four populations of
``n_per`` Poisson input neurons — *value 0*, *value 1*, *store*, *recall* — over ``T`` steps of 1 ms. The sequence has
``n_values`` value windows of ``cue`` steps, each showing a random bit (its population fires at ``rate_on`` per
step, the other at ``rate_off``); the *store* population fires during one of them, chosen at random (the only
one when ``n_values = 1``); after a silent ``delay`` the *recall* population fires for ``cue`` steps, and the
network must report the stored bit then:

.. math::

    T = n_\mathrm{values}\,c + d + c, \qquad
    E = \frac{1}{c}\sum_{t \ge T - c} \mathrm{CE}\big(\mathrm{softmax}(y^t), \text{one-hot}(b_\mathrm{stored})\big),

a per-step cross-entropy on the recall window (``n_loss = cue`` of :class:`~dynlearn.models.spiking.recurrent.SNNConfig`),
so the error :math:`\delta^t` exists only ``d`` steps after the evidence. With a membrane time constant
:math:`\tau_m \ll d` a LIF neuron has forgotten the store window by then; an ALIF neuron's threshold adaptation
(:math:`\tau_a \gg d`) keeps it, and e-prop's adaptation eligibility :math:`\epsilon^a` carries the input synapses'
credit across the delay. Chance: accuracy 1/2, loss :math:`\ln 2`.

:func:`learning_curves` trains the same initial network with e-prop (symmetric, random, adaptive feedback) and
BPTT through their :class:`~dynlearn.rules.base.Rule`'s ``update`` and Adam, a fresh batch of trials per iteration
(the same trials for every learner of a seed), all e-prop feedbacks and seeds in one compiled run.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import xarray as xr

from ..models.base import Data
from ..models.spiking.bptt import bptt_learner
from ..models.spiking.eprop import AdaptiveParams, eprop_learner
from ..models.spiking.recurrent import SpikingNet
from ..networks import init_network

#: the input populations, in channel order
POPULATIONS = ("value 0", "value 1", "store", "recall")


def store_recall_length(*, cue: int, delay: int, n_values: int = 1) -> int:
    """``T = n_values·cue + delay + cue``."""
    return n_values * cue + delay + cue


def store_recall(rng: np.random.Generator, batch: int, *, cue: int = 5, delay: int = 40, n_values: int = 1, n_per: int = 5, rate_on: float = 0.5,
                 rate_off: float = 0.01):
    """A batch of store-and-recall trials (module docstring) drawn from ``rng``: input spikes ``x (T, batch, 4·n_per)``
    in the order of :data:`POPULATIONS` and the one-hot stored bit ``y (batch, 2)`` (float64 NumPy arrays)."""
    T = store_recall_length(cue=cue, delay=delay, n_values=n_values)
    bits = rng.integers(0, 2, (batch, n_values))
    stored = rng.integers(0, n_values, batch)
    t = np.arange(T)
    window = np.where(t < n_values * cue, t // cue, -1)  # (T,) the value window of each step, -1 outside
    bit_t = bits[:, np.clip(window, 0, None)].T  # (T, batch)
    in_value = (window >= 0)[:, None]
    p = np.stack([
        np.where(in_value & (bit_t == 0), rate_on, rate_off),
        np.where(in_value & (bit_t == 1), rate_on, rate_off),
        np.where(window[:, None] == stored[None, :], rate_on, rate_off),
        np.broadcast_to(np.where(t >= T - cue, rate_on, rate_off)[:, None], (T, batch)),
    ], -1)
    x = (rng.random((T, batch, 4, n_per)) < p[..., None]).astype(np.float64).reshape(T, batch, 4 * n_per)
    return x, np.eye(2)[bits[np.arange(batch), stored]]


def recall_accuracy(learner, params, x, y):
    """The fraction of trials whose readout :math:`\\bar y = \\frac1c\\sum_{t \\ge T-c} y^t` picks the stored bit."""
    return jnp.mean(jnp.argmax(learner.predict(params, x), -1) == jnp.argmax(y, -1))


#: the e-prop feedbacks :func:`learning_curves` runs (as data of one adaptive e-prop rule) and the BPTT baseline
EPROP_VARIANTS, BASELINE = ("symmetric", "random", "adaptive"), "bptt"


def task_learners(*, neuron: str = "alif", cue: int = 5, delay: int = 40, n_values: int = 1, feedback_decay: float = 1e-2, **options):
    """``(adaptive e-prop, BPTT)`` learners (``snn/eprop`` with ``feedback="adaptive"``, ``snn/bptt``) on a recurrent
    ``neuron`` network with the task's ``n_steps`` and ``n_loss = cue`` (``options``: the spiking options of
    :func:`dynlearn.models.spiking.bptt.spiking_parts`; the factories of ``snn/eprop`` and ``snn/bptt``)."""
    common = {"neuron": neuron, "n_steps": store_recall_length(cue=cue, delay=delay, n_values=n_values), "n_loss": cue, "recurrent": True, **options}
    return eprop_learner(feedback="adaptive", feedback_decay=feedback_decay, **common), bptt_learner(**common)


def variant_params(params: AdaptiveParams, variant: str) -> tuple[AdaptiveParams, float]:
    """One e-prop feedback as data of the adaptive rule: ``(params, plastic)`` — ``"symmetric"`` ties
    :math:`B = W_\\mathrm{out}` (both then receive the same update, so they stay equal: symmetric e-prop),
    ``"random"`` keeps the random :math:`B` fixed (``plastic = 0`` zeroes its optimiser update), ``"adaptive"``
    learns it."""
    if variant not in EPROP_VARIANTS:
        raise ValueError(f"variant must be one of {EPROP_VARIANTS}, got {variant!r}")
    if variant == "symmetric":
        params = AdaptiveParams(params.net, params.net.weights[-1])
    return params, 0.0 if variant == "random" else 1.0


def _trainer(learner, lr: float, decay: float):
    """``run(params, rule_state, opt_state, plastic, xs, ys, x_eval, y_eval)``: Adam iterations over the batches
    ``xs (n, T, B, n_in)``, ``ys (n, B, 2)``, then the recall accuracy on the evaluation trials; mapped over a
    leading axis (variants × seeds), compiled once. ``plastic`` scales the optimiser's update of an adaptive ``B``;
    ``decay`` adds :math:`\\lambda W_\\mathrm{out}` to BPTT's readout gradient (e-prop's rule adds it itself)."""
    opt = optax.adam(lr)

    def one(params, rule_state, opt_state, plastic, xs, ys, x_eval, y_eval):
        def body(carry, batch):
            p, rs, os = carry
            x, y = batch
            g, rs, m = learner.rule.update(p, rs, Data(x, y), jax.random.key(0))  # the key is unused: the input is spikes
            if isinstance(p, SpikingNet):  # BPTT: the same readout weight decay as e-prop's
                g = eqx.tree_at(lambda q: q.weights[-1], g, g.weights[-1] + decay * p.weights[-1])
            upd, os = opt.update(g, os, p)
            if isinstance(p, AdaptiveParams):
                upd = eqx.tree_at(lambda u: u.feedback, upd, plastic * upd.feedback)
            angle = m.get("feedback_angle", jnp.asarray(jnp.nan, x.dtype))
            return (eqx.apply_updates(p, upd), rs, os), (m["loss"], angle)

        (p, rs, os), (losses, angles) = jax.lax.scan(body, (params, rule_state, opt_state), (xs, ys))
        return p, rs, os, losses, angles, recall_accuracy(learner, p, x_eval, y_eval)

    def run(params, rule_state, opt_state, plastic, xs, ys, x_eval, y_eval):
        return jax.lax.map(lambda a: one(*a, x_eval, y_eval), (params, rule_state, opt_state, plastic, xs, ys))

    return opt, eqx.filter_jit(run)


def _stack(trees):
    return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def learning_curves(*, seeds=(0,), iterations: int = 100, eval_every: int = 25, batch: int = 16, eval_batch: int = 128, lr: float = 1e-2,
                    n_rec: int = 40, n_per: int = 5, cue: int = 5, delay: int = 40, n_values: int = 1, neuron: str = "alif",
                    variants=EPROP_VARIANTS, baseline: bool = True, feedback_decay: float = 1e-2, rate_on: float = 0.5,
                    learner=None, **options) -> xr.Dataset:
    """Loss per iteration and recall accuracy every ``eval_every`` iterations (on ``eval_batch`` fixed trials) of
    e-prop with each feedback of ``variants`` and of BPTT (``baseline``), from the same initial network per seed
    (``n_in = 4·n_per`` inputs, ``n_rec`` recurrent ``neuron`` s, 2 outputs, readout weight decay ``feedback_decay``
    for all); also the feedback's angle to :math:`W_\\mathrm{out}^\\top` per iteration. The e-prop variants run
    as data of one adaptive e-prop rule (:func:`variant_params`), all variants and seeds in one compiled run;
    ``learner`` replaces that e-prop learner (e.g. a broken one, for a must-fail test)."""
    if iterations % eval_every:
        raise ValueError(f"iterations ({iterations}) must be a multiple of eval_every ({eval_every})")
    task_kw = {"cue": cue, "delay": delay, "n_values": n_values, "n_per": n_per, "rate_on": rate_on}
    eprop, bptt = task_learners(neuron=neuron, cue=cue, delay=delay, n_values=n_values, feedback_decay=feedback_decay, **options)
    eprop = eprop if learner is None else learner

    x_eval, y_eval = (jnp.asarray(a) for a in store_recall(np.random.default_rng(10_000), eval_batch, **task_kw))
    rngs = {s: np.random.default_rng(s + 3000) for s in seeds}
    data = [[store_recall(rngs[s], batch, **task_kw) for _ in range(iterations)] for s in seeds]  # the same trials for every learner
    n_chunks, sizes = iterations // eval_every, (4 * n_per, n_rec, 2)
    groups = ([(eprop, [(v, s) for v in variants for s in seeds])] if variants else []) + ([(bptt, [(BASELINE, s) for s in seeds])] if baseline else [])
    names = list(variants) + ([BASELINE] if baseline else [])
    R, S = len(names), len(seeds)
    loss, angle, acc = np.full((R, S, iterations), np.nan), np.full((R, S, iterations), np.nan), np.zeros((R, S, n_chunks))
    for lrn, runs in groups:
        inits = [get_params(lrn, sizes, s) for _, s in runs]
        rule_state = _stack([lrn.rule.init(jax.random.key(s + 2000), p) for p, (_, s) in zip(inits, runs)])
        pairs = [variant_params(p, v) if v != BASELINE else (p, 1.0) for p, (v, _) in zip(inits, runs)]
        params, plastic = _stack([p for p, _ in pairs]), jnp.asarray([f for _, f in pairs])
        opt, run = _trainer(lrn, lr, feedback_decay)
        opt_state = _stack([opt.init(p) for p, _ in pairs])
        rows, cols = [names.index(v) for v, _ in runs], [list(seeds).index(s) for _, s in runs]
        for c in range(n_chunks):
            sl = slice(c * eval_every, (c + 1) * eval_every)
            xs = jnp.asarray(np.stack([np.stack([d[0] for d in data[j][sl]]) for j in cols]))
            ys = jnp.asarray(np.stack([np.stack([d[1] for d in data[j][sl]]) for j in cols]))
            params, rule_state, opt_state, l, a, ac = run(params, rule_state, opt_state, plastic, xs, ys, x_eval, y_eval)
            loss[rows, cols, sl], angle[rows, cols, sl], acc[rows, cols, c] = np.asarray(l), np.asarray(a), np.asarray(ac)
    return xr.Dataset(
        {"loss": (("rule", "seed", "iteration"), loss), "feedback_angle": (("rule", "seed", "iteration"), angle),
         "recall_accuracy": (("rule", "seed", "evaluation"), acc)},
        coords={"rule": names, "seed": list(seeds), "iteration": np.arange(iterations), "evaluation": (np.arange(n_chunks) + 1) * eval_every},
        attrs={"task": "store and recall", "neuron": neuron, "n_rec": n_rec, "n_in": 4 * n_per, "cue": cue, "delay": delay, "n_values": n_values,
               "n_steps": store_recall_length(cue=cue, delay=delay, n_values=n_values), "batch": batch, "lr": lr, "eval_batch": eval_batch,
               "feedback_decay": feedback_decay, "chance_loss": float(np.log(2.0))},
    )


def get_params(learner, sizes, seed: int):
    """The learner's initial parameters around the float64 MLP ``sizes`` of ``seed`` (the same network for every
    learner of a seed; adaptive e-prop adds its random ``B``)."""
    network = init_network(sizes, key=jax.random.key(seed), dtype=jnp.float64, bias_scale=0.0)
    return learner.init(jax.random.key(seed + 1000), network)
