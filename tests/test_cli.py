"""The `dynlearn` command line: help, listing, checks with JSON, figures, training, and clear errors."""

import json

import pytest
from typer.testing import CliRunner

from dynlearn.cli import app
import dynlearn as dl
from dynlearn import load_run
from dynlearn.results import load_dataset

runner = CliRunner()


def test_help_teaches():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    assert "dynlearn check " in r.output and "--full" in r.output and "dynlearn train --model pc" in r.output and "--set" in r.output
    r = runner.invoke(app, ["train", "--help"])
    assert r.exit_code == 0 and "--rule" in r.output and "Examples" in r.output


def test_list_names_models_checks_figures():
    r = runner.invoke(app, ["list"])
    assert r.exit_code == 0, r.output
    for name in ("pc", "bp", "pc_bp_limit", "pc_fixed_prediction_exact", "pc_digits"):
        assert name in r.output


def test_check_writes_json(tmp_path):
    path = tmp_path / "r.json"
    names = ["tdca_toy_landscape", "ide_rate_equilibrium"]  # two of the cheapest checks, from two families
    r = runner.invoke(app, ["check", *names, "--quick", "--json", str(path)])
    assert r.exit_code == 0, r.output
    rows = json.loads(path.read_text())
    assert [row["name"] for row in rows] == names
    for row in rows:
        assert row["passed"] is True
        assert set(row) >= {"name", "passed", "measured", "tolerance"}
        assert all(isinstance(v, float) for v in row["measured"].values())
    assert "2/2 checks passed" in r.output


def test_check_unknown_name_is_clear():
    r = runner.invoke(app, ["check", "pc_nonsense"])
    assert r.exit_code == 2 and "unknown check(s) pc_nonsense" in r.output


def test_figs_write_png_and_data(tmp_path):
    r = runner.invoke(app, ["figs", "ide_rate_equilibrium", "--quick", "--out", str(tmp_path)])  # a cheap one
    assert r.exit_code == 0, r.output
    png, nc = tmp_path / "ide_rate_equilibrium.png", tmp_path / "ide_rate_equilibrium.nc"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ds = load_dataset(nc)
    assert "rate_error" in ds and "jax_version" in ds.attrs and json.loads(ds.attrs["config"])["quick"] is True


def test_train_pc_and_bp(tmp_path):
    r = runner.invoke(app, ["train", "--model", "pc", "--epochs", "1", "--hidden", "16", "--out", str(tmp_path), "--no-progress", "--name", "t"])
    assert r.exit_code == 0, r.output
    assert "pc" in r.output and "bp" in r.output
    for run, learner in (("t", "pc"), ("t-bp", "bp")):  # one folder per run: config.json and one atomic checkpoint
        params, hist = load_run(tmp_path / run)
        assert json.loads((tmp_path / run / "config.json").read_text())["learner"] == learner and hist.sizes["epoch"] == 1
    r = runner.invoke(app, ["train", "--model", "pc", "--epochs", "1", "--hidden", "16", "--out", str(tmp_path), "--no-progress", "--name", "t"])
    assert r.exit_code == 2 and "already holds a run" in r.output  # never overwritten


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--model", "nope"], "unknown model/rule 'nope'"),
        (["train"], "give --model"),
        (["train", "--model", "pc", "--hidden", "12,x"], "--hidden must be"),
        (["train", "--model", "pc", "--data", "cifar"], "unknown data set 'cifar'"),
        (["train", "--rule", "bp", "--optimizer", "adamm"], "unknown optimizer 'adamm'"),
        (["train", "--rule", "bp", "--lr", "0"], "lr must be a finite learning rate > 0"),
        (["train", "--rule", "bp", "--lr", "-1e-3"], "lr must be a finite learning rate > 0"),
    ],
)
def test_train_bad_arguments(args, message, tmp_path):
    r = runner.invoke(app, [*args, "--out", str(tmp_path)])
    assert r.exit_code == 2
    assert message in r.output
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_train_any_registered_rule_with_named_optimizer(tmp_path):
    r = runner.invoke(app, ["train", "--rule", "drtp", "--optimizer", "adamw", "--lr", "1e-2", "--epochs", "1", "--hidden", "16",
                            "--no-compare-bp", "--out", str(tmp_path), "--no-progress"])
    assert r.exit_code == 0, r.output
    (run,) = tmp_path.iterdir()  # default name: <learner>-<UTC time>-<config hash>
    assert run.name.startswith("drtp-") and len(run.name.split("-")[-1]) == 8 and (run / "config.json").exists()


def test_docs_needs_the_json(tmp_path):
    r = runner.invoke(app, ["docs", "--json", str(tmp_path / "missing.json")])
    assert r.exit_code == 2 and "does not exist" in r.output


@pytest.mark.slow  # spawns two workers that import every family (~25 s); default run under 10 min on 2 cores; runs with -m slow
def test_check_and_figures_on_two_workers_match_one_process(tmp_path):
    """`--jobs 2` spawns two workers: the same verdicts and measured figures as in-process, every figure written, the
    figures' wall times recorded for the next run's ordering, and a bad DYNLEARN_JOBS named in the error."""
    from dynlearn.parallel import default_jobs, run_checks_and_figures
    from dynlearn.theorems import run_check

    names = ["pc_fixed_prediction_exact", "kp_exact_decay"]  # two families: one per worker
    results, made, seconds, failed = run_checks_and_figures(names, ["kp_exact_decay"], quick=True, out=tmp_path, jobs=2, progress=False)
    assert failed == {}
    assert [r.name for r in results] == names
    for r in results:
        here = run_check(r.name, quick=True, cache=False)
        assert r.passed and here.passed
        assert r.verdict.measured.keys() == here.verdict.measured.keys()
        for key, value in r.verdict.measured.items():
            assert abs(value - here.verdict.measured[key]) <= 1e-9 * max(1.0, abs(here.verdict.measured[key])), key
    assert made[0][0].read_bytes()[:4] == b"\x89PNG" and seconds["kp_exact_decay"] > 0
    import os

    os.environ["DYNLEARN_JOBS"] = "two"
    try:
        with pytest.raises(dl.ConfigError, match="DYNLEARN_JOBS"):
            default_jobs()
    finally:
        os.environ["DYNLEARN_JOBS"] = "1"


def test_version_quick_default_and_figures_of_one_check(tmp_path):
    """`--version` prints the package version; `check NAME --figs` runs quick by default and draws only the figures of
    that check's theory page."""
    from dynlearn import __version__

    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"dynlearn {__version__}"
    r = runner.invoke(app, ["check", "ide_rate_equilibrium", "--figs", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "theorem checks (quick)" in r.output
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["ide_rate_equilibrium.png"]


def test_set_passes_learner_options_and_names_bad_ones(tmp_path):
    from dynlearn._cli_options import parse_set

    assert parse_set(["nudge=0.01", "activation=relu", "flag=true"]) == {"nudge": 0.01, "activation": "relu", "flag": True}
    r = runner.invoke(app, ["train", "--model", "pc", "--set", "activation=relu", "--epochs", "1", "--hidden", "8", "--no-compare-bp",
                            "--no-progress", "--out", str(tmp_path), "--name", "s"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "s" / "config.json").read_text())["metadata"]["cli"]["options"] == {"activation": "relu"}
    for bad, needle in ((["--set", "nudge"], "KEY=VALUE"), (["--set", "bogus=1"], "bogus"), (["--set", "nudge=-1"], "nudge")):
        r = runner.invoke(app, ["train", "--model", "pc", *bad, "--epochs", "1", "--out", str(tmp_path)])
        assert r.exit_code == 2 and needle in r.output, (bad, r.output)


def test_training_stuck_at_chance_is_flagged(tmp_path):
    """`--lr 1e6` trains to chance accuracy: the command says so on stderr instead of reporting it silently."""
    r = runner.invoke(app, ["train", "--rule", "bp", "--lr", "1e6", "--epochs", "1", "--hidden", "8", "--no-compare-bp",
                            "--no-progress", "--out", str(tmp_path)])
    assert r.exit_code == 0 and "never rose clearly above chance" in r.output, r.output
    r = runner.invoke(app, ["train", "--rule", "bp", "--lr", "0.01", "--epochs", "2", "--hidden", "32", "--no-compare-bp", "--no-progress", "--out", str(tmp_path)])
    assert r.exit_code == 0 and "never rose" not in r.output, r.output


def test_a_figure_that_raises_costs_neither_the_others_nor_the_json(tmp_path, monkeypatch):
    """One figure raising (here a mathtext error, as a bad label once did) is reported in one line; the other figures
    are still made, the checks' JSON is written, and the exit code is 1."""
    import xarray as xr
    from matplotlib.figure import Figure

    from dynlearn.figures import FIGURES, FigureSpec

    def good(quick=True, seed=0):
        fig = Figure()
        fig.subplots().plot([1, 2], [1, 2])
        return fig, xr.Dataset({"v": ("i", [1.0, 2.0])}), {}

    def bad(quick=True, seed=0):
        raise ValueError(r"\frac34 is not mathtext")

    FIGURES._load()
    monkeypatch.setitem(FIGURES._entries, "good_for_test", FigureSpec("good_for_test", good, "test"))
    monkeypatch.setitem(FIGURES._entries, "bad_for_test", FigureSpec("bad_for_test", bad, "test"))
    monkeypatch.setattr("dynlearn.cli._check_figures", lambda selected: ["bad_for_test", "good_for_test"])
    path = tmp_path / "r.json"
    r = runner.invoke(app, ["check", "tdca_toy_landscape", "--json", str(path), "--figs", str(tmp_path / "f"), "--jobs", "1"])
    assert r.exit_code == 1, r.output
    assert "error: figure bad_for_test failed: ValueError" in r.output and "Traceback" not in r.output
    assert (tmp_path / "f" / "good_for_test.png").exists() and not (tmp_path / "f" / "bad_for_test.png").exists()
    assert [row["name"] for row in json.loads(path.read_text())] == ["tdca_toy_landscape"]
    assert "1 failed: bad_for_test" in r.output
