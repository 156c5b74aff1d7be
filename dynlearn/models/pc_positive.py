r"""Predictive coding with non-negative rates and one-way synapses (Alonso & Neftci, "Tightening the biological
constraints on gradient-based predictive coding", ICONS 2021, arXiv 2104.15137).

Hidden activities are firing rates, :math:`x_l \ge 0` (``l = 1..L-1``), and errors travel down through feedback
weights :math:`B_{l+1}` (shape of :math:`W_{l+1}`) that need not equal the forward ones. With the PC energy
:math:`E = \sum_l \tfrac12\|\varepsilon_l\|^2`, :math:`\varepsilon_l = x_l - W_l\varphi(x_{l-1}) - b_l`, the drive of
layer ``l`` is

.. math::  g_l = \varepsilon_l - \varphi'(x_l)\odot B_{l+1}^\top\varepsilon_{l+1}
           \qquad (= \partial E/\partial x_l \text{ when } B = W),

and the rates follow the **projected flow** (projection dynamics of Friesz et al. 1994; Xia & Wang 2000)

.. math::  \dot x = P_+(x - g) - x, \qquad P_+(v) = \max(v, 0).

Why a projected flow and not a reparametrisation :math:`x = \mathrm{softplus}(u)`: the field is Lipschitz (adaptive
diffrax solvers work), the orthant :math:`x \ge 0` is forward-invariant (at :math:`x_i = 0`,
:math:`\dot x_i = \max(-g_i, 0) \ge 0`), its fixed points are exactly the KKT points of
:math:`\min_{x\ge0} E` (:math:`x = P_+(x-g) \iff x \ge 0,\ g \ge 0,\ x\odot g = 0`), and with :math:`B = W` it
decreases the energy, :math:`\dot E \le -\|\dot x\|^2` (the projection inequality). A softplus state can reach
:math:`x_i = 0` only as :math:`u_i \to -\infty`, so complementarity would hold only asymptotically, and the
reparametrisation changes the flow's metric.

The weight update at equilibrium is PC's local rule, in descent sign :math:`\partial E/\partial W_l =
-\varepsilon_l\varphi(x_{l-1})^\top`; feedback weights are ``"fixed"`` (random), ``"learned"`` (they receive the
forward update, transposed into their own shape, plus weight decay on both — the Kolen–Pollack scheme, which drives
:math:`B \to W`), or ``"symmetric"`` (:math:`B = W`, two-way synapses, for comparison).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from ..config import TRAINING, RelaxConfig
from ..losses import mse_loss
from ..networks import Network
from ..rules.base import LEARNERS, Learner, Rule
from .base import Data, DynamicalModel, equilibrium


class PositiveParams(eqx.Module):
    """What :data:`pc/positive` trains: the forward ``network`` and the feedback matrices ``feedback[k]`` standing in
    for :math:`W_{k+2}` in the downward path (shape ``(n_{k+2}, n_{k+1})``)."""

    network: Network
    feedback: tuple

    def __call__(self, x):
        return positive_forward(self.network, x)[-1]

    @property
    def sizes(self):
        return self.network.sizes


def positive_forward(network: Network, x: Array) -> list[Array]:
    r"""The projected feedforward pass :math:`x_l = P_+(f_l(\varphi(x_{l-1})))` for hidden layers, output linear:
    the initial state of the relaxation and the network's prediction."""
    out = [x]
    for l in range(1, network.depth + 1):
        a = network.predict_layer(l, out[-1])
        out.append(a if l == network.depth else jnp.maximum(a, 0.0))
    return out


class PositivePC(DynamicalModel):
    """Clamped-output PC with non-negative hidden rates (projected flow) and feedback matrices ``feedback``
    (``None``: :math:`B = W`, the projected gradient flow of E)."""

    network: Network
    feedback: tuple | None = None

    @property
    def name(self) -> str:
        return f"PositivePC(sizes={self.network.sizes}, feedback={'W' if self.feedback is None else 'B'})"

    def init_state(self, data: Data):
        return tuple(positive_forward(self.network, data.inputs())[1:-1])

    def layers(self, state, data: Data) -> list[Array]:
        return [data.inputs(), *state, data.target()]

    def errors(self, state, data: Data) -> list[Array]:
        xs = self.layers(state, data)
        return [xs[l] - self.network.predict_layer(l, xs[l - 1]) for l in range(1, self.network.depth + 1)]

    def energy(self, state, data: Data):
        """:math:`E = \\sum_l \\tfrac12\\|\\varepsilon_l\\|^2`, summed over the batch."""
        return sum(0.5 * jnp.sum(e**2) for e in self.errors(state, data))

    def drive(self, state, data: Data) -> tuple[Array, ...]:
        r""":math:`g_l = \varepsilon_l - \varphi'(x_l)\odot B_{l+1}^\top\varepsilon_{l+1}` for the hidden layers."""
        eps = self.errors(state, data)
        net = self.network
        mats = net.weights[1:] if self.feedback is None else self.feedback
        out = []
        for k, x in enumerate(state):  # hidden layer l = k + 1
            dphi = jax.jvp(net.phi, (x,), (jnp.ones_like(x),))[1]
            out.append(eps[k] - dphi * (eps[k + 1] @ mats[k]))
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
        return PositivePC(net, model.feedback).energy(state, data)

    return eqx.filter_grad(energy_of)(model.network)


# -- the learner ------------------------------------------------------------------------------------------------

FEEDBACK_MODES = ("learned", "fixed", "symmetric")


class PositivePCRule(Rule):
    """Relax :class:`PositivePC` with the output clamped, then PC's local update (and the feedback's, if learned)."""

    config: RelaxConfig = TRAINING
    feedback: str = eqx.field(static=True, default="learned")
    decay: float = eqx.field(static=True, default=1e-3)

    def update(self, params: PositiveParams, rule_state, batch: Data, key):
        net = params.network
        model = PositivePC(net, None if self.feedback == "symmetric" else params.feedback)
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
        }
        return PositiveParams(g, gb), rule_state, metrics


def init_positive_params(key, network: Network, feedback: str = "learned") -> PositiveParams:
    """The network plus random feedback matrices (Xavier-normal, the shape of ``W_2..W_L``; none for ``"symmetric"``)."""
    if feedback == "symmetric":
        return PositiveParams(network, ())
    ws = network.weights[1:]
    keys = jax.random.split(key, max(len(ws), 1))
    return PositiveParams(network, tuple(jnp.sqrt(2.0 / sum(w.shape)) * jax.random.normal(k, w.shape, w.dtype) for k, w in zip(keys, ws)))


def _predict(params: PositiveParams, x):
    return positive_forward(params.network, x)[-1]


@LEARNERS.register("pc/positive")
def pc_positive_learner(*, feedback: str = "learned", activation="linear", decay: float = 1e-3, config: RelaxConfig | None = None, steady: bool | None = None, **relax) -> Learner:
    """PC with non-negative rates (projected flow) and one-way feedback weights ``feedback`` = ``"learned"``
    (Kolen–Pollack, weight decay ``decay``), ``"fixed"`` (random) or ``"symmetric"`` (B = W). The default
    activation is linear: the rates are the states and the rectification is the constraint (the prediction is then a
    ReLU network). ``relax`` changes fields of the :data:`TRAINING` inference (see ``pc``)."""
    from ..rules.pc import relax_config

    if feedback not in FEEDBACK_MODES:
        raise ValueError(f"feedback must be one of {FEEDBACK_MODES}, got {feedback!r}")
    if not decay >= 0:
        raise ValueError(f"decay must be >= 0, got {decay!r}")
    rule = PositivePCRule(relax_config(config, steady=steady, **relax), feedback, float(decay))
    return Learner(
        name="pc/positive",
        rule=rule,
        init=lambda key, network: init_positive_params(key, network, feedback),
        predict=_predict,
        description="predictive coding with non-negative rates (projected flow) and one-way feedback weights (Alonso & Neftci 2021)",
        defaults={"activation": activation, "lr": 3e-3, "feedback": feedback, "decay": decay},
    )
