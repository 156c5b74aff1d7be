r"""The robustness claim of SoftHebb (Moraitis et al. 2022), measured: test accuracy of a SoftHebb network and of an
equally sized network trained end to end by backprop, under Gaussian input noise and under the fast gradient sign
method (FGSM; Goodfellow, Shlens & Szegedy 2015).

* noise: :math:`\tilde x = x + \sigma\,\epsilon`, :math:`\epsilon \sim N(0, I)` (the holistic comparison's protocol);
* FGSM: :math:`\tilde x = x + \varepsilon\,\mathrm{sign}\,\nabla_x L(f(x), y)`, the gradient of the cross-entropy of
  each network's own readout through the whole network (white box, one step); inputs are not clipped.

Both networks have the same layer widths; SoftHebb's hidden layers are Hebbian (learner ``softhebb``) and its readout
is trained by the loss gradient, the BP network (learner ``bp``, ReLU, cross-entropy) is trained by backprop, both with
Adam at the same rate for the same epochs. The claim in the paper is for MNIST with 2000 hidden units and PGD; this is
the same question at the size of the data here. A measurement, reported, not a pass/fail check.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ...losses import cross_entropy_loss
from ... import draws

#: the quick setting (digits) and the full one
QUICK = {"data": "digits", "hidden": (64,), "epochs": 5, "lr": 1e-2, "seeds": (0,), "noise": (0.0, 0.25, 0.5, 1.0), "eps": (0.0, 0.02, 0.05, 0.1, 0.2)}
FULL = dict(data="digits", hidden=(256,), epochs=20, lr=3e-3, seeds=(0, 1, 2), noise=(0.0, 0.25, 0.5, 0.75, 1.0, 1.5),
            eps=(0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3))


def fgsm(learner, params, x, y, eps):
    """FGSM inputs :math:`x + \\varepsilon\\,\\mathrm{sign}\\,\\nabla_x L` for ``learner.predict``."""
    g = jax.grad(lambda xx: cross_entropy_loss(learner.predict(params, xx), y))(x)
    return x + eps * jnp.sign(g)


def _accuracy(learner, params, x, labels):
    return float(np.mean(np.asarray(jnp.argmax(learner.predict(params, x), -1)) == labels))


def robustness(*, data="digits", hidden=(64,), epochs=5, lr=1e-2, seeds=(0,), noise=(0.0, 0.5), eps=(0.0, 0.1), n_train=None,
               n_test=None, tau=None) -> xr.Dataset:
    """Train ``softhebb`` and ``bp`` on ``data`` and measure test accuracy under noise ``sigma`` and FGSM ``eps``."""
    from ...data import load
    from ...learning import train
    from ...rules import get_learner

    kw = {} if data == "digits" else {"n_train": n_train, "n_test": n_test}
    ds_ = load(data, **kw)
    x = jnp.asarray(ds_.x_test)
    y = jnp.asarray(ds_.y_test)
    labels = ds_.labels_test
    learners = {"softhebb": get_learner("softhebb", **({} if tau is None else {"tau": tau})), "bp": get_learner("bp", loss="ce", activation="relu")}
    acc_noise = np.zeros((len(learners), len(seeds), len(noise)))
    acc_fgsm = np.zeros((len(learners), len(seeds), len(eps)))
    for i, learner in enumerate(learners.values()):
        for j, seed in enumerate(seeds):
            params, _ = train(learner, ds_, hidden=tuple(hidden), epochs=epochs, lr=lr, seed=seed, progress=False)
            draw = draws.normal(jax.random.key(1000 + seed), x.shape, x.dtype)
            acc_noise[i, j] = [_accuracy(learner, params, x + s * draw, labels) for s in noise]
            acc_fgsm[i, j] = [_accuracy(learner, params, fgsm(learner, params, x, y, e), labels) for e in eps]
    return xr.Dataset(
        {"noisy_accuracy": (("learner", "seed", "noise"), acc_noise), "fgsm_accuracy": (("learner", "seed", "eps"), acc_fgsm)},
        coords={"learner": list(learners), "seed": list(seeds), "noise": list(noise), "eps": list(eps)},
        attrs={"data": data, "hidden": str(tuple(hidden)), "epochs": epochs, "lr": lr},
    )
