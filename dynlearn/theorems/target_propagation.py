r"""Theorem checks for target propagation (float64; :mod:`dynlearn.rules.dtp`).

* ``dtp_difference_correction`` — DTP's difference correction (Lee, Zhang, Fischer & Bengio 2015): with the output
  target equal to the output, every propagated target equals its layer's rate; with exact layer inverses the
  propagated target of layer ``l-1`` is mapped by :math:`f_l` exactly onto the target of layer ``l``.
* ``fwdtp_propagation_architecture`` — the propagation architecture of FW-DTP (Shibuya et al. 2023): with the
  difference correction, DTP's feedback step is :math:`\tilde g_l(\tau) = g_l(\tau) - g_l(h_l) + h_{l-1}`, which
  passes through :math:`(h_l, h_{l-1})` for any :math:`g_l` and carries target differences through its Jacobian;
  FW-DTP's update divided by the output step η tends to the update of the linear propagation
  :math:`e_{l-1} = J_{g_l}(h_l)\,e_l` with error :math:`O(\eta)`.
* ``fwdtp_vs_dtp`` — the paper's claim that FW-DTP reaches a higher test accuracy than DTP, measured (reported
  whichever way it falls) over seeds on digits (and a Fashion-MNIST subset in the full run).

See ``theory/dtp.md`` and ``theory/fwdtp.md``.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ..analysis import bp_gradient, loglog_slope
from ..losses import mse_loss
from ..models.base import Data
from ..networks import init_network
from ..rules.base import get_learner
from ..rules.dtp import layer_map, output_target, propagate_targets, rates
from .criteria import at_least, at_most, reported, within
from .registry import Verdict, register_check
from .. import draws

#: the quick sweep of FW-DTP's output step η
STEPS = tuple(np.logspace(-4, -1, 7))


def _invertible_problem(size, depth, batch, seed):
    """A square tanh network (orthogonal weights, so every layer map is invertible and well conditioned), inputs, targets."""
    k_net, k_x, k_y = jax.random.split(jax.random.key(seed), 3)
    net = init_network((size,) * (depth + 1), key=k_net, scheme="orthogonal", gain=1.0, bias_scale=0.1, dtype=jnp.float64)
    x = 0.5 * draws.normal(k_x, (batch, size), jnp.float64)
    y = draws.normal(k_y, (batch, size), jnp.float64)
    return net, x, y


def _inverses(net, noise, key):
    r"""Analytic inverses :math:`g_l(h) = W_l^{-1}(\varphi_l^{-1}(h) - b_l)` for ``l = 2..L`` (:math:`\varphi_L` = id,
    hidden :math:`\varphi^{-1}` = artanh), of weights perturbed by ``noise`` × N(0, 1/n) (0: exact)."""
    out = []
    for l in range(2, net.depth + 1):
        w, b = net.weights[l - 1], net.biases[l - 1]
        w = w + noise * draws.normal(jax.random.fold_in(key, l), w.shape, w.dtype) / np.sqrt(w.shape[0])
        unsquash = (lambda h: h) if l == net.depth else jnp.arctanh
        out.append(lambda h, w=w, b=b, u=unsquash: jnp.linalg.solve(w, (u(h) - b).T).T)
    return out

@eqx.filter_jit
def _correction_figures(seeds, size, depth, batch, steps, inverse_noise, difference):
    """Per seed (vmapped, one compilation): ``(worst |τ_l − h_l| at η = 0, the same without the correction through
    inverses perturbed by 0.05, max|f_l(τ_{l-1}) − τ_l| / max|τ_l − h_l| per step and layer)``."""
    return jax.vmap(lambda s: _one_network(*_invertible_problem(size, depth, batch, s), jax.random.fold_in(jax.random.key(10_000), s),
                                           steps, inverse_noise, difference))(seeds)


def _one_network(net, x, y, key, steps, inverse_noise, difference):
    hs = rates(net, x)
    g = _inverses(net, inverse_noise, key)
    worst = lambda taus: jnp.max(jnp.stack([jnp.max(jnp.abs(t - h)) for t, h in zip(taus, hs[1:])]))
    zero = worst(propagate_targets(hs, hs[-1], g, difference=difference))
    plain = worst(propagate_targets(hs, hs[-1], _inverses(net, 0.05, key), difference=False))

    def consistency(step):
        taus = propagate_targets(hs, output_target(hs[-1], y, mse_loss, step), g, difference=difference)
        return jnp.stack([jnp.max(jnp.abs(layer_map(net, l, taus[l - 2]) - taus[l - 1])) / jnp.max(jnp.abs(taus[l - 1] - hs[l]))
                          for l in range(2, net.depth + 1)])

    return zero, plain, jax.vmap(consistency)(steps)


@register_check(
    "dtp_difference_correction",
    family="target_propagation",
    statement="DTP's difference correction: a target equal to the output propagates to targets equal to the rates, and with exact inverses f_l(tau_{l-1}) = tau_l (<= 1e-10)",
    theory="theory/dtp.md",
    quick={},
    full={"seeds": tuple(range(10)), "steps": (0.001, 0.003, 0.01, 0.03, 0.1)},
)
def dtp_difference_correction(*, size=6, depth=3, batch=5, seeds=(0, 1, 2), steps=(0.003, 0.01, 0.03), inverse_noise=0.0, difference=True, tol=1e-10):
    """Per seed: rates of a square tanh network, the output target :math:`\\tau_L = h_L - \\eta(h_L - y)`, targets
    propagated by :func:`dynlearn.rules.dtp.propagate_targets` through the analytic inverses (``inverse_noise`` > 0
    perturbs them). Measured: the worst |τ_l − h_l| at η = 0, and the worst
    :math:`\\max|f_l(\\tau_{l-1}) - \\tau_l| / \\max|\\tau_l - h_l|` over layers, steps and seeds (:math:`f_l` is the
    network's own layer map, not the inverse)."""
    zero_err, contrast, consistency = (np.asarray(a) for a in _correction_figures(jnp.asarray(seeds), size, depth, batch, jnp.asarray(steps),
                                                                                 jnp.asarray(inverse_noise, jnp.float64), difference))
    ds = xr.Dataset(
        {"forward_consistency": (("seed", "step", "layer"), consistency), "zero_step_error": ("seed", np.asarray(zero_err)),
         "plain_tp_zero_step_error": ("seed", np.asarray(contrast))},
        coords={"seed": list(seeds), "step": np.asarray(steps), "layer": np.arange(2, depth + 1)},
    )
    verdict = Verdict.from_criteria(
        zero_step_target_error=at_most(zero_err.max(), tol),
        forward_consistency=at_most(consistency.max(), tol),
        plain_tp_zero_step_error=reported(contrast.max()),
    )
    return ds, verdict


def _linear_propagation_update(params, x, y):
    r"""The update of the linear propagation written out with explicit matrices, per unit output step:
    :math:`e_L = y - \mathrm{softmax}(h_L)` (:math:`-\partial L/\partial h_L`, cross-entropy),
    :math:`e_{l-1} = \varphi'(V_l h_l + c_l)\odot V_l e_l`, and (descent sign)
    :math:`\partial\mathcal L_l/\partial W_l = -(e_l\odot\varphi'(a_l))\,h_{l-1}^\top` (no :math:`\varphi'` at the output)."""
    net, fb = params.network, params.feedback
    ws, bs = net.weights, net.biases
    hs, pre = [x], []
    for l, (w, b) in enumerate(zip(ws, bs), start=1):
        pre.append(hs[-1] @ w.T + b)
        hs.append(pre[-1] if l == len(ws) else jnp.tanh(pre[-1]))
    es = [y - jax.nn.softmax(hs[-1], axis=-1)]
    for l in range(len(ws), 1, -1):
        v, c = fb[l - 2].weight, fb[l - 2].bias
        es.insert(0, (1 - jnp.tanh(hs[l] @ v.T + c) ** 2) * (es[0] @ v.T))
    deltas = [e * (1 - jnp.tanh(a) ** 2) for e, a in zip(es[:-1], pre[:-1])] + [es[-1]]
    return [-(d.T @ h) for d, h in zip(deltas, hs[:-1])]

@eqx.filter_jit
def _step_sweep(rule, sizes, batch, seed, steps):
    """One compiled sweep: a random tanh network, the ``fwdtp`` feedback, a cross-entropy batch; per output step η
    (``rule.step``) the relative error and cosine of ``rule``'s weight update / η against
    :func:`_linear_propagation_update`, per layer, and that reference's cosine to backprop's gradient."""
    k_net, k_fb, k_x, k_y = jax.random.split(jax.random.key(seed), 4)
    net = init_network(sizes, key=k_net, activation="tanh", bias_scale=0.1, dtype=jnp.float64)
    x = draws.normal(k_x, (batch, sizes[0]), jnp.float64)
    y = jax.nn.one_hot(jax.random.randint(k_y, (batch,), 0, sizes[-1]), sizes[-1], dtype=jnp.float64)
    params = get_learner("fwdtp").init(k_fb, net)
    reference = _linear_propagation_update(params, x, y)

    def one(step):
        grads, _, _ = dataclasses.replace(rule, step=step).update(params, (), Data(x, y), jax.random.key(0))
        est = [g / step for g in grads.network.weights]
        rel = jnp.stack([jnp.linalg.norm(e - r) / jnp.linalg.norm(r) for e, r in zip(est, reference)])
        cos = jnp.stack([jnp.vdot(e, r) / (jnp.linalg.norm(e) * jnp.linalg.norm(r)) for e, r in zip(est, reference)])
        return rel, cos

    bp = bp_gradient(net, x, y, loss="ce")
    cos_bp = jnp.stack([jnp.vdot(r, w) / (jnp.linalg.norm(r) * jnp.linalg.norm(w)) for r, w in zip(reference, bp.weights)])
    return *jax.vmap(one)(steps), cos_bp


@register_check(
    "fwdtp_propagation_architecture",
    family="target_propagation",
    statement="FW-DTP's target step is the feedback function's Jacobian acting on the target difference: update/eta -> the linear-propagation update with error O(eta) (slope 1 ± 0.15)",
    theory="theory/fwdtp.md",
    quick={},
    full={"steps": tuple(np.logspace(-5, -1, 13)), "seed": 1},
)
def fwdtp_propagation_architecture(*, sizes=(5, 10, 10, 3), batch=4, seed=0, steps=STEPS, difference=True,
                                   slope_tol=0.15, cos_min=0.9999, exact_tol=1e-10):
    """The ``fwdtp`` learner's own rule and feedback (fixed random :math:`V_l`, tanh), cross-entropy; per output step η
    (``steps``): its weight update divided by η against :func:`_linear_propagation_update` per layer (relative
    error, cosine), and the cosine to backprop's gradient (reported: FW-DTP is not BP)."""
    rule = get_learner("fwdtp", difference=difference).rule
    rel, cos, cos_bp = (np.asarray(a) for a in _step_sweep(rule, tuple(sizes), batch, seed, jnp.asarray(steps)))
    steps, depth = np.asarray(steps), len(sizes) - 1
    try:
        slopes = np.array([loglog_slope(steps, rel[:, i]) for i in range(depth - 1)])
    except ValueError:
        slopes = np.full(depth - 1, np.nan)
    ds = xr.Dataset(
        {"relative_error": (("step", "layer"), rel), "cosine": (("step", "layer"), cos), "slope": ("hidden_layer", slopes),
         "cosine_to_bp": ("layer", cos_bp)},
        coords={"step": steps, "layer": np.arange(1, depth + 1), "hidden_layer": np.arange(1, depth)},
    )
    small = int(np.argmin(steps))
    verdict = Verdict.from_criteria(
        worst_slope=within(slopes[np.argmax(np.abs(slopes - 1))], 1.0, slope_tol),
        min_cosine_at_smallest_step=at_least(cos[small].min(), cos_min),
        output_layer_error=at_most(rel[:, -1].max(), exact_tol),
        min_cosine_to_bp=reported(cos_bp.min()),
    )
    return ds, verdict


def _train_accuracy(learner, data, seeds, *, epochs, hidden, lr) -> list[float]:
    """Final test accuracy of :func:`dynlearn.learning.train` (Adam at ``lr``, batch 64) for each seed."""
    from ..learning import train

    return [float(train(learner, data, hidden=hidden, epochs=epochs, lr=lr, seed=s, progress=False)[1].test_accuracy[-1]) for s in seeds]


@register_check(
    "fwdtp_vs_dtp",
    family="target_propagation",
    statement="FW-DTP vs DTP test accuracy on the same network over seeds (the paper: FW-DTP higher); the difference is reported whichever way it falls",
    theory="theory/fwdtp.md",
    quick={},
    full={"epochs": 20, "hidden": (128, 128), "datasets": ("digits", "fashion_mnist"), "seeds": (0, 1, 2)},
)
def fwdtp_vs_dtp(*, datasets=("digits",), seeds=(0, 1, 2), epochs=2, hidden=(64,), lr=None, n_train=6000, n_test=1000, min_accuracy=0.5):
    """Train ``dtp`` and ``fwdtp`` (their default options and learning rate, Adam, batch 64) on each data set for
    ``epochs`` with each seed (:func:`dynlearn.learning.train`); test accuracy at the end. Criterion: both learn (worst seed >= ``min_accuracy``; chance is 0.1).
    Reported: the mean accuracies and FW-DTP − DTP per data set."""
    from ..data import load

    acc = np.zeros((len(datasets), 2, len(seeds)))
    for i, name in enumerate(datasets):
        data = load(name, n_train=n_train, n_test=n_test) if name == "fashion_mnist" else load(name)
        for j, name in enumerate(("dtp", "fwdtp")):
            learner = get_learner(name)
            acc[i, j] = _train_accuracy(learner, data, seeds, epochs=epochs, hidden=hidden, lr=lr or learner.defaults["lr"])
    ds = xr.Dataset({"test_accuracy": (("dataset", "learner", "seed"), acc)},
                    coords={"dataset": list(datasets), "learner": ["dtp", "fwdtp"], "seed": list(seeds)}, attrs={"epochs": epochs, "hidden": str(hidden)})
    criteria = {"worst_accuracy": at_least(acc.min(), min_accuracy)}
    for i, name in enumerate(datasets):
        criteria[f"{name}_dtp_mean"] = reported(acc[i, 0].mean())
        criteria[f"{name}_fwdtp_mean"] = reported(acc[i, 1].mean())
        criteria[f"{name}_fwdtp_minus_dtp"] = reported(acc[i, 1].mean() - acc[i, 0].mean())
    return ds, Verdict.from_criteria(**criteria)
