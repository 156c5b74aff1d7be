"""PAL as an SDE: alignment from noise (with its negative controls), the 1-1-1 sign task, the learner, and must-fail twins."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dynlearn.errors import ConfigError, DivergedError, NonFiniteError, ShapeError
from dynlearn.models import Data
from dynlearn.models.pal import PAL, PALState, init_pal, pal_state
from dynlearn.models.pal_simulation import simulate_pal
from dynlearn.networks import init_network
from dynlearn.rules import get_learner
from dynlearn.rules.pal import PALParams, init_pal_params
from dynlearn.theorems import run_check

# ----------------------------------------------------------------------------- broken models (must fail)


class SignFlippedPAL(PAL):
    """The PAL rule with a sign error: dB = eta (-xi r_HP^T - alpha B)."""

    def vector_field(self, t, y, data):
        d = super().vector_field(t, y, data)
        flipped = tuple(-db - 2 * self.eta_bw * self.alpha * b for db, b in zip(d.feedback, y.feedback))
        return eqx.tree_at(lambda s: s.feedback, d, flipped)


class FrozenBPAL(PAL):
    """PAL whose backward matrices never learn (the rule is missing): feedback alignment in disguise."""

    def vector_field(self, t, y, data):
        d = super().vector_field(t, y, data)
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
    assert alignment.verdict.measured["pal_norm_growth"] < 1.2


def test_pal_alignment_fails_with_sign_error():
    r = run_check("pal_alignment", model_cls=SignFlippedPAL, sizes=(5, 10, 5), t_end=1000.0, seeds=(0, 1), cache=False)
    assert r.passed is False
    assert r.verdict.measured["final_angle_B1"] > 90  # B aligns with -W^T (sizes 5-10-5: one backward matrix)
    # the angle grows instead of decreasing: the monotonicity criterion sees it too
    assert {"final_angle_B1", "max_rise_above_running_min", "final_angle_worst"} <= set(r.verdict.failed)
    assert r.verdict.measured["max_rise_above_running_min"] > 3


@pytest.mark.slow
def test_pal_alignment_needs_prospective_rates():
    r = run_check("pal_alignment", model_cls=NonProspectivePAL, sizes=(5, 10, 5), t_end=2000.0, seeds=(0, 1), cache=False)
    assert r.passed is False
    assert r.verdict.measured["final_angle_B1"] > 45


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
    d = model.vector_field(0.0, y, Data(x))
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
    """With B = W^T the dendritic errors give exactly -β dL/dW of the noise-free network (no noise; β = data.nudge)."""
    from dynlearn.analysis import relative_error

    model = PAL(sigma=0.0, eta_fw=1.0, basal_gain=1.0, apical_gain=1.0)
    net = init_network((3, 5, 4, 2), key=jax.random.key(3), activation="logistic", dtype=jnp.float64)
    x, target = jnp.array([0.2, -0.1, 0.5]), jnp.array([0.3, -0.7])
    y = pal_state(model, net, tuple(w.T for w in net.weights[1:]), x)
    grad = jax.grad(lambda n: 0.5 * jnp.sum((model.predict(n, x) - target) ** 2))(net)
    for nudge in (1.0, 0.25):
        d = model.vector_field(0.0, y, Data(x, target, nudge))
        assert float(relative_error(d.network.weights, jax.tree.map(lambda g: -nudge * g, grad.weights))) < 1e-12
    d0 = model.vector_field(0.0, y, Data(x, target, 0.0))  # β = 0: no teacher signal, no forward learning
    assert all(float(jnp.abs(w).max()) == 0.0 for w in d0.network.weights)


def test_init_state_follows_the_protocol():
    """init_state(data) settles the model's initial weights at data.x, as pal_state does; without weights it says how."""
    net = init_network((3, 4, 2), key=jax.random.key(0), activation="logistic", dtype=jnp.float64)
    fb = (jnp.ones((4, 2)),)
    x0 = jnp.array([0.3, -0.2, 0.1])
    model = PAL(network=net, feedback=fb)
    s = model.init_state(Data(x0))
    ref = pal_state(PAL(), net, fb, x0)
    assert all(bool(jnp.all(a == b)) for a, b in zip(jax.tree.leaves(s), jax.tree.leaves(ref)))
    # settled: the potentials sit at their drive (du/dt = 0 with no noise)
    assert max(float(jnp.abs(du).max()) for du in model.vector_field(0.0, s, Data(x0)).u) < 1e-12
    with pytest.raises(ConfigError, match="pal_state"):
        PAL().init_state(Data(x0))
    # a model carrying initial weights simulates like one without them (the weights are not batched or carried)
    a, _ = simulate_pal(model, s, jnp.zeros((3, 3)), key=jax.random.key(0), dt=0.02, t_pres=0.1)
    b, _ = simulate_pal(PAL(), s, jnp.zeros((3, 3)), key=jax.random.key(0), dt=0.02, t_pres=0.1)
    assert all(bool(jnp.all(p == q)) for p, q in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


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
        PALState(y.network, (y.feedback[0], y.feedback[1].T), y.u, y.xi, y.rbar, y.rlag)
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


def _fa_update_by_hand(net, feedback, x, y):
    """The FA update through the current B written out: δ_L = x̂_L − y, δ_l = φ'(a_l) ⊙ B_l δ_(l+1), g_W = δ hᵀ."""
    a = [x @ net.weights[0].T + net.biases[0]]
    for w, b in zip(net.weights[1:], net.biases[1:]):
        a.append(jnp.tanh(a[-1]) @ w.T + b)
    deltas = [a[-1] - y]
    for l in range(len(a) - 2, -1, -1):
        deltas.append((1 - jnp.tanh(a[l]) ** 2) * (deltas[-1] @ feedback[l].T))
    deltas = deltas[::-1]
    hs = [x] + [jnp.tanh(v) for v in a[:-1]]
    return [d.T @ h for d, h in zip(deltas, hs)], [d.sum(0) for d in deltas]


def test_pal_learner_update_against_explicit_formulas():
    """Without noise every layer's update has a closed form: W by FA through the current B, B decays by Euler steps."""
    sigma, alpha, t_noise, dt = 0.0, 0.05, 1.0, 0.02
    learner = get_learner("pal", sigma=sigma, alpha=alpha, t_noise=t_noise, dt=dt)
    x = jax.random.uniform(jax.random.key(0), (8, 6), jnp.float64)
    y = jax.nn.one_hot(jnp.arange(8) % 3, 3, dtype=jnp.float64)
    params = init_pal_params((6, 10, 8, 3), key=jax.random.key(1), dtype=jnp.float64)
    grads, _, metrics = eqx.filter_jit(learner.rule.update)(params, (), Data(x, y), jax.random.key(2))
    gw, gb = _fa_update_by_hand(params.network, params.feedback, x, y)
    for l in range(3):  # descent sign, every layer
        np.testing.assert_allclose(grads.network.weights[l], gw[l], rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(grads.network.biases[l], gb[l], rtol=1e-10, atol=1e-13)
    out = params.network(x)
    np.testing.assert_allclose(metrics["loss"], 0.5 * jnp.sum((out - y) ** 2) / 8, rtol=1e-12)
    # xi = 0 stays 0: dB = -alpha B, so after n Euler steps B = (1 - alpha dt)^n B_0 and g_B = -(B_n - B_0)/t_noise
    n = round(t_noise / dt)
    for g, b in zip(grads.feedback, params.feedback):
        np.testing.assert_allclose(g, b * (1 - (1 - alpha * dt) ** n) / t_noise, rtol=1e-9)
    assert not np.allclose(gw[1], jax.grad(lambda net: 0.5 * jnp.sum((net(x) - y) ** 2))(params.network).weights[1])  # not BP


def test_pal_learner_noise_comes_from_the_key():
    learner = get_learner("pal")
    x = jax.random.uniform(jax.random.key(0), (8, 6))
    y = jax.nn.one_hot(jnp.arange(8) % 3, 3)
    params = learner.init(jax.random.key(1), init_network((6, 10, 8, 3), key=jax.random.key(4)))
    update = eqx.filter_jit(learner.rule.update)
    g1, _, m1 = update(params, (), Data(x, y), jax.random.key(5))
    g2, _, _ = update(params, (), Data(x, y), jax.random.key(5))
    g3, _, _ = update(params, (), Data(x, y), jax.random.key(6))
    assert np.isfinite(float(m1["loss"]))
    assert all(bool(jnp.all(a == b)) for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)))
    assert all(float(jnp.abs(a - b).max()) > 0 for a, b in zip(g1.feedback, g3.feedback))  # B learns from the key's noise
    assert all(bool(jnp.all(a == b)) for a, b in zip(g1.network.weights, g3.network.weights))  # W does not use noise
    assert all(g.dtype == p.dtype for g, p in zip(jax.tree.leaves(g1), jax.tree.leaves(params)))


def test_pal_learner_init_draws():
    """B_k ~ sqrt(2/(n_in + n_out)) N(0, 1) from split(k_fb, n), k_net, k_fb, _ = split(key, 3) (the FA family's draws)."""
    sizes, key = (6, 10, 8, 3), jax.random.key(7)
    p = init_pal_params(sizes, key=key)
    k_net, k_fb, _ = jax.random.split(key, 3)
    ks = jax.random.split(k_fb, 2)
    for k, (n_in, n_out), b in zip(ks, ((10, 8), (8, 3)), p.feedback):
        np.testing.assert_array_equal(b, jnp.sqrt(2.0 / (n_in + n_out)) * jax.random.normal(k, (n_in, n_out), jnp.float32))
    ref = init_network(sizes, key=k_net, activation="tanh")
    assert all(bool(jnp.all(a == b)) for a, b in zip(p.network.weights, ref.weights))
    learner = get_learner("pal")
    q = learner.init(key, ref)
    assert all(bool(jnp.all(a == b)) for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(q)))
    assert [name for name, _, _ in p.backward_pairs()] == ["B1", "B2"]
    with pytest.raises(ShapeError, match="backward matrices"):
        PALParams(p.network, (p.feedback[0].T, p.feedback[1]))


def test_pal_learner_trains_one_step():
    from dynlearn.learning import make_step

    learner = get_learner("pal")
    params = learner.init(jax.random.key(1), init_network((6, 10, 3), key=jax.random.key(4)))
    opt = optax.sgd(0.1)
    step = make_step(learner, opt)
    x = jax.random.uniform(jax.random.key(0), (8, 6))
    y = jax.nn.one_hot(jnp.arange(8) % 3, 3)
    new, _, _, metrics = step(params, (), opt.init(eqx.filter(params, eqx.is_inexact_array)), x, y, jax.random.key(3))
    assert np.isfinite(float(metrics["loss"]))
    assert float(jnp.abs(new.network.weights[0] - params.network.weights[0]).max()) > 0


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
