"""One training loop for every learner: any optax optimiser, explicit keys, progress bar, checkpoints, xarray history.

A :class:`dynlearn.rules.Learner` says how to build its parameters around a network, how its :class:`Rule` turns a
batch into a descent-sign update, and how to predict; :func:`train` does the rest the same way for all of them.
The key of step ``k`` is ``fold_in(key(seed), k)``, so a run is reproducible from its seed alone.
"""

from __future__ import annotations

import dataclasses
import json
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

from .compiled_epoch import _STATUS_KEYS, PROGRESS, cached_epoch, make_step  # noqa: F401  (make_step: the public step)
from .data import Dataset
from . import runs, validation
from .dynamics import CONVERGED, collect_status, status_error
from .errors import ConfigError, DivergedError, NotConvergedError, ShapeError, UnknownNameError
from .models.base import Data
from .networks import Network, init_network
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
    if lr is None or isinstance(lr, bool) or not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ConfigError(f"lr must be a finite learning rate > 0, got {lr!r}")
    return OPTIMIZERS[optimizer](lr)


def _optimizer(optimizer, lr, weight_decay: float) -> optax.GradientTransformation:
    """:func:`make_optimizer`, then :func:`dynlearn.rules.feedback.with_weight_decay` when ``weight_decay`` > 0."""
    from .rules.feedback.kp import with_weight_decay

    opt = make_optimizer(optimizer, lr)
    validation.number("weight_decay", weight_decay, low=0.0)
    if weight_decay == 0:
        return opt
    if lr is None:
        raise ConfigError("weight_decay needs the learning rate lr (the decay per step is lr * weight_decay)")
    return with_weight_decay(opt, lr, weight_decay)


def _has_weights(params) -> bool:
    from .rules.feedback.kp import weight_mask

    return any(jax.tree.leaves(weight_mask(params)))


def evaluate(learner: Learner, params, x: np.ndarray, y: np.ndarray, *, batch_size: int = 512) -> dict[str, float]:
    """Accuracy (one-hot targets) and mean squared error of ``learner.predict`` on ``(x, y)``; a relaxation of the
    prediction that fails raises :class:`dynlearn.NotConvergedError` / :class:`dynlearn.DivergedError`."""
    if x.shape[0] == 0:
        raise ShapeError("cannot evaluate on an empty set")
    predict = _jitted_predict(learner)
    outs = []
    for i in range(0, x.shape[0], batch_size):
        out, status = predict(jnp.asarray(x[i : i + batch_size]), params)
        raise_for_step(predict, {k: float(v) for k, v in (status or {}).items()}, learner, f"predicting samples {i}..")
        outs.append(np.asarray(out))
    out = np.concatenate(outs)
    metrics = {"mse": float(np.mean(np.sum((out - y) ** 2, axis=-1)))}
    if y.shape[-1] > 1 and np.allclose(y.sum(-1), 1.0):
        metrics["accuracy"] = float(np.mean(out.argmax(-1) == y.argmax(-1)))
    return metrics


_PREDICT_CACHE: dict[int, Any] = {}


def _jitted_predict(learner: Learner):
    """``predict(x, params) -> (output, worst relaxation status or None)``, jitted once per learner."""
    key = id(learner.predict)
    if key not in _PREDICT_CACHE:
        relaxations: list = []

        @eqx.filter_jit
        def compiled(x, params):
            with collect_status() as sink:
                out = learner.predict(params, x)
            relaxations[:] = [(name, tol) for name, tol, _ in sink.entries]
            return out, sink.worst()

        def predict(x, params):
            return compiled(x, params)

        predict.relaxations = relaxations
        _PREDICT_CACHE[key] = predict
    return _PREDICT_CACHE[key]




def raise_for_step(step, metrics: dict[str, float], learner: Learner, context: str) -> dict[str, float]:
    """Raise the :class:`NotConvergedError` / :class:`DivergedError` of a step's worst relaxation (naming the model,
    ``context``, the time and the residual); return the metrics without the status entries."""
    info = {k: metrics.pop(k) for k in _STATUS_KEYS if k in metrics}
    if info and int(info["relax_status"]) != CONVERGED:
        name, tol = step.relaxations[int(info["relax_index"])]
        err = status_error(int(info["relax_status"]), f"{learner.name} ({name})", info["relax_time"], info["relax_residual"], None, tol, context)
        raise err
    return metrics


def init_params(learner: Learner, key, sizes: Sequence[int] | None = None, network: Network | None = None):
    """``learner.init(key, network)`` around ``network``, or around an MLP of layer widths ``sizes`` with the learner's
    activation and initialisation scheme (its ``defaults["activation"]`` and ``defaults["init"]``, see
    :func:`dynlearn.init_network`; Xavier-normal when the learner names none)."""
    k_net, k_rule = jax.random.split(key)
    if network is None:
        network = init_network(sizes, key=k_net, activation=learner.defaults.get("activation", "tanh"), scheme=learner.defaults.get("init", "xavier"))
    return learner.init(k_rule, network)


def _sizes_of(tree) -> tuple[int, ...] | None:
    """The layer widths of an MLP-shaped ``params``/``network`` (``None`` when it has no integer ``sizes``)."""
    for obj in (tree, getattr(tree, "network", None)):
        try:
            sizes = tuple(getattr(obj, "sizes", None) or ())
        except Exception:  # noqa: BLE001 - a custom module whose sizes are not a sequence
            continue
        if sizes and all(isinstance(s, (int, np.integer)) for s in sizes):
            return tuple(int(s) for s in sizes)
    return None


def _validate(learner, data, *, hidden, network, params, epochs, batch_size, seed, checkpoint_dir, checkpoint_every) -> tuple[int, ...] | None:
    """Check every argument of :func:`train` before any work; return the layer widths (``None``: a custom network)."""
    if not isinstance(learner, Learner):
        raise ConfigError(f"learner must be a dynlearn Learner (dynlearn.rules.get_learner(name)), got {type(learner).__name__}")
    if not isinstance(data, Dataset):
        raise ConfigError(f"data must be a dynlearn.data.Dataset (dynlearn.data.load(name)), got {type(data).__name__}")
    validation.integer("epochs", epochs, low=1)
    validation.integer("batch_size", batch_size, low=1)
    validation.seed(seed)
    validation.integer("checkpoint_every", checkpoint_every, low=1, allow_none=True)
    if data.x_train.shape[0] < batch_size:
        raise ShapeError(f"batch_size {batch_size} is larger than the training set ({data.x_train.shape[0]}); allowed: 1..{data.x_train.shape[0]}")
    if data.x_test.shape[0] == 0:
        raise ShapeError(f"data set {data.name!r} has an empty test set")
    if checkpoint_dir is not None:
        validation.output_dir(checkpoint_dir, "checkpoint_dir")
    if hidden is not None:
        widths = tuple(hidden) if not isinstance(hidden, (str, bytes)) and hasattr(hidden, "__iter__") else None
        if not widths or any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1 for h in widths):
            raise ConfigError(f"hidden must be a non-empty sequence of positive integer layer widths such as (128, 128), got {hidden!r}")
        hidden = tuple(int(h) for h in widths)
    if network is not None and params is not None:
        raise ConfigError("give network= or params=, not both")
    given = network if network is not None else params
    if given is None:
        return (data.n_features, *(hidden or (128, 128)), data.n_outputs)
    which = "network" if network is not None else "params"
    sizes = _sizes_of(given)
    if sizes is not None and hidden is not None and sizes[1:-1] != hidden:
        raise ConfigError(f"hidden={hidden} conflicts with the {which} given, whose hidden widths are {sizes[1:-1]}; leave hidden out")
    if sizes is not None and (sizes[0] != data.n_features or sizes[-1] != data.n_outputs):
        raise ShapeError(f"the {which} given has layer widths {sizes}, but {data.name!r} has {data.n_features} features and {data.n_outputs} outputs")
    return sizes


@dataclasses.dataclass
class _Loop:
    """The state of one training run between steps (what a checkpoint holds, and how to continue)."""

    learner: Learner
    data: Dataset
    step: Any
    k_steps: Any
    batch_size: int
    seed: int
    config: dict
    run_dir: Path | None
    checkpoint_every: int | None
    params: Any
    rule_state: Any
    opt_state: Any
    rows: list = dataclasses.field(default_factory=list)
    bar: Any = None
    x: Any = None  # the training set on the device
    y: Any = None

    def __post_init__(self):
        self.x, self.y = jnp.asarray(self.data.x_train), jnp.asarray(self.data.y_train)

    @property
    def n_batches(self) -> int:
        return self.data.x_train.shape[0] // self.batch_size

    def history(self) -> xr.Dataset:
        keys = sorted({k for r in self.rows for k in r})
        data_vars = {k: ("epoch", np.array([r.get(k, np.nan) for r in self.rows])) for k in keys}
        attrs = {"learner": self.learner.name, "data": self.data.name, "seed": self.seed,
                 "config": json.dumps(self.config, sort_keys=True, default=str)}
        return xr.Dataset(data_vars, coords={"epoch": np.arange(1, len(self.rows) + 1)}, attrs=attrs)

    def save(self, epoch: int, step: int, sums: dict, seconds: float) -> None:
        if self.run_dir is not None:
            position = {"epoch": epoch, "step": step, "sums": sums, "seconds": seconds}
            runs.save_checkpoint(self.run_dir, params=self.params, rule_state=self.rule_state, opt_state=self.opt_state,
                                 position=position, history=self.history(), config=self.config)

    def order(self, epoch: int) -> np.ndarray:
        """The batch order of ``epoch``, ``(n_batches, batch_size)`` sample indices: a function of the seed and epoch."""
        perm = np.random.default_rng(self.seed * 100_003 + epoch).permutation(self.data.x_train.shape[0])
        return perm[: self.n_batches * self.batch_size].reshape(self.n_batches, self.batch_size)

    def segment(self, epoch: int, order: np.ndarray, first: int, last: int) -> dict[str, float]:
        """Steps ``first..last-1`` of ``epoch`` as one compiled call; the metric sums, or the typed error of the first
        bad step (its update is not applied: the loop keeps the last good state)."""
        steps = jnp.arange(first, last, dtype=jnp.int32) + (epoch - 1) * self.n_batches
        PROGRESS["bar"] = self.bar
        try:
            out = self.step(self.params, self.rule_state, self.opt_state, self.x, self.y, jnp.asarray(order[first:last]), steps,
                            self.k_steps, progress=self.bar is not None)
            jax.block_until_ready(out[3])
        except (eqx.EquinoxRuntimeError, jax.errors.JaxRuntimeError) as e:  # a relaxation nested in vmap/inner jit
            lines = [ln.strip().removeprefix("_EquinoxRuntimeError: ") for ln in str(e).splitlines() if ": relaxation " in ln]
            if not lines:
                raise
            kind = DivergedError if "diverged" in lines[-1] else NotConvergedError
            raise kind(f"{self.learner.name} at epoch {epoch}, steps {first + 1}..{last}: {lines[-1]} (raised inside the compiled step)") from None
        finally:
            PROGRESS["bar"] = None
        self.params, self.rule_state, self.opt_state = out[:3]
        bad = {k: float(v) for k, v in out[4].items()}
        if bad["index"] >= 0:
            context = f"at epoch {epoch}, step {int(bad['index']) - (epoch - 1) * self.n_batches + 1}"
            raise_for_step(self.step, {k: v for k, v in bad.items() if k.startswith("relax_")}, self.learner, context)
            raise DivergedError(
                f"{self.learner.name}: non-finite update {context}; lower the learning rate or check the model's stability"
                + (f"; last good checkpoint in {self.run_dir}" if self.run_dir else "")
            )
        return {k: np.asarray(v, np.float64) for k, v in out[3].items()}

    def epoch(self, epoch: int, epochs: int, start_step: int = 0, sums: dict | None = None, seconds: float = 0.0) -> None:
        """Steps ``start_step..`` of ``epoch`` (in segments of ``checkpoint_every`` steps, else at once), then its row."""
        start, sums = time.perf_counter() - seconds, dict(sums or {})
        order = self.order(epoch)
        every = self.checkpoint_every or self.n_batches
        first = start_step
        while first < self.n_batches:
            last = min(self.n_batches, (first // every + 1) * every)
            for name, values in self.segment(epoch, order, first, last).items():
                for v in values.tolist():  # step by step, as an uninterrupted run adds them
                    sums[name] = sums.get(name, 0.0) + v
            if last < self.n_batches:
                self.save(epoch, last, sums, time.perf_counter() - start)
            first = last
        seconds = time.perf_counter() - start
        row = {f"train_{name}": v / self.n_batches for name, v in sums.items()}
        row.update({f"test_{name}": v for name, v in evaluate(self.learner, self.params, self.data.x_test, self.data.y_test).items()})
        if epoch == epochs:
            row.update({f"train_{name}": v for name, v in evaluate(self.learner, self.params, self.data.x_train, self.data.y_train).items()})
        row["seconds"] = seconds
        self.rows.append(row)
        if self.bar is not None:
            self.bar.set_postfix({name: f"{v:.4f}" for name, v in row.items() if name.startswith("test_")})
        self.save(epoch + 1, 0, {}, 0.0)


def train(
    learner: Learner,
    data: Dataset,
    *,
    hidden: Sequence[int] | None = None,
    network: Network | None = None,
    epochs: int = 5,
    batch_size: int = 64,
    optimizer: str | optax.GradientTransformation = "adam",
    lr: float | None = 1e-3,
    seed: int = 0,
    progress: bool = True,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    checkpoint_every: int | None = None,
    params=None,
    metadata: dict | None = None,
    weight_decay: float = 0.0,
) -> tuple[Any, xr.Dataset]:
    r"""Train ``learner`` on ``data`` and return ``(params, history)``.

    The parameters are ``params`` if given, else built around ``network`` (any :class:`dynlearn.Network`, e.g.
    :func:`dynlearn.networks.lenet5`) or an MLP ``(n_features, *hidden, n_outputs)`` (``hidden`` default ``(128, 128)``;
    with ``params``/``network`` leave it out, a conflicting ``hidden`` is an error). ``optimizer`` is any optax
    optimiser, or a name of :data:`OPTIMIZERS` used at rate ``lr``; ``weight_decay`` λ > 0 adds the decoupled decay
    :math:`-\eta\lambda W` on the weight arrays after it (:func:`dynlearn.rules.feedback.with_weight_decay`; needs ``lr``). ``history`` is an :class:`xarray.Dataset` over
    ``epoch`` (train metrics, test and final train accuracy/MSE, seconds per epoch) whose ``config`` attribute holds
    the run's configuration as JSON. Every argument is checked before any work (:class:`dynlearn.ConfigError`).

    **Checkpoints and resuming.** With ``checkpoint_dir`` (a run folder, see :mod:`dynlearn.runs`) the configuration
    goes to ``config.json`` and params, optimiser state, rule state, position (epoch, step) and history are written
    atomically as one checkpoint after every epoch (and every ``checkpoint_every`` steps). ``resume=True`` continues
    from the latest checkpoint of ``checkpoint_dir`` (with the same learner, data and arguments; ``epochs`` may grow)
    and ends bit-identical to an uninterrupted run: the batch order of epoch ``e`` and the key of step ``k``
    (``fold_in(key(seed), k)``) depend on the seed alone. Without a checkpoint it starts from the beginning.
    :func:`dynlearn.load_run` reads a run folder back.

    **Errors.** A relaxation of the rule that does not converge or diverges (inside the jitted step) raises
    :class:`dynlearn.NotConvergedError` / :class:`dynlearn.DivergedError` naming the model, epoch, step, time and
    residual; a non-finite update raises :class:`DivergedError`; both after the last good checkpoint.
    """
    sizes = _validate(learner, data, hidden=hidden, network=network, params=params, epochs=epochs, batch_size=batch_size,
                      seed=seed, checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every)
    opt = _optimizer(optimizer, lr, weight_decay)
    given = network if network is not None else params
    config = runs.run_config(learner, data, sizes=sizes, network=None if sizes is not None else given, optimizer=optimizer, lr=lr,
                             batch_size=batch_size, epochs=epochs, seed=seed, checkpoint_every=checkpoint_every, metadata=metadata,
                             weight_decay=weight_decay)
    k_init, k_rule, k_steps = jax.random.split(jax.random.key(seed), 3)
    if params is None:
        params = init_params(learner, k_init, sizes if network is None else None, network)
    if weight_decay > 0 and not _has_weights(params):
        raise ConfigError(f"weight_decay: learner {learner.name!r} has no weight arrays (leaves named 'weight') to decay")
    run_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if run_dir is not None:
        runs.start(run_dir, config, resume=resume)
    loop = _Loop(learner, data, cached_epoch(learner, optimizer, lr, opt, weight_decay), k_steps, batch_size, seed, config, run_dir, checkpoint_every,
                 params, learner.rule.init(k_rule, params), opt.init(eqx.filter(params, eqx.is_inexact_array)))
    position = {"epoch": 1, "step": 0, "sums": {}, "seconds": 0.0}
    saved = runs.load_checkpoint(run_dir, params=loop.params, rule_state=loop.rule_state, opt_state=loop.opt_state) if resume and run_dir else None
    if saved is not None:
        loop.params, loop.rule_state, loop.opt_state, position, hist = saved
        loop.rows = runs.history_rows(hist)
    if progress:
        from tqdm.auto import tqdm

        done = (position["epoch"] - 1) * loop.n_batches + position["step"]
        loop.bar = tqdm(total=epochs * loop.n_batches, initial=min(done, epochs * loop.n_batches), desc=f"train {learner.name}", unit="batch")
    try:
        for epoch in range(position["epoch"], epochs + 1):
            first = epoch == position["epoch"]
            loop.epoch(epoch, epochs, position["step"] if first else 0, position["sums"] if first else None, position["seconds"] if first else 0.0)
    finally:
        if loop.bar is not None:
            loop.bar.close()
    return loop.params, loop.history()
