"""Sweeps: a TOML configuration over the parameters of a check, a training run or a figure, run on an executor
(in-process, a process pool, dask.distributed), stored point by point and assembled into one xarray Dataset.

.. code-block:: python

    from dynlearn.sweep import run_sweep
    from dynlearn.results import open_result

    summary = run_sweep("sweep.toml", "out/sweep")           # resumes: only missing points run
    ds = open_result("out/sweep")                            # dims: one per swept parameter, then seed
    ds.max_distance_to_feedforward.mean("seed").plot()

See :mod:`dynlearn.sweep.config` for the schema and :mod:`dynlearn.sweep.store` for the on-disk layout.
"""

from __future__ import annotations

from pathlib import Path

from .config import Point, SweepSpec, load_config, validate
from .runner import EXECUTORS, SweepSummary, run_sweep
from .store import Store, assemble, open_store

#: the sweep configurations shipped with dynlearn (``holistic_quick``, ``holistic_full``)
CONFIGS = Path(__file__).parent / "configs"


def shipped_config(name: str) -> Path:
    """The path of a shipped configuration by name (``"holistic_quick"``)."""
    from ..errors import UnknownNameError

    path = CONFIGS / f"{name}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in CONFIGS.glob("*.toml"))
        raise UnknownNameError(f"no shipped sweep config {name!r}; known: {known}")
    return path


__all__ = ["CONFIGS", "EXECUTORS", "Point", "Store", "SweepSpec", "SweepSummary", "assemble", "load_config", "open_store",
           "run_sweep", "shipped_config", "validate"]
