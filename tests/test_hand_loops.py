"""The hand-written loops of ``benchmarks/hand_loops.py`` compute what the library computes (tiny cases, float64).

The benchmark times the library against these loops; these tests make sure both sides do the same work: the same
equations, the same fixed-step grid and (for PAL) the same Brownian increments.
"""

import sys
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import hand_loops as H  # noqa: E402


def _moved(a, b) -> bool:
    return any(np.max(np.abs(np.asarray(x) - np.asarray(y))) > 1e-6 for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_grid_is_diffrax_constant_step_grid():
    import diffrax

    t1, dt = 5.0, 0.1
    sol = diffrax.diffeqsolve(diffrax.ODETerm(lambda t, y, a: -y), diffrax.Euler(), 0.0, t1, dt, 1.0, saveat=diffrax.SaveAt(steps=True), max_steps=64)
    t_prev, dts = H.fixed_step_grid(t1, dt)
    ts = np.asarray(sol.ts)  # the end of every step, then inf
    assert t_prev.size == 50 and np.isinf(ts[50:]).all() and ts[49] == t1
    np.testing.assert_array_equal(np.concatenate([[0.0], ts[:49]]), np.asarray(t_prev))  # bit for bit
    np.testing.assert_allclose(np.asarray(dts), np.diff(np.concatenate([[0.0], ts[:50]])), rtol=0, atol=0)


def test_ep_hand_relaxation_equals_free_phase():
    sizes, dt, n = (4, 6, 5, 3), 0.25, 12
    net, (x, y) = H.ep_network(sizes, 3), H.ep_batch(sizes, 2, 3)
    lib = eqx.filter_jit(H.ep_library_relax)(net, x, y, dt * n, dt, n)
    hand = jax.jit(H.ep_hand_relax)(net.weights, net.biases, x, *H.fixed_step_grid(dt * n, dt))
    H.assert_same("EP", lib, hand)
    assert _moved(lib, tuple(np.zeros(s.shape) for s in lib))
    with pytest.raises(AssertionError, match="differs"):
        H.assert_same("EP", lib, tuple(np.asarray(a) * (1 + 1e-6) for a in hand))


def test_pal_hand_sde_equals_the_library_sde_with_the_same_noise():
    from dynlearn.models.pal import PAL
    from dynlearn.models.pal_simulation import run_patterns

    sizes, t_pres, dt = (2, 3, 2), 0.5, 0.1
    model = PAL(tau_xi=0.5, tau_hp=0.5, sigma=0.5, alpha=1.2e-3, eta_bw=0.7, eta_fw=0.0)
    state, inputs, key = H.pal_case(model, sizes, 2, 4)
    # what simulate_pal runs after its checks, compiled once
    final, _ = eqx.filter_jit(run_patterns)(model, state, inputs, None, key, t_pres, dt)
    p, weights, biases, s0 = H.pal_plain(model, state)
    hand = jax.jit(H.pal_hand_run)(p, weights, biases, s0, inputs, key, *H.fixed_step_grid(t_pres, dt))
    lib = H.pal_plain(model, final)[3]
    H.assert_same("PAL", lib, hand)
    assert _moved(lib[2], s0[2])  # the noise xi was driven


def test_microcircuit_hand_euler_equals_simulate_learning():
    from dynlearn.models.microcircuit import Plasticity, plastic_weights, simulate_learning

    sizes, t_pres, t1, dt = (3, 4, 2), 1.0, 2.0, 0.1
    plast = Plasticity(eta_fw=0.05, eta_ip=0.05, eta_pi=0.05, eta_td=0.05, tau_w=None)
    model, data = H.mc_circuit(sizes, 5), H.mc_stream(sizes, 2, t_pres, 5)
    final = eqx.filter_jit(lambda m, d: simulate_learning(m, plast, d, t1=t1, dt=dt)[1].final)(model, data)
    p = {k: getattr(model.params, k) for k in ("g_lk", "g_B", "g_A", "g_D", "g_som", "g_nI", "c_m")}
    eta = dict(fw=plast.eta_fw, ip=plast.eta_ip, pi=plast.eta_pi, td=plast.eta_td)
    u0, w0 = eqx.filter_jit(model.init_state)(data), plastic_weights(model)
    s = data.stream
    hand = jax.jit(H.mc_hand_run)(p, eta, w0, u0, s.inputs, s.targets, data.nudge, t_pres, *H.fixed_step_grid(t1, dt))
    H.assert_same("microcircuit", final[:2], hand)
    assert all(_moved(final[1][k], w0[k]) for k in w0)  # every plastic weight family learned
