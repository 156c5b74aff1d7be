"""Figures for learned and local credit assignment: one per theorem check (NTK-regime rule, directional DFA,
meta-learned plasticity), each drawn from the check's data with its pass threshold."""

from __future__ import annotations

import numpy as np

from ..theorems import run_check
from . import register_figure
from ._plot import mean_band, new_figure, pass_line, slope_guide, verdict_title
from .local_accuracy import CONV_FULL, conv_accuracy


@register_figure("ntk_rule_width", "NTK-regime local rule: 1 - cos(rule update, BP update) against the width, NTK vs standard parametrisation, with the width^-1 law")
def fig_ntk_rule_width(quick: bool = True, seed: int = 0):
    r = run_check("ntk_rule_width", quick=quick)
    # the must-fail twin (standard parametrisation) is drawn in the full figure only, to keep the quick run cheap
    twin = None if quick else run_check("ntk_rule_width", quick=quick, parametrisation="standard")
    fig, (a,) = new_figure(1, width=5.0)
    for res, ls, name in ((r, "-", "NTK"), (twin, ":", "standard")):
        if res is None:
            continue
        ds = res.data
        for i, layer in enumerate(ds.hidden_layer.values):
            m = ds.one_minus_cos.sel(layer=layer).mean("seed")
            a.loglog(ds.width, m, ls, marker="o", color=f"C{i}", label=f"{name}: ${layer[0]}_{layer[1:]}$ (slope {float(ds.slope.sel(hidden_layer=layer)):.2f})")
    ds = r.data
    first = float(ds.one_minus_cos.isel(width=0).mean("seed").max())
    slope_guide(a, ds.width.values, first, -1.0, label=r"$\propto n^{-1}$ (pass: slope $-1 \pm 0.2$)")
    a.set(xlabel="hidden width $n$", ylabel=r"$1 - \cos(\Delta W^{\rm rule}_l, \Delta W^{\rm BP}_l)$, mean over seeds")
    verdict_title(a, "the local rule tends to backprop as $n^{-1}$ in the NTK parametrisation\n"
                  f"(NTK slope {r.verdict.measured['slope_worst_layer']:.2f}"
                  + ("" if twin is None else f"; standard {twin.verdict.measured['slope_worst_layer']:.2f}") + ")", r.passed)
    a.legend(fontsize=6.5)
    both = ds if twin is None else ds.assign(one_minus_cos_standard=twin.data.one_minus_cos, slope_standard=twin.data.slope)
    return fig, both, {"check": "ntk_rule_width", "seed": seed}


@register_figure("ddfa_unbiased", "Directional DFA: relative error of the forward-mode Jacobian estimate against the number of directions k, with the k^-1/2 law, and the bias in standard errors")
def fig_ddfa_unbiased(quick: bool = True, seed: int = 0):
    r = run_check("ddfa_unbiased", quick=quick)
    ds = r.data
    fig, (a, b) = new_figure(2)
    for i, layer in enumerate(ds.layer.values):
        a.loglog(ds.k, ds.mean_error.sel(layer=layer), "o-", color=f"C{i}", label=f"${layer[0]}_{layer[1:]}$ (slope {float(ds.slope.sel(layer=layer)):.3f})")
        b.semilogx(ds.k, ds.bias_ratio.sel(layer=layer), "o-", color=f"C{i}", label=f"${layer[0]}_{layer[1:]}$")
    slope_guide(a, ds.k.values, float(ds.mean_error.isel(k=0).max()), -0.5, label=r"$\propto k^{-1/2}$ (pass: $-0.5 \pm 0.1$)")
    a.set(xlabel="directions $k$", ylabel=r"mean $\|\hat J_l - \bar J_l\|_F / \|\bar J_l\|_F$")
    verdict_title(a, f"the jvp estimate's error falls as $k^{{-1/2}}$\n(worst slope {r.verdict.measured['slope_worst_layer']:.3f}, {ds.repeat.size} repeats)", r.passed)
    pass_line(b, float(r.verdict.tolerance["bias_ratio_max"].split()[-1]), f"pass: {r.verdict.tolerance['bias_ratio_max']}")
    b.axhline(1.0, color="0.4", lw=0.8, ls=":", label="unbiased: ~1")
    b.set(xlabel="directions $k$", ylabel=r"$\|E[\hat J_l] - \bar J_l\|$ / standard error", ylim=(0, None))
    verdict_title(b, "and unbiased (bias within its standard error)", r.passed)
    a.legend(fontsize=7)
    b.legend(fontsize=7)
    return fig, ds, {"check": "ddfa_unbiased", "seed": seed}


@register_figure("ddfa_alignment", "Directional DFA: angle between the learned feedback B_l and the true mean Jacobian during training on digits; the full figure adds BP, DFA and dDFA accuracy on a small conv net")
def fig_ddfa_alignment(quick: bool = True, seed: int = 0):
    r = run_check("ddfa_alignment", quick=quick)
    ds = r.data
    fig, axes = new_figure(1 if quick else 3, width=4.8)
    a = axes[0]
    for i, layer in enumerate(ds.layer.values):
        mean_band(a, ds.step, ds.angle_B_J.sel(layer=layer).transpose("seed", "step"), color=f"C{i}", label=rf"angle$({layer[0]}_{layer[1:]}, \bar J_{layer[1:]})$")
    pass_line(a, float(r.verdict.tolerance["final_angle_worst"].split()[-1]), f"pass: final angle {r.verdict.tolerance['final_angle_worst']}°")
    a.set(xlabel="training step (Adam, digits)", ylabel=f"angle (deg), mean ± s.d. of {ds.seed.size} seeds", ylim=(0, 100))
    verdict_title(a, f"the learned feedback aligns with the true Jacobian\n(worst final angle {r.verdict.measured['final_angle_worst']:.1f}°)", r.passed)
    a.legend(fontsize=7)
    if not quick:  # conv-net accuracy (Bacho & Chu: dDFA closer to BP than DFA, conv layers included)
        for ax, kind in zip(axes[1:], ("mlp", "conv")):
            acc = conv_accuracy(**CONV_FULL, network=kind)
            _conv_panel(ax, acc)
            ds = ds.assign({f"{kind}_test_accuracy": acc.test_accuracy.rename(learner="acc_learner", seed="acc_seed", epoch="acc_epoch")})
    return fig, ds, {"check": "ddfa_alignment", "seed": seed}


def _conv_panel(a, conv) -> None:
    """Test accuracy per epoch of every learner of a :func:`conv_accuracy` Dataset, with the final gaps to BP."""
    names = {"bp": "BP", "dfa": "DFA", "ddfa": "dDFA"}
    for i, name in enumerate(conv.learner.values):
        mean_band(a, conv.epoch, conv.test_accuracy.sel(learner=name), color=f"C{i}", label=names.get(str(name), str(name)), marker="o", ms=3)
    final = conv.test_accuracy.isel(epoch=-1).mean("seed")
    gaps = ", ".join(f"BP − {names.get(str(n), str(n))}: {100 * float(final.sel(learner='bp') - final.sel(learner=n)):.1f}"
                     for n in conv.learner.values if n != "bp")
    a.set(xlabel=f"epoch (Adam {conv.attrs['lr']:g}, {conv.attrs['n_train']} training images)", ylabel=f"test accuracy, mean ± s.d. of {conv.seed.size} seeds")
    verdict_title(a, f"{conv.attrs['short_name']}: dDFA closer to BP than DFA?\nfinal {gaps} points", None)
    a.legend(fontsize=7)


@register_figure("meta_plasticity_low_data", "Meta-learned plasticity: coefficients during meta-training, and held-out few-shot accuracy of the learned rule against plain FA")
def fig_meta_plasticity(quick: bool = True, seed: int = 0):
    r = run_check("meta_plasticity_low_data", quick=quick)
    ds = r.data
    fig, (a, b) = new_figure(2)
    names = {"fa": r"$\theta_{\rm fa}$ ($\delta_l h_{l-1}^\top$)", "hebb": r"$\theta_{\rm hebb}$", "oja": r"$\theta_{\rm oja}$",
             "err": r"$\theta_{\rm err}$ ($\delta_l \delta_{l-1}^\top$)", "decay": r"$\theta_{\rm decay}$ ($W_l$)"}
    for i, t in enumerate(ds.term.values):
        a.plot(ds.meta_step, ds.coefficient_history.sel(term=t), color=f"C{i}", label=names.get(str(t), str(t)))
    a.set(xlabel="meta-step (Adam on the query loss + L1)", ylabel=r"coefficient $\theta_r$")
    verdict_title(a, "meta-learned coefficients of the local terms", None)
    a.legend(fontsize=6.5)
    m = r.verdict.measured
    bins = np.linspace(0, 1, 21)
    b.hist(ds.accuracy_fa, bins=bins, alpha=0.6, label=f"FA (lr {ds.attrs['lr']:g}): mean {m['accuracy_fa']:.3f}")
    b.hist(ds.accuracy_meta, bins=bins, alpha=0.6, label=f"meta-learned: mean {m['accuracy_meta']:.3f}")
    b.axvline(ds.attrs["chance"], color="0.3", ls=":", lw=1, label="chance")
    b.set(xlabel=f"query accuracy after {ds.attrs['n_way']}-way {ds.attrs['k_shot']}-shot online learning", ylabel="held-out tasks")
    verdict_title(b, f"the learned rule beats FA on held-out tasks\n(gain {m['gain_in_standard_errors']:.1f} s.e.; pass > 3)", r.passed)
    b.legend(fontsize=6.5)
    return fig, ds, {"check": "meta_plasticity_low_data", "seed": seed}
