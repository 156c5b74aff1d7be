r"""Generalised predictive coding (Pinchetti, Salvatori, Yordanov, Millidge, Song & Lukasiewicz, "Predictive coding
beyond Gaussian distributions", NeurIPS 2022): PC with a distribution family per layer.

Layer ``l`` holds the natural parameter :math:`x_l` of a distribution :math:`q_l = q(\cdot\,; x_l)` of family
:math:`\mathcal F_l` and predicts the next one through the network, :math:`\mu_l = f_l(\varphi_{l-1}(x_{l-1}))`
(:meth:`dynlearn.Network.predict_layer`, the prediction of standard PC). The energy is a sum of KL divergences,

.. math::  F(x) = \sum_{l=1}^{L} D_{\rm KL}\big(q_l(\cdot\,; x_l)\,\|\,p_l(\cdot\,; \mu_l)\big)
           \;[+\;\gamma\, D_{\rm KL}(\delta_y \| p_L(\cdot\,; x_L))],

summed over the batch (the paper's :math:`\mathcal F` of PC with KL energies; its :math:`\gamma` is
``data.nudge``). Families (:data:`FAMILIES`), each written as a divergence :math:`D(m, \mu)` from the mean
:math:`m` of :math:`q` to :math:`p(\cdot; \mu)`:

* ``gaussian`` (fixed variance :math:`\sigma^2`, ``scale`` = σ): :math:`m = x`, :math:`D = \|m - \mu\|^2 / 2\sigma^2` —
  with σ = 1 exactly the standard PC energy (:class:`dynlearn.models.pc.PredictiveCoding`);
* ``bernoulli`` (logits): :math:`m = \mathrm{sigmoid}(x)`, :math:`D = \sum m\log\frac{m}{s} + (1-m)\log\frac{1-m}{1-s}`,
  :math:`s = \mathrm{sigmoid}(\mu)`;
* ``categorical`` (logits, softmax): :math:`m = \mathrm{softmax}(x)`, :math:`D = \sum_k m_k \log m_k - m_k\log\mathrm{softmax}(\mu)_k`;
* ``laplace`` (fixed scale ``b``, heavy-tailed): :math:`m = x`, with :math:`d = |m - \mu|`,
  :math:`D = \sum d/b + e^{-d/b} - 1` (the KL of two Laplace laws of equal scale: quadratic for small errors, linear
  for large ones, so outliers pull with a bounded force).

The output is ``"clamped"`` (:math:`q_L = \delta_y`: the term is :math:`D(y, \mu_L)`, e.g. cross-entropy for a
categorical output), ``"free"`` (the equilibrium is the feedforward pass, F = 0) or ``"nudged"`` (free, plus
:math:`\gamma D(y, x_L)`; for a categorical output the weak-nudge update tends to γ times backprop's cross-entropy
gradient). Inference is the gradient flow of F (:func:`dynlearn.models.equilibrium`); the weight update is
:math:`\partial F/\partial\theta` at equilibrium (:meth:`EnergyModel.parameter_gradient`), in descent sign.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.special import xlogy
from jaxtyping import Array

from ..networks import Network
from .base import Data, EnergyModel
from .pc import OUTPUT_MODES, OutputMode, output_target


@dataclasses.dataclass(frozen=True)
class Gaussian:
    """Gaussian with fixed standard deviation ``scale`` (σ): :math:`D(m, \\mu) = \\|m - \\mu\\|^2/2\\sigma^2`."""

    scale: float = 1.0
    name = "gaussian"

    def mean(self, x: Array) -> Array:
        return x

    def divergence(self, m: Array, mu: Array) -> Array:
        return 0.5 * jnp.sum((m - mu) ** 2) / self.scale**2


@dataclasses.dataclass(frozen=True)
class Bernoulli:
    """Independent Bernoulli units with logits: :math:`D = \\sum m\\log(m/s) + (1-m)\\log((1-m)/(1-s))`, s = sigmoid(μ)."""

    name = "bernoulli"

    def mean(self, x: Array) -> Array:
        return jax.nn.sigmoid(x)

    def divergence(self, m: Array, mu: Array) -> Array:
        return jnp.sum(xlogy(m, m) + xlogy(1 - m, 1 - m) - m * jax.nn.log_sigmoid(mu) - (1 - m) * jax.nn.log_sigmoid(-mu))


@dataclasses.dataclass(frozen=True)
class Categorical:
    """A categorical law over the last axis with logits: :math:`D = \\sum_k m_k\\log m_k - m_k\\log\\mathrm{softmax}(\\mu)_k`."""

    name = "categorical"

    def mean(self, x: Array) -> Array:
        return jax.nn.softmax(x, axis=-1)

    def divergence(self, m: Array, mu: Array) -> Array:
        return jnp.sum(xlogy(m, m) - m * jax.nn.log_softmax(mu, axis=-1))


@dataclasses.dataclass(frozen=True)
class Laplace:
    """Laplace with fixed scale ``scale`` (b): :math:`D = \\sum d/b + e^{-d/b} - 1`, :math:`d = |m - \\mu|`."""

    scale: float = 1.0
    name = "laplace"

    def mean(self, x: Array) -> Array:
        return x

    def divergence(self, m: Array, mu: Array) -> Array:
        d = jnp.abs(m - mu) / self.scale
        return jnp.sum(d + jnp.expm1(-d))


FAMILIES = {"gaussian": Gaussian, "bernoulli": Bernoulli, "categorical": Categorical, "laplace": Laplace}


def family(name: str, *, scale: float = 1.0):
    """The family called ``name`` (``scale`` is σ of ``gaussian`` and b of ``laplace``); ValueError otherwise."""
    if name not in FAMILIES:
        raise ValueError(f"unknown distribution family {name!r}; choose one of {', '.join(FAMILIES)}")
    if not (isinstance(scale, (int, float)) and scale > 0):
        raise ValueError(f"scale (sigma of a Gaussian, b of a Laplace layer) must be a number > 0, got {scale!r}")
    return FAMILIES[name](float(scale)) if name in ("gaussian", "laplace") else FAMILIES[name]()


def layer_families(depth: int, hidden: str = "gaussian", output: str = "categorical", *, scale: float = 1.0) -> tuple:
    """``(F_1, ..., F_L)``: ``hidden`` for layers ``1..L-1`` and ``output`` for layer ``L``."""
    return tuple(family(hidden, scale=scale) for _ in range(depth - 1)) + (family(output, scale=scale),)


class GeneralisedPC(EnergyModel):
    """Generalised PC on a :class:`dynlearn.Network` with one family per layer (see the module docstring).

    The state is the tuple of free layers, as for :class:`dynlearn.models.pc.PredictiveCoding`:
    ``(x_1, ..., x_{L-1})`` with the output clamped, ``(x_1, ..., x_L)`` otherwise.
    """

    network: Network
    families: tuple = eqx.field(static=True)
    output: OutputMode = eqx.field(static=True, default="nudged")

    def __check_init__(self):
        if self.output not in OUTPUT_MODES:
            raise ValueError(f"output must be 'clamped', 'free' or 'nudged', got {self.output!r}")
        if len(self.families) != self.network.depth:
            raise ValueError(f"{self.network.depth} layers need {self.network.depth} families, got {len(self.families)}")

    @property
    def name(self) -> str:
        return f"GeneralisedPC(output={self.output!r}, families={[f.name for f in self.families]}, sizes={self.network.sizes})"

    def _target(self, data: Data) -> Array | None:
        return output_target(self.output, data)

    def validate(self, data: Data) -> None:
        self._target(data)
        super().validate(data)

    def layers(self, state: Sequence[Array], data: Data) -> list[Array]:
        """``[x_0, x_1, ..., x_L]``: the input, the free state and (clamped) the target."""
        out = [data.inputs(), *state]
        if self.output == "clamped":
            out.append(self._target(data))
        return out

    def divergences(self, state, data: Data) -> list[Array]:
        """Per layer :math:`D_{\\rm KL}(q_l \\| p_l(\\cdot; \\mu_l))`; a clamped output is :math:`D(y, \\mu_L)`."""
        xs = self.layers(state, data)
        out = []
        for l, fam in enumerate(self.families, start=1):
            mu = self.network.predict_layer(l, xs[l - 1])
            m = xs[l] if (l == self.network.depth and self.output == "clamped") else fam.mean(xs[l])
            out.append(fam.divergence(m, mu))
        return out

    def energy(self, state, data: Data):
        """:math:`\\sum_l D_{\\rm KL}(q_l\\|p_l)` (+ γ :math:`D(y, x_L)` for ``output="nudged"``, γ = ``data.nudge``)."""
        e = sum(self.divergences(state, data))
        if self.output == "nudged":
            e = e + data.nudge * self.families[-1].divergence(self._target(data), state[-1])
        return e

    def init_state(self, data: Data) -> tuple[Array, ...]:
        """The feedforward pass (every divergence zero), restricted to the free layers."""
        xs = self.network.forward(data.inputs())[1:]
        return tuple(xs[:-1]) if self.output == "clamped" else tuple(xs)
