"""The plain-JAX side of the spiking benchmarks (jax and optax only, so that a peer's environment can import it).

``handwritten_step``: rate-coded input drawn per step, LIF layers ``v = αv + Wx + b``, spike ``H(v - 1)`` with the
fast-sigmoid surrogate, reset by subtraction (detached), a leaky readout, per-step cross-entropy, ``jax.grad``
through the scan and one Adam update. ``best_times``: the timing protocol every contestant shares.
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import optax


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

    return adam_step(loss_fn, params, sizes, batch)


def adam_step(loss_fn, params, sizes, batch, lr: float = 1e-3):
    """The jitted step ``(params, opt_state, x, y, key) -> (params, opt_state)``: ``jax.grad`` of ``loss_fn`` and one
    Adam update; returned with its arguments (a fixed random batch of ``batch`` inputs in [0, 1) and one-hot labels)."""
    opt = optax.adam(lr)

    @jax.jit
    def step(params, opt_state, x, y, key):
        g = jax.grad(loss_fn)(params, x, y, key)
        upd, opt_state = opt.update(g, opt_state, params)
        return optax.apply_updates(params, upd), opt_state

    kx, ky = jax.random.split(jax.random.key(1))
    x = jax.random.uniform(kx, (batch, sizes[0]))
    y = jax.nn.one_hot(jax.random.randint(ky, (batch,), 0, sizes[-1]), sizes[-1])
    return step, (params, opt.init(params), x, y, jax.random.key(2))
