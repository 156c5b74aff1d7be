"""PAL as an SDE: alignment from noise (with its negative controls), the 1-1-1 sign task, and must-fail twins."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynlearn.errors import DivergedError, NonFiniteError, ShapeError
from dynlearn.models import get_learner
from dynlearn.models.pal import PAL, PALState, init_pal, simulate_pal
from dynlearn.networks import init_network
from dynlearn.theorems import run_check

# ----------------------------------------------------------------------------- broken models (must fail)


class SignFlippedPAL(PAL):
    """The PAL rule with a sign error: dB = eta (-xi r_HP^T - alpha B)."""

    def vector_field(self, t, y, x, target=None):
        d = super().vector_field(t, y, x, target)
        flipped = tuple(-db - 2 * self.eta_bw * self.alpha * b for db, b in zip(d.feedback, y.feedback))
        return eqx.tree_at(lambda s: s.feedback, d, flipped)


class FrozenBPAL(PAL):
    """PAL whose backward matrices never learn (the rule is missing): feedback alignment in disguise."""

    def vector_field(self, t, y, x, target=None):
        d = super().vector_field(t, y, x, target)
        return eqx.tree_at(lambda s: s.feedback, d, tuple(jnp.zeros_like(b) for b in d.feedback))


class NonProspectivePAL(PAL):
    """Rates phi(u) instead of phi(u + tau du/dt): the fast noise is low-passed by tau before it reaches the next layer."""

    prospective: bool = eqx.field(static=True, default=False)


# ----------------------------------------------------------------------------- the checks


@pytest.fixture(scope="module")
def alignment():
    return run_check("pal_alignment")


@pytest.fixture(scope="module")
def sign_task():
    return run_check("pal_vs_fa_sign")


def test_pal_alignment(alignment):
    r = alignment
    assert r.passed, r.verdict.summary()
    pal = r.data.angle.sel(condition="pal")
    assert abs(float(pal.isel(time=0).mean()) - 90) < 15
    assert float(pal.isel(time=-1).mean()) < 15
    # every backward matrix, averaged over seeds, ends far below its start
    assert np.all(pal.isel(time=-1).mean("seed") < pal.isel(time=0).mean("seed") - 45)


def test_pal_negative_controls(alignment):
    ds = alignment.data
    off = ds.angle.sel(condition="noise_off")
    # without noise B only decays: its direction, and so its angle to W^T, never changes
    np.testing.assert_allclose(off.isel(time=-1), off.isel(time=0), atol=1e-6)
    # without the decay term |B| keeps growing, while PAL's saturates
    a0 = ds.norm_B.sel(condition="alpha_zero")
    assert np.all(np.diff(a0.mean("seed"), axis=0)[len(ds.time) // 2 :] > 0)
    assert alignment.verdict.measured["alpha_zero_norm_growth"] > 1.3
    assert alignment.verdict.measured["pal_norm_growth"] < 1.15


def test_pal_alignment_fails_with_sign_error():
    r = run_check("pal_alignment", model_cls=SignFlippedPAL, sizes=(5, 10, 5), t_end=1000.0, seeds=(0, 1), cache=False)
    assert r.passed is False
    assert r.verdict.measured["final_angle"] > 90  # B aligns with -W^T


@pytest.mark.slow
def test_pal_alignment_needs_prospective_rates():
    r = run_check("pal_alignment", model_cls=NonProspectivePAL, sizes=(5, 10, 5), t_end=2000.0, seeds=(0, 1), cache=False)
    assert r.passed is False
    assert r.verdict.measured["final_angle"] > 45


def test_pal_vs_fa_sign(sign_task):
    r = sign_task
    assert r.passed, r.verdict.summary()
    ds = r.data
    assert float(ds.B.sel(rule="pal").isel(time=0).max()) < 0  # wrong sign at the start
    assert float(ds.B.sel(rule="pal").isel(time=-1).min()) > 0  # PAL flips it
    assert float(ds.w1.sel(rule="fa").isel(time=-1).max()) < 0  # FA drives w1 the wrong way
    assert np.all(ds.loss.sel(rule="pal").isel(time=-1) < 0.01 * ds.loss.sel(rule="fa").isel(time=-1))


def test_pal_vs_fa_sign_fails_without_backward_learning():
    r = run_check("pal_vs_fa_sign", model_cls=FrozenBPAL, seeds=(0, 1), cache=False)
    assert r.passed is False


# ----------------------------------------------------------------------------- the model


def _small(sizes=(3, 4, 4, 2), seed=0, **kw):
    model = PAL(tau_xi=0.5, tau_hp=0.5, sigma=0.5, alpha=1e-3, eta_bw=1.0, **kw)
    return model, init_pal(sizes, key=jax.random.key(seed), model=model)


def test_prospective_rates_are_exact_and_instantaneous():
    model, y = _small()
    y = eqx.tree_at(lambda s: s.u, y, tuple(u + 0.3 for u in y.u))  # off the fixed point: du/dt != 0
    x = jnp.array([0.1, -0.4, 0.7])
    dus, uh, rho = model.layers(y, x)
    d = model.vector_field(0.0, y, x)
    for u, du, a, f in zip(y.u, dus, uh, d.u):
        np.testing.assert_allclose(a, u + model.tau * f, rtol=1e-13)  # u + tau du/dt from the vector field
        np.testing.assert_allclose(du, f, rtol=1e-13)
    # noise in layer 1 reaches the rate of layer 2 with no delay: d rho_2 / d xi_1 = phi'_2 g_B W_2 phi'_1 g_A
    def rho2(xi1):
        return model.layers(eqx.tree_at(lambda s: s.xi, y, (xi1,) + y.xi[1:]), x)[2][2]

    jac = jax.jacobian(rho2)(y.xi[0])
    dphi = lambda a: jax.nn.sigmoid(a) * (1 - jax.nn.sigmoid(a))
    expected = dphi(uh[1])[:, None] * model.basal_gain * y.network.weights[1] * dphi(uh[0])[None, :] * model.apical_gain
    np.testing.assert_allclose(jac, expected, rtol=1e-12)
    slow = NonProspectivePAL(tau_xi=0.5, tau_hp=0.5)
    jac_slow = jax.jacobian(lambda xi1: slow.layers(eqx.tree_at(lambda s: s.xi, y, (xi1,) + y.xi[1:]), x)[2][2])(y.xi[0])
    assert float(jnp.abs(jac_slow).max()) == 0.0


def test_backprop_limit_of_the_forward_rule():
    """With B = W^T the dendritic errors give exactly -beta dL/dW of the noise-free network (no noise, beta = 1)."""
    from dynlearn.analysis import relative_error

    model = PAL(sigma=0.0, eta_fw=1.0, basal_gain=1.0, apical_gain=1.0)
    net = init_network((3, 5, 4, 2), key=jax.random.key(3), activation="logistic", dtype=jnp.float64)
    y = model.init_state(net, tuple(w.T for w in net.weights[1:]), jnp.array([0.2, -0.1, 0.5]))
    x, target = jnp.array([0.2, -0.1, 0.5]), jnp.array([0.3, -0.7])
    d = model.vector_field(0.0, y, x, target)
    grad = jax.grad(lambda n: 0.5 * jnp.sum((model.predict(n, x) - target) ** 2))(net)
    assert float(relative_error(d.network.weights, jax.tree.map(jnp.negative, grad.weights))) < 1e-12


def _save_xi(t, s, args):
    return s.xi[0]


def test_simulation_is_reproducible():
    model, y = _small()
    inputs = jax.random.uniform(jax.random.key(5), (400, 3), jnp.float64, -1, 1)
    a, sa = simulate_pal(model, y, inputs, key=jax.random.key(1), t_pres=1.0, dt=0.05, save_fn=_save_xi)
    b, sb = simulate_pal(model, y, inputs, key=jax.random.key(1), t_pres=1.0, dt=0.05, save_fn=_save_xi)
    c, _ = simulate_pal(model, y, inputs, key=jax.random.key(2), t_pres=1.0, dt=0.05, save_fn=_save_xi)
    assert all(bool(jnp.all(p == q)) for p, q in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    assert float(jnp.abs(a.feedback[0] - c.feedback[0]).max()) > 0


def test_ou_noise_has_the_stationary_variance():
    model, y = _small()
    model = eqx.tree_at(lambda m: m.eta_bw, model, jnp.asarray(0.0))
    inputs = jnp.zeros((400, 3))
    _, xi = simulate_pal(model, y, inputs, key=jax.random.key(7), t_pres=1.0, dt=0.05, save_fn=_save_xi)  # same compilation as above
    var = float(jnp.var(xi[40:]))
    assert abs(var / (0.5**2 / 2) - 1) < 0.25  # sigma^2 / 2, within sampling error of ~1600 correlated samples


def test_bad_inputs_raise_clear_errors():
    model, y = _small()
    inputs = jnp.zeros((5, 3))
    with pytest.raises(ShapeError, match="shape of W"):
        PALState(y.network, (y.feedback[0], y.feedback[1].T), y.u, y.xi, y.rbar)
    with pytest.raises(ShapeError, match="inputs"):
        simulate_pal(model, y, jnp.zeros((5, 4)), key=jax.random.key(0), dt=0.1)
    with pytest.raises(NonFiniteError, match="high-pass filter"):
        bad = eqx.tree_at(lambda s: s.rbar, y, (y.rbar[0].at[0].set(jnp.nan),) + y.rbar[1:])
        simulate_pal(model, bad, inputs, key=jax.random.key(0), dt=0.1)
    with pytest.raises(NonFiniteError, match="inputs"):
        simulate_pal(model, y, inputs.at[0, 0].set(jnp.nan), key=jax.random.key(0), dt=0.1)
    with pytest.raises(ValueError, match="does not resolve"):
        simulate_pal(model, y, inputs, key=jax.random.key(0), dt=1.0)
    with pytest.raises(ValueError, match="must be positive"):
        PAL(tau_hp=0.0)
    explosive = eqx.tree_at(lambda m: (m.eta_bw, m.alpha), model, (jnp.asarray(1e3), jnp.asarray(1.0)))
    with pytest.raises(DivergedError, match="backward matrices"):
        simulate_pal(explosive, y, jnp.zeros((50, 3)), key=jax.random.key(0), t_pres=1.0, dt=0.1)


def test_pal_learner_update():
    learner = get_learner("pal")
    x = jax.random.uniform(jax.random.key(0), (8, 6))
    y = jax.nn.one_hot(jnp.arange(8) % 3, 3)
    params = learner.init(jax.random.key(1), (6, 10, 8, 3))
    grads, metrics = eqx.filter_jit(learner.update)(params, x, y)
    assert np.isfinite(float(metrics["loss"]))
    assert all(float(jnp.abs(g).max()) > 0 for g in grads.feedback)  # B learns from noise
    assert all(g.dtype == p.dtype for g, p in zip(jax.tree.leaves(grads), jax.tree.leaves(params)))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(eqx.filter(grads, eqx.is_inexact_array)))


def test_additive_noise_solvers_agree_without_noise():
    """ShARK (an additive-noise SRK) runs the same SDE; with sigma = 0 it matches Euler as dt shrinks."""
    model, y = _small()
    y = eqx.tree_at(lambda s: s.xi, y, tuple(x + 0.3 for x in y.xi))  # a decaying OU transient drives B
    model = eqx.tree_at(lambda m: m.sigma, model, jnp.asarray(0.0))
    inputs = jax.random.uniform(jax.random.key(5), (10, 3), jnp.float64, -1, 1)
    a, _ = simulate_pal(model, y, inputs, key=jax.random.key(1), t_pres=1.0, dt=0.05, solver="shark")
    b, _ = simulate_pal(model, y, inputs, key=jax.random.key(1), t_pres=1.0, dt=0.0025, solver="euler")
    assert float(jnp.abs(a.feedback[0] - y.feedback[0]).max()) > 1e-4  # B moved
    assert float(jnp.abs(a.feedback[0] - b.feedback[0]).max()) < 1e-4
