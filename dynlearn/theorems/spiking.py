r"""Theorem checks for spiking networks (float64).

* ``lif_event_vs_fixed_step`` — event-driven exact spike times (diffrax event root-finding) of LIF neurons under
  constant drive match the closed form :math:`t_k = \tau_m\ln\frac{I - v_0}{I - v_\mathrm{th}} + k\,\tau_m
  \ln\frac{I - v_\mathrm{reset}}{I - v_\mathrm{th}}`, and the spike times of the fixed-step (exponential-Euler)
  simulation of a small coupled network converge to the event-driven ones at first order in ``dt``.
* ``ide_rate_equilibrium`` — in a feedback network of IF neurons under constant input, the time-averaged firing rate
  converges to the fixed point :math:`a^* = \sigma(W a^* + F x + b)` at rate O(1/T) (Xiao et al., NeurIPS 2021).
* ``ide_gradient`` — IDE's gradient at :math:`a^*` (backward by a second fixed-point iteration) equals the generic
  implicit gradient of :func:`dynlearn.analysis.implicit_gradient` and central finite differences; for a symmetric
  network it also equals equilibrium propagation's :math:`\beta\to 0` estimate on the same fixed point.

Each check takes the components under test as arguments, so a test can hand it a broken one and see it fail.
See ``theory/lif_event_vs_fixed_step.md`` and ``theory/ide.md``.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import xarray as xr

from ..analysis import loglog_slope
from ..models.spiking.events import event_spike_times, fixed_step_spike_times
from ..models.spiking.ide import (
    FeedbackSNN,
    IDEFixedPoint,
    fixed_point,
    ide_backward,
    readout,
    simulate,
    zero_rates,
)
from ..models.spiking.neurons import LIF, lif_spike_times_closed_form
from .criteria import at_least, at_most, reported, within
from .registry import Verdict, register_check

# ----------------------------------------------------------------------------- lif_event_vs_fixed_step


def _coupled_network(n, seed, scale):
    """Weights N(0, scale²) without self-coupling and drives in (1.3, 1.9) (numpy draws: nothing to compile)."""
    rng = np.random.default_rng(seed)
    w = scale * rng.standard_normal((n, n)) * (1 - np.eye(n))
    return jnp.asarray(w), jnp.asarray(1.3 + 0.6 * rng.uniform(size=n))


def _paired_errors(te, we, tf, wf, n):
    """Mean |t_fixed − t_event| per step size, pairing the k-th spike of each neuron in both simulations (two
    neurons spiking within one step of each other may swap ranks, not identities); and whether every event spike
    has its fixed-step partner."""
    total, paired = np.zeros(tf.shape[0]), True
    for j in range(n):
        ev = te[(we == j) & np.isfinite(te)]
        for k in range(tf.shape[0]):
            fx = tf[k][(wf[k] == j) & np.isfinite(tf[k])][: ev.size]
            paired &= fx.size == ev.size
            total[k] += np.sum(np.abs(fx - ev[: fx.size]))
    count = max(int(np.isfinite(te).sum()), 1)
    return (total / count if paired else np.full(tf.shape[0], np.nan)), bool(paired)


def _closed_form_error(neuron, drives, times, who):
    """Worst |t_event − t_closed| over the neurons of an uncoupled network (and whether every spike was found)."""
    worst, complete = 0.0, True
    for j, current in enumerate(np.asarray(drives)):
        tj = np.asarray(times)[np.asarray(who) == j]
        ref = np.asarray(lif_spike_times_closed_form(neuron, float(current), max(len(tj), 1)))
        complete &= len(tj) > 0
        worst = max(worst, float(np.max(np.abs(tj - ref[: len(tj)]))) if len(tj) else np.inf)
    return worst, complete


@register_check(
    "lif_event_vs_fixed_step",
    family="spiking",
    statement="event-driven LIF spike times match the closed form for constant input (<= 1e-9 ms) and fixed-step spike times converge to them at O(dt) (slope 1 ± 0.15)",
    theory="theory/lif_event_vs_fixed_step.md",
    quick={},
    full={"t_end": 400.0, "max_spikes": 96, "dts": (0.02, 0.01, 0.005, 0.0025, 0.00125), "seeds": (0, 1, 2)},
)
def lif_event_vs_fixed_step(
    *,
    n=4,
    t_end=100.0,
    max_spikes=24,
    dts=(0.04, 0.02, 0.01, 0.005),
    seeds=(0,),
    tau_syn=5.0,
    coupling=0.1,
    closed_form_tol=1e-9,
    slope_tol=0.15,
    event=event_spike_times,
    fixed_step=fixed_step_spike_times,
):
    """(a) ``n`` uncoupled current-based LIF neurons (``tau_syn = 0``) with drives in (1.2, 3): event times against the
    closed form. (b) ``n`` coupled LIF neurons with synaptic filter ``tau_syn``, weights N(0, coupling²), drives in
    (1.3, 1.9): mean |t_fixed − t_event| over the event spikes on ``[0, t_end]`` for each ``dt`` (the k-th spike of
    each neuron paired with its k-th fixed-step spike; every one must have a partner), its log-log slope in ``dt``;
    the worst seed decides.
    """
    plain = LIF(tau_syn=0.0)
    drives = jnp.asarray(np.linspace(1.2, 3.0, n))
    t_cf, who_cf = event(plain, drives, None, t_end=t_end, max_spikes=max_spikes)
    cf_err, cf_complete = _closed_form_error(plain, drives, t_cf, who_cf)

    neuron = LIF(tau_syn=tau_syn)
    dt_arr = jnp.asarray(np.asarray(dts, np.float64))
    n_steps = math.ceil(1.2 * t_end / min(dts))
    errors, slopes, order_ok, counts = [], [], True, []
    for seed in seeds:
        w, drive = _coupled_network(n, seed, coupling)
        te, we = event(neuron, drive, w, t_end=t_end, max_spikes=max_spikes)
        tf, wf = jax.vmap(lambda dt, drive=drive, w=w: fixed_step(neuron, drive, w, dt, n_steps, max_spikes))(dt_arr)
        te, we, tf, wf = (np.asarray(a) for a in (te, we, tf, wf))
        counts.append(int(np.isfinite(te).sum()))
        err, paired = _paired_errors(te, we, tf, wf, n)
        order_ok &= paired
        errors.append(err)
        slopes.append(loglog_slope(dts, err) if np.all(np.isfinite(err)) and np.all(err > 0) else np.nan)
    worst = int(np.nanargmax(np.abs(np.asarray(slopes) - 1.0))) if np.any(np.isfinite(slopes)) else 0
    ds = xr.Dataset(
        {
            "mean_abs_error": (("seed", "dt"), np.stack(errors)),
            "slope": ("seed", np.asarray(slopes)),
            "n_spikes": ("seed", np.asarray(counts)),
            "closed_form_event_times": ("spike", np.asarray(t_cf)),
            "closed_form_neuron": ("spike", np.asarray(who_cf)),
        },
        coords={"seed": list(seeds), "dt": list(dts)},
        attrs={"closed_form_error": cf_err},
    )
    verdict = Verdict.from_criteria(
        closed_form_error=at_most(cf_err if cf_complete else np.nan, closed_form_tol),
        fixed_step_order=within(slopes[worst], 1.0, slope_tol),
        every_spike_paired=at_least(float(order_ok), 1.0),
        min_spikes=at_least(min(counts), 10),
        finest_dt_error=reported(float(np.max(np.stack(errors)[:, -1]))),
    )
    return ds, verdict


# ----------------------------------------------------------------------------- IDE


def _ide_problem(seed, sizes=(8, 16), n_out=3, batch=1, contraction=0.5, bias=0.4, symmetric=False):
    """A feedback SNN ``sizes = (n_0, n_1, ..., n_L)`` with feedback of spectral norm ``contraction`` and inputs in
    (0, 1); biases ``bias`` ± 0.1 keep most rates inside (0, 1) (numpy draws: nothing to compile)."""
    rng = np.random.default_rng(seed)
    forward = tuple(0.5 * rng.standard_normal((sizes[l + 1], sizes[l])) / math.sqrt(sizes[l]) for l in range(len(sizes) - 1))
    biases = tuple(bias + 0.1 * rng.standard_normal(sizes[l + 1]) for l in range(len(sizes) - 1))
    w = rng.standard_normal((sizes[1], sizes[-1]))
    if symmetric:
        w = w + w.T
    w = contraction * w / np.linalg.norm(w, 2)
    r = rng.standard_normal((n_out, sizes[-1])) / math.sqrt(sizes[-1])
    x, y = rng.uniform(size=(batch, sizes[0])), rng.standard_normal((batch, n_out))
    params = FeedbackSNN(*jax.tree.map(jnp.asarray, (forward, biases, w, r, np.zeros(n_out))))
    return params, jnp.asarray(x), jnp.asarray(y)


@register_check(
    "ide_rate_equilibrium",
    family="spiking",
    statement="in a feedback IF network under constant input the time-averaged firing rate converges to a* = clamp(W a* + F x + b) as O(1/T) (slope -1 ± 0.15)",
    theory="theory/ide.md",
    quick={},
    full={"seeds": tuple(range(8)), "horizons": tuple(2**k for k in range(4, 14))},
)
def ide_rate_equilibrium(
    *,
    sizes=(8, 16),
    seeds=(0, 1, 2),
    horizons=tuple(2**k for k in range(4, 12)),
    contraction=0.5,
    slope_tol=0.15,
    lif_taus=(20.0, 200.0),
    simulate_fn=simulate,
):
    """Simulate ``2·max(horizons)`` steps from rest; the error at horizon T is max over neurons and over
    t ∈ [T, 2T) of |a[t] − a*| (the running average :math:`a[t]` oscillates inside an O(1/t) envelope, so the window
    measures the envelope); a* by optimistix's fixed-point iteration. Worst seed's slope decides. The LIF view's
    weighted-average rate at the last step is reported for each ``lif_taus`` (a bias, not O(1/T))."""
    n_steps = 2 * max(horizons)
    slopes, errors, lif_bias = [], [], {tau: 0.0 for tau in lif_taus}
    for seed in seeds:
        params, x, _ = _ide_problem(seed, sizes, contraction=contraction)
        a_star = fixed_point(params, x).value
        inputs = jnp.asarray(np.broadcast_to(np.asarray(x), (n_steps, *x.shape)))
        spikes = np.asarray(simulate_fn(params, inputs)[-1])
        rates = np.cumsum(spikes, axis=0) / np.arange(1, n_steps + 1).reshape((-1,) + (1,) * (spikes.ndim - 1))
        err = np.array([np.max(np.abs(rates[t - 1 : 2 * t - 1] - np.asarray(a_star[-1]))) for t in horizons])
        errors.append(err)
        slopes.append(loglog_slope(horizons, err) if np.all(err > 0) and np.all(np.isfinite(err)) else np.nan)
        for tau in lif_taus:
            tau_arr = jnp.asarray(tau, jnp.float64)  # traced: one compilation for every tau
            lif_spikes = np.asarray(simulate_fn(params, inputs, neuron="lif", tau_mem=tau_arr)[-1])
            weights = np.exp(-1.0 / tau) ** np.arange(n_steps - 1, -1, -1)  # the weighted average rate, dt = 1
            lif_rate = np.tensordot(weights / weights.sum(), lif_spikes, axes=(0, 0))
            lif_bias[tau] = max(lif_bias[tau], float(np.max(np.abs(lif_rate - np.asarray(a_star[-1])))))
    slopes = np.asarray(slopes)
    worst = int(np.nanargmax(np.abs(slopes + 1.0))) if np.any(np.isfinite(slopes)) else 0
    ds = xr.Dataset(
        {"rate_error": (("seed", "horizon"), np.stack(errors)), "slope": ("seed", slopes)},
        coords={"seed": list(seeds), "horizon": list(horizons)},
        attrs={f"lif_bias_tau{int(t)}": v for t, v in lif_bias.items()},
    )
    criteria = {
        "rate_error_order": within(slopes[worst], -1.0, slope_tol),
        "final_rate_error": reported(float(np.max(np.stack(errors)[:, -1]))),
    }
    criteria.update({f"lif_rate_bias_tau{int(t)}": reported(v) for t, v in lif_bias.items()})
    return ds, Verdict.from_criteria(**criteria)


def _rel(a, b) -> float:
    """max|a − b| / max|b| over the leaves of two PyTrees."""
    num = max(float(np.max(np.abs(np.asarray(u) - np.asarray(v)))) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    den = max(float(np.max(np.abs(np.asarray(v)))) for v in jax.tree.leaves(b))
    return num / den


def _map_part(p: FeedbackSNN):
    return (p.forward, p.biases, p.feedback)


class _ReadoutLoss(eqx.Module):
    """½‖R a_L + c − y‖² summed over the batch, as ``loss(rates, data)`` (a module, so one compilation serves all seeds)."""

    params: FeedbackSNN

    def __call__(self, rates, data):
        return 0.5 * jnp.sum((readout(self.params, rates) - data.y) ** 2)


_TIGHT = {"rtol": 1e-15, "atol": 1e-15, "max_steps": 4000}


def _loss_at_fixed_point(params, x, y) -> float:
    """½‖R a*_L + c − y‖² at the fixed point, in numpy (no compilation besides the fixed-point solve)."""
    a = np.asarray(fixed_point(params, x, **_TIGHT).value[-1])
    return 0.5 * float(np.sum((a @ np.asarray(params.readout).T + np.asarray(params.readout_bias) - np.asarray(y)) ** 2))


@eqx.filter_jit
def _ep_phase(params, x, y, beta):
    r"""One EP phase on the symmetric one-layer network: :math:`a^\beta = \mathrm{clamp}(Wa + Fx + b - \beta\,\partial L/\partial a)`
    (the box-constrained minimiser of :math:`E + \beta L`, :math:`E(a) = \frac12\|a\|^2 - \frac12 a^\top W a - a^\top(Fx + b)`),
    and :math:`\partial E/\partial\theta` there for θ = (F, b, W)."""
    from ..models.base import Data

    loss = _ReadoutLoss(params)

    def nudged(a, _):
        drive = a[0] @ params.feedback.T + x @ params.forward[0].T + params.biases[0]
        return (jnp.clip(drive - beta * jax.grad(loss)(a, Data(x, y))[0], 0.0, 1.0),)

    (a,) = optx.fixed_point(nudged, optx.FixedPointIteration(rtol=1e-15, atol=1e-15), zero_rates(params, x.shape[:-1]), max_steps=4000, throw=False).value

    def energy(theta):
        (f,), (b,), w = theta
        return jnp.sum(0.5 * a * a - 0.5 * a * (a @ w.T) - a * (x @ f.T + b))

    return jax.grad(energy)(_map_part(params))


def _ep_gradient(params, x, y, nudge):
    r"""EP's symmetric-difference estimate :math:`(\partial_\theta E(a^{\beta}) - \partial_\theta E(a^{-\beta}))/(2\beta)`."""
    plus, minus = (_ep_phase(params, x, y, jnp.asarray(b)) for b in (nudge, -nudge))  # traced β: one compilation
    return jax.tree.map(lambda p, m: (np.asarray(p) - np.asarray(m)) / (2 * nudge), plus, minus)


@eqx.filter_jit
def _loss_grad(params, a, x, y):
    from ..models.base import Data

    return jax.grad(_ReadoutLoss(params))(a, Data(x, y))


def _ide_map_gradient(backward, params, x, y):
    a_star = fixed_point(params, x, **_TIGHT).value
    return a_star, _map_part(backward(params, a_star, x, _loss_grad(params, a_star, x, y), **_TIGHT)[0])


@register_check(
    "ide_gradient",
    family="spiking",
    statement="IDE's gradient at a* (backward by a second fixed-point iteration) equals the generic implicit gradient and finite differences (<= 1e-8), and EP's beta -> 0 estimate for a symmetric network",
    theory="theory/ide.md",
    quick={},
    full={"seeds": tuple(range(8))},
)
def ide_gradient(*, sizes=(6, 8), seeds=(0, 1, 2), batch=4, fd_step=1e-3, nudge=1e-5, tol=1e-8, ep_tol=1e-8, backward=ide_backward):
    """Per seed: a feedback network ``sizes`` (one hidden layer by default; a longer ``sizes`` is a chain with
    feedback from the last layer) and a symmetric one-layer network of the same size for EP; a* by fixed-point
    iteration to 1e-15; loss ½‖R a*_L + c − y‖²; the IDE gradient by ``backward`` against
    :func:`dynlearn.analysis.implicit_gradient` of the flow ȧ = f(a) − a, and central differences of L(a*(θ + h d))
    along d = the IDE gradient and a random direction (unit norm; exact up to round-off on the piecewise-linear map
    when no pre-activation crosses 0 or V_th: the check fails if the clamped set changes, and reports the smallest
    distance to a kink). EP: symmetric W, nudge β, symmetric differences."""
    from ..analysis import implicit_gradient
    from ..models.base import Data

    err_generic, err_fd, err_ep, kink = 0.0, 0.0, 0.0, np.inf
    for seed in seeds:
        params, x, y = _ide_problem(seed, sizes, batch=batch)
        a_star, g_ide = _ide_map_gradient(backward, params, x, y)
        generic = implicit_gradient(IDEFixedPoint(params), a_star, Data(x, y), loss=_ReadoutLoss(params))
        err_generic = max(err_generic, _rel(g_ide, _map_part(generic.params)))

        err_fd = max(err_fd, _fd_error(params, x, y, g_ide, 100 + seed, fd_step))
        pre = _pre_activations(params, a_star, x)
        kink = min(kink, min(float(np.min(np.minimum(np.abs(p), np.abs(p - 1.0)))) for p in pre))

        sym, xs, ys = _ide_problem(seed, sizes[:2], batch=batch, symmetric=True)
        _, g_sym = _ide_map_gradient(backward, sym, xs, ys)
        g_sym = jax.tree.map(np.asarray, g_sym)
        g_sym = (g_sym[0], g_sym[1], 0.5 * (g_sym[2] + g_sym[2].T))  # the gradient along symmetric W
        err_ep = max(err_ep, _rel(_ep_gradient(sym, xs, ys, nudge), g_sym))
    ds = xr.Dataset(attrs={"error_vs_generic": err_generic, "error_vs_fd": err_fd, "error_vs_ep": err_ep, "kink_distance": kink})
    verdict = Verdict.from_criteria(
        error_vs_implicit_gradient=at_most(err_generic, tol),
        error_vs_finite_differences=at_most(err_fd, tol),
        error_vs_ep_limit=at_most(err_ep, ep_tol),
        min_distance_to_kink=reported(kink),
    )
    return ds, verdict


def _active_set(params, x):
    a = fixed_point(params, x, **_TIGHT).value
    return [np.asarray((p > 0) & (p < 1)) for p in _pre_activations(params, a, x)]


def _fd_error(params, x, y, grad, key, step):
    """Worst |5-point central difference − ⟨grad, d⟩| / ‖grad‖ over d ∈ {grad/‖grad‖, random unit}; NaN if the
    clamped set of a* changes between θ − 2h d and θ + 2h d (the difference would then straddle a kink)."""
    grad = jax.tree.map(np.asarray, grad)
    norm = math.sqrt(sum(float(np.sum(g * g)) for g in jax.tree.leaves(grad)))
    rng = np.random.default_rng(key)
    rand = [rng.standard_normal(g.shape) for g in jax.tree.leaves(grad)]
    rnorm = math.sqrt(sum(float(np.sum(r * r)) for r in rand))
    worst = 0.0
    for leaves in ([g / norm for g in jax.tree.leaves(grad)], [r / rnorm for r in rand]):
        d = jax.tree.unflatten(jax.tree.structure(grad), leaves)
        moved = [eqx.tree_at(_map_part, params, jax.tree.map(lambda p, u, h=h: p + h * u, _map_part(params), d)) for h in (2 * step, step, -step, -2 * step)]
        l2, l1, m1, m2 = (_loss_at_fixed_point(m, x, y) for m in moved)
        fd = (-l2 + 8 * l1 - 8 * m1 + m2) / (12 * step)  # fourth order: a* is rational in W
        dot = sum(float(np.sum(g * u)) for g, u in zip(jax.tree.leaves(grad), leaves))
        same = all(np.array_equal(u, v) for u, v in zip(_active_set(moved[0], x), _active_set(moved[-1], x)))
        worst = max(worst, abs(fd - dot) / norm if same else np.nan)
    return worst


def _pre_activations(params, a, x):
    """The arguments of σ at ``a`` (in units of V_th), in numpy."""
    f, b, w = jax.tree.map(np.asarray, _map_part(params))
    a, x = [np.asarray(u) for u in a], np.asarray(x)
    pre = [(x @ f[0].T + a[-1] @ w.T + b[0]) / params.v_th]
    pre += [(a[l - 1] @ f[l].T + b[l]) / params.v_th for l in range(1, len(f))]
    return pre
