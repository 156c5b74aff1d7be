"""Equilibria by minimisation / root-finding (``RelaxConfig.method``): the same steady state as the flow, judged by the
same residual test, and clear errors where a method does not apply."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynlearn import THEOREM, RelaxConfig
from dynlearn.errors import ConfigError, NotConvergedError
from dynlearn.models.base import Data, equilibrium
from dynlearn.models.pc import FixedPredictionPC, PredictiveCoding
from dynlearn.networks import init_network


@pytest.fixture(scope="module")
def pc():
    net = init_network((4, 7, 6, 3), key=jax.random.key(1), dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(2), (5, 4))
    y = jax.random.normal(jax.random.key(3), (5, 3))
    model, data = PredictiveCoding(net, output="clamped"), Data(x, y)
    return model, data, equilibrium(model, data, THEOREM)


def _gap(a, b) -> float:
    return max(float(jnp.max(jnp.abs(u - v))) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("method, tol", [("bfgs", 1e-8), ("lbfgs", 1e-8), ("nonlinear_cg", 1e-7), ("newton", 1e-11)])
def test_each_method_reaches_the_flows_equilibrium(pc, method, tol):
    """Minimisers judge steps by energy values, whose round-off (~1e-16 |E|) bounds the gradient they can certify near
    sqrt(eps) ~ 1e-8; Newton's root-find works on the field itself and goes to round-off."""
    model, data, flow = pc
    eq = equilibrium(model, data, RelaxConfig(method=method, tol=tol, max_steps=2000))
    assert bool(eq.converged) and float(eq.residual) <= tol
    # the flow's residual is <= 1e-9 and the Hessian's smallest eigenvalue is O(0.1): the states agree to ~10 x tol
    assert _gap(eq.state, flow.state) <= 100 * max(tol, 1e-9)
    assert 0 < int(eq.num_steps) < 2000


def test_minimisers_stop_on_the_residual(pc):
    """The solve stops at the first residual <= tol (the step test only catches round-off stagnation)."""
    model, data, _ = pc
    loose = equilibrium(model, data, RelaxConfig(method="lbfgs", tol=1e-4, max_steps=500))
    tight = equilibrium(model, data, RelaxConfig(method="lbfgs", tol=1e-8, max_steps=500))
    assert bool(loose.converged) and float(loose.residual) <= 1e-4 and int(loose.num_steps) < int(tight.num_steps) < 500


def test_a_budget_too_small_is_a_clear_non_convergence(pc):
    model, data, _ = pc
    with pytest.raises(NotConvergedError, match="max_steps"):
        equilibrium(model, data, RelaxConfig(method="bfgs", tol=1e-12, max_steps=2))


def test_newton_root_finds_a_field_that_is_no_gradient(pc):
    model, data, _ = pc
    fp = FixedPredictionPC(model.network)
    flow = equilibrium(fp, data, THEOREM)
    eq = equilibrium(fp, data, RelaxConfig(method="newton", tol=1e-11))
    assert bool(eq.converged) and _gap(eq.state, flow.state) <= 1e-8


def test_where_a_method_does_not_apply_the_error_names_it(pc):
    model, data, _ = pc
    with pytest.raises(ConfigError, match="method must be one of"):
        RelaxConfig(method="gradient_descent")
    with pytest.raises(ConfigError, match="is not an EnergyModel"):
        equilibrium(FixedPredictionPC(model.network), data, RelaxConfig(method="bfgs"))
    with pytest.raises(ConfigError, match="save_ts needs a trajectory"):
        equilibrium(model, data, RelaxConfig(method="lbfgs"), save_ts=jnp.linspace(0, 1, 3))
    with pytest.raises(ConfigError, match="default float"):
        net32 = init_network((4, 7, 6, 3), key=jax.random.key(1), dtype=jnp.float32)
        equilibrium(PredictiveCoding(net32, output="clamped"), Data(data.x.astype(jnp.float32), data.y.astype(jnp.float32)), RelaxConfig(method="lbfgs"))
    with pytest.raises(ConfigError, match="real state"):
        equilibrium(model, Data(data.x, data.y, jnp.asarray(0.1 + 0.1j)), RelaxConfig(method="lbfgs"))


def test_a_pc_learners_update_with_a_minimiser_is_the_flows(pc):
    """One PC update (relax, then dE/dθ) with per-sample BFGS against the flow's, both relaxed to max|dx/dt| <= 1e-6."""
    from dynlearn.rules import get_learner

    model, data, _ = pc
    grads = {}
    for method in ("flow", "bfgs"):
        rule = get_learner("pc/clamped", method=method, tol=1e-6, rtol=1e-8, atol=1e-10, t1=1e3, max_steps=20_000).rule
        grads[method], _, metrics = rule.update(model.network, None, data, jax.random.key(0))
        assert float(metrics["residual"]) <= 1e-6
    for a, b in zip(jax.tree.leaves(grads["bfgs"]), jax.tree.leaves(grads["flow"])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_a_pc_learner_trains_with_a_minimiser_as_with_the_flow():
    from dynlearn.data import load
    from dynlearn.learning import train
    from dynlearn.rules import get_learner

    data = load("digits")
    curves = {}
    for method in ("flow", "bfgs"):
        learner = get_learner("pc/clamped", method=method)  # TRAINING: max|dx/dt| <= 1e-2
        assert learner.rule.config.method == method
        _, hist = train(learner, data, hidden=(16,), epochs=3, batch_size=32, seed=0, progress=False)
        curves[method] = np.asarray(hist.test_accuracy)
    # both stop within 1e-2 of the same equilibrium: the learning curves agree to a few test images
    assert np.all(np.isfinite(curves["bfgs"])) and np.max(np.abs(curves["bfgs"] - curves["flow"])) <= 0.03
    assert curves["bfgs"][-1] > curves["bfgs"][0]


def test_a_solve_that_stalls_above_tol_is_not_steady(pc):
    """Below the gradient a line search can certify, the solve stops on round-off steps at the same residual r*
    whatever tol is; with tol = r*/3 the status must say not steady (not converged within some slack)."""
    model, data, _ = pc
    stalled = equilibrium(model, data, RelaxConfig(method="lbfgs", tol=1e-15, max_steps=2000, throw=False))
    r = float(stalled.residual)
    assert r > 1e-15 and int(stalled.num_steps) < 2000 and not bool(stalled.converged)
    again = equilibrium(model, data, RelaxConfig(method="lbfgs", tol=r / 3, max_steps=2000, throw=False))
    assert float(again.residual) == pytest.approx(r, rel=1e-6) and not bool(again.converged)
