"""TDCA figures: test accuracy on digits per epoch (TDCA vs BP vs DFA), and the non-convex toy landscape with where
BP and TDCA end from each start (the ``tdca_toy_landscape`` check's data)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..data import load_digits
from ..learning import train
from ..rules import get_learner
from ..theorems import run_check
from ..theorems.tdca import toy_problem
from . import register_figure
from ._plot import new_figure, pass_line, verdict_title

#: ``(label, learner name, options)`` of the accuracy panel; every learner uses the cross-entropy loss (the quick
#: figure trains the first two only, to stay within the quick budget)
LEARNERS = (("TDCA", "tdca", {}), ("BP", "bp", {"loss": "ce"}), ("DFA", "dfa", {"loss": "ce"}))


def digits_accuracy(*, hidden=(32,), epochs=3, seed=0, lr=1e-3, learners=LEARNERS) -> xr.Dataset:
    """Test accuracy per epoch of every learner of ``learners`` on digits (Adam at ``lr``, batch 64)."""
    data = load_digits()
    acc = [train(get_learner(name, **opts), data, hidden=hidden, epochs=epochs, lr=lr, seed=seed, progress=False)[1].test_accuracy.values
           for _, name, opts in learners]
    return xr.Dataset({"test_accuracy": (("learner", "epoch"), np.array(acc))},
                      coords={"learner": [n for n, _, _ in learners], "epoch": np.arange(1, epochs + 1)},
                      attrs={"hidden": str(tuple(hidden)), "lr": lr, "seed": seed})


def toy_profile(w1) -> np.ndarray:
    r"""The toy loss per sample with the best :math:`w_2` for each :math:`w_1`:
    :math:`\tfrac{1}{2n}(\|y\|^2 - \langle s, y\rangle^2/\|s\|^2)`, :math:`s = \sin(w_1 x)`."""
    x, y = (np.asarray(a)[:, 0] for a in toy_problem())
    s = np.sin(np.outer(w1, x))
    return 0.5 * (y @ y - (s @ y) ** 2 / np.maximum((s * s).sum(1), 1e-300)) / x.size


@register_figure("tdca", "TDCA: test accuracy on digits per epoch against BP (full figure: and DFA; cross-entropy), and the non-convex toy landscape with the final w1 of BP and TDCA from each start")
def fig_tdca(quick: bool = True, seed: int = 0):
    acc = digits_accuracy(seed=seed, learners=LEARNERS[:2]) if quick else digits_accuracy(hidden=(128, 128), epochs=10, seed=seed)
    toy = run_check("tdca_toy_landscape", quick=quick)
    fig, (a, b) = new_figure(2, width=4.6)
    for i, name in enumerate(acc.learner.values):
        a.plot(acc.epoch, acc.test_accuracy.sel(learner=name), "o-", color=f"C{i}", label=f"{name} ({float(acc.test_accuracy.sel(learner=name)[-1]):.3f})")
    a.set(xlabel="epoch (Adam, batch 64)", ylabel="test accuracy", ylim=(0, 1), xticks=acc.epoch.values)
    verdict_title(a, f"digits, hidden {acc.attrs['hidden']}: TDCA vs " + " vs ".join(acc.learner.values[1:]) + "\n(cross-entropy; final accuracy in the legend)")
    a.legend(fontsize=7)
    ds = toy.data
    w1 = np.linspace(0.0, 5.2, 521)
    b.plot(w1, toy_profile(w1), color="0.3", lw=1.0, label=r"$\min_{w_2} L(w_1, w_2)$ per sample")
    for key, marker, color, name in (("bp", "x", "C1", "BP"), ("tdca", "o", "C0", "TDCA")):
        w_end, l_end = ds[f"{key}_final_w1"].values, ds[f"{key}_final_loss"].values
        b.scatter(np.abs(w_end), l_end, marker=marker, color=color, s=36 if marker == "x" else 18, zorder=3,
                  label=f"{name} end ({int(np.sum(l_end <= ds.attrs['global_tol']))}/{l_end.size} at the global min.)")
    b.scatter(ds.w1_start, toy_profile(ds.w1_start.values), marker="|", color="0.5", s=60, label="starts $w_1^{(0)}$")
    pass_line(b, ds.attrs["global_tol"], f"global-minimum threshold {ds.attrs['global_tol']}", color="tab:green")
    b.set(xlabel=r"$|w_1|$ of $f(x) = w_2 \sin(w_1 x)$", ylabel="loss per sample", yscale="symlog", ylim=(-0.001, 1.0))
    b.set_yscale("symlog", linthresh=1e-3)
    verdict_title(b, f"toy landscape: global minimum at $w_1 = 3$\n(outer loop lowers $L_{{\\rm ahead}}$: worst ratio {toy.verdict.measured['lookahead_ratio_worst']:.3f})", toy.passed)
    b.legend(fontsize=6)
    out = ds.assign(test_accuracy=acc.test_accuracy)
    return fig, out, {"check": "tdca_toy_landscape", "seed": seed, "hidden": acc.attrs["hidden"]}
