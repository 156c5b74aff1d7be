"""Vector-field evaluations of one relaxation: the steady-state test costs none (dynlearn.steady_state).

Evaluations are counted by a ``jax.debug.callback`` inside the field, so the count is what the compiled solve
actually executes. Explicit Tsit5 evaluates 6 new stages per step (FSAL), Euler one; the old event evaluated the
whole field once more after every step (7 and 2 per step).
"""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynlearn import steady_state
from dynlearn.config import DEFAULT, RelaxConfig
from dynlearn.dynamics import max_norm, relax

A = 0.5 * jax.random.normal(jax.random.key(0), (12, 12)) / jnp.sqrt(12.0)
Y0 = {"a": jnp.zeros((3, 12)), "b": jnp.ones((2,))}


def _field(counter):
    def field(t, y, args):
        if counter is not None:
            jax.debug.callback(lambda: counter.append(1))
        return {"a": jnp.tanh(y["a"]) @ args.T - y["a"] + 0.3, "b": -0.5 * y["b"]}

    return field


def count(config, y0=Y0, **kw):
    calls = []
    eq = relax(_field(calls), y0, A, config, **kw)
    jax.block_until_ready(eq.state)
    return eq, len(calls)


EULER = RelaxConfig(solver="euler", dt0=0.2, t1=200.0, max_steps=5000)


@pytest.mark.parametrize(
    "config, per_step, extra",
    [
        (DEFAULT, 6, 3),  # Tsit5: 6 new stages per step (FSAL); the initial step size, the test at t0 (the final
        (RelaxConfig(solver="dopri5"), 6, 3),  # residual is the carried last stage)
        (EULER, 1, 2),  # Euler: its slope at t0, the test at t0
        (EULER.replace(steady=False, t1=4.0), 1, 1),  # fixed budget: no test at all; the final residual
    ],
)
def test_one_evaluation_per_stage(config, per_step, extra):
    eq, n = count(config)
    assert int(eq.status) == 0
    steps = int(eq.num_steps)
    assert steps > 10
    assert per_step * steps <= n <= per_step * steps + extra, (n, steps)


def _direct(monkeypatch):
    monkeypatch.setattr(steady_state, "tracks_residual", lambda *a: False)


@pytest.mark.parametrize("config", [DEFAULT, EULER], ids=["tsit5", "euler"])
def test_same_solution_as_the_direct_test(config, monkeypatch):
    ts = jnp.linspace(0.0, 30.0, 31)
    fast, n_fast = count(config, save_ts=ts)
    _direct(monkeypatch)
    slow, n_slow = count(config, save_ts=ts)
    assert n_slow > n_fast  # the direct test pays an evaluation per step
    assert int(fast.num_steps) == int(slow.num_steps) and float(fast.time) == float(slow.time)
    for u, v in zip(jax.tree.leaves((fast.state, fast.ts, fast.ys)), jax.tree.leaves((slow.state, slow.ts, slow.ys))):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("config", [DEFAULT, EULER, EULER.replace(steady=False, t1=4.0)], ids=["tsit5", "euler", "budget"])
def test_final_residual_is_exact(config):
    eq, _ = count(config)
    exact = float(max_norm(_field(None)(eq.time, eq.state, A)))
    np.testing.assert_allclose(float(eq.residual), exact, rtol=1e-6)  # float32: a few ulp of summation order
    if config.steady:
        assert float(eq.residual) <= config.tol


def test_steady_at_t0_takes_no_step():
    eq0 = relax(_field(None), Y0, A, DEFAULT)
    eq, _ = count(DEFAULT, y0=eq0.state)
    assert int(eq.num_steps) == 0 and float(eq.time) == 0.0


def test_unsupported_solver_keeps_the_direct_test():
    heun = EULER.replace(solver="heun", controller=diffrax.ConstantStepSize())
    assert not steady_state.tracks_residual(heun.diffrax_solver(), heun.step_controller())
    eq, n = count(heun)
    assert int(eq.status) == 0 and n >= 3 * int(eq.num_steps)  # 2 stages + the test per step


def test_divergence_still_detected():
    blow = lambda t, y, args: y
    eq = relax(blow, jnp.ones(3), None, EULER.replace(bound=1e3), throw=False)
    assert int(eq.status) == 3
