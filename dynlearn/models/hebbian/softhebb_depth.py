r"""Multilayer SoftHebb per depth (Journé et al., ICLR 2023): greedy layer-wise Hebbian training, then the readout.

For a depth ``D`` (1–3 conv soft-WTA layers, widths ``widths[:D]``), layer 1 learns for ``epochs_per_layer`` epochs
(only it is plastic: learner ``softhebb/deep`` with ``only_layer=1``), then layer 2 on the output of the frozen layer
1, and so on; then the readout alone for ``readout_epochs``. The readout (a linear classifier on the last pooled map,
trained by the cross-entropy gradient) learns during every phase, so the test accuracy after each epoch measures how
useful the representation is as each layer learns. Recorded per epoch: test accuracy, each layer's mean
:math:`|\|w_k\| - 1|` and relative weight change :math:`\|W_e - W_{e-1}\| / \|W_e\|` (a layer has converged when its
change falls below ``converged_change``). The reference is the same architecture (standardise, conv, triangle,
max pool, linear readout) trained end to end by backprop for the same total number of epochs.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ...losses import get_loss
from ...rules.base import Learner, Rule
from .softhebb_deep import DeepSoftHebb, _network_sizes, _predict, init_deep_softhebb

#: quick (digits, seconds) and full settings of :func:`depth_experiment`
QUICK = {"data": "digits", "widths": (32,), "depths": (1,), "epochs_per_layer": 1, "readout_epochs": 1, "seeds": (0,),
         "one_run": True, "reference": False}
FULL = {"data": "digits", "widths": (32, 128, 512), "depths": (1, 2, 3), "epochs_per_layer": 3, "readout_epochs": 5, "seeds": (0, 1),
        "hebb_lr": 1e-3}
FASHION = dict(data="fashion_mnist", widths=(32, 128, 512), depths=(1, 2, 3), epochs_per_layer=2, readout_epochs=5, seeds=(0,),
               kernel=5, n_train=20000, n_test=5000)


class ConvBackprop(Rule):
    """Backprop through the whole :class:`DeepSoftHebb` architecture (the reference of the depth table)."""

    loss: object = eqx.field(static=True)

    def update(self, params, rule_state, batch, key):
        value, grads = eqx.filter_value_and_grad(lambda p: self.loss(p(batch.x), batch.y))(params)
        return grads, rule_state, {"loss": value / batch.x.shape[0]}


def conv_bp_learner(*, kernel: int = 3) -> Learner:
    """The BP reference: the same conv network as ``softhebb/deep``, every weight trained by the loss gradient."""
    return Learner(
        name="bp (same conv net)",
        rule=ConvBackprop(get_loss("ce")),
        init=lambda key, network: init_deep_softhebb(key, _network_sizes(network), kernel=kernel, dtype=network.weights[0].dtype),
        predict=_predict,
        description="backprop through the multilayer SoftHebb architecture",
        defaults={"lr": 1e-2, "activation": "relu"},
    )


def _layer_stats(params: DeepSoftHebb, prev: DeepSoftHebb | None) -> tuple[list[float], list[float]]:
    gaps = [float(jnp.mean(jnp.abs(jnp.sqrt(jnp.sum(w**2, axis=(1, 2, 3))) - 1.0))) for w in params.kernels]
    if prev is None:
        return gaps, [np.nan] * len(gaps)
    change = [float(jnp.linalg.norm(w - v) / jnp.linalg.norm(w)) for w, v in zip(params.kernels, prev.kernels)]
    return gaps, change


def _train_depth(data, widths, *, epochs_per_layer, readout_epochs, lr, tau, kernel, seed, hebb_lr=None):
    """Greedy training of one network; rows ``(phase layer, test accuracy, gaps, changes)`` per epoch."""
    import jax

    from ...learning import init_params, train
    from ...rules import get_learner

    sizes = (data.n_features, *widths, data.n_outputs)
    base = get_learner("softhebb/deep", tau=tau, kernel=kernel)
    params = init_params(base, jax.random.key(seed), sizes)
    rows = []
    phases = [l for l in range(1, len(widths) + 1) for _ in range(epochs_per_layer)] + [0] * readout_epochs
    for e, layer in enumerate(phases):
        learner = get_learner("softhebb/deep", tau=tau, kernel=kernel, only_layer=layer)
        prev = params
        rate = lr if (layer == 0 or hebb_lr is None) else hebb_lr
        params, hist = train(learner, data, params=params, epochs=1, lr=rate, seed=seed * 1000 + e, progress=False)
        gaps, change = _layer_stats(params, prev)
        rows.append((layer, float(hist.test_accuracy[-1]), gaps, change))
    return rows


def _one_run(data, widths, *, epochs_per_layer, readout_epochs, lr, tau, kernel, seed, hebb_lr=None):
    """The same greedy schedule inside one training run (``greedy_steps``; one compilation): rows as
    :func:`_train_depth`, the weight change per epoch not recorded (NaN)."""
    from ...learning import train
    from ...rules import get_learner

    steps = epochs_per_layer * (data.x_train.shape[0] // 64)
    learner = get_learner("softhebb/deep", tau=tau, kernel=kernel, greedy_steps=steps)
    _, hist = train(learner, data, hidden=tuple(widths), epochs=len(widths) * epochs_per_layer + readout_epochs, lr=lr, seed=seed,
                    progress=False)
    phases = [l for l in range(1, len(widths) + 1) for _ in range(epochs_per_layer)] + [0] * readout_epochs
    gaps = np.stack([hist[f"train_norm_gap_{l}"].values for l in range(1, len(widths) + 1)], axis=1)
    return [(layer, float(a), list(g), [np.nan] * len(widths)) for layer, a, g in zip(phases, hist.test_accuracy.values, gaps)]


def depth_experiment(*, data="digits", widths=(32, 128), depths=(1, 2), epochs_per_layer=1, readout_epochs=1, seeds=(0,), lr=1e-2,
                     tau=0.3, kernel=3, n_train=None, n_test=None, converged_change=0.05, one_run=False, reference=True, hebb_lr=None) -> xr.Dataset:
    """The per-depth table: final test accuracy of greedy SoftHebb and of BP on the same conv net (``reference``), per
    depth and seed, with the per-epoch curves; see the module docstring. ``one_run`` runs the schedule inside one
    training run per depth (cheaper; no weight-change record, so no epochs-to-converge). ``hebb_lr``: the Adam rate
    of the Hebbian phases (default ``lr``; the readout-only phase always uses ``lr``)."""
    from ...data import load
    from ...learning import train

    if one_run and hebb_lr is not None:
        raise ValueError("hebb_lr needs one training run per phase; it cannot be used with one_run=True")
    ds_ = load(data) if data == "digits" else load(data, n_train=n_train, n_test=n_test)
    n_ep = max(depths) * epochs_per_layer + readout_epochs
    acc = np.full((len(depths), len(seeds), n_ep), np.nan)
    gap = np.full((len(depths), len(seeds), n_ep, max(depths)), np.nan)
    change = np.full_like(gap, np.nan)
    phase = np.zeros((len(depths), n_ep), int)
    final, bp = np.zeros((len(depths), len(seeds))), np.zeros((len(depths), len(seeds)))
    for i, depth in enumerate(depths):
        for j, seed in enumerate(seeds):
            rows = (_one_run if one_run else _train_depth)(ds_, widths[:depth], epochs_per_layer=epochs_per_layer, readout_epochs=readout_epochs, lr=lr,
                                tau=tau, kernel=kernel, seed=seed, hebb_lr=hebb_lr)
            for e, (layer, a, g, c) in enumerate(rows):
                acc[i, j, e], phase[i, e] = a, layer
                gap[i, j, e, :depth], change[i, j, e, :depth] = g, c
            final[i, j] = rows[-1][1]
            total = depth * epochs_per_layer + readout_epochs
            if not reference:
                bp[i, j] = np.nan
                continue
            _, hist = train(conv_bp_learner(kernel=kernel), ds_, hidden=tuple(widths[:depth]), epochs=total, lr=lr, seed=seed, progress=False)
            bp[i, j] = float(hist.test_accuracy[-1])
    # epochs a layer needs: the first epoch of its phase after which its relative weight change is below the threshold
    need = np.full((len(depths), len(seeds), max(depths)), np.nan)
    for i, depth in enumerate(depths):
        for l in range(1, depth + 1):
            idx = np.flatnonzero(phase[i] == l)
            for j in range(len(seeds)):
                ok = np.flatnonzero(change[i, j, idx, l - 1] < converged_change)
                need[i, j, l - 1] = ok[0] + 1 if ok.size else np.inf
    return xr.Dataset(
        {
            "accuracy": (("depth", "seed"), final),
            "bp_accuracy": (("depth", "seed"), bp),
            "accuracy_per_epoch": (("depth", "seed", "epoch"), acc),
            "norm_gap": (("depth", "seed", "epoch", "layer"), gap),
            "weight_change": (("depth", "seed", "epoch", "layer"), change),
            "plastic_layer": (("depth", "epoch"), phase),
            "epochs_to_converge": (("depth", "seed", "layer"), need),
        },
        coords={"depth": list(depths), "seed": list(seeds), "epoch": np.arange(1, n_ep + 1), "layer": np.arange(1, max(depths) + 1)},
        attrs={"data": data, "widths": str(tuple(widths)), "epochs_per_layer": epochs_per_layer, "readout_epochs": readout_epochs,
               "tau": tau, "kernel": kernel, "lr": lr, "hebb_lr": lr if hebb_lr is None else hebb_lr, "converged_change": converged_change},
    )
