r"""Layered networks as equinox PyTrees: a sequence of equinox layers with an activation between them.

A :class:`Network` holds layers :math:`f_1..f_L` — :class:`equinox.nn.Linear`, :class:`equinox.nn.Conv2d`, an
:class:`equinox.nn.Sequential` of pooling, reshaping and a weight layer, or any callable module — and an activation
:math:`\varphi` (a name from :data:`ACTIVATIONS` or any callable). The feedforward pass is

.. math::  \hat x_0 = x, \qquad \hat x_l = f_l(\varphi_{l-1}(\hat x_{l-1})),

with :math:`\varphi_0 = \mathrm{id}` (inputs enter the first layer as they are) and :math:`\varphi_l = \varphi` for
hidden layers; the output :math:`\hat x_L` is linear. This is the "activation before the weight" convention of
Whittington & Bogacz (2017), so the same PyTree is the prediction network of predictive coding and the network that
backprop and the feedback-alignment family train. For an MLP, :math:`f_l(h) = W_l h + b_l` with ``W_l`` of shape
``(n_l, n_{l-1})`` (:attr:`Network.weights`, :attr:`Network.biases`).

Layers act on one sample; :meth:`Network.apply` maps them over any leading batch axes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .errors import ConfigError, NonFiniteError, ShapeError, UnknownNameError
from . import draws


def _hard_sigmoid(x):
    return jnp.clip(x, 0.0, 1.0)


def _sacramento_softplus(x):
    """Soft-plus rate of Sacramento et al. (2018, NeurIPS) for regression: 0.1 log(1 + exp(x - 3))."""
    return 0.1 * jax.nn.softplus(x - 3.0)


def _linear(x):
    return x


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "logistic": jax.nn.sigmoid,
    "relu": jax.nn.relu,
    "softplus": jax.nn.softplus,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "hard_sigmoid": _hard_sigmoid,
    "sacramento_softplus": _sacramento_softplus,
    "linear": _linear,
}


def activation(name: str | Callable[[Array], Array]) -> Callable[[Array], Array]:
    """The activation called ``name`` (one of :data:`ACTIVATIONS`), or ``name`` itself when it is a callable."""
    if callable(name):
        return name
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise UnknownNameError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)} or pass a callable") from None


def activation_name(act: str | Callable) -> str:
    """A printable name of an activation (its registered name, or the callable's ``__name__``)."""
    if isinstance(act, str):
        return act
    for k, v in ACTIVATIONS.items():
        if v is act:
            return k
    return getattr(act, "__name__", repr(act))


def matvec(w: Array, x: Array) -> Array:
    """``W x`` for a single vector or a batch of row vectors (``x`` of shape (..., n_in))."""
    return jnp.einsum("oi,...i->...o", w, x)


def apply_per_sample(fn: Callable[[Array], Array], x: Array, sample_ndim: int) -> Array:
    """``fn`` (which takes one sample of rank ``sample_ndim``) mapped over every leading axis of ``x``."""
    lead = x.shape[: x.ndim - sample_ndim]
    if not lead:
        return fn(x)
    out = jax.vmap(fn)(x.reshape((-1,) + x.shape[x.ndim - sample_ndim :]))
    return out.reshape(lead + out.shape[1:])


@functools.lru_cache(maxsize=None)
def _linear_structure(in_f: int, out_f: int, use_bias: bool):
    """The PyTree structure of a Linear layer, from an abstract evaluation (no random draw is compiled or run)."""
    return jax.tree.structure(jax.eval_shape(lambda: eqx.nn.Linear(in_f, out_f, use_bias=use_bias, key=jax.random.key(0))))


def linear_layer(w: Array, b: Array | None) -> eqx.nn.Linear:
    """An :class:`equinox.nn.Linear` holding ``w`` (``(out, in)``) and ``b`` (``(out,)`` or ``None``), built without
    drawing (and discarding) a random initialisation."""
    out_f, in_f = w.shape
    return jax.tree.unflatten(_linear_structure(in_f, out_f, b is not None), [w] if b is None else [w, b])


def _shapes(layers, in_shape, dtype) -> tuple[tuple[int, ...], ...]:
    shapes = [tuple(in_shape)]
    for l, layer in enumerate(layers, start=1):
        try:
            out = jax.eval_shape(layer, jax.ShapeDtypeStruct(shapes[-1], dtype))
        except Exception as e:  # noqa: BLE001 - any failure of a user layer on the previous shape
            raise ShapeError(f"layer {l} ({type(layer).__name__}) cannot take an input of shape {shapes[-1]}: {e}") from None
        shapes.append(tuple(out.shape))
    return tuple(shapes)


class Network(eqx.Module):
    """A sequence of equinox layers with an activation between them.

    Attributes:
        layers: ``f_1..f_L``, each a callable equinox module on one sample.
        activation: :math:`\\varphi`, a name from :data:`ACTIVATIONS` or a callable (static).
        shapes: per-sample state shapes ``(x_0, x_1, ..., x_L)`` (static; inferred from the layers).
    """

    layers: tuple[eqx.Module, ...]
    activation: str | Callable = eqx.field(static=True)
    shapes: tuple[tuple[int, ...], ...] = eqx.field(static=True)

    def __init__(self, layers: Sequence[eqx.Module], activation: str | Callable = "tanh", in_shape: Sequence[int] | None = None, shapes=None):
        layers = tuple(layers)
        if not layers:
            raise ShapeError("a Network needs at least one layer")
        globals()["activation"](activation)
        self.layers = layers
        self.activation = activation
        if shapes is None:
            if in_shape is None:
                first = layers[0]
                if not isinstance(first, eqx.nn.Linear):
                    raise ShapeError("give in_shape= (the shape of one input sample) for a network that does not start with a Linear layer")
                in_shape = (first.in_features,)
            dtype = next((a.dtype for a in jax.tree.leaves(layers) if eqx.is_inexact_array(a)), jnp.float32)
            shapes = _shapes(layers, in_shape, dtype)
        self.shapes = tuple(tuple(s) for s in shapes)

    @classmethod
    def from_matrices(cls, weights: Sequence[Array], biases: Sequence[Array | None], activation: str | Callable = "tanh") -> Network:
        """An MLP from weight matrices ``W_l`` (``(n_l, n_{l-1})``) and bias vectors ``b_l``."""
        weights, biases = tuple(weights), tuple(biases)
        if len(weights) != len(biases) or not weights:
            raise ShapeError("a Network needs as many bias vectors as weight matrices, and at least one")
        for l, (w, b) in enumerate(zip(weights, biases), start=1):
            if w.ndim != 2 or (b is not None and b.shape != (w.shape[0],)):
                raise ShapeError(f"layer {l}: W has shape {w.shape} and b {None if b is None else b.shape}; need (out, in) and (out,)")
            if l > 1 and w.shape[1] != weights[l - 2].shape[0]:
                raise ShapeError(f"layer {l}: W takes {w.shape[1]} inputs but layer {l - 1} has {weights[l - 2].shape[0]} units")
        shapes = ((weights[0].shape[1],),) + tuple((w.shape[0],) for w in weights)
        return cls(tuple(linear_layer(w, b) for w, b in zip(weights, biases)), activation, shapes=shapes)

    def with_matrices(self, weights: Sequence[Array], biases: Sequence[Array | None]) -> Network:
        """The same MLP with new weights and biases (same shapes)."""
        return Network.from_matrices(weights, biases, self.activation)

    # -- structure ------------------------------------------------------------------------------

    @property
    def is_mlp(self) -> bool:
        return all(isinstance(layer, eqx.nn.Linear) for layer in self.layers)

    def _require_mlp(self, what: str) -> None:
        if not self.is_mlp:
            raise ShapeError(f"{what} is defined for a network of Linear layers only; this one has {[type(l).__name__ for l in self.layers]}")

    @property
    def weights(self) -> tuple[Float[Array, "out in"], ...]:
        """``W_1..W_L`` of an MLP."""
        self._require_mlp("Network.weights")
        return tuple(layer.weight for layer in self.layers)

    @property
    def biases(self) -> tuple[Float[Array, " out"], ...]:
        """``b_1..b_L`` of an MLP."""
        self._require_mlp("Network.biases")
        return tuple(layer.bias for layer in self.layers)

    @property
    def sizes(self) -> tuple[int, ...]:
        """Number of units per layer ``(n_0, n_1, ..., n_L)`` (products of the state shapes)."""
        return tuple(math.prod(s) for s in self.shapes)

    @property
    def depth(self) -> int:
        """Number of layers ``L``."""
        return len(self.layers)

    @property
    def activation_name(self) -> str:
        return activation_name(self.activation)

    # -- the pass -------------------------------------------------------------------------------

    def phi(self, x: Array) -> Array:
        """The hidden activation :math:`\\varphi`."""
        return activation(self.activation)(x)

    def presynaptic(self, l: int, x_prev: Array) -> Array:
        """:math:`\\varphi_{l-1}(x_{l-1})`: the rate that layer ``l`` receives (identity for ``l = 1``)."""
        return x_prev if l == 1 else self.phi(x_prev)

    def apply(self, l: int, h: Array, layer: eqx.Module | None = None) -> Array:
        """Layer ``l`` (1-based; or ``layer`` in its place) on ``h``, mapped over any leading batch axes."""
        layer = self.layers[l - 1] if layer is None else layer
        if isinstance(layer, eqx.nn.Linear):  # one einsum for any batch shape
            out = matvec(layer.weight, h)
            return out if layer.bias is None else out + layer.bias
        return apply_per_sample(layer, h, len(self.shapes[l - 1]))

    def predict_layer(self, l: int, x_prev: Array) -> Array:
        """Prediction of layer ``l`` (1-based) from the state of layer ``l-1``: :math:`f_l(\\varphi_{l-1}(x_{l-1}))`."""
        return self.apply(l, self.presynaptic(l, x_prev))

    def forward(self, x: Array) -> list[Array]:
        """Feedforward pass: the list ``[x̂_0, x̂_1, ..., x̂_L]``."""
        states = [x]
        for l in range(1, self.depth + 1):
            states.append(self.predict_layer(l, states[-1]))
        return states

    def __call__(self, x: Array) -> Array:
        return self.forward(x)[-1]

    def validate_inputs(self, x, y=None) -> None:
        """Raise :class:`ShapeError` / :class:`NonFiniteError` for inputs or targets that do not fit.

        NaN checks work on concrete arrays only (call it before entering ``jit``); traced values are skipped.
        """
        in_shape, out_shape = self.shapes[0], self.shapes[-1]
        if getattr(x, "ndim", None) is None:
            raise ShapeError(f"inputs must be an array of shape (batch, {', '.join(map(str, in_shape))}), got {type(x).__name__}")
        if tuple(x.shape[x.ndim - len(in_shape) :]) != in_shape or x.ndim < len(in_shape):
            if len(in_shape) == 1 and x.ndim >= 1:
                raise ShapeError(f"inputs have {x.shape[-1]} features (shape {x.shape}) but the network takes {in_shape[0]}")
            raise ShapeError(f"inputs have shape {x.shape} but the network takes samples of shape {in_shape}")
        if y is not None:
            if tuple(y.shape[y.ndim - len(out_shape) :]) != out_shape or y.ndim < len(out_shape):
                raise ShapeError(f"targets have {y.shape[-1]} units (shape {y.shape}) but the network outputs {out_shape}")
            if y.shape[: y.ndim - len(out_shape)] != x.shape[: x.ndim - len(in_shape)]:
                raise ShapeError(f"{x.shape[: x.ndim - len(in_shape)]} input samples but {y.shape[: y.ndim - len(out_shape)]} targets")
        for name, a in (("inputs", x), ("targets", y)):
            if a is None or isinstance(a, jax.core.Tracer):
                continue
            if not bool(np.all(np.isfinite(np.asarray(a)))):
                raise NonFiniteError(f"{name} contain NaN or inf")


_SCHEMES = ("xavier", "lecun", "uniform", "orthogonal", "fan_in_uniform")


def init_network(
    sizes: Sequence[int],
    *,
    key: PRNGKeyArray,
    activation: str | Callable = "tanh",
    scheme: str = "xavier",
    gain: float = 1.0,
    bias_scale: float = 0.0,
    dtype=jnp.float32,
) -> Network:
    """An MLP with layer widths ``sizes = (n_0, ..., n_L)``.

    Schemes: ``"xavier"`` (normal, variance ``2 gain²/(n_in + n_out)``), ``"lecun"`` (variance
    ``gain²/n_in``), ``"uniform"`` (U(−gain, gain), the microcircuit papers' choice) and
    ``"orthogonal"`` (scaled orthogonal), and ``"fan_in_uniform"``: weights *and* biases U(−g/√n_in, g/√n_in), the
    default dense layer of equinox and PyTorch (``bias_scale`` is then unused). Other schemes' biases are
    N(0, bias_scale²).
    """
    try:
        given = tuple(sizes)
    except TypeError:
        raise ShapeError(f"sizes must be a sequence of positive integers, got {sizes!r}") from None
    if not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in given):
        raise ShapeError(f"sizes must be a sequence of positive integers, got {sizes!r}")
    sizes = tuple(int(s) for s in given)
    if len(sizes) < 2 or any(s <= 0 for s in sizes):
        raise ShapeError(f"sizes must list at least two positive layer widths, got {sizes}")
    if scheme not in _SCHEMES:
        raise UnknownNameError(f"unknown init scheme {scheme!r}; choose one of {', '.join(_SCHEMES)}")
    for name, v in (("gain", gain), ("bias_scale", bias_scale)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ConfigError(f"init_network: {name} must be a finite number >= 0, got {v!r}")
    keys = jax.random.split(key, 2 * (len(sizes) - 1))
    weights, biases = [], []
    for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        kw, kb = keys[2 * l], keys[2 * l + 1]
        shape = (n_out, n_in)
        if scheme == "xavier":
            w = gain * jnp.sqrt(2.0 / (n_in + n_out)) * draws.normal(kw, shape, dtype)
        elif scheme == "lecun":
            w = gain / jnp.sqrt(n_in) * draws.normal(kw, shape, dtype)
        elif scheme == "uniform":
            w = draws.uniform(kw, shape, dtype, -gain, gain)
        elif scheme == "fan_in_uniform":
            bound = gain / math.sqrt(n_in)
            w = draws.uniform(kw, shape, dtype, -bound, bound)
        else:
            w = gain * jax.nn.initializers.orthogonal()(kw, shape, dtype)
        weights.append(w)
        if scheme == "fan_in_uniform":
            biases.append(draws.uniform(kb, (n_out,), dtype, -bound, bound))
        else:
            biases.append(bias_scale * draws.normal(kb, (n_out,), dtype))
    return Network.from_matrices(weights, biases, activation)


def lenet5(*, key: PRNGKeyArray, in_shape: Sequence[int] = (1, 28, 28), n_out: int = 10, activation: str | Callable = "tanh", pool: str = "max", dtype=jnp.float32) -> Network:
    """LeNet-5 (LeCun et al. 1998) as five layers: conv 5x5 (6, padded), [pool, conv 5x5 (16)], [pool, flatten, 120],
    84, ``n_out``; ``activation`` between them (pooling follows it, as in the BioTorch benchmarks)."""
    in_shape = tuple(int(s) for s in in_shape)
    if len(in_shape) != 3:
        raise ShapeError(f"lenet5 takes images of shape (channels, height, width), got in_shape={in_shape}")
    pool_cls = {"max": eqx.nn.MaxPool2d, "avg": eqx.nn.AvgPool2d}.get(pool)
    if pool_cls is None:
        raise UnknownNameError(f"unknown pooling {pool!r}; choose max or avg")
    k = jax.random.split(key, 5)
    c, h, w = in_shape
    conv1 = eqx.nn.Conv2d(c, 6, 5, padding=2, key=k[0], dtype=dtype)
    conv2 = eqx.nn.Conv2d(6, 16, 5, key=k[1], dtype=dtype)
    flat = 16 * (((h // 2) - 4) // 2) * (((w // 2) - 4) // 2)
    layers = (
        conv1,
        eqx.nn.Sequential([pool_cls(2, 2), conv2]),
        eqx.nn.Sequential([pool_cls(2, 2), eqx.nn.Lambda(jnp.ravel), eqx.nn.Linear(flat, 120, key=k[2], dtype=dtype)]),
        eqx.nn.Linear(120, 84, key=k[3], dtype=dtype),
        eqx.nn.Linear(84, n_out, key=k[4], dtype=dtype),
    )
    return Network(layers, activation, in_shape=in_shape)
