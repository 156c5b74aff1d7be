"""Sweeps: schema validation, executors giving the same numbers, resume, failures recorded, open_result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr

from dynlearn.errors import ConfigError
from dynlearn.results import open_result
from dynlearn.sweep import load_config, run_sweep, shipped_config
from dynlearn.sweep.training import global_magnitude_prune, weight_leaves

#: a cheap theorem check: 3 values of t_end x 4 seeds
CHECK = {
    "run": {"kind": "check", "name": "pc_fixed_prediction_exact", "seeds": [0, 1, 2, 3]},
    "params": {"n_times": 11},
    "grid": {"t_end": [20.0, 30.0, 40.0]},
}


def _cfg(**tables):
    return json.loads(json.dumps({**CHECK, **tables}))


@pytest.mark.parametrize(
    "change, key",
    [
        ({"grids": {"t_end": [1.0]}}, "grids"),
        ({"run": {"kind": "check", "name": "pc_fixed_prediction_exact", "seed": [0]}}, "seed"),
        ({"run": {"kind": "checks", "name": "pc_fixed_prediction_exact"}}, "kind"),
        ({"run": {"kind": "check", "name": "no_such_check"}}, "no_such_check"),
        ({"run": {"kind": "check", "name": "pc_fixed_prediction_exact", "seeds": [0, 0]}}, "seeds"),
        ({"grid": {"t_end": []}}, "t_end"),
        ({"grid": {"t_ends": [1.0, 2.0]}}, "t_ends"),
        ({"params": {"t_end": 3.0}}, "t_end"),
        ({"params": {"n_times": 11}, "grid": {"seeds": [[0], [1]]}}, "seed"),
        ({"zip": {"t_end": [1.0, 2.0], "batch": [4]}, "grid": {}}, "zip"),
        ({"run": {"kind": "train", "seeds": [0]}, "params": {"learner": "nope"}, "grid": {}}, "nope"),
    ],
)
def test_config_errors_name_the_key(change, key):
    with pytest.raises(ConfigError, match=key):
        load_config(_cfg(**change))


def test_config_points_and_learner_wildcard(tmp_path):
    spec = load_config(_cfg())
    assert spec.dims == ("t_end", "seed") and len(spec.points()) == 12 and len({p.key for p in spec.points()}) == 12
    full = load_config(shipped_config("holistic_full"))
    from dynlearn.rules import learner_names

    assert list(full.grid["learner"]) == learner_names()  # every registered learner, picked up from the registry
    bad = tmp_path / "bad.toml"
    bad.write_text("[run]\nkind = 'check'\nname = = 1\n")
    with pytest.raises(ConfigError, match="TOML"):
        load_config(bad)


def _numbers(ds):
    return ds.drop_vars(["seconds", "error"])


def test_check_sweep_inprocess_equals_dask_and_resumes(tmp_path):
    from distributed import Client, LocalCluster

    # a partial run (2 of 12 points) stands in for an interrupted one; the rerun computes only the other 10
    first = run_sweep(_cfg(), tmp_path / "a", quiet=True, limit=2)
    assert (first.done, first.failed, first.skipped) == (2, 0, 0)
    partial = open_result(tmp_path / "a")
    assert int((partial.status == 1).sum()) == 2 and int((partial.status == -1).sum()) == 10
    written = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "a" / "points").iterdir()}
    rest = run_sweep(_cfg(), tmp_path / "a", quiet=True)
    assert (rest.done, rest.failed, rest.skipped) == (10, 0, 2)
    assert all((tmp_path / "a" / "points" / n).stat().st_mtime_ns == t for n, t in written.items())  # not recomputed
    local = open_result(tmp_path / "a")
    assert local.sizes["t_end"] == 3 and local.sizes["seed"] == 4 and bool((local.status == 1).all())
    assert bool((local.passed == 1).all())
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as client:
        remote = run_sweep(_cfg(), tmp_path / "b", executor="dask", scheduler=client, quiet=True)
    assert remote.done == 12
    xr.testing.assert_equal(_numbers(local), _numbers(open_result(tmp_path / "b")))  # same numbers, bit for bit
    # provenance and CF attributes
    assert json.loads(local.attrs["config"])["grid"] == {"t_end": [20.0, 30.0, 40.0]}
    assert "git_revision" in local.attrs and "jax_version" in local.attrs
    for v in local.data_vars.values():
        assert v.attrs["long_name"] and "units" in v.attrs
    assert open_result(tmp_path / "a" / "result.zarr").max_error_vs_delta.equals(local.max_error_vs_delta)


def test_train_sweep_failing_point_is_recorded(tmp_path):
    cfg = {
        "run": {"kind": "train", "seeds": [0]},
        "params": {"learner": "bp", "hidden": [8], "epochs": 2, "batch_size": 64, "lr": 0.01, "prune": [0.0, 0.9], "noise": [0.0, 1.0]},
        "grid": {"train_fraction": [0.0, 0.5]},
    }
    summary = run_sweep(cfg, tmp_path / "s", quiet=True)
    assert (summary.done, summary.failed) == (1, 1)
    ds = open_result(tmp_path / "s")
    assert ds.status.sel(train_fraction=0.0, seed=0) == 0 and "train_fraction" in str(ds.error.sel(train_fraction=0.0, seed=0).values)
    assert ds.status.sel(train_fraction=0.5, seed=0) == 1
    ok = ds.sel(train_fraction=0.5, seed=0)
    assert 0.0 <= float(ok.final_accuracy) <= 1.0 and ok.accuracy_per_epoch.sizes["epoch"] == 2
    assert np.isnan(float(ds.final_accuracy.sel(train_fraction=0.0, seed=0)))
    assert ds.pruned_accuracy.attrs["units"] == "1" and "pruning" in ds.pruned_accuracy.attrs["long_name"]
    again = run_sweep(cfg, tmp_path / "s", quiet=True)  # the failed point is retried, the finished one skipped
    assert (again.done, again.failed, again.skipped) == (0, 1, 1)


def test_global_magnitude_prune_keeps_a_per_layer_minimum():
    import jax
    import jax.numpy as jnp

    import dynlearn as dl

    net = dl.init_network((6, 50, 4), key=jax.random.key(0))
    net = net.with_matrices([net.weights[0] * 100.0, net.weights[1]], net.biases)  # layer 1 dominates |w|
    pruned = global_magnitude_prune(net, 0.9, min_fraction=0.1)
    w1, w2 = pruned.weights
    # the global 10% budget (50 of 500 weights) all goes to layer 1; layer 2 keeps its minimum, its 20 largest
    assert int(jnp.sum(w1 != 0)) == 50 and int(jnp.sum(w2 != 0)) == int(np.ceil(0.1 * w2.size)) == 20
    assert bool(jnp.all(jnp.abs(w2[w2 != 0]).min() >= jnp.sort(jnp.abs(net.weights[1]).ravel())[-20]))
    unprotected = global_magnitude_prune(net, 0.9, min_fraction=0.0)
    assert int(jnp.sum(unprotected.weights[1] != 0)) <= 1  # without the minimum, layer 2 is (all but) cut off
    assert all(jnp.array_equal(a, b) for a, b in zip(pruned.biases, net.biases))
    assert sum(weight_leaves(net)) == 2


def test_open_result_netcdf_and_missing(tmp_path):
    from dynlearn.results import save_dataset

    save_dataset(xr.Dataset({"loss": ("epoch", [1.0, 0.5])}), tmp_path / "h.nc")
    ds = open_result(tmp_path / "h.nc")
    assert ds.loss.attrs["long_name"] == "loss" and ds.loss.attrs["units"] == "1"
    with pytest.raises(FileNotFoundError):
        open_result(tmp_path / "none.nc")


def test_cli_sweep_reports_a_bad_config(tmp_path):
    from typer.testing import CliRunner

    from dynlearn.cli import app

    bad = tmp_path / "bad.toml"
    bad.write_text("[run]\nkind = 'check'\nname = 'pc_fixed_prediction_exact'\n[grid]\nt_ends = [1.0]\n")
    result = CliRunner().invoke(app, ["sweep", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "t_ends" in result.output
    assert not (tmp_path / "o" / "points").exists()  # validated before any work


@pytest.mark.slow
def test_sweep_killed_with_sigkill_resumes(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        "[run]\nkind = 'check'\nname = 'pc_fixed_prediction_exact'\nseeds = [0, 1, 2, 3]\n"
        "[params]\nn_times = 11\n[grid]\nt_end = [20.0, 30.0, 40.0]\n"
    )
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "dynlearn.cli", "sweep", str(cfg), "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, env={**os.environ}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((out / "points").glob("*.zarr"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = len(list((out / "points").glob("*.zarr")))
    assert 3 <= finished < 12
    assert int((open_result(out).status == 1).sum()) == finished  # every finished point readable after kill -9
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0 and f"{12 - finished} done, 0 failed, {finished} skipped" in rerun.stdout


def test_readme_sweep_example_is_a_valid_config():
    """The README's example config validates as written (its target and parameters exist) and has the documented axes."""
    import re
    import tomllib
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Sweeps.*?```toml\n(.*?)```", readme, re.S).group(1)
    spec = load_config(tomllib.loads(block))
    assert spec.kind == "train" and spec.dims == ("lr", "case", "seed") and len(spec.points()) == 3 * 2 * 3

