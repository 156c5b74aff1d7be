"""BioTorch's Fashion-MNIST LeNet table reproduced on dynlearn's LeNet-5, rule by rule.

Sanfiz & Akrout (2021), "Benchmarking the accuracy and robustness of feedback alignment algorithms"
(arXiv 2108.13446), report the top-1 test error of LeNet on Fashion-MNIST trained by backprop and five
feedback rules, on a 50k/10k train/validation split, for the model of the best validation epoch:
BP 9.20, FA 13.06, DFA 12.81, uSF 9.69, brSF 10.02, frSF 9.61 %.

:func:`train_with_validation` runs that protocol for one rule with :func:`dynlearn.learning.train`: the last
``n_validation`` training images are held out, every epoch is scored on the validation and the test set (the
epochs are trained one call at a time, resuming from the run's checkpoint, so the run is the same as one
uninterrupted run), and the test error of the best validation epoch is reported.
"""

from __future__ import annotations

import dataclasses
import numbers
import tempfile

import numpy as np
import xarray as xr

from ..errors import ConfigError
from . import register_figure
from ._plot import new_figure, verdict_title

#: BioTorch's top-1 test error (%) of LeNet on Fashion-MNIST, best validation model of a 50k/10k split
BIOTORCH_FASHION_ERROR = {"bp": 9.20, "fa": 13.06, "dfa": 12.81, "usf": 9.69, "brsf": 10.02, "frsf": 9.61}
#: the distance (points of test error) within which each measured rule should land
WITHIN_POINTS = 1.0
#: quick: a smoke version of the protocol (2560 training images, 512 of them held out, 2 epochs; one rule of each
#: kind, since compiling LeNet's step is most of its time): not comparable with the published numbers
QUICK = dict(n_train=2560, n_validation=512, n_test=1024, epochs=2, rules=("bp", "fa", "usf"))
#: full: the paper's protocol (60k training images, the last 10k held out for validation, the 10k test set); 30
#: epochs, since at 15 the slow rules stopped before their best validation epoch (FA 19, DFA and brSF 23, measured)
FULL = dict(n_train=None, n_validation=10000, n_test=None, epochs=30, rules=tuple(BIOTORCH_FASHION_ERROR))
#: the training setting of every rule (the same LeNet-5 and initial weights for each)
SETTING = dict(lr=1e-3, batch_size=64, loss="ce", activation="tanh")
#: how each rule is written in the paper
LABELS = {"bp": "BP", "fa": "FA", "dfa": "DFA", "usf": "uSF", "brsf": "brSF", "frsf": "frSF"}


def split_validation(data, n_validation: int):
    """``(fit, (x_test, y_test))``: ``fit`` trains on all but the last ``n_validation`` training images and carries
    them as its test set (the validation set); ``(x_test, y_test)`` is the original test set, kept apart."""
    if isinstance(n_validation, bool) or not isinstance(n_validation, numbers.Integral):
        raise ConfigError(f"n_validation must be an integer, got {n_validation!r}")
    cut = data.x_train.shape[0] - n_validation
    if not 0 < cut < data.x_train.shape[0]:
        raise ConfigError(f"n_validation must be in (0, {data.x_train.shape[0]}), got {n_validation}")
    labels = data.labels_train
    fit = dataclasses.replace(
        data, x_train=data.x_train[:cut], y_train=data.y_train[:cut], labels_train=None if labels is None else labels[:cut],
        x_test=data.x_train[cut:], y_test=data.y_train[cut:], labels_test=None if labels is None else labels[cut:],
    )
    return fit, (data.x_test, data.y_test)


def best_validation_epoch(validation_accuracy) -> int:
    """The 0-based index of the epoch with the highest validation accuracy (the first of ties)."""
    return int(np.argmax(np.asarray(validation_accuracy)))


def train_with_validation(rule: str, data, *, n_validation: int, epochs: int, seed: int = 0, lr: float = 1e-3,
                          batch_size: int = 64, loss: str = "ce", activation: str = "tanh", report=None) -> dict:
    """Train ``rule`` on a LeNet-5 epoch by epoch; per epoch, validation and test accuracy and seconds.

    Returns ``{"validation_accuracy": [...], "test_accuracy": [...], "seconds": [...], "best_epoch": e,
    "test_error_at_best": %, "train_accuracy": final}`` where ``e`` (1-based) is the epoch of the best validation accuracy (the first if tied).
    ``report``, if given, is called with one line per epoch (a long run shows where it is).
    """
    import jax

    from ..learning import evaluate, train
    from ..networks import lenet5
    from ..rules import get_learner

    if not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"epochs must be an integer >= 1, got {epochs!r}")
    fit, (x_test, y_test) = split_validation(data, n_validation)  # checks n_validation before anything is built
    learner = get_learner(rule, activation=activation, loss=loss)
    network = lenet5(key=jax.random.key(seed), activation=activation, in_shape=data.sample_shape)
    val, test, seconds = [], [], []
    with tempfile.TemporaryDirectory() as run_dir:
        for epoch in range(1, epochs + 1):
            params, hist = train(learner, fit, network=network, epochs=epoch, batch_size=batch_size, lr=lr, seed=seed,
                                 progress=False, checkpoint_dir=run_dir, resume=epoch > 1)
            val.append(float(hist.test_accuracy.values[-1]))
            test.append(evaluate(learner, params, x_test, y_test)["accuracy"])
            seconds.append(float(hist.seconds.values[-1]))
            if report is not None:
                report(f"{rule} epoch {epoch}/{epochs}: validation {100 * (1 - val[-1]):.2f} %, test {100 * (1 - test[-1]):.2f} % error, {seconds[-1]:.1f} s")
    best = best_validation_epoch(val)
    return {"validation_accuracy": val, "test_accuracy": test, "seconds": seconds, "best_epoch": best + 1,
            "test_error_at_best": 100 * (1 - test[best]), "train_accuracy": float(hist.train_accuracy.values[-1])}


def biotorch_table(*, n_train, n_validation, n_test, epochs, seed: int = 0, rules=tuple(BIOTORCH_FASHION_ERROR), report=None) -> xr.Dataset:
    """Every rule of :data:`BIOTORCH_FASHION_ERROR` through :func:`train_with_validation` on Fashion-MNIST, as a
    Dataset over ``rule`` (and ``epoch``) with BioTorch's number beside each measured one."""
    from ..data import load

    data = load("fashion_mnist", n_train=n_train, n_test=n_test).as_images((1, 28, 28))
    rows = [train_with_validation(r, data, n_validation=n_validation, epochs=epochs, seed=seed, report=report, **SETTING) for r in rules]
    curve = lambda key: (("rule", "epoch"), 100 * (1 - np.array([r[key] for r in rows])))  # noqa: E731
    return xr.Dataset(
        {
            "validation_error": curve("validation_accuracy"),
            "test_error": curve("test_accuracy"),
            "seconds": (("rule", "epoch"), np.array([r["seconds"] for r in rows])),
            "best_epoch": ("rule", np.array([r["best_epoch"] for r in rows])),
            "test_error_at_best": ("rule", np.array([r["test_error_at_best"] for r in rows])),
            "biotorch_test_error": ("rule", np.array([BIOTORCH_FASHION_ERROR[r] for r in rules])),
        },
        coords={"rule": list(rules), "epoch": np.arange(1, epochs + 1)},
        attrs={"n_train": data.x_train.shape[0] - n_validation, "n_validation": n_validation, "n_test": data.x_test.shape[0],
               "epochs": epochs, "seed": seed, **{k: str(v) for k, v in SETTING.items()}, "optimizer": "adam",
               "source": "Sanfiz & Akrout 2021 (arXiv 2108.13446), Benchmarks.md, F-MNIST LeNet"},
    )


def _ordering(values, names) -> str:
    return " < ".join(n for _, n in sorted(zip(values, names)))


@register_figure("biotorch_lenet_fashion", "BioTorch's Fashion-MNIST LeNet table (BP, FA, DFA, uSF, brSF, frSF): test error at the best validation epoch, measured beside published, and the validation curves")
def fig_biotorch_lenet_fashion(quick: bool = True, seed: int = 0):
    config = QUICK if quick else FULL
    ds = biotorch_table(**config, seed=seed, report=None if quick else (lambda line: print(line, flush=True)))
    rules = list(ds.rule.values)
    names = [LABELS.get(r, r) for r in rules]
    measured, published = ds.test_error_at_best.values, ds.biotorch_test_error.values
    fig, (a, b) = new_figure(2, width=5.0, height=3.8)
    x = np.arange(len(rules))
    a.bar(x - 0.2, published, 0.4, color="0.6", label="BioTorch (published)")
    a.bar(x + 0.2, measured, 0.4, color="tab:blue", label="dynlearn (measured)")
    a.errorbar(x - 0.2, published, yerr=WITHIN_POINTS, fmt="none", ecolor="tab:red", capsize=3, lw=1, label=f"published ± {WITHIN_POINTS:g} point")
    for i, m in enumerate(measured):
        a.text(i + 0.2, m, f"{m:.2f}", ha="center", va="bottom", fontsize=6.5)
    a.set_xticks(x, names, fontsize=8)
    a.set(ylabel="test error (%) at the best validation epoch", ylim=(0, 1.35 * max(measured.max(), published.max())))
    gap = np.abs(measured - published)
    scale = f"{ds.attrs['n_train']}/{ds.attrs['n_validation']} train/validation, {ds.epoch.size} epochs, Adam {SETTING['lr']:g}, {SETTING['activation']}"
    if quick:
        claim = "quick run (smoke test, too small to compare with BioTorch; --full runs the paper's protocol)"
    else:
        claim = f"every rule within {gap.max():.2f} points of BioTorch (worst {names[int(np.argmax(gap))]}; bound {WITHIN_POINTS:g})"
    verdict_title(a, f"{claim}\n{scale}", None if quick else bool(gap.max() <= WITHIN_POINTS))
    a.legend(fontsize=7, loc="upper left", ncol=2)
    for i, r in enumerate(rules):
        b.plot(ds.epoch, ds.validation_error.sel(rule=r), "-o", ms=3, color=f"C{i}", label=names[i])
        e = int(ds.best_epoch.sel(rule=r))
        b.plot([e], [float(ds.validation_error.sel(rule=r, epoch=e))], "*", ms=9, color=f"C{i}")
    b.set(xlabel="epoch", ylabel="validation error (%)")
    b.set_xticks(ds.epoch.values[:: max(1, ds.epoch.size // 8)])
    verdict_title(b, f"ordering measured: {_ordering(measured, names)}\npublished: {_ordering(published, names)}  (★ best validation epoch)", None)
    b.legend(fontsize=7, ncol=2)
    return fig, ds, {**config, **SETTING, "seed": seed, "quick": quick}
