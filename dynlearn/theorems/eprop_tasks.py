r"""Theorem check for e-prop on a temporal credit-assignment task (Bellec et al., Nat. Commun. 11:3625, 2020), float64.

* ``eprop_recall`` — on the store-and-recall task of :mod:`dynlearn.experiments.temporal_tasks` (a bit shown once,
  recalled after a delay of 10 membrane time constants), a recurrent ALIF network trained by e-prop — symmetric,
  random and adaptive feedback — recalls the bit well above chance (worst feedback and seed), and its final loss is
  within a stated factor of surrogate-gradient BPTT's on the same network and trials (the paper's claim: e-prop
  approaches BPTT; ALIF adaptation and its eligibility :math:`\epsilon^a` bridge the delay). The adaptive
  feedback's angle to :math:`W_\mathrm{out}^\top` is reported at the start and the end.

The check takes the e-prop learner as an argument (``eprop_learner``), so a test can hand it a broken one (the
adaptation eligibility dropped) and see it fail. See ``theory/eprop_recall.md``.
"""

from __future__ import annotations

from ..experiments.temporal_tasks import BASELINE, EPROP_VARIANTS, learning_curves
from .criteria import at_least, at_most, reported
from .registry import Verdict, register_check

#: the network and task both configurations share (ms; dt = 1): membrane and readout 5, adaptation 200, delay 50
TASK = {"tau_mem": 5.0, "tau_out": 5.0, "tau_adapt": 200.0, "beta_adapt": 30.0, "surrogate_width": 1.5, "cue": 5}


def recall_verdict(ds, *, min_accuracy: float, max_loss_ratio: float, tail: int) -> Verdict:
    """The criteria of ``eprop_recall`` on a :func:`~dynlearn.experiments.temporal_tasks.learning_curves` dataset:
    the worst e-prop feedback and seed's final recall accuracy, and the largest ratio of an e-prop feedback's final
    loss (mean of the last ``tail`` iterations, worst seed) to BPTT's."""
    variants = [r for r in ds.rule.values if r != BASELINE]
    acc = ds.recall_accuracy.isel(evaluation=-1)
    final = ds.loss.isel(iteration=slice(-tail, None)).mean("iteration")
    ratio = max(float((final.sel(rule=v) / final.sel(rule=BASELINE)).max()) for v in variants)
    criteria = {
        "min_recall_accuracy": at_least(float(acc.sel(rule=variants).min()), min_accuracy),
        "final_loss_ratio_eprop_bptt": at_most(ratio, max_loss_ratio),
        "bptt_recall_accuracy": reported(float(acc.sel(rule=BASELINE).min())),
        "eprop_final_loss": reported(float(final.sel(rule=variants).max())),
        "bptt_final_loss": reported(float(final.sel(rule=BASELINE).max())),
    }
    if "adaptive" in variants:
        angle = ds.feedback_angle.sel(rule="adaptive")
        criteria["adaptive_angle_start_deg"] = reported(float(angle.isel(iteration=0).max()))
        criteria["adaptive_angle_end_deg"] = reported(float(angle.isel(iteration=-1).max()))
    return Verdict.from_criteria(**criteria)


@register_check(
    "eprop_recall",
    family="spiking",
    statement="on store-and-recall (delay 50 ms = 10 membrane time constants) a recurrent ALIF network trained by e-prop (symmetric, random, adaptive feedback) recalls the bit with accuracy >= 0.75 (chance 0.5), final loss <= 1.5x BPTT's",
    theory="theory/eprop_recall.md",
    quick={"seeds": (0,), "iterations": 40, "eval_every": 10},
    full={"seeds": (0, 1, 2), "iterations": 200, "eval_every": 25, "n_rec": 60, "eval_batch": 512},
)
def eprop_recall(*, seeds=(0,), iterations=50, eval_every=25, n_rec=40, delay=50, n_values=1, batch=16, eval_batch=128, lr=1e-2,
                 feedback_decay=1e-2, neuron="alif", variants=EPROP_VARIANTS, min_accuracy=0.75, max_loss_ratio=1.5, tail=10, eprop_learner=None):
    """:func:`~dynlearn.experiments.temporal_tasks.learning_curves` of e-prop (``variants``) and BPTT on the
    store-and-recall task (:data:`TASK`), then :func:`recall_verdict`."""
    ds = learning_curves(seeds=seeds, iterations=iterations, eval_every=eval_every, n_rec=n_rec, delay=delay, n_values=n_values, batch=batch,
                         eval_batch=eval_batch, lr=lr, feedback_decay=feedback_decay, neuron=neuron, variants=variants, learner=eprop_learner, **TASK)
    ds.attrs["claim"] = "e-prop approaches BPTT on tasks that need memory over delays longer than the membrane time constant (Bellec et al. 2020, Fig. 3 and Supplementary)"
    ds.attrs["chance_accuracy"] = 0.5
    return ds, recall_verdict(ds, min_accuracy=min_accuracy, max_loss_ratio=max_loss_ratio, tail=min(tail, iterations))


__all__ = ["TASK", "eprop_recall", "recall_verdict"]
