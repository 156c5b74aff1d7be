r"""Accuracy of two local rules against backprop on digits (the accuracy claims of their papers, measured).

* ``ntk_rule_accuracy`` — the NTK-regime local rule (Boopathy & Fiete 2022, "comparable to BP in wide networks,
  best in the low-data regime"): test accuracy against the hidden width, on the whole training set and on its
  first 20 %. The reference is backprop on the same network in the same (NTK) parametrisation, same initial weights,
  optimiser and rate, so the credit assignment is the only difference; the full figure adds backprop in the
  standard parametrisation at its own rate.
* :func:`conv_accuracy` — directional DFA (Bacho & Chu 2024, "closer to BP than DFA, conv layers included"): test
  accuracy per epoch of BP, DFA and dDFA on one small conv net for 8x8 digits (:func:`digits_convnet`) and on an
  MLP; drawn in the full ``ddfa_alignment`` figure.

Both measure and report; neither is a pass/fail check. See ``theory/ntk_rule.md`` and ``theory/ddfa.md``.
"""

from __future__ import annotations

import dataclasses
import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import xarray as xr

from ..compiled_epoch import step_body
from ..data import load
from ..learning import train
from ..networks import Network
from ..rules import get_learner
from ..rules.bp import Backprop
from ..rules.ntk_rule import ntk_rule_learner
from . import register_figure
from ._plot import mean_band, new_figure, verdict_title

#: quick and full settings of ``ntk_rule_accuracy`` (``epochs`` are full-training-set epochs of steps)
NTK_QUICK = {"widths": (64, 256), "fractions": (1.0, 0.2), "seeds": (0,), "epochs": 10, "learners": ("ntk_rule", "bp_ntk")}
NTK_FULL = {"widths": (64, 256, 1024, 4096), "fractions": (1.0, 0.2), "seeds": (0, 1), "epochs": 20, "learners": ("ntk_rule", "bp_ntk", "bp")}
#: settings of :func:`conv_accuracy` in the full ``ddfa_alignment`` figure
CONV_FULL = {"epochs": 10, "n_train": None, "seeds": (0, 1)}
_LABELS = {"ntk_rule": "NTK local rule", "bp_ntk": "BP (NTK param.)", "bp": "BP (standard param.)", "dfa": "DFA", "ddfa": "dDFA"}


def accuracy_learner(name: str):
    """``"bp_ntk"``: backprop on the NTK rule's parameters (same init, predict and rate); else the registered learner."""
    if name == "bp_ntk":
        base = ntk_rule_learner()
        return dataclasses.replace(base, name="bp_ntk", rule=Backprop(base.rule.loss))
    return get_learner(name)


def _runner(learners, steps: int):
    """One jitted ``(network, batch_indices, step_keys, x, y, x_test, labels_test) -> test accuracy per learner``
    that trains every learner (its ``init`` around ``network``, Adam at its own rate) on the same batches
    ``x[batch_indices[t]]``, vmapped over a leading run axis of ``network``, ``batch_indices`` and ``step_keys``;
    the data are arguments, not constants folded into the program."""
    opts = [optax.adam(lr.defaults["lr"]) for lr in learners]
    bodies = [step_body(lr, opt, []) for lr, opt in zip(learners, opts)]

    def run(network, batch_indices, step_keys, x, y, x_test, labels_test):
        params = [lr.init(step_keys[0], network) for lr in learners]
        carry = tuple((p, lr.rule.init(step_keys[0], p), opt.init(eqx.filter(p, eqx.is_inexact_array)))
                      for lr, opt, p in zip(learners, opts, params))

        def step(carry, t):
            xb, yb = x[batch_indices[t]], y[batch_indices[t]]
            return tuple(body(p, s, o, xb, yb, step_keys[t])[:3] for body, (p, s, o) in zip(bodies, carry)), None

        carry, _ = jax.lax.scan(step, carry, jnp.arange(steps))
        return jnp.stack([jnp.mean(jnp.argmax(lr.predict(p, x_test), -1) == labels_test) for lr, (p, _, _) in zip(learners, carry)])

    return eqx.filter_jit(jax.vmap(run, in_axes=(0, 0, 0, None, None, None, None)))


def xavier_mlp(sizes, seed: int, activation="tanh") -> Network:
    """An MLP of widths ``sizes`` with Xavier-normal weights (variance ``2/(n_in + n_out)``) and zero biases, drawn
    with numpy (``seed``): :func:`dynlearn.init_network`'s default scheme, without compiling a draw per shape."""
    rng = np.random.default_rng(seed)
    ws = [(rng.standard_normal((b, a)) * np.sqrt(2.0 / (a + b))).astype(np.float32) for a, b in itertools.pairwise(sizes)]
    return Network.from_matrices(ws, [np.zeros(b, np.float32) for b in sizes[1:]], activation)


def accuracy_vs_width(*, learners, widths, fractions, seeds, epochs, batch=64) -> xr.Dataset:
    """Test accuracy on digits per learner, hidden width (one hidden layer), training fraction and seed. Every
    learner starts from the same network per seed (:func:`xavier_mlp`) and sees the same batches; every fraction trains for the same
    number of steps (``epochs`` passes over the whole set), its batches drawn uniformly from the first
    ``fraction`` of the training set. One compiled program per width, vmapped over seeds and fractions."""
    data = load("digits")
    x, y = jnp.asarray(data.x_train, jnp.float32), jnp.asarray(data.y_train, jnp.float32)
    x_test, labels = jnp.asarray(data.x_test, jnp.float32), jnp.asarray(data.y_test.argmax(-1))
    steps = epochs * (x.shape[0] // batch)
    runs = [(s, f) for s in seeds for f in fractions]
    indices = jnp.asarray(np.stack([np.random.default_rng(s).integers(0, max(int(f * x.shape[0]), batch), (steps, batch)) for s, f in runs]))
    step_keys = jnp.stack([jax.random.split(jax.random.key(s), steps) for s, _ in runs])
    objs = [accuracy_learner(n) for n in learners]
    acc = np.zeros((len(learners), len(widths), len(seeds), len(fractions)))
    for j, w in enumerate(widths):
        sizes = (x.shape[1], w, y.shape[1])
        nets = jax.tree.map(lambda *a: np.stack(a), *[xavier_mlp(sizes, s) for s, _ in runs])
        out = np.asarray(_runner(objs, steps)(nets, indices, step_keys, x, y, x_test, labels))  # (runs, learners)
        acc[:, j] = out.T.reshape(len(learners), len(seeds), len(fractions))
    return xr.Dataset({"test_accuracy": (("learner", "width", "seed", "fraction"), acc)},
                      coords={"learner": list(learners), "width": list(widths), "seed": list(seeds), "fraction": list(fractions)},
                      attrs={"epochs": epochs, "steps": steps, "batch": batch, "optimizer": "adam at each learner's default lr",
                             "lr": [lr.defaults["lr"] for lr in objs]})


@register_figure("ntk_rule_accuracy", "NTK-regime local rule vs backprop on digits: test accuracy against the hidden width, with all and with 20% of the training set")
def fig_ntk_rule_accuracy(quick: bool = True, seed: int = 0):
    cfg = NTK_QUICK if quick else NTK_FULL
    ds = accuracy_vs_width(**cfg)
    fig, axes = new_figure(len(cfg["fractions"]), width=4.8)
    fig.suptitle("the NTK local rule vs backprop: comparable when wide, best with little data? (Boopathy & Fiete 2022)", fontsize=9)
    for a, f in zip(axes, ds.fraction.values):
        for i, name in enumerate(ds.learner.values):
            acc = ds.test_accuracy.sel(learner=name, fraction=f).transpose("seed", "width")
            mean_band(a, ds.width, acc, color=f"C{i}", label=_LABELS[str(name)], marker="o")
        a.set_xscale("log", base=2)
        a.set_xticks(ds.width.values, [str(int(w)) for w in ds.width.values])
        a.set(xlabel="hidden width $n$ (one hidden layer)", ylabel=f"test accuracy, mean ± s.d. of {ds.seed.size} seed(s)")
        gap = ds.test_accuracy.sel(learner="ntk_rule", fraction=f).mean("seed") - ds.test_accuracy.sel(learner="bp_ntk", fraction=f).mean("seed")
        verdict_title(a, f"{100 * f:g}% of the training set ({ds.attrs['steps']} Adam steps)\n"
                      f"rule − BP (NTK param.) at $n={int(ds.width[-1])}$: {100 * float(gap[-1]):+.1f} points", None)
        a.legend(fontsize=7)
    return fig, ds, {"figure": "ntk_rule_accuracy", "quick": quick, **{k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}}


# ----------------------------------------------------------------------------- dDFA on a conv net


class Flatten(eqx.Module):
    """One sample's feature maps as a vector (a layer with no parameters)."""

    def __call__(self, x, *, key=None):
        return jnp.ravel(x)


def digits_convnet(*, key, activation="tanh", channels=(8, 16), hidden=64, n_out=10, dtype=jnp.float32) -> Network:
    """A small conv net for 8x8 digits: conv 3x3 (``channels[0]``, padded) → conv 3x3 stride 2 (``channels[1]``,
    padded; 4x4 maps) → [flatten, dense ``hidden``] → dense ``n_out``, ``activation`` between the layers. Strided
    convolution stands in for pooling (LeNet-5's pooling would leave no map at 8x8)."""
    k = jax.random.split(key, 4)
    c1, c2 = channels
    layers = (
        eqx.nn.Conv2d(1, c1, 3, padding=1, key=k[0], dtype=dtype),
        eqx.nn.Conv2d(c1, c2, 3, stride=2, padding=1, key=k[1], dtype=dtype),
        eqx.nn.Sequential([Flatten(), eqx.nn.Linear(c2 * 16, hidden, key=k[2], dtype=dtype)]),
        eqx.nn.Linear(hidden, n_out, key=k[3], dtype=dtype),
    )
    return Network(layers, activation, in_shape=(1, 8, 8))


def conv_accuracy(*, learners=("bp", "dfa", "ddfa"), epochs, n_train, seeds, lr=1e-3, network="conv") -> xr.Dataset:
    """Test accuracy per epoch of every learner on :func:`digits_convnet` (``network="conv"``) or on the MLP
    64-64-64-10 of :func:`xavier_mlp` (``"mlp"``), the same initial weights per seed for every learner, Adam at
    ``lr``, batches of 64, through :func:`dynlearn.learning.train`."""
    if network not in ("conv", "mlp"):
        raise ValueError(f"network must be 'conv' or 'mlp', got {network!r}")
    data = load("digits")
    if n_train is not None:
        data = dataclasses.replace(data, x_train=data.x_train[:n_train], y_train=data.y_train[:n_train],
                                   labels_train=None if data.labels_train is None else data.labels_train[:n_train])
    if network == "conv":
        data = data.as_images((1, 8, 8))
    acc = np.zeros((len(learners), len(seeds), epochs))
    for i, name in enumerate(learners):
        for j, s in enumerate(seeds):
            net = digits_convnet(key=jax.random.key(s)) if network == "conv" else xavier_mlp((64, 64, 64, 10), s)
            _, hist = train(get_learner(name), data, network=net, epochs=epochs, lr=lr, seed=s, progress=False)
            acc[i, j] = hist.test_accuracy.values
    desc = "conv3x3(8) - conv3x3/2(16) - dense 64 - dense 10, tanh" if network == "conv" else "MLP 64-64-64-10, tanh"
    return xr.Dataset({"test_accuracy": (("learner", "seed", "epoch"), acc)},
                      coords={"learner": list(learners), "seed": list(seeds), "epoch": np.arange(1, epochs + 1)},
                      attrs={"network": desc, "short_name": "conv net" if network == "conv" else "MLP 64-64-64-10", "lr": lr,
                             "n_train": int(data.x_train.shape[0])})
