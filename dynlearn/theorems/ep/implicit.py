r"""The implicit-function gradient at an equilibrium equals backprop through a long relaxation and finite differences."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ...analysis import implicit_gradient, relative_error
from ...analysis.implicit import bptt_gradient
from ...models.base import Data, equilibrium
from ...models.chl import ContrastiveHebbian
from ...models.ep import HopfieldEP, free_phase
from ...networks import init_network
from ..criteria import at_most, reported
from ..registry import Verdict, register_check
from .energy import flow_jacobian_at
from .problem import EP_POLISHED, ep_problem, nudged, numpy_tree, take


def _horizon_errors(model, state, data, gradient_fn, horizons, dt0):
    """The implicit gradient at ``state`` and BPTT's relative error to it through every horizon (from ``init_state``)."""
    g = gradient_fn(model, state, data, loss=model.cost)
    gb = bptt_gradient(model, model.init_state(data), data, loss=model.cost, t1=max(horizons), dt0=dt0, horizons=horizons)
    gb, g = numpy_tree(gb), numpy_tree(g)
    return g, [float(relative_error(take(gb, i), g)) for i in range(len(horizons))]


def _decay_rate(model, state, data) -> float:
    """The smallest |Re eig| of the flow's Jacobian at ``state``: the predicted contraction rate."""
    return float(-np.max(np.linalg.eigvals(np.asarray(flow_jacobian_at(model, state, data))).real))


@register_check(
    "implicit_vs_bptt",
    family="ep",
    statement="The implicit-function gradient at an equilibrium equals backprop through a long relaxation (rel. error <= 1e-6) and finite differences of the loss (<= 1e-7).",
    theory="theory/implicit_vs_bptt.md",
    quick={"dt0": 0.5},
    full={"horizons": (5.0, 10.0, 20.0, 40.0, 80.0, 120.0, 160.0)},
)
def implicit_vs_bptt(
    *, sizes=(4, 8, 6, 3), seed=0, gain=0.5, gamma=0.5, horizons=(10.0, 40.0, 80.0, 120.0), dt0=0.2, fd_step=1e-5,
    gradient_fn=implicit_gradient, bptt_tol=1e-6, fd_tol=1e-7,
):
    horizons = tuple(float(h) for h in horizons)
    errs, fd_errs, rates = [], [], []
    # (a) EP's Hopfield network (gradient flow; symmetric Jacobian)
    model, x, y = ep_problem(sizes, seed, gain)
    data = nudged(x, y, 0.0)
    free = free_phase(model, data, EP_POLISHED)
    g, e = _horizon_errors(model, free.state, data, gradient_fn, horizons, dt0)
    errs.append(e)
    fd_errs.append(_fd_error(lambda net: _ep_objective(net, data), model.network, g, fd_step, seed))
    rates.append(_decay_rate(model, free.state, data))
    # (b) a network that is not a gradient system (Xie-Seung feedback net, free output; asymmetric Jacobian)
    net = init_network(sizes, key=jax.random.key(seed + 100), activation="tanh", gain=0.6, bias_scale=0.1, dtype=jnp.float64)
    cm = ContrastiveHebbian(net, clamped=False)
    cdata = Data(x, y, jnp.asarray(gamma))  # the feedback strength gamma is the nudge
    eq = equilibrium(cm, cdata, EP_POLISHED)
    g2, e2 = _horizon_errors(cm, eq.state, cdata, gradient_fn, horizons, dt0)
    errs.append(e2)
    fd_errs.append(_fd_error(lambda n: _chl_objective(n, cdata), net, g2, fd_step, seed))
    rates.append(_decay_rate(cm, eq.state, cdata))
    errs = np.array(errs)
    h = np.asarray(horizons)
    fitted = []
    for e in errs:
        keep = e > 1e-11
        fitted.append(float(-np.polyfit(h[keep], np.log(e[keep]), 1)[0]) if keep.sum() >= 2 else float("nan"))
    ds = xr.Dataset(
        {
            "bptt_rel_error": (("model", "horizon"), errs),
            "fd_rel_error": ("model", np.array(fd_errs)),
            "predicted_rate": ("model", np.array(rates)),
            "fitted_rate": ("model", np.array(fitted)),
        },
        coords={"model": ["hopfield_ep", "feedback_net"], "horizon": list(horizons)},
        attrs={"dt0": dt0, "solver": "heun", "fd_step": fd_step},
    )
    verdict = Verdict.from_criteria(
        bptt_rel_error_longest=at_most(float(np.max(errs[:, -1])), bptt_tol),  # BPTT through the longest horizon
        fd_rel_error=at_most(float(max(fd_errs)), fd_tol),  # central differences of the loss along a random direction
        rate_ratio_hopfield=reported(fitted[0] / rates[0]),  # fitted / predicted (smallest |Re eig|) decay rate
        rate_ratio_feedback=reported(fitted[1] / rates[1]),
    )
    return ds, verdict


def _ep_objective(network, data):
    model = HopfieldEP(network)
    return model.cost(free_phase(model, data, EP_POLISHED).state, data)


def _chl_objective(network, data):
    cm = ContrastiveHebbian(network, clamped=False)
    return cm.cost(equilibrium(cm, data, EP_POLISHED).state, data)


def _fd_error(objective, network, grad, h, seed) -> float:
    """|central difference of J along a random unit direction d - <grad, d>| / |grad| (host arithmetic).

    The direction is drawn weights first, then biases (``network.weights + network.biases``)."""
    leaves = [np.asarray(a) for a in (*network.weights, *network.biases)]
    rng = np.random.default_rng(seed + 7)
    d = [rng.standard_normal(a.shape) for a in leaves]
    norm = np.sqrt(sum(np.sum(a**2) for a in d))
    d = [a / norm for a in d]
    L = network.depth

    def moved(sign):
        new = [a + sign * h * b for a, b in zip(leaves, d)]
        return network.with_matrices([jnp.asarray(a) for a in new[:L]], [jnp.asarray(a) for a in new[L:]])

    fd = (float(objective(moved(1.0))) - float(objective(moved(-1.0)))) / (2 * h)
    g = [np.asarray(a) for a in (*grad.weights, *grad.biases)]
    dot = sum(float(np.sum(a * b)) for a, b in zip(g, d))
    return abs(fd - dot) / np.sqrt(sum(np.sum(a**2) for a in g))
