r"""Theorem checks for learned and local credit assignment (float64).

* ``ntk_rule_width`` — the NTK-regime local rule (Boopathy & Fiete 2022): after training in the NTK
  parametrisation, :math:`1 - \cos(\Delta W^{\rm rule}_l, \Delta W^{\rm BP}_l)` falls as :math:`n^{-1}` with the width.
* ``ddfa_unbiased`` — directional DFA (Bacho & Chu 2024): the forward-mode (``jax.jvp``) estimate of a layer's
  Jacobian is unbiased and its error falls as :math:`k^{-1/2}` over ``k`` random directions.
* ``ddfa_alignment`` — the feedback that directional DFA learns online (momentum average of the estimates) comes to
  align with the true Jacobian during training.
* ``meta_plasticity_low_data`` — a plasticity rule meta-learned through online episodes with fixed random feedback
  (Shervani-Tabar & Rosenbaum 2023) beats plain feedback alignment on held-out low-data digits tasks.

Every check takes the component under test as an argument, so a test can hand it a broken one and see it fail.
See ``theory/ntk_rule.md``, ``theory/ddfa.md``, ``theory/meta_plasticity.md``.
"""

from __future__ import annotations

import functools
import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ..analysis import cosine_similarity, loglog_slope
from ..data import load_digits
from ..models.base import Data
from ..networks import Network
from ..rules.ntk_rule import NTKNetwork, mlp_structure, ntk_rule_learner
from .criteria import above, at_most, below, reported, within
from .registry import Verdict, register_check


@functools.lru_cache(maxsize=4)
def _digits64(n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` digits training samples (all by default) in float64 numpy arrays."""
    d = load_digits()
    return d.x_train[:n].astype(np.float64), d.y_train[:n].astype(np.float64)


# ----------------------------------------------------------------------------- ntk_rule_width


@functools.partial(jax.jit, static_argnames=("rule", "n_probe", "batch"))
def _ntk_gaps(rule, params, x, y, lr, order, n_probe: int, batch: int):
    """``(1 - cos)`` per layer at initialisation and after SGD steps on the batches ``order``, vmapped over the
    leading (seed) axis of ``params``."""
    xp, yp = x[:n_probe], y[:n_probe]

    def gap(q, frozen):
        g, _, m = rule.update(q, frozen, Data(xp, yp), None)
        bp = eqx.filter_grad(lambda r: rule.loss(r(xp), yp))(q)  # autodiff through the same parametrisation
        return jnp.stack([1.0 - cosine_similarity(a, b) for a, b in zip(g.network.weights, bp.network.weights)]), m["loss"]

    def one(p, order):
        frozen = rule.init(None, p)

        def step(q, i):
            xb, yb = jax.lax.dynamic_slice_in_dim(x, i * batch, batch), jax.lax.dynamic_slice_in_dim(y, i * batch, batch)
            g, _, _ = rule.update(q, frozen, Data(xb, yb), None)
            return jax.tree.map(lambda a, b: a - lr * b, q, g), None

        gap0, loss0 = gap(p, frozen)
        p, _ = jax.lax.scan(step, p, order)
        gap1, loss1 = gap(p, frozen)
        return gap0, gap1, loss0, loss1

    return jax.vmap(one)(params, order)


def _ntk_misalignment(learner, parametrisation, width, depth, seeds, lr, steps, batch, n_probe):
    """``(1 - cos)`` per seed and layer at initialisation and after ``steps`` SGD steps of the rule, and the losses."""
    x, y = _digits64()
    n_batches = x.shape[0] // batch
    x, y = x[: n_batches * batch], y[: n_batches * batch]  # numpy: no eager operation compiles
    sizes = (x.shape[1], *([width] * depth), y.shape[1])
    order = np.tile(np.arange(steps) % n_batches, (len(seeds), 1))
    return _ntk_gaps(learner.rule, _ntk_params(sizes, seeds, parametrisation), x, y, np.float64(lr), order, n_probe, batch)


def _ntk_params(sizes, seeds, parametrisation) -> NTKNetwork:
    """One :class:`NTKNetwork` per seed, stacked on a leading axis: raw weights N(0, 1) (NTK) or N(0, 1/n_in)
    (standard; the same function), zero biases, drawn with numpy (no compiled draw per width)."""
    ws, bs = [], []
    for n_in, n_out in itertools.pairwise(sizes):
        draws = np.stack([np.random.default_rng([s, n_in, n_out]).standard_normal((n_out, n_in)) for s in seeds])
        ws.append(draws if parametrisation == "ntk" else draws / np.sqrt(n_in))
        bs.append(np.zeros((len(seeds), n_out)))
    net = jax.tree.unflatten(mlp_structure(sizes), [a for wb in zip(ws, bs) for a in wb])
    return NTKNetwork(net, parametrisation)


@register_check(
    "ntk_rule_width",
    family="learned_feedback",
    statement="NTK-regime local rule: after training in the NTK parametrisation, 1 - cos(rule update, BP update) falls as width^-1 (log-log slope -1 +- 0.2, every hidden layer, mean over seeds); the rule equals BP at initialisation",
    theory="theory/ntk_rule.md",
    quick={},
    full={"widths": (64, 128, 256, 512, 1024, 2048, 4096), "seeds": tuple(range(5)), "steps": 20, "n_probe": 256},
)
def ntk_rule_width(*, widths=(64, 256, 1024), depth=2, seeds=(0, 1, 2, 3), lr=0.01, steps=10, batch=32, n_probe=128,
                   parametrisation="ntk", slope_tol=0.2, init_tol=1e-12, learner_factory=ntk_rule_learner):
    """Train the rule with SGD (``lr`` in the NTK parametrisation; under ``"standard"`` the rate tuned at the base
    width, ``lr / widths[0]``, which makes both identical there); measure ``1 - cos`` per layer on a probe batch."""
    learner = learner_factory(parametrisation=parametrisation)
    rate = lr if parametrisation == "ntk" else lr / widths[0]
    rows = [_ntk_misalignment(learner, parametrisation, n, depth, seeds, rate, steps, batch, n_probe) for n in widths]
    gap0, gap1, loss0, loss1 = (np.stack([np.asarray(r[k]) for r in rows]) for k in range(4))  # (width, seed, layer)
    mean_gap = gap1.mean(axis=1)  # (width, layer)
    hidden = range(depth)
    slopes = np.array([loglog_slope(np.asarray(widths, float), mean_gap[:, l]) if np.all(mean_gap[:, l] > 0) else np.nan for l in hidden])
    worst = int(np.nanargmax(np.abs(slopes + 1.0))) if np.any(np.isfinite(slopes)) else 0
    layers = [f"W{l}" for l in range(1, depth + 2)]
    ds = xr.Dataset(
        {"one_minus_cos": (("width", "seed", "layer"), gap1), "one_minus_cos_init": (("width", "seed", "layer"), gap0),
         "loss_start": (("width", "seed"), loss0), "loss_end": (("width", "seed"), loss1),
         "slope": (("hidden_layer",), slopes)},
        coords={"width": list(widths), "seed": list(seeds), "layer": layers, "hidden_layer": layers[:depth]},
        attrs={"parametrisation": parametrisation, "lr": rate, "steps": steps},
    )
    verdict = Verdict.from_criteria(
        slope_worst_layer=within(slopes[worst], -1.0, slope_tol),
        init_gap_max=at_most(np.max(np.abs(gap0)), init_tol),
        output_layer_gap_max=at_most(np.max(np.abs(gap1[..., -1])), init_tol),
        widest_gap=reported(mean_gap[-1, :depth].max()),
        loss_ratio_max=reported(np.max(loss1 / loss0)),
    )
    return ds, verdict


# ----------------------------------------------------------------------------- ddfa_unbiased


def _small_net(sizes, seed) -> Network:
    """An MLP of widths ``sizes``: Xavier weights drawn with numpy's generator of ``seed``, zero biases (no compiled
    draw per shape)."""
    rng = np.random.default_rng(seed)
    leaves = []
    for n_in, n_out in itertools.pairwise(sizes):
        leaves += [jnp.asarray(np.sqrt(2.0 / (n_in + n_out)) * rng.standard_normal((n_out, n_in))), jnp.zeros(n_out)]
    return jax.tree.unflatten(mlp_structure(sizes), leaves)


@register_check(
    "ddfa_unbiased",
    family="learned_feedback",
    statement="Directional DFA: the forward-mode (jvp) estimate of a layer's mean Jacobian is unbiased (bias within 2x its standard error over repeats) and its mean relative error falls as k^-1/2 over k directions (slope -0.5 +- 0.1), every hidden layer",
    theory="theory/ddfa.md",
    quick={},
    full={"repeats": 256, "k_max": 1024, "seed": 0},
)
def ddfa_unbiased(*, sizes=(64, 32, 32, 10), batch=16, repeats=48, k_max=128, seed=0, slope_tol=0.1, bias_tol=1.5, directions=None):
    """For each hidden layer: ``repeats`` independent runs of ``k_max`` directions; the estimate from the first ``k``
    directions (``k = 1, 2, 4, ..., k_max``) against the exact batch-mean Jacobian (reverse mode). ``directions``
    replaces the N(0, I) draw (a broken one must fail)."""
    from ..rules.ddfa import _normal_directions, jacobian_estimates, mean_jacobian

    draw = _normal_directions if directions is None else directions
    net = _small_net(sizes, seed)
    x = _digits64(batch)[0]
    ks = 2 ** np.arange(int(np.log2(k_max)) + 1)

    @jax.jit
    def errors(x):
        acts = net.forward(x)
        out = []
        for l in range(1, net.depth):  # every hidden layer in one compiled function
            h = net.phi(acts[l])
            exact = mean_jacobian(net, l, h)
            keys = jax.random.split(jax.random.fold_in(jax.random.key(seed), l), repeats)
            est = jax.vmap(lambda k, l=l, h=h: jacobian_estimates(net, l, h, k, k_max, draw))(keys)  # (repeat, k_max, n_L, n_l)
            partial = jnp.cumsum(est, axis=1)[:, ks - 1] / ks[None, :, None, None]  # first-k means, (repeat, k, n_L, n_l)
            err = jnp.linalg.norm((partial - exact).reshape(*partial.shape[:2], -1), axis=-1) / jnp.linalg.norm(exact)
            bias = jnp.linalg.norm(partial.mean(axis=0) - exact, axis=(-2, -1)) / jnp.linalg.norm(exact)
            out.append((err, bias))
        return out

    res = errors(x)
    errs, biases = [np.asarray(e) for e, _ in res], [np.asarray(b) for _, b in res]
    errs, biases = np.stack(errs), np.stack(biases)  # (layer, repeat, k), (layer, k)
    mean_err = errs.mean(axis=1)
    rms_err = np.sqrt((errs**2).mean(axis=1))
    slopes = np.array([loglog_slope(ks, m) for m in mean_err])
    bias_ratio = biases * np.sqrt(repeats) / rms_err  # ~1 for an unbiased estimate (standard errors of the mean)
    worst = int(np.argmax(np.abs(slopes + 0.5)))
    layers = [f"h{l}" for l in range(1, net.depth)]
    ds = xr.Dataset(
        {"relative_error": (("layer", "repeat", "k"), errs), "mean_error": (("layer", "k"), mean_err),
         "bias": (("layer", "k"), biases), "bias_ratio": (("layer", "k"), bias_ratio), "slope": (("layer",), slopes)},
        coords={"layer": layers, "repeat": np.arange(repeats), "k": ks},
    )
    verdict = Verdict.from_criteria(
        slope_worst_layer=within(slopes[worst], -0.5, slope_tol),
        bias_ratio_max=at_most(bias_ratio.max(), bias_tol),
        error_at_k_max=reported(mean_err[:, -1].max()),
    )
    return ds, verdict


# ----------------------------------------------------------------------------- ddfa_alignment


@register_check(
    "ddfa_alignment",
    family="learned_feedback",
    statement="Directional DFA: the feedback learned online aligns with the true mean Jacobian during training on digits: angle(B_l, J_l) falls from ~90 deg to < 30 deg, every hidden layer and seed",
    theory="theory/ddfa.md",
    quick={},
    full={"steps": 600, "seeds": tuple(range(5))},
)
def ddfa_alignment(*, sizes=(64, 32, 32, 10), steps=100, batch=32, lr=1e-3, seeds=(0, 1), n_points=11, n_probe=128,
                   max_angle=30.0, start_tol=18.0, learner_factory=None, **learner_options):
    """Train the ``ddfa`` learner (Adam) on digits; every ``steps / n_points`` steps, the angle between each learned
    feedback :math:`B_l` and the probe batch's mean Jacobian :math:`\\bar J_l` (reverse mode)."""
    import optax

    from ..analysis import alignment_angle
    from ..learning import make_step
    from ..rules.ddfa import ddfa_learner, mean_jacobian

    learner = (learner_factory or ddfa_learner)(**learner_options)
    opt = optax.adam(lr)
    step = make_step(learner, opt)
    x, y = _digits64()
    xp = jnp.asarray(x[:n_probe])
    record = np.linspace(0, steps, n_points).round().astype(int)

    @jax.jit
    def angles(net, feedback):
        acts = net.forward(xp)
        return jnp.stack([alignment_angle(b, mean_jacobian(net, l, net.phi(acts[l]))) for l, b in enumerate(feedback, start=1)])

    out, losses = [], []
    for seed in seeds:
        net = _small_net(sizes, seed)
        state = learner.rule.init(jax.random.key(seed + 1000), net)
        opt_state = opt.init(eqx.filter(net, eqx.is_inexact_array))
        rows, loss = [], []
        for t in range(steps + 1):
            if t in record:
                rows.append(np.asarray(angles(net, state)))
            if t < steps:
                i = (t % (x.shape[0] // batch)) * batch
                net, state, opt_state, m = step(net, state, opt_state, x[i : i + batch], y[i : i + batch], jax.random.fold_in(jax.random.key(seed), t))
                loss.append(float(m["loss"]))
        out.append(np.stack(rows))
        losses.append([np.mean(loss[:10]), np.mean(loss[-10:])])
    ang, losses = np.stack(out), np.asarray(losses)  # (seed, point, layer)
    layers = [f"B{l}" for l in range(1, len(sizes) - 1)]
    ds = xr.Dataset({"angle_B_J": (("seed", "step", "layer"), ang), "loss_first_last": (("seed", "phase"), losses)},
                    coords={"seed": list(seeds), "step": record, "layer": layers, "phase": ["first10", "last10"]})
    verdict = Verdict.from_criteria(
        start_angle=within(ang[:, 0].flat[np.argmax(np.abs(ang[:, 0] - 90.0))], 90.0, start_tol),
        final_angle_worst=below(ang[:, -1].max(), max_angle),
        loss_ratio=reported((losses[:, 1] / losses[:, 0]).max()),
    )
    return ds, verdict


# ----------------------------------------------------------------------------- meta_plasticity_low_data


@register_check(
    "meta_plasticity_low_data",
    family="learned_feedback",
    statement="Meta-learned plasticity with fixed random feedback beats plain FA (at its best learning rate) at online learning on held-out low-data digits tasks (5-way, 5-shot, one sample per step): mean accuracy gain > 3 paired standard errors",
    theory="theory/meta_plasticity.md",
    quick={},
    full={"n_train_tasks": 600, "n_test_tasks": 600, "meta_steps": 400, "lr_grid": (0.01, 0.03, 0.1, 0.3)},
)
def meta_plasticity_low_data(*, hidden=(32, 32), n_way=5, k_shot=5, n_query=10, n_train_tasks=200, n_test_tasks=200,
                             meta_steps=60, meta_batch=16, meta_lr=0.03, l1=1e-3, lr_grid=(0.03, 0.1, 0.3), seed=0,
                             min_se=3.0, terms=None):
    """Tasks from the digits training split meta-train the coefficients (starting from FA at the FA-best rate of
    ``lr_grid``, chosen on the training tasks); tasks from the held-out test split, each with a fresh network and
    fresh random feedback, compare the two rules. ``terms`` (a boolean mask over :data:`TERMS`) restricts which
    coefficients may move (all by default)."""
    from ..rules import meta_plasticity as mp

    d = load_digits()
    train = mp.sample_tasks(jax.random.key(seed), d.x_train.astype(np.float64), d.labels_train, n_train_tasks, n_way, k_shot, n_query)
    test = mp.sample_tasks(jax.random.key(seed + 1), d.x_test.astype(np.float64), d.labels_test, n_test_tasks, n_way, k_shot, n_query)
    fa_grid = np.array([mp.evaluate_rule(mp.FA_COEFFICIENTS, lr, seed + 2, train, hidden).mean() for lr in lr_grid])
    lr = float(lr_grid[int(np.argmax(fa_grid))])
    theta, hist = mp.meta_train(train, hidden=hidden, lr=lr, meta_steps=meta_steps, meta_batch=meta_batch, meta_lr=meta_lr, l1=l1,
                                seed=seed, mask=terms)
    acc_meta = mp.evaluate_rule(theta, lr, seed + 3, test, hidden)
    acc_fa = mp.evaluate_rule(mp.FA_COEFFICIENTS, lr, seed + 3, test, hidden)
    diff = acc_meta - acc_fa
    se = diff.std(ddof=1) / np.sqrt(diff.size) if np.any(diff != 0) else np.inf
    ds = xr.Dataset(
        {"coefficients": (("term",), theta), "coefficient_history": (("meta_step", "term"), hist),
         "accuracy_meta": (("task",), acc_meta), "accuracy_fa": (("task",), acc_fa), "fa_lr_grid_accuracy": (("lr",), fa_grid)},
        coords={"term": list(mp.TERMS), "meta_step": np.arange(hist.shape[0]), "task": np.arange(diff.size), "lr": list(lr_grid)},
        attrs={"lr": lr, "n_way": n_way, "k_shot": k_shot, "chance": 1.0 / n_way},
    )
    verdict = Verdict.from_criteria(
        gain_in_standard_errors=above(diff.mean() / se, min_se),
        accuracy_meta=reported(acc_meta.mean()),
        accuracy_fa=reported(acc_fa.mean()),
        **{f"theta_{t}": reported(v) for t, v in zip(mp.TERMS, theta)},
    )
    return ds, verdict
