r"""Layered networks as equinox PyTrees.

A :class:`Network` holds weights :math:`W_l` of shape ``(n_l, n_{l-1})`` and biases :math:`b_l` for
layers :math:`l = 1..L`, plus the name of its activation :math:`\varphi`. The feedforward pass is

.. math::  \hat x_0 = x, \qquad \hat x_l = W_l\,\varphi_{l-1}(\hat x_{l-1}) + b_l ,

with :math:`\varphi_0 = \mathrm{id}` (inputs enter the first layer as they are) and
:math:`\varphi_{l} = \varphi` for hidden layers. The output :math:`\hat x_L` is linear. This is the
"activation before the weight" convention of Whittington & Bogacz (2017), so the same PyTree is the
prediction network of predictive coding and the multilayer perceptron that backprop trains.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .errors import NonFiniteError, ShapeError, UnknownNameError


def _hard_sigmoid(x):
    return jnp.clip(x, 0.0, 1.0)


def _sacramento_softplus(x):
    """Soft-plus rate of Sacramento et al. (2018, NeurIPS) for regression: 0.1 log(1 + exp(x - 3))."""
    return 0.1 * jax.nn.softplus(x - 3.0)


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "logistic": jax.nn.sigmoid,
    "relu": jax.nn.relu,
    "softplus": jax.nn.softplus,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "hard_sigmoid": _hard_sigmoid,
    "sacramento_softplus": _sacramento_softplus,
    "linear": lambda x: x,
}


def activation(name: str) -> Callable[[Array], Array]:
    """The activation function called ``name`` (one of :data:`ACTIVATIONS`)."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}"
        ) from None


def _matvec(w: Array, x: Array) -> Array:
    """``W x`` for a single vector or a batch of row vectors (``x`` of shape (..., n_in))."""
    return jnp.einsum("oi,...i->...o", w, x)


class Network(eqx.Module):
    """Weights and biases of a layered network, with a named activation.

    Attributes:
        weights: ``W_1..W_L``; ``W_l`` has shape ``(n_l, n_{l-1})``.
        biases: ``b_1..b_L``; ``b_l`` has shape ``(n_l,)``.
        activation: name of :math:`\\varphi` (see :data:`ACTIVATIONS`), static.
    """

    weights: tuple[Float[Array, "out in"], ...]
    biases: tuple[Float[Array, " out"], ...]
    activation: str = eqx.field(static=True, default="tanh")

    def __check_init__(self):
        if len(self.weights) != len(self.biases) or not self.weights:
            raise ShapeError("a Network needs as many bias vectors as weight matrices, and at least one")
        activation(self.activation)
        for l, (w, b) in enumerate(zip(self.weights, self.biases), start=1):
            if w.ndim != 2 or b.shape != (w.shape[0],):
                raise ShapeError(f"layer {l}: W has shape {w.shape} and b {b.shape}; need (out, in) and (out,)")
            if l > 1 and w.shape[1] != self.weights[l - 2].shape[0]:
                raise ShapeError(
                    f"layer {l}: W takes {w.shape[1]} inputs but layer {l - 1} has {self.weights[l - 2].shape[0]} units"
                )

    @property
    def sizes(self) -> tuple[int, ...]:
        """Layer widths ``(n_0, n_1, ..., n_L)``."""
        return (self.weights[0].shape[1],) + tuple(w.shape[0] for w in self.weights)

    @property
    def depth(self) -> int:
        """Number of weight layers ``L``."""
        return len(self.weights)

    def phi(self, x: Array) -> Array:
        """The hidden activation :math:`\\varphi`."""
        return activation(self.activation)(x)

    def presynaptic(self, l: int, x_prev: Array) -> Array:
        """:math:`\\varphi_{l-1}(x_{l-1})`: the rate that layer ``l`` receives (identity for ``l = 1``)."""
        return x_prev if l == 1 else self.phi(x_prev)

    def predict_layer(self, l: int, x_prev: Array) -> Array:
        """Prediction of layer ``l`` (1-based) from the state of layer ``l-1``: ``W_l φ(x_{l-1}) + b_l``."""
        return _matvec(self.weights[l - 1], self.presynaptic(l, x_prev)) + self.biases[l - 1]

    def forward(self, x: Float[Array, "*batch n0"]) -> list[Array]:
        """Feedforward pass: the list ``[x̂_0, x̂_1, ..., x̂_L]``."""
        states = [x]
        for l in range(1, self.depth + 1):
            states.append(self.predict_layer(l, states[-1]))
        return states

    def __call__(self, x: Float[Array, "*batch n0"]) -> Float[Array, "*batch nL"]:
        return self.forward(x)[-1]

    def validate_inputs(self, x, y=None) -> None:
        """Raise :class:`ShapeError` / :class:`NonFiniteError` for inputs or targets that do not fit.

        Works on concrete arrays only (call it before entering ``jit``); traced values are skipped.
        """
        n0, nl = self.sizes[0], self.sizes[-1]
        if x.shape[-1] != n0:
            raise ShapeError(f"inputs have {x.shape[-1]} features (shape {x.shape}) but the network takes {n0}")
        if y is not None:
            if y.shape[-1] != nl:
                raise ShapeError(f"targets have {y.shape[-1]} units (shape {y.shape}) but the network outputs {nl}")
            if y.shape[:-1] != x.shape[:-1]:
                raise ShapeError(f"{x.shape[:-1]} input samples but {y.shape[:-1]} targets")
        for name, a in (("inputs", x), ("targets", y)):
            if a is None or isinstance(a, jax.core.Tracer):
                continue
            if not bool(np.all(np.isfinite(np.asarray(a)))):
                raise NonFiniteError(f"{name} contain NaN or inf")


def init_network(
    sizes: Sequence[int],
    *,
    key: PRNGKeyArray,
    activation: str = "tanh",
    scheme: str = "xavier",
    gain: float = 1.0,
    bias_scale: float = 0.0,
    dtype=jnp.float32,
) -> Network:
    """A network with layer widths ``sizes = (n_0, ..., n_L)``.

    Schemes: ``"xavier"`` (normal, variance ``2 gain²/(n_in + n_out)``), ``"lecun"`` (variance
    ``gain²/n_in``), ``"uniform"`` (U(−gain, gain), the microcircuit papers' choice) and
    ``"orthogonal"`` (scaled orthogonal). Biases are N(0, bias_scale²).
    """
    sizes = tuple(int(s) for s in sizes)
    if len(sizes) < 2 or any(s <= 0 for s in sizes):
        raise ShapeError(f"sizes must list at least two positive layer widths, got {sizes}")
    keys = jax.random.split(key, 2 * (len(sizes) - 1))
    weights, biases = [], []
    for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        kw, kb = keys[2 * l], keys[2 * l + 1]
        shape = (n_out, n_in)
        if scheme == "xavier":
            w = gain * jnp.sqrt(2.0 / (n_in + n_out)) * jax.random.normal(kw, shape, dtype)
        elif scheme == "lecun":
            w = gain / jnp.sqrt(n_in) * jax.random.normal(kw, shape, dtype)
        elif scheme == "uniform":
            w = jax.random.uniform(kw, shape, dtype, -gain, gain)
        elif scheme == "orthogonal":
            w = gain * jax.nn.initializers.orthogonal()(kw, shape, dtype)
        else:
            raise UnknownNameError(f"unknown init scheme {scheme!r}; choose xavier, lecun, uniform or orthogonal")
        weights.append(w)
        biases.append(bias_scale * jax.random.normal(kb, (n_out,), dtype))
    return Network(tuple(weights), tuple(biases), activation)
