r"""Predictive coding (PC) as an energy over layer activities, on any :class:`dynlearn.Network`.

Energy (Whittington & Bogacz 2017, Neural Comput. 29:1229; Millidge, Tschantz & Buckley 2022,
Neural Comput. 34:1329), with prediction errors :math:`\varepsilon_l = x_l - f_l(\varphi_{l-1}(x_{l-1}))`
(for an MLP :math:`f_l(h) = W_l h + b_l`; any layer of the network works, e.g. the convolutions of LeNet-5):

.. math::  E(x) = \sum_{l=1}^{L} \tfrac12 \|\varepsilon_l\|^2 \;[+\; \gamma\, \tfrac12\|x_L - y\|^2],

summed over the batch. The input :math:`x_0` is clamped. The output is

* ``"clamped"`` to the target :math:`x_L = y` (supervised learning),
* ``"free"`` (prediction; the equilibrium is the feedforward pass with :math:`E = 0`), or
* ``"nudged"``: free, with the cost :math:`\gamma\,\tfrac12\|x_L - y\|^2` added, γ = ``data.nudge`` (the
  weak-feedback limit :math:`\gamma \to 0` in which PC's update tends to γ times backprop's gradient).

Inference is the gradient flow :math:`\dot x = -\partial E/\partial x` (:func:`dynlearn.models.equilibrium`), and
the weight update at equilibrium is :func:`pc_update`, in descent sign:
:math:`\partial E/\partial W_l = -\varepsilon_l\,\varphi(x_{l-1})^\top` (the paper's local Hebbian rule
:math:`\Delta W_l = \varepsilon_l\varphi(x_{l-1})^\top` is its negative).

**Two parametrisations** (``form``). ``"pre"`` (default; Whittington & Bogacz 2017) holds pre-activations
:math:`x_l` and predicts :math:`x_l \approx f_l(\varphi(x_{l-1}))`. ``"post"`` holds rates
:math:`h_l` and predicts :math:`h_l \approx \varphi(f_l(h_{l-1}))` for hidden layers (the output is linear,
:math:`h_L \approx f_L(h_{L-1})`): the form of Rosenbaum (2022, PLoS ONE 17:e0266102) and Song et al. (2024,
Nat. Neurosci. 27:348), and the one the PC libraries in JAX use. Both have the feedforward pass as the zero-energy
free equilibrium and both tend to backprop for a weak nudge; away from that limit (a clamped output, a fixed
budget of inference steps) their updates differ: the error of "post" is gated by :math:`\varphi'` at the
*predicting* layer, :math:`\partial E/\partial W_l = -(\varphi'(a_l) \odot \varepsilon_l)\, h_{l-1}^\top`.

:class:`FixedPredictionPC` is the fixed-prediction variant of Millidge et al. (2022): predictions and
their Jacobians are frozen at the feedforward pass, and the equilibrium errors equal backprop's deltas.
"""

from __future__ import annotations

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from ..config import THEOREM, RelaxConfig
from ..errors import ShapeError
from ..losses import mse_loss
from ..networks import Network
from .base import Data, DynamicalModel, EnergyModel, equilibrium

OutputMode = Literal["clamped", "free", "nudged"]
OUTPUT_MODES = ("clamped", "free", "nudged")
#: the state parametrisations of :class:`PredictiveCoding` (see the module docstring)
FORMS = ("pre", "post")


def output_target(output: str, data: Data) -> Array | None:
    """The target ``data`` gives a PC output mode: required unless the output is ``"free"`` (:class:`ShapeError`)."""
    y = data.target()
    if output != "free" and y is None:
        raise ShapeError(f"output={output!r} needs a target y")
    return y


class PredictiveCoding(EnergyModel):
    """A predictive-coding network: a :class:`dynlearn.Network` (any layers) plus the output mode.

    The state is the tuple of free layers: ``(x_1, ..., x_{L-1})`` when the output is clamped,
    ``(x_1, ..., x_L)`` otherwise; each ``x_l`` is ``(batch, *shape_l)`` (or ``shape_l``), ``shape_l`` from
    ``network.shapes``. ``form="pre"`` holds pre-activations, ``"post"`` the hidden layers' rates (module docstring).
    """

    network: Network
    output: OutputMode = eqx.field(static=True, default="clamped")
    form: str = eqx.field(static=True, default="pre")

    def __check_init__(self):
        if self.output not in OUTPUT_MODES:
            raise ValueError(f"output must be 'clamped', 'free' or 'nudged', got {self.output!r}")
        if self.form not in FORMS:
            raise ValueError(f"form must be 'pre' (pre-activations) or 'post' (rates), got {self.form!r}")

    @property
    def name(self) -> str:
        form = "" if self.form == "pre" else ", form='post'"
        return f"PredictiveCoding(output={self.output!r}{form}, sizes={self.network.sizes})"

    def _target(self, data: Data) -> Array | None:
        return output_target(self.output, data)

    def validate(self, data: Data) -> None:
        self._target(data)
        super().validate(data)

    def layers(self, state: tuple[Array, ...], data: Data) -> list[Array]:
        """All layer activities ``[x_0, ..., x_L]`` given the free state."""
        y = self._target(data)
        out = [data.inputs(), *state]
        if self.output == "clamped":
            out.append(y)
        return out

    def predictions(self, xs: list[Array]) -> list[Array]:
        """What each layer ``1..L`` is predicted to be from the one below: :math:`f_l(\\varphi(x_{l-1}))` (``"pre"``)
        or :math:`\\varphi(f_l(h_{l-1}))`, linear at the output (``"post"``)."""
        net, L = self.network, self.network.depth
        if self.form == "pre":
            return [net.predict_layer(l, xs[l - 1]) for l in range(1, L + 1)]
        out = [net.apply(l, xs[l - 1]) for l in range(1, L + 1)]
        return [net.phi(a) for a in out[:-1]] + [out[-1]]

    def errors(self, state, data: Data) -> list[Array]:
        """Prediction errors ``[ε_1, ..., ε_L]``, :math:`\\varepsilon_l = x_l - \\hat x_l` (:meth:`predictions`)."""
        xs = self.layers(state, data)
        if self.form == "pre":  # written as before the rate form existed: the same program, bit for bit
            return [xs[l] - self.network.predict_layer(l, xs[l - 1]) for l in range(1, self.network.depth + 1)]
        return [x - p for x, p in zip(xs[1:], self.predictions(xs))]

    def energy(self, state, data: Data):
        """:math:`\\sum_l \\tfrac12\\|\\varepsilon_l\\|^2` (+ γ ½‖x_L − y‖² for ``output="nudged"``, γ = ``data.nudge``)."""
        e = sum(0.5 * jnp.sum(eps**2) for eps in self.errors(state, data))
        if self.output == "nudged":
            e = e + data.nudge * mse_loss(state[-1], self._target(data))
        return e

    def init_state(self, data: Data) -> tuple[Array, ...]:
        """The feedforward pass (every error zero), restricted to the free layers."""
        xs = self.network.forward(data.inputs())[1:]
        if self.form == "post":
            xs = [self.network.phi(a) for a in xs[:-1]] + [xs[-1]]
        return tuple(xs[:-1]) if self.output == "clamped" else tuple(xs)


def pc_update(model: PredictiveCoding, data: Data, config: RelaxConfig = THEOREM, *, state=None) -> Network:
    r"""PC's weight update at equilibrium in descent sign, :math:`\partial E/\partial\theta`.

    For an MLP, :math:`\partial E/\partial W_l = -\varepsilon_l\,\varphi(x_{l-1})^\top` and
    :math:`\partial E/\partial b_l = -\varepsilon_l` (summed over the batch); for other layers the same
    chain rule through :math:`f_l`. With ``output="nudged"`` it is :math:`\approx \gamma\,\partial L/\partial\theta`
    for small γ = ``data.nudge`` (Whittington & Bogacz 2017). Relaxes with ``config`` unless ``state`` is given.
    """
    if state is None:
        state = equilibrium(model, data, config).state
    return model.parameter_gradient(state, data)


class FixedPredictionPC(DynamicalModel):
    r"""PC under the fixed-prediction assumption (Millidge, Tschantz & Buckley 2022).

    Predictions :math:`\hat a_l` and Jacobians :math:`J_l = \partial \hat a_l/\partial x_{l-1}` are frozen at
    the feedforward pass :math:`\hat x`; the output error is :math:`\varepsilon_L = y - \hat x_L` (hard clamp,
    squared error). Hidden activities follow

    .. math::  \dot x_l = -\varepsilon_l + J_{l+1}^\top \varepsilon_{l+1}, \qquad \varepsilon_l = x_l - \hat a_l,

    a linear, block-triangular system whose equilibrium is :math:`\varepsilon_l = -\delta_l`, backprop's
    deltas, exactly. It is not a gradient flow, so it is given as a vector field; ``data.nudge`` is unused.
    """

    network: Network

    @property
    def name(self) -> str:
        return f"FixedPredictionPC(sizes={self.network.sizes})"

    def init_state(self, data: Data):
        return tuple(self.network.forward(data.inputs())[1:-1])

    def errors(self, state, data: Data) -> list[Array]:
        """``[ε_1, ..., ε_L]`` against the frozen feedforward predictions, ``ε_L = y − x̂_L``."""
        xhat = self.network.forward(data.inputs())
        return [s - a for s, a in zip(state, xhat[1:-1])] + [data.target() - xhat[-1]]

    def vector_field(self, t, state, data: Data):
        xhat = self.network.forward(data.inputs())
        eps = self.errors(state, data)
        out = []
        for l in range(1, self.network.depth):  # hidden layers 1..L-1
            _, vjp = jax.vjp(lambda v, l=l: self.network.predict_layer(l + 1, v), xhat[l])
            out.append(-eps[l - 1] + vjp(eps[l])[0])
        return tuple(out)


def fixed_prediction_update(model: FixedPredictionPC, state, data: Data) -> Network:
    r"""The fixed-prediction update in descent sign, :math:`-\sum_l (\partial \hat a_l/\partial\theta)^\top \varepsilon_l`
    at the frozen predictions; at equilibrium it equals :math:`\partial L/\partial\theta` (backprop) exactly."""
    net = model.network
    xhat = net.forward(data.inputs())
    eps = model.errors(state, data)

    def predictions(n):
        return [n.predict_layer(l, xhat[l - 1]) for l in range(1, n.depth + 1)]

    _, vjp = jax.vjp(predictions, net)
    return vjp([-e for e in eps])[0]
