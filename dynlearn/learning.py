"""One training loop for every learner: optax updates, progress bar, checkpoints, xarray history.

A :class:`dynlearn.models.Learner` says how to compute a batch's update (predictive coding's local
rule, an EP estimate, a feedback-alignment rule, plain backprop, ...); :func:`train` does the rest
the same way for all of them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import xarray as xr

from .data import Dataset, batches
from .errors import DivergedError, ShapeError
from .models.registry import Learner
from .results import atomic_write, save_dataset


def make_optimizer(name: str, lr: float) -> optax.GradientTransformation:
    """``adam``, ``sgd`` or ``momentum`` (SGD with momentum 0.9) at learning rate ``lr``."""
    table = {"adam": lambda: optax.adam(lr), "sgd": lambda: optax.sgd(lr), "momentum": lambda: optax.sgd(lr, momentum=0.9)}
    if name not in table:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(table)}")
    return table[name]()


def evaluate(learner: Learner, params, x: np.ndarray, y: np.ndarray, *, batch_size: int = 512) -> dict[str, float]:
    """Accuracy (one-hot targets) and mean squared error of ``learner.predict`` on ``(x, y)``."""
    predict = _jitted_predict(learner)
    outs = [np.asarray(predict(params, jnp.asarray(x[i : i + batch_size]))) for i in range(0, x.shape[0], batch_size)]
    out = np.concatenate(outs)
    metrics = {"mse": float(np.mean(np.sum((out - y) ** 2, axis=-1)))}
    if y.shape[-1] > 1 and np.allclose(y.sum(-1), 1.0):
        metrics["accuracy"] = float(np.mean(out.argmax(-1) == y.argmax(-1)))
    return metrics


_PREDICT_CACHE: dict[int, Any] = {}


def _jitted_predict(learner: Learner):
    key = id(learner.predict)
    if key not in _PREDICT_CACHE:
        _PREDICT_CACHE[key] = eqx.filter_jit(learner.predict)
    return _PREDICT_CACHE[key]


def make_step(learner: Learner, optimizer: optax.GradientTransformation):
    """The jitted training step ``(params, opt_state, x, y) -> (params, opt_state, metrics)``."""

    @eqx.filter_jit
    def step(params, opt_state, x, y):
        grads, metrics = learner.update(params, x, y)
        updates, opt_state = optimizer.update(eqx.filter(grads, eqx.is_inexact_array), opt_state, eqx.filter(params, eqx.is_inexact_array))
        return eqx.apply_updates(params, updates), opt_state, metrics

    return step


def train(
    learner: Learner,
    data: Dataset,
    *,
    hidden: tuple[int, ...] = (128, 128),
    epochs: int = 5,
    batch_size: int = 64,
    optimizer: str = "adam",
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
    checkpoint_dir: str | Path | None = None,
    params=None,
) -> tuple[Any, xr.Dataset]:
    """Train ``learner`` on ``data`` and return ``(params, history)``.

    ``history`` is an :class:`xarray.Dataset` over ``epoch`` (train loss metrics, test and train
    accuracy/MSE, seconds per epoch). With ``checkpoint_dir`` the parameters (``params.eqx``) and the
    history (``history.nc``) are written atomically after every epoch, so a crash loses at most one
    epoch. A non-finite update raises :class:`DivergedError` naming the epoch and step, after the last
    good checkpoint has been kept.
    """
    if data.x_train.shape[0] < batch_size:
        raise ShapeError(f"batch_size {batch_size} is larger than the training set ({data.x_train.shape[0]})")
    sizes = (data.n_features, *hidden, data.n_outputs)
    key = jax.random.key(seed)
    if params is None:
        params = learner.init(key, sizes)
    opt = make_optimizer(optimizer, lr)
    opt_state = opt.init(eqx.filter(params, eqx.is_inexact_array))
    step = make_step(learner, opt)
    n_batches = data.x_train.shape[0] // batch_size
    rows: list[dict[str, float]] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs * n_batches, desc=f"train {learner.name}", unit="batch")
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        sums: dict[str, float] = {}
        for i, (xb, yb) in enumerate(batches(data.x_train, data.y_train, batch_size, seed=seed * 100_003 + epoch)):
            new_params, new_state, metrics = step(params, opt_state, xb, yb)
            metrics = {k: float(v) for k, v in metrics.items()}
            if not all(np.isfinite(v) for v in metrics.values()) or not _finite(new_params):
                raise DivergedError(
                    f"{learner.name}: non-finite update at epoch {epoch}, step {i + 1} (metrics {metrics}); "
                    "lower the learning rate or check the model's stability"
                    + (f"; last good checkpoint in {checkpoint_dir}" if checkpoint_dir else "")
                )
            params, opt_state = new_params, new_state
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v
            if bar is not None:
                bar.update(1)
        seconds = time.perf_counter() - start
        row = {f"train_{k}": v / n_batches for k, v in sums.items()}
        row.update({f"test_{k}": v for k, v in evaluate(learner, params, data.x_test, data.y_test).items()})
        row.update({f"train_{k}": v for k, v in evaluate(learner, params, data.x_train, data.y_train).items()} if epoch == epochs else {})
        row["seconds"] = seconds
        rows.append(row)
        if bar is not None:
            bar.set_postfix({k: f"{v:.4f}" for k, v in row.items() if k.startswith("test_")})
        if checkpoint_dir is not None:
            _checkpoint(checkpoint_dir, params, _history(rows, learner, data, seed))
    if bar is not None:
        bar.close()
    return params, _history(rows, learner, data, seed)


def _finite(tree) -> bool:
    return all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(eqx.filter(tree, eqx.is_inexact_array)))


def _history(rows: list[dict[str, float]], learner: Learner, data: Dataset, seed: int) -> xr.Dataset:
    keys = sorted({k for r in rows for k in r})
    data_vars = {k: ("epoch", np.array([r.get(k, np.nan) for r in rows])) for k in keys}
    return xr.Dataset(
        data_vars, coords={"epoch": np.arange(1, len(rows) + 1)}, attrs={"learner": learner.name, "data": data.name, "seed": seed}
    )


def _checkpoint(folder: Path, params, history: xr.Dataset) -> None:
    atomic_write(folder / "params.eqx", lambda tmp: eqx.tree_serialise_leaves(tmp, params))
    save_dataset(history, folder / "history.nc")
