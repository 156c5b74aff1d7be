r"""Top-down credit assignment (TDCA; after Chen, Liu & Wang, "Biologically plausible training of deep neural networks
using a top-down credit assignment network", arXiv 2208.01416).

A second, *top-down* network maps the bottom-up activity and the target to a credit for every bottom-up unit; the
bottom-up network learns from those credits alone (no loss gradient reaches a hidden layer), and the top-down
network's weights :math:`\phi` are trained in an outer loop. In dynlearn's reading the top-down network starts
from the output error and is gated by each bottom-up layer's activity:

.. math::  c_L = e = \frac{\partial L}{\partial a_L}(a_L, y), \qquad
           c_l = \varphi'(a_l) \odot D_l\, U_l\, s_l \quad (l = L-1, \dots, 1), \qquad
           \Delta\theta_l = \frac{\partial a_l}{\partial\theta_l}^{\!\top} c_l ,

with :math:`s_l = e` (``pathway="direct"``, the default: one map from the error straight to each layer) or
:math:`s_l = c_{l+1}` (``"layered"``: a top-down pathway layer by layer), the pre-activations :math:`a_l` of the
bottom-up pass, the trained top-down weights :math:`U_l` (:math:`r_l \times n_L` or :math:`r_l \times n_{l+1}`, the
paper's :math:`\phi`) and a fixed *credit diffusion* :math:`D_l` (:math:`n_l \times r_l`): the top-down network
computes :math:`r_l` credits for layer ``l`` and credit ``k`` diffuses to the units ``i`` with ``i mod r_l = k`` (a
fixed random sign per unit), which shrinks :math:`U_l` by the factor :math:`r_l / n_l` (``rank``; ``rank=None`` is no
diffusion, :math:`D_l = I`).
With :math:`D_l = I` and :math:`U_l = W_{l+1}^\top` the layered credits are backprop's deltas exactly (the direct
ones too for one hidden layer).

The outer loop is a one-step look-ahead on the same batch: :math:`\phi` descends
:math:`L_{\rm ahead}(\phi) = \sum_n L_n\big(\theta - \eta_{\rm in}\,\Delta\theta_n(\theta, \phi)\big)`, each sample's
loss after a step along its own update (``lookahead="sample"``; ``"batch"``: the batch loss after a step along the
batch-mean update), by autodiff through the look-ahead step (``inner_lr`` is :math:`\eta_{\rm in}`), so the top-down
network learns credits whose update lowers the loss. Both updates come back together in descent sign; any optax
optimiser applies them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from ..errors import ShapeError
from ..losses import get_loss
from ..models.base import Data
from ..networks import Network
from .base import LEARNERS, Learner, Rule
from .drtp import phi_prime
from .. import draws


class TopDown(eqx.Module):
    """The top-down network: trained ``U[l-1]`` (``r_l`` x ``n_{l+1}``) and fixed diffusion ``D[l-1]``
    (``n_l`` x ``r_l``), for the hidden layers ``l = 1..L-1``."""

    U: tuple[Array, ...]
    D: tuple[Array, ...]


class TDCANetwork(eqx.Module):
    """The trained PyTree of TDCA: the bottom-up ``network`` and the ``topdown`` network."""

    network: Network
    topdown: TopDown

    def __call__(self, x: Array) -> Array:
        return self.network(x)

    @property
    def sizes(self) -> tuple[int, ...]:
        return self.network.sizes


def diffusion(key, n: int, rank: int | None, dtype) -> Array:
    """:math:`D` (``n`` x ``r``): unit ``i`` receives credit ``i mod r`` with a fixed random sign; identity for
    ``rank`` None or ``>= n`` (no diffusion)."""
    if rank is None or rank >= n:
        return jnp.eye(n, dtype=dtype)
    signs = jax.random.rademacher(key, (n,), dtype)
    return jax.nn.one_hot(jnp.arange(n) % rank, rank, dtype=dtype) * signs[:, None]


def init_topdown(key, network: Network, rank: int | None = None, scale: float = 1.0, pathway: str = "direct") -> TopDown:
    """``U_l`` random N(0, scale²/n_src) with ``n_src`` = ``n_L`` (direct) or ``n_{l+1}`` (layered): the credits start
    as those of direct (or plain) feedback alignment through the rank-``r`` feedback :math:`D_l U_l`; ``D_l`` from
    :func:`diffusion`."""
    sizes = network.sizes
    dtype = network.weights[0].dtype
    k_d, k_u = jax.random.split(key)
    hidden = sizes[1:-1]
    ds = tuple(diffusion(k, n, rank, dtype) for k, n in zip(jax.random.split(k_d, max(len(hidden), 1)), hidden))
    src = [sizes[-1] if pathway == "direct" else sizes[l + 1] for l in range(1, len(sizes) - 1)]
    us = tuple((scale / math.sqrt(n)) * draws.normal(k, (d.shape[1], n), dtype)
               for n, k, d in zip(src, jax.random.split(k_u, max(len(ds), 1)), ds))
    return TopDown(us, ds)


def exact_topdown(network: Network) -> TopDown:
    """The top-down network that gives backprop's deltas: :math:`U_l = W_{l+1}^\\top`, :math:`D_l = I`."""
    ws = network.weights
    return TopDown(tuple(w.T for w in ws[1:]), tuple(jnp.eye(w.shape[1], dtype=w.dtype) for w in ws[1:]))


def credits(net: Network, topdown: TopDown, acts, e: Array, pathway: str = "direct") -> list[Array]:
    r"""``[c_1, ..., c_L]``: :math:`c_L = e`; ``"layered"``: :math:`c_l = \varphi'(a_l) \odot (c_{l+1} U_l^\top D_l^\top)`,
    ``"direct"``: :math:`c_l = \varphi'(a_l) \odot (e\, U_l^\top D_l^\top)` (``U_l`` is then ``r_l`` x ``n_L``)."""
    out = [e]
    for l in range(net.depth - 1, 0, -1):
        u, d = topdown.U[l - 1], topdown.D[l - 1]
        src = out[-1] if pathway == "layered" else e
        out.append(phi_prime(net, acts[l]) * ((src @ u.T) @ d.T))
    return out[::-1]


class TopDownCredit(Rule):
    """TDCA (module docstring): ``loss`` summed over the batch, look-ahead rate ``inner_lr``, ``pathway``
    ``"direct"`` or ``"layered"`` (:func:`credits`), ``lookahead`` ``"sample"`` (each sample's loss after its own
    update, summed) or ``"batch"`` (the batch loss after the batch update)."""

    loss: Callable = eqx.field(static=True)
    inner_lr: float = eqx.field(static=True, default=0.1)
    pathway: str = eqx.field(static=True, default="direct")
    lookahead: str = eqx.field(static=True, default="sample")

    def credits(self, net: Network, topdown: TopDown, acts, e: Array) -> list[Array]:
        """The credits of every layer (:func:`credits` with this rule's ``pathway``)."""
        return credits(net, topdown, acts, e, self.pathway)

    def credit_update(self, net: Network, topdown: TopDown, x: Array, y: Array) -> tuple[Network, Array]:
        r"""``(Δθ, L)``: the bottom-up update (descent sign) from the top-down credits, :math:`\Delta W_l = c_l^\top
        \varphi_{l-1}(a_{l-1})`, :math:`\Delta b_l = \sum c_l`, and the loss. The credits stay differentiable in
        ``topdown`` (for the outer loop); the bottom-up activity is held fixed."""
        acts = [jax.lax.stop_gradient(a) for a in net.forward(x)]
        value, e = jax.value_and_grad(self.loss)(acts[-1], y)
        cs = self.credits(net, topdown, acts, e)
        pre = [net.presynaptic(l, a) for l, a in enumerate(acts[:-1], start=1)]
        ws = [c.T @ h for c, h in zip(cs, pre)]
        bs = [None if b is None else jnp.sum(c, axis=0) for c, b in zip(cs, net.biases)]
        return net.with_matrices(ws, bs), value

    def lookahead_loss(self, net: Network, topdown: TopDown, x: Array, y: Array) -> Array:
        r""":math:`L_{\rm ahead}`: with ``"batch"``, :math:`L(\theta - \tfrac{\eta_{\rm in}}{N}\Delta\theta(\theta, \phi))` on
        ``(x, y)`` (``N`` samples, the update summed over them); with ``"sample"``,
        :math:`\sum_n L_n(\theta - \eta_{\rm in}\Delta\theta_n)`, each sample after its own update. A sample's own
        update is rank one, :math:`\Delta W_l = c_l^\top h_{l-1}`, so its moved pass is
        :math:`a'_l = W_l h'_{l-1} + b_l - \eta_{\rm in}\, c_l\,(h_{l-1}\cdot h'_{l-1} + 1)` (the ``+1`` from the bias),
        computed for the whole batch without per-sample weights."""
        net = jax.lax.stop_gradient(net)
        if self.lookahead == "batch":
            upd, _ = self.credit_update(net, topdown, x, y)
            moved = jax.tree.map(lambda p, u: p - (self.inner_lr / x.shape[0]) * u, net, upd)
            return self.loss(moved(x), y)
        acts = [jax.lax.stop_gradient(a) for a in net.forward(x)]
        cs = self.credits(net, topdown, acts, jax.grad(self.loss)(acts[-1], y))
        a = x
        for l, (c, b) in enumerate(zip(cs, net.biases), start=1):
            h, h_moved = net.presynaptic(l, acts[l - 1]), net.presynaptic(l, a)
            overlap = jnp.sum(h * h_moved, axis=-1, keepdims=True) + (0.0 if b is None else 1.0)
            a = net.apply(l, h_moved) - self.inner_lr * c * overlap
        return self.loss(a, y)

    def update(self, params: TDCANetwork, rule_state, batch: Data, key):
        if not params.network.is_mlp:
            raise ShapeError("TDCA is implemented for MLPs (Linear layers) only")
        net, topdown = params.network, params.topdown
        upd, value = self.credit_update(net, jax.lax.stop_gradient(topdown), batch.x, batch.y)
        ahead, g_u = jax.value_and_grad(lambda us: self.lookahead_loss(net, TopDown(us, topdown.D), batch.x, batch.y))(topdown.U)
        grads = TDCANetwork(upd, TopDown(g_u, jax.tree.map(jnp.zeros_like, topdown.D)))
        n = batch.x.shape[0]
        return grads, rule_state, {"loss": value / n, "lookahead_loss": ahead / n}


def _predict(params: TDCANetwork, x: Array) -> Array:
    return params.network(x)


PATHWAYS = ("direct", "layered")
LOOKAHEADS = ("sample", "batch")


@LEARNERS.register("tdca")
def tdca_learner(*, activation="tanh", loss: str = "ce", rank: int | None = None, inner_lr: float = 0.1, scale: float = 1.0,
                 pathway: str = "direct", lookahead: str = "sample") -> Learner:
    """TDCA: a top-down network maps activity and target to each layer's credit; it is trained by a look-ahead."""
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
        raise ValueError(f"rank must be None or an integer >= 1, got {rank!r}")
    if isinstance(inner_lr, bool) or not (isinstance(inner_lr, (int, float)) and math.isfinite(inner_lr) and inner_lr > 0):
        raise ValueError(f"inner_lr must be a finite number > 0, got {inner_lr!r}")
    if pathway not in PATHWAYS:
        raise ValueError(f"pathway must be one of {PATHWAYS}, got {pathway!r}")
    if lookahead not in LOOKAHEADS:
        raise ValueError(f"lookahead must be one of {LOOKAHEADS}, got {lookahead!r}")

    def init(key, network: Network) -> TDCANetwork:
        if not network.is_mlp:
            raise ShapeError("TDCA is implemented for MLPs (Linear layers) only")
        return TDCANetwork(network, init_topdown(key, network, rank, scale, pathway))

    return Learner(
        name="tdca",
        rule=TopDownCredit(get_loss(loss), float(inner_lr), pathway, lookahead),
        init=init,
        predict=_predict,
        description="top-down credit assignment: a top-down network, trained by a one-step look-ahead, gives every layer its credit (Chen, Liu & Wang 2022)",
        defaults={"activation": activation, "loss": loss, "rank": rank, "inner_lr": inner_lr, "scale": scale, "pathway": pathway,
                  "lookahead": lookahead, "lr": 1e-3},
    )
