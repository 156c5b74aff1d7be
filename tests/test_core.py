"""The generic core: networks, relax/polish/simulate, analysis, results, data, registries, training."""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import dynlearn as dl
from dynlearn import DivergedError, NonFiniteError, NotConvergedError, ShapeError, UnknownNameError
from dynlearn.analysis import bp_deltas, bp_gradient, cosine_similarity, loglog_slope, relative_error
from dynlearn.data import batches, load_digits, teacher_student
from dynlearn.learning import make_optimizer, train
from dynlearn.rules import get_learner, learner_names
from dynlearn.results import load_dataset, save_dataset, trajectory_dataset
from dynlearn.theorems import get_check

# ----------------------------------------------------------------------------- networks


def test_network_shapes_and_forward():
    net = dl.init_network((3, 5, 2), key=jax.random.key(0), activation="tanh", dtype=jnp.float64)
    assert net.sizes == (3, 5, 2) and net.depth == 2
    x = jnp.ones((7, 3))
    xs = net.forward(x)
    assert [a.shape for a in xs] == [(7, 3), (7, 5), (7, 2)]
    expected = net.weights[1] @ jnp.tanh(net.weights[0] @ x[0] + net.biases[0]) + net.biases[1]
    np.testing.assert_allclose(xs[-1][0], expected, rtol=1e-12)
    assert net(x[0]).shape == (2,)


def test_network_rejects_mismatched_layers():
    w1, w2 = jnp.ones((4, 3)), jnp.ones((2, 5))
    with pytest.raises(ShapeError, match="layer 2: W takes 5 inputs but layer 1 has 4 units"):
        dl.Network.from_matrices((w1, w2), (jnp.zeros(4), jnp.zeros(2)))
    lin = lambda i, o: eqx.nn.Linear(i, o, key=jax.random.key(0))  # noqa: E731
    with pytest.raises(ShapeError, match="layer 2 \\(Linear\\) cannot take an input of shape \\(4,\\)"):
        dl.Network((lin(3, 4), lin(5, 2)))
    with pytest.raises(UnknownNameError, match="unknown activation"):
        dl.init_network((2, 2), key=jax.random.key(0), activation="swishy")
    for bad in ((4.5, 2), (3, True), 5):
        with pytest.raises(ShapeError, match="sizes must be a sequence of positive integers"):
            dl.init_network(bad, key=jax.random.key(0))


def test_validate_inputs_catches_nan_and_shape():
    net = dl.init_network((3, 2), key=jax.random.key(0))
    with pytest.raises(ShapeError, match="inputs have 4 features"):
        net.validate_inputs(jnp.ones((2, 4)))
    with pytest.raises(NonFiniteError, match="inputs contain NaN"):
        net.validate_inputs(jnp.array([[1.0, jnp.nan, 0.0]]))


def test_network_of_equinox_layers_with_callable_activation():
    """Conv + pooling + dense layers and a callable activation; the pass equals the layers applied by hand."""
    k1, k2 = jax.random.split(jax.random.key(0))
    conv = eqx.nn.Conv2d(1, 2, 3, padding=1, key=k1, dtype=jnp.float64)
    head = eqx.nn.Sequential([eqx.nn.MaxPool2d(2, 2), eqx.nn.Lambda(jnp.ravel), eqx.nn.Linear(2 * 3 * 3, 4, key=k2, dtype=jnp.float64)])
    net = dl.Network((conv, head), jax.nn.relu, in_shape=(1, 6, 6))
    assert net.shapes == ((1, 6, 6), (2, 6, 6), (4,)) and net.sizes == (36, 72, 4) and net.activation_name == "relu"
    x = jax.random.normal(jax.random.key(1), (3, 1, 6, 6))
    by_hand = jnp.stack([head(jax.nn.relu(conv(xi))) for xi in x])
    np.testing.assert_allclose(net(x), by_hand, rtol=1e-12)
    with pytest.raises(ShapeError, match="samples of shape \\(1, 6, 6\\)"):
        net.validate_inputs(jnp.ones((2, 1, 5, 5)))
    with pytest.raises(ShapeError, match="Linear layers only"):
        _ = net.weights


def test_lenet5_shapes():
    net = dl.lenet5(key=jax.random.key(0), dtype=jnp.float64)
    assert net.shapes[1:] == ((6, 28, 28), (16, 10, 10), (120,), (84,), (10,))
    assert net(jnp.zeros((2, 1, 28, 28))).shape == (2, 10)


# ----------------------------------------------------------------------------- relax / polish / simulate


def test_relax_config_validates_and_accepts_any_controller(linear_problem):
    for bad in (dict(tol=-1.0), dict(t1=0.0), dict(dt0=0.0), dict(max_steps=0), dict(t1=float("nan"))):
        with pytest.raises(dl.ConfigError, match=f"RelaxConfig.{next(iter(bad))}"):
            dl.RelaxConfig(**bad)
    with pytest.raises(dl.ConfigError, match="no field"):
        dl.THEOREM.replace(tolerance=1.0)
    import diffrax

    cfg = dl.RelaxConfig(solver=diffrax.Tsit5(), controller=diffrax.PIDController(rtol=1e-9, atol=1e-11), tol=1e-8)
    eq = dl.relax(linear_field, jnp.zeros(2), linear_problem, cfg)
    assert float(eq.residual) <= 1e-8


def test_fixed_budget_integrates_to_t1(linear_problem):
    """steady=False: exactly t1/dt0 Euler steps, no steady-state test, status converged at t1."""
    cfg = dl.RelaxConfig(solver="euler", dt0=0.1, t1=2.0, steady=False)
    eq = dl.relax(linear_field, jnp.zeros(2), linear_problem, cfg)
    assert int(eq.num_steps) == 20 and float(eq.time) == pytest.approx(2.0) and int(eq.status) == 0
    y, a, c = jnp.zeros(2), *linear_problem
    for _ in range(20):
        y = y + 0.1 * (-a @ (y - c))
    np.testing.assert_allclose(eq.state, y, rtol=1e-12)


def test_complex_state_relaxes_as_real_pair():
    """A holomorphic linear flow dz/dt = -(z - c) with complex c: the split real system reaches c."""
    c = jnp.array([1.0 + 2.0j, -0.5j])
    eq = dl.relax(lambda t, z, c: -(z - c), jnp.zeros(2, jnp.complex128), c, tol=1e-10, rtol=1e-10, atol=1e-12)
    assert jnp.iscomplexobj(eq.state)
    np.testing.assert_allclose(eq.state, c, atol=1e-9)


def test_equilibrium_takes_data_and_validates():
    class Quadratic(dl.EnergyModel):
        network: dl.Network

        def init_state(self, data):
            return jnp.zeros(data.x.shape[:-1] + (self.network.sizes[-1],))

        def energy(self, state, data):
            return 0.5 * jnp.sum((state - self.network(data.x)) ** 2) + data.nudge * 0.5 * jnp.sum((state - data.y) ** 2)

    net = dl.init_network((3, 2), key=jax.random.key(0), dtype=jnp.float64)
    model = Quadratic(net)
    x, y = jnp.ones((4, 3)), jnp.zeros((4, 2))
    eq = dl.equilibrium(model, dl.Data(x, y, 1.0), dl.THEOREM)
    np.testing.assert_allclose(eq.state, net(x) / 2, atol=1e-8)  # minimiser of ½|s-f|² + ½|s-y|²
    with pytest.raises(ShapeError, match="inputs have 5 features"):
        dl.equilibrium(model, dl.Data(jnp.ones((4, 5)), y, 1.0))
    with pytest.raises(NonFiniteError):
        dl.equilibrium(model, dl.Data(x.at[0, 0].set(jnp.nan), y, 1.0))
    with pytest.raises(TypeError, match="takes a dynlearn.models.Data"):
        dl.equilibrium(model, x)


def linear_field(t, y, args):
    a, c = args
    return -a @ (y - c)


@pytest.fixture(scope="module")
def linear_problem():
    a = jnp.array([[2.0, 0.5], [0.0, 1.0]])
    c = jnp.array([1.0, -2.0])
    return a, c


def test_relax_reaches_steady_state(linear_problem):
    eq = dl.relax(linear_field, jnp.zeros(2), linear_problem, tol=1e-10, rtol=1e-10, atol=1e-12)
    assert int(eq.status) == 0 and float(eq.residual) <= 1e-10
    np.testing.assert_allclose(eq.state, linear_problem[1], atol=1e-9)
    # stopped by the steady-state event, long before t1
    assert float(eq.time) < 100


def test_relax_euler_fixed_step(linear_problem):
    eq = dl.relax(linear_field, jnp.zeros(2), linear_problem, solver="euler", dt0=0.05, tol=1e-8)
    np.testing.assert_allclose(eq.state, linear_problem[1], atol=1e-7)


def test_relax_saves_trajectory_as_xarray(linear_problem):
    ts = jnp.linspace(0, 5, 11)
    eq = dl.relax(linear_field, jnp.zeros(2), linear_problem, tol=1e-10, rtol=1e-10, atol=1e-12, save_ts=ts)
    ds = trajectory_dataset(eq.ts, [eq.ys], names=["y"])
    assert ds.y.dims == ("time", "sample", "unit_y") and ds.sizes["time"] == 11
    exact = linear_problem[1] - jax.scipy.linalg.expm(-5 * linear_problem[0]) @ linear_problem[1]
    np.testing.assert_allclose(ds.y.isel(time=-1, sample=0).values, exact, atol=1e-8)


def test_relax_not_converged_error(linear_problem):
    with pytest.raises(NotConvergedError, match=r"slowpoke: relaxation did not reach a steady state by t1: t = 0\.5"):
        dl.relax(linear_field, jnp.zeros(2), linear_problem, t1=0.5, tol=1e-10, name="slowpoke")
    with pytest.raises(NotConvergedError, match="max_steps"):
        dl.relax(linear_field, jnp.zeros(2), linear_problem, solver="euler", dt0=1e-3, max_steps=10, tol=1e-10)


def test_relax_divergence_error():
    with pytest.raises(DivergedError, match="blowup: relaxation diverged"):
        dl.relax(lambda t, y, a: y, jnp.ones(2), None, name="blowup", bound=1e3)


def test_relax_under_jit_raises_runtime_error(linear_problem):
    @jax.jit
    def f(c):
        return dl.relax(linear_field, jnp.zeros(2), (linear_problem[0], c), t1=0.1, tol=1e-12).state

    with pytest.raises(Exception, match="did not reach a steady state"):
        jax.block_until_ready(f(linear_problem[1]))


def test_relax_throw_false_reports_status(linear_problem):
    eq = dl.relax(linear_field, jnp.zeros(2), linear_problem, t1=0.5, tol=1e-10, throw=False)
    assert int(eq.status) == dl.dynamics.NOT_STEADY and not bool(eq.converged)


def test_polish_to_machine_precision():
    field = lambda t, y, args: -(y**3) - y + args  # noqa: E731
    eq = dl.relax(field, jnp.zeros(3), jnp.array([1.0, 2.0, -0.5]), tol=1e-5)
    pol = dl.polish(field, eq, jnp.array([1.0, 2.0, -0.5]))
    assert float(pol.residual) <= 1e-12 < float(eq.residual)


def test_simulate_ode_matches_exponential():
    traj = dl.simulate(lambda t, y, a: -y, jnp.ones(2), t1=1.0, dt0=1e-3, ts=jnp.linspace(0, 1, 5), solver="heun")
    np.testing.assert_allclose(traj.ys[:, 0], np.exp(-np.linspace(0, 1, 5)), rtol=1e-6)


def test_simulate_sde_is_reproducible_and_has_ou_variance():
    """OU process dx = -x dt + sqrt(2) dW has stationary variance 1; the same key gives the same path."""
    field = lambda t, y, a: -y  # noqa: E731
    diffusion = lambda t, y, a: jnp.full_like(y, jnp.sqrt(2.0))  # noqa: E731
    opts = dict(t1=200.0, dt0=0.05, ts=jnp.linspace(20, 200, 400), diffusion=diffusion, solver="euler")
    a = dl.simulate(field, jnp.zeros(64), key=jax.random.key(1), **opts)
    b = dl.simulate(field, jnp.zeros(64), key=jax.random.key(1), **opts)
    np.testing.assert_array_equal(a.ys, b.ys)
    var = float(jnp.var(a.ys))
    # Euler-Maruyama's stationary variance is 1/(1 - dt/2) ≈ 1.026; sampling error ≈ 2%
    assert 0.93 < var < 1.12


def test_simulate_requires_key_for_sde():
    with pytest.raises(ValueError, match="PRNG key"):
        dl.simulate(lambda t, y, a: -y, jnp.ones(2), t1=1.0, dt0=0.1, diffusion=lambda t, y, a: y)


def test_simulate_divergence_is_an_error():
    with pytest.raises(DivergedError, match="spiral"):
        dl.simulate(lambda t, y, a: y**2, jnp.ones(1), t1=5.0, dt0=0.01, name="spiral")


# ----------------------------------------------------------------------------- analysis


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-10, 10), min_size=3, max_size=8), st.floats(0.1, 10))
def test_cosine_is_scale_invariant_and_bounded(v, s):
    a = jnp.asarray(v)
    if float(jnp.linalg.norm(a)) < 1e-3:
        return
    assert abs(float(cosine_similarity(a, s * a)) - 1) < 1e-9
    b = jnp.roll(a, 1)
    assert -1 - 1e-9 <= float(cosine_similarity(a, b)) <= 1 + 1e-9


@settings(max_examples=20, deadline=None)
@given(st.floats(0.3, 3.0), st.floats(0.01, 100.0))
def test_loglog_slope_recovers_power(p, c):
    x = np.logspace(-3, 0, 9)
    assert abs(loglog_slope(x, c * x**p) - p) < 1e-9


def test_relative_error_and_bp_gradient_against_finite_differences():
    net = dl.init_network((3, 4, 2), key=jax.random.key(2), dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(3), (5, 3))
    y = jax.random.normal(jax.random.key(4), (5, 2))
    g = bp_gradient(net, x, y)
    h = 1e-6
    bumped = net.with_matrices((net.weights[0].at[1, 2].add(h), *net.weights[1:]), net.biases)
    loss = lambda n: 0.5 * jnp.sum((n(x) - y) ** 2)  # noqa: E731
    fd = (loss(bumped) - loss(net)) / h
    assert abs(float(g.weights[0][1, 2]) - float(fd)) < 1e-4
    assert float(relative_error(g, g)) == 0.0
    deltas = bp_deltas(net, x, y)
    np.testing.assert_allclose(deltas[-1], net(x) - y, rtol=1e-12)
    np.testing.assert_allclose(g.weights[-1], deltas[-1].T @ jnp.tanh(net.forward(x)[1]), rtol=1e-10)


# ----------------------------------------------------------------------------- results


def test_save_load_roundtrip_with_provenance(tmp_path):
    ds = xr.Dataset({"a": (("beta",), np.arange(3.0))}, coords={"beta": [0.1, 0.2, 0.3]}, attrs={"passed": True})
    path = save_dataset(ds, tmp_path / "r.nc", config={"gamma": 0.1}, seed=7)
    back = load_dataset(path)
    xr.testing.assert_allclose(back.a, ds.a)
    assert back.attrs["seed"] == "7" and json.loads(back.attrs["config"]) == {"gamma": 0.1}
    assert "jax_version" in back.attrs and back.attrs["passed"] == 1


def test_failed_save_leaves_no_file(tmp_path):
    """A writer that fails half-way leaves neither the target nor a temporary file behind."""
    target = tmp_path / "out.nc"

    def broken_writer(tmp):
        with open(tmp, "w") as f:
            f.write("half a file")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        dl.results.atomic_write(target, broken_writer)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- data, registries, training


def test_digits_split_is_fixed():
    d1, d2 = load_digits(), load_digits()
    assert d1.x_train.shape == (1437, 64) and d1.x_test.shape == (360, 64)
    np.testing.assert_array_equal(d1.labels_test, d2.labels_test)
    assert 0.0 <= d1.x_train.min() and d1.x_train.max() <= 1.0


def test_teacher_student_and_batches():
    d = teacher_student((4, 3, 2), n_train=50, n_test=10, seed=1)
    assert d.x_train.shape == (50, 4) and d.y_test.shape == (10, 2) and not d.is_classification
    bs = list(batches(d.x_train, d.y_train, 16, seed=0))
    assert len(bs) == 3 and all(b[0].shape == (16, 4) for b in bs)
    with pytest.raises(ValueError, match="batch_size"):
        next(batches(d.x_train, d.y_train, 0, seed=0))


def test_dataset_rejects_nan():
    d = teacher_student((4, 3, 2), n_train=20, n_test=5)
    x = d.x_train.copy()
    x[0, 0] = np.nan
    with pytest.raises(NonFiniteError):
        dl.data.Dataset("bad", x, d.y_train, d.x_test, d.y_test)


def test_unknown_names_are_clear():
    with pytest.raises(UnknownNameError, match="unknown model/rule 'nope'; known: .*bp"):
        get_learner("nope")
    with pytest.raises(UnknownNameError, match="unknown check"):
        get_check("nope")
    with pytest.raises(UnknownNameError, match="unknown solver"):
        dl.dynamics.get_solver("rk99")
    assert {"bp", "pc"} <= set(learner_names())


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_train_bp_with_checkpoints(digits, tmp_path):
    params, hist = train(get_learner("bp"), digits, hidden=(32,), epochs=3, batch_size=64, lr=3e-3, progress=False, checkpoint_dir=tmp_path)
    assert hist.sizes["epoch"] == 3 and float(hist.test_accuracy[-1]) > 0.7  # chance is 0.1
    (ckpt,) = [p for p in tmp_path.iterdir() if p.name.startswith("ckpt-")]
    assert ckpt.name == "ckpt-00004-000000" and (ckpt / "params.eqx").exists() and (ckpt / "history.nc").exists()
    restored, saved = dl.load_run(tmp_path)  # shapes from config.json, nothing guessed
    np.testing.assert_array_equal(restored.weights[0], params.weights[0])
    assert json.loads(saved.attrs["config"])["sizes"] == [64, 32, 10] and (tmp_path / "config.json").stat().st_mode & 0o777 == 0o644


def test_train_accepts_any_optax_optimizer_and_validates(digits):
    import optax

    _, hist = train(get_learner("bp"), digits, hidden=(16,), epochs=1, optimizer=optax.adamw(3e-3), progress=False)
    assert float(hist.test_accuracy[-1]) > 0.3
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(dl.ConfigError, match="lr must be"):
            make_optimizer("adam", bad)
    with pytest.raises(UnknownNameError, match="unknown optimizer 'adamm'"):
        make_optimizer("adamm", 1e-3)
    for name, value in (("epochs", 0), ("batch_size", 0)):
        with pytest.raises(dl.ConfigError, match=name):
            train(get_learner("bp"), digits, hidden=(16,), progress=False, **{name: value})


def test_train_is_reproducible_from_the_seed(digits):
    a, _ = train(get_learner("bp"), digits, hidden=(8,), epochs=1, progress=False, seed=3)
    b, _ = train(get_learner("bp"), digits, hidden=(8,), epochs=1, progress=False, seed=3)
    np.testing.assert_array_equal(a.weights[0], b.weights[0])


def test_train_divergence_is_reported(digits, tmp_path):
    with pytest.raises(DivergedError, match="non-finite update at epoch 1"):
        train(get_learner("bp"), digits, hidden=(32,), epochs=1, batch_size=64, optimizer="sgd", lr=1e12, progress=False, checkpoint_dir=tmp_path)


def test_train_pc_learns(digits):
    _, hist = train(get_learner("pc"), digits, hidden=(32,), epochs=3, batch_size=64, lr=3e-3, progress=False)
    assert float(hist.test_accuracy[-1]) > 0.6  # chance is 0.1 (BP on the same net and seed: 0.81)
    assert float(hist.train_inference_steps[-1]) > 0


# ----------------------------------------------------------------------------- protocol pieces


def test_registry_registers_once_and_names_the_unknown():
    reg = dl.registry.Registry("widget", ())
    reg.register("a", 1)

    @reg.register("b")
    def b():
        return 2

    assert reg.names() == ["a", "b"] and reg["b"]() == 2 and "a" in reg and len(reg) == 2
    with pytest.raises(ValueError, match="widget 'a' is registered twice"):
        reg.register("a", 3)
    with pytest.raises(UnknownNameError, match="unknown widget 'c'; known: a, b"):
        reg["c"]


def test_criteria_build_text_and_test_from_one_number():
    from dynlearn.theorems import Verdict
    from dynlearn.theorems.criteria import at_least, at_most, between, reported, within

    assert at_most(1e-9, 1e-8) == (1e-9, "<= 1e-08", True)
    assert at_most(2e-8, 1e-8)[2] is False
    assert within(1.2, 1.0, 0.15)[1:] == ("1 ± 0.15", False) and within(0.9, 1.0, 0.15)[2]
    assert at_least(0.5, 0.9)[2] is False and between(3.0, 1.0, 2.0)[2] is False
    v = Verdict.from_criteria(a=at_most(1.0, 2.0), b=reported(float("nan")), c=at_most(float("nan"), 1.0))
    assert v.failed == ("c",) and not v.passed  # NaN fails a criterion; a reported NaN decides nothing
    assert Verdict.from_criteria(a=at_most(1.0, 2.0), b=reported(5.0)).passed


def test_feedback_mechanism_against_explicit_matrices():
    """feedback_call on a Linear layer: δ to the input is Bᵀδ, W and B both get δ hᵀ (summed over the batch)."""
    from dynlearn.networks import linear_layer
    from dynlearn.rules.feedback.mechanism import feedback_call

    kw, kb, kh, kg = jax.random.split(jax.random.key(0), 4)
    w, b = jax.random.normal(kw, (3, 4)), jax.random.normal(kb, (3, 4))
    h, g = jax.random.normal(kh, (5, 4)), jax.random.normal(kg, (5, 3))
    net = dl.Network.from_matrices((w,), (jnp.zeros(3),))
    apply = lambda layer, v: net.apply(1, v, layer)  # noqa: E731
    out, vjp = jax.vjp(lambda lay, fb, v: feedback_call((lay, fb, v), apply), net.layers[0], linear_layer(b, None), h)
    np.testing.assert_allclose(out, h @ w.T, rtol=1e-12)
    g_w, g_b, g_h = vjp(g)
    np.testing.assert_allclose(g_h, g @ b, rtol=1e-12)
    np.testing.assert_allclose(g_w.weight, g.T @ h, rtol=1e-12)
    np.testing.assert_allclose(g_b.weight, g.T @ h, rtol=1e-12)
    np.testing.assert_allclose(g_w.bias, g.sum(0), rtol=1e-12)


def test_theory_pages_are_current():
    """Every check's page exists and its generated block matches the registry and theory/checks.json."""
    from pathlib import Path

    from dynlearn.theorems.pages import stale_pages

    root = Path(__file__).resolve().parents[1] / "theory"
    assert (root / "checks.json").exists(), "run `dynlearn check --quick --json theory/checks.json && dynlearn docs`"
    assert stale_pages(root, root / "checks.json") == []
