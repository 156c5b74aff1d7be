"""A sweep's store on disk: one zarr group per finished point, written atomically, assembled into one Dataset.

Layout of a store folder ``OUT``::

    OUT/config.json            the configuration of the last run (provenance)
    OUT/points/<key>.zarr      one finished point (written in a temporary folder, fsynced, then renamed: atomic)
    OUT/failed/<key>.json      a failed point: its parameters, seed and error message
    OUT/result.zarr            the consolidated Dataset, rewritten at the end of every run

A kill at any moment leaves every finished point readable (a point is either wholly there or absent; leftover
temporary folders are ignored and cleaned up); re-running computes only the points without a ``points/`` entry.
:func:`assemble` (what :func:`dynlearn.results.open_result` calls on a store) builds the Dataset from ``points/``, so
it is complete even when the final consolidation never ran. Failed points are retried on the next run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import numpy as np
import xarray as xr

from ..errors import OutputPathError
from ..results import atomic_folder, clean_stale
from .config import SEED, SweepSpec

STATUS = {"missing": -1, "failed": 0, "done": 1}


class Store:
    """The store folder of one sweep (see the module docstring for its layout)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise OutputPathError(f"sweep store {str(self.path)!r} exists and is not a folder")
        self.points = self.path / "points"
        self.failed = self.path / "failed"

    def prepare(self, spec: SweepSpec) -> None:
        for d in (self.points, self.failed):
            d.mkdir(parents=True, exist_ok=True)
        clean_stale(self.points)
        _atomic_text(self.path / "config.json", json.dumps(spec.raw, indent=2, sort_keys=True))

    def done(self) -> set[str]:
        return {p.name.removesuffix(".zarr") for p in self.points.glob("*.zarr")} if self.points.is_dir() else set()

    def write_point(self, key: str, ds: xr.Dataset, seconds: float) -> None:
        """Write a finished point: a zarr group in a temporary folder, fsynced, then one atomic rename."""
        ds = ds.assign(seconds=xr.DataArray(float(seconds), attrs={"long_name": "wall time of the point", "units": "s"}))
        final = self.points / f"{key}.zarr"
        if final.exists():  # a point computed twice (two runs on one store): the first one stays
            return
        atomic_folder(final, lambda tmp: ds.to_zarr(tmp, mode="w", consolidated=False))
        (self.failed / f"{key}.json").unlink(missing_ok=True)

    def write_failure(self, key: str, params: dict, seed: int, message: str) -> None:
        _atomic_text(self.failed / f"{key}.json", json.dumps({"params": params, "seed": seed, "error": message}, default=str))

    def failures(self) -> dict[str, str]:
        if not self.failed.is_dir():
            return {}
        return {p.stem: json.loads(p.read_text())["error"] for p in self.failed.glob("*.json")}


def _atomic_text(path: Path, text: str) -> None:
    from ..results import atomic_write

    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def git_revision() -> str:
    """The git revision of the dynlearn checkout (with ``+dirty`` when modified), or ``"none"``."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=5).stdout
        return rev + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "none"


def assemble(spec: SweepSpec, store: Store) -> xr.Dataset:
    """One Dataset over the sweep dimensions (``spec.dims``) from every finished point; missing and failed points are
    NaN, and ``status`` (1 done, 0 failed, -1 missing) and ``error`` say which."""
    from ..results import provenance

    coords = spec.coords()
    done, failures = store.done(), store.failures()
    parts, status, errors = [], np.full([len(v) for v in coords.values()], STATUS["missing"], np.int8), {}
    for point in spec.points():
        index = tuple(coords[d].index(c) for d, c in point.coords)
        if point.key in done:
            with xr.open_zarr(store.points / f"{point.key}.zarr", consolidated=False) as ds:
                ds = ds.load().drop_encoding()
            parts.append(ds.expand_dims({d: [c] for d, c in point.coords}))
            status[index] = STATUS["done"]
        elif point.key in failures:
            status[index] = STATUS["failed"]
            errors[index] = failures[point.key]
    ds = xr.merge(parts, join="outer", compat="no_conflicts", combine_attrs="drop_conflicts") if parts else xr.Dataset()
    ds = ds.reindex({d: v for d, v in coords.items()}).transpose(*spec.dims, ...) if parts else ds.assign_coords(coords)
    error = np.full(status.shape, "", dtype=object)
    for index, message in errors.items():
        error[index] = message
    ds["status"] = xr.DataArray(status, dims=spec.dims, attrs={"long_name": "point status (1 done, 0 failed, -1 missing)", "units": "1"})
    ds["error"] = xr.DataArray(error.astype(str), dims=spec.dims, attrs={"long_name": "error message of a failed point", "units": "1"})
    ds[SEED].attrs.update(long_name="random seed", units="1")
    for k, vs in spec.grid.items():
        ds[k].attrs.setdefault("long_name", k)
        ds[k].attrs.setdefault("units", "1")
    ds.attrs = {**provenance(spec.raw), "git_revision": git_revision(), "sweep_kind": spec.kind, "sweep_name": spec.name or "",
                "sweep_dims": json.dumps(list(spec.dims)), "description": spec.description}
    return ds


def consolidate(spec: SweepSpec, store: Store) -> Path:
    """Write the assembled Dataset to ``OUT/result.zarr`` (replaced as a whole)."""
    ds = assemble(spec, store)
    final = store.path / "result.zarr"
    tmp = store.path / f".result-{uuid.uuid4().hex[:8]}.zarr"
    ds.to_zarr(tmp, mode="w", consolidated=True, zarr_format=2)  # v2: string variables and consolidated metadata
    old = store.path / f".result-old-{uuid.uuid4().hex[:8]}.zarr"
    if final.exists():  # keep the previous result until the new one is in place
        os.rename(final, old)
    os.rename(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def open_store(path: str | os.PathLike) -> xr.Dataset:
    """The Dataset of a store folder: assembled from its points with the configuration saved in it."""
    from .config import load_config

    store = Store(path)
    cfg = store.path / "config.json"
    if not cfg.is_file():
        raise OutputPathError(f"{str(store.path)!r} is not a sweep store (no config.json)")
    return assemble(load_config(json.loads(cfg.read_text())), store)
