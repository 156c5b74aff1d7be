"""Figures for the feedback-alignment family: one per theorem check, plus accuracy of every rule on the same network."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..theorems import run_check
from . import register_figure
from ._plot import new_figure, verdict_title

RULE_ORDER = ("bp", "fa", "dfa", "kp", "wm", "usf", "brsf", "frsf", "pal")


@register_figure("kp_exact_decay", "Kolen-Pollack: ||W - B|| (B in the layout of W) against the exact (1 - lambda)^t law, and the angle of B to W")
def fig_kp_exact_decay(quick: bool = True, seed: int = 0):
    r = run_check("kp_exact_decay", quick=quick)
    ds = r.data
    fig, (a, b) = new_figure(2)
    for m in ds.matrix.values:
        g = ds.gap.sel(matrix=m)
        a.semilogy(ds.step, g.isel(seed=0), lw=2, label=f"{m} (measured)")
        a.semilogy(ds.step, ds.predicted.sel(matrix=m).isel(seed=0), "k--", lw=1)
        b.plot(ds.step, ds.angle_B_WT.sel(matrix=m).isel(seed=0), label=m)
    a.plot([], [], "k--", lw=1, label="(1 − λ)^t ‖W − B‖₀")
    a.set(xlabel="SGD step t", ylabel="‖W_l − B_l‖_F")
    verdict_title(a, f"exact decay (max rel. error {r.verdict.measured['max_relative_error']:.1e})", r.passed)
    b.set(xlabel="SGD step t", ylabel="angle(B_l, W_l) (deg)", ylim=(0, 100))
    verdict_title(b, "B aligns with W", None)
    a.legend(fontsize=7)
    b.legend(fontsize=7)
    return fig, ds, {"check": "kp_exact_decay", "seed": seed}


@register_figure("fa_alignment", "Feedback alignment on a linear teacher: angle(W, B) and angle(FA update, BP gradient) during training")
def fig_fa_alignment(quick: bool = True, seed: int = 0):
    r = run_check("fa_alignment", quick=quick)
    ds = r.data
    fig, (a, b) = new_figure(2)
    for s in ds.seed.values:
        a.plot(ds.step, ds.angle_WT_B.sel(seed=s), lw=1.2, label=f"seed {s}")
        b.semilogy(ds.step, ds.loss.sel(seed=s) / ds.loss.sel(seed=s)[0], lw=1.2)
    mean_up = ds.angle_update_bp.mean("seed")
    a.plot(ds.step, mean_up, "k--", lw=1.5, label="angle(ΔW₁ FA, ΔW₁ BP), mean")
    a.axhline(90, color="0.6", lw=0.8)
    a.set(xlabel="SGD step", ylabel="angle (deg)", ylim=(0, 110))
    verdict_title(a, "W₂ comes to agree with the fixed B", r.passed)
    b.set(xlabel="SGD step", ylabel="loss / initial loss")
    verdict_title(b, "the student learns", None)
    a.legend(fontsize=7)
    return fig, ds, {"check": "fa_alignment", "seed": seed}


@register_figure("weight_mirror_fixed_point", "Weight mirror with W fixed: angle of B to W and |B| / |eta sigma^2/lambda W| per step")
def fig_weight_mirror(quick: bool = True, seed: int = 0):
    r = run_check("weight_mirror_fixed_point", quick=quick)
    ds = r.data
    fig, (a, b) = new_figure(2)
    for m in ds.matrix.values:
        a.semilogy(ds.step, ds.angle_to_target.sel(matrix=m).mean("seed"), label=m)
        b.plot(ds.step, ds.norm_ratio.sel(matrix=m).mean("seed"), label=m)
    a.axhline(5, color="r", ls="--", lw=1, label="tolerance 5°")
    a.set(xlabel="mirror step", ylabel="angle(B, W) (deg), mean over seeds")
    b.axhline(1, color="k", lw=0.8)
    b.set(xlabel="mirror step", ylabel="‖B‖ / ‖(ησ²/λ) W‖")
    verdict_title(a, "B → (ησ²/λ) W: direction", r.passed)
    verdict_title(b, "…and scale", None)
    a.legend(fontsize=7)
    b.legend(fontsize=7)
    return fig, ds, {"check": "weight_mirror_fixed_point", "seed": seed}


def train_rules(data_name: str, *, rules=RULE_ORDER, hidden=(64, 64), epochs=10, lr=1e-3, batch_size=64, seed=0, n_train=None, n_test=None):
    """Train every rule on the same network and data; test accuracy, seconds/epoch and alignment at the end.

    Returns a Dataset over ``rule`` (and ``epoch`` for the accuracy curves). Rules that need noise or a backward
    matrix report the mean angle between their backward matrices and the forward weights they stand in for, and
    between their update and the BP gradient on one training batch (:func:`dynlearn.analysis.feedback_report`).
    """
    import jax.numpy as jnp

    from ..analysis import feedback_report
    from ..data import load
    from ..learning import train
    from ..rules import get_learner

    data = load("digits") if data_name == "digits" else load(data_name, n_train=n_train, n_test=n_test)
    curves, rows = [], []
    for rule in rules:
        learner = get_learner(rule)
        params, hist = train(learner, data, hidden=hidden, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, progress=False)
        curves.append(hist.test_accuracy.values)
        ang_b = ang_u = np.nan
        if rule != "bp":
            rep = feedback_report(learner, params, jnp.asarray(data.x_train[:256]), jnp.asarray(data.y_train[:256]))
            ang_b = float(rep.angle_B.mean())
            ang_u = float(rep.angle_update_bp.isel(layer=slice(0, -1)).mean())
        rows.append((float(hist.test_accuracy[-1]), float(hist.seconds[1:].mean() if epochs > 1 else hist.seconds[0]), ang_b, ang_u))
    rows = np.array(rows)
    return xr.Dataset(
        {
            "test_accuracy_curve": (("rule", "epoch"), np.array(curves)),
            "test_accuracy": ("rule", rows[:, 0]),
            "seconds_per_epoch": ("rule", rows[:, 1]),
            "angle_B_WT": ("rule", rows[:, 2]),
            "angle_update_bp_hidden": ("rule", rows[:, 3]),
        },
        coords={"rule": list(rules), "epoch": np.arange(1, epochs + 1)},
        attrs={"data": data_name, "hidden": str(tuple(hidden)), "epochs": epochs, "lr": lr, "batch_size": batch_size, "optimizer": "adam", "loss": "mse"},
    )


@register_figure("feedback_accuracy", "Test accuracy of BP, FA, DFA, KP, WM, sign-symmetry and PAL on the same network (digits; Fashion-MNIST in --full)")
def fig_feedback_accuracy(quick: bool = True, seed: int = 0):
    from ..data import DataUnavailableError, find_fashion_mnist

    sets = ["digits"]
    if not quick:
        try:
            find_fashion_mnist()
            sets.append("fashion_mnist")
        except DataUnavailableError:
            pass
    # quick: 10 epochs at a higher rate on digits (about 30 s for the nine rules); --full: 30 epochs, plus Fashion-MNIST when installed
    configs = {"digits": dict(hidden=(64, 64), epochs=10, lr=3e-3) if quick else dict(hidden=(64, 64), epochs=30, lr=1e-3), "fashion_mnist": dict(hidden=(128, 128), epochs=10, lr=1e-3)}
    results = [train_rules(name, seed=seed, **configs[name]) for name in sets]
    ds = xr.concat(results, dim="data", join="outer").assign_coords(data=sets)
    fig, axes = new_figure(len(sets), width=5.2)
    for a, name in zip(axes, sets):
        sel = ds.sel(data=name)
        err = 100 * (1 - sel.test_accuracy.values)
        colors = ["k" if r == "bp" else ("tab:red" if r == "pal" else "tab:blue") for r in sel.rule.values]
        a.bar(np.arange(sel.rule.size), err, color=colors)
        for i, e in enumerate(err):
            a.text(i, e, f"{e:.1f}", ha="center", va="bottom", fontsize=7)
        a.set_xticks(np.arange(sel.rule.size), [r.upper() for r in sel.rule.values], rotation=45, fontsize=8)
        a.set(ylabel="test error (%)")
        c = configs[name]
        sizes = "-".join(map(str, ({"digits": 64, "fashion_mnist": 784}[name], *c["hidden"], 10)))
        verdict_title(a, f"{name}: {sizes}, {c['epochs']} epochs, Adam {c['lr']:g}, MSE", None)
    config = {name: configs[name] for name in sets}
    return fig, ds, {**config, "seed": seed, "data": sets}
