"""The sweep configuration: a TOML file, validated in full before any point runs.

.. code-block:: toml

    [run]
    kind = "check"                 # "check", "train" or "figure"
    name = "pc_feedforward"        # the registered check / figure (for "train": the learner, or sweep `learner`)
    quick = true                   # check / figure: start from the quick configuration (default true)
    seeds = [0, 1, 2, 3]           # one point per seed: dimension "seed"

    [params]                       # the same for every point
    batch = 4

    [grid]                         # outer product: one dimension per key, in this order
    t_end = [20.0, 40.0, 60.0]

    [zip]                          # optional: equal-length lists zipped along one dimension "case"
    n_times = [51, 101]
    distance_tol = [1e-9, 1e-10]

Every bad key raises :class:`dynlearn.errors.ConfigError` naming it (``[grid] t_end: ...``): unknown tables or keys,
a kind or name that is not registered, a parameter the target does not take, a key set twice, empty lists.
A grid value ``"*"`` for ``learner`` means every registered learner except ``[run] exclude``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import itertools
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError

KINDS = ("check", "train", "figure")
TABLES = ("run", "params", "grid", "zip")
RUN_KEYS = ("kind", "name", "quick", "seeds", "exclude", "description")
SEED = "seed"
CASE = "case"


@dataclasses.dataclass(frozen=True)
class Point:
    """One point of a sweep: its coordinates (one per dimension), the full parameters it runs with, and its seed."""

    coords: tuple[tuple[str, Any], ...]
    params: dict[str, Any]
    seed: int
    key: str


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: what runs (``kind``, ``name``), fixed ``params``, the ``grid`` and ``zip`` axes, ``seeds``,
    and the raw configuration (kept as provenance)."""

    kind: str
    name: str | None
    quick: bool
    seeds: tuple[int, ...]
    params: dict[str, Any]
    grid: dict[str, list]
    zipped: dict[str, list]
    raw: dict[str, Any]
    description: str = ""

    @property
    def dims(self) -> tuple[str, ...]:
        """The result's sweep dimensions: grid keys, then ``case`` (if zipped), then ``seed``."""
        return (*self.grid, *((CASE,) if self.zipped else ()), SEED)

    def coords(self) -> dict[str, list]:
        """Coordinate labels per dimension (non-scalar values, e.g. layer widths, become JSON strings)."""
        out = {k: [label(v) for v in vs] for k, vs in self.grid.items()}
        if self.zipped:
            out[CASE] = list(range(len(next(iter(self.zipped.values())))))
        out[SEED] = list(self.seeds)
        return out

    def points(self) -> list[Point]:
        """Every point, in grid order (the last dimension, ``seed``, varies fastest)."""
        cases = list(zip(*self.zipped.values())) if self.zipped else [()]
        out = []
        for values in itertools.product(*self.grid.values()):
            for c, case in enumerate(cases):
                for seed in self.seeds:
                    params = {**self.params, **dict(zip(self.grid, values)), **dict(zip(self.zipped, case))}
                    coords = [(k, label(v)) for k, v in zip(self.grid, values)] + ([(CASE, c)] if self.zipped else []) + [(SEED, seed)]
                    out.append(Point(tuple(coords), params, seed, point_key(self, params, seed)))
        return out

    def to_plain(self) -> dict[str, Any]:
        """A picklable description of what runs (sent to workers)."""
        return {"kind": self.kind, "name": self.name, "quick": self.quick}


def label(value: Any) -> Any:
    """A coordinate label: scalars as they are, anything else as compact JSON."""
    return value if isinstance(value, (int, float, str, bool)) else json.dumps(value, separators=(",", ":"))


def point_key(spec: SweepSpec, params: Mapping[str, Any], seed: int) -> str:
    """A stable name for a point: a hash of what it runs (kind, name, quick, every parameter, seed). Changing any fixed
    parameter changes every key (nothing stale is reused); adding grid values keeps the keys of the points already done."""
    blob = json.dumps({"kind": spec.kind, "name": spec.name, "quick": spec.quick, "params": params, "seed": seed}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def load_config(source: str | Path | Mapping[str, Any]) -> SweepSpec:
    """Read (a TOML path or an already-parsed mapping) and validate a sweep configuration."""
    if isinstance(source, Mapping):
        raw = dict(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"sweep config {str(path)!r} is not a file")
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"sweep config {path}: not valid TOML: {e}") from None
    return validate(raw)


def _table(raw, name, required=False) -> dict:
    value = raw.get(name, None)
    if value is None:
        if required:
            raise ConfigError(f"sweep config: missing table [{name}]")
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"sweep config: [{name}] must be a table, got {type(value).__name__}")
    return dict(value)


def _lists(table: dict, where: str) -> dict[str, list]:
    for k, v in table.items():
        if not isinstance(v, list) or not v:
            raise ConfigError(f"sweep config: [{where}] {k}: must be a non-empty list of values, got {v!r}")
        if len({json.dumps(x, sort_keys=True) for x in v}) != len(v):
            raise ConfigError(f"sweep config: [{where}] {k}: repeated values in {v!r}")
    return table


def validate(raw: Mapping[str, Any]) -> SweepSpec:
    """The checks behind :func:`load_config`; every error names the table and key."""
    unknown = [k for k in raw if k not in TABLES]
    if unknown:
        raise ConfigError(f"sweep config: unknown table(s) {unknown}; allowed: {list(TABLES)}")
    run = _table(raw, "run", required=True)
    bad = [k for k in run if k not in RUN_KEYS]
    if bad:
        raise ConfigError(f"sweep config: [run] unknown key(s) {bad}; allowed: {list(RUN_KEYS)}")
    kind = run.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"sweep config: [run] kind: must be one of {list(KINDS)}, got {kind!r}")
    quick = run.get("quick", True)
    if not isinstance(quick, bool):
        raise ConfigError(f"sweep config: [run] quick: must be true or false, got {quick!r}")
    seeds = run.get("seeds", [0])
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise ConfigError(f"sweep config: [run] seeds: must be a non-empty list of integers >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"sweep config: [run] seeds: repeated seeds in {seeds!r}")
    params, grid, zipped = _table(raw, "params"), _lists(_table(raw, "grid"), "grid"), _lists(_table(raw, "zip"), "zip")
    for a, b, ta, tb in (("params", "grid", params, grid), ("params", "zip", params, zipped), ("grid", "zip", grid, zipped)):
        both = sorted(set(ta) & set(tb))
        if both:
            raise ConfigError(f"sweep config: key(s) {both} appear in both [{a}] and [{b}]; give each parameter once")
    if zipped and len({len(v) for v in zipped.values()}) != 1:
        raise ConfigError(f"sweep config: [zip] lists must have equal lengths, got { {k: len(v) for k, v in zipped.items()} }")
    for k in (*grid, *zipped):
        if k in (SEED, CASE):
            raise ConfigError(f"sweep config: {k!r} cannot be a swept parameter (seeds go in [run] seeds)")
    for k in params:
        if k == SEED:
            raise ConfigError("sweep config: [params] seed: seeds go in [run] seeds")
    exclude = run.get("exclude", [])
    if not (isinstance(exclude, list) and all(isinstance(e, str) for e in exclude)):
        raise ConfigError(f"sweep config: [run] exclude: must be a list of learner names, got {exclude!r}")
    name = run.get("name")
    if name is not None and not isinstance(name, str):
        raise ConfigError(f"sweep config: [run] name: must be a string, got {name!r}")
    grid = {k: _expand_learners(k, v, exclude) for k, v in grid.items()}
    spec = SweepSpec(kind, name, quick, tuple(seeds), params, grid, zipped, json.loads(json.dumps(dict(raw))), str(run.get("description", "")))
    _check_target(spec)
    return spec


def _expand_learners(key: str, values: list, exclude: list[str]) -> list:
    if key != "learner" or "*" not in values:
        return values
    from ..rules import learner_names

    unknown = [e for e in exclude if e not in learner_names()]
    if unknown:
        raise ConfigError(f"sweep config: [run] exclude: unknown learner(s) {unknown}; known: {learner_names()}")
    expanded = []
    for v in values:
        expanded += [n for n in learner_names() if n not in exclude] if v == "*" else [v]
    return list(dict.fromkeys(expanded))


def accepted_parameters(fn) -> tuple[set[str], bool]:
    """The keyword parameters ``fn`` takes, and whether it also takes ``**kwargs``."""
    sig = inspect.signature(fn)
    names = {p.name for p in sig.parameters.values() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    return names, any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())


def _check_target(spec: SweepSpec) -> None:
    """The named target exists and takes every swept and fixed parameter."""
    from .points import target_parameters

    where = {**{k: "params" for k in spec.params}, **{k: "grid" for k in spec.grid}, **{k: "zip" for k in spec.zipped}}
    names, open_ended, seed_arg = target_parameters(spec)
    for k, table in where.items():
        if k not in names and not open_ended:
            raise ConfigError(f"sweep config: [{table}] {k}: {spec.kind} {spec.name or ''} takes no parameter {k!r}; it takes {sorted(names)}")
    if seed_arg is not None and seed_arg in where:
        raise ConfigError(f"sweep config: [{where[seed_arg]}] {seed_arg}: the seed is set by [run] seeds, not as a parameter")
