"""Results as xarray objects, saved with their provenance, written atomically.

Every saved file carries in its attributes the dynlearn, jax, diffrax and equinox versions, the
platform, the time, the seed and the configuration (as JSON) of the run that made it. Writes go to a
temporary file in the target folder and are moved into place only when complete, so an interrupted
run or a bad argument never leaves a half-written file under the final name.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr


def provenance(config: Mapping[str, Any] | None = None, seed: int | None = None) -> dict[str, str]:
    """Attributes that say how a result was made (versions, platform, time, seed, config as JSON)."""
    import diffrax
    import equinox
    import jax

    from . import __version__

    attrs = {
        "dynlearn_version": __version__,
        "jax_version": jax.__version__,
        "diffrax_version": diffrax.__version__ if hasattr(diffrax, "__version__") else "unknown",
        "equinox_version": equinox.__version__ if hasattr(equinox, "__version__") else "unknown",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(jax.devices()[0].platform),
        "x64": str(bool(jax.config.jax_enable_x64)),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if seed is not None:
        attrs["seed"] = str(seed)
    if config is not None:
        attrs["config"] = json.dumps(dict(config), default=str, sort_keys=True)
    return attrs


def _netcdf_safe_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in attrs.items():
        if isinstance(v, bool | np.bool_):
            out[k] = int(v)
        elif isinstance(v, int | float | str | np.integer | np.floating):
            out[k] = v
        else:
            out[k] = json.dumps(v, default=str)
    return out


#: permissions of every file dynlearn writes (readable by all, like any other result file)
FILE_MODE = 0o644


def _fsync(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` only if it succeeds (fsynced, mode 0644)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, FILE_MODE)
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _sync_tree(folder: Path) -> None:
    """chmod 0644 and fsync every file under ``folder``, then fsync the folders (deepest first)."""
    dirs = [folder]
    for p in sorted(folder.rglob("*"), reverse=True):
        if p.is_dir():
            dirs.append(p)
        else:
            os.chmod(p, FILE_MODE)
            _fsync(p)
    for d in sorted(dirs, key=lambda d: len(d.parts), reverse=True):
        os.chmod(d, 0o755)
        _fsync(d)


def clean_stale(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files and folders (``.NAME.*.tmp``) that an interrupted write left in ``folder``."""
    import shutil

    folder = Path(folder)
    removed = []
    for p in folder.glob(".*.tmp") if folder.is_dir() else ():
        shutil.rmtree(p) if p.is_dir() else p.unlink()
        removed.append(p)
    return removed


def atomic_folder(path: str | os.PathLike, write) -> Path:
    """Write a whole folder atomically: ``write(tmp_folder)`` fills a temporary folder next to ``path``, whose files
    are fsynced (mode 0644) before it is renamed to ``path`` (which must not exist yet; see :func:`clean_stale`)."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        write(tmp)
        _sync_tree(tmp)
        os.rename(tmp, path)
        _fsync(path.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return path


def save_dataset(
    ds: xr.Dataset,
    path: str | os.PathLike,
    *,
    config: Mapping[str, Any] | None = None,
    seed: int | None = None,
) -> Path:
    """Save ``ds`` as netCDF (``.nc``) or zarr (``.zarr``) with provenance attributes, atomically."""
    path = Path(path)
    ds = ds.copy()
    ds.attrs = _netcdf_safe_attrs({**ds.attrs, **provenance(config, seed)})
    for v in ds.data_vars.values():
        v.attrs = _netcdf_safe_attrs(v.attrs)
    if path.suffix == ".zarr":
        import shutil

        tmp = path.with_name(f".{path.name}.tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        ds.to_zarr(tmp, mode="w")
        _sync_tree(tmp)
        old = path.with_name(f".{path.name}.old.tmp")
        if path.exists():  # keep the previous store until the new one is in place
            os.rename(path, old)
        os.rename(tmp, path)
        if old.exists():
            shutil.rmtree(old)
        return path
    return atomic_write(path, lambda tmp: ds.to_netcdf(tmp, engine="netcdf4"))


def load_dataset(path: str | os.PathLike) -> xr.Dataset:
    """Load a dataset saved by :func:`save_dataset` (netCDF or zarr) into memory."""
    path = Path(path)
    if path.suffix == ".zarr":
        return xr.open_zarr(path).load()
    with xr.open_dataset(path, engine="netcdf4") as ds:
        return ds.load()


def open_result(path: str | os.PathLike) -> xr.Dataset:
    """Any dynlearn result as an :class:`xarray.Dataset` in memory: a netCDF file (``.nc``), a zarr store
    (``.zarr``), or a sweep's store folder (``dynlearn sweep --out PATH``; assembled from its finished points, so a
    sweep still running or killed half-way opens too). Every variable carries ``long_name`` and ``units`` (CF
    conventions), so ``ds.VAR.plot()`` labels its axes."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no result at {str(path)!r}")
    if path.is_dir() and (path / "points").is_dir():
        from .sweep.store import open_store

        ds = open_store(path)
    elif path.is_dir():
        with xr.open_zarr(path) as ds:
            ds = ds.load()
    else:
        ds = load_dataset(path)
    for name, v in {**ds.data_vars, **ds.coords}.items():
        v.attrs.setdefault("long_name", str(name).replace("_", " "))
        v.attrs.setdefault("units", "1")
    return ds


def trajectory_dataset(
    ts,
    ys: Sequence[Any] | Any,
    *,
    names: Sequence[str] | None = None,
    extra: Mapping[str, Any] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """A trajectory as an :class:`xarray.Dataset` with dims ``time``, ``sample`` and ``unit_<layer>``.

    Args:
        ts: saved times, shape ``(T,)``; non-finite times (after a steady-state event) are dropped.
        ys: one array per layer, each ``(T, batch, n)`` or ``(T, n)``.
        names: layer names (default ``x1, x2, ...``).
        extra: further per-time quantities, each ``(T,)`` or ``(T, batch)`` (e.g. the energy).
    """
    ts = np.asarray(ts)
    keep = np.isfinite(ts)
    ys = list(ys) if isinstance(ys, list | tuple) else [ys]
    names = list(names) if names is not None else [f"x{i + 1}" for i in range(len(ys))]
    data = {}
    for name, y in zip(names, ys):
        y = np.asarray(y)[keep]
        if y.ndim == 2:
            y = y[:, None, :]
        data[name] = (("time", "sample", f"unit_{name}"), y)
    for k, v in (extra or {}).items():
        v = np.asarray(v)[keep]
        data[k] = (("time",) if v.ndim == 1 else ("time", "sample"), v)
    return xr.Dataset(data, coords={"time": ts[keep]}, attrs=dict(attrs or {}))
