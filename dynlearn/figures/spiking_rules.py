"""Figures for the spiking learning rules: e-prop against BPTT, training memory against T, and the accuracy table."""

from __future__ import annotations

import time

import numpy as np
import xarray as xr

from ..theorems import run_check
from . import register_figure
from ._plot import new_figure, pass_line, verdict_title

#: the learners of the accuracy table, in order (the BP MLP of the same widths last)
ACCURACY_LEARNERS = ("snn/bptt", "snn/eprop", "snn/stllr", "snn/desire", "bp")
#: Desire BP's Fashion-MNIST accuracy (Gerlinghoff et al. 2023, 784-512-256-10) and the allowed gap
DESIRE_FASHION, DESIRE_GAP = 0.8756, 0.015


@register_figure("eprop_vs_bptt", "e-prop vs BPTT on the pattern-generation task: gradient cosine per loss horizon, and learning curves")
def fig_eprop_vs_bptt(quick: bool = True, seed: int = 0):
    r = run_check("eprop_vs_bptt", quick=quick)
    ds, m, tol = r.data, r.verdict.measured, r.verdict.tolerance
    fig, (a, b) = new_figure(2, width=4.4)
    for s in ds.seed.values:
        a.plot(ds.horizon, ds.cosine.sel(seed=s), "o-", color="C0", label="e-prop vs BPTT" if s == ds.seed.values[0] else None)
    pass_line(a, float(tol["min_cosine"].split()[-1]), f"pass: cosine {tol['min_cosine']}")
    a.axhline(1.0, color="k", lw=0.8, label="exact (no recurrence: eprop_exact)")
    a.set(xlabel="loss horizon H (steps)", ylabel=r"cos$(\nabla^{\rm e\text{-}prop}, \nabla^{\rm BPTT})$", ylim=(0, 1.05))
    verdict_title(a, f"recurrent LIF ({ds.attrs['n_rec']} neurons): e-prop keeps\nthe direction of BPTT (worst {m['min_cosine']:.2f})", r.passed)
    a.legend(fontsize=7)
    for k, (rule, c) in enumerate(zip(ds.rule.values, ("C0", "k"))):
        curve = ds.loss.sel(rule=rule)
        b.semilogy(ds.step, curve.mean("seed"), color=c, ls="-" if k == 0 else "--", label=rule)
    b.set(xlabel="Adam step (one full sequence each)", ylabel=r"loss $\frac{1}{2T}\sum_t (y^t - y^{*t})^2$")
    verdict_title(b, f"pattern generation: e-prop approaches BPTT\n(final loss ratio {m['final_loss_ratio_eprop_bptt']:.2f}, {tol['final_loss_ratio_eprop_bptt']})", None)
    b.legend(fontsize=7)
    return fig, ds, {"check": "eprop_vs_bptt", "seed": seed}


@register_figure("stllr_memory", "Training-step memory (XLA memory analysis) against the number of time steps T: S-TLLR flat, BPTT linear")
def fig_stllr_memory(quick: bool = True, seed: int = 0):
    r = run_check("stllr_memory", quick=quick)
    ds, m = r.data, r.verdict.measured
    fig, (a,) = new_figure(1, width=4.8)
    for i, name in enumerate(ds.learner.values):
        a.loglog(ds.n_steps, ds.temp_bytes.sel(learner=name), "o-", color=f"C{i}", label=f"{name} (temporaries)")
    t = np.asarray(ds.n_steps, float)
    base = float(ds.temp_bytes.isel(learner=-1, n_steps=0))
    a.loglog(t, base * t / t[0], color="0.5", ls=":", lw=1, label=r"$\propto T$")
    a.set(xlabel="time steps T", ylabel="XLA temp bytes of the compiled training step")
    flat = [k for k in m if k.endswith("_growth") and not k.startswith("bptt")]
    text = ", ".join(f"{k.split('_')[0]} growth {m[k]:.1%}" for k in flat)
    verdict_title(a, f"S-TLLR's memory is independent of T, BPTT's grows linearly\n({text}; BPTT x{m.get('bptt_growth', np.nan):.1f} from T=10 to 200)", r.passed)
    a.legend(fontsize=7)
    return fig, ds, {"check": "stllr_memory", "seed": seed, "sizes": ds.attrs["sizes"], "batch": ds.attrs["batch"]}


def accuracy_table(quick: bool = True, seed: int = 0, learners=ACCURACY_LEARNERS) -> xr.Dataset:
    """Test accuracy of every spiking learner and the BP MLP of the same widths: coded digits (quick) or
    Fashion-MNIST with the desire-BP paper's 784-512-256-10 network (full)."""
    from ..data import load
    from ..learning import train
    from ..rules import get_learner

    if quick:
        data, hidden, epochs, rates = load("digits"), (64,), 3, {}
    else:  # desire BP's update is a sum of ternary-gated STDP terms: a smaller Adam rate on the 784-512-256 net
        data, hidden, epochs, rates = load("fashion_mnist"), (512, 256), 30, {"snn/desire": 3e-4}
    acc, secs = [], []
    for name in learners:
        t = time.perf_counter()
        _, hist = train(get_learner(name), data, hidden=hidden, epochs=epochs, lr=rates.get(name, 3e-3), seed=seed, progress=False)
        acc.append(float(hist.test_accuracy[-1]))
        secs.append(time.perf_counter() - t)
    return xr.Dataset(
        {"test_accuracy": ("learner", np.array(acc)), "seconds": ("learner", np.array(secs))},
        coords={"learner": list(learners)},
        attrs={"data": data.name, "hidden": str(hidden), "epochs": epochs, "optimizer": "adam, lr 3e-3" + "".join(f" ({k}: {v:g})" for k, v in rates.items()) + ", batch 64", "seed": seed},
    )


@register_figure("spiking_accuracy", "Accuracy of BPTT, e-prop, S-TLLR and desire BP spiking networks vs the BP MLP of the same size (quick: coded digits; full: Fashion-MNIST, with desire BP's 87.56%)")
def fig_spiking_accuracy(quick: bool = True, seed: int = 0):
    ds = accuracy_table(quick, seed)
    fig, (a,) = new_figure(1, width=5.2)
    names = list(ds.learner.values)
    acc = 100 * ds.test_accuracy.values
    bars = a.bar(range(len(names)), acc, color=["C0", "C1", "C2", "C3", "0.5"][: len(names)])
    for bar, v in zip(bars, acc):
        a.text(bar.get_x() + bar.get_width() / 2, v + 0.5, f"{v:.1f}", ha="center", fontsize=8)
    a.set_xticks(range(len(names)), names, fontsize=8)
    a.set(ylabel=f"test accuracy (%), {ds.attrs['data']}", ylim=(0, 105))
    passed = None
    if not quick:
        ref = 100 * DESIRE_FASHION
        a.axhspan(ref - 100 * DESIRE_GAP, ref + 100 * DESIRE_GAP, color="C3", alpha=0.15, label="desire BP paper 87.56 ± 1.5")
        passed = bool(abs(float(ds.test_accuracy.sel(learner="snn/desire")) - DESIRE_FASHION) <= DESIRE_GAP)
    pass_line(a, 10.0, "chance", color="0.6")
    a.legend(fontsize=7, loc="lower right")
    verdict_title(a, f"spiking learners vs BP of the same widths {ds.attrs['hidden']}\n({ds.attrs['epochs']} epochs, {ds.attrs['optimizer']})", passed)
    return fig, ds, {"seed": seed, "quick": quick, **{k: ds.attrs[k] for k in ("data", "hidden", "epochs")}}
