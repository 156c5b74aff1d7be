r"""The NTK-regime local rule (after Boopathy & Fiete, "How to train your wide neural network without backprop: an
input-weight alignment perspective", ICML 2022).

In the NTK parametrisation an MLP computes

.. math::  a_l = \frac{1}{\sqrt{n_{l-1}}} W_l\, h_{l-1} + b_l, \qquad h_l = \varphi(a_l), \qquad h_0 = x,

with :math:`W_l` of order one entry-wise (``raw`` weights). Trained by gradient descent at a width-independent
learning rate the weights move by :math:`O(1/\sqrt{n})` relative to their initial value (lazy training), so the
layerwise update backprop computes, :math:`\partial L/\partial W_l = \delta_l h_{l-1}^\top/\sqrt{n_{l-1}}`, is the
*input* :math:`h_{l-1}` weighted by an error :math:`\delta_l` that reaches layer ``l`` through the **initial**
pathway up to :math:`O(1/\sqrt{n})`. The rule sends the error down through a frozen copy of that pathway, a fixed
set of synapses :math:`B_{l+1} = W_{l+1}(0)` stored once (no weight transport while learning):

.. math::  \delta_L = \frac{\partial L}{\partial a_L}, \qquad
           \delta_l = \varphi'(a_l) \odot \frac{1}{\sqrt{n_l}} B_{l+1}^\top \delta_{l+1}, \qquad
           \Delta W_l \propto -\frac{1}{\sqrt{n_{l-1}}}\,\delta_l\, h_{l-1}^\top ,

so every update is an error-weighted input correlation with fixed feedback, equal to backprop's at initialisation
and within :math:`1 - \cos = O(1/n)` of it in the lazy regime (``theory/ntk_rule.md``). Under the standard
parametrisation (:math:`a_l = W_l h_{l-1} + b_l`) at a learning rate tuned at a base width, the weights of a wider
network move by more, and the rule drifts away from backprop: the must-fail twin of the width check.

The learner's parameters are an :class:`NTKNetwork` (the raw weights of a :class:`dynlearn.Network`, rescaled so the
function at initialisation is that network's); the frozen pathway is the rule's state, drawn from the parameters in
:meth:`NTKRule.init`.
"""

from __future__ import annotations

import itertools
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

PARAMETRISATIONS = ("ntk", "standard")


def mlp_structure(sizes, dtype=jnp.float64):
    """The tree structure of an MLP of widths ``sizes`` (weights and biases per layer), found by :func:`jax.eval_shape`:
    tracing only, so no random draw is compiled for a new shape (building a Linear layer eagerly draws its
    initialisation, which compiles once per shape)."""
    from ..networks import init_network

    return jax.tree.structure(jax.eval_shape(lambda: init_network(tuple(sizes), key=jax.random.key(0), dtype=dtype)))


class NTKNetwork(eqx.Module):
    """An MLP in the NTK (``"ntk"``) or standard (``"standard"``) parametrisation.

    Attributes:
        network: a :class:`dynlearn.Network` holding the raw weights :math:`W_l` and biases :math:`b_l`.
        parametrisation: ``"ntk"`` (:math:`a_l = W_l h_{l-1}/\\sqrt{n_{l-1}} + b_l`) or ``"standard"`` (no factor).
    """

    network: Network
    parametrisation: str = eqx.field(static=True, default="ntk")

    def scale(self, l: int) -> float:
        """The factor of layer ``l`` (1-based): :math:`1/\\sqrt{n_{l-1}}` (NTK) or 1 (standard)."""
        return 1.0 / math.sqrt(self.network.sizes[l - 1]) if self.parametrisation == "ntk" else 1.0

    @property
    def sizes(self) -> tuple[int, ...]:
        return self.network.sizes

    def forward(self, x: Array) -> tuple[list[Array], list[Array]]:
        """``(pre-activations [a_1..a_L], inputs of each layer [h_0..h_{L-1}])``."""
        h, acts, ins = x, [], []
        for l, (w, b) in enumerate(zip(self.network.weights, self.network.biases), start=1):
            ins.append(h)
            a = self.scale(l) * jnp.einsum("oi,...i->...o", w, h) + b
            acts.append(a)
            h = self.network.phi(a)
        return acts, ins

    def __call__(self, x: Array) -> Array:
        return self.forward(x)[0][-1]


def ntk_network(network: Network, parametrisation: str = "ntk") -> NTKNetwork:
    """The MLP of ``network``'s shapes whose raw weights are ``network``'s standardised to unit variance,
    :math:`W_l / \\sqrt{2/(n_{l-1} + n_l)}` (Xavier draws become N(0, 1)): in the NTK parametrisation as the module
    docstring says; under ``"standard"`` the raw weights are divided by :math:`\\sqrt{n_{l-1}}` once (LeCun scale),
    so both parametrisations compute the same function at initialisation and differ only in how gradients scale."""
    if not network.is_mlp:
        raise ShapeError("the NTK rule is defined for MLPs (Linear layers) only")
    if parametrisation not in PARAMETRISATIONS:
        raise ValueError(f"parametrisation must be one of {PARAMETRISATIONS}, got {parametrisation!r}")
    sizes = network.sizes
    factor = [math.sqrt((n_in + n_out) / 2.0) / (1.0 if parametrisation == "ntk" else math.sqrt(n_in)) for n_in, n_out in itertools.pairwise(sizes)]
    raw = network.with_matrices(tuple(f * w for f, w in zip(factor, network.weights)), network.biases)
    return NTKNetwork(raw, parametrisation)


class NTKRule(Rule):
    """The NTK-regime local rule (module docstring); ``loss`` is summed over the batch."""

    loss: Callable = eqx.field(static=True)

    def init(self, key, params: NTKNetwork) -> tuple[Array, ...]:
        """The frozen pathway :math:`B_l = W_l(0)` for ``l = 2..L`` (copied from the parameters at the start)."""
        return tuple(jnp.array(w) for w in params.network.weights[1:])

    def deltas(self, params: NTKNetwork, frozen: tuple[Array, ...], x: Array, y: Array) -> tuple[list[Array], list[Array], Array]:
        """``(deltas [δ_1..δ_L], layer inputs [h_0..h_{L-1}], output)`` with the error sent down through ``frozen``."""
        acts, ins = params.forward(x)
        out = acts[-1]
        d = jax.grad(lambda o: self.loss(o, y))(out)
        deltas = [d]
        for l in range(params.network.depth - 1, 0, -1):  # hidden layer l receives from layer l + 1
            d = jax.jvp(params.network.phi, (acts[l - 1],), (jnp.ones_like(acts[l - 1]),))[1] * (params.scale(l + 1) * d @ frozen[l - 1])
            deltas.append(d)
        return deltas[::-1], ins, out

    def update(self, params: NTKNetwork, rule_state, batch: Data, key):
        deltas, ins, out = self.deltas(params, rule_state, batch.x, batch.y)
        ws = tuple(params.scale(l) * jnp.einsum("...o,...i->oi", d, h) for l, (d, h) in enumerate(zip(deltas, ins), start=1))
        bs = tuple(jnp.sum(d.reshape(-1, d.shape[-1]), axis=0) for d in deltas)
        grads = NTKNetwork(params.network.with_matrices(ws, bs), params.parametrisation)
        return grads, rule_state, {"loss": self.loss(out, batch.y) / batch.x.shape[0]}


def _predict(params: NTKNetwork, x: Array) -> Array:
    return params(x)


@LEARNERS.register("ntk_rule")
def ntk_rule_learner(*, activation="tanh", loss: str = "mse", parametrisation: str = "ntk") -> Learner:
    """NTK-regime local rule: errors reach each layer through the frozen initial pathway; equals BP at infinite width."""
    if parametrisation not in PARAMETRISATIONS:
        raise ValueError(f"parametrisation must be one of {PARAMETRISATIONS}, got {parametrisation!r}")

    def init(key, network: Network) -> NTKNetwork:
        return ntk_network(network, parametrisation)

    return Learner(
        name="ntk_rule",
        rule=NTKRule(get_loss(loss)),
        init=init,
        predict=_predict,
        description="NTK-regime local rule: error-weighted input correlations through the frozen initial pathway (Boopathy & Fiete 2022)",
        defaults={"activation": activation, "loss": loss, "parametrisation": parametrisation, "lr": 3e-2},
    )
