r"""A training point of a sweep, measured on the four axes of Gupta et al. (arXiv 2212.04614).

One run of :func:`dynlearn.learning.train` on a fraction of the training set, then, on the trained parameters:

* **epoch budget** — test accuracy after every epoch, and the first epoch reaching 95% of the final accuracy;
* **sparsity** — test accuracy after *global magnitude pruning* (Gupta et al. 2022, arXiv 2209.14624): all weight
  matrices are ranked together by :math:`|w|` and the smallest fraction :math:`p` is set to zero, except that every
  layer keeps at least ``prune_min_fraction`` of its weights (its largest ones), so no layer is cut off;
* **robustness** — test accuracy on inputs :math:`x + \sigma \varepsilon`, :math:`\varepsilon \sim N(0, I)`, with a
  fixed noise key per point.

The training-set fraction is the fourth axis (a parameter of the point, usually swept).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ..errors import ConfigError
from .. import draws

#: the parameters a ``kind = "train"`` point takes
TRAIN_PARAMETERS = (
    "learner", "data", "hidden", "epochs", "batch_size", "lr", "optimizer", "train_fraction",
    "prune", "prune_min_fraction", "noise", "n_test",
)


def weight_leaves(params) -> list[bool]:
    """Which leaves of ``params`` (in ``jax.tree.leaves`` order) are prunable weights: the matrices and kernels
    (``ndim >= 2``) of the first :class:`dynlearn.Network` inside ``params`` (the predicting network of a learner
    with feedback weights), or of all of ``params`` when it holds no Network (a microcircuit)."""
    from ..networks import Network

    is_net = lambda n: isinstance(n, Network)  # noqa: E731
    paths = [p for p, leaf in jax.tree_util.tree_flatten_with_path(params, is_leaf=is_net)[0] if is_net(leaf)]
    prefix = paths[0] if paths else ()
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return [
        tuple(p[: len(prefix)]) == tuple(prefix) and hasattr(a, "ndim") and a.ndim >= 2 and jnp.issubdtype(a.dtype, jnp.floating)
        for p, a in leaves
    ]


def global_magnitude_prune(params, fraction: float, *, min_fraction: float = 0.02):
    """Zero the ``fraction`` of smallest-|w| weights over all weight matrices at once, keeping in every layer at least
    ``ceil(min_fraction * size)`` of its largest weights (global magnitude pruning with a per-layer minimum)."""
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"prune fraction must be in [0, 1), got {fraction!r}")
    if fraction == 0.0:
        return params
    leaves, treedef = jax.tree.flatten(params)
    mask = weight_leaves(params)
    mags = np.concatenate([np.abs(np.asarray(a)).ravel() for a, m in zip(leaves, mask) if m])
    threshold = np.quantile(mags, fraction) if mags.size else 0.0
    out = []
    for a, m in zip(leaves, mask):
        if not m:
            out.append(a)
            continue
        mag = np.abs(np.asarray(a))
        keep_min = max(1, math.ceil(min_fraction * mag.size))  # at least one weight per layer
        layer_threshold = min(threshold, np.sort(mag.ravel())[-keep_min])
        out.append(jnp.where(jnp.asarray(mag >= layer_threshold), a, 0.0).astype(a.dtype))
    return jax.tree.unflatten(treedef, out)


def subsample(dataset, fraction: float, seed: int):
    """The first ``round(fraction * n)`` training samples of a seeded permutation (the test set is unchanged)."""
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"train_fraction must be in (0, 1], got {fraction!r}")
    n = dataset.x_train.shape[0]
    idx = np.random.default_rng(10_007 + seed).permutation(n)[: max(1, round(fraction * n))]
    sub = lambda a: None if a is None else a[idx]  # noqa: E731
    return dataclasses.replace(dataset, x_train=dataset.x_train[idx], y_train=dataset.y_train[idx], labels_train=sub(dataset.labels_train))


def epochs_to_fraction(acc: np.ndarray, fraction: float = 0.95) -> int:
    """The first epoch (1-based) whose accuracy reaches ``fraction`` of the final one."""
    return int(np.argmax(acc >= fraction * acc[-1]) + 1)


def _var(values, dims, long_name, units="1"):
    return xr.DataArray(np.asarray(values, dtype=float), dims=dims, attrs={"long_name": long_name, "units": units})


def train_point(
    *,
    learner: str,
    seed: int,
    data: str = "digits",
    hidden=(32,),
    epochs: int = 3,
    batch_size: int = 32,
    lr: float | None = None,
    optimizer: str = "adam",
    train_fraction: float = 1.0,
    prune=(0.0, 0.5, 0.8, 0.9, 0.95),
    prune_min_fraction: float = 0.02,
    noise=(0.0, 0.25, 0.5, 1.0),
    n_test: int | None = None,
) -> xr.Dataset:
    """Train ``learner`` once and measure the four axes; an :class:`xarray.Dataset` over ``epoch``, ``prune``, ``noise``."""
    from ..data import load
    from ..learning import evaluate, train
    from ..rules import get_learner

    lrn = get_learner(learner)
    dataset = subsample(load(data), float(train_fraction), seed)
    if n_test is not None:
        dataset = dataclasses.replace(dataset, x_test=dataset.x_test[:n_test], y_test=dataset.y_test[:n_test],
                                      labels_test=None if dataset.labels_test is None else dataset.labels_test[:n_test])
    lr = lrn.defaults.get("lr", 1e-3) if lr is None else float(lr)
    params, hist = train(lrn, dataset, hidden=tuple(hidden), epochs=int(epochs), batch_size=int(batch_size), lr=lr,
                         optimizer=optimizer, seed=seed, progress=False)
    metric = "test_accuracy" if "test_accuracy" in hist else "test_mse"
    acc = np.asarray(hist[metric])
    pruned = [evaluate(lrn, global_magnitude_prune(params, float(p), min_fraction=prune_min_fraction), dataset.x_test, dataset.y_test)
              for p in prune]
    eps = np.asarray(draws.normal(jax.random.key(7_919 + seed), dataset.x_test.shape), dataset.x_test.dtype)
    noisy = [evaluate(lrn, params, dataset.x_test + float(s) * eps, dataset.y_test) for s in noise]
    name = metric.removeprefix("test_")
    return xr.Dataset(
        {
            "accuracy_per_epoch": _var(acc, ("epoch",), f"test {name} after each epoch"),
            "final_accuracy": _var(acc[-1], (), f"test {name} after the last epoch"),
            "epochs_to_95": _var(epochs_to_fraction(acc), (), "first epoch reaching 95% of the final test accuracy", "epoch"),
            "pruned_accuracy": _var([m[name] for m in pruned], ("prune",), f"test {name} after global magnitude pruning"),
            "noisy_accuracy": _var([m[name] for m in noisy], ("noise",), f"test {name} with Gaussian input noise"),
            "seconds_per_epoch": _var(np.asarray(hist.seconds).mean(), (), "wall time per training epoch", "s"),
        },
        coords={
            "epoch": np.arange(1, len(acc) + 1),
            "prune": xr.DataArray(np.asarray(prune, float), dims="prune", attrs={"long_name": "fraction of weights pruned", "units": "1"}),
            "noise": xr.DataArray(np.asarray(noise, float), dims="noise", attrs={"long_name": "input noise sigma", "units": "1"}),
        },
    )
