r"""The feedback-alignment family: one backward-matrix mechanism, many learning rules.

Every rule here trains the same feedforward :class:`dynlearn.Network` (:math:`\hat x_l = W_l\varphi(\hat x_{l-1}) + b_l`)
and differs from backprop only in the matrix that carries the error down one layer. Backprop uses
:math:`\delta_{l-1} = \varphi'(\hat x_{l-1}) \odot W_l^\top \delta_l`; the rules replace :math:`W_l^\top` by a
backward matrix :math:`B_l` of the same shape, ``(n_{l-1}, n_l)``:

* ``fa`` — feedback alignment (Lillicrap, Cownden, Tweed & Akerman 2016, Nat. Commun. 7:13276): :math:`B_l` fixed random.
* ``dfa`` — direct feedback alignment (Nøkland 2016, NeurIPS): every hidden layer receives the output error
  directly, :math:`\delta_l = \varphi'(\hat x_l) \odot B_l e` with fixed random :math:`B_l` of shape ``(n_l, n_L)``.
* ``kp`` — Kolen–Pollack (Kolen & Pollack 1994; Akrout et al. 2019, NeurIPS): :math:`B_l` receives the transpose
  of :math:`W_l`'s update, and both decay: :math:`\Delta W_l = -\eta\,\delta_l h_{l-1}^\top - \lambda W_l`,
  :math:`\Delta B_l = -\eta\, h_{l-1}\delta_l^\top - \lambda B_l`, so :math:`W_l - B_l^\top` shrinks by :math:`(1-\lambda)` per step.
* ``wm`` — weight mirror (Akrout, Wilson, Humphreys, Lillicrap & Tweed 2019, NeurIPS): forward weights learn as in FA;
  :math:`B_l` learns from noise :math:`\xi \sim N(0, \sigma^2 I)` injected at layer ``l-1``:
  :math:`\Delta B_l = \eta_B\,\xi (W_l \xi)^\top - \lambda_{WM} B_l`, whose fixed point is :math:`(\eta_B\sigma^2/\lambda_{WM}) W_l^\top`.
* ``usf``, ``brsf``, ``frsf`` — sign-symmetry (Liao, Leibo & Poggio 2016, AAAI; Moskovitz et al. 2018; the
  BioTorch variants of Sanfiz & Akrout 2021): :math:`B_l = \operatorname{sign}(W_l)^\top \odot M_l` with uniform
  magnitude (uSF), magnitudes redrawn every batch (brSF), or fixed random magnitudes (frSF).

The mechanism is one custom VJP, :func:`feedback_matmul`: forward ``W h``, backward ``B δ`` to the input,
``δ hᵀ`` to ``W`` and the transpose ``h δᵀ`` to ``B`` (the Kolen–Pollack update; other rules ignore or replace it).
DFA uses the same primitive on a zero matrix that adds nothing to the output but routes ``B_l e`` to layer ``l``.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from ..errors import ShapeError, UnknownNameError
from ..losses import LOSSES
from ..networks import Network, _matvec, init_network
from .registry import Learner, register_learner

RULES = ("fa", "dfa", "kp", "wm", "usf", "brsf", "frsf", "bp")


# ----------------------------------------------------------------------------- the one mechanism


@jax.custom_vjp
def feedback_matmul(w: Array, h: Array, b: Array) -> Array:
    """``W h`` whose reverse pass sends ``B δ`` (not ``Wᵀ δ``) to ``h``.

    ``w`` is ``(out, in)``, ``h`` is ``(..., in)`` and the backward matrix ``b`` is ``(in, out)`` (the shape of ``Wᵀ``).
    Cotangents: ``W ← δ hᵀ`` (summed over the batch), ``h ← B δ``, ``B ← h δᵀ = (δ hᵀ)ᵀ``.
    """
    return _matvec(w, h)


def _fm_fwd(w, h, b):
    return _matvec(w, h), (w, h, b)


def _fm_bwd(res, g):
    w, h, b = res
    grad_w = jnp.einsum("...o,...i->oi", g, h)
    grad_h = jnp.einsum("io,...o->...i", b, g)
    return grad_w, grad_h, grad_w.T


feedback_matmul.defvjp(_fm_fwd, _fm_bwd)


# ----------------------------------------------------------------------------- the network with backward matrices


class FeedbackNetwork(eqx.Module):
    r"""A :class:`dynlearn.Network` plus one backward matrix per layer, trained by the rule ``rule``.

    ``feedback[k]`` belongs to weight layer ``l = k + 2`` (``W_2 .. W_L``) and has the shape of ``W_lᵀ``, except for
    ``dfa`` where ``feedback[k]`` belongs to hidden layer ``l = k + 1`` and has shape ``(n_l, n_L)``. For the
    sign-symmetry rules ``feedback`` holds the magnitudes :math:`M_l` and the backward matrix is
    :math:`\operatorname{sign}(W_l)^\top \odot M_l`. ``key`` seeds the rules that draw noise (``wm``, ``brsf``).
    """

    network: Network
    feedback: tuple[Array, ...]
    key: Array
    rule: str = eqx.field(static=True, default="fa")

    def __check_init__(self):
        if self.rule not in RULES:
            raise UnknownNameError(f"unknown feedback rule {self.rule!r}; choose one of {', '.join(RULES)}")
        want = feedback_shapes(self.network.sizes, self.rule)
        got = tuple(tuple(b.shape) for b in self.feedback)
        if got != want:
            raise ShapeError(
                f"rule {self.rule!r} on a network of sizes {self.network.sizes} needs backward matrices of shapes {want}, got {got}"
            )

    @property
    def sizes(self):
        return self.network.sizes

    def __call__(self, x):
        return self.network(x)

    def backward_matrices(self, key: Array | None = None) -> tuple[Array, ...]:
        """The matrices that carry the error down (``B_l``, shapes as in ``feedback``), for this batch's ``key``."""
        ws = self.network.weights
        if self.rule == "bp":
            return tuple(w.T for w in ws[1:])
        if self.rule in ("usf", "frsf"):
            return tuple(jnp.sign(w.T) * m for w, m in zip(ws[1:], self.feedback))
        if self.rule == "brsf":
            key = self.key if key is None else key
            keys = jax.random.split(key, len(self.feedback))
            return tuple(
                jnp.sign(w.T) * jnp.abs(jax.random.normal(k, m.shape, m.dtype)) * jnp.sqrt(jnp.mean(m**2)) for k, w, m in zip(keys, ws[1:], self.feedback)
            )
        return tuple(self.feedback)

    def backward_pairs(self) -> list[tuple[str, Array, Array]]:
        """``(label, B, target)`` per backward matrix: ``target`` is what ``B`` stands in for under backprop.

        ``Wᵀ_l`` for the layered rules; for DFA the product ``(W_L ⋯ W_{l+1})ᵀ`` (the linearised path from the
        output down to layer ``l``).
        """
        ws = self.network.weights
        bs = jax.lax.stop_gradient(self.backward_matrices())
        if self.rule == "dfa":
            out, prod = [], None
            for l in range(len(ws) - 1, 0, -1):  # hidden layer l, from the top
                prod = ws[l] if prod is None else prod @ ws[l]
                out.append((f"B{l}", bs[l - 1], prod.T))
            return out[::-1]
        return [(f"B{l + 2}", b, w.T) for l, (b, w) in enumerate(zip(bs, ws[1:]))]

    def forward_with_feedback(self, x: Array, key: Array | None = None) -> Array:
        """The feedforward output, wired so that reverse-mode autodiff computes this rule's error signals."""
        net = self.network
        bs = self.backward_matrices(key)
        if self.rule in ("usf", "brsf", "frsf", "bp"):  # B is a function of W: no gradient may leak into W through B
            bs = jax.lax.stop_gradient(bs)
        if self.rule == "dfa":
            a = net.predict_layer(1, x)
            direct = []
            for l in range(2, net.depth + 1):
                h = net.phi(a)
                zero = jnp.zeros((net.sizes[-1], h.shape[-1]), h.dtype)
                direct.append(feedback_matmul(zero, h, bs[l - 2]))
                a = _matvec(net.weights[l - 1], jax.lax.stop_gradient(h)) + net.biases[l - 1]
            return a + sum(direct)
        a = net.predict_layer(1, x)
        for l in range(2, net.depth + 1):
            a = feedback_matmul(net.weights[l - 1], net.phi(a), bs[l - 2]) + net.biases[l - 1]
        return a


def feedback_shapes(sizes, rule: str) -> tuple[tuple[int, int], ...]:
    """Shapes of the backward matrices of ``rule`` for layer widths ``sizes``."""
    sizes = tuple(sizes)
    if rule == "dfa":
        return tuple((n, sizes[-1]) for n in sizes[1:-1])
    return tuple((n_in, n_out) for n_in, n_out in zip(sizes[1:-1], sizes[2:]))


def init_feedback_network(sizes, *, key: Array, rule: str = "fa", activation: str = "tanh", scale: float = 1.0, dtype=jnp.float32) -> FeedbackNetwork:
    """Random forward weights (Xavier) and backward matrices with the same variance (independent draws)."""
    k_net, k_fb, k_rule = jax.random.split(key, 3)
    net = init_network(sizes, key=k_net, activation=activation, dtype=dtype)
    shapes = feedback_shapes(net.sizes, rule)
    keys = jax.random.split(k_fb, max(len(shapes), 1))
    fb = []
    for k, (n_in, n_out) in zip(keys, shapes):
        b = scale * jnp.sqrt(2.0 / (n_in + n_out)) * jax.random.normal(k, (n_in, n_out), dtype)
        if rule == "usf":
            b = jnp.full((n_in, n_out), jnp.sqrt(2.0 / (n_in + n_out)), dtype)
        elif rule in ("frsf", "brsf"):
            b = jnp.abs(b)
        fb.append(b)
    return FeedbackNetwork(net, tuple(fb), jax.random.key_data(k_rule), rule)


def batch_key(params: FeedbackNetwork, x: Array) -> Array:
    """A PRNG key for this batch: ``params.key`` folded with the bits of the batch sum (no step counter needed)."""
    bits = jax.lax.bitcast_convert_type(jnp.sum(x).astype(jnp.float32), jnp.uint32)
    return jax.random.fold_in(jax.random.wrap_key_data(params.key), bits)


# ----------------------------------------------------------------------------- updates


def rule_update(
    params: FeedbackNetwork,
    x: Array,
    y: Array,
    *,
    loss: str = "mse",
    kp_decay: float = 0.0,
    mirror_sigma: float = 1.0,
    mirror_decay: float = 0.1,
    mirror_samples: int = 64,
) -> tuple[FeedbackNetwork, Array]:
    r"""The rule's update as a gradient-like PyTree (apply with ``params - lr * grads``) and the loss.

    Forward weights get ``δ_l h_{l-1}ᵀ`` with this rule's deltas (:meth:`FeedbackNetwork.forward_with_feedback`).
    Backward matrices get: nothing (``fa``, ``dfa``, sign-symmetry); the transpose of ``W``'s update plus
    ``kp_decay · B`` (``kp``, where ``W`` also gets ``kp_decay · W``); or the negative weight-mirror step
    :math:`-(\langle \xi (W\xi)^\top\rangle - \lambda_{WM} B)` with ``mirror_samples`` noise vectors of s.d.
    ``mirror_sigma`` (``wm``).
    """
    loss_fn = LOSSES[loss]
    key = batch_key(params, x)

    def objective(p):
        return loss_fn(p.forward_with_feedback(x, key), y)

    value, grads = eqx.filter_value_and_grad(objective)(params)
    net_g = grads.network
    fb = tuple(jnp.zeros_like(b) for b in params.feedback)
    if params.rule == "kp":
        net_g = eqx.tree_at(lambda n: n.weights, net_g, tuple(g + kp_decay * w for g, w in zip(net_g.weights, params.network.weights)))
        fb = tuple(g + kp_decay * b for g, b in zip(grads.feedback, params.feedback))
    elif params.rule == "wm":
        fb = mirror_update(params.network, params.feedback, key, sigma=mirror_sigma, decay=mirror_decay, samples=mirror_samples)
        fb = tuple(-d for d in fb)  # a descent "gradient": the optimiser's step then follows the mirror rule
    out = type(params)(net_g, fb, params.key, params.rule)
    return out, value


def mirror_update(network: Network, feedback, key, *, sigma: float = 1.0, decay: float = 0.1, samples: int = 64, eta: float = 1.0) -> tuple[Array, ...]:
    r"""Weight-mirror step for every backward matrix: :math:`\eta\langle\xi (W_l\xi)^\top\rangle - \lambda B_l`, :math:`\xi \sim N(0,\sigma^2 I)`.

    Akrout et al. (2019): in mirror mode noise enters layer ``l-1``, layer ``l`` responds with ``W_l ξ`` and the
    backward synapse correlates the two (``samples`` noise vectors per step); the expectation is
    :math:`\eta\sigma^2 W_l^\top - \lambda B_l`, so repeated steps converge to :math:`(\eta\sigma^2/\lambda) W_l^\top`.
    """
    keys = jax.random.split(key, len(feedback))
    out = []
    for k, w, b in zip(keys, network.weights[1:], feedback):
        xi = sigma * jax.random.normal(k, (samples, w.shape[1]), w.dtype)
        resp = _matvec(w, xi)
        out.append(eta * jnp.einsum("si,so->io", xi, resp) / samples - decay * b)
    return tuple(out)


# ----------------------------------------------------------------------------- learners


def _make_learner(rule: str, description: str, *, activation: str = "tanh", loss: str = "mse", **rule_options) -> Learner:
    def update(params: FeedbackNetwork, x, y):
        grads, value = rule_update(params, x, y, loss=loss, **rule_options)
        return grads, {"loss": value / x.shape[0]}

    return Learner(
        name=rule,
        init=lambda key, sizes: init_feedback_network(sizes, key=key, rule=rule, activation=activation),
        update=update,
        predict=lambda params, x: params.network(x),
        description=description,
        defaults={"activation": activation, "loss": loss, **rule_options},
    )


@register_learner("fa")
def fa_learner(*, activation: str = "tanh", loss: str = "mse") -> Learner:
    """Feedback alignment: errors travel down through fixed random matrices."""
    return _make_learner("fa", "feedback alignment: fixed random backward matrices (Lillicrap et al. 2016)", activation=activation, loss=loss)


@register_learner("dfa")
def dfa_learner(*, activation: str = "tanh", loss: str = "mse") -> Learner:
    """Direct feedback alignment: the output error reaches every hidden layer through its own fixed random matrix."""
    return _make_learner("dfa", "direct feedback alignment: output error broadcast through fixed random matrices (Nøkland 2016)", activation=activation, loss=loss)


@register_learner("kp")
def kp_learner(*, activation: str = "tanh", loss: str = "mse", decay: float = 1e-3) -> Learner:
    """Kolen–Pollack: backward matrices get the transposed update of the forward weights; both decay."""
    return _make_learner("kp", "Kolen-Pollack: transposed updates plus weight decay align B with W^T", activation=activation, loss=loss, kp_decay=decay)


@register_learner("wm")
def wm_learner(*, activation: str = "tanh", loss: str = "mse", sigma: float = 1.0, decay: float = 0.1, samples: int = 64) -> Learner:
    """Weight mirror: FA for the forward weights, noise-correlation learning for the backward matrices."""
    return _make_learner(
        "wm", "weight mirror: B learns sigma^2 W^T from injected noise (Akrout et al. 2019)", activation=activation, loss=loss,
        mirror_sigma=sigma, mirror_decay=decay, mirror_samples=samples,
    )


@register_learner("usf")
def usf_learner(*, activation: str = "tanh", loss: str = "mse") -> Learner:
    """Uniform sign-concordant feedback: B = sign(W)ᵀ times one magnitude."""
    return _make_learner("usf", "sign symmetry, uniform magnitude: B = sign(W)^T (Liao et al. 2016)", activation=activation, loss=loss)


@register_learner("brsf")
def brsf_learner(*, activation: str = "tanh", loss: str = "mse") -> Learner:
    """Batchwise-random-magnitude sign-concordant feedback."""
    return _make_learner("brsf", "sign symmetry, magnitudes redrawn every batch", activation=activation, loss=loss)


@register_learner("frsf")
def frsf_learner(*, activation: str = "tanh", loss: str = "mse") -> Learner:
    """Fixed-random-magnitude sign-concordant feedback."""
    return _make_learner("frsf", "sign symmetry, fixed random magnitudes", activation=activation, loss=loss)
