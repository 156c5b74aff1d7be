"""What one sweep point runs: a registered check, a training run of a registered learner, or a figure's data.

:func:`run_point` is the one function every executor calls (in-process, in a process pool, on a dask worker); it
never raises: a failure comes back as its message, so one bad point does not stop the others.
"""

from __future__ import annotations

import time
import traceback
from typing import Any

import numpy as np
import xarray as xr

from ..errors import ConfigError
from .config import accepted_parameters


def target_parameters(spec) -> tuple[set[str], bool, str | None]:
    """``(parameter names, takes **kwargs, name of its seed argument)`` of the sweep's target; raises
    :class:`ConfigError` when the target is not registered."""
    from ..errors import UnknownNameError

    kind, name = spec.kind, spec.name
    if kind == "train":
        from ..rules import learner_names
        from .training import TRAIN_PARAMETERS

        learners = list(spec.grid.get("learner", spec.zipped.get("learner", [spec.params.get("learner", name)])))
        if learners == [None]:
            raise ConfigError("sweep config: [run] name: kind 'train' needs a learner: [run] name, or `learner` in [params], [grid] or [zip]")
        for lrn in learners:
            if lrn not in learner_names():
                raise ConfigError(f"sweep config: learner {lrn!r} is not registered; known: {learner_names()}")
        return set(TRAIN_PARAMETERS), False, None
    try:
        if kind == "check":
            from ..theorems.registry import get_check

            fn = get_check(name).fn
        else:
            from ..figures import FIGURES

            fn = FIGURES[name].fn
    except UnknownNameError as e:
        raise ConfigError(f"sweep config: [run] name: {e}") from None
    names, open_ended = accepted_parameters(fn)
    if kind == "figure":
        return names - {"quick"}, open_ended, "seed"
    seed_arg = "seed" if "seed" in names else ("seeds" if "seeds" in names else None)
    return names, open_ended, seed_arg


def run_point(plain: dict[str, Any], params: dict[str, Any], seed: int) -> tuple[str, Any, float]:
    """Run one point; ``("ok", Dataset, seconds)`` or ``("error", message, seconds)``. Never raises."""
    start = time.perf_counter()
    try:
        ds = _RUNNERS[plain["kind"]](plain, dict(params), seed)
        return "ok", ds, time.perf_counter() - start
    except BaseException as e:  # noqa: BLE001 - a point's failure is data, not a crash of the sweep
        if isinstance(e, KeyboardInterrupt):
            raise
        tb = traceback.format_exception_only(type(e), e)[-1].strip()
        return "error", tb, time.perf_counter() - start


def _run_check(plain, params, seed) -> xr.Dataset:
    from ..theorems.registry import get_check, run_check

    names, _ = accepted_parameters(get_check(plain["name"]).fn)
    if "seed" in names:
        params["seed"] = seed
    elif "seeds" in names:
        params["seeds"] = (seed,)
    result = run_check(plain["name"], quick=plain["quick"], cache=False, **params)
    data = {}
    for k, v in result.verdict.measured.items():
        data[k] = xr.DataArray(v, attrs={"long_name": f"{k} (criterion: {result.verdict.tolerance[k]})", "units": "1"})
    data["passed"] = xr.DataArray(np.int8(result.verdict.passed), attrs={"long_name": "all criteria of the check hold", "units": "1"})
    return xr.Dataset(data)


def _run_train(plain, params, seed) -> xr.Dataset:
    from .training import train_point

    params.setdefault("learner", plain["name"])
    return train_point(seed=seed, **params)


def _run_figure(plain, params, seed) -> xr.Dataset:
    import matplotlib.pyplot as plt

    from ..figures import FIGURES

    fig, ds, _ = FIGURES[plain["name"]].fn(quick=plain["quick"], seed=seed, **params)
    plt.close(fig)
    for v in ds.data_vars.values():
        v.attrs.setdefault("long_name", v.name)
        v.attrs.setdefault("units", "1")
    return ds


_RUNNERS = {"check": _run_check, "train": _run_train, "figure": _run_figure}
