"""Time per spiking training step against a hand-written ``lax.scan`` LIF loop doing the same computation.

The reference is the plainest JAX one can write for the same network: rate-coded input drawn per step, LIF layers
``v = αv + Wx + b``, spike ``H(v - 1)`` with the fast-sigmoid surrogate, reset by subtraction (detached), a leaky
readout, per-step cross-entropy, ``jax.grad`` through the scan and one Adam update — i.e. ``snn/bptt``'s step
without the library (no neuron module, no rule/learner layers). The ratio ``library / hand-written`` is the
library's overhead (target <= 1.2). e-prop's and S-TLLR's steps are timed on the same network and printed
against the same reference (they do different work: traces per synapse, and two traces per neuron).

    python benchmarks/bench_spiking.py                  # 64-128-128-10 (digits), batch 64, T = 20
    python benchmarks/bench_spiking.py --sizes 784,256,10 --steps 50 --repeats 30
"""

from __future__ import annotations

import argparse
import math
import os
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from dynlearn.learning import init_params, make_step
from dynlearn.rules import get_learner


def best_times(steps: dict, repeats: int) -> dict:
    """Fastest of ``repeats`` runs of each ``(fn, args)`` after a warm-up, run round-robin (so other load on the
    machine disturbs every step alike; the minimum is the least disturbed run)."""
    for fn, args in steps.values():
        jax.block_until_ready(fn(*args))
    best = {k: float("inf") for k in steps}
    for _ in range(repeats):
        for k, (fn, args) in steps.items():
            t = time.perf_counter()
            jax.block_until_ready(fn(*args))
            best[k] = min(best[k], time.perf_counter() - t)
    return best


def library_step(name, sizes, batch, n_steps):
    """The jitted training step of learner ``name`` (rule update + Adam) and its arguments."""
    learner = get_learner(name, n_steps=n_steps)
    key = jax.random.key(0)
    params = init_params(learner, key, sizes)
    rule_state = learner.rule.init(key, params)
    opt = optax.adam(1e-3)
    opt_state = opt.init(eqx.filter(params, eqx.is_inexact_array))
    step = make_step(learner, opt)
    kx, ky = jax.random.split(jax.random.key(1))
    x = jax.random.uniform(kx, (batch, sizes[0]))
    y = jax.nn.one_hot(jax.random.randint(ky, (batch,), 0, sizes[-1]), sizes[-1])
    return step, (params, rule_state, opt_state, x, y, jax.random.key(2))


@jax.custom_jvp
def _heaviside(u):
    return (u >= 0).astype(u.dtype)


@_heaviside.defjvp
def _heaviside_jvp(p, t):
    (u,), (du,) = p, t
    return _heaviside(u), 0.5 / 0.5 / (1 + jnp.abs(u) / 0.5) ** 2 * du


def handwritten_step(sizes, batch, n_steps, tau_mem=20.0, tau_out=20.0, rate_max=0.5):
    """The hand-written BPTT step (module docstring) on the same shapes and its arguments."""
    alpha, kappa = math.exp(-1 / tau_mem), math.exp(-1 / tau_out)
    keys = jax.random.split(jax.random.key(0), len(sizes))
    params = [(jax.random.normal(k, (o, i)) * math.sqrt(2 / (i + o)), jnp.zeros(o)) for k, i, o in zip(keys, sizes[:-1], sizes[1:])]
    opt = optax.adam(1e-3)

    def loss_fn(params, x, y, key):
        def body(carry, t):
            vs, out, loss = carry
            z = (jax.random.uniform(jax.random.fold_in(key, t), x.shape) < rate_max * x).astype(x.dtype)
            new_vs = []
            for (w, b), v in zip(params[:-1], vs):
                v = alpha * v + z @ w.T + b
                z = _heaviside(v - 1.0)
                new_vs.append(v - jax.lax.stop_gradient(z))
            out = kappa * out + z @ params[-1][0].T + params[-1][1]
            loss = loss - jnp.sum(y * jax.nn.log_softmax(out)) / n_steps
            return (new_vs, out, loss), None

        init = ([jnp.zeros((x.shape[0], n)) for n in sizes[1:-1]], jnp.zeros((x.shape[0], sizes[-1])), 0.0)
        (_, _, loss), _ = jax.lax.scan(body, init, jnp.arange(n_steps))
        return loss

    @jax.jit
    def step(params, opt_state, x, y, key):
        g = jax.grad(loss_fn)(params, x, y, key)
        upd, opt_state = opt.update(g, opt_state, params)
        return optax.apply_updates(params, upd), opt_state

    kx, ky = jax.random.split(jax.random.key(1))
    x = jax.random.uniform(kx, (batch, sizes[0]))
    y = jax.nn.one_hot(jax.random.randint(ky, (batch,), 0, sizes[-1]), sizes[-1])
    return step, (params, opt.init(params), x, y, jax.random.key(2))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="64,128,128,10")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20, help="time steps T")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--learners", default="snn/bptt,snn/eprop,snn/stllr,snn/desire")
    a = ap.parse_args()
    sizes = tuple(int(s) for s in a.sizes.split(","))
    steps = {"hand-written lax.scan BPTT": handwritten_step(sizes, a.batch, a.steps)}
    steps.update({name: library_step(name, sizes, a.batch, a.steps) for name in a.learners.split(",")})
    best = best_times(steps, a.repeats)
    ref = best["hand-written lax.scan BPTT"]
    print(f"sizes {sizes}, batch {a.batch}, T = {a.steps}, backend {jax.default_backend()}")
    print(f"{'step':<28}{'ms':>10}{'ratio to hand-written':>24}")
    for name, t in best.items():
        print(f"{name:<28}{1e3 * t:>10.2f}{t / ref:>24.2f}")


if __name__ == "__main__":
    main()
