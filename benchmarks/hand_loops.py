"""The library's integrators against hand-written plain-JAX loops of the same equations, and their vmap over seeds.

    python benchmarks/hand_loops.py [--quick] [--json PATH]

All in float64 on diffrax's constant-step grid. EP: the EP learner's free phase (``free_phase``, its relaxation as
fixed-step Euler; 64-128-10 tanh, batch 64) vs a ``lax.scan`` of the Hopfield-energy gradient flow written by hand.
PAL: ``simulate_pal`` (Euler-Maruyama, ``pal_alignment``'s quick setting: 5-20-10-20-5, dt 0.1 ms, T_pres 5 ms,
tau_xi = tau_HP = 0.5 ms, sigma 0.5, alpha 1.2e-3, eta_bw 0.7, W fixed, no teacher) vs scans of the same SDE drawing
the same Brownian increments. Microcircuit: ``simulate_learning`` (Euler, 30-50-10, dt 0.1 ms, neurons and
Urbanczik-Senn plasticity, 10 ms patterns, nudge 1), also with ``ts=[t1]`` and a scalar ``save_fn``, vs a scan.

Per family: (a) the hand loop's final state must equal the library's to 1e-9 relative, else AssertionError; (b) the
library called from Python ("call"), the same call inside one ``jax.jit`` ("jit", as in a compiled training step)
and the hand loop, each compiled once, timed in interleaved repeats in one process: min / median, and library / hand
of the minima (the overhead bound, target <= 1.1); (c) the library's call vmapped over 64 seeds in one compiled
call: seeds x simulated seconds per wall second (EP: relaxations per wall second).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from dynlearn.models import Data  # noqa: E402
from dynlearn.models.ep import HopfieldEP, free_phase  # noqa: E402
from dynlearn.models.microcircuit import Microcircuit, PatternStream, Plasticity, plastic_weights, preset, simulate_learning  # noqa: E402
from dynlearn.models.pal import PAL, feedback_shapes, pal_state  # noqa: E402
from dynlearn.models.pal_simulation import run_patterns, simulate_pal  # noqa: E402
from dynlearn.networks import Network  # noqa: E402
from dynlearn.rules.ep import EP_TRAINING  # noqa: E402

TOLERANCE = 1e-9  # relative max-abs difference of the final states, library vs hand
N_SEEDS = 64


def fixed_step_grid(t1: float, dt: float):
    """``(t_{n-1}, dt_n)`` of diffrax's constant-step grid on ``[0, t1]``, bit for bit: ``N = ceil(t1 / nextafter(dt))``
    steps, ``t_1 = dt``, ``t_n = n (t1 / N)`` (its compiled ``t1 (n / N)`` with constant ``t1``, ``N``), ``t_N = t1``."""
    n = int(np.ceil(t1 / np.nextafter(dt, np.inf)))
    ts = np.arange(n + 1, dtype=np.float64) * (t1 / n)
    ts[1], ts[n] = dt, t1
    return jnp.asarray(ts[:-1]), jnp.asarray(ts[1:] - ts[:-1])


def assert_same(name: str, lib, hand, tol: float = TOLERANCE) -> float:
    """Raise ``AssertionError`` unless ``hand`` has ``lib``'s structure and equals it to ``tol`` relative to ``max|lib|``;
    returns the relative error."""
    if jax.tree.structure(lib) != jax.tree.structure(hand):
        raise AssertionError(f"{name}: hand loop returns {jax.tree.structure(hand)}, library {jax.tree.structure(lib)}")
    lib, hand = ([np.asarray(a) for a in jax.tree.leaves(t)] for t in (lib, hand))
    err = max(float(np.max(np.abs(a - b))) for a, b in zip(lib, hand)) / max(float(np.max(np.abs(a))) for a in lib)
    if not err <= tol:
        raise AssertionError(f"{name}: hand loop differs from the library by {err:.3e} (relative) > {tol:g}")
    return err


def _timed(f):
    t0 = time.perf_counter()
    return jax.block_until_ready(f()), time.perf_counter() - t0


def time_calls(thunks: dict, repeats: int, check=lambda outs: None):
    """Each thunk once (compiling it), then ``check(outputs)``, then ``repeats`` rounds of all thunks in turn.
    Returns ``(check's result, {name: first call s, compilation included}, {name: (min s, median s)})``."""
    first = {k: _timed(f) for k, f in thunks.items()}
    checked, times = check({k: v[0] for k, v in first.items()}), {k: [] for k in thunks}
    for _ in range(repeats):
        for k, f in thunks.items():
            times[k].append(_timed(f)[1])
    return checked, {k: v[1] for k, v in first.items()}, {k: (min(v), statistics.median(v)) for k, v in times.items()}


def vmap_row(thunk, repeats: int, per_call: float, unit: str) -> dict:
    """The vmapped call ``thunk`` timed: best wall seconds, first call, and ``per_call / wall`` in ``unit``."""
    _, first, t = time_calls({"vmap": thunk}, max(2, repeats // 3))
    return dict(vmap_wall_s=t["vmap"][0], vmap_first_s=first["vmap"], throughput=per_call / t["vmap"][0], throughput_unit=unit)


def seed_key(seed):
    """``jax.random.key(seed)`` (an int, or an array of ints for a batch of keys), built from its key data."""
    seed = np.asarray(seed, np.uint32)
    return jax.random.wrap_key_data(np.stack([np.zeros_like(seed), seed], axis=-1))


def host_arrays(rng, shapes, scale=None):
    """Float64 device arrays drawn on the host: ``U(-s, s)`` with ``s = scale(shape)``, or zeros without a scale."""
    return tuple(jnp.asarray(rng.uniform(-scale(sh), scale(sh), sh) if scale else np.zeros(sh)) for sh in shapes)


def stack_seeds(trees):
    """Equal PyTrees stacked along a new leading axis (on the host: nothing to compile)."""
    return jax.tree.map(lambda *a: jnp.asarray(np.stack([np.asarray(x) for x in a])), *trees)


def layer_shapes(sizes):
    """``(n_out, n_in)`` of every weight matrix."""
    return [(o, i) for i, o in zip(sizes[:-1], sizes[1:])]


@eqx.filter_jit
def compiled(fn, *args):
    """``fn(*args)`` as one compiled call (library set-up code: one compilation instead of one per eager op)."""
    return fn(*args)


# ----------------------------------------------------------------------------- EP
def ep_hand_field(weights, biases, x, s):
    r"""Minus the gradient of :math:`E = \frac12\sum_l\|s_l\|^2 - \sum_l \rho(s_l)^\top(W_l\rho(s_{l-1}) + b_l)`,
    :math:`\rho = \tanh`, :math:`\rho(s_0) = x`, summed over the batch (rows):
    :math:`\dot s_l = \rho'(s_l)\odot(W_l\rho(s_{l-1}) + b_l + [l<L]\,W_{l+1}^\top\rho(s_{l+1})) - s_l`."""
    r = [x] + [jnp.tanh(a) for a in s]
    out = []
    for l in range(1, len(s) + 1):
        drive = r[l - 1] @ weights[l - 1].T + biases[l - 1]
        if l < len(s):
            drive = drive + r[l + 1] @ weights[l]
        out.append((1.0 - r[l] ** 2) * drive - s[l - 1])
    return tuple(out)


def ep_hand_relax(weights, biases, x, t_prev, dts):
    """Euler steps ``s <- s + dt_n ep_hand_field(s)`` from ``s = 0``, one ``lax.scan`` (``t_prev`` unused: autonomous)."""
    s0 = tuple(jnp.zeros((x.shape[0], w.shape[0]), x.dtype) for w in weights)

    def step(s, dt):
        return tuple(a + da * dt for a, da in zip(s, ep_hand_field(weights, biases, x, s))), None

    return jax.lax.scan(step, s0, dts)[0]


def ep_library_relax(network, x, y, t1: float, dt: float, n_steps: int):
    """The EP learner's free phase: ``free_phase`` with the learner's relaxation (``EP_TRAINING``) as fixed-step Euler."""
    config = EP_TRAINING.replace(solver="euler", dt0=dt, t1=t1, max_steps=n_steps, steady=False, throw=False)
    return free_phase(HopfieldEP(network), Data(x, y, 0.0), config).state


def ep_network(sizes, seed: int):
    """A tanh network drawn like the EP learner's (``init_network``: Xavier normal ``N(0, 2/(n_in + n_out))``, zero
    biases), on the host."""
    rng = np.random.default_rng(seed)
    ws = [jnp.asarray(rng.normal(0.0, np.sqrt(2.0 / (o + i)), (o, i))) for o, i in layer_shapes(sizes)]
    return Network.from_matrices(ws, host_arrays(rng, sizes[1:]), "tanh")


def ep_batch(sizes, batch: int, seed: int):
    """Inputs uniform in [0, 1] and one-hot targets."""
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.uniform(0, 1, (batch, sizes[0]))), jnp.asarray(np.eye(sizes[-1])[rng.integers(0, sizes[-1], batch)])


def bench_ep(sizes, batch, dt, n_steps, repeats):
    t1 = dt * n_steps
    net, (x, y) = ep_network(sizes, 0), ep_batch(sizes, batch, 0)
    t_prev, dts = fixed_step_grid(t1, dt)
    assert t_prev.size == n_steps, "the number of EP steps must be t1 / dt"
    lib_jit, hand = eqx.filter_jit(lambda n, x, y: ep_library_relax(n, x, y, t1, dt, n_steps)), jax.jit(ep_hand_relax)
    thunks = {
        "call": lambda: ep_library_relax(net, x, y, t1, dt, n_steps),
        "jit": lambda: lib_jit(net, x, y),
        "hand": lambda: hand(net.weights, net.biases, x, t_prev, dts),
    }
    err, first, timing = time_calls(thunks, 4 * repeats, lambda o: assert_same("EP", o["call"], o["hand"]))
    nets = stack_seeds([ep_network(sizes, seed) for seed in range(1, N_SEEDS + 1)])
    many = eqx.filter_jit(eqx.filter_vmap(lambda n, x, y: ep_library_relax(n, x, y, t1, dt, n_steps), in_axes=(0, None, None)))
    vmap = vmap_row(lambda: many(nets, x, y), repeats, N_SEEDS, f"relaxations/s ({n_steps} steps, batch {batch})")
    setting = f"{'-'.join(map(str, sizes))}, batch {batch}, dt {dt}, {n_steps} steps"
    return [dict(family="EP", setting=setting, rel_err=err, timing=timing, compile_s=first, **vmap)]


# ----------------------------------------------------------------------------- PAL
def pal_increments(key, t0, t1, widths):
    """One step's Brownian increments as diffrax's ``UnsafeBrownianPath`` draws them: the key
    ``fold_in(fold_in(key, bits(f32 t0)), bits(f32 t1))`` split in one per hidden layer, ``dW ~ N(0, t1 - t0)``."""
    bits = lambda t: jax.lax.bitcast_convert_type(t.astype(jnp.float32), jnp.int32)  # noqa: E731
    keys = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, bits(t0)), bits(t1)), len(widths))
    return tuple(jax.random.normal(k, (n,), jnp.float64) * jnp.sqrt(t1 - t0) for k, n in zip(keys, widths))


def pal_hand_drift(p, weights, biases, s, x):
    r"""PAL's drift, W fixed and no teacher (:mod:`dynlearn.models.pal`), ``s = (B, u, xi, rbar)``:
    :math:`v_l = W_l\rho_{l-1} + b_l`, :math:`\tau\dot u_l = g_B v_l + g_A\xi_l - u_l` (output :math:`g_{out}v_N - u_N`),
    :math:`\rho_l = \sigma(u_l + \tau\dot u_l)` (output linear), :math:`\dot\xi = -\xi/\tau_\xi`,
    :math:`\tau_{HP}\dot{\bar r}_l = \rho_l - \bar r_l`, :math:`\dot B_l = \eta_{bw}(\xi_l(\rho_{l+1} - \bar r_{l+1})^\top - \alpha B_l)`."""
    feedback, u, xi, rbar = s
    n = len(weights)
    rho, du = [x], []
    for l in range(1, n + 1):
        v = weights[l - 1] @ rho[-1] + biases[l - 1]
        drive = p["basal_gain"] * v + p["apical_gain"] * xi[l - 1] if l < n else p["output_gain"] * v
        du.append((drive - u[l - 1]) / p["tau"])
        a = u[l - 1] + p["tau"] * du[-1]
        rho.append(jax.nn.sigmoid(a) if l < n else a)
    rhp = [rho[l] - rbar[l - 2] for l in range(2, n + 1)]
    d_b = tuple(p["eta_bw"] * (jnp.outer(xi[l], rhp[l]) - p["alpha"] * feedback[l]) for l in range(n - 1))
    return d_b, tuple(du), tuple(-a / p["tau_xi"] for a in xi), tuple(h / p["tau_hp"] for h in rhp)


def pal_hand_run(p, weights, biases, s0, inputs, key, t_prev, dts):
    """Euler-Maruyama over the steps ``(t_prev, dts)`` of each pattern ``k`` with the noise key ``fold_in(key, k)``:
    ``s <- s + (f(s) dt + (0, 0, sigma / sqrt(tau_xi) dW, 0))``. Returns the final ``(B, u, xi, rbar)``."""
    widths, scale = tuple(a.shape[0] for a in s0[2]), p["sigma"] / jnp.sqrt(p["tau_xi"])

    def step(s, grid, x, k_pat):
        (t0, dt), f = grid, pal_hand_drift(p, weights, biases, s, x)
        euler = lambda part, dpart: tuple(a + da * dt for a, da in zip(part, dpart))  # noqa: E731
        xi = tuple(a + (da * dt + scale * w) for a, da, w in zip(s[2], f[2], pal_increments(k_pat, t0, t0 + dt, widths)))
        return (euler(s[0], f[0]), euler(s[1], f[1]), xi, euler(s[3], f[3])), None

    def pattern(s, xk):
        k_pat = jax.random.fold_in(key, xk[1])
        return jax.lax.scan(lambda s, g: step(s, g, xk[0], k_pat), s, (t_prev, dts))[0], None

    return jax.lax.scan(pattern, s0, (inputs, jnp.arange(inputs.shape[0])))[0]


def pal_plain(model, state):
    """PAL's parameters and state as plain arrays: ``(params dict, weights, biases, (B, u, xi, rbar))``."""
    names = ("tau", "tau_xi", "tau_hp", "sigma", "alpha", "eta_bw", "basal_gain", "apical_gain", "output_gain")
    p = {k: jnp.asarray(getattr(model, k), jnp.float64) for k in names}
    return p, state.network.weights, state.network.biases, (state.feedback, state.u, state.xi, state.rbar)


def pal_case(model, sizes, n_pat: int, seed: int):
    """Seed ``seed``'s state (W, B ~ U(-1, 1), zero biases, as ``init_pal`` draws them, here on the host, settled by
    ``pal_state``), ``n_pat`` input patterns uniform in [-1, 1], and the noise key."""
    rng = np.random.default_rng(seed)
    ws, fb = host_arrays(rng, layer_shapes(sizes), lambda sh: 1.0), host_arrays(rng, feedback_shapes(sizes), lambda sh: 1.0)
    state = compiled(pal_state, model, Network.from_matrices(ws, host_arrays(rng, sizes[1:]), "logistic"), fb)
    return state, jnp.asarray(rng.uniform(-1.0, 1.0, (n_pat, sizes[0]))), seed_key(9000 + seed)


def bench_pal(sim_ms, repeats, vmap_ms):
    kw, sizes = dict(t_pres=5.0, dt=0.1), (5, 20, 10, 20, 5)
    model = PAL(tau_xi=0.5, tau_hp=0.5, sigma=0.5, alpha=1.2e-3, eta_bw=0.7, eta_fw=0.0)
    state, inputs, key = pal_case(model, sizes, int(round(sim_ms / kw["t_pres"])), 0)
    core = eqx.filter_jit(lambda m, st, i, k: run_patterns(m, st, i, None, k, kw["t_pres"], kw["dt"])[0])
    p, weights, biases, s0 = pal_plain(model, state)
    (t_prev, dts), hand = fixed_step_grid(kw["t_pres"], kw["dt"]), jax.jit(pal_hand_run)
    thunks = {
        "call": lambda: simulate_pal(model, state, inputs, key=key, **kw)[0],
        "jit": lambda: core(model.dynamics_only(), state, inputs, key),
        "hand": lambda: hand(p, weights, biases, s0, inputs, key, t_prev, dts),
    }
    check = lambda o: max(assert_same("PAL", pal_plain(model, o["call"])[3], o["hand"]),  # noqa: E731
                          assert_same("PAL (W fixed)", pal_plain(model, o["call"])[1:3], (weights, biases), 0.0))
    err, first, timing = time_calls(thunks, repeats, check)
    cases = [pal_case(model, sizes, int(round(vmap_ms / kw["t_pres"])), seed) for seed in range(1, N_SEEDS + 1)]
    states, many_inputs, keys = stack_seeds([c[0] for c in cases]), stack_seeds([c[1] for c in cases]), seed_key(9001 + np.arange(N_SEEDS))
    many = lambda: simulate_pal(model, states, many_inputs, key=keys, batched=True, **kw)[0]  # noqa: E731
    vmap = vmap_row(many, repeats, N_SEEDS * vmap_ms / 1000, "seeds x sim s/s")
    setting = f"5-20-10-20-5, dt {kw['dt']} ms, {sim_ms / 1000:g} s simulated"
    return [dict(family="PAL", setting=setting, rel_err=err, timing=timing, compile_s=first, **vmap)]


# ----------------------------------------------------------------------------- microcircuit
def mc_hand_field(p, eta, w, u, x, y, nudge):
    r"""Microcircuit neurons and Urbanczik-Senn plasticity (:mod:`dynlearn.models.microcircuit`), logistic hidden
    rates, linear output, interneuron ``k`` with the transfer function of layer ``k+1``:
    :math:`v_B = W r_{k-1} + b`, :math:`v_A = B r_{k+1} + W^{PI} r^I`, :math:`v^I = W^{IP} r_k + b^{IP}`;
    :math:`c_m\dot u_k = g_{lk+B+A}(\frac{g_B v_B + g_A v_A}{g_{lk+B+A}} - u_k)`; the output toward
    :math:`\frac{g_B v_B + \nu g_{som} y}{g_{lk}+g_B+\nu g_{som}}` with that conductance; :math:`c_m\dot u^I = g_{lk+D+nI}(\frac{g_D v^I + g_{nI} u_{k+1}}{g_{lk+D+nI}} - u^I)`;
    :math:`\dot W = \eta(\varphi(u) - \varphi(\hat g v_B))r_{k-1}^\top`, :math:`\dot W^{IP} = \eta_{IP}(\varphi(u^I) - \varphi(\hat g_I v^I))r_k^\top`,
    :math:`\dot W^{PI} = -\eta_{PI}v_A r^{I\top}`, :math:`\dot B = \eta_{TD}(\varphi(u) - \varphi(B r_{k+1}))r_{k+1}^\top` (biases alike)."""
    (up, ui), n = u, len(w["weights"])
    phi = lambda k, a: a if k == n else jax.nn.sigmoid(a)  # noqa: E731
    rp, ri = [x] + [phi(k, a) for k, a in enumerate(up, 1)], [phi(k + 1, a) for k, a in enumerate(ui, 1)]
    vb = [w["weights"][k] @ rp[k] + w["biases"][k] for k in range(n)]
    va = [w["top_down"][k] @ rp[k + 2] + w["w_pi"][k] @ ri[k] for k in range(n - 1)]
    vi = [w["w_ip"][k] @ rp[k + 1] + w["b_ip"][k] for k in range(n - 1)]
    g_h, g_o, g_i = p["g_lk"] + p["g_B"] + p["g_A"], p["g_lk"] + p["g_B"] + nudge * p["g_som"], p["g_lk"] + p["g_D"] + p["g_nI"]
    dup = [g_h * ((p["g_B"] * vb[k] + p["g_A"] * va[k]) / g_h - up[k]) / p["c_m"] for k in range(n - 1)]
    dup.append(g_o * ((p["g_B"] * vb[-1] + nudge * p["g_som"] * y) / g_o - up[-1]) / p["c_m"])
    dui = [g_i * ((p["g_D"] * vi[k] + p["g_nI"] * up[k + 1]) / g_i - ui[k]) / p["c_m"] for k in range(n - 1)]
    att = [p["g_B"] / (p["g_lk"] + p["g_B"] + (0.0 if k == n else p["g_A"])) for k in range(1, n + 1)]
    e_w = [phi(k, up[k - 1]) - phi(k, att[k - 1] * vb[k - 1]) for k in range(1, n + 1)]
    e_ip = [phi(k + 2, ui[k]) - phi(k + 2, p["g_D"] / (p["g_lk"] + p["g_D"]) * vi[k]) for k in range(n - 1)]
    e_td = [phi(k + 1, up[k]) - phi(k + 1, w["top_down"][k] @ rp[k + 2]) for k in range(n - 1)]
    dw = dict(
        weights=tuple(eta["fw"] * jnp.outer(e_w[k], rp[k]) for k in range(n)), biases=tuple(eta["fw"] * e for e in e_w),
        w_ip=tuple(eta["ip"] * jnp.outer(e_ip[k], rp[k + 1]) for k in range(n - 1)), b_ip=tuple(eta["ip"] * e for e in e_ip),
        w_pi=tuple(-eta["pi"] * jnp.outer(va[k], ri[k]) for k in range(n - 1)),
        top_down=tuple(eta["td"] * jnp.outer(e_td[k], rp[k + 2]) for k in range(n - 1)),
    )
    return (tuple(dup), tuple(dui)), dw


def mc_hand_run(p, eta, w0, u0, inputs, targets, nudge, t_pres, t_prev, dts):
    """Euler steps of neurons and weights together, ``(u, w) <- (u, w) + dt_n f(u, w; x_i, y_i)`` with the pattern
    ``i = floor(t_{n-1} / t_pres)`` (clipped to the last). Returns the final ``(u, w)``."""

    def step(c, grid):
        i = jnp.clip(jnp.floor(grid[0] / t_pres).astype(jnp.int32), 0, inputs.shape[0] - 1)
        f = mc_hand_field(p, eta, c[1], c[0], inputs[i], targets[i], nudge)
        return jax.tree.map(lambda a, da: a + da * grid[1], c, f), None

    return jax.lax.scan(step, (u0, w0), (t_prev, dts))[0]


def mc_circuit(sizes, seed: int):
    """A circuit drawn like ``Microcircuit.create(top_down="random")``, here on the host: ``W ~ U(-sqrt(3/n_in), .)``,
    zero biases, ``B ~ U(-1, 1)``, Bern conductances, lateral weights in the self-predicting state."""
    rng, n = np.random.default_rng(seed), len(sizes) - 1
    ws = host_arrays(rng, layer_shapes(sizes), lambda sh: np.sqrt(3.0 / sh[1]))
    tds = host_arrays(rng, [(sizes[k], sizes[k + 1]) for k in range(1, n)], lambda sh: 1.0)
    lateral = host_arrays(rng, [(sizes[k + 1], sizes[k]) for k in range(1, n)]), host_arrays(rng, sizes[2:]), host_arrays(rng, [b.shape for b in tds])
    model = Microcircuit(ws, host_arrays(rng, sizes[1:]), tds, *lateral, params=preset("bern").as_arrays(jnp.float64))
    return compiled(Microcircuit.self_predicting, model)


def mc_stream(sizes, n_pat: int, t_pres: float, seed: int):
    """``n_pat`` patterns (inputs uniform in [-1, 1], normal targets) shown for ``t_pres`` each, output nudge 1."""
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(-1.0, 1.0, (n_pat, sizes[0])), rng.normal(size=(n_pat, sizes[-1]))
    return Data(None, None, 1.0, PatternStream(jnp.asarray(x), jnp.asarray(y), t_pres))


def _scalar_save(t, y, args):
    return jnp.zeros(())


def bench_microcircuit(sim_ms, repeats, vmap_ms):
    sizes, dt, t_pres = (30, 50, 10), 0.1, 10.0
    plast = Plasticity(eta_fw=1e-3, eta_ip=1e-3, eta_pi=1e-3, tau_w=None)
    model, data = mc_circuit(sizes, 0), mc_stream(sizes, int(sim_ms / t_pres), t_pres, 0)
    run = lambda m, d, t1, **kw: simulate_learning(m, plast, d, t1=t1, dt=dt, throw=False, **kw)[1].final[:2]  # noqa: E731
    lib_jit = eqx.filter_jit(lambda m, d: run(m, d, sim_ms))
    p = {k: getattr(model.params, k) for k in ("g_lk", "g_B", "g_A", "g_D", "g_som", "g_nI", "c_m")}
    eta = dict(fw=plast.eta_fw, ip=plast.eta_ip, pi=plast.eta_pi, td=plast.eta_td)
    u0, w0, s = model.init_state(data), plastic_weights(model), data.stream
    (t_prev, dts), hand = fixed_step_grid(sim_ms, dt), jax.jit(mc_hand_run)
    thunks = {
        "call": lambda: run(model, data, sim_ms),
        "jit": lambda: lib_jit(model, data),
        "hand": lambda: hand(p, eta, w0, u0, s.inputs, s.targets, data.nudge, t_pres, t_prev, dts),
        "call_scalar_save": lambda: run(model, data, sim_ms, ts=jnp.asarray([sim_ms]), save_fn=_scalar_save),
    }
    check = lambda o: max(assert_same(f"microcircuit ({k})", o[k], o["hand"]) for k in ("call", "call_scalar_save"))  # noqa: E731
    err, first, timing = time_calls(thunks, repeats, check)
    models = stack_seeds([mc_circuit(sizes, seed) for seed in range(1, N_SEEDS + 1)])
    v_data = mc_stream(sizes, int(vmap_ms / t_pres), t_pres, 1)
    many = eqx.filter_jit(eqx.filter_vmap(lambda m, d: run(m, d, vmap_ms), in_axes=(0, None)))
    vmap = vmap_row(lambda: many(models, v_data), repeats, N_SEEDS * vmap_ms / 1000, "seeds x sim s/s")
    light = {"call": timing.pop("call_scalar_save"), "hand": timing["hand"]}
    setting = f"30-50-10, dt {dt} ms, {sim_ms / 1000:g} s simulated"
    return [dict(family="microcircuit", setting=setting, rel_err=err, timing=timing, compile_s=first, **vmap),
            dict(family="microcircuit", setting="  the same, ts=[t1], scalar save_fn", rel_err=err, timing=light)]


# ----------------------------------------------------------------------------- main
def print_table(rows) -> None:
    head = f"{'family':<13}{'setting':<42}{'rel err':>9}{'call ms':>17}{'jit ms':>17}{'hand ms':>17}{'call/hand':>11}{'jit/hand':>10}  vmap, {N_SEEDS} seeds"
    print(head + "\n" + "-" * len(head))
    for r in rows:
        t = r["timing"]
        ms = lambda k: f"{1e3 * t[k][0]:7.1f} /{1e3 * t[k][1]:7.1f}" if k in t else "-"  # noqa: E731
        ratio = lambda k: f"{r[k]:.2f}" if r.get(k) is not None else "-"  # noqa: E731
        vmap = f"{r['throughput']:.4g} {r['throughput_unit']}" if "throughput" in r else "-"
        print(f"{r['family']:<13}{r['setting']:<42}{r['rel_err']:>9.1e}{ms('call'):>17}{ms('jit'):>17}{ms('hand'):>17}"
              f"{ratio('ratio_call'):>11}{ratio('ratio_jit'):>10}  {vmap}")
    print("times: min / median over interleaved repeats; ratios: library / hand of the minima (target <= 1.1)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="shorter runs, fewer repeats (about 2 minutes on 2 CPU cores)")
    ap.add_argument("--json", default=None, metavar="PATH", help="write the rows (seconds, ratios, errors) as JSON")
    ap.add_argument("--families", nargs="+", default=["ep", "pal", "microcircuit"], choices=["ep", "pal", "microcircuit"], help="default: all three")
    args = ap.parse_args(argv)
    q, reps = args.quick, 7 if args.quick else 15
    sim_ms, vmap_ms = (500.0, 100.0) if q else (2000.0, 500.0)
    benches = {"ep": lambda: bench_ep((64, 128, 10), 64, 0.25, 100 if q else 200, reps),
               "pal": lambda: bench_pal(sim_ms, reps, vmap_ms), "microcircuit": lambda: bench_microcircuit(sim_ms, reps, vmap_ms)}
    rows = []
    for name in args.families:
        t0, new = time.perf_counter(), benches[name]()
        for row in new:  # library / hand, of the minima and of the medians
            t = row["timing"]
            row.update({f"ratio_{k}{m}": t[k][i] / t["hand"][i] if k in t else None for k in ("call", "jit") for i, m in ((0, ""), (1, "_median"))})
        rows += new
        first = ", ".join(f"{k} {v:.1f} s" for k, v in new[0]["compile_s"].items())
        print(f"[{name}: {time.perf_counter() - t0:.0f} s; first calls, compilation included: {first}, vmap {new[0]['vmap_first_s']:.1f} s]", flush=True)
    print_table(rows)
    meta = dict(backend=jax.default_backend(), jax=jax.__version__, quick=q, dtype="float64", tolerance=TOLERANCE, seeds=N_SEEDS)
    if args.json:
        Path(args.json).write_text(json.dumps({"config": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
