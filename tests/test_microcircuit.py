"""Dendritic cortical microcircuits (Sacramento et al. 2018): model, SPS, plasticity, theorem checks, errors."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynlearn.analysis import cosine_similarity
from dynlearn.errors import ShapeError, UnknownNameError
from dynlearn.models import Data
from dynlearn.models.microcircuit import (
    Microcircuit,
    MicrocircuitParams,
    PatternStream,
    Plasticity,
    preset,
    simulate_learning,
)
from dynlearn.rules import get_learner
from dynlearn.theorems import run_check
from dynlearn.theorems.microcircuit import circuit_equilibrium, free_data

SIZES = (4, 6, 5, 3)


# ----------------------------------------------------------------------------- broken variants (must-fail evidence)


def wrong_sps(model):
    """SPS with the output-layer factor g_B(g_lk+g_D)/(g_D(g_lk+g_B)) everywhere (g_A forgotten for hidden layers above)."""
    p = model.params
    factor = p.g_B * (p.g_lk + p.g_D) / (p.g_D * p.g_out_free)
    n = model.depth
    return eqx.tree_at(
        lambda m: (m.w_pi, m.w_ip, m.b_ip),
        model,
        (tuple(-b for b in model.top_down), tuple(factor * model.weights[k] for k in range(1, n)), tuple(factor * model.biases[k] for k in range(1, n))),
    )


def flip_apical(model):
    """Apical potential with the wrong sign (B -> -B, W_PI -> -W_PI): the hidden layers move against the error."""
    return eqx.tree_at(lambda m: (m.top_down, m.w_pi), model, (tuple(-b for b in model.top_down), tuple(-w for w in model.w_pi)))


class DoubledApical(Microcircuit):
    """Apical potential twice too large (the interneuron nudging factor kappa forgotten, roughly)."""

    def dendrites(self, r_p, r_i):
        v_b, v_a, v_i = super().dendrites(r_p, r_i)
        return v_b, [2.0 * a for a in v_a], v_i


def lower_interneurons_off(model):
    """The interneurons of the lower hidden layer predict it with a relative error 1e-3 lambda^2 (one bad layer among
    good): its free apical potential is O(lambda^2) against an error signal of O(lambda), so that layer's direction
    error stops falling with lambda (slope ~0, not 2) while every cosine stays > 0.999; the upper layer keeps slope 1.9."""
    lam = model.params.g_A / model.params.g_B
    return eqx.tree_at(lambda m: m.w_ip, model, ((1 + 1e-3 * lam**2) * model.w_ip[0], *model.w_ip[1:]))


class DoubledFirstApical(Microcircuit):
    """Apical potential twice too large in the first hidden layer only (one bad layer among good)."""

    def dendrites(self, r_p, r_i):
        v_b, v_a, v_i = super().dendrites(r_p, r_i)
        return v_b, [2.0 * v_a[0], *v_a[1:]], v_i


class WrongClosedFormSPS(Microcircuit):
    """The closed-form SPS with W_PI = +B (sign error): its apical potentials are not silenced."""

    def self_predicting(self):
        sps = super().self_predicting()
        return eqx.tree_at(lambda m: m.w_pi, sps, tuple(self.top_down))


class AntiApicalPlasticity(Plasticity):
    """Interneuron-to-pyramid rule with the wrong sign (drives v_A away from 0)."""

    def scale(self, terms):
        out = super().scale(terms)
        return {**out, "w_pi": tuple(-w for w in out["w_pi"])}


# ----------------------------------------------------------------------------- checks (run once per module)


@pytest.fixture(scope="module")
def sps_exact():
    return run_check("mc_sps_exact")


@pytest.fixture(scope="module")
def bp_alignment():
    return run_check("mc_bp_alignment")


@pytest.fixture(scope="module")
def apical_error():
    return run_check("mc_apical_error")


@pytest.fixture(scope="module")
def sps_learned():
    return run_check("mc_sps_learned")


def test_sps_exact_passes(sps_exact):
    assert sps_exact.passed, sps_exact.verdict.summary()
    assert set(sps_exact.data.preset.values) == {"bern", "sacramento2018"}
    assert float(sps_exact.data.max_abs_apical.max()) < 1e-8
    # it relaxed from random potentials: the apical potentials were not zero on the way
    assert float(sps_exact.data.apical_during_relaxation.max()) > 1e-3


def test_sps_exact_fails_with_wrong_initialiser():
    r = run_check("mc_sps_exact", initialiser=wrong_sps, cache=False)
    assert r.passed is False
    assert "max_abs_apical" in r.verdict.failed


def test_bp_alignment_passes(bp_alignment):
    assert bp_alignment.passed, bp_alignment.verdict.summary()
    ds = bp_alignment.data
    # 1 - cos shrinks monotonically as the feedback weakens, in every hidden layer
    d = ds.one_minus_cos_bp.sortby("lam").values
    assert np.all(np.diff(d, axis=0) > 0)
    assert float(ds.cos_fa.sel(lam=ds.lam.min()).min()) > 0.99


def test_bp_alignment_fails_with_flipped_apical():
    r = run_check("mc_bp_alignment", model_transform=flip_apical, cache=False)
    assert r.passed is False
    assert "cos_bp_min_hidden" in r.verdict.failed
    assert r.verdict.measured["cos_bp_min_hidden"] < 0


def test_bp_alignment_slope_takes_the_worst_layer():
    """A direction error that stops falling in one hidden layer: only the (two-sided, worst-layer) slopes fail."""
    r = run_check("mc_bp_alignment", model_transform=lower_interneurons_off, cache=False)
    assert set(r.verdict.failed) == {"slope_direction_error", "slope_one_minus_cos"}, r.verdict.summary()
    assert r.verdict.measured["slope_direction_error"] < 0.5


def test_fa_is_not_bp():
    """With random top-down the microcircuit follows FA, which is measurably different from BP."""
    from dynlearn.analysis import bp_gradient, cosine_similarity
    from dynlearn.theorems.microcircuit import fa_gradient

    m = Microcircuit.create(SIZES, key=jax.random.key(3), params=preset("bern").with_feedback(0.01).as_arrays(), top_down="random")
    x = jax.random.uniform(jax.random.key(4), (6, SIZES[0]), minval=-1, maxval=1)
    y = jax.random.normal(jax.random.key(5), (6, SIZES[-1]))
    net = m.effective_network()
    fa = fa_gradient(net, m.top_down, x, y)
    bp = bp_gradient(net, x, y).weights
    assert float(cosine_similarity(fa[0], bp[0])) < 0.9
    assert float(cosine_similarity(fa[-1], bp[-1])) > 1 - 1e-12  # output layer: both are the delta rule
    # the FA backward pass is delta_k = phi'(x_k) * B_k delta_{k+1}, in descent sign
    xs = net.forward(x)
    delta = xs[-1] - y
    for k in range(net.depth - 1, 0, -1):
        delta = jax.vmap(jax.grad(lambda v: jnp.sum(net.phi(v))))(xs[k]) * (delta @ m.top_down[k - 1].T)
    np.testing.assert_allclose(fa[0], jnp.einsum("bo,bi->oi", delta, x), rtol=1e-10, atol=1e-14)


def test_apical_error_passes(apical_error):
    assert apical_error.passed, apical_error.verdict.summary()
    rel = apical_error.data.apical_rel_err.sortby("lam").values
    assert np.all(np.diff(rel, axis=0) > 0)


def test_apical_error_fails_with_doubled_apical():
    r = run_check("mc_apical_error", model_cls=DoubledApical, cache=False)
    assert r.passed is False
    assert "apical_rel_err" in r.verdict.failed


def test_apical_error_fails_with_one_bad_layer():
    r = run_check("mc_apical_error", model_cls=DoubledFirstApical, cache=False)
    assert "apical_rel_err" in r.verdict.failed, r.verdict.summary()
    assert r.verdict.measured["apical_rel_err"] > 0.5


def test_sps_learned_passes(sps_learned):
    assert sps_learned.passed, sps_learned.verdict.summary()
    assert sps_learned.verdict.measured["sps_reference"] <= 1e-20
    curve = sps_learned.data.mean_apical_sq_test.values
    assert curve[-1] < curve[0] / 10


def test_sps_learned_fails_with_wrong_sign_rule():
    r = run_check("mc_sps_learned", plasticity_cls=AntiApicalPlasticity, n_patterns=100, cache=False)
    assert r.passed is False


def test_sps_learned_compares_its_reference():
    """The closed-form SPS is the reference the learned circuit is measured against: a wrong one fails."""
    r = run_check("mc_sps_learned", model_cls=WrongClosedFormSPS, n_patterns=100, cache=False)
    assert "sps_reference" in r.verdict.failed, r.verdict.summary()
    assert r.verdict.measured["sps_reference"] > 1e-3


# ----------------------------------------------------------------------------- model pieces


@pytest.fixture(scope="module")
def small():
    m = Microcircuit.create(SIZES, key=jax.random.key(0), params=preset("bern").as_arrays())
    x = jax.random.uniform(jax.random.key(1), (8, SIZES[0]), minval=-1, maxval=1)
    y = jax.random.normal(jax.random.key(2), (8, SIZES[-1]))
    return m, x, y


def test_free_sps_steady_state_is_effective_network(small):
    m, x, _ = small
    data = free_data(m, x)
    eq = circuit_equilibrium(m, data, state0=jax.tree.map(jnp.zeros_like, m.init_state(data)))
    ff = m.effective_network().forward(x)[1:]
    for a, b in zip(eq.state[0], ff):
        np.testing.assert_allclose(a, b, atol=1e-10)
    # interneurons reproduce the layer above
    for ui, up in zip(eq.state[1], eq.state[0][1:]):
        np.testing.assert_allclose(ui, up, atol=1e-10)
    # no plasticity in the free SPS: every dendritic prediction is exact
    terms = m.plasticity(0.0, eq.state, Data(x))
    assert max(float(jnp.max(jnp.abs(w))) for w in jax.tree.leaves((terms.weights, terms.w_ip, terms.w_pi))) < 1e-9


def test_two_step_matches_ode(small):
    """Fast two-step approximation (paper §3.4): exact when free; to leading order in lambda when nudged."""
    m, x, y = small
    errs = []
    for lam in (0.2, 0.05):
        mm = eqx.tree_at(lambda q: q.params, m, m.params.with_feedback(jnp.asarray(lam))).self_predicting()
        eq = circuit_equilibrium(mm, Data(x, y, 1.0))
        ts = mm.two_step(Data(x, y, 1.0))
        free = mm.effective_network().forward(x)[1:]
        errs.append(max(float(jnp.linalg.norm(a - b) / jnp.linalg.norm(a - f)) for a, b, f in zip(eq.state[0], ts[0], free)))
    assert errs[1] < errs[0] / 2
    assert errs[1] < 0.02
    free2 = m.two_step(Data(x))
    for a, b in zip(free2[0], m.effective_network().forward(x)[1:]):
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_output_rule_is_delta_rule(small):
    """dW_N = (phi(u_N) - phi(g_B/(g_lk+g_B) v_B)) r^T = lambda_N (u_trgt - u^-_N) r^T exactly (linear output);
    plasticity() returns its negative (descent sign)."""
    m, x, y = small
    eq = circuit_equilibrium(m, Data(x, y, 1.0))
    terms = m.plasticity(0.0, eq.state, Data(x, y, 1.0))
    p = m.params
    r = m.phi(m.depth - 1, eq.state[0][-2])
    vb = r @ m.weights[-1].T + m.biases[-1]
    lam_n = p.g_som / (p.g_out_free + p.g_som)
    expected = jnp.einsum("bo,bi->oi", lam_n * (y - p.attenuation(True) * vb), r)
    np.testing.assert_allclose(-terms.weights[-1], expected, rtol=1e-9, atol=1e-12)


def test_noise_sde_runs_and_is_reproducible(small):
    m, x, _ = small
    noisy = eqx.tree_at(lambda q: q.params.sigma, m, jnp.asarray(0.05))
    stream = Data(None, None, 0.0, PatternStream(x, None, 10.0))
    plast = Plasticity(eta_ip=0.01, eta_pi=0.01)
    kw = dict(t1=20.0, dt=0.5, key=jax.random.key(7))
    a, _ = simulate_learning(noisy, plast, stream, **kw)
    b, _ = simulate_learning(noisy, plast, stream, **kw)
    c, _ = simulate_learning(noisy, plast, stream, **{**kw, "key": jax.random.key(8)})
    np.testing.assert_array_equal(a.w_pi[0], b.w_pi[0])
    assert float(jnp.max(jnp.abs(a.w_pi[0] - c.w_pi[0]))) > 0
    with pytest.raises(ValueError, match="PRNG key"):
        simulate_learning(noisy, plast, stream, t1=20.0, dt=0.5)


def test_prospective_microcircuit_tracks_equilibrium(small):
    """With LE rates the output rate at t = 0+ already equals the steady state for the new input."""
    m, x, y = small
    le = Microcircuit.create(SIZES, key=jax.random.key(0), params=preset("bern").as_arrays(), prospective=True, le_iterations=40)
    state = jax.tree.map(jnp.zeros_like, le.init_state(Data(x)))  # far from equilibrium
    hat = le.prospective_potentials(0.0, state, Data(x))
    ff = le.effective_network().forward(x)[1:]
    for a, b in zip(hat[0], ff):
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_presets_and_bad_parameters():
    assert preset("sacramento2018").g_A == 0.8 and preset("bern").g_B == 0.1
    np.testing.assert_allclose(float(preset("bern").tau_hidden), 1 / 0.19)
    with pytest.raises(UnknownNameError, match="preset"):
        preset("nest")
    with pytest.raises(ValueError, match="g_A"):
        MicrocircuitParams(g_A=-0.1)
    with pytest.raises(ValueError, match="g_lk"):
        preset("bern", g_lk=float("nan"))
    with pytest.raises(ValueError, match="c_m"):
        preset("bern", c_m=0.0)
    with pytest.raises(ValueError, match="sigma"):
        preset("bern", sigma=-1.0)
    with pytest.raises(ValueError, match="tau_w"):
        Plasticity(eta_pi=0.1, tau_w=0.0)
    with pytest.raises(ValueError, match="eta_ip"):
        Plasticity(eta_ip=-1.0)


def test_bad_shapes():
    m = Microcircuit.create(SIZES, key=jax.random.key(0))
    with pytest.raises(ShapeError, match="W_2"):
        dataclasses.replace(m, weights=(m.weights[0], jnp.zeros((5, 7)), m.weights[2]))
    with pytest.raises(ShapeError, match="top-down B_1"):
        dataclasses.replace(m, top_down=(jnp.zeros((6, 4)), m.top_down[1]))
    with pytest.raises(ShapeError, match="W_PI_2"):
        dataclasses.replace(m, w_pi=(m.w_pi[0], jnp.zeros((3, 5))))
    with pytest.raises(ShapeError, match="needs 2 top_down"):
        dataclasses.replace(m, top_down=(m.top_down[0],))
    with pytest.raises(ShapeError, match="sizes"):
        Microcircuit.create((4,), key=jax.random.key(0))
    with pytest.raises(ShapeError, match="features"):
        m.validate(Data(jnp.zeros((2, 5))))
    with pytest.raises(ShapeError, match="targets"):
        m.validate(Data(None, None, 1.0, PatternStream(jnp.zeros((2, 4)), jnp.zeros((2, 4)), 1.0)))
    with pytest.raises(ValueError, match="top_down"):
        Microcircuit.create(SIZES, key=jax.random.key(0), top_down="mirror")


@pytest.mark.slow  # default run under 10 min on 2 cores; runs with -m slow
def test_learner_registered_and_learns():
    from dynlearn.data import teacher_student
    from dynlearn.learning import train

    learner = get_learner("microcircuit", inference="two_step")
    data = teacher_student((6, 5, 3), n_train=128, n_test=64, activation="logistic", seed=0)
    _, hist = train(learner, data, hidden=(8,), epochs=4, batch_size=16, lr=1e-2, progress=False)
    mse = hist.test_mse.values
    assert mse[-1] < 0.7 * mse[0]


def test_unsafe_brownian_noise_has_the_ou_variance():
    """Output layer only (no hidden layer, no target): c_m du = -(g_lk + g_B) u + g_B v_B dt + sigma dW is an OU process.

    With the default per-step Brownian increments, Euler's stationary variance is sigma^2 dt / (1 - (1 - g dt)^2)."""
    sigma, dt, t1 = 0.1, 1.0, 15_000.0
    m = Microcircuit.create((2, 3), key=jax.random.key(0), params=preset("bern", sigma=sigma).as_arrays())
    x = jnp.array([[0.3, -0.2]])
    mean = m.effective_network()(x)
    ts = jnp.arange(1000.0, t1, 5.0)
    _, traj = simulate_learning(m, Plasticity(), Data(x), t1=t1, dt=dt, ts=ts, key=jax.random.key(1), save_fn=lambda t, y, a: y[0][0][-1])
    g = float(m.params.g_out_free)
    expected = sigma**2 * dt / (1 - (1 - g * dt) ** 2)
    u = np.asarray(traj.ys).reshape(len(ts), -1)
    np.testing.assert_allclose(u.mean(0), np.asarray(mean).ravel(), atol=0.03)
    assert np.all(np.abs(u.var(0) / expected - 1) < 0.15), (u.var(0), expected)


def test_transpose_top_down_follows_w_with_fixed_norm(small):
    """Weight transport as a flag: B_k along W_{k+1}^T with the norm of the stored B_k; flag 0 leaves B alone;
    the learning field integrates the neurons of the tied circuit."""
    from dynlearn.models.microcircuit import learning_field, plastic_weights, with_weights

    m, x, y = small
    w = plastic_weights(m)
    w = {**w, "weights": (w["weights"][0], 2.0 * w["weights"][1], w["weights"][2])}  # W_2 changed since B was drawn
    for flag in (True, jnp.asarray(1.0)):
        tied = with_weights(m, w, flag)
        for k in range(2):
            np.testing.assert_allclose(float(jnp.linalg.norm(tied.top_down[k])), float(jnp.linalg.norm(m.top_down[k])), rtol=1e-12)
            assert float(cosine_similarity(tied.top_down[k], w["weights"][k + 1].T)) > 1 - 1e-12
    for a, b in zip(with_weights(m, w, jnp.asarray(0.0)).top_down, m.top_down):
        np.testing.assert_array_equal(a, b)
    data = Data(x, y, 1.0)
    neurons = m.init_state(data)
    dn = learning_field(0.0, (neurons, w, None), (m, Plasticity(eta_fw=0.1, transpose_top_down=jnp.asarray(1.0)), data))[0]
    expected = with_weights(m, w, True).vector_field(0.0, neurons, data)
    for a, b in zip(jax.tree.leaves(dn), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.slow
def test_teacher_student_microcircuit_beats_shallow():
    """Sacramento et al. (2018) §3.2: the microcircuit (all plasticity on, continuous time, LE rates) beats a learner
    of the output weights only, with fixed random top-down (FA) and with top-down along W^T."""
    from dynlearn.experiments.teacher_student import teacher_student_experiment

    ds = teacher_student_experiment(quick=True, n_patterns=4000, seed=0)
    final = ds.test_mse.isel(time=-1)
    assert np.all(np.isfinite(final.values))
    fa, wt, shallow = (final.sel(learner=n).values for n in ("microcircuit_fa", "microcircuit_wt", "shallow"))
    assert np.all(fa < shallow) and np.all(wt < shallow)
    assert fa.mean() < 0.8 * shallow.mean() and wt.mean() < 0.8 * shallow.mean()
    assert fa.mean() < 0.8 * ds.attrs["mse_of_mean_predictor"]


def test_learner_update_is_descent_sign_on_the_trained_fields(small):
    """The learner's rule returns the plasticity terms (descent sign) for the forward (and lateral) weights only."""
    from dynlearn.analysis import bp_gradient
    from dynlearn.models.microcircuit import DendriticPrediction

    m, x, y = small
    nudged = Data(x, y, 1.0)
    terms = m.plasticity(0.0, m.two_step(nudged), nudged)
    for learn_lateral in (False, True):
        grads, state, metrics = DendriticPrediction("two_step", learn_lateral).update(m, (), Data(x, y), jax.random.key(0))
        assert state == () and set(metrics) == {"loss", "apical_sq"}
        for field in ("weights", "biases") + (("w_ip", "b_ip") if learn_lateral else ()):
            for a, b in zip(getattr(grads, field), getattr(terms, field)):
                np.testing.assert_array_equal(a, b)
        for field in ("top_down", "w_pi") + (() if learn_lateral else ("w_ip", "b_ip")):
            assert all(float(jnp.max(jnp.abs(a))) == 0.0 for a in getattr(grads, field))
    # descent sign: the output update points along the loss gradient of the effective network
    ref = bp_gradient(m.effective_network(), x, y).weights[-1]
    assert float(cosine_similarity(grads.weights[-1], ref)) > 0.9
