r"""Predictive coding with non-negative rates and one-way synapses (Alonso & Neftci, "Tightening the biological
constraints on gradient-based predictive coding", ICONS 2021, arXiv 2104.15137).

Hidden activities are firing rates, :math:`x_l \ge 0` (``l = 1..L-1``), and errors travel down through feedback
weights :math:`B_{l+1}` (shape of :math:`W_{l+1}`) that need not equal the forward ones. The energy is
:math:`E = \sum_l \tfrac12\|\varepsilon_l\|^2` with the drive :math:`a_l = W_l\varphi(x_{l-1}) + b_l` and

.. math::  \varepsilon_l = x_l - \rho(a_l) \ (l < L), \qquad \varepsilon_L = y - a_L \ \text{(clamped output)},

where the **rate function** ρ (``rate``) is ReLU by default: the prediction of a rate is itself a rate, so the
feedforward ReLU pass :math:`x_l = \rho(a_l)` has zero energy and is the free equilibrium (with ``rate="linear"``
the prediction :math:`a_l` may be negative, every silent unit then carries the spurious error :math:`-a_l > 0`, and
the local update pushes all drives toward 0 even when the output is right). The drive of hidden layer ``l`` is

.. math::  g_l = \varepsilon_l - \rho'(a_l)\odot\varphi'(x_l)\odot B_{l+1}^\top\big(\rho'(a_{l+1})\odot\varepsilon_{l+1}\big)
           \qquad (\rho' = 1 \text{ at the output}),

the top-down term gated by the unit's own feedforward drive (a unit below threshold is not recruited from above;
for ρ = linear the gate is 1 and :math:`g = \partial E/\partial x` when :math:`B = W`), and the rates follow the
**projected flow** (projection dynamics of Friesz et al. 1994; Xia & Wang 2000)

.. math::  \dot x = P_+(x - g) - x, \qquad P_+(v) = \max(v, 0).

Why a projected flow and not a reparametrisation :math:`x = \mathrm{softplus}(u)`: the orthant :math:`x \ge 0` is
forward-invariant (at :math:`x_i = 0`, :math:`\dot x_i = \max(-g_i, 0) \ge 0`), its fixed points are exactly the
points with :math:`x \ge 0,\ g \ge 0,\ x\odot g = 0` (for ρ = linear and B = W the KKT points of
:math:`\min_{x\ge0} E`, and the flow decreases E, :math:`\dot E \le -\|\dot x\|^2`), and rates reach 0 exactly. A
softplus state reaches :math:`x_i = 0` only as :math:`u_i \to -\infty`, and it changes the flow's metric.

The weight update at equilibrium is PC's local rule, in descent sign :math:`\partial E/\partial W_l =
-(\rho'(a_l)\odot\varepsilon_l)\varphi(x_{l-1})^\top`; feedback weights are ``"fixed"`` (random), ``"learned"`` (they
receive the forward update, transposed into their own shape, plus weight decay on both — the Kolen–Pollack scheme),
or ``"symmetric"`` (:math:`B = W`, two-way synapses, for comparison). Under an adaptive optimiser W and B receive
the same normalised steps, so :math:`W - B` keeps its initial value: B aligns with W only once the learned part of W
outweighs :math:`W_0 - B_0`. Hence :math:`B_0` and :math:`W_{l\ge2}` start small (``feedback_scale``,
``top_scale`` = 0.1 of Xavier-normal; measured on digits, 64 hidden, 10 epochs: cosine(B, W) 0.45 with
Xavier-scale starts, 0.98 with 0.1).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from ..config import TRAINING, RelaxConfig
from ..losses import mse_loss
from ..networks import Network, activation
from ..rules.base import LEARNERS, Learner, Rule
from .base import Data, DynamicalModel, equilibrium
from .. import draws


def positive_forward(network: Network, x: Array, rate: str = "linear") -> list[Array]:
    r"""The feedforward pass of rates :math:`x_l = P_+(\rho(f_l(\varphi(x_{l-1}))))` for hidden layers, output
    linear: the initial state of the relaxation and the network's prediction (for ``rate`` ρ = ReLU or linear: a
    ReLU network; :math:`P_+` is a no-op for a non-negative ρ)."""
    rho = activation(rate)
    out = [x]
    for l in range(1, network.depth + 1):
        a = network.predict_layer(l, out[-1])
        out.append(a if l == network.depth else jnp.maximum(rho(a), 0.0))
    return out


class PositiveParams(eqx.Module):
    """What :data:`pc/positive` trains: the forward ``network`` and the feedback matrices ``feedback[k]`` standing in
    for :math:`W_{k+2}` in the downward path (shape ``(n_{k+2}, n_{k+1})``); ``rate`` names ρ (static)."""

    network: Network
    feedback: tuple
    rate: str = eqx.field(static=True, default="linear")

    def __call__(self, x):
        return positive_forward(self.network, x, self.rate)[-1]

    @property
    def sizes(self):
        return self.network.sizes


class PositivePC(DynamicalModel):
    """Clamped-output PC with non-negative hidden rates (projected flow), hidden predictions passed through the
    rate function ``rate`` (ρ; ``"linear"``: none, the energy is then a convex quadratic) and feedback matrices
    ``feedback`` (``None``: :math:`B = W`, the projected gradient flow of E)."""

    network: Network
    feedback: tuple | None = None
    rate: str = eqx.field(static=True, default="linear")

    @property
    def name(self) -> str:
        return f"PositivePC(sizes={self.network.sizes}, rate={self.rate}, feedback={'W' if self.feedback is None else 'B'})"

    def init_state(self, data: Data):
        return tuple(positive_forward(self.network, data.inputs(), self.rate)[1:-1])

    def layers(self, state, data: Data) -> list[Array]:
        return [data.inputs(), *state, data.target()]

    def drives(self, state, data: Data) -> list[Array]:
        r"""The pre-rate drives :math:`a_l = f_l(\varphi(x_{l-1}))`, ``l = 1..L``."""
        xs = self.layers(state, data)
        return [self.network.predict_layer(l, xs[l - 1]) for l in range(1, self.network.depth + 1)]

    def errors(self, state, data: Data) -> list[Array]:
        r""":math:`\varepsilon_l = x_l - \rho(a_l)` (hidden), :math:`\varepsilon_L = y - a_L` (clamped output)."""
        xs, rho, L = self.layers(state, data), activation(self.rate), self.network.depth
        return [xs[l] - (a if l == L else rho(a)) for l, a in enumerate(self.drives(state, data), start=1)]

    def energy(self, state, data: Data):
        r""":math:`E = \sum_l \tfrac12\|\varepsilon_l\|^2`, summed over the batch."""
        return sum(0.5 * jnp.sum(e**2) for e in self.errors(state, data))

    def drive(self, state, data: Data) -> tuple[Array, ...]:
        r""":math:`g_l = \varepsilon_l - \rho'(a_l)\odot\varphi'(x_l)\odot B_{l+1}^\top(\rho'(a_{l+1})\odot
        \varepsilon_{l+1})` for the hidden layers (:math:`\rho' = 1` at the output). The gate :math:`\rho'(a_l)`:
        a unit whose feedforward drive is below threshold receives no top-down drive (for ρ = linear it is 1 and
        :math:`g = \partial E/\partial x` when B = W)."""
        eps, a = self.errors(state, data), self.drives(state, data)
        net, rho, L = self.network, activation(self.rate), self.network.depth
        mats = net.weights[1:] if self.feedback is None else self.feedback
        out = []
        for k, x in enumerate(state):  # hidden layer l = k + 1; layer above l + 1 = k + 2
            up = eps[k + 1] if k + 2 == L else jax.jvp(rho, (a[k + 1],), (eps[k + 1],))[1]
            gate = jax.jvp(rho, (a[k],), (jnp.ones_like(a[k]),))[1] * jax.jvp(net.phi, (x,), (jnp.ones_like(x),))[1]
            out.append(eps[k] - gate * (up @ mats[k]))
        return tuple(out)

    def vector_field(self, t, state, data: Data):
        """The projected flow :math:`P_+(x - g) - x`."""
        return tuple(jnp.maximum(x - g, 0.0) - x for x, g in zip(state, self.drive(state, data)))


def kkt_residuals(model: PositivePC, state, data: Data) -> dict[str, Array]:
    r"""KKT of the equilibrium of the projected flow (module docstring), relative to :math:`\max|g|`:
    ``complementarity`` :math:`\max_i|\min(x_i, g_i)|` (the natural residual: zero iff :math:`x \ge 0`,
    :math:`g \ge 0` and :math:`x \odot g = 0`), ``primal`` :math:`\max(-x)`, ``dual`` :math:`\max(-g)` and the
    fraction of units at the bound (``active_fraction``, :math:`x_i \le 10^{-8}\max x`)."""
    g = jnp.concatenate([v.ravel() for v in model.drive(state, data)])
    x = jnp.concatenate([v.ravel() for v in state])
    scale = jnp.maximum(jnp.max(jnp.abs(g)), 1e-300)
    return {
        "complementarity": jnp.max(jnp.abs(jnp.minimum(x, g))) / scale,
        "primal": jnp.max(jnp.maximum(-x, 0.0)) / scale,
        "dual": jnp.max(jnp.maximum(-g, 0.0)) / scale,
        "active_fraction": jnp.mean((x <= 1e-8 * jnp.max(x)).astype(g.dtype)),
    }


def positive_update(model: PositivePC, state, data: Data) -> Network:
    r""":math:`\partial E/\partial\theta` at ``state`` (descent sign): :math:`-\varepsilon_l\varphi(x_{l-1})^\top` for
    :math:`W_l`, :math:`-\varepsilon_l` for :math:`b_l`."""

    def energy_of(net):
        return PositivePC(net, model.feedback, model.rate).energy(state, data)

    return eqx.filter_grad(energy_of)(model.network)


# -- the learner ------------------------------------------------------------------------------------------------

FEEDBACK_MODES = ("learned", "fixed", "symmetric")
#: rate functions ρ of the hidden predictions: ReLU, and "linear" (predictions may be negative; the convex model)
RATES = ("relu", "linear")


class PositivePCRule(Rule):
    """Relax :class:`PositivePC` with the output clamped, then PC's local update (and the feedback's, if learned)."""

    config: RelaxConfig = TRAINING
    feedback: str = eqx.field(static=True, default="learned")
    decay: float = eqx.field(static=True, default=1e-3)

    def update(self, params: PositiveParams, rule_state, batch: Data, key):
        net = params.network
        model = PositivePC(net, None if self.feedback == "symmetric" else params.feedback, params.rate)
        data = Data(batch.x, batch.y)
        eq = equilibrium(model, data, self.config)
        g = positive_update(model, eq.state, data)
        if self.feedback == "learned":  # Kolen-Pollack: same update for W_l and B_l, both decay
            gb = tuple(g.weights[k + 1] + self.decay * b for k, b in enumerate(params.feedback))
            g = g.with_matrices([gw + self.decay * w for gw, w in zip(g.weights, net.weights)], g.biases)
        else:
            gb = tuple(jnp.zeros_like(b) for b in params.feedback)
        n = batch.x.shape[0]
        metrics = {
            "energy": model.energy(eq.state, data) / n,
            "loss": mse_loss(params(batch.x), batch.y) / n,
            "inference_steps": eq.num_steps.astype(jnp.float32),
            "residual": eq.residual,
            "active_fraction": kkt_residuals(model, eq.state, data)["active_fraction"],
            "feedback_cosine": feedback_cosine(params),
        }
        return PositiveParams(g, gb, params.rate), rule_state, metrics


def feedback_cosine(params: PositiveParams) -> Array:
    r"""The smallest cosine between :math:`\mathrm{vec}(B_l)` and :math:`\mathrm{vec}(W_l)` over the layers (1 for
    ``"symmetric"``): how far the one-way feedback has aligned with the forward weights."""
    ws = params.network.weights[1:]
    if not params.feedback:
        return jnp.ones((), ws[0].dtype if ws else jnp.float32)
    cos = [jnp.sum(b * w) / jnp.maximum(jnp.linalg.norm(b) * jnp.linalg.norm(w), 1e-30) for b, w in zip(params.feedback, ws)]
    return jnp.min(jnp.stack(cos))


def init_positive_params(key, network: Network, feedback: str = "learned", rate: str = "linear", scale: float = 1.0, top_scale: float = 1.0) -> PositiveParams:
    """The network (``W_2..W_L`` times ``top_scale``) plus random feedback matrices (``scale`` times Xavier-normal,
    the shape of ``W_2..W_L``; none for ``"symmetric"``)."""
    if top_scale != 1.0:
        ws = network.weights
        network = network.with_matrices([ws[0], *(top_scale * w for w in ws[1:])], network.biases)
    if feedback == "symmetric":
        return PositiveParams(network, (), rate)
    ws = network.weights[1:]
    keys = jax.random.split(key, max(len(ws), 1))
    return PositiveParams(network, tuple(scale * jnp.sqrt(2.0 / sum(w.shape)) * draws.normal(k, w.shape, w.dtype) for k, w in zip(keys, ws)), rate)


def _predict(params: PositiveParams, x):
    return positive_forward(params.network, x, params.rate)[-1]


@LEARNERS.register("pc/positive")
def pc_positive_learner(*, feedback: str = "learned", rate: str = "relu", activation="linear", decay: float = 1e-3, feedback_scale: float = 0.1, top_scale: float = 0.1, config: RelaxConfig | None = None, steady: bool | None = None, **relax) -> Learner:
    """PC with non-negative rates (projected flow) and one-way feedback weights ``feedback`` = ``"learned"``
    (Kolen–Pollack, weight decay ``decay``), ``"fixed"`` (random) or ``"symmetric"`` (B = W). Hidden predictions
    pass through ``rate`` (ρ = ``"relu"``; ``"linear"``: the convex model without ρ); the activation φ before the
    weights stays linear (the rates are the states), so the prediction is a ReLU network. ``feedback_scale`` and
    ``top_scale`` scale B and ``W_2..W_L`` at the start (times Xavier-normal). Inference: ``relax`` changes fields of
    the fixed-budget ReLU inference of ``pc`` (20 Euler steps of 0.1; :data:`TRAINING` for ``rate="linear"``)."""
    from ..rules.pc import relax_config

    if feedback not in FEEDBACK_MODES:
        raise ValueError(f"feedback must be one of {FEEDBACK_MODES}, got {feedback!r}")
    if rate not in RATES:
        raise ValueError(f"rate must be one of {RATES}, got {rate!r}")
    if not decay >= 0:
        raise ValueError(f"decay must be >= 0, got {decay!r}")
    for name, v in (("feedback_scale", feedback_scale), ("top_scale", top_scale)):
        if not (isinstance(v, (int, float)) and 0 < v < float("inf")):
            raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    rule = PositivePCRule(relax_config(config, steady=steady, activation=rate, **relax), feedback, float(decay))
    return Learner(
        name="pc/positive",
        rule=rule,
        init=lambda key, network: init_positive_params(key, network, feedback, rate, float(feedback_scale), float(top_scale)),
        predict=_predict,
        description="predictive coding with non-negative rates (projected flow) and one-way feedback weights (Alonso & Neftci 2021)",
        defaults={"activation": activation, "lr": 3e-3, "feedback": feedback, "rate": rate, "decay": decay, "feedback_scale": feedback_scale, "top_scale": top_scale},
    )
