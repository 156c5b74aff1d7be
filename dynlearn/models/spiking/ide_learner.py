r"""The ``snn/ide`` learner: a feedback spiking network trained by implicit differentiation on its rate equilibrium
(Xiao, Meng, Zhang, Wang & Lin, NeurIPS 2021; equations in :mod:`.ide`).

Per batch: the input is coded in ``n_steps`` time steps (``coding="rate"``: Bernoulli spikes with probability
:math:`x \in [0, 1]` per step, drawn from the update's key; ``"direct"``: the constant current :math:`x`), the SNN is
simulated forward (IF or LIF neurons, no gradient through time), the rates :math:`a` are read at the end, and the
loss :math:`L(Ra_L + c, y)` is differentiated as if :math:`a` were the fixed point :math:`a^*` of
:math:`a = \sigma(Wa_L + F\bar x + b)` with :math:`\bar x` the average coded input: :func:`.ide.ide_gradient`
(backward by a second fixed-point iteration, optimistix). ``predict`` runs the network on the constant current
:math:`x` (the expected input of either coding), so it is deterministic.

Parameters are built from a :class:`dynlearn.Network` MLP ``(n_0, n_1, ..., n_L, n_out)``: hidden layers in a chain
with feedback :math:`W` (n_1, n_L) from the last hidden layer to the first, readout from the last; the MLP's weights
become :math:`F_l` and :math:`R`, and :math:`W` is drawn N(0, (feedback_gain²/n_L)).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from ...losses import get_loss
from ...models.base import Data
from ...rules.base import LEARNERS, Learner, Rule
from .ide import FeedbackSNN, average_rates, ide_gradient, readout, simulate
from ... import draws

CODINGS = ("rate", "direct")


def encode(x, n_steps: int, coding: str, key=None):
    """``inputs[T, batch..., n_0]``: Bernoulli spikes of probability clip(x, 0, 1) (``"rate"``) or x in every step."""
    if coding == "direct" or key is None:
        return jnp.broadcast_to(x, (n_steps, *x.shape))
    p = jnp.clip(x, 0.0, 1.0)
    return jax.random.bernoulli(key, p, (n_steps, *x.shape)).astype(x.dtype)


def init_feedback_snn(key, network, *, feedback_gain: float = 0.5, v_th: float = 1.0) -> FeedbackSNN:
    """The :class:`.ide.FeedbackSNN` around an MLP (module docstring)."""
    w, b = network.weights, network.biases
    if len(w) < 2:
        raise ValueError("snn/ide needs at least one hidden layer")
    n1, nl = w[0].shape[0], w[-1].shape[1]
    feedback = feedback_gain / math.sqrt(nl) * draws.normal(key, (n1, nl), w[0].dtype)
    return FeedbackSNN(tuple(w[:-1]), tuple(b[:-1]), feedback, w[-1], b[-1], v_th=float(v_th))


class IDE(Rule):
    """IDE's update (module docstring)."""

    n_steps: int = eqx.field(static=True)
    coding: str = eqx.field(static=True)
    neuron: str = eqx.field(static=True)
    tau_mem: float = eqx.field(static=True)
    loss: Callable = eqx.field(static=True)
    backward_steps: int = eqx.field(static=True)
    backward_tol: float = eqx.field(static=True)

    def rates(self, params: FeedbackSNN, inputs):
        spikes = simulate(params, inputs, neuron=self.neuron, tau_mem=self.tau_mem)
        return average_rates(spikes, neuron=self.neuron, tau_mem=self.tau_mem)

    def update(self, params: FeedbackSNN, rule_state, batch: Data, key):
        inputs = encode(batch.x, self.n_steps, self.coding, key)
        a = jax.lax.stop_gradient(self.rates(params, inputs))
        x_bar = jnp.mean(inputs, axis=0)
        grads, value = ide_gradient(params, a, x_bar, batch.y, self.loss, rtol=self.backward_tol,
                                    atol=self.backward_tol, max_steps=self.backward_steps)
        n = batch.x.shape[0] if batch.x.ndim > 1 else 1
        return grads, rule_state, {"loss": value / n, "rate": jnp.mean(a[-1])}


def ide_predict(rule: IDE, params: FeedbackSNN, x):
    """Readout of the rates under the constant current x (deterministic)."""
    return readout(params, rule.rates(params, encode(x, rule.n_steps, "direct")))


@LEARNERS.register("snn/ide")
def ide_learner(
    *,
    n_steps: int = 30,
    coding: str = "rate",
    neuron: str = "if",
    tau_mem: float = 20.0,
    loss: str = "ce",
    feedback_gain: float = 0.5,
    v_th: float = 1.0,
    backward_steps: int = 30,
    backward_tol: float = 1e-5,
) -> Learner:
    """IDE on a feedback SNN with coded input (module docstring)."""
    for name, v in (("n_steps", n_steps), ("backward_steps", backward_steps)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if coding not in CODINGS:
        raise ValueError(f"coding must be one of {CODINGS}, got {coding!r}")
    if neuron not in ("if", "lif"):
        raise ValueError(f"neuron must be 'if' or 'lif', got {neuron!r}")
    for name, v in (("tau_mem", tau_mem), ("v_th", v_th), ("backward_tol", backward_tol)):
        if not (isinstance(v, (int, float)) and v > 0):
            raise ValueError(f"{name} must be a number > 0, got {v!r}")
    if not (isinstance(feedback_gain, (int, float)) and feedback_gain >= 0):
        raise ValueError(f"feedback_gain must be a number >= 0, got {feedback_gain!r}")
    rule = IDE(n_steps, coding, neuron, float(tau_mem), get_loss(loss), backward_steps, float(backward_tol))

    def init(key, network):
        return init_feedback_snn(key, network, feedback_gain=float(feedback_gain), v_th=float(v_th))

    return Learner(
        name="snn/ide",
        rule=rule,
        init=init,
        predict=lambda params, x: ide_predict(rule, params, x),
        description="feedback SNN trained by implicit differentiation on the equilibrium of its firing rates (Xiao et al. 2021)",
        defaults={"lr": 1e-3, "activation": "tanh", "n_steps": n_steps, "coding": coding, "neuron": neuron, "loss": loss},
    )
