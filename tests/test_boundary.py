"""The boundary: random bad arguments at every public entry point give a DynlearnError naming the argument, never a
traceback from inside JAX and never a NaN result."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import dynlearn as dl
from dynlearn.cli import app
from dynlearn.data import load_digits
from dynlearn.learning import make_optimizer, train
from dynlearn.models.pc import PredictiveCoding
from dynlearn.rules import get_learner

FAST = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
runner = CliRunner()

nan, inf = float("nan"), float("inf")
#: values that are never numbers
not_number = st.one_of(st.text(max_size=4), st.booleans(), st.lists(st.integers(), max_size=2), st.just(object()))
#: values that are not finite numbers > 0
not_positive = st.one_of(st.floats(max_value=0.0), st.sampled_from([nan, inf, -inf]), not_number)
#: values that are not finite numbers >= 0
negative = st.one_of(st.floats(max_value=-1e-12), st.sampled_from([nan, inf, -inf]), not_number)
#: values that are not integers >= 1
not_count = st.one_of(st.integers(max_value=0), st.floats(), st.booleans(), st.text(max_size=3))


def _clear(exc_info, *names):
    """The error is a DynlearnError whose message names one of ``names``."""
    assert isinstance(exc_info.value, dl.DynlearnError), type(exc_info.value)
    assert any(n in str(exc_info.value) for n in names), str(exc_info.value)


# ----------------------------------------------------------------------------- learner factories

OPTIONS = [("pc", "nudge", not_positive), ("pc", "lr", not_positive), ("ep", "nudge", not_positive), ("ep", "n_points", not_count),
           ("ep", "init_gain", not_positive), ("kp", "decay", negative), ("wm", "decay", negative), ("wm", "samples", not_count),
           ("pal", "alpha", negative), ("pal", "sigma", negative), ("pal", "dt", not_positive), ("pal", "t_noise", not_positive),
           ("pal", "lr", not_positive), ("microcircuit", "lr", not_positive), ("pc", "max_steps", not_count), ("pc", "dt0", not_positive)]


@pytest.mark.parametrize("name, option, bad", OPTIONS, ids=[f"{n}-{o}" for n, o, _ in OPTIONS])
@FAST
@given(data=st.data())
def test_learner_options_out_of_range(name, option, bad, data):
    value = data.draw(bad)
    with pytest.raises(Exception) as e:
        get_learner(name, **{option: value})
    _clear(e, option)


@FAST
@given(name=st.sampled_from(["bp", "fa", "pc", "ep", "kp", "drtp", "pal", "microcircuit"]),
       option=st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12))
def test_learner_unknown_option_names_the_option(name, option):
    known = {"activation", "loss", "lr", "nudge", "decay", "estimator", "n_points", "config", "init_gain", "output", "steady", "sigma",
             "alpha", "tau_xi", "tau_hp", "t_noise", "dt", "samples", "preset_name", "top_down", "inference", "learn_lateral"}
    if option in known or name == "pc":  # pc passes unknown names on to RelaxConfig, which names them too
        option = option + "_nonsense"
    with pytest.raises(Exception) as e:
        get_learner(name, **{option: 1.0})
    _clear(e, option)


@FAST
@given(name=st.text(min_size=1, max_size=8).filter(lambda s: s not in dl.rules.learner_names()))
def test_unknown_learner_and_loss(name):
    with pytest.raises(dl.UnknownNameError) as e:
        get_learner(name)
    _clear(e, repr(name))
    with pytest.raises(dl.UnknownNameError) as e:
        get_learner("bp", loss=name)
    _clear(e, "loss")


# ----------------------------------------------------------------------------- RelaxConfig, relax, simulate, equilibrium

FIELDS = [("tol", negative), ("rtol", negative), ("atol", negative), ("t1", not_positive), ("dt0", not_positive),
          ("max_steps", not_count), ("polish_max_steps", not_count), ("bound", st.one_of(st.floats(max_value=0.0), st.just(nan), not_number))]


@pytest.mark.parametrize("field, bad", FIELDS, ids=[f for f, _ in FIELDS])
@FAST
@given(data=st.data())
def test_relax_config_fields(field, bad, data):
    value = data.draw(bad)
    if field == "dt0" and value is None:
        return
    with pytest.raises(Exception) as e:
        dl.RelaxConfig(**{field: value})
    _clear(e, field)
    with pytest.raises(Exception) as e:  # the same through relax's overrides
        dl.relax(lambda t, y, a: -y, jnp.ones(2), None, **{field: value})
    _clear(e, field)


@FAST
@given(t1=st.one_of(st.floats(max_value=0.0), st.sampled_from([nan, inf])), dt0=st.one_of(st.floats(max_value=0.0), st.sampled_from([nan, inf])))
def test_simulate_times(t1, dt0):
    with pytest.raises(Exception) as e:
        dl.simulate(lambda t, y, a: -y, jnp.ones(2), None, t1=t1, dt0=0.1)
    _clear(e, "t1")
    with pytest.raises(Exception) as e:
        dl.simulate(lambda t, y, a: -y, jnp.ones(2), None, t1=1.0, dt0=dt0)
    _clear(e, "dt0")


@FAST
@given(which=st.sampled_from(["nan", "inf", "empty", "shape", "config"]), n=st.integers(1, 3))
def test_relax_and_equilibrium_inputs(which, n):
    net = dl.init_network((4, 3, 2), key=jax.random.key(0))
    x = {"nan": jnp.full((n, 4), nan), "inf": jnp.full((n, 4), inf), "empty": jnp.zeros((0, 4)), "shape": jnp.zeros((n, 5))}.get(which, jnp.zeros((n, 4)))
    with pytest.raises(Exception) as e:  # an empty batch is refused when the Data is made
        data = dl.Data(x, jnp.zeros((x.shape[0], 2)), 0.1)
        dl.equilibrium(PredictiveCoding(net, "nudged"), data, "fast" if which == "config" else dl.TRAINING)
    _clear(e, "NaN or inf", "empty", "features", "config")
    if which in ("nan", "inf", "empty"):
        with pytest.raises(Exception) as e:
            dl.relax(lambda t, y, a: -y, x, None)
        _clear(e, "y0")


def test_init_network_sizes():
    for bad in ((), (4,), (4, 0, 2), (4, -1, 2), ("a", 2)):
        with pytest.raises(dl.DynlearnError, match="sizes"):
            dl.init_network(bad, key=jax.random.key(0))


# ----------------------------------------------------------------------------- train and the optimiser


@pytest.fixture(scope="module")
def tiny():
    d = load_digits()
    return dataclasses.replace(d, x_train=d.x_train[:64], y_train=d.y_train[:64], labels_train=d.labels_train[:64])


TRAIN_ARGS = [("epochs", not_count), ("batch_size", not_count), ("seed", st.one_of(st.integers(max_value=-1), st.floats(), st.text(max_size=2))),
              ("lr", not_positive), ("hidden", st.one_of(st.just(()), st.just(""), st.lists(st.integers(max_value=0), min_size=1, max_size=2))),
              ("checkpoint_every", not_count), ("optimizer", st.text(max_size=6).filter(lambda s: s not in dl.learning.OPTIMIZERS))]


@pytest.mark.parametrize("arg, bad", TRAIN_ARGS, ids=[a for a, _ in TRAIN_ARGS])
@FAST
@given(data=st.data())
def test_train_arguments(tiny, arg, bad, data, tmp_path):
    value = data.draw(bad)
    with pytest.raises(Exception) as e:
        train(get_learner("bp"), tiny, **{"hidden": (4,), arg: value}, progress=False, checkpoint_dir=tmp_path / "run")
    _clear(e, arg)
    assert not (tmp_path / "run").exists()  # checked before any work


def test_train_conflicts_and_paths(tiny, tmp_path):
    other = dl.init_network((64, 7, 10), key=jax.random.key(0))
    with pytest.raises(dl.ConfigError, match=r"hidden=\(4,\) conflicts"):
        train(get_learner("bp"), tiny, hidden=(4,), params=other, progress=False)
    with pytest.raises(dl.ShapeError, match="layer widths"):
        train(get_learner("bp"), tiny, params=dl.init_network((5, 7, 10), key=jax.random.key(0)), progress=False)
    with pytest.raises(dl.ShapeError, match="batch_size 65"):
        train(get_learner("bp"), tiny, hidden=(4,), batch_size=65, progress=False)
    with pytest.raises(dl.ShapeError, match="empty test set"):
        train(get_learner("bp"), dataclasses.replace(tiny, x_test=tiny.x_test[:0], y_test=tiny.y_test[:0]), hidden=(4,), progress=False)
    (tmp_path / "file").write_text("")
    with pytest.raises(dl.OutputPathError, match="is a file"):
        train(get_learner("bp"), tiny, hidden=(4,), progress=False, checkpoint_dir=tmp_path / "file" / "run")
    params, hist = train(get_learner("bp"), tiny, params=other, epochs=1, batch_size=32, progress=False)  # hidden left out: fine
    assert math.isfinite(float(hist.test_mse[-1])) and params.sizes == (64, 7, 10)


@FAST
@given(lr=not_positive)
def test_make_optimizer_lr(lr):
    with pytest.raises(dl.ConfigError, match="lr must be"):
        make_optimizer("adam", lr)


def test_nonconvergence_inside_jit_is_typed(tiny):
    """Relaxations inside the compiled step: NotConvergedError / DivergedError naming model, epoch, time, residual."""
    with pytest.raises(dl.NotConvergedError, match=r"pc \(PredictiveCoding.*at epoch 1, step 1: relaxation hit max_steps.*t = .*residual"):
        train(get_learner("pc", max_steps=2), tiny, hidden=(4,), epochs=1, batch_size=32, progress=False)
    with pytest.raises(dl.DivergedError, match=r"at epoch 1, step 1: relaxation diverged"):
        train(get_learner("pc", bound=1e-3), tiny, hidden=(4,), epochs=1, batch_size=32, progress=False)
    with pytest.raises(dl.NotConvergedError, match=r"ep/symmetric \(EP phases\) at epoch 1"):
        train(get_learner("ep", config=dl.TRAINING.replace(max_steps=3)), tiny, hidden=(4,), epochs=1, batch_size=32, progress=False)


def test_finite_time_blowup_is_divergence():
    """dy/dt = y³ from 1 blows up at t = 1/2: the steps shrink until max_steps; that is DIVERGED, not MAX_STEPS."""
    eq = dl.relax(lambda t, y, a: y**3, jnp.ones(2), None, throw=False)
    assert int(eq.status) == dl.dynamics.DIVERGED and float(eq.time) < 0.5 + 1e-6
    with pytest.raises(dl.DivergedError, match="blew up in finite time"):
        dl.relax(lambda t, y, a: y**3, jnp.ones(2), None, name="cubic")
    eq = dl.relax(lambda t, y, a: jnp.full_like(y, nan), jnp.ones(2), None, throw=False)
    assert int(eq.status) == dl.dynamics.DIVERGED


# ----------------------------------------------------------------------------- the command line

CLI_BAD = [
    (["--rule", "nope"], "unknown model/rule 'nope'", 2),
    (["--rule", "bp", "--optimizer", "adamm"], "unknown optimizer 'adamm'", 2),
    (["--rule", "bp", "--lr", "nan"], "lr must be", 2),
    (["--rule", "bp", "--lr", "0"], "lr must be", 2),
    (["--rule", "bp", "--hidden", ""], "--hidden must name at least one", 2),
    (["--rule", "bp", "--hidden", "4,-2"], "--hidden widths must be positive", 2),
    (["--rule", "bp", "--seed", "-1"], "--seed", 2),
    (["--rule", "bp", "--epochs", "0"], "--epochs", 2),
    (["--rule", "bp", "--batch-size", "5000"], "batch_size 5000", 2),
    (["--resume", "/nonexistent/run"], "has no config.json", 2),
]


@pytest.mark.parametrize("args, message, code", CLI_BAD, ids=[" ".join(a) for a, _, _ in CLI_BAD])
def test_cli_train_bad_arguments_are_one_line(args, message, code, tmp_path):
    r = runner.invoke(app, ["train", *args, "--out", str(tmp_path), "--no-progress"])
    assert r.exit_code == code, r.output
    assert message in r.output and "Traceback" not in r.output
    assert not any(tmp_path.iterdir())


def test_cli_output_paths_checked_first(tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    for args in (["train", "--rule", "bp", "--out", str(f)], ["figs", "pc_fixed_point", "--out", str(f / "x")], ["check", "pc_feedforward", "--json", str(tmp_path)]):
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and ("is a file" in r.output or "is a folder" in r.output) and "Traceback" not in r.output, r.output


def test_cli_runtime_error_is_exit_1_and_debug_reraises(tmp_path, monkeypatch):
    import dynlearn.learning
    from dynlearn.figures import figure_specs
    from dynlearn.theorems import checks

    checks(), figure_specs(), dl.rules.learner_names()  # import every module first: none may bind the fake below

    def fail(*a, **k):
        raise dl.NotConvergedError("pc: relaxation hit max_steps")

    monkeypatch.setattr(dynlearn.learning, "train", fail)
    r = runner.invoke(app, ["train", "--rule", "bp", "--out", str(tmp_path), "--no-progress"])
    assert r.exit_code == 1 and "pc: relaxation hit max_steps (NotConvergedError)" in r.output
    r = runner.invoke(app, ["--debug", "train", "--rule", "bp", "--out", str(tmp_path), "--no-progress"])
    assert isinstance(r.exception, dl.NotConvergedError)
    runner.invoke(app, ["list"])  # the flag does not stick


# ----------------------------------------------------------------------------- rules and checks' configurations

@pytest.mark.parametrize("name", ["bp", "fa", "pc", "kp", "drtp"])
def test_empty_batch_to_a_rule_is_a_shape_error(name):
    learner = get_learner(name)
    params = learner.init(jax.random.key(0), dl.init_network((4, 3, 2), key=jax.random.key(1)))
    state = learner.rule.init(jax.random.key(2), params)
    with pytest.raises(dl.ShapeError, match="empty"):
        learner.rule.update(params, state, dl.Data(jnp.zeros((0, 4)), jnp.zeros((0, 2))), jax.random.key(3))


def _check_options():
    """``(check, option, default)`` for every option of every registered check that has a typed default."""
    import inspect

    from dynlearn.theorems import checks

    out = []
    for name, check in checks().items():
        for key, p in inspect.signature(check.fn).parameters.items():
            d = p.default
            if d is not p.empty and d is not None and (isinstance(d, (bool, int, float, str, tuple)) or callable(d)):
                out.append((name, key, d))
    return out


CHECK_OPTIONS = _check_options()


def _bad_value(default, data):
    """A value that no option with this default accepts."""
    if isinstance(default, bool):
        return data.draw(st.one_of(st.integers(2, 5), st.text(max_size=3), st.floats()))
    if isinstance(default, int):
        return data.draw(st.one_of(st.integers(max_value=-1), st.floats(allow_nan=True), st.booleans(), st.text(max_size=3)))
    if isinstance(default, float):
        return data.draw(st.one_of(st.sampled_from([nan, inf, -inf]), st.booleans(), st.text(max_size=3), st.lists(st.floats(), max_size=2)))
    if isinstance(default, str):
        return data.draw(st.one_of(st.integers(), st.floats(), st.booleans()))
    if isinstance(default, tuple):
        return data.draw(st.one_of(st.just(()), st.integers(), st.text(min_size=1, max_size=3), st.floats()))
    return data.draw(st.one_of(st.integers(), st.floats(), st.text(max_size=3)))


@FAST
@given(data=st.data())
def test_every_check_refuses_a_bad_option_before_any_work(data):
    """Any check, any typed option, a value of the wrong kind or range: a ConfigError naming the option, at once."""
    from dynlearn.theorems import run_check

    name, key, default = data.draw(st.sampled_from(CHECK_OPTIONS))
    bad = _bad_value(default, data)
    with pytest.raises(Exception) as e:
        run_check(name, cache=False, **{key: bad})
    _clear(e, key)


@pytest.mark.parametrize("bad", [{"seed": -1}, {"no_such_option": 1}, {"sizes": (4, 0, 3)}, {"seeds": ()}])
def test_check_configs_named_in_the_error(bad):
    from dynlearn.theorems import run_check

    with pytest.raises(dl.ConfigError, match=next(iter(bad))):
        run_check("pc_bp_limit", cache=False, **bad)
    with pytest.raises(dl.ConfigError, match="quick"):
        run_check("pc_bp_limit", quick="yes")


def test_every_registered_quick_and_full_config_is_valid():
    """The ranges are not stricter than the checks themselves: every registered configuration passes them."""
    from dynlearn.theorems import checks
    from dynlearn.theorems.overrides import validate_overrides

    for name, check in checks().items():
        for config in (check.quick, check.full):
            validate_overrides(name, check.fn, config)


def test_every_option_of_every_check_refuses_one_bad_value():
    """All of them, not a sample: one value of the wrong kind per typed option, refused before any work."""
    from dynlearn.theorems import run_check

    canonical = {bool: 2, int: 1.5, float: float("nan"), str: 3, tuple: ()}
    refused = 0
    for name, key, default in CHECK_OPTIONS:
        bad = next((v for t, v in canonical.items() if isinstance(default, t)), 3)
        with pytest.raises(dl.ConfigError, match=key):
            run_check(name, cache=False, **{key: bad})
        refused += 1
    assert refused == len(CHECK_OPTIONS) >= 600


def test_check_option_ranges_at_their_edges():
    """The edges of each range, accepted and refused (validated only: nothing runs)."""
    from dynlearn.theorems import get_check
    from dynlearn.theorems.overrides import validate_overrides

    fn = get_check("pc_energy_descent").fn
    for ok in ({"seeds": (0, 2**31 - 1)}, {"sizes": (5, 1, 3)}, {"batch": 1}, {"rel_tol": 0.0}, {"t_end": 1e-300}):
        validate_overrides("pc_energy_descent", fn, ok)
    for bad in ({"seeds": (2**31,)}, {"seeds": (-1,)}, {"sizes": (5, 0, 3)}, {"batch": 0}, {"rel_tol": -1e-300}, {"t_end": 0.0}):
        with pytest.raises(dl.ConfigError, match=next(iter(bad))):
            validate_overrides("pc_energy_descent", fn, bad)
    validate_overrides("pc_bp_limit", get_check("pc_bp_limit").fn, {"seed": 0})  # a seed may be 0, a count may not
    validate_overrides("stllr_memory", get_check("stllr_memory").fn, {"flat": ("snn/stllr",), "steps": (10, 20)})  # 1-tuples
    with pytest.raises(dl.ConfigError, match=r"steps\[1\]"):  # integer items stay integers
        validate_overrides("stllr_memory", get_check("stllr_memory").fn, {"steps": (10, 2.5)})
    validate_overrides("pc_energy_descent", fn, {"model_cls": PredictiveCoding})  # a callable for a callable
    with pytest.raises(dl.ConfigError, match="sizes"):  # a number where a tuple belongs
        validate_overrides("pc_energy_descent", fn, {"sizes": 5})
