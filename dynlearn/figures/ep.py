"""Figures of the equilibrium-propagation checks: estimator errors, holomorphic EP, GDU, implicit vs BPTT,
energy descent, and the infinitesimal-inference limit. Each plots the dataset of its theorem check."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..theorems import run_check
from . import register_figure
from ._plot import (
    ROUNDOFF,
    energy_gap,
    new_figure,
    pass_line,
    slope_guide,
    verdict_title,
)


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
    verdict_title(ax, r"one-sided EP: $O(\beta)$; symmetric: $O(\beta^2)$", one.passed and sym.passed)
    for r in hd.radius.values:
        bx.semilogy(hd.N.values, np.maximum(hd.rel_error.sel(radius=r).values, 1e-16), "o-", label=rf"$|\beta| = {r:g}$")
        bx.axhline(float(hd.symmetric_rel_error.sel(radius=r)), ls=":", color=bx.lines[-1].get_color(), lw=1)
    pass_line(bx, 1e-8, "criterion ≤ 1e-8")
    bx.set_xlabel("number of complex nudges N")
    bx.set_ylabel("relative error")
    bx.legend(fontsize=7, title=r"dotted: symmetric EP at the same $|\beta|$", title_fontsize=7)
    verdict_title(bx, "holomorphic EP: exact at finite " + r"$|\beta|$" + f", error falls {hol.verdict.measured['rate_per_N']:.2f}/N", hol.passed)
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
    for panel, var, items, dim in ((ax, "neural", (0, 4, 11, 12), "unit"), (bx, "synapse", range(4), "synapse")):
        for i, u in enumerate(items):
            color = f"C{i}"
            panel.plot(t, d[f"bptt_{var}"].sel({dim: u}), "-", color=color, lw=4, alpha=0.35, label=f"{dim} {u}")
            panel.plot(t, d[f"ep_{var}"].sel({dim: u}), "--", color=color, lw=1.3, marker=".", ms=4, zorder=3)
        panel.plot([], [], "-", color="0.4", lw=4, alpha=0.35, label=r"$-\nabla^{\rm BPTT}$ (wide, light)")
        panel.plot([], [], "--", color="0.2", lw=1.3, marker=".", label=r"$\Delta^{\rm EP}$ (dashed, on top)")
        panel.set_xlim(-0.3, 12)
        panel.legend(fontsize=6.5, ncol=2)
    ax.set_xlabel("step t of the nudged phase (later steps ~0)")
    ax.set_ylabel(r"neural update $\Delta^{\rm EP}_s$ and $-\nabla^{\rm BPTT}_s$")
    verdict_title(ax, "neurons: EP's update = BPTT's, step by step")
    bx.set_xlabel("step t")
    bx.set_ylabel(r"synaptic update $\Delta^{\rm EP}_W$ and $-\nabla^{\rm BPTT}_W$")
    verdict_title(bx, rf"synapses: the same ($\beta$ = {float(d.beta.min()):g})")
    b = d.beta.values
    cx.loglog(b, d.neural, "o-", label="neural, one-sided")
    cx.loglog(b, d.weight, "s-", label="weight, one-sided")
    cx.loglog(b, d.weight_centered, "^-", label=r"weight, centred $\pm\beta$")
    slope_guide(cx, np.sort(b), float(np.min(d.neural)) * 0.3, 1.0, label="slope 1")
    cx.set_xlabel(r"$\beta$")
    cx.set_ylabel("relative error over K steps")
    cx.legend(fontsize=7)
    verdict_title(cx, r"EP − BPTT = $O(\beta)$; centred: $O(\beta^2)$", res.passed)
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
        ax.semilogy(h, e[0] * np.exp(-rate * (h - h[0])), ":", color=line.get_color(), label=rf"$e^{{-{rate:.3f}\,T}}$: smallest $|{{\rm Re}}\,\lambda|$")
    pass_line(ax, 1e-6, "criterion at the longest T: ≤ 1e-6")
    ax.set_xlabel("relaxation horizon T")
    ax.set_ylabel(r"$\|g_{\rm BPTT}(T) - g_{\rm IFT}\| / \|g_{\rm IFT}\|$")
    ax.legend(fontsize=7)
    verdict_title(ax, "BPTT through a relaxation → implicit gradient\nat the flow's slowest contraction rate", res.passed)
    return fig, d, {"check": "implicit_vs_bptt"}


@register_figure("ep_energy_descent", "F(t) - F_inf and |dF/ds|^2 along EP's free and nudged relaxations")
def ep_energy_descent(quick: bool = True, seed: int = 0):
    res = _run("ep_energy_descent", quick, seed, seed_key="seeds")
    d = res.data
    fig, (ax, bx) = new_figure(2, width=4.4)
    floors = []
    for s in d.seed.values:
        for p in d.phase.values:
            label = f"seed {s}, " + str(p).replace("nudged(beta=", r"nudged ($\beta$ = ").replace(")", ")")
            gap, floor = energy_gap(d.time, d.F.sel(seed=s, phase=p), d.grad_norm2.sel(seed=s, phase=p))
            floors.append(floor)
            g2 = np.asarray(d.grad_norm2.sel(seed=s, phase=p))
            ok = np.isfinite(gap) & np.isfinite(np.asarray(d.time))
            ax.semilogy(np.asarray(d.time)[ok], gap[ok], label=label)
            bx.semilogy(np.asarray(d.time)[ok], g2[ok], label=label)
    ax.axhline(max(floors), color="0.5", ls=":", lw=1, label=f"round-off floor ({ROUNDOFF:g}·|F|); values below are clipped to it")
    ax.set_xlabel("time")
    ax.set_ylabel(r"$F(t) - F_\infty$,  $F_\infty = F(T) - g(T)/k$")
    ax.legend(fontsize=6)
    rise = res.verdict.measured["max_relative_rise"]
    verdict_title(ax, f"F never rises along the flow (max relative rise {rise:.0e} ≤ 1e-10)", res.passed)
    bx.set_xlabel("time")
    bx.set_ylabel(r"$g = \|\partial F/\partial s\|^2 = -dF/dt$")
    verdict_title(bx, r"$-dF/dt = \|\partial F/\partial s\|^2$ decays to the fixed point")
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
    verdict_title(ax, r"PC, EP, CHL → their reference gradients: error $O$(nudge)", res.passed)
    return fig, d, {"check": "ebm_infinitesimal_inference"}
