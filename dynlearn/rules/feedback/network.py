r"""The parameters of the feedback-alignment family: a :class:`dynlearn.Network` plus its feedback layers.

A feedback layer stands in for a forward layer in the backward pass (:func:`.mechanism.feedback_call`). It is a
copy of that forward layer — same module, same structure — with its weight arrays replaced (random for FA, the
magnitudes :math:`M` for sign symmetry, ...) and its biases zero (a bias plays no part in the backward pass). For a
:class:`equinox.nn.Linear` layer :math:`f_W(h) = W h + b` the feedback layer holds ``B`` shaped like ``W`` and the
error travels down as :math:`B^\top\delta` (backprop: :math:`W^\top\delta`); for a convolution ``B`` is a kernel and
the error travels down through the transposed convolution with ``B``; a composite layer (pooling, flattening, a
weight layer) keeps its pooling and flattening. Which layers have a feedback layer, and what it holds, is the rule's
business (:class:`.rule.FeedbackRule`); this module holds the container and the weight-array plumbing.

Weight arrays are the array leaves reached through a ``weight`` attribute (``Linear.weight``, ``Conv2d.weight``);
every other array leaf (biases) is left alone, or zeroed in a feedback copy.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from ...errors import ShapeError
from ...networks import Network, apply_per_sample, init_network, linear_layer, matvec
from ... import draws


class FeedbackNetwork(eqx.Module):
    """The trained PyTree of every feedback rule: the forward ``network`` and one feedback layer per backward path.

    Attributes:
        network: the feedforward :class:`dynlearn.Network` (what predicts).
        feedback: the feedback layers; for the layered rules ``feedback[k]`` stands in for forward layer
            ``l = k + 2`` (layers ``2..L``; layer 1 sends no error down), for DFA ``feedback[k]`` is the direct map of
            hidden layer ``l = k + 1`` (see the rule's docstring).
    """

    network: Network
    feedback: tuple

    def __call__(self, x: Array) -> Array:
        return self.network(x)

    @property
    def sizes(self) -> tuple[int, ...]:
        return self.network.sizes


@dataclasses.dataclass(frozen=True)
class LayerApply:
    """``apply(layer, h)`` for :func:`.mechanism.feedback_call`: one layer over the leading batch axes of ``h``.

    It holds only the rank of one sample (static and hashable), so that the custom VJP closes over no array.
    """

    sample_ndim: int

    def __call__(self, layer, h: Array) -> Array:
        if isinstance(layer, eqx.nn.Linear):  # one einsum for any batch shape, as Network.apply
            out = matvec(layer.weight, h)
            return out if layer.bias is None else out + layer.bias
        return apply_per_sample(layer, h, self.sample_ndim)


def layer_apply(network: Network, l: int) -> LayerApply:
    """The :class:`LayerApply` of layer ``l`` (1-based) of ``network``."""
    return LayerApply(len(network.shapes[l - 1]))


#: ``apply`` of a layer acting on flat vectors (DFA's direct maps)
VECTOR_APPLY = LayerApply(1)


# ----------------------------------------------------------------------------- weight arrays


def _is_weight(path, a) -> bool:
    return eqx.is_inexact_array(a) and bool(path) and getattr(path[-1], "name", None) == "weight"


def weight_arrays(layer) -> list[Array]:
    """The weight arrays of ``layer`` (array leaves under a ``weight`` attribute), in tree order."""
    return [a for path, a in jax.tree_util.tree_flatten_with_path(layer)[0] if _is_weight(path, a)]


def map_weights(fn: Callable, tree, *others, rest: Callable | None = None):
    """``fn(w, *o)`` on every weight array of ``tree``, ``rest(a, *o)`` (default: unchanged) on its other leaves.

    ``others`` have the structure of ``tree``; ``None`` leaves of ``tree`` (filtered gradients) stay ``None``.
    """

    def f(path, a, *o):
        if a is None:
            return None
        if _is_weight(path, a):
            return fn(a, *o)
        return a if rest is None else rest(a, *o)

    return jax.tree_util.tree_map_with_path(f, tree, *others, is_leaf=lambda v: v is None)


def _zero_if_array(a, *_):
    return jnp.zeros_like(a) if eqx.is_inexact_array(a) else a


def replace_weights(layer, weights: Sequence[Array]):
    """A copy of ``layer`` holding ``weights`` (in :func:`weight_arrays` order) and zero biases: a feedback layer.

    A :class:`equinox.nn.Linear` becomes a bias-free Linear layer holding the single matrix.
    """
    weights = list(weights)
    if isinstance(layer, eqx.nn.Linear):
        (w,) = weights
        return linear_layer(w, None)
    if len(weights) != len(weight_arrays(layer)):
        raise ShapeError(f"{type(layer).__name__} has {len(weight_arrays(layer))} weight arrays, got {len(weights)}")
    it = iter(weights)
    return map_weights(lambda w: next(it), layer, rest=_zero_if_array)


def stop_gradient(tree):
    """:func:`jax.lax.stop_gradient` on every array leaf of ``tree`` (modules may hold functions)."""
    return jax.tree.map(lambda a: jax.lax.stop_gradient(a) if eqx.is_array(a) else a, tree)


def zeros_update(tree):
    """A zero update with the structure of ``eqx.filter(tree, eqx.is_inexact_array)`` (a fixed feedback layer)."""
    return jax.tree.map(jnp.zeros_like, eqx.filter(tree, eqx.is_inexact_array))


# ----------------------------------------------------------------------------- random draws


def fan_std(shape: Sequence[int]) -> float:
    """Glorot's standard deviation :math:`\\sqrt{2/(\\text{fan}_\\text{in} + \\text{fan}_\\text{out})}` of a weight of
    shape ``(out, in, *kernel)`` (``sqrt(2/(n_in + n_out))`` for a matrix)."""
    receptive = math.prod(shape[2:])
    return math.sqrt(2.0 / ((shape[0] + shape[1]) * receptive))


def transposed_normal(key: PRNGKeyArray, shape: Sequence[int], dtype) -> Array:
    """N(0, 1) of ``shape``, drawn in the reversed shape and transposed.

    The feedback matrices used to be stored as ``(n_in, n_out)`` (the shape of ``Wᵀ``); drawing them that way and
    transposing keeps every random number of the old layout, so the theorem checks measure the same figures.
    """
    return draws.normal(key, tuple(shape)[::-1], dtype).T


def random_layer(key: PRNGKeyArray, layer, *, scale: float = 1.0):
    """A feedback copy of ``layer`` whose weights are ``scale · fan_std · N(0, 1)`` (independent of the forward ones)."""
    ws = weight_arrays(layer)
    keys = [key] if len(ws) == 1 else list(jax.random.split(key, len(ws)))
    return replace_weights(layer, [(scale * fan_std(w.shape)) * transposed_normal(k, w.shape, w.dtype) for k, w in zip(keys, ws)])


def random_feedback(key: PRNGKeyArray, network: Network, *, scale: float = 1.0) -> tuple:
    """One random feedback layer for each forward layer ``2..L`` (one key each, split from ``key``)."""
    keys = jax.random.split(key, max(network.depth - 1, 1))
    return tuple(random_layer(k, layer, scale=scale) for k, layer in zip(keys, network.layers[1:]))


def init_feedback_network(sizes, *, key: PRNGKeyArray, rule="fa", activation="tanh", scale: float = 1.0, dtype=jnp.float32) -> FeedbackNetwork:
    """An MLP of widths ``sizes`` (Xavier) with the feedback layers of ``rule`` (a :class:`.rule.FeedbackRule` or a
    learner name), drawn as the feedback module always drew them: ``k_net, k_fb, _ = split(key, 3)``.

    The theorem checks use it so that their networks and feedback matrices are the ones of the earlier releases;
    a learner's ``init(key, network)`` draws the feedback of a given network from ``key`` instead.
    """
    if isinstance(rule, str):
        from ..base import get_learner

        rule = get_learner(rule).rule
    k_net, k_fb, _ = jax.random.split(key, 3)
    net = init_network(sizes, key=k_net, activation=activation, dtype=dtype)
    return FeedbackNetwork(net, rule.init_feedback(k_fb, net, scale=scale))
