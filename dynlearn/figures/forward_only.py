"""Figures of the forward-only family (PEPITA, DRTP/TPSGD, LLS): one per check, from the check's own data."""

from __future__ import annotations

import numpy as np

from ..theorems import run_check
from . import register_figure
from ._plot import new_figure, pass_line, slope_guide, verdict_title


@register_figure("pepita_as_fa", "PEPITA vs adaptive feedback alignment: 1 - cos(first-layer updates) vs modulation strength, and angles during digits training")
def fig_pepita_as_fa(quick: bool = True, seed: int = 0):
    r = run_check("pepita_as_fa", quick=quick)
    ds, m = r.data, r.verdict.measured
    fig, (a, b) = new_figure(2)
    s = ds.modulation.values
    for k, sd in enumerate(ds.seed.values):
        a.loglog(s, ds.one_minus_cos.sel(seed=sd), "o-", ms=3, color=f"C{k}", label=f"seed {sd}")
    slope_guide(a, s, float(ds.one_minus_cos.isel(modulation=0).max()), 2.0, label=r"slope 2 ($\propto s^2$)")
    pass_line(a, 1e-6, r"pass: $\leq 10^{-6}$ at the smallest $s$")
    a.set(xlabel=r"modulation strength $s$ ($F = sF_0$)", ylabel=r"$1-\cos(\Delta W_1^{\rm PEPITA}, \Delta W_1^{\rm DFA}[-(W_1F)^\top])$")
    verdict_title(a, f"PEPITA → adaptive FA as $s\\to 0$\n(slope {m['slope_worst_seed']:.2f}, 2 ± 0.3)", r.passed)
    a.legend(fontsize=7)
    b.plot(ds.step, ds.angle_to_bp, "k-", label=r"angle$(\Delta W_1^{\rm PEPITA}, \Delta W_1^{\rm BP})$")
    b.plot(ds.step, ds.angle_W2_D1, "C1--", label=r"angle$(W_2, -(W_1F)^\top)$")
    b.plot(ds.step, ds.angle_to_fa, "C2:", label=r"angle to the DFA update")
    b.set(xlabel="Adam step (digits)", ylabel="angle (deg)", ylim=(0, 120))
    verdict_title(b, f"during training, s = {ds.attrs['train_modulation']:g} (test acc. {ds.attrs['test_accuracy']:.2f})", None)
    b.legend(fontsize=7)
    return fig, ds, {"check": "pepita_as_fa", "seed": seed}


@register_figure("drtp_memory", "DRTP/TPSGD vs BP: activation memory per sample and peak memory of the compiled step (XLA) against depth")
def fig_drtp_memory(quick: bool = True, seed: int = 0):
    r = run_check("drtp_memory", quick=quick)
    ds, m = r.data, r.verdict.measured
    fig, (a, b) = new_figure(2)
    for k, n in enumerate(ds.learner.values):
        a.plot(ds.depth, ds.temp_layers.sel(learner=n), "o-", color=f"C{k}",
               label=f"{n} ({float(ds.activation_layers_per_added_layer.sel(learner=n)):.2f} activation layer / layer)")
        b.plot(ds.depth, ds.peak_bytes.sel(learner=n) / 1e6, "o-", color=f"C{k}", label=n)
    tol = float(r.verdict.tolerance["tpsgd_activation_layers_per_added_layer"].split()[-1])
    d, t0 = ds.depth.values.astype(float), float(ds.temp_layers.sel(learner="tpsgd").isel(depth=0))
    a.plot(d, t0 + (tol + ds.attrs["parameter_layers"]) * (d - d[0]), "--", color="tab:red", lw=1,
           label=f"pass: ≤ {tol:g} activation layer / layer (+ {ds.attrs['parameter_layers']:g} for the gradients)")
    a.set(xlabel="hidden layers", ylabel=f"XLA temporaries (layers of {ds.attrs['batch']} × {ds.attrs['width']} activations)")
    verdict_title(a, f"TPSGD's activation memory does not grow with depth\n(measured {m['tpsgd_activation_layers_per_added_layer']:.2f} layer / added layer; BP {m['bp_activation_layers_per_added_layer']:.2f})", r.passed)
    b.set(xlabel="hidden layers", ylabel=f"peak bytes of the step (MB), batch {ds.attrs['batch']}")
    verdict_title(b, f"peak memory: TPSGD / BP = {m['tpsgd_peak_ratio_deepest']:.2f} at the deepest (< 1)", None)
    a.legend(fontsize=7)
    b.legend(fontsize=7)
    return fig, ds, {"check": "drtp_memory", "seed": seed}


@register_figure("lls_macs", "LLS variants vs BP: MACs per training step (XLA cost analysis) per network, and the ratio to BP")
def fig_lls_macs(quick: bool = True, seed: int = 0):
    r = run_check("lls_macs", quick=quick)
    ds = r.data
    fig, (a, b) = new_figure(2)
    nets, learners = list(ds.network.values), list(ds.learner.values)
    width = 0.8 / len(learners)
    for k, n in enumerate(learners):
        x = np.arange(len(nets)) + k * width
        a.bar(x, ds.macs.sel(learner=n), width, color=f"C{k}", label=n)
        b.bar(x, ds.ratio_to_bp.sel(learner=n), width, color=f"C{k}", label=n)
    for ax in (a, b):
        ax.set_xticks(np.arange(len(nets)) + 0.4 - width / 2, nets, fontsize=7)
        ax.set_xlabel("MLP widths")
    a.set(yscale="log", ylabel=f"MACs per step (XLA, batch {ds.attrs['batch']})")
    pass_line(b, 1.0, "pass: < 1 (BP)")
    b.set(ylabel="MACs / MACs of BP", ylim=(0, 1.2))
    verdict_title(a, "no backward pass: fewer MACs than BP", r.passed)
    verdict_title(b, f"worst ratio {r.verdict.measured['ratio_worst']:.2f}", None)
    a.legend(fontsize=7)
    b.legend(fontsize=7, loc="lower left")
    return fig, ds, {"check": "lls_macs", "seed": seed}
