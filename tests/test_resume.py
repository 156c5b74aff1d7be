"""Runs you can resume: kill -9 a `dynlearn train`, resume it, and get the uninterrupted run's parameters bit for bit."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import dynlearn as dl
from dynlearn import runs
from dynlearn.data import load_digits
from dynlearn.learning import train
from dynlearn.rules import get_learner

#: a tiny run: digits, 64-8-10, batches of 256 (5 per epoch), 6 epochs, a checkpoint every 2 steps and every epoch
ARGS = ["--rule", "bp", "--hidden", "8", "--epochs", "6", "--batch-size", "256", "--checkpoint-every", "2", "--no-compare-bp", "--no-progress"]


def _cli(*args, **kw):
    env = {**os.environ, "JAX_ENABLE_X64": "0", "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen([sys.executable, "-m", "dynlearn.cli", "train", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def _leaves(path):
    params, hist = dl.load_run(path)
    return [np.asarray(a) for a in jax.tree.leaves(params)], hist


def test_kill_minus_9_then_resume_is_bit_identical(tmp_path):
    killed = _cli(*ARGS, "--out", str(tmp_path), "--name", "killed")
    with jax.enable_x64(False):  # the uninterrupted run, in float32 as the command runs it
        params, ha = train(get_learner("bp", loss="ce"), load_digits(), hidden=(8,), epochs=6, batch_size=256, lr=1e-3, progress=False)  # the CLI's loss on classes
    a = [np.asarray(x) for x in jax.tree.leaves(params)]
    deadline = time.time() + 120
    while runs.latest_checkpoint(tmp_path / "killed") is None and killed.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    interrupted_at = runs.latest_checkpoint(tmp_path / "killed").name
    assert interrupted_at < "ckpt-00007-000000"  # killed before the end
    resumed = _cli("--resume", str(tmp_path / "killed"))
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err.decode()
    b, hb = _leaves(tmp_path / "killed")
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert hb.sizes["epoch"] == 6
    np.testing.assert_array_equal(ha.test_accuracy.values, hb.test_accuracy.values)
    np.testing.assert_array_equal(ha.train_loss.values, hb.train_loss.values)
    # one checkpoint left, no temporary folder, files 0644, the full config in config.json and the history
    names = sorted(p.name for p in (tmp_path / "killed").iterdir())
    assert names == ["ckpt-00007-000000", "config.json"], names
    ckpt = tmp_path / "killed" / "ckpt-00007-000000"
    assert {p.name for p in ckpt.iterdir()} == {"params.eqx", "opt_state.eqx", "rule_state.eqx", "position.json", "history.nc"}
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in ckpt.iterdir())
    config = json.loads((tmp_path / "killed" / "config.json").read_text())
    for key in ("learner", "sizes", "optimizer", "lr", "batch_size", "epochs", "seed", "versions", "git_revision"):
        assert key in config
    assert config["sizes"] == [64, 8, 10] and json.loads(hb.attrs["config"])["learner"] == "bp"


@pytest.fixture(scope="module")
def small():
    import dataclasses

    d = load_digits()
    return dataclasses.replace(d, x_train=d.x_train[:96], y_train=d.y_train[:96], labels_train=d.labels_train[:96])


def test_resume_in_python_restores_optimiser_and_rule_state(small, tmp_path):
    """An interrupted Python run (DRTP: its random projections are rule state) resumed with train(resume=True)."""
    kw = dict(hidden=(8,), epochs=3, batch_size=32, lr=1e-2, progress=False, checkpoint_every=2)
    full, _ = train(get_learner("drtp"), small, **kw)
    calls = {"n": 0}
    orig = dl.learning._Loop.segment

    def crash(self, *a):  # segments of 2 and 1 steps: the 3rd is epoch 2's first
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return orig(self, *a)

    dl.learning._Loop.segment = crash
    try:
        with pytest.raises(KeyboardInterrupt):
            train(get_learner("drtp"), small, checkpoint_dir=tmp_path, **kw)
    finally:
        dl.learning._Loop.segment = orig
    (tmp_path / ".ckpt-stale.abc.tmp").mkdir()  # what a kill during a save leaves; cleaned at the next save
    assert runs.latest_checkpoint(tmp_path).name == "ckpt-00002-000000"
    with pytest.raises(dl.ConfigError, match="already holds a run"):
        train(get_learner("drtp"), small, checkpoint_dir=tmp_path, **kw)
    with pytest.raises(dl.ConfigError, match="configuration differs.*lr"):
        train(get_learner("drtp"), small, checkpoint_dir=tmp_path, resume=True, **{**kw, "lr": 2e-2})
    resumed, hist = train(get_learner("drtp"), small, checkpoint_dir=tmp_path, resume=True, **kw)
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(full), jax.tree.leaves(resumed), strict=True))
    assert hist.sizes["epoch"] == 3 and not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_load_run_names_what_is_missing(tmp_path):
    with pytest.raises(dl.ConfigError, match="no config.json"):
        dl.load_run(tmp_path)
