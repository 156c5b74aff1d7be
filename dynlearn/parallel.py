"""Checks and figures on several worker processes: what ``dynlearn check --jobs N`` and ``dynlearn figs --jobs N`` run.

Two phases. First every check runs on a pool of ``jobs`` processes, a family's checks in one worker (they share
compiled functions), together with the figures that plot no check (training runs, sweeps: :func:`uses_checks`),
longest first by the wall times of the last recorded run when there is one; then the other figures run on the same
pool, each worker holding the results of all the checks, so a figure that plots a check
(``run_check(name, quick=quick)``) reuses its result instead of recomputing it.
Workers are spawned (JAX does not survive ``fork``) and, unless the caller set ``XLA_FLAGS``, run XLA on one thread
each, so ``jobs`` processes share ``jobs`` cores without oversubscription. With ``jobs=1`` everything runs in the
calling process and nothing is spawned.

Results are the same objects as in one process (:class:`dynlearn.theorems.CheckResult`, the figure's PNG and
``.nc`` paths); an error raised in a worker is raised here with its type, its message prefixed with the check's or
figure's name.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

SINGLE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def default_jobs() -> int:
    """Worker processes by default: ``$DYNLEARN_JOBS`` if set, else one per core, at most 4 (more rarely pays for the
    extra compilations)."""
    env = os.environ.get("DYNLEARN_JOBS", "").strip()
    if env:
        from . import validation

        try:
            return validation.integer("DYNLEARN_JOBS", int(env), low=1)
        except ValueError:
            from .errors import ConfigError

            raise ConfigError(f"DYNLEARN_JOBS must be a whole number >= 1, got {env!r}") from None
    return max(1, min(4, os.cpu_count() or 1))


def _check_task(names: list[str], quick: bool) -> dict:
    """Run a family's checks in one worker, one after another (they share compiled functions)."""
    from .errors import DynlearnError
    from .theorems.registry import run_check

    out = {}
    for name in names:
        try:
            out[name] = run_check(name, quick=quick)
        except DynlearnError as e:
            raise type(e)(f"{name}: {e}") from e
    return out


def uses_checks(figure: str) -> bool:
    """Whether figure ``figure`` plots a check's result: its function, or a function of its module that it calls,
    calls ``run_check``. A figure that does not (a training run, a sweep) can run before the checks do."""
    import inspect
    import re

    from .figures import figure_specs

    fn = figure_specs()[figure].fn
    module = inspect.getmodule(fn)
    try:
        sources = [inspect.getsource(fn)]
        for name in set(re.findall(r"\b(\w+)\(", sources[0])):
            helper = getattr(module, name, None)
            if inspect.isfunction(helper) and helper.__module__ == module.__name__ and helper is not fn:
                sources.append(inspect.getsource(helper))
    except (OSError, TypeError):
        return True
    return any("run_check" in src for src in sources)


def _family_groups(names: list[str], seconds: dict[str, float]) -> list[tuple[str, list[str]]]:
    """``names`` grouped by check family (the order given kept inside a group), the groups longest first."""
    from .theorems import checks

    registry = checks()
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(registry[name].family, []).append(name)
    return sorted(groups.items(), key=lambda kv: -sum(seconds.get(n, 1.0) for n in kv[1]))


def _figure_task(name: str, quick: bool, out: str, memo: dict) -> tuple[tuple[Path, Path], float]:
    """Make one figure (after seeding this process's check memo); return its paths and wall time."""
    from .figures import make_figure
    from .theorems import registry

    for key, result in memo.items():
        registry._MEMO.setdefault(key, result)
    start = time.perf_counter()
    try:
        paths = make_figure(name, quick=quick, out=out)
    except Exception as error:  # one broken figure must not cost the others, nor the checks' results
        if os.environ.get("DYNLEARN_DEBUG"):
            raise
        return FigureFailure(f"{type(error).__name__}: {error}"), time.perf_counter() - start
    return paths, time.perf_counter() - start


class FigureFailure(str):
    """The message of a figure that raised (``ExceptionType: message``), returned in place of its paths."""


def recorded_seconds(*paths: str | Path) -> dict[str, float]:
    """Wall times by name from earlier runs: ``dynlearn check --json`` lists and ``figure_seconds.json`` maps.

    Missing or unreadable files are skipped: the times only order the work."""
    seconds: dict[str, float] = {}
    for path in paths:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, list):
            data = {r.get("name"): r.get("seconds", 0.0) for r in data if isinstance(r, dict)}
        if isinstance(data, dict):
            seconds.update({str(k): float(v) for k, v in data.items() if isinstance(v, (int, float))})
    return seconds


def _prefixed(name: str, error: BaseException) -> BaseException:
    from .errors import DynlearnError

    if isinstance(error, DynlearnError):
        return type(error)(f"{name}: {error}")
    return error


@contextlib.contextmanager
def _pool(jobs: int) -> Iterator[cf.Executor]:
    """A spawn-context process pool whose workers run single-threaded XLA unless ``XLA_FLAGS`` is set."""
    saved = os.environ.get("XLA_FLAGS")
    if saved is None:
        os.environ["XLA_FLAGS"] = SINGLE_THREAD_XLA  # read by the spawned workers at their JAX import
    try:
        with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            yield pool
    finally:
        if saved is None:
            os.environ.pop("XLA_FLAGS", None)


def _run_all(pool: cf.Executor, tasks: list[tuple[str, Callable, tuple]], on_done: Callable[[str], None]) -> dict[str, Any]:
    """Submit ``(name, fn, args)`` tasks in order; return ``{name: result}``; the first error cancels the rest."""
    futures = {pool.submit(fn, *args): name for name, fn, args in tasks}
    results = {}
    try:
        for fut in cf.as_completed(futures):
            name = futures[fut]
            error = fut.exception()
            if error is not None:
                prefixed = _prefixed(name, error)
                raise prefixed from (None if prefixed is error else error)
            results[name] = fut.result()
            on_done(name)
    except BaseException:
        for fut in futures:
            fut.cancel()
        raise
    return results


def _bar(total: int, desc: str, unit: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not progress)


def _longest_first(names: list[str], seconds: dict[str, float]) -> list[str]:
    return sorted(names, key=lambda n: -seconds.get(n, 0.0))


def run_checks_and_figures(
    checks: Iterable[str],
    figures: Iterable[str] = (),
    *,
    quick: bool = True,
    out: str | Path | None = None,
    jobs: int = 1,
    seconds: dict[str, float] | None = None,
    progress: bool = True,
):
    """Run ``checks``, then make ``figures`` into ``out``, on ``jobs`` processes.

    Returns ``(check_results, figure_paths, figure_seconds, figure_failures)``: the
    :class:`~dynlearn.theorems.CheckResult` of each check, each figure's ``(png, nc)`` in the order given, each
    figure's wall time by name, and ``{name: "ExceptionType: message"}`` for the figures that raised (the others are
    still made). ``seconds``
    (name -> wall time of an earlier run, see :func:`recorded_seconds`) only orders the work, longest first.
    """
    from .theorems.registry import _MEMO

    checks, figures, seconds = list(checks), list(figures), dict(seconds or {})
    if figures and out is None:
        raise ValueError("out: figures need an output folder")
    if jobs <= 1:
        return _run_here(checks, figures, quick, out, progress)
    with _pool(jobs) as pool:
        alone = [n for n in figures if not uses_checks(n)]  # these need no check result: they start with the checks
        bar = _bar(len(checks) + len(alone), "theorem checks and self-contained figures", "task", progress)
        tick = _advance(bar)
        groups = _family_groups(checks, seconds)
        tasks = [(f, _check_task, (ns, quick)) for f, ns in groups] + [(n, _figure_task, (n, quick, str(out), {})) for n in alone]
        tasks.sort(key=lambda t: -(sum(seconds.get(n, 1.0) for n in t[2][0]) if t[1] is _check_task else seconds.get(t[0], 1.0)))
        first = _run_all(pool, tasks, lambda name: [tick(n) for n in dict(groups).get(name, [name])])
        bar.close()
        done = {n: r for name, value in first.items() if name in dict(groups) for n, r in value.items()}
        results = [done[n] for n in checks]
        memo = {(r.name, quick, ()): r for r in results}
        for key, r in memo.items():
            _MEMO.setdefault(key, r)
        made = {n: first[n] for n in alone}
        rest = [n for n in figures if n not in made]
        if rest:
            bar = _bar(len(rest), "figures", "fig", progress)
            made.update(_run_all(pool, [(n, _figure_task, (n, quick, str(out), memo)) for n in _longest_first(rest, seconds)], _advance(bar)))
            bar.close()
    return _split_failures(results, figures, made)


def _split_failures(results, figures, made):
    """``(check results, paths of the figures made, their seconds, {figure: failure message})``."""
    ok = [n for n in figures if not isinstance(made[n][0], FigureFailure)]
    failed = {n: str(made[n][0]) for n in figures if n not in ok}
    return results, [made[n][0] for n in ok], {n: made[n][1] for n in ok}, failed


def _advance(bar):
    def on_done(name: str) -> None:
        bar.set_postfix_str(name)
        bar.update(1)

    return on_done


def _run_here(checks: list[str], figures: list[str], quick: bool, out, progress: bool):
    """The same work in this process, one item after another."""
    from .theorems.registry import run_checks

    results = run_checks(checks, quick=quick, progress=progress) if checks else []
    made = {}
    bar = _bar(len(figures), "figures", "fig", progress)
    for name in figures:
        bar.set_postfix_str(name)
        made[name] = _figure_task(name, quick, out, {})
        bar.update(1)
    bar.close()
    return _split_failures(results, figures, made)
