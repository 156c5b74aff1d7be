"""Test set-up: float64 everywhere (theorem tests), single-threaded XLA per worker, no plots on screen."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("DYNLEARN_JOBS", "1")  # CLI tests run in-process; test_cli spawns workers explicitly
# One compilation cache for the whole run, shared by both workers and the processes the tests spawn: the same
# program (a relaxation, a compiled epoch on the same shapes) compiled by another test file is read back instead of
# compiled again. It lives in the checkout (ignored by git), keyed by JAX on the program and the JAX version, so a
# stale entry can never be read; `JAX_COMPILATION_CACHE_DIR=""` turns it off.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)


# ----------------------------------------------------------------------------- longest files first
# Workers take whole files (`--dist loadfile`) in collection order; starting with the longest ones keeps the last
# file from running alone at the end (longest-processing-time-first scheduling). The seconds per file are those
# of a measured run, kept in tests/file_seconds.json; `DYNLEARN_FILE_SECONDS=path pytest ...` writes a fresh table.
import json
from collections import defaultdict
from pathlib import Path

_SECONDS_FILE = Path(__file__).with_name("file_seconds.json")
_measured: dict[str, float] = defaultdict(float)


def _file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0].rsplit("/", 1)[-1]


def pytest_collection_modifyitems(session, config, items):
    try:
        seconds = json.loads(_SECONDS_FILE.read_text())
    except (OSError, ValueError):
        return
    order = {f: i for i, f in enumerate(dict.fromkeys(_file_of(it.nodeid) for it in items))}
    # a stable sort: tests keep their order inside a file; files not in the table go last, in collection order
    items.sort(key=lambda it: (-float(seconds.get(_file_of(it.nodeid), 0.0)), order[_file_of(it.nodeid)]))


def pytest_runtest_logreport(report):
    _measured[_file_of(report.nodeid)] += report.duration


def pytest_sessionfinish(session, exitstatus):
    out = os.environ.get("DYNLEARN_FILE_SECONDS")
    if out and _measured and not hasattr(session.config, "workerinput"):  # the controller writes, not the workers
        Path(out).write_text(json.dumps({k: round(v, 1) for k, v in sorted(_measured.items(), key=lambda kv: -kv[1])}, indent=1) + "\n")
