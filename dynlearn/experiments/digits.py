"""scikit-learn digits: the steady-state microcircuit learner (random top-down = FA, or top-down = W^T) against backprop."""

from __future__ import annotations

import time

import numpy as np
import xarray as xr

#: each learner's best learning rate of {3e-3, 1e-2, 3e-2} after 40 epochs (seed 0)
DIGITS_LR = {"microcircuit": 3e-2, "microcircuit_bp": 3e-2, "bp": 3e-2}


def digits_experiment(*, quick: bool = True, seed: int = 0, epochs: int | None = None, lrs: dict | None = None):
    """scikit-learn digits, 64-64-10: the microcircuit learner (steady-state ODE inference; random top-down = FA, or
    top-down = W^T) vs BP, same optimiser (Adam, batch 32). Learning rates: :data:`DIGITS_LR`."""
    from ..data import load_digits
    from ..learning import train
    from ..rules import get_learner

    data = load_digits(seed=seed)
    epochs = epochs or (2 if quick else 40)
    lrs = {**DIGITS_LR, **(lrs or {})}
    hidden = (64,)
    runs = {}
    for name, learner in (
        ("microcircuit", get_learner("microcircuit", top_down="random")),
        ("microcircuit_bp", get_learner("microcircuit", top_down="transpose")),
        ("bp", get_learner("bp", activation="logistic")),
    ):
        start = time.perf_counter()
        _, hist = train(learner, data, hidden=hidden, epochs=epochs, batch_size=32, lr=lrs[name], seed=seed, progress=False)
        hist.attrs["wall_seconds"] = time.perf_counter() - start
        runs[name] = hist
    acc = np.array([runs[k].test_accuracy.values for k in runs])
    secs = np.array([runs[k].attrs["wall_seconds"] for k in runs])
    return xr.Dataset(
        {"test_accuracy": (("learner", "epoch"), acc), "wall_seconds": ("learner", secs), "lr": ("learner", [lrs[k] for k in runs])},
        coords={"learner": list(runs), "epoch": np.arange(1, epochs + 1)},
        attrs={"hidden": str(hidden), "batch_size": 32, "optimizer": "adam"},
    )
