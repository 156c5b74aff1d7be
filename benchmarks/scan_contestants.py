"""The whole-epoch contestants of ``compare.py``: an epoch as one compiled ``lax.scan`` over batches drawn by index.

``dynlearn-scan`` is what :func:`dynlearn.learning.train` runs (:func:`dynlearn.compiled_epoch.make_epoch`, with its
per-step finite check, relaxation status and metrics); ``hand-scan`` is the same predictive-coding step written out in
plain JAX (clamped output, T explicit Euler steps of the energy gradient, then dE/dθ, Adam) in the same scan, so
their ratio is the framework's overhead. Both: ReLU, equinox's uniform initialisation, the data on the device.
"""

from __future__ import annotations

import itertools

import numpy as np

LR = 1e-3


def dynlearn_scan(sizes, T: int, dt: float, seed: int):
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax

    from dynlearn.compiled_epoch import make_epoch
    from dynlearn.learning import init_params, make_step
    from dynlearn.rules import get_learner

    learner = get_learner("pc/clamped", activation="relu", init="fan_in_uniform", solver="euler", dt0=dt, t1=T * dt, steady=False)
    key = jax.random.key(seed)
    params = init_params(learner, key, sizes)
    opt = optax.adam(LR)
    state = (params, learner.rule.init(key, params), opt.init(eqx.filter(params, eqx.is_inexact_array)))
    step_, epoch_ = make_step(learner, opt), make_epoch(learner, opt)

    def step(s, x, y):
        return step_(*s, x, y, key)[:3]

    def run_epoch(s, x, y, order):
        steps = jnp.arange(order.shape[0], dtype=jnp.int32)
        return epoch_(*s, x, y, order, steps, key)[:3]

    predict = eqx.filter_jit(learner.predict)
    return step, state, lambda s, x: predict(s[0], x), run_epoch


def hand_scan(sizes, T: int, dt: float, seed: int):
    import jax
    import jax.numpy as jnp
    import optax

    keys = jax.random.split(jax.random.key(seed), len(sizes) - 1)
    params = []
    for k, (m, n) in zip(keys, itertools.pairwise(sizes)):
        kw, kb = jax.random.split(k)
        lim = 1 / np.sqrt(m)
        params.append((jax.random.uniform(kw, (n, m), minval=-lim, maxval=lim), jax.random.uniform(kb, (n,), minval=-lim, maxval=lim)))

    def energy(p, hidden, x, y):
        """Σ_l ½‖x_l − W_l φ(x_{l−1}) − b_l‖² with x_0 = x (no φ on the input) and x_L = y clamped."""
        states = [x, *hidden, y]
        e = 0.0
        for l, (w, b) in enumerate(p, start=1):
            pre = states[l - 1] if l == 1 else jax.nn.relu(states[l - 1])
            e = e + 0.5 * jnp.sum((states[l] - pre @ w.T - b) ** 2)
        return e

    def forward_hidden(p, x):
        hs, h = [], x
        for l, (w, b) in enumerate(p[:-1], start=1):
            h = (h if l == 1 else jax.nn.relu(h)) @ w.T + b
            hs.append(h)
        return hs

    opt = optax.adam(LR)

    def pc_step(s, x, y):
        p, o = s
        hidden = forward_hidden(p, x)
        grad_x = jax.grad(energy, argnums=1)
        hidden = jax.lax.fori_loop(0, T, lambda _, h: [a - dt * g for a, g in zip(h, grad_x(p, h, x, y))], hidden)
        g = jax.grad(energy)(p, hidden, x, y)
        u, o = opt.update(g, o, p)
        return optax.apply_updates(p, u), o

    def predict(s, x):
        p, h = s[0], x
        for l, (w, b) in enumerate(p, start=1):
            h = (h if l == 1 else jax.nn.relu(h)) @ w.T + b
        return h

    @jax.jit
    def run_epoch(s, x, y, order):
        return jax.lax.scan(lambda c, idx: (pc_step(c, x[idx], y[idx]), None), s, order)[0]

    return jax.jit(pc_step), (params, opt.init(params)), jax.jit(predict), run_epoch
