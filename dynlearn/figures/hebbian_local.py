"""Figures for activation learning (Zhou 2022) and the IB-Hebbian rule with working memory (Daruwalla & Lipasti 2024)."""

from __future__ import annotations

from ..theorems import run_check
from . import register_figure
from ._plot import log_floor, new_figure, pass_line, verdict_title


@register_figure("activation_likelihood", "Activation learning: rank correlation of output activation with log-likelihood during the Hebbian ODE, and the scatter at the end")
def fig_activation_likelihood(quick: bool = True, seed: int = 0):
    r = run_check("activation_likelihood", quick=quick)
    ds = r.data
    m, tol = r.verdict.measured, r.verdict.tolerance
    fig, (a, b) = new_figure(2)
    for k, s in enumerate(ds.seed.values):
        a.plot(ds.t, ds.spearman.sel(seed=s), marker="o", ms=3, color=f"C{k}", label=f"seed {s}")
    pass_line(a, 0.9, f"pass: Spearman $\\rho$ {tol['spearman_rho']}")
    a.set(xlabel=r"time $t$ of the weight ODE $\dot W = \langle h\,(v - W^\top h)^\top\rangle$", ylabel=r"Spearman $\rho(\|h\|^2, \log p(v))$", ylim=(-0.2, 1.05))
    verdict_title(a, "learn more, activate more: $\\|h\\|^2$ ranks inputs by likelihood\n" + f"(worst seed $\\rho$ = {m['spearman_rho']:.3f})", r.passed)
    a.legend(fontsize=7, loc="lower right")
    b.scatter(ds.log_likelihood, ds.activation, s=5, alpha=0.5, color="C0")
    b.set(xlabel=r"$\log p(v)$ (angular central Gaussian, up to a constant)", ylabel=r"output activation $\|h\|^2$")
    verdict_title(b, f"held-out samples, worst seed (subspace error {m['subspace_error']:.2f})", None)
    return fig, ds, {"check": "activation_likelihood", "seed": seed}


@register_figure("activation_fewshot", "Activation learning vs BP on digits with few examples per class")
def fig_activation_fewshot(quick: bool = True, seed: int = 0):
    r = run_check("activation_fewshot", quick=quick)
    ds = r.data
    fig, (a,) = new_figure(1, width=4.6)
    for k, name in enumerate(ds.learner.values):
        acc = ds.accuracy.sel(learner=name)
        a.errorbar(ds.shots, acc.mean("seed"), yerr=acc.std("seed"), marker="o", capsize=3, color=f"C{k}", label=str(name).replace("_", " "))
    a.axhline(0.1, color="0.5", ls=":", lw=1, label="chance")
    a.set(xscale="log", xlabel="training examples per class", ylabel=f"digits test accuracy (mean ± s.d., {ds.seed.size} seeds)", ylim=(0, 1))
    verdict_title(a, "few-shot claim: activation learning vs BP\n" + f"(hidden {ds.attrs['hidden']}, {ds.attrs['steps']} steps)", None)
    a.legend(fontsize=7)
    return fig, ds, {"check": "activation_fewshot", "seed": seed}


@register_figure("ib_memory", "IB-Hebbian: modulator error of the reservoir memory against reservoir size per window size B; with the ideal memory the batch modulator is recovered")
def fig_ib_memory(quick: bool = True, seed: int = 0):
    r = run_check("ib_memory_capacity", quick=quick)
    ideal = run_check("ib_memory_modulator", quick=quick)
    ds = r.data
    has_acc = "acc_vs_capacity" in ds
    fig, axes = new_figure(2 if has_acc else 1, width=4.8)
    a = axes[0]
    floor = 1e-16
    for i, b in enumerate(ds.capacity.values):
        for memory, ls in (("running", "-"), ("cleared", "--")):
            err, _ = log_floor(ds.modulator_error.sel(memory=memory, capacity=b).max("seed"), floor)
            a.semilogy(ds["size"], err, ls=ls, marker="o", ms=3, color=f"C{i}", label=f"B = {b}, {memory} reservoir")
        a.axvline(b * ds.attrs["d_s"], color=f"C{i}", ls=":", lw=1)
    pass_line(a, 1e-10, "ideal-memory bound 1e-10")
    a.set(xlabel=r"reservoir size $N$ (dotted: $N = B\,D_s$)", ylabel=r"$\|m_{\rm res} - m_{\rm batch}\| / \|m_{\rm batch}\|$ (worst seed)")
    mi = ideal.verdict.measured
    verdict_title(a, "the window size B sets the memory a modulator needs\n" + f"(ideal memory {mi['memory_error']:.1e}, decomposition {mi['decomposition_error']:.1e})", ideal.passed)
    a.legend(fontsize=6.5)
    if has_acc:
        b = axes[1]
        b.plot(ds.acc_capacity, ds.acc_vs_capacity, marker="o", label="exact memory, window B")
        b.set(xscale="log", xlabel="window B (exact memory)", ylabel="digits test accuracy")
        top = b.twiny()
        top.plot(ds.acc_size, ds.acc_vs_size, marker="s", color="C1", label="reservoir memory (B = 4), size N")
        top.set(xscale="log", xlabel="reservoir size N (B = 4)")
        b.legend(fontsize=7, loc="lower left")
        top.legend(fontsize=7, loc="lower right")
        verdict_title(b, "accuracy with working memory", None)
    return fig, ds, {"check": "ib_memory_capacity", "seed": seed}
