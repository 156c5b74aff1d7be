"""Equilibrium propagation: theorem checks (and their must-fail twins), estimators, errors, learner."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynlearn import NonFiniteError, NotConvergedError, ShapeError, init_network
from dynlearn.analysis import implicit_gradient, relative_error
from dynlearn.analysis import implicit as implicit_mod
from dynlearn.config import DEFAULT, THEOREM_STRICT
from dynlearn.models import Data
from dynlearn.models.ep import HopfieldEP, ep_gradient, free_phase, nudge_points
from dynlearn.networks import matvec
from dynlearn.rules import get_learner, learner_names
from dynlearn.theorems import checks, run_check
from dynlearn.theorems.ep import EP_POLISHED, NonGradientRNN, ep_problem

EP_CHECKS = [
    "ep_energy_descent",
    "ep_fixed_point",
    "ep_gradient_one_sided",
    "ep_gradient_symmetric",
    "ep_holomorphic",
    "implicit_vs_bptt",
    "ep_gdu",
    "ebm_infinitesimal_inference",
]


# ----------------------------------------------------------------------------- broken components


class NoRhoPrimeEP(HopfieldEP):
    """Classic mistake: ds_l/dt = W_l rho(s_{l-1}) + b_l + W_{l+1}^T rho(s_{l+1}) - s_l, i.e. the rho'(s_l)
    factor of -dE/ds dropped. Not a gradient flow of F any more."""

    def vector_field(self, t, state, data):
        net = self.network
        r = self.rates(state, data.x)
        out = []
        for l in range(1, net.depth + 1):
            drive = matvec(net.weights[l - 1], r[l - 1]) + net.biases[l - 1]
            if l < net.depth:
                drive = drive + matvec(net.weights[l].T, r[l + 1])
            if l == net.depth and data.y is not None:
                drive = drive + data.nudge * (data.y - state[-1])
            out.append(drive - state[l - 1])
        return tuple(out)


class NonHolomorphicEP(HopfieldEP):
    """rho(conj(s)): identical on real states, not holomorphic on complex ones."""

    def rho(self, s):
        return self.network.phi(jnp.conj(s))


def transpose_free_implicit(model, state, data, *, loss, **kw):
    """A wrong implicit gradient: solves A v = dL/ds instead of A^T v = dL/ds."""
    import lineax as lx

    target = model.network

    def field(s, params):
        return implicit_mod._with_params(model, params).vector_field(0.0, s, data)

    dlds = jax.grad(lambda s: loss(s, data))(state)
    op = lx.JacobianLinearOperator(lambda s, args: field(s, target), state)
    v = lx.linear_solve(op, dlds, solver=lx.LU()).value
    _, vjp = jax.vjp(lambda p: field(state, p), target)
    return jax.tree.map(jnp.negative, vjp(v)[0])


# ----------------------------------------------------------------------------- the checks pass


def test_checks_registered():
    names = set(checks())
    assert set(EP_CHECKS) <= names
    for n in EP_CHECKS:
        assert checks()[n].theory.startswith("theory/")


@pytest.fixture(scope="module")
def passed():
    return {name: run_check(name) for name in EP_CHECKS}


@pytest.mark.parametrize("name", EP_CHECKS)
def test_check_passes(passed, name):
    result = passed[name]
    assert result.passed, f"{name}: {result.verdict.summary()}"
    assert result.data.attrs["check"] == name


def test_sweep_coordinates(passed):
    assert "beta" in passed["ep_gradient_one_sided"].data.coords
    assert "N" in passed["ep_holomorphic"].data.coords
    assert "horizon" in passed["implicit_vs_bptt"].data.coords
    assert "t" in passed["ep_gdu"].data.coords
    assert set(passed["ebm_infinitesimal_inference"].data.algorithm.values) == {"PC", "EP", "CHL"}


def test_symmetric_beats_one_sided(passed):
    ds = passed["ep_gradient_symmetric"].data
    assert np.all(ds.rel_error.values < ds.one_sided_rel_error.values)


def test_holomorphic_beats_symmetric_at_same_radius(passed):
    ds = passed["ep_holomorphic"].data
    r = ds.attrs["r_check"]
    assert float(ds.rel_error.sel(radius=r).min()) < 1e-4 * float(ds.symmetric_rel_error.sel(radius=r))


# ----------------------------------------------------------------------------- the checks fail on broken code


def test_energy_descent_fails_without_rho_prime():
    r = run_check("ep_energy_descent", model_cls=NoRhoPrimeEP, seeds=(0,), t1=10.0, n_save=21)
    assert r.passed is False
    assert "identity_error" in r.verdict.failed


def test_fixed_point_fails_without_rho_prime():
    r = run_check("ep_fixed_point", model_cls=NoRhoPrimeEP, seeds=(0,))
    assert r.passed is False
    assert {"energy_gradient", "jacobian_asymmetry"} <= set(r.verdict.failed)


def test_estimator_checks_fail_without_rho_prime():
    r1 = run_check("ep_gradient_one_sided", model_cls=NoRhoPrimeEP)
    r2 = run_check("ep_gradient_symmetric", model_cls=NoRhoPrimeEP)
    assert r1.passed is False and "slope" in r1.verdict.failed
    assert r2.passed is False and "slope" in r2.verdict.failed


def test_holomorphic_fails_for_non_holomorphic_rho():
    r = run_check("ep_holomorphic", model_cls=NonHolomorphicEP, radii=(0.05,), n_max=8, symmetric_reference=False)
    assert r.passed is False
    assert "min_error" in r.verdict.failed


def test_implicit_vs_bptt_fails_without_transpose():
    r = run_check("implicit_vs_bptt", gradient_fn=transpose_free_implicit)
    assert r.passed is False
    assert r.data.bptt_rel_error.sel(model="feedback_net").values[-1] > 1e-3


@pytest.mark.slow
def test_implicit_vs_bptt_fails_when_truncated():
    r = run_check("implicit_vs_bptt", horizons=(2.0, 5.0))
    assert r.passed is False and "bptt_rel_error_longest" in r.verdict.failed


def test_gdu_fails_for_non_gradient_map():
    r = run_check("ep_gdu", model_cls=NonGradientRNN)
    assert r.passed is False
    assert min(r.data.weight.values) > 0.1  # stays O(1) as beta -> 0


def test_unified_limit_fails_for_broken_ep():
    r = run_check("ebm_infinitesimal_inference", ep_model_cls=NoRhoPrimeEP)
    assert r.passed is False
    assert "slope_EP" in r.verdict.failed and "slope_PC" not in r.verdict.failed


# ----------------------------------------------------------------------------- estimators and errors


@pytest.fixture(scope="module")
def problem():
    model, x, y = ep_problem()
    free = free_phase(model, Data(x, y), EP_POLISHED)
    return model, x, y, free


def test_estimators_agree_with_implicit_gradient(problem):
    """ep_gradient is a loss gradient (descent sign): each estimator is close to the implicit dJ/dθ."""
    model, x, y, free = problem
    data = Data(x, y)
    g = implicit_gradient(model, free.state, data, loss=model.cost)
    # the nudged phases relaxed to 1e-11 without a Newton polish (cheaper to compile; the errors are the estimators' own)
    opts = dict(free_state=free.state, config=THEOREM_STRICT)
    e1 = relative_error(ep_gradient(model, data, estimator="one_sided", nudge=1e-3, **opts)[0], g)
    e2 = relative_error(ep_gradient(model, data, estimator="symmetric", nudge=3e-3, **opts)[0], g)
    e3 = relative_error(ep_gradient(model, Data(x, y, 0.05), estimator="holomorphic", n_points=12, **opts)[0], g)  # nudge from data
    assert e1 < 3e-3 and e2 < 1e-4 and e3 < 1e-7


def test_zero_nudge_and_bad_estimators_raise():
    with pytest.raises(ValueError, match="nonzero"):
        nudge_points("one_sided", 0.0)
    with pytest.raises(ValueError, match="nonzero"):
        nudge_points("symmetric", float("nan"))
    with pytest.raises(ValueError, match="unknown EP estimator"):
        nudge_points("two_sided", 0.1)
    with pytest.raises(ValueError, match="n_points"):
        nudge_points("holomorphic", 0.1, 1)
    with pytest.raises(ValueError, match="unknown EP estimator"):
        get_learner("ep", estimator="centred")
    with pytest.raises(ValueError, match="holomorphic activation"):
        get_learner("ep", estimator="holomorphic", activation="hard_sigmoid")
    with pytest.raises(ValueError, match="bounded"):
        HopfieldEP(init_network((2, 3, 1), key=jax.random.key(0), activation="relu"))


def test_bad_inputs_raise(problem):
    model, x, y, free = problem
    with pytest.raises(ShapeError):
        ep_gradient(model, Data(x[:, :3], y), nudge=0.1)
    with pytest.raises(NonFiniteError):
        ep_gradient(model, Data(x.at[0, 0].set(jnp.nan), y), nudge=0.1)
    with pytest.raises(ValueError, match="nonzero"):
        ep_gradient(model, Data(x, y))  # no nudge given, and data.nudge = 0


def test_unconverged_phase_raises(problem):
    model, x, y, _ = problem
    with pytest.raises(NotConvergedError):
        ep_gradient(model, Data(x, y), estimator="one_sided", nudge=0.1, config=DEFAULT.replace(t1=0.5))
    with pytest.raises(NotConvergedError, match="not an equilibrium"):
        implicit_gradient(model, model.init_state(Data(x)), Data(x, y), loss=model.cost)


def test_non_contracting_network_raises():
    """Zero input and biases, large weights: s = 0 is an equilibrium of the flow but a saddle of F."""
    net = init_network((3, 6, 2), key=jax.random.key(0), activation="tanh", gain=6.0, dtype=jnp.float64)
    model = HopfieldEP(net)
    x, y = jnp.zeros((1, 3)), jnp.ones((1, 2))
    free = free_phase(model, Data(x, y))
    assert float(free.residual) == 0.0
    with pytest.raises(NotConvergedError, match="not contracting"):
        ep_gradient(model, Data(x, y), estimator="symmetric", nudge=0.1, check_stability=True)
    with pytest.raises(NotConvergedError, match="not linearly stable"):
        implicit_gradient(model, free.state, Data(x, y, 0.0), loss=model.cost)


def test_learners_registered():
    assert {"ep", "ep/one_sided", "ep/symmetric", "ep/holomorphic"} <= set(learner_names())
    learner = get_learner("ep/holomorphic")
    assert learner.rule.estimator == "holomorphic" and learner.rule.nudge == 0.05


def test_learner_update_is_a_descent_direction():
    from dynlearn.learning import make_optimizer, make_step

    learner = get_learner("ep", estimator="symmetric", nudge=0.2)
    assert learner.name == "ep/symmetric"
    key = jax.random.key(0)
    params = learner.init(key, init_network((4, 8, 3), key=key, activation="tanh"))
    rule_state = learner.rule.init(key, params)
    x = jax.random.uniform(jax.random.key(1), (8, 4))
    y = jax.nn.one_hot(jnp.arange(8) % 3, 3)
    opt = make_optimizer("sgd", 0.05)
    step = make_step(learner, opt)
    opt_state = opt.init(eqx.filter(params, eqx.is_inexact_array))
    losses = []
    for i in range(5):
        params, rule_state, opt_state, metrics = step(params, rule_state, opt_state, x, y, jax.random.fold_in(key, i))
        losses.append(float(metrics["loss"]))
    assert losses[-1] < losses[0]


# ----------------------------------------------------------------------------- digits (slow)


@pytest.mark.slow
def test_digits_symmetric_ep_close_to_bp():
    from dynlearn.data import load_digits
    from dynlearn.learning import train

    data = load_digits()
    _, hist_bp = train(get_learner("bp"), data, hidden=(32,), epochs=30, batch_size=32, lr=3e-3, progress=False)
    _, hist_ep = train(get_learner("ep/symmetric"), data, hidden=(32,), epochs=30, batch_size=32, lr=3e-3, progress=False)
    acc_bp = float(hist_bp.test_accuracy[-1])
    acc_ep = float(hist_ep.test_accuracy[-1])
    assert acc_ep >= acc_bp - 0.02, (acc_ep, acc_bp)


@pytest.mark.parametrize("estimator", ["one_sided", "symmetric", "holomorphic"])
def test_nudge_points_made_outside_x64_keep_64_bits_inside(estimator):
    """Points made while float64 is off are not frozen at 32 bits: inside ``jax.enable_x64`` they are exact to 1e-15
    (the holomorphic estimator's error floor is set by them: complex64 phases capped it at 1e-6)."""
    betas, weights, _ = nudge_points(estimator, 0.1, 8)
    with jax.enable_x64(True):
        b, w = jnp.asarray(betas), jnp.asarray(weights)
        assert b.dtype in (jnp.float64, jnp.complex128) and w.dtype == b.dtype
        if estimator == "holomorphic":
            phase = np.exp(2j * np.pi * np.arange(8) / 8)
            np.testing.assert_allclose(np.asarray(b), 0.1 * phase, rtol=0, atol=1e-16)
            np.testing.assert_allclose(np.asarray(jnp.sum(w * b)), 1.0, rtol=0, atol=1e-15)  # the Fourier weights


def test_the_field_at_a_complex_state_with_a_real_nudge_is_the_holomorphic_continuation(problem):
    """A complex state makes the field complex even when the nudge is real: its complex step in direction v,
    Im f(s + i h v) / h, is the real field's Jacobian-vector product J v (jax.jvp), to O(h²)."""
    model, x, y, free = problem
    data = Data(x, y, 0.1)
    s = free.state
    v = tuple(jnp.cos(jnp.arange(a.size, dtype=a.dtype).reshape(a.shape)) for a in s)
    h = 1e-8
    field = lambda st: model.vector_field(0.0, st, data)  # noqa: E731
    stepped = field(tuple(a + 1j * h * b for a, b in zip(s, v)))
    real, jv = jax.jvp(field, (s,), (v,))
    for c, r, d in zip(stepped, real, jv, strict=True):
        np.testing.assert_allclose(c.real, r, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(c.imag / h, d, rtol=1e-6, atol=1e-10)
