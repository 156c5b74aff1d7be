r"""Meta-learned plasticity with fixed random feedback (Shervani-Tabar & Rosenbaum, "Meta-learning biologically
plausible plasticity rules with random feedback pathways", Nat. Commun. 14:1805, 2023).

The update of layer ``l`` (weights :math:`W_l`, shape :math:`(n_l, n_{l-1})`) is a linear combination of local terms,
in descent sign (what the optimiser subtracts):

.. math::  G_l = \sum_r \theta_r F^r_l, \qquad
           F^{\rm fa}_l = \delta_l\, h_{l-1}^\top, \quad
           F^{\rm hebb}_l = -h_l h_{l-1}^\top, \quad
           F^{\rm oja}_l = -\big(h_l h_{l-1}^\top - \mathrm{diag}(h_l^2)\, W_l\big), \quad
           F^{\rm err}_l = \delta_l\, \delta_{l-1}^\top, \quad
           F^{\rm decay}_l = W_l ,

summed over the batch, with :math:`h_{l-1}` the presynaptic rate, :math:`h_l = \varphi(a_l)` the postsynaptic rate
(the output :math:`a_L` at the top) and :math:`\delta_l` the error of feedback alignment through **fixed random**
matrices :math:`B_l`: :math:`\delta_L = \partial L/\partial a_L`, :math:`\delta_{l-1} = \varphi'(a_{l-1}) \odot
B_l^\top \delta_l` (:math:`\delta_0 = B_1^\top \delta_1`, no :math:`\varphi'`, for the input layer's error term).
:math:`\theta = (1, 0, 0, 0, 0)` is plain feedback alignment. Biases follow :math:`\theta_{\rm fa}\,\delta_l`.

The paper's symbols: :math:`\Delta W = -\eta\sum_r \theta_r F^r` with the pseudo-gradient :math:`e_l y_{l-1}^\top`
(our ``fa``), Hebb :math:`y_l y_{l-1}^\top`, Oja, error–error :math:`e_l e_{l-1}^\top`, decay; :math:`\theta` (here
``coefficients``) is meta-learned by :func:`meta_train`: gradients of the query loss after an online-learning episode
(one sample per step, ``lax.scan``) through the whole episode with ``jax.grad``, plus an L1 penalty
:math:`\lambda\|\theta\|_1` that keeps the rule interpretable. The feedback matrices are fixed and random (the rule's
state, drawn in :meth:`MetaPlasticity.init`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from ..errors import ShapeError
from ..losses import cross_entropy_loss, get_loss
from ..models.base import Data
from ..networks import Network
from .base import LEARNERS, Learner, Rule
from .. import draws

#: the local terms, in the order of ``coefficients``
TERMS = ("fa", "hebb", "oja", "err", "decay")
#: plain feedback alignment
FA_COEFFICIENTS = (1.0, 0.0, 0.0, 0.0, 0.0)


def random_feedback(key: PRNGKeyArray, sizes, dtype) -> tuple[Array, ...]:
    """Fixed random ``B_l`` of shape ``(n_l, n_{l-1})`` (the layout of ``W_l``) for ``l = 1..L``, entries
    N(0, 2/(n_l + n_{l-1})) (Xavier, as FA's feedback)."""
    keys = jax.random.split(key, len(sizes) - 1)
    return tuple(math.sqrt(2.0 / (a + b)) * draws.normal(k, (b, a), dtype) for k, a, b in zip(keys, sizes[:-1], sizes[1:]))


def plasticity_terms(net: Network, feedback, x: Array, y: Array, loss: Callable) -> tuple[list[Array], list[Array], Array]:
    """``(terms, deltas, output)``: ``terms[l-1]`` stacks :math:`F^r_l` over :data:`TERMS` (shape ``(5, n_l, n_{l-1})``),
    ``deltas[l-1]`` is :math:`\\delta_l` (batch, n_l)."""
    acts = net.forward(x)
    rates = [x] + [net.phi(a) for a in acts[1:-1]] + [acts[-1]]  # h_0 .. h_L (the output is linear)
    d = jax.grad(lambda o: loss(o, y))(acts[-1])
    deltas = [d]
    for l in range(net.depth, 0, -1):  # delta_{l-1} from delta_l through B_l
        back = d @ feedback[l - 1]
        d = back if l == 1 else back * jax.jvp(net.phi, (acts[l - 1],), (jnp.ones_like(acts[l - 1]),))[1]
        deltas.append(d)
    deltas = deltas[::-1]  # delta_0 .. delta_L
    terms = []
    for l, w in enumerate(net.weights, start=1):
        pre, post, dl = rates[l - 1], rates[l], deltas[l]
        hebb = post.T @ pre
        oja = hebb - jnp.sum(post**2, axis=0)[:, None] * w
        terms.append(jnp.stack([dl.T @ pre, -hebb, -oja, dl.T @ deltas[l - 1], w]))
    return terms, deltas[1:], acts[-1]


def plasticity_update(net: Network, feedback, coefficients: Array, x: Array, y: Array, loss: Callable) -> tuple[Network, Array]:
    """The rule's update (descent sign, a :class:`Network` of the weights' and biases' updates) and the output."""
    terms, deltas, out = plasticity_terms(net, feedback, x, y, loss)
    ws = tuple(jnp.tensordot(coefficients, t, axes=1) for t in terms)
    bs = tuple(coefficients[0] * jnp.sum(d, axis=0) for d in deltas)
    return net.with_matrices(ws, bs), out


class MetaPlasticity(Rule):
    """The meta-learned plasticity rule (module docstring) with fixed ``coefficients`` :math:`\\theta`."""

    loss: Callable = eqx.field(static=True)
    coefficients: tuple[float, ...] = eqx.field(static=True, default=FA_COEFFICIENTS)

    def init(self, key, params: Network) -> tuple[Array, ...]:
        """The fixed random feedback ``B_1..B_L``."""
        if not params.is_mlp:
            raise ShapeError("meta_plasticity is defined for MLPs (Linear layers) only")
        return random_feedback(key, params.sizes, params.weights[0].dtype)

    def update(self, params: Network, rule_state, batch: Data, key):
        theta = jnp.asarray(self.coefficients, params.weights[0].dtype)
        grads, out = plasticity_update(params, rule_state, theta, batch.x, batch.y, self.loss)
        return grads, rule_state, {"loss": self.loss(out, batch.y) / batch.x.shape[0]}


# ----------------------------------------------------------------------------- meta-training


def sample_tasks(key: PRNGKeyArray, x: np.ndarray, labels: np.ndarray, n_tasks: int, n_way: int, k_shot: int, n_query: int):
    """``n_tasks`` few-shot tasks: ``n_way`` random classes (relabelled 0..n_way-1 in random order), ``k_shot``
    support samples each in random order (the online stream) and ``n_query`` query samples each. Returns numpy
    arrays ``(xs (T, n_way*k_shot, d), ys one-hot, xq, yq)``."""
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    classes = np.unique(labels)
    by_class = {c: np.flatnonzero(labels == c) for c in classes}
    xs, ys, xq, yq = [], [], [], []
    for _ in range(n_tasks):
        chosen = rng.choice(classes, n_way, replace=False)
        s_idx, s_lab, q_idx, q_lab = [], [], [], []
        for j, c in enumerate(chosen):
            idx = rng.choice(by_class[c], k_shot + n_query, replace=False)
            s_idx += list(idx[:k_shot]); s_lab += [j] * k_shot
            q_idx += list(idx[k_shot:]); q_lab += [j] * n_query
        order = rng.permutation(len(s_idx))
        xs.append(x[np.asarray(s_idx)[order]]); ys.append(np.eye(n_way)[np.asarray(s_lab)[order]])
        xq.append(x[q_idx]); yq.append(np.eye(n_way)[q_lab])
    return tuple(np.stack(a) for a in (xs, ys, xq, yq))


def initial_states(seed: int, n: int, sizes) -> tuple[Network, tuple[Array, ...]]:
    """``n`` fresh networks (Xavier weights, zero biases) and fixed random feedback matrices, stacked on a leading
    axis; drawn with numpy's generator of ``seed`` (no compiled draw per shape)."""
    rng = np.random.default_rng(seed)
    std = [math.sqrt(2.0 / (a + b)) for a, b in itertools.pairwise(sizes)]
    ws = [s * rng.standard_normal((n, b, a)) for s, a, b in zip(std, sizes[:-1], sizes[1:])]
    fb = tuple(jnp.asarray(s * rng.standard_normal((n, b, a))) for s, a, b in zip(std, sizes[:-1], sizes[1:]))
    from .ntk_rule import mlp_structure

    leaves = [jnp.asarray(a) for w in ws for a in (w, np.zeros(w.shape[:2]))]
    return jax.tree.unflatten(mlp_structure(sizes), leaves), fb


def episode(coefficients: Array, lr: Array, net: Network, feedback, xs: Array, ys: Array, xq: Array, yq: Array):
    """One online-learning episode from the network ``net`` with fixed ``feedback``: one SGD step of the rule per
    support sample (``lax.scan``), then ``(query cross-entropy per sample, query accuracy)``."""

    def step(n, sample):
        g, _ = plasticity_update(n, feedback, coefficients, sample[0][None], sample[1][None], cross_entropy_loss)
        return jax.tree.map(lambda a, b: a - lr * b, n, g), None

    net, _ = jax.lax.scan(step, net, (xs, ys))
    out = net(xq)
    return cross_entropy_loss(out, yq) / xq.shape[0], jnp.mean(jnp.argmax(out, -1) == jnp.argmax(yq, -1))


@jax.jit
def _episodes(coefficients, lr, nets, feedback, xs, ys, xq, yq):
    return jax.vmap(episode, in_axes=(None, None, 0, 0, 0, 0, 0, 0))(coefficients, lr, nets, feedback, xs, ys, xq, yq)


def evaluate_rule(coefficients, lr, seed: int, tasks, hidden) -> np.ndarray:
    """Query accuracy of the rule on every task of ``tasks`` (a fresh network and feedback per task, from ``seed``)."""
    sizes = (tasks[0].shape[-1], *hidden, tasks[1].shape[-1])
    nets, fb = initial_states(seed, tasks[0].shape[0], sizes)
    return np.asarray(_episodes(jnp.asarray(coefficients, jnp.float64), jnp.float64(lr), nets, fb, *tasks)[1])


def meta_train(tasks, *, hidden=(32, 32), lr: float = 0.1, init=FA_COEFFICIENTS, meta_steps: int = 100, meta_batch: int = 16,
               meta_lr: float = 0.01, l1: float = 1e-3, seed: int = 0, mask=None) -> tuple[np.ndarray, np.ndarray]:
    """Meta-learn ``coefficients`` on ``tasks`` (from :func:`sample_tasks`): Adam on the mean query loss after an
    episode + ``l1`` × :math:`\\|\\theta\\|_1`, gradients by ``jax.grad`` through the scanned episode; every meta-step
    draws ``meta_batch`` tasks, each with its own fresh network; ``mask`` (booleans over :data:`TERMS`) lets only
    those coefficients move. Returns ``(final coefficients, history (meta_steps + 1, 5))``."""
    sizes = (tasks[0].shape[-1], *hidden, tasks[1].shape[-1])
    rng = np.random.default_rng(seed)
    idx = np.stack([rng.choice(tasks[0].shape[0], meta_batch, replace=False) for _ in range(meta_steps)])
    nets, fb = initial_states(seed + 1, meta_steps * meta_batch, sizes)
    per_step = jax.tree.map(lambda a: a.reshape(meta_steps, meta_batch, *a.shape[1:]), (nets, fb))
    batches = tuple(jnp.asarray(t[idx]) for t in tasks)
    mask = jnp.ones(len(TERMS)) if mask is None else jnp.asarray(mask, jnp.float64)
    theta, hist = _meta_run(jnp.asarray(init, jnp.float64), jnp.float64(lr), per_step, batches, jnp.float64(l1), jnp.float64(meta_lr), mask)
    return np.asarray(theta), np.concatenate([np.asarray(init, float)[None], np.asarray(hist)])


@jax.jit
def _meta_run(theta, lr, per_step, batches, l1, meta_lr, mask):
    import optax

    opt = optax.adam(meta_lr)

    def meta_loss(th, start, task):
        losses, _ = jax.vmap(episode, in_axes=(None, None, 0, 0, 0, 0, 0, 0))(th, lr, *start, *task)
        return jnp.mean(losses) + l1 * jnp.sum(jnp.abs(th))

    def body(carry, xs):
        th, state = carry
        g = mask * jax.grad(meta_loss)(th, xs[0], xs[1])
        upd, state = opt.update(g, state, th)
        th = optax.apply_updates(th, upd)
        return (th, state), th

    (theta, _), hist = jax.lax.scan(body, (theta, opt.init(theta)), (per_step, batches))
    return theta, hist


@LEARNERS.register("meta_plasticity")
def meta_plasticity_learner(*, activation="tanh", loss: str = "ce", coefficients=FA_COEFFICIENTS) -> Learner:
    """Plasticity rule sum_r theta_r F_r of local terms (FA error x pre, Hebb, Oja, error x error, decay) with fixed
    random feedback; ``coefficients`` theta (default: plain FA) come from :func:`meta_train`."""
    coefficients = tuple(float(c) for c in coefficients)
    if len(coefficients) != len(TERMS) or not all(math.isfinite(c) for c in coefficients):
        raise ValueError(f"coefficients must be {len(TERMS)} finite numbers, one per term {TERMS}, got {coefficients!r}")
    return Learner(
        name="meta_plasticity",
        rule=MetaPlasticity(get_loss(loss), coefficients),
        description="meta-learned plasticity: linear combination of local terms (FA error x pre, Hebb, Oja, ...) with fixed random feedback (Shervani-Tabar & Rosenbaum 2023)",
        defaults={"activation": activation, "loss": loss, "coefficients": coefficients, "lr": 1e-3},
    )
