"""Figures of the equilibrium-propagation checks: estimator errors, holomorphic EP, GDU, implicit vs BPTT,
energy descent, and the infinitesimal-inference limit. Each plots the dataset of its theorem check."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..theorems import run_check
from . import register_figure
from ._plot import new_figure, slope_guide, verdict_title


def _run(name: str, quick: bool, seed: int, seed_key: str = "seed"):
    overrides = {} if seed == 0 else ({seed_key: seed} if seed_key != "seeds" else {"seeds": (seed, seed + 1)})
    return run_check(name, quick=quick, **overrides)


@register_figure("ep_estimators", "EP gradient estimators vs the implicit gradient: one-sided O(beta), symmetric O(beta^2), holomorphic exact at finite |beta|")
def ep_estimators(quick: bool = True, seed: int = 0):
    one = _run("ep_gradient_one_sided", quick, seed)
    sym = _run("ep_gradient_symmetric", quick, seed)
    hol = _run("ep_holomorphic", quick, seed)
    fig, (ax, bx) = new_figure(2, width=4.8, height=3.9)
    b1, e1 = one.data.beta.values, one.data.rel_error.values
    b2, e2 = sym.data.beta.values, sym.data.rel_error.values
    ax.loglog(b1, e1, "o-", label=f"one-sided (slope {one.verdict.measured['slope']:.2f})")
    ax.loglog(b2, e2, "s-", label=f"symmetric (slope {sym.verdict.measured['slope']:.2f})")
    hd = hol.data
    for r in hd.radius.values:
        e = hd.rel_error.sel(radius=r).values
        N = hd.N.values
        for k, mk in ((int(np.argmin(np.abs(N - 6))), "P"), (len(N) - 1, "*")):
            ax.loglog([r], [max(e[k], 1e-16)], mk, ms=10, label=rf"holomorphic N={N[k]}, $|\beta|$={r:g}")
    slope_guide(ax, b1[:6], e1[0] * 0.3, 1.0, label="slope 1")
    slope_guide(ax, b2[:6], e2[0] * 0.3, 2.0, label="slope 2", color="0.75")
    ax.set_xlabel(r"nudge $\beta$ (radius $|\beta|$ for holomorphic EP)")
    ax.set_ylabel(r"$\|\hat g - g_{\rm IFT}\| / \|g_{\rm IFT}\|$")
    ax.legend(fontsize=6.5, loc="upper left")
    verdict_title(ax, "EP estimators vs implicit gradient", one.passed and sym.passed)
    for r in hd.radius.values:
        bx.semilogy(hd.N.values, np.maximum(hd.rel_error.sel(radius=r).values, 1e-16), "o-", label=rf"$|\beta| = {r:g}$")
        bx.axhline(float(hd.symmetric_rel_error.sel(radius=r)), ls=":", color=bx.lines[-1].get_color(), lw=1)
    bx.axhline(1e-8, color="k", lw=0.8, ls="--", label="1e-8")
    bx.set_xlabel("number of complex nudges N")
    bx.set_ylabel("relative error")
    bx.legend(fontsize=7, title="dotted: symmetric EP at same |beta|", title_fontsize=7)
    verdict_title(bx, f"holomorphic EP (rate {hol.verdict.measured['rate_per_N']:.2f}/N)", hol.passed)
    ds = xr.Dataset(
        {
            "one_sided_rel_error": one.data.rel_error.rename(beta="beta_one_sided"),
            "symmetric_rel_error": sym.data.rel_error.rename(beta="beta_symmetric"),
            "holomorphic_rel_error": hd.rel_error,
        }
    )
    return fig, ds, {"checks": ["ep_gradient_one_sided", "ep_gradient_symmetric", "ep_holomorphic"]}


@register_figure("ep_gdu", "GDU: EP's neural and weight updates in the nudged phase match minus BPTT's gradients step by step")
def ep_gdu(quick: bool = True, seed: int = 0):
    res = _run("ep_gdu", quick, seed)
    d = res.data
    fig, (ax, bx, cx) = new_figure(3, width=4.0)
    t = d.t.values
    for u in (0, 4, 11, 12):
        (line,) = ax.plot(t, d.bptt_neural.sel(unit=u), "-", lw=1.5)
        ax.plot(t, d.ep_neural.sel(unit=u), "--", color=line.get_color(), lw=2.5, alpha=0.6)
    ax.set_xlim(-0.3, 12)
    ax.set_xlabel("step t of the nudged phase (later steps ~0)")
    ax.set_ylabel(r"$\Delta^{EP}_s$ (dashed), $-\nabla^{BPTT}_s$ (solid)")
    verdict_title(ax, "neurons")
    for k in range(4):
        (line,) = bx.plot(t, d.bptt_synapse.sel(synapse=k), "-", lw=1.5)
        bx.plot(t, d.ep_synapse.sel(synapse=k), "--", color=line.get_color(), lw=2.5, alpha=0.6)
    bx.set_xlim(-0.3, 12)
    bx.set_xlabel("step t")
    bx.set_ylabel(r"$\Delta^{EP}_W$ (dashed), $-\nabla^{BPTT}_W$ (solid)")
    verdict_title(bx, rf"synapses ($\beta$ = {float(d.beta.min()):g})")
    b = d.beta.values
    cx.loglog(b, d.neural, "o-", label="neural, one-sided")
    cx.loglog(b, d.weight, "s-", label="weight, one-sided")
    cx.loglog(b, d.weight_centered, "^-", label=r"weight, centred $\pm\beta$")
    slope_guide(cx, np.sort(b), float(np.min(d.neural)) * 0.3, 1.0, label="slope 1")
    cx.set_xlabel(r"$\beta$")
    cx.set_ylabel("relative error over K steps")
    cx.legend(fontsize=7)
    verdict_title(cx, "EP vs BPTT", res.passed)
    return fig, d, {"check": "ep_gdu"}


@register_figure("ep_implicit_vs_bptt", "Backprop through a relaxation converges to the implicit gradient at the flow's contraction rate")
def ep_implicit_vs_bptt(quick: bool = True, seed: int = 0):
    res = _run("implicit_vs_bptt", quick, seed)
    d = res.data
    fig, (ax,) = new_figure(1, width=5.0)
    h = d.horizon.values
    for m in d.model.values:
        e = d.bptt_rel_error.sel(model=m).values
        (line,) = ax.semilogy(h, e, "o-", label=f"{m} (fitted rate {float(d.fitted_rate.sel(model=m)):.3f})")
        rate = float(d.predicted_rate.sel(model=m))
        ax.semilogy(h, e[0] * np.exp(-rate * (h - h[0])), ":", color=line.get_color(), label=f"exp(-{rate:.3f} T): smallest |Re eig|")
    ax.axhline(1e-6, color="k", lw=0.8, ls="--")
    ax.set_xlabel("relaxation horizon T")
    ax.set_ylabel(r"$\|g_{\rm BPTT}(T) - g_{\rm IFT}\| / \|g_{\rm IFT}\|$")
    ax.legend(fontsize=7)
    verdict_title(ax, "BPTT through the relaxation vs implicit gradient", res.passed)
    return fig, d, {"check": "implicit_vs_bptt"}


@register_figure("ep_energy_descent", "F(t) and |dF/ds|^2 along EP's free and nudged relaxations")
def ep_energy_descent(quick: bool = True, seed: int = 0):
    res = _run("ep_energy_descent", quick, seed, seed_key="seeds")
    d = res.data
    fig, (ax, bx) = new_figure(2, width=4.4)
    for s in d.seed.values:
        for p in d.phase.values:
            F = d.F.sel(seed=s, phase=p)
            ax.plot(d.time, F - float(F[-1]) + 1e-16, label=f"seed {s}, {p}")
            bx.semilogy(d.time, d.grad_norm2.sel(seed=s, phase=p), label=f"seed {s}, {p}")
    ax.set_yscale("log")
    ax.set_xlabel("time")
    ax.set_ylabel(r"$F(t) - F(\infty)$")
    ax.legend(fontsize=6)
    verdict_title(ax, "F decreases along the flow", res.passed)
    bx.set_xlabel("time")
    bx.set_ylabel(r"$\|\partial F/\partial s\|^2 = -dF/dt$")
    verdict_title(bx, "gradient norm")
    return fig, d, {"check": "ep_energy_descent"}


@register_figure("ebm_infinitesimal_inference", "PC, EP and CHL reach their reference gradients as the nudge goes to 0 (error O(nudge))")
def ebm_infinitesimal_inference(quick: bool = True, seed: int = 0):
    res = _run("ebm_infinitesimal_inference", quick, seed)
    d = res.data
    fig, (ax,) = new_figure(1, width=5.4, height=4.0)
    labels = {
        "PC": r"PC, soft nudge $\gamma$ vs BP (feedforward)",
        "EP": r"EP, one-sided $\beta$ vs its implicit gradient",
        "CHL": r"CHL, feedback $\gamma$ vs BP (feedforward)",
    }
    for a, mk in zip(d.algorithm.values, "os^"):
        ax.loglog(d.nudge, d.rel_error.sel(algorithm=a), mk + "-", label=f"{labels[str(a)]} (slope {float(d.slope.sel(algorithm=a)):.2f})")
    slope_guide(ax, d.nudge.values, float(d.rel_error.min()) * 0.3, 1.0, label="slope 1")
    ax.set_xlabel(r"nudge ($\gamma$ for PC and CHL, $\beta$ for EP)")
    ax.set_ylabel("relative error to the reference gradient")
    ax.legend(fontsize=7)
    verdict_title(ax, "backprop at the infinitesimal-inference limit", res.passed)
    return fig, d, {"check": "ebm_infinitesimal_inference"}
