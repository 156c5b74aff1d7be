"""Figures for SoftHebb: the two checks (norm law, Bayesian inference), the robustness measurement, and the
multilayer per-depth table."""

from __future__ import annotations

import numpy as np

from ..theorems import run_check
from . import register_figure
from ._plot import log_floor, new_figure, pass_line, verdict_title


@register_figure("softhebb_norm", "SoftHebb: weight-norm gaps 1 - |w|^2 against the exact law (1 - |w0|^2) exp(-2 eta int m), and the linearised rate 2 eta m*")
def fig_softhebb_norm(quick: bool = True, seed: int = 0):
    r = run_check("softhebb_norm", quick=quick)
    ds, m = r.data, r.verdict.measured
    fig, (a, b) = new_figure(2, width=4.4)
    s0 = ds.seed.values[0]
    t = ds.time.values
    for k in ds.unit.values:
        g, _ = log_floor(np.abs(ds.norm_gap.sel(seed=s0, unit=k)), 1e-16)
        a.semilogy(t, g, lw=3, alpha=0.45, color=f"C{k}", label=f"unit {k}" if k < 4 else None)
        a.semilogy(t, np.maximum(np.abs(ds.predicted_gap.sel(seed=s0, unit=k)), 1e-16), "k--", lw=0.8)
    a.plot([], [], "k--", lw=0.8, label=r"$|1-\|w_0\|^2|\,e^{-2\eta\int m_k}$")
    a.set(xlabel=r"time $t$ (units of $1/\eta$)", ylabel=r"$|1 - \|w_k\|^2|$ (floored at $10^{-16}$)")
    verdict_title(a, "norms → 1 along the exact law\n" + f"(max rel. error {m['identity_rel_error']:.1e} ≤ 1e-6; seed {s0})", r.passed)
    a.legend(fontsize=7)
    for k in ds.unit.values:
        g, _ = log_floor(np.abs(ds.perturbed_gap.sel(seed=s0, unit=k)), 1e-16)
        b.semilogy(t, g, color=f"C{k}", lw=1.5)
    rates = ds.rate.sel(seed=s0).isel(time=-1).values
    for k, mk in enumerate(rates):
        g0 = float(np.abs(ds.perturbed_gap.sel(seed=s0, unit=k).isel(time=0)))
        b.semilogy(t, g0 * np.exp(-2 * ds.attrs["eta"] * mk * t), "k:", lw=0.9, label=r"$e^{-2\eta m_k^* t}$" if k == 0 else None)
    b.set(xlabel="time after a ±1% norm perturbation", ylabel=r"$|1 - \|w_k\|^2|$", ylim=(1e-17, 1))
    verdict_title(b, f"linearised rate 2ηm* (worst rel. error {abs(m['late_rate_rel_error']):.1%}, tol 2%)", None)
    b.legend(fontsize=7)
    return fig, ds, {"check": "softhebb_norm", "seed": seed}


@register_figure("softhebb_bayes", "SoftHebb on a von Mises-Fisher mixture: angle of the weights to the component means and KL(posterior || soft-WTA output) during learning")
def fig_softhebb_bayes(quick: bool = True, seed: int = 0):
    r = run_check("softhebb_bayes", quick=quick)
    ds, m = r.data, r.verdict.measured
    fig, (a, b) = new_figure(2, width=4.4)
    for i, s in enumerate(ds.seed.values):
        a.semilogy(ds.time, ds.worst_angle_curve.sel(seed=s), color=f"C{i}", label=f"seed {s}: worst component")
        a.axhline(float(ds.oracle_angle.sel(seed=s).max()), color=f"C{i}", ls=":", lw=1, label="labelled estimate (oracle)" if i == 0 else None)
        b.semilogy(ds.time, ds.kl_curve.sel(seed=s), color=f"C{i}", label=f"seed {s}")
        b.axhline(ds.attrs["kl_ratio_bound"] * float(ds.oracle_kl.sel(seed=s)), color=f"C{i}", ls="--", lw=1,
                  label=f"pass: ≤ {ds.attrs['kl_ratio_bound']:g} × oracle KL" if i == 0 else None)
    pass_line(a, ds.attrs["angle_bound_deg"], f"pass: ≤ {ds.attrs['angle_bound_deg']:.1f}° (4σ finite-sample)")
    from matplotlib.ticker import ScalarFormatter

    a.yaxis.set_major_formatter(ScalarFormatter())
    a.yaxis.set_minor_formatter(ScalarFormatter())
    a.set(xlabel=r"time $t$ (units of $1/\eta$)", ylabel=r"angle$(w_k, \mu_k)$ (deg), worst $k$")
    verdict_title(a, r"weights → component means ($\tau = 1/\kappa$)" + f"\n(worst {m['angle_to_mean_worst_deg']:.1f}°; EM fixed point within {m['angle_to_em_worst_deg']:.0e}°)", r.passed)
    b.set(xlabel=r"time $t$", ylabel=r"mean KL$(p(k|x)\,\|\,y(x))$ (nats)")
    verdict_title(b, f"soft-WTA outputs → posterior\n(KL / oracle KL = {m['kl_ratio_to_oracle_worst']:.2f}, ≤ {ds.attrs['kl_ratio_bound']:g})", None)
    a.legend(fontsize=6.5)
    b.legend(fontsize=6.5)
    return fig, ds, {"check": "softhebb_bayes", "seed": seed}


@register_figure("softhebb_robustness", "SoftHebb vs an equally sized BP network: test accuracy under Gaussian input noise and under FGSM")
def fig_softhebb_robustness(quick: bool = True, seed: int = 0):
    from ..models.hebbian.softhebb_robustness import FULL, QUICK, robustness

    cfg = dict(QUICK if quick else FULL)
    ds = robustness(**cfg)
    fig, (a, b) = new_figure(2, width=4.2)
    for i, lrn in enumerate(ds.learner.values):
        style = dict(color=f"C{i}", marker="o", ms=3, ls="-" if lrn == "bp" else "--", label=str(lrn))
        a.plot(ds.noise, ds.noisy_accuracy.sel(learner=lrn).mean("seed"), **style)
        b.plot(ds.eps, ds.fgsm_accuracy.sel(learner=lrn).mean("seed"), **style)
    a.set(xlabel=r"input noise $\sigma$ (test time)", ylabel=f"test accuracy (mean of {ds.seed.size} seed(s))", ylim=(0, 1))
    b.set(xlabel=r"FGSM step $\varepsilon$", ylabel="test accuracy", ylim=(0, 1))
    hid = ds.attrs["hidden"]
    verdict_title(a, f"Gaussian noise ({ds.attrs['data']}, hidden {hid}, {ds.attrs['epochs']} epochs)")
    e = ds.eps.values[-1]
    sh, bp = (float(ds.fgsm_accuracy.sel(learner=n).mean("seed").isel(eps=-1)) for n in ("softhebb", "bp"))
    verdict_title(b, f"FGSM: at ε = {e:g} SoftHebb {sh:.2f} vs BP {bp:.2f}")
    a.legend(fontsize=7)
    return fig, ds, dict(cfg, seed=seed)


@register_figure("softhebb_deep", "Multilayer SoftHebb (greedy, conv, triangle, max pool): test accuracy per depth against BP on the same network, and per epoch")
def fig_softhebb_deep(quick: bool = True, seed: int = 0):
    from ..models.hebbian.softhebb_depth import FULL, QUICK, depth_experiment

    cfg = dict(QUICK if quick else FULL)
    ds = depth_experiment(**cfg)
    fig, (a, b) = new_figure(2, width=4.2)
    x = np.arange(ds.depth.size)
    a.bar(x - 0.18, ds.accuracy.mean("seed"), 0.36, yerr=ds.accuracy.std("seed"), label="SoftHebb (greedy) + linear readout")
    has_bp = bool(np.isfinite(ds.bp_accuracy.values).any())
    a.bar(x + 0.18, np.nan_to_num(ds.bp_accuracy.mean("seed")), 0.36, yerr=np.nan_to_num(ds.bp_accuracy.std("seed")),
          label="BP, same network" if has_bp else "BP, same network (full run only)")
    a.set_xticks(x, [str(d) for d in ds.depth.values])
    a.set(xlabel="hidden conv layers", ylabel=f"test accuracy ({ds.attrs['data']})", ylim=(0, 1))
    verdict_title(a, f"accuracy per depth (widths {ds.attrs['widths']})")
    a.legend(fontsize=7, loc="lower right")
    for i, d in enumerate(ds.depth.values):
        acc = ds.accuracy_per_epoch.sel(depth=d).mean("seed")
        b.plot(ds.epoch, acc, marker="o", ms=3, color=f"C{i}", label=f"depth {d}")
    b.set(xlabel=f"epoch ({ds.attrs['epochs_per_layer']} per Hebbian layer, then {ds.attrs['readout_epochs']} readout only)",
          ylabel="test accuracy after the epoch", ylim=(0, 1))
    verdict_title(b, "greedy layer-wise learning, epoch by epoch")
    b.legend(fontsize=7)
    return fig, ds, dict(cfg, seed=seed)
