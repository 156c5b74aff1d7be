r"""Theorem checks for top-down credit assignment (TDCA; Chen, Liu & Wang, arXiv 2208.01416), float64.

* ``tdca_exact`` — the machinery: (a) with the top-down network set to the backprop credit map (:math:`U_l =
  W_{l+1}^\top`, no diffusion) the bottom-up update equals BP's gradient, for the layered pathway at depth 3 and the
  direct pathway at depth 2; (b) the outer-loop gradient :math:`\partial L_{\rm ahead}/\partial U` equals a central
  finite difference of the look-ahead loss, for both pathways and both look-ahead modes, with credit diffusion.
* ``tdca_toy_landscape`` — a two-parameter network :math:`f(x) = w_2 \sin(w_1 x)` fitted to :math:`\sin(3x)` has its
  global minimum (loss 0) at :math:`w_1 = 3` and local minima at :math:`w_1 \approx 0.1, 1.5, 4.4`. From several starts,
  TDCA's outer loop must lower the look-ahead loss from its initial credit map; the paper's claim (TDCA reaches the
  global minimum where BP stops at a local one) is reported, whichever way it falls.

Each check takes the rule class under test, so a test can hand it a broken one and see it fail.
See ``theory/tdca.md``.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ..analysis import bp_gradient
from ..losses import get_loss
from ..models.base import Data
from ..networks import Network
from ..rules.tdca import TDCANetwork, TopDown, TopDownCredit, diffusion, exact_topdown
from .criteria import above, at_most, below, reported
from .registry import Verdict, register_check


def _rel(a, b):
    """``‖a - b‖ / ‖b‖`` over all leaves of two PyTrees."""
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return jnp.sqrt(sum(jnp.sum((p - q) ** 2) for p, q in zip(la, lb)) / sum(jnp.sum(q**2) for q in lb))


def _problems(sizes, seeds, rank, pathway):
    """Per seed, stacked on a leading axis: a network (Xavier weights, biases N(0, 0.1²)), a random top-down network
    with the library's diffusion of ``rank``, a batch ``(x, y)`` and a random direction ``V`` in the space of ``U``
    (drawn with numpy: no compiled draw per shape)."""
    rows = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        ws = [rng.standard_normal((b, a)) * np.sqrt(2.0 / (a + b)) for a, b in itertools.pairwise(sizes)]
        net = Network.from_matrices([jnp.asarray(w) for w in ws], [jnp.asarray(0.1 * rng.standard_normal(b)) for b in sizes[1:]])
        ds = tuple(diffusion(jax.random.key(seed), n, rank, jnp.float64) for n in sizes[1:-1])
        src = [sizes[-1] if pathway == "direct" else sizes[l + 1] for l in range(1, len(sizes) - 1)]
        td = TopDown(tuple(jnp.asarray(rng.standard_normal((d.shape[1], n)) / np.sqrt(n)) for d, n in zip(ds, src)), ds)
        x = jnp.asarray(rng.standard_normal((6, sizes[0])))
        y = jnp.asarray(np.eye(sizes[-1])[np.arange(6) % sizes[-1]])
        v = tuple(jnp.asarray(rng.standard_normal(u.shape)) for u in td.U)
        rows.append((net, td, x, y, v))
    return jax.tree.map(lambda *a: jnp.stack(a), *rows)


@functools.partial(jax.jit, static_argnames=("rule", "loss_name", "with_bp"))
def _gaps(rule, problems, h, loss_name: str, with_bp: bool):
    """Per seed: the relative gap between the update with the exact top-down map and BP's gradient, and between
    ``⟨∂L_ahead/∂U, V⟩`` (the rule's outer gradient) and the central difference of ``L_ahead`` along ``V``."""

    def one(net, td, x, y, v):
        bp = jnp.nan
        if with_bp:
            upd, _ = rule.credit_update(net, exact_topdown(net), x, y)
            bp = _rel(upd, bp_gradient(net, x, y, loss=loss_name))
        grads, _, _ = rule.update(TDCANetwork(net, td), (), Data(x, y), None)
        f = lambda us: rule.lookahead_loss(net, TopDown(us, td.D), x, y)
        fd = (f(jax.tree.map(lambda u, w: u + h * w, td.U, v)) - f(jax.tree.map(lambda u, w: u - h * w, td.U, v))) / (2 * h)
        ad = sum(jnp.sum(g * w) for g, w in zip(grads.topdown.U, v))
        return bp, jnp.abs(fd - ad) / jnp.abs(ad)

    return jax.vmap(one)(*problems)


#: ``(pathway, lookahead, sizes, with_bp)`` of ``tdca_exact``
EXACT_CASES = (("layered", "sample", (5, 7, 6, 3), True), ("direct", "batch", (5, 7, 3), True))


@register_check(
    "tdca_exact",
    family="learned_feedback",
    statement="TDCA machinery: with the top-down map U_l = W_{l+1}^T and no diffusion the bottom-up update equals BP's gradient (rel. <= 1e-10, layered depth 3 and direct depth 2); the outer-loop gradient equals a central finite difference of the look-ahead loss (rel. <= 1e-7, layered/per-sample and direct/batch look-ahead, rank-3 diffusion); worst over seeds",
    theory="theory/tdca.md",
    quick={},
    full={"seeds": tuple(range(10))},
)
def tdca_exact(*, seeds=(0, 1, 2), loss="mse", inner_lr=0.5, rank=3, h=1e-5, bp_tol=1e-10, fd_tol=1e-7, cases=EXACT_CASES, rule_cls=TopDownCredit):
    """Worst relative gaps over ``seeds``: the exact-map update vs BP, and the outer gradient vs finite differences.
    ``cases``: ``(pathway, lookahead, sizes, with_bp)``; ``with_bp`` where the pathway can express BP (layered at any
    depth, direct at depth 2)."""
    fn = get_loss(loss)
    rows = [[np.asarray(g) for g in _gaps(rule_cls(fn, inner_lr, pw, la), _problems(sz, seeds, rank, pw), np.float64(h), loss, with_bp)]
            for pw, la, sz, with_bp in cases]
    bp = np.stack([np.broadcast_to(r[0], (len(seeds),)) for r in rows])
    fd = np.stack([r[1] for r in rows])
    names = [f"{pw}/{la}/depth{len(sz) - 1}" for pw, la, sz, _ in cases]
    ds = xr.Dataset({"bp_gap": (("case", "seed"), bp), "fd_gap": (("case", "seed"), fd)},
                    coords={"case": names, "seed": list(seeds)}, attrs={"loss": loss, "inner_lr": inner_lr, "rank": rank, "h": h})
    verdict = Verdict.from_criteria(
        bp_gap_worst=at_most(np.nanmax(bp), bp_tol),
        fd_gap_worst=at_most(np.max(fd), fd_tol),
    )
    return ds, verdict


# ----------------------------------------------------------------------------- tdca_toy_landscape


def toy_problem(n: int = 24, frequency: float = 3.0):
    """``x`` on [-π, π] (``n`` points) and the teacher target :math:`\\sin(\\omega x)`, ``ω = frequency``."""
    x = np.linspace(-np.pi, np.pi, n)[:, None]
    return jnp.asarray(x), jnp.asarray(np.sin(frequency * x))


def toy_network(w1, w2) -> Network:
    """:math:`f(x) = w_2 \\sin(w_1 x)`: one sine hidden unit, no biases."""
    return Network.from_matrices([jnp.reshape(w1, (1, 1)), jnp.reshape(w2, (1, 1))], [None, None], activation=jnp.sin)


@functools.partial(jax.jit, static_argnames=("rule", "steps", "outer_steps"))
def _toy_runs(rule, starts, u0, x, y, lr, outer_lr, steps: int, outer_steps: int):
    """Per start (vmapped): BP's and TDCA's final loss and ``w1`` after ``steps`` full-batch SGD steps, and the
    look-ahead loss at the start before and after ``outer_steps`` outer-loop steps with ``θ`` held fixed."""

    def one(w):
        bp_loss = lambda v: rule.loss(toy_network(v[0], v[1])(x), y)
        w_bp, _ = jax.lax.scan(lambda v, _: (v - lr * jax.grad(bp_loss)(v), None), w, None, length=steps)
        p0 = TDCANetwork(toy_network(w[0], w[1]), TopDown((jnp.reshape(u0, (1, 1)),), (jnp.eye(1, dtype=x.dtype),)))

        def step(p, _):
            g, _, _ = rule.update(p, (), Data(x, y), None)
            return TDCANetwork(jax.tree.map(lambda a, b: a - lr * b, p.network, g.network),
                               TopDown(jax.tree.map(lambda a, b: a - outer_lr * b, p.topdown.U, g.topdown.U), p.topdown.D)), None

        def outer(p, _):
            g, _, _ = rule.update(p, (), Data(x, y), None)
            return TDCANetwork(p.network, TopDown(jax.tree.map(lambda a, b: a - outer_lr * b, p.topdown.U, g.topdown.U), p.topdown.D)), None

        ahead = lambda p: rule.lookahead_loss(p.network, p.topdown, x, y)
        p_out, _ = jax.lax.scan(outer, p0, None, length=outer_steps)
        p_end, _ = jax.lax.scan(step, p0, None, length=steps)
        w_end = jnp.stack([p_end.network.weights[0][0, 0], p_end.network.weights[1][0, 0]])
        return bp_loss(w_bp), w_bp[0], bp_loss(w_end), w_end[0], ahead(p0), ahead(p_out)

    return jax.vmap(one)(starts)


@register_check(
    "tdca_toy_landscape",
    family="learned_feedback",
    statement="Non-convex toy f(x) = w2 sin(w1 x) fitted to sin(3x) (global minimum loss 0 at w1 = 3, local minima near w1 = 0.1, 1.5, 4.4): BP stops at a local minimum from some start; TDCA's outer loop lowers the look-ahead loss from its initial credit map at every start (ratio < 1); the paper's claim (TDCA reaches the global minimum where BP does not) is reported",
    theory="theory/tdca.md",
    quick={},
    full={"w1_starts": tuple(np.round(np.linspace(0.2, 5.0, 25), 3)), "w2_starts": (-1.0, -0.5, 0.5, 1.0), "steps": 5000},
)
def tdca_toy_landscape(*, w1_starts=(0.3, 0.8, 1.3, 1.8, 2.4, 3.5), w2_starts=(-0.5, 0.5), u0=1.0, lr=0.01, outer_lr=0.1, inner_lr=0.05,
                       steps=2000, outer_steps=20, global_tol=0.05, lookahead="sample", rule_cls=TopDownCredit):
    """Full-batch SGD at rate ``lr`` for BP and TDCA (top-down weight ``u`` from ``u0``, outer rate ``outer_lr``);
    a run reaches the global minimum when its final loss per sample is below ``global_tol``."""
    x, y = toy_problem()
    rule = rule_cls(get_loss("mse"), inner_lr, "direct", lookahead)
    starts = np.array([(a, b) for a in w1_starts for b in w2_starts], dtype=np.float64)
    bp_l, bp_w1, td_l, td_w1, ahead0, ahead1 = (np.asarray(v) for v in _toy_runs(rule, starts, np.float64(u0), x, y, np.float64(lr), np.float64(outer_lr), steps, outer_steps))
    n = x.shape[0]
    bp_l, td_l = bp_l / n, td_l / n
    ratio = np.where(ahead0 > 1e-12, ahead1 / np.maximum(ahead0, 1e-300), np.nan)  # a start at the minimum has nothing to lower
    ds = xr.Dataset(
        {"bp_final_loss": (("start",), bp_l), "tdca_final_loss": (("start",), td_l), "bp_final_w1": (("start",), bp_w1),
         "tdca_final_w1": (("start",), td_w1), "lookahead_ratio": (("start",), ratio),
         "w1_start": (("start",), starts[:, 0]), "w2_start": (("start",), starts[:, 1])},
        coords={"start": np.arange(len(starts))},
        attrs={"lr": lr, "outer_lr": outer_lr, "inner_lr": inner_lr, "steps": steps, "outer_steps": outer_steps, "u0": u0, "global_tol": global_tol},
    )
    verdict = Verdict.from_criteria(
        bp_local_fraction=above(np.mean(bp_l > global_tol), 0.0),
        lookahead_ratio_worst=below(np.nanmax(ratio) if np.any(np.isfinite(ratio)) else np.nan, 1.0),
        tdca_global_fraction=reported(np.mean(td_l <= global_tol)),
        bp_global_fraction=reported(np.mean(bp_l <= global_tol)),
        tdca_escapes_where_bp_stuck=reported(np.sum((td_l <= global_tol) & (bp_l > global_tol))),
        bp_escapes_where_tdca_stuck=reported(np.sum((bp_l <= global_tol) & (td_l > global_tol))),
        tdca_minus_bp_loss_mean=reported(np.mean(td_l - bp_l)),
    )
    return ds, verdict
