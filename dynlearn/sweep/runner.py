"""Run a sweep on an engine that exists: in-process, a local process pool, or a dask.distributed cluster.

Every executor calls the same :func:`dynlearn.sweep.points.run_point` on the same parameters, so the numbers do not
depend on where a point ran. Points are written to the store by this (the client) process as they finish, so dask
workers need no shared file system. Seeds and parameters run as separate points (no ``jax.vmap`` across points:
checks and learners are not all batchable, and one compiled function per point keeps failures separate).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import ConfigError
from .config import Point, SweepSpec, load_config
from .points import run_point
from .store import Store, consolidate

EXECUTORS = ("inprocess", "processes", "dask")


@dataclasses.dataclass(frozen=True)
class SweepSummary:
    """What a run did: points done, failed and skipped (already on disk), wall time, and where the result is."""

    done: int
    failed: int
    skipped: int
    seconds: float
    store: Path
    result: Path

    @property
    def points_per_minute(self) -> float:
        return 60.0 * (self.done + self.failed) / self.seconds if self.seconds > 0 else float("nan")

    def line(self) -> str:
        return (f"{self.done} done, {self.failed} failed, {self.skipped} skipped in {self.seconds:.1f} s "
                f"({self.points_per_minute:.1f} points/min); result in {self.result}")


def _inprocess(plain, todo: list[Point]) -> Iterator[tuple[Point, tuple]]:
    for p in todo:
        yield p, run_point(plain, p.params, p.seed)


def _processes(plain, todo: list[Point], workers: int | None) -> Iterator[tuple[Point, tuple]]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn, not fork: JAX's threads do not survive a fork
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count(), mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(run_point, plain, p.params, p.seed): p for p in todo}
        for f in as_completed(futures):
            try:
                outcome = f.result()
            except Exception as e:  # a worker that died (killed, out of memory) fails its point only
                outcome = ("error", f"{type(e).__name__}: {e}", float("nan"))
            yield futures[f], outcome


def _dask(plain, todo: list[Point], scheduler) -> Iterator[tuple[Point, tuple]]:
    from distributed import Client, as_completed

    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    try:
        futures = {client.submit(run_point, plain, p.params, p.seed, key=f"dynlearn-point-{p.key}", pure=False): p for p in todo}
        for f in as_completed(list(futures)):
            try:
                outcome = f.result()
            except Exception as e:  # a lost worker fails its point only
                outcome = ("error", f"{type(e).__name__}: {e}", float("nan"))
            yield futures[f], outcome
    finally:
        if client is not scheduler:
            client.close()


def run_sweep(
    config,
    out: str | os.PathLike,
    *,
    executor: str = "inprocess",
    scheduler=None,
    workers: int | None = None,
    quiet: bool = False,
    limit: int | None = None,
) -> SweepSummary:
    """Run every point of ``config`` (a TOML path, a mapping or a :class:`SweepSpec`) that ``out`` does not hold yet.

    ``executor`` is ``"inprocess"``, ``"processes"`` (a spawn process pool of ``workers``) or ``"dask"`` (a
    ``distributed.Client`` or the ``scheduler`` address ``tcp://host:8786``; giving ``scheduler`` implies dask).
    ``limit`` runs at most that many of the missing points (a partial run; the next call resumes).
    Returns a :class:`SweepSummary`; the Dataset is in ``out/result.zarr`` and :func:`dynlearn.results.open_result`.
    """
    spec = config if isinstance(config, SweepSpec) else load_config(config)
    if scheduler is not None and executor == "inprocess":
        executor = "dask"
    if executor not in EXECUTORS:
        raise ConfigError(f"executor must be one of {list(EXECUTORS)}, got {executor!r}")
    if executor == "dask" and scheduler is None:
        raise ConfigError("executor 'dask' needs scheduler=ADDRESS (e.g. tcp://10.0.0.1:8786) or a distributed.Client")
    store = Store(out)
    store.prepare(spec)
    start = time.perf_counter()
    points = spec.points()
    have = store.done()
    todo = [p for p in points if p.key not in have]
    skipped = len(points) - len(todo)
    if limit is not None:
        todo = todo[:limit]
    plain = spec.to_plain()
    stream = {"inprocess": lambda: _inprocess(plain, todo), "processes": lambda: _processes(plain, todo, workers),
              "dask": lambda: _dask(plain, todo, scheduler)}[executor]()
    done = failed = 0
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc=f"sweep {spec.name or spec.kind}", unit="point", file=sys.stderr, disable=quiet or not todo)
    for point, (status, value, seconds) in stream:
        if status == "ok":
            store.write_point(point.key, value, seconds)
            done += 1
        else:
            store.write_failure(point.key, point.params, point.seed, value)
            failed += 1
        bar.update(1)
        bar.set_postfix(done=done, failed=failed)
    bar.close()
    result = consolidate(spec, store)
    return SweepSummary(done, failed, skipped, time.perf_counter() - start, store.path, result)
