"""Desire backpropagation's headline number: its test accuracy on Fashion-MNIST with the paper's network.

Gerlinghoff, Luo, Goh & Wong (Neurocomputing 2023) report 87.56 % on Fashion-MNIST with a 784-512-256-10 spiking
network trained by desire BP. The paper trains per sample with plain SGD for 50 epochs; here ``snn/desire`` trains
with Adam at 3e-4, batch 64, its rate decayed to 0 over the run by a cosine schedule (at a constant 3e-4 the test
accuracy wanders between 84.7 and 86.1 % over the last 15 of 30 epochs and ends at 84.7 %).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from . import register_figure
from ._plot import new_figure, verdict_title
from .spiking_rules import DESIRE_FASHION, DESIRE_GAP

#: Adam's initial rate for desire BP: on the paper's network (its update is a sum of ternary-gated STDP terms over
#: 784-512-256 synapses) and on the small quick one (the accuracy table's rate)
DESIRE_LR = {"full": 3e-4, "quick": 3e-3}


def desire_curve(quick: bool = True, seed: int = 0) -> xr.Dataset:
    """Test accuracy per epoch of ``snn/desire``: coded digits, (64,), 5 epochs (quick) or Fashion-MNIST,
    784-512-256-10, 30 epochs (full); Adam from :data:`DESIRE_LR` cosine-decayed to 0, batch 64."""
    import optax

    from ..data import load
    from ..learning import train
    from ..rules import get_learner

    data, hidden, epochs = (load("digits"), (64,), 5) if quick else (load("fashion_mnist"), (512, 256), 30)
    lr, steps = DESIRE_LR["quick" if quick else "full"], epochs * int(np.ceil(data.x_train.shape[0] / 64))
    _, hist = train(get_learner("snn/desire"), data, hidden=hidden, epochs=epochs, optimizer=optax.adam(optax.cosine_decay_schedule(lr, steps)),
                    lr=None, seed=seed, progress=not quick)
    return xr.Dataset({"test_accuracy": ("epoch", hist.test_accuracy.values), "seconds": ("epoch", hist.seconds.values)},
                      coords={"epoch": hist.epoch.values},
                      attrs={"data": data.name, "hidden": str(hidden), "optimizer": f"adam, lr {lr:g} cosine-decayed to 0, batch 64", "seed": seed})


@register_figure("desire_fashion_mnist", "Desire BP's test accuracy per epoch (full: Fashion-MNIST, 784-512-256-10, against the paper's 87.56 %; quick: coded digits)")
def fig_desire_fashion_mnist(quick: bool = True, seed: int = 0):
    ds = desire_curve(quick, seed)
    fig, (a,) = new_figure(1, width=5.0)
    acc = 100 * ds.test_accuracy.values
    a.plot(ds.epoch, acc, "o-", ms=3, color="C3", label="snn/desire")
    passed = None
    if not quick:
        ref, gap = 100 * DESIRE_FASHION, 100 * DESIRE_GAP
        a.axhline(ref, color="k", lw=0.8, label="the paper: 87.56 %")
        a.axhspan(ref - gap, ref + gap, color="C3", alpha=0.15, label="± 1.5 points")
        passed = bool(abs(acc[-1] - ref) <= gap)
    a.set(xlabel="epoch", ylabel=f"test accuracy (%), {ds.attrs['data']}")
    a.legend(fontsize=7, loc="lower right")
    verdict_title(a, f"desire BP, {ds.attrs['data']} {ds.attrs['hidden']}: final {acc[-1]:.2f} %\n({ds.attrs['optimizer']})", passed)
    return fig, ds, {"seed": seed, "quick": quick, "data": ds.attrs["data"], "hidden": ds.attrs["hidden"]}
