r"""Accuracy of PC with non-negative rates and one-way synapses against unconstrained PC (Alonso & Neftci, ICONS 2021:
"as well or nearly as well as the unmodified PC model").

* ``pc_positive_accuracy`` — ``pc/positive`` (rates :math:`x_l \ge 0` by a projected flow, hidden predictions
  :math:`\rho(a_l)` with ρ = ReLU, learned Kolen–Pollack feedback) ends within 1 point of ``pc/clamped`` (ReLU) on
  the same initial network, data, optimiser and inference budget (mean over seeds, every network size).

See ``theory/pc_positive.md``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ..data import load
from ..learning import train
from ..models.pc_positive import init_positive_params
from ..networks import init_network
from ..rules import get_learner
from .criteria import at_most, reported
from .registry import Verdict, register_check


def shared_start(sizes, seed: int, top_scale: float):
    r"""One initial network for both learners: Xavier-normal weights (key ``seed``) with ``W_2..W_L`` scaled by
    ``top_scale``, as a ReLU network (``pc/clamped``: :math:`\varepsilon_l = x_l - W_l\,\mathrm{relu}(x_{l-1}) - b_l`)
    and as a linear one (``pc/positive`` with ρ = ReLU: :math:`\varepsilon_l = x_l - \mathrm{relu}(W_l x_{l-1} + b_l)`)."""
    net = init_network(sizes, key=jax.random.key(seed), activation="linear", dtype=jnp.float32)  # accuracy: float32 suffices
    ws = net.weights
    net = net.with_matrices([ws[0], *(top_scale * w for w in ws[1:])], net.biases)
    return net, type(net).from_matrices(net.weights, net.biases, "relu")


@register_check(
    "pc_positive_accuracy",
    family="pc",
    statement="PC with non-negative rates (projected flow, ReLU-rate predictions) and learned one-way feedback ends within 1 point of unconstrained clamped PC on the same ReLU network (digits, mean over seeds; Alonso & Neftci: 'as well or nearly as well as PC')",
    theory="theory/pc_positive.md",
    quick={},
    full={"seeds": (0, 1, 2), "hiddens": ((64,), (128, 128))},
)
def pc_positive_accuracy(*, dataset="digits", hiddens=((64,),), epochs=10, seeds=(0,), lr=3e-3, max_gap=0.01, feedback="learned", rate="relu",
                         top_scale=0.1, feedback_scale=0.1, n_train=6000, n_test=2000):
    """Train ``pc/clamped`` (ReLU) and ``pc/positive`` (``feedback``, ``rate``) with Adam at ``lr`` for ``epochs`` from
    :func:`shared_start`; gap = mean accuracy of PC − mean accuracy of positive PC, per network, worst network taken.
    ``dataset`` is ``"digits"`` or ``"fashion_mnist"`` (``n_train``/``n_test`` samples)."""
    data = load(dataset) if dataset == "digits" else load(dataset, n_train=n_train, n_test=n_test)
    pc = get_learner("pc/clamped", activation="relu")
    pos = get_learner("pc/positive", feedback=feedback, rate=rate)
    acc = np.zeros((len(hiddens), 2, len(seeds)))
    cosine = np.full((len(hiddens), len(seeds)), np.nan)
    for i, hidden in enumerate(hiddens):
        sizes = (data.x_train.shape[1], *hidden, data.y_train.shape[1])
        for j, seed in enumerate(seeds):
            lin, relu = shared_start(sizes, seed, top_scale)
            p0 = init_positive_params(jax.random.key(seed + 1000), lin, feedback, rate, feedback_scale)
            for k, (learner, params) in enumerate(((pc, relu), (pos, p0))):
                _, h = train(learner, data, params=params, epochs=epochs, lr=lr, seed=seed, progress=False)
                acc[i, k, j] = float(h["test_accuracy"].values[-1])
            if "train_feedback_cosine" in h:
                cosine[i, j] = float(h["train_feedback_cosine"].values[-1])
    gap = acc[:, 0].mean(-1) - acc[:, 1].mean(-1)
    names = ["x".join(map(str, h)) for h in hiddens]
    ds = xr.Dataset(
        {"test_accuracy": (("hidden", "learner", "seed"), acc), "gap": ("hidden", gap), "feedback_cosine": (("hidden", "seed"), cosine)},
        coords={"hidden": names, "learner": ["pc/clamped", "pc/positive"], "seed": list(seeds)},
        attrs={"dataset": dataset, "epochs": epochs, "lr": lr, "feedback": feedback, "rate": rate},
    )
    verdict = Verdict.from_criteria(
        max_gap_to_pc=at_most(float(np.max(gap)), max_gap),
        pc_accuracy=reported(float(acc[:, 0].mean())),
        positive_accuracy=reported(float(acc[:, 1].mean())),
        min_feedback_cosine=reported(float(np.nanmin(cosine)) if np.isfinite(cosine).any() else np.nan),
    )
    return ds, verdict
