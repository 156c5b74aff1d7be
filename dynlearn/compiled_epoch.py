"""A training epoch (or a segment of one) as one compiled call: ``lax.scan`` over batches drawn by index.

The training set lives on the device; the host sends only the batch order, an ``(n_steps, batch)`` array of sample
indices, and the global step numbers (the key of step ``k`` is ``fold_in(k_steps, k)``, as in a step-by-step loop).
Per-step metrics come back as one array per name, read once per call (the host sums them in step order, so the
sums do not depend on how an epoch is cut into segments). A step whose update is not finite, or whose relaxation
did not converge, is *not applied*: the segment returns the state before it, the first bad step and its
relaxation status, and the host raises the typed error naming the epoch and step (:func:`dynlearn.learning.train`).
Checking costs the happy path nothing per step: a guarded re-run finds the bad step only when the segment is bad.

One compilation per scan length: a whole epoch, or segments of ``checkpoint_every`` steps and the remainder;
:func:`cached_epoch` reuses it across runs. :func:`make_step` is the same step compiled alone, for step-by-step loops.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from .models.base import Data
from .status import CONVERGED, collect_status

_STATUS_KEYS = ("relax_status", "relax_residual", "relax_time", "relax_index")


def step_body(learner, optimizer: optax.GradientTransformation, relaxations: list) -> Callable:
    """``(params, rule_state, opt_state, x, y, key) -> (params, rule_state, opt_state, metrics)``, to be traced inside a
    jit or a scan; the worst relaxation status of the step travels in ``metrics`` (``relax_*``) and ``relaxations``
    is filled, at trace time, with ``(model name, tol)`` by ``relax_index``."""

    def body(params, rule_state, opt_state, x, y, key):
        with collect_status() as sink:
            grads, rule_state, metrics = learner.rule.update(params, rule_state, Data(x, y), key)
        relaxations[:] = [(name, tol) for name, tol, _ in sink.entries]
        trainable = eqx.filter(params, eqx.is_inexact_array)
        updates, opt_state = optimizer.update(eqx.filter(grads, eqx.is_inexact_array), opt_state, trainable)
        metrics = {**metrics, **(sink.worst() or {})}
        return eqx.apply_updates(params, updates), rule_state, opt_state, metrics

    return body


def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(eqx.filter(tree, eqx.is_inexact_array))]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def _select(ok, new, old):
    """``new`` where ``ok`` else ``old``, leaf by leaf (non-array leaves are static and equal; PRNG keys by their data)."""

    def pick(a, b):
        if not eqx.is_array(a):
            return a
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(jnp.where(ok, jax.random.key_data(a), jax.random.key_data(b)), impl=jax.random.key_impl(a))
        return jnp.where(ok, a, b)

    return jax.tree.map(pick, new, old)


#: the progress bar that :func:`_tick` advances (set by the training loop around a compiled segment)
PROGRESS: dict = {"bar": None}


def _tick(step) -> None:
    bar = PROGRESS["bar"]
    if bar is not None:
        bar.update(1)


def make_epoch(learner, optimizer: optax.GradientTransformation):
    """The compiled segment ``run(params, rule_state, opt_state, x, y, order, steps, k_steps, progress=False)``.

    ``x``, ``y``: the whole training set on the device; ``order``: ``(n, batch)`` sample indices; ``steps``: the ``n``
    global step numbers. Returns ``(params, rule_state, opt_state, per_step, bad)``: each metric per step (0 from the
    first bad step on) and ``bad = {"index": first bad step in the segment or -1, "finite": ..., "relax_*": its
    status}``. ``run.relaxations`` names the relaxations by ``relax_index``; with ``progress`` (static) each step
    advances the bar in :data:`PROGRESS` through a host callback.

    Two scans share the step: the *fast* one carries the state on unconditionally and returns each step's metrics and
    relaxation status; the segment is good when every status is converged, every metric finite and the final
    parameters finite (a non-finite parameter stays non-finite: ``θ + u`` is NaN or inf whatever ``u`` is). Only when
    it is not does the *guarded* scan re-run the segment from its start, checking every step and keeping the last
    good state, to name the first bad step. The happy path thus pays no per-step check of the whole state.
    """
    relaxations: list[tuple[str, float | None]] = []
    body = step_body(learner, optimizer, relaxations)

    @eqx.filter_jit
    def compiled(guarded, params, rule_state, opt_state, x, y, order, steps, k_steps, progress=False):
        # the scan carries arrays only: layers with non-array fields (pooling's callables, say) stay outside it
        arrays, static = eqx.partition((params, rule_state, opt_state), eqx.is_array)

        def scan_step(carry, inp):
            arrays, bad = carry
            params, rule_state, opt_state = eqx.combine(arrays, static)
            idx, step = inp
            new = body(params, rule_state, opt_state, x[idx], y[idx], jax.random.fold_in(k_steps, step))
            if progress:
                jax.debug.callback(_tick, step)
            if not guarded:
                return (eqx.filter(new[:3], eqx.is_array), bad), new[3]
            metrics = dict(new[3])
            status = {k: metrics.pop(k) for k in _STATUS_KEYS if k in metrics}
            finite = _all_finite(new[0]) & _all_finite(metrics)
            converged = status["relax_status"] == CONVERGED if status else jnp.asarray(True)
            first_bad = (bad["index"] < 0) & ~(finite & converged)
            bad = _select(first_bad, {"index": step, "finite": finite, **status}, bad)
            keep = bad["index"] < 0
            params, rule_state, opt_state = _select(keep, new[:3], (params, rule_state, opt_state))
            return (eqx.filter((params, rule_state, opt_state), eqx.is_array), bad), {k: jnp.where(keep, v, 0.0) for k, v in metrics.items()}

        shapes = eqx.filter_eval_shape(body, params, rule_state, opt_state, x[order[0]], y[order[0]], k_steps)[3]
        bad = {"index": jnp.asarray(-1, steps.dtype), "finite": jnp.asarray(True)}
        if guarded and any(k in shapes for k in _STATUS_KEYS):
            bad.update({k: jnp.zeros(shapes[k].shape, shapes[k].dtype) for k in _STATUS_KEYS})
        (arrays, bad), per_step = jax.lax.scan(scan_step, (arrays, bad), (order, steps))
        params, rule_state, opt_state = eqx.combine(arrays, static)
        if not guarded:
            bad["finite"] = _all_finite(params)
        return params, rule_state, opt_state, per_step, bad

    def run(params, rule_state, opt_state, x, y, order, steps, k_steps, progress=False):
        out = compiled(False, params, rule_state, opt_state, x, y, order, steps, k_steps, progress)
        per_step = {k: v for k, v in out[3].items() if k not in _STATUS_KEYS}
        status = out[3].get("relax_status")
        good = bool(out[4]["finite"]) and all(bool(jnp.all(jnp.isfinite(v))) for v in per_step.values())
        if good and (status is None or bool(jnp.all(status == CONVERGED))):
            return (*out[:3], per_step, out[4])
        return compiled(True, params, rule_state, opt_state, x, y, order, steps, k_steps, False)

    run.relaxations = relaxations
    return run


def make_step(learner, optimizer: optax.GradientTransformation):
    """The jitted step ``(params, rule_state, opt_state, x, y, key) -> (params, rule_state, opt_state, metrics)``.

    The relaxations of the rule's update do not raise inside the compiled step: their worst status travels out in
    ``metrics`` (``relax_status``, ``relax_residual``, ``relax_time``, ``relax_index``, see
    :func:`dynlearn.dynamics.collect_status`) and :func:`dynlearn.learning.raise_for_step` raises the typed error on
    the host; ``step.relaxations`` lists ``(model name, tol)`` of the relaxations by ``relax_index``.
    :func:`dynlearn.learning.train` runs whole epochs instead (:func:`make_epoch`, the same step inside ``lax.scan``).
    Also importable as ``dynlearn.learning.make_step``.
    """
    relaxations: list[tuple[str, float | None]] = []
    compiled = eqx.filter_jit(step_body(learner, optimizer, relaxations))

    def step(params, rule_state, opt_state, x, y, key):
        return compiled(params, rule_state, opt_state, x, y, key)

    step.relaxations = relaxations
    return step


#: compiled epochs by (rule, optimiser, weight decay): see :func:`cached_epoch`
_EPOCH_CACHE: dict = {}


def cached_epoch(learner, optimizer, lr, opt: optax.GradientTransformation, weight_decay: float = 0.0):
    """:func:`make_epoch`, reused across runs with an equal rule and the same optimiser (name and rate, or the same
    optax object), so that training several seeds or data fractions compiles once per shape.

    A rule holding JAX arrays (PAL's constants, say) is not hashable; it is reused when it is the same rule object,
    whose arrays cannot change. A rule holding mutable (NumPy) arrays is never reused."""
    opt_key = (optimizer, lr) if isinstance(optimizer, str) else (id(optimizer),)
    rule = learner.rule
    try:
        hash(rule)
    except TypeError:
        arrays = [a for a in jax.tree.leaves(rule) if eqx.is_array(a)]
        if not all(isinstance(a, jax.Array) for a in arrays):
            return make_epoch(learner, opt)
        rule = ("same rule object", id(rule))
    key = (rule, *opt_key, weight_decay)
    if key not in _EPOCH_CACHE:
        # the optimiser and the rule are kept alive with the entry, so the ids in the key stay unique
        _EPOCH_CACHE[key] = ((optimizer, learner.rule), make_epoch(learner, opt))
    return _EPOCH_CACHE[key][1]
