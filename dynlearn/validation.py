"""Argument checks at the boundary: every public entry point validates before it computes.

Each check raises a :class:`dynlearn.ConfigError` (or :class:`dynlearn.OutputPathError` for paths) whose message
names the argument, the value it got and the allowed range, so that a bad argument never turns into a traceback
from deep inside JAX or into a silently useless result.
"""

from __future__ import annotations

import math
import os
from numbers import Integral, Real
from pathlib import Path

from .errors import ConfigError, OutputPathError


def number(name: str, value, *, low: float | None = None, high: float | None = None, low_open: bool = False,
           allow_none: bool = False) -> float | None:
    """``value`` as a float, finite and in ``[low, high]`` (``(low, high]`` with ``low_open``), else :class:`ConfigError`."""
    if value is None and allow_none:
        return None
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    allowed = f"a finite number in {'(' if low_open or low is None else '['}{lo}, {hi}{')' if high is None else ']'}"
    if isinstance(value, bool) or not isinstance(value, Real):
        try:  # 0-d arrays and numpy scalars
            if getattr(value, "shape", None) != () or getattr(value, "dtype", None) is None or value.dtype.kind not in "iuf":
                raise TypeError
            value = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be {allowed}, got {value!r}") from None
    v = float(value)
    ok = math.isfinite(v) and (low is None or (v > low if low_open else v >= low)) and (high is None or v <= high)
    if not ok:
        raise ConfigError(f"{name} must be {allowed}, got {value!r}")
    return v


def integer(name: str, value, *, low: int | None = None, high: int | None = None, allow_none: bool = False) -> int | None:
    """``value`` as an int in ``[low, high]`` (booleans and floats are refused), else :class:`ConfigError`."""
    if value is None and allow_none:
        return None
    lo = "-inf" if low is None else str(low)
    hi = "inf" if high is None else str(high)
    if isinstance(value, bool) or not isinstance(value, Integral) or (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return int(value)


def seed(value) -> int:
    """A seed: an integer in ``[0, 2**31 - 1]`` (numpy's and JAX's PRNGs both accept it)."""
    return integer("seed", value, low=0, high=2**31 - 1)


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def output_dir(path: str | os.PathLike, what: str) -> Path:
    """Check, before any work, that ``path`` is or can become a writable folder (it is not created here)."""
    path = Path(path)
    existing = _nearest_existing(path)
    if existing.exists() and not existing.is_dir():
        raise OutputPathError(f"{what} {str(path)!r} must be a folder, but {str(existing)!r} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputPathError(f"{what} {str(path)!r} is not writable (no write permission on {str(existing)!r})")
    return path


def output_file(path: str | os.PathLike, what: str) -> Path:
    """Check, before any work, that a file can be written at ``path`` (its folder is or can become writable)."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{what} {str(path)!r} is a folder; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"{what} {str(path)!r} is not writable")
    output_dir(path.parent if str(path.parent) else Path("."), f"the folder of {what}")
    return path


def _concrete_nonfinite(tree) -> bool:
    import jax
    import numpy as np

    for a in jax.tree.leaves(tree):
        if isinstance(a, jax.core.Tracer) or not hasattr(a, "dtype") or a.dtype.kind not in "fc":
            continue
        if not np.all(np.isfinite(np.asarray(a))):
            return True
    return False


def relax_config(config, name: str) -> None:
    """``config`` is a :class:`dynlearn.RelaxConfig` (its own fields are checked when it is made)."""
    from .config import RelaxConfig

    if not isinstance(config, RelaxConfig):
        raise ConfigError(f"{name}: config must be a dynlearn.RelaxConfig (e.g. dynlearn.TRAINING), got {type(config).__name__}")


def relax_args(config, y0, save_ts, name: str) -> None:
    """The arguments of :func:`dynlearn.relax`: a :class:`RelaxConfig`, a finite initial state, save times in ``[0, t1]``."""
    from .errors import NonFiniteError

    relax_config(config, name)
    import jax

    from .errors import ShapeError

    sizes = [getattr(a, "size", 1) for a in jax.tree.leaves(y0)]
    if sizes and not any(sizes):
        raise ShapeError(f"{name}: the initial state y0 is empty (an empty batch?); give at least one sample")
    if _concrete_nonfinite(y0):
        raise NonFiniteError(f"{name}: the initial state y0 contains NaN or inf")
    if save_ts is not None and not _is_traced(save_ts):
        import numpy as np

        ts = np.asarray(save_ts, dtype=float)
        if ts.ndim != 1 or not np.all(np.isfinite(ts)) or np.any(ts < 0) or np.any(ts > config.t1) or np.any(np.diff(ts) < 0):
            raise ConfigError(f"{name}: save_ts must be a non-decreasing 1-d array of finite times in [0, t1 = {config.t1:g}], got {save_ts!r}")


def _is_traced(x) -> bool:
    import jax

    return any(isinstance(a, jax.core.Tracer) for a in jax.tree.leaves(x))


def simulate_args(t0, t1, dt0, max_steps, brownian_tol, y0, name: str) -> None:
    """The arguments of :func:`dynlearn.simulate`: finite times with ``t1 > t0``, a finite step ``dt0 > 0``."""
    from .errors import NonFiniteError

    if _is_traced((t0, t1, dt0)):
        return
    t0 = number(f"{name}: t0", t0)
    t1 = number(f"{name}: t1", t1)
    if not t1 > t0:
        raise ConfigError(f"{name}: t1 must be > t0 = {t0:g} (integration runs forward in time), got t1 = {t1:g}")
    number(f"{name}: dt0", dt0, low=0.0, low_open=True)
    integer(f"{name}: max_steps", max_steps, low=1, allow_none=True)
    number(f"{name}: brownian_tol", brownian_tol, low=0.0, low_open=True, allow_none=True)
    if _concrete_nonfinite(y0):
        raise NonFiniteError(f"{name}: the initial state y0 contains NaN or inf")
