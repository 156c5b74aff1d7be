"""LIF/ALIF neurons, event-driven spike times, IDE: library code against independent formulas, the checks and their
must-fail twins, and the ``snn/ide`` learner."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from dynlearn.errors import ConfigError
from dynlearn.models.spiking.events import event_spike_times, fixed_step_spike_times
from dynlearn.models.spiking.ide import FeedbackSNN, fixed_point, ide_backward
from dynlearn.models.spiking.neurons import (
    ALIF,
    LIF,
    ConductanceLIF,
    init_state,
    lif_spike_times_closed_form,
    run,
    spike,
    step,
    subthreshold,
)
from dynlearn.rules.base import get_learner
from dynlearn.theorems import run_check
from dynlearn.theorems.spiking import (
    _ide_problem,
    ide_gradient,
    ide_rate_equilibrium,
    lif_event_vs_fixed_step,
)

# ----------------------------------------------------------------------------- neurons


@pytest.mark.parametrize("tau_syn", [5.0, 20.0, 0.0])
def test_subthreshold_step_is_the_matrix_exponential(tau_syn):
    """One step equals expm of the linear 2x2 system (v, i) with the input held constant (independent formula)."""
    tm, dt, current, v0, i0 = 20.0, 0.7, 1.3, 0.2, -0.4
    v, i = subthreshold(LIF(tau_mem=tm, tau_syn=tau_syn), jnp.asarray(v0), jnp.asarray(i0), jnp.asarray(current), dt)
    if tau_syn == 0.0:
        ref_v, ref_i = current + (v0 - current) * math.exp(-dt / tm), current
    else:  # d/dt (v, i, 1) = A (v, i, 1)
        a = np.array([[-1 / tm, 1 / tm, 0.0], [0.0, -1 / tau_syn, current / tau_syn], [0.0, 0.0, 0.0]])
        ref_v, ref_i, _ = scipy.linalg.expm(a * dt) @ np.array([v0, i0, 1.0])
    assert abs(float(v) - ref_v) <= 1e-13 and abs(float(i) - ref_i) <= 1e-13


def test_fixed_step_spike_times_within_one_step_of_closed_form():
    """Constant input, tau_syn = 0, reset to zero at the end of the step: the first spike and every inter-spike
    interval are the closed form rounded up to a whole number of steps."""
    dt, current = 0.05, jnp.array([1.5, 2.5])
    neuron = LIF(tau_syn=0.0, reset="zero")
    _, spikes, volts = run(neuron, jnp.broadcast_to(current, (2400, 2)), dt)
    for j in range(2):
        t = (np.nonzero(np.asarray(spikes[:, j]))[0] + 1) * dt
        ref = np.asarray(lif_spike_times_closed_form(neuron, float(current[j]), len(t)))
        isi = np.diff(t) - (ref[1] - ref[0])
        assert len(t) >= 3 and -1e-9 <= t[0] - ref[0] < dt and np.all(isi >= -1e-9) and np.all(isi < dt)
    assert float(jnp.max(volts)) < 1.0 + float(jnp.max(current)) * dt / 20.0  # pre-reset voltage just above threshold


def test_refractory_period_adds_to_the_interval():
    dt, current, t_ref = 0.01, 2.0, 3.0
    neuron = LIF(tau_syn=0.0, reset="zero", t_ref=t_ref)
    _, spikes, _ = run(neuron, jnp.full((6000, 1), current), dt)
    isi = np.diff(np.nonzero(np.asarray(spikes[:, 0]))[0]) * dt
    ref = 20.0 * math.log(current / (current - 1.0)) + t_ref
    assert isi.size >= 2 and np.all(np.abs(isi - ref) <= 2 * dt)


def test_alif_threshold_jumps_and_decays():
    dt = 1.0
    neuron = ALIF(tau_syn=0.0, tau_adapt=100.0, beta_adapt=1.8)
    state = init_state(neuron, (1,), v0=2.0)
    new, s = step(neuron, state, jnp.zeros(1), dt)
    rho = math.exp(-dt / 100.0)
    assert float(s[0]) == 1.0 and abs(float(new.adapt[0]) - (1 - rho)) <= 1e-15
    v_sub = 2.0 * math.exp(-dt / 20.0)
    assert abs(float(new.v[0]) - (v_sub - 1.0)) <= 1e-14  # subtract reset of theta = v_th at a = 0
    later, s2 = step(neuron, new, jnp.zeros(1), dt)
    assert float(s2[0]) == 0.0 and abs(float(later.adapt[0]) - rho * (1 - rho)) <= 1e-15
    assert abs(float(neuron.threshold(later)[0]) - (1.0 + 1.8 * rho * (1 - rho))) <= 1e-14


def test_conductance_lif_exact_without_filter_and_first_order_with_it():
    """tau_syn = 0: v(t) = v_inf (1 - exp(-(1 + g) t / tau_mem)), v_inf = g E / (1 + g), exactly at every step end.
    tau_syn = 5: against scipy's solution of the nonlinear ODE pair, the error halves with dt (first order)."""
    from scipy.integrate import solve_ivp

    g, e_syn, tm = 0.8, 5.0, 20.0
    _, _, volts = run(ConductanceLIF(tau_syn=0.0, e_syn=e_syn, v_th=100.0), jnp.full((50, 1), g), 0.2)
    t = 0.2 * np.arange(1, 51)
    ref = g * e_syn / (1 + g) * (1 - np.exp(-(1 + g) * t / tm))
    assert np.max(np.abs(np.asarray(volts[:, 0]) - ref)) <= 1e-13
    sol = solve_ivp(lambda _, y: [(-y[0] + y[1] * (e_syn - y[0])) / tm, (-y[1] + g) / 5.0], (0, 10), [0.0, 0.0], rtol=1e-12, atol=1e-12)
    errors = []
    for dt in (0.02, 0.01):
        _, _, v = run(ConductanceLIF(tau_syn=5.0, e_syn=e_syn, v_th=100.0), jnp.full((round(10 / dt), 1), g), dt)
        errors.append(abs(float(v[-1, 0]) - sol.y[0, -1]))
    assert 1.7 < errors[0] / errors[1] < 2.3


@pytest.mark.parametrize("kind", ["fast_sigmoid", "triangle"])
def test_spike_is_heaviside_with_unit_area_surrogate(kind):
    xs = jnp.linspace(-40.0, 40.0, 40001)
    assert np.array_equal(np.asarray(spike(xs, 0.5, kind)), np.asarray(xs >= 0).astype(float))
    g = jax.vmap(jax.grad(lambda x: spike(x, 0.5, kind)))(xs)
    area = float(jnp.sum(g) * (xs[1] - xs[0]))
    assert abs(area - 1.0) < (0.02 if kind == "fast_sigmoid" else 1e-3)  # fast sigmoid: heavy tails beyond ±40
    expect = 1.0 / (1 + 0.2 / 0.5) ** 2 if kind == "fast_sigmoid" else (1 - 0.2 / 0.5) / 0.5
    assert abs(float(jax.grad(lambda x: spike(x, 0.5, kind))(0.2)) - expect) <= 1e-12
    with pytest.raises(ValueError, match="surrogate"):
        spike(xs, 0.5, "box")


# ----------------------------------------------------------------------------- events


@pytest.fixture(scope="module")
def event_check():
    return run_check("lif_event_vs_fixed_step")


def test_lif_event_vs_fixed_step_passes(event_check):
    assert event_check.passed, event_check.verdict.summary()


def test_event_check_fails_without_root_finding(event_check):
    """Twin: the event dated at the end of the solver step that crossed the threshold is not the exact time."""
    _, verdict = lif_event_vs_fixed_step(event=functools.partial(event_spike_times, root_find=False))
    assert not verdict.passed and "closed_form_error" in verdict.failed


def test_event_check_fails_when_fixed_step_drops_the_synaptic_filter(event_check):
    """Twin: a fixed-step integrator that ignores tau_syn converges to other spike times (no O(dt) convergence)."""

    def no_filter(neuron, *args):
        return fixed_step_spike_times(LIF(tau_mem=neuron.tau_mem, tau_syn=0.0), *args)

    _, verdict = lif_event_vs_fixed_step(fixed_step=no_filter)
    assert not verdict.passed and {"fixed_step_order", "every_spike_paired"} & set(verdict.failed)


# ----------------------------------------------------------------------------- IDE


def test_ide_rate_equilibrium_passes():
    r = run_check("ide_rate_equilibrium")
    assert r.passed, r.verdict.summary()


def test_ide_rate_check_fails_with_reset_to_zero():
    """Twin: IF neurons reset to zero (instead of by subtraction) lose the residue, so their average rate does not
    converge to clamp(W a* + F x + b) — the error stalls instead of falling as 1/T."""

    def zero_reset(params, inputs, **kw):
        if kw.get("neuron", "if") != "if":
            return ide_simulate(params, inputs, **kw)
        (f,), (b,), w = params.forward, params.biases, params.feedback

        def body(carry, x_t):
            u, s = carry
            u = u + x_t @ f.T + s @ w.T + b
            s = (u >= 1.0).astype(u.dtype)
            return (u * (1 - s), s), s

        z = jnp.zeros((*inputs.shape[1:-1], f.shape[0]), inputs.dtype)
        return (jax.lax.scan(body, (z, z), inputs)[1],)

    from dynlearn.models.spiking.ide import simulate as ide_simulate

    _, verdict = ide_rate_equilibrium(simulate_fn=zero_reset, lif_taus=())
    assert not verdict.passed and "rate_error_order" in verdict.failed


@pytest.fixture(scope="module")
def gradient_check():
    return run_check("ide_gradient")


def test_ide_gradient_passes(gradient_check):
    assert gradient_check.passed, gradient_check.verdict.summary()


def test_ide_gradient_fails_with_truncated_backward(gradient_check):
    """Twin: one backward iteration (g = ∂L/∂a + J^T ∂L/∂a) drops the feedback loop's higher orders."""

    def one_step(params, a, x, dl_da, **kw):
        return ide_backward(params, a, x, dl_da, **{**kw, "max_steps": 1})

    _, verdict = ide_gradient(backward=one_step, seeds=(0,))
    assert not verdict.passed and "error_vs_implicit_gradient" in verdict.failed


def test_ide_backward_matches_linear_algebra_on_the_active_set():
    """Independent formula: on the active set D (rates strictly inside (0, 1)) a* solves a = D(W a + F x + b) + 1_sat,
    so g = (I − (D W)^T)^{-1} ∂L/∂a and ∂L/∂b = D g."""
    params, x, _ = _ide_problem(3, (6, 8), batch=1)
    a = fixed_point(params, x, rtol=1e-15, atol=1e-15, max_steps=4000).value
    dl_da = (jnp.asarray(np.random.default_rng(0).standard_normal((1, 8))),)
    grads, g, _ = ide_backward(params, a, x, dl_da, rtol=1e-15, atol=1e-15, max_steps=4000)
    w = np.asarray(params.feedback)
    pre = np.asarray(x @ params.forward[0].T + a[0] @ params.feedback.T + params.biases[0])[0]
    d = np.diag(((pre > 0) & (pre < 1)).astype(float))
    ref_g = np.linalg.solve(np.eye(8) - (d @ w).T, np.asarray(dl_da[0])[0])
    assert np.max(np.abs(np.asarray(g[0])[0] - ref_g)) <= 1e-13
    assert np.max(np.abs(np.asarray(grads.biases[0]) - d @ ref_g)) <= 1e-13


@pytest.mark.slow  # 12 s of training; test_ide_learner_deep_and_options trains the same learner in the default run
def test_ide_learner_trains_on_digits():
    from dynlearn.data import load
    from dynlearn.learning import train

    learner = get_learner("snn/ide", n_steps=8)
    params, hist = train(learner, load("digits"), hidden=(32,), epochs=2, lr=3e-3, progress=False)
    assert float(hist.test_accuracy[-1]) > 0.6
    x = jnp.asarray(load("digits").x_test[:5], jnp.float32)
    assert np.array_equal(np.asarray(learner.predict(params, x)), np.asarray(learner.predict(params, x)))


def test_ide_learner_deep_and_options():
    import equinox as eqx

    from dynlearn.models.base import Data
    from dynlearn.networks import init_network

    learner = get_learner("snn/ide", n_steps=5, neuron="lif")
    net = init_network((6, 7, 5, 3), key=jax.random.key(0), dtype=jnp.float64)
    params = learner.init(jax.random.key(1), net)
    assert isinstance(params, FeedbackSNN) and params.feedback.shape == (7, 5)
    batch = Data(jax.random.uniform(jax.random.key(2), (4, 6)), jax.nn.one_hot(jnp.arange(4) % 3, 3))
    grads, _, metrics = eqx.filter_jit(learner.rule.update)(params, (), batch, jax.random.key(3))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads)) and math.isfinite(float(metrics["loss"]))
    for bad in ({"coding": "latency"}, {"neuron": "hh"}, {"n_steps": 0}, {"feedback_gain": -1.0}):
        with pytest.raises(ConfigError):
            get_learner("snn/ide", **bad)
