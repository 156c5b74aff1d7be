"""Run folders: one folder per training run, its configuration, and checkpoints that a run can resume from.

A run folder holds

* ``config.json`` — everything needed to rebuild the run: learner name and options, layer sizes (or a note that a
  custom network was given), data set, optimiser, learning rate, batch size, epochs, seed, checkpoint interval, package
  versions and the git revision of the source tree when there is one (also in the history's ``config`` attribute);
* ``ckpt-EEEEE-SSSSSS/`` — the latest checkpoint, written as ONE folder (:func:`dynlearn.results.atomic_folder`:
  temporary folder, fsync, rename): ``params.eqx``, ``opt_state.eqx``, ``rule_state.eqx``, ``history.nc`` and
  ``position.json`` (the next epoch and step, the partial sums of the current epoch's metrics). ``EEEEE``/``SSSSSS``
  are the epoch and step it resumes at, so the latest checkpoint is the last name in sorted order; older ones and
  temporary folders left by a killed run are removed at the next save.

The batch order of epoch ``e`` and the key of global step ``k`` are functions of the seed alone
(:func:`dynlearn.learning.train`), so a resumed run repeats exactly what an uninterrupted one would have done.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np
import xarray as xr

from .errors import ConfigError
from .results import atomic_folder, atomic_write, clean_stale, load_dataset, provenance, save_dataset

CONFIG = "config.json"
_CKPT = re.compile(r"^ckpt-(\d{5})-(\d{6})$")
#: config entries that do not change what a run computes (left out of the hash and of the resume comparison)
_INFORMATIONAL = ("versions", "git_revision", "created", "epochs", "learner_defaults", "metadata")


def git_revision() -> str | None:
    """``git rev-parse HEAD`` of the source tree dynlearn is imported from (``None`` outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def config_hash(config: dict[str, Any]) -> str:
    """Eight hex digits identifying what a run computes (informational entries excluded)."""
    core = {k: v for k, v in config.items() if k not in _INFORMATIONAL}
    return hashlib.sha256(json.dumps(core, sort_keys=True, default=str).encode()).hexdigest()[:8]


def default_run_name(config: dict[str, Any]) -> str:
    """``<learner>-<UTC time>-<config hash>``, e.g. ``pc-20250101-120000-1a2b3c4d``."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{config['learner'].replace('/', '-')}-{stamp}-{config_hash(config)}"


def _jsonable(v):
    try:
        json.dumps(v)
        return v
    except TypeError:
        return repr(v)


def run_config(learner, data, *, sizes, network, optimizer, lr, batch_size, epochs, seed, checkpoint_every, metadata=None, weight_decay=0.0) -> dict[str, Any]:
    """The configuration of a run as a JSON-able dict (see the module docstring)."""
    prov = provenance()
    return {
        "learner": learner.name,
        "learner_options": {k: _jsonable(v) for k, v in getattr(learner, "options", {}).items()},
        "learner_defaults": {k: _jsonable(v) for k, v in learner.defaults.items()},
        "activation": _jsonable(learner.defaults.get("activation", "tanh")),
        "data": data.name,
        "n_train": int(data.x_train.shape[0]),
        "sizes": None if sizes is None else [int(s) for s in sizes],
        "network": "mlp" if network is None else f"custom {type(network).__name__} (pass network= to load_run)",
        "optimizer": optimizer if isinstance(optimizer, str) else f"custom {type(optimizer).__name__}",
        "lr": lr,
        **({"weight_decay": weight_decay} if weight_decay else {}),  # only when used: older runs still resume
        "batch_size": batch_size,
        "epochs": epochs,
        "seed": seed,
        "checkpoint_every": checkpoint_every,
        "versions": {k: v for k, v in prov.items() if k.endswith("_version") or k in ("python", "platform", "device", "x64")},
        "git_revision": git_revision(),
        "created": prov["created"],
        "metadata": metadata or {},
    }


def read_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """``config.json`` of a run folder (:class:`ConfigError` when it is not a run folder)."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise ConfigError(f"run folder {str(run_dir)!r} has no {CONFIG}; give a folder made by dynlearn train")
    return json.loads(path.read_text())


def start(run_dir: Path, config: dict[str, Any], *, resume: bool) -> dict[str, Any] | None:
    """Create the run folder and its ``config.json``; with ``resume`` check the saved config matches and return the
    saved position (``None``: nothing to resume, start from the beginning)."""
    has_ckpt = latest_checkpoint(run_dir) is not None
    if has_ckpt and not resume:
        raise ConfigError(f"checkpoint_dir {str(run_dir)!r} already holds a run; pass resume=True (CLI: --resume) or another folder")
    if resume and (run_dir / CONFIG).is_file():
        saved = read_config(run_dir)
        diff = sorted(k for k in set(saved) | set(config) if k not in _INFORMATIONAL and saved.get(k) != config.get(k))
        if diff:
            detail = ", ".join(f"{k}: saved {saved.get(k)!r}, now {config.get(k)!r}" for k in diff)
            raise ConfigError(f"cannot resume {str(run_dir)!r}: the configuration differs ({detail})")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(run_dir / CONFIG, lambda tmp: Path(tmp).write_text(json.dumps(config, indent=2, sort_keys=True)))
    return None


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint folder of a run (``None`` when there is none)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return None
    found = sorted(p for p in run_dir.iterdir() if p.is_dir() and _CKPT.match(p.name))
    return found[-1] if found else None


def save_checkpoint(run_dir: Path, *, params, rule_state, opt_state, position: dict[str, Any], history: xr.Dataset, config) -> Path:
    """Write params, optimiser and rule state, position and history as one checkpoint folder, then remove older ones."""
    clean_stale(run_dir)
    name = f"ckpt-{position['epoch']:05d}-{position['step']:06d}"

    def write(tmp: Path):
        eqx.tree_serialise_leaves(tmp / "params.eqx", params)
        eqx.tree_serialise_leaves(tmp / "opt_state.eqx", opt_state)
        eqx.tree_serialise_leaves(tmp / "rule_state.eqx", rule_state)
        (tmp / "position.json").write_text(json.dumps(position, sort_keys=True))
        save_dataset(history, tmp / "history.nc", config=config, seed=config.get("seed"))
        clean_stale(tmp)

    target = run_dir / name
    if target.exists():  # the same position saved again (a resumed run's first save): replace it
        shutil.rmtree(target)
    atomic_folder(target, write)
    for p in run_dir.iterdir():
        if p.is_dir() and _CKPT.match(p.name) and p.name < name:
            shutil.rmtree(p)
    return target


def history_rows(history: xr.Dataset) -> list[dict[str, float]]:
    """The per-epoch rows of a saved history (NaN entries, i.e. metrics an epoch did not have, left out)."""
    rows = []
    for i in range(history.sizes.get("epoch", 0)):
        rows.append({k: float(v) for k in history.data_vars if np.isfinite(v := float(history[k].values[i]))})
    return rows


def load_checkpoint(run_dir: Path, *, params, rule_state, opt_state):
    """``(params, rule_state, opt_state, position, history)`` of the latest checkpoint, deserialised into the given
    templates (same structure and shapes), or ``None`` when the run has none."""
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        return None
    params = eqx.tree_deserialise_leaves(ckpt / "params.eqx", params)
    opt_state = eqx.tree_deserialise_leaves(ckpt / "opt_state.eqx", opt_state)
    rule_state = eqx.tree_deserialise_leaves(ckpt / "rule_state.eqx", rule_state)
    position = json.loads((ckpt / "position.json").read_text())
    return params, rule_state, opt_state, position, load_dataset(ckpt / "history.nc")


def load_run(path: str | os.PathLike, *, learner=None, network=None):
    """``(params, history)`` of the latest checkpoint of the run folder ``path``.

    The parameters are deserialised into a template rebuilt from ``config.json`` — the learner from its name and
    options (or ``learner``), an MLP of the saved ``sizes`` with the learner's activation (or ``network``, required
    when the run was trained on a custom network) — so no shape has to be guessed.
    """
    from .learning import init_params
    from .rules import get_learner

    path = Path(path)
    config = read_config(path)
    ckpt = latest_checkpoint(path)
    if ckpt is None:
        raise ConfigError(f"run folder {str(path)!r} has no checkpoint yet")
    if learner is None:
        learner = get_learner(config["learner"], **config["learner_options"])
    if network is None and config["sizes"] is None:
        raise ConfigError(f"run {str(path)!r} was trained on a custom network ({config['network']}); pass network=")
    template = init_params(learner, jax.random.key(0), config["sizes"], network)
    params = eqx.tree_deserialise_leaves(ckpt / "params.eqx", template)
    return params, load_dataset(ckpt / "history.nc")
