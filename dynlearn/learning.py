"""One training loop for every learner: any optax optimiser, explicit keys, progress bar, checkpoints, xarray history.

A :class:`dynlearn.rules.Learner` says how to build its parameters around a network, how its :class:`Rule` turns a
batch into a descent-sign update, and how to predict; :func:`train` does the rest the same way for all of them.
The key of step ``k`` is ``fold_in(key(seed), k)``, so a run is reproducible from its seed alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import xarray as xr

from .data import Dataset, batches
from .errors import ConfigError, DivergedError, ShapeError, UnknownNameError
from .models.base import Data
from .networks import Network, init_network
from .results import atomic_write, save_dataset
from .rules.base import Learner

#: optimiser shortcuts of ``train(optimizer=...)`` and ``dynlearn train --optimizer``
OPTIMIZERS = {
    "adam": optax.adam,
    "adamw": optax.adamw,
    "sgd": optax.sgd,
    "momentum": lambda lr: optax.sgd(lr, momentum=0.9),
    "rmsprop": optax.rmsprop,
}


def make_optimizer(optimizer: str | optax.GradientTransformation, lr: float | None = None) -> optax.GradientTransformation:
    """An optax optimiser: given as one (``optax.adamw(1e-3)``), or by a name of :data:`OPTIMIZERS` at rate ``lr``."""
    if isinstance(optimizer, optax.GradientTransformation):
        return optimizer
    if optimizer not in OPTIMIZERS:
        raise UnknownNameError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)} or pass an optax optimiser")
    if lr is None or not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ConfigError(f"lr must be a finite learning rate > 0, got {lr!r}")
    return OPTIMIZERS[optimizer](lr)


def evaluate(learner: Learner, params, x: np.ndarray, y: np.ndarray, *, batch_size: int = 512) -> dict[str, float]:
    """Accuracy (one-hot targets) and mean squared error of ``learner.predict`` on ``(x, y)``."""
    if x.shape[0] == 0:
        raise ShapeError("cannot evaluate on an empty set")
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
    """The jitted step ``(params, rule_state, opt_state, x, y, key) -> (params, rule_state, opt_state, metrics)``."""

    @eqx.filter_jit
    def step(params, rule_state, opt_state, x, y, key):
        grads, rule_state, metrics = learner.rule.update(params, rule_state, Data(x, y), key)
        trainable = eqx.filter(params, eqx.is_inexact_array)
        updates, opt_state = optimizer.update(eqx.filter(grads, eqx.is_inexact_array), opt_state, trainable)
        return eqx.apply_updates(params, updates), rule_state, opt_state, metrics

    return step


def init_params(learner: Learner, key, sizes: Sequence[int] | None = None, network: Network | None = None):
    """``learner.init(key, network)`` around ``network``, or around an MLP of layer widths ``sizes`` with the learner's
    activation (its ``defaults["activation"]``)."""
    k_net, k_rule = jax.random.split(key)
    if network is None:
        network = init_network(sizes, key=k_net, activation=learner.defaults.get("activation", "tanh"))
    return learner.init(k_rule, network)


def _validate(data: Dataset, epochs, batch_size, hidden) -> None:
    for name, v in (("epochs", epochs), ("batch_size", batch_size)):
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            raise ConfigError(f"{name} must be an integer >= 1, got {v!r}")
    if any((not isinstance(h, (int, np.integer))) or h < 1 for h in hidden):
        raise ConfigError(f"hidden widths must be positive integers, got {hidden!r}")
    if data.x_train.shape[0] < batch_size:
        raise ShapeError(f"batch_size {batch_size} is larger than the training set ({data.x_train.shape[0]})")
    if data.x_test.shape[0] == 0:
        raise ShapeError(f"data set {data.name!r} has an empty test set")


def train(
    learner: Learner,
    data: Dataset,
    *,
    hidden: tuple[int, ...] = (128, 128),
    network: Network | None = None,
    epochs: int = 5,
    batch_size: int = 64,
    optimizer: str | optax.GradientTransformation = "adam",
    lr: float | None = 1e-3,
    seed: int = 0,
    progress: bool = True,
    checkpoint_dir: str | Path | None = None,
    params=None,
) -> tuple[Any, xr.Dataset]:
    """Train ``learner`` on ``data`` and return ``(params, history)``.

    The parameters are ``params`` if given, else built around ``network`` (any :class:`dynlearn.Network`, e.g.
    :func:`dynlearn.networks.lenet5`) or an MLP ``(n_features, *hidden, n_outputs)``. ``optimizer`` is any optax
    optimiser, or a name of :data:`OPTIMIZERS` used at rate ``lr``. ``history`` is an :class:`xarray.Dataset` over
    ``epoch`` (train metrics, test and final train accuracy/MSE, seconds per epoch). With ``checkpoint_dir`` the
    parameters (``params.eqx``) and the history (``history.nc``) are written atomically after every epoch. A
    non-finite update raises :class:`DivergedError` naming the epoch and step, after the last good checkpoint.
    """
    _validate(data, epochs, batch_size, tuple(hidden))
    opt = make_optimizer(optimizer, lr)
    key = jax.random.key(seed)
    k_init, k_rule, k_steps = jax.random.split(key, 3)
    if params is None:
        params = init_params(learner, k_init, (data.n_features, *hidden, data.n_outputs), network)
    rule_state = learner.rule.init(k_rule, params)
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
            k = jax.random.fold_in(k_steps, (epoch - 1) * n_batches + i)
            new_params, new_rule_state, new_opt_state, metrics = step(params, rule_state, opt_state, xb, yb, k)
            metrics = {name: float(v) for name, v in metrics.items()}
            if not all(np.isfinite(v) for v in metrics.values()) or not _finite(new_params):
                raise DivergedError(
                    f"{learner.name}: non-finite update at epoch {epoch}, step {i + 1} (metrics {metrics}); "
                    "lower the learning rate or check the model's stability"
                    + (f"; last good checkpoint in {checkpoint_dir}" if checkpoint_dir else "")
                )
            params, rule_state, opt_state = new_params, new_rule_state, new_opt_state
            for name, v in metrics.items():
                sums[name] = sums.get(name, 0.0) + v
            if bar is not None:
                bar.update(1)
        seconds = time.perf_counter() - start
        row = {f"train_{name}": v / n_batches for name, v in sums.items()}
        row.update({f"test_{name}": v for name, v in evaluate(learner, params, data.x_test, data.y_test).items()})
        if epoch == epochs:
            row.update({f"train_{name}": v for name, v in evaluate(learner, params, data.x_train, data.y_train).items()})
        row["seconds"] = seconds
        rows.append(row)
        if bar is not None:
            bar.set_postfix({name: f"{v:.4f}" for name, v in row.items() if name.startswith("test_")})
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
