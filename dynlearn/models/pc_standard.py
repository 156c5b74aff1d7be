r"""Predictive coding in the standard regime: output clamped, per-layer precisions, prospective configuration.

Millidge, Song, Salvatori, Lukasiewicz & Bogacz, "A theoretical framework for inference and learning in predictive
coding networks", ICLR 2023 (arXiv 2207.12316). The energy with layer precisions :math:`\pi_l` (the paper's
:math:`\Pi_l = \Sigma_l^{-1}`, here a scalar per layer, ``precisions[l-1]``) is

.. math::  F(x, \theta) = \sum_{l=1}^{L} \tfrac{\pi_l}{2}\,\|\varepsilon_l\|^2, \qquad
           \varepsilon_l = x_l - f_l(\varphi_{l-1}(x_{l-1})),

with :math:`x_0` the input and :math:`x_L = y` clamped. Inference is :math:`\dot x = -\partial F/\partial x`;
learning ("prospective configuration") is a weight step on :math:`\partial F/\partial\theta` at the inference
equilibrium — coordinate descent on F, the paper's generalised EM (E: infer x, M: step θ).

Closed forms used by the checks (the paper's Sec. 3):

* :func:`linear_equilibrium` — for a linear network (:math:`\varphi = \mathrm{id}`) every hidden layer satisfies
  :math:`(\pi_l I + \pi_{l+1}W_{l+1}^\top W_{l+1})\,x_l = \pi_l (W_l x_{l-1} + b_l) + \pi_{l+1}W_{l+1}^\top(x_{l+1} - b_{l+1})`:
  a block-tridiagonal linear system, solved with lineax.
* :func:`linear_equilibrium_energy` — the energy there, :math:`F^* = \tfrac12 \sum_n r_n^\top S^{-1} r_n` with
  :math:`r = y - \hat y` (feedforward residual) and :math:`S = \sum_{l=1}^{L}\pi_l^{-1} M_l M_l^\top`,
  :math:`M_l = W_L\cdots W_{l+1}` (:math:`M_L = I`): the marginal covariance of the linear-Gaussian model.
* :func:`tp_targets` / :func:`bp_targets` — the two limits the equilibrium interpolates between as the precision
  ratio :math:`\rho = \pi_l/\pi_{l+1}` sweeps: target propagation's layer inverses (ρ → 0) and a gradient step
  :math:`\hat x_l - (\pi_L/\pi_l)\,\partial L/\partial\hat x_l` of backprop (ρ → ∞).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
from jaxtyping import Array

from ..analysis import bp_deltas
from ..config import TRAINING, RelaxConfig
from ..errors import ShapeError
from ..losses import mse_loss
from ..networks import Network
from .base import Data, EnergyModel, equilibrium
from .pc import PredictiveCoding

#: inverses of the invertible activations, for :func:`tp_targets`
INVERSE_ACTIVATIONS = {"tanh": jnp.arctanh, "linear": lambda v: v, "softplus": lambda v: jnp.log(jnp.expm1(v))}


class PrecisionPC(EnergyModel):
    """Clamped-output PC with a scalar precision per layer (``precisions``, length L, the paper's Π_l).

    The state is ``(x_1, ..., x_{L-1})``; the output is clamped to ``data.y``. With all precisions 1 this is
    :class:`dynlearn.models.pc.PredictiveCoding` with ``output="clamped"``.
    """

    network: Network
    precisions: Array = eqx.field(converter=jnp.asarray)

    def __check_init__(self):
        if self.precisions.shape != (self.network.depth,):
            raise ShapeError(f"precisions must have one value per layer ({self.network.depth}), got shape {self.precisions.shape}")

    @property
    def name(self) -> str:
        return f"PrecisionPC(sizes={self.network.sizes})"

    def _pc(self) -> PredictiveCoding:
        return PredictiveCoding(self.network, "clamped")

    def errors(self, state, data: Data) -> list[Array]:
        """``[ε_1, ..., ε_L]`` (unweighted)."""
        return self._pc().errors(state, data)

    def energy(self, state, data: Data):
        """:math:`\\sum_l \\tfrac{\\pi_l}{2}\\|\\varepsilon_l\\|^2`, summed over the batch."""
        return sum(0.5 * self.precisions[i] * jnp.sum(e**2) for i, e in enumerate(self.errors(state, data)))

    def init_state(self, data: Data):
        return self._pc().init_state(data)

    def validate(self, data: Data) -> None:
        self._pc().validate(data)


def geometric_precisions(ratio, depth: int) -> Array:
    r"""Precisions with the same ratio :math:`\pi_l/\pi_{l+1} = \rho` (``ratio``) at every layer, the largest equal 1:
    :math:`\pi_l = \rho^{L-l}/\max_k \rho^{L-k}` (only ratios matter for the equilibrium; this keeps the flow unstiff)."""
    logs = (depth - jnp.arange(1, depth + 1)) * jnp.log(ratio)
    return jnp.exp(logs - jnp.max(logs))


def _check_linear(network: Network) -> None:
    if not network.is_mlp or network.activation_name != "linear":
        raise ShapeError(f"the closed form is for a linear MLP (activation 'linear'); got {network.activation_name!r}")


def linear_equilibrium(network: Network, x: Array, y: Array, precisions) -> tuple[Array, ...]:
    r"""The inference equilibrium ``(x_1*, ..., x_{L-1}*)`` of a linear PCN with the output clamped to ``y``:
    the block-tridiagonal system of the module docstring for all hidden layers at once (lineax, Cholesky)."""
    _check_linear(network)
    ws, bs, p = network.weights, network.biases, jnp.asarray(precisions)
    sizes = network.sizes
    hidden = sizes[1:-1]
    if not hidden:
        return ()
    offs = [0]
    for n in hidden:
        offs.append(offs[-1] + n)
    dim = offs[-1]
    a = jnp.zeros((dim, dim), ws[0].dtype)
    for k in range(len(hidden)):  # hidden layer l = k + 1
        l = k + 1
        w_up = ws[l]
        sl = slice(offs[k], offs[k + 1])
        a = a.at[sl, sl].set(p[l - 1] * jnp.eye(hidden[k]) + p[l] * w_up.T @ w_up)
        if k + 1 < len(hidden):
            su = slice(offs[k + 1], offs[k + 2])
            a = a.at[sl, su].set(-p[l] * w_up.T)
            a = a.at[su, sl].set(-p[l] * w_up)

    def rhs(x0, yl):
        parts = []
        for k in range(len(hidden)):
            l = k + 1
            r = p[l - 1] * bs[l - 1] - p[l] * ws[l].T @ bs[l]
            if l == 1:
                r = r + p[0] * ws[0] @ x0
            if l == len(hidden):
                r = r + p[l] * ws[l].T @ yl
            parts.append(r)
        return jnp.concatenate(parts)

    op = lx.MatrixLinearOperator(a, lx.positive_semidefinite_tag)
    solve = jax.vmap(lambda x0, yl: lx.linear_solve(op, rhs(x0, yl), lx.Cholesky()).value)
    z = solve(x, y)
    return tuple(z[:, offs[k] : offs[k + 1]] for k in range(len(hidden)))


def linear_equilibrium_energy(network: Network, x: Array, y: Array, precisions) -> Array:
    r""":math:`F^* = \tfrac12\sum_n r_n^\top S^{-1} r_n`, :math:`S = \sum_l \pi_l^{-1} M_l M_l^\top` (module docstring):
    the equilibrium energy of a linear PCN from the feedforward residual alone, without the hidden states."""
    _check_linear(network)
    ws, p = network.weights, jnp.asarray(precisions)
    n_out = network.sizes[-1]
    m = jnp.eye(n_out, dtype=ws[0].dtype)
    s = m / p[-1]
    for l in range(network.depth - 1, 0, -1):  # M_l = M_{l+1} W_{l+1}
        m = m @ ws[l]
        s = s + m @ m.T / p[l - 1]
    r = y - network(x)
    op = lx.MatrixLinearOperator(s, lx.positive_semidefinite_tag)
    sol = jax.vmap(lambda v: lx.linear_solve(op, v, lx.Cholesky()).value)(r)
    return 0.5 * jnp.sum(r * sol)


def tp_targets(network: Network, y: Array) -> tuple[Array, ...]:
    r"""Target propagation's hidden targets with exact layer inverses,
    :math:`t_{L} = y`, :math:`t_{l-1} = \varphi^{-1}(W_l^{-1}(t_l - b_l))` (square, invertible ``W_l``, invertible φ)."""
    if network.activation_name not in INVERSE_ACTIVATIONS:
        raise ShapeError(f"tp_targets needs an invertible activation ({sorted(INVERSE_ACTIVATIONS)}), got {network.activation_name!r}")
    inv = INVERSE_ACTIVATIONS[network.activation_name]
    t, out = y, []
    for l in range(network.depth, 1, -1):
        w, b = network.weights[l - 1], network.biases[l - 1]
        if w.shape[0] != w.shape[1]:
            raise ShapeError(f"tp_targets needs square weights; layer {l} has {w.shape}")
        op = lx.MatrixLinearOperator(w)
        t = inv(jax.vmap(lambda v, op=op: lx.linear_solve(op, v, lx.LU()).value)(t - b))
        out.append(t)
    return tuple(reversed(out))


def bp_targets(network: Network, x: Array, y: Array, precisions) -> tuple[Array, ...]:
    r"""Backprop's gradient-step targets :math:`\hat x_l - (\pi_L/\pi_l)\,\delta_l`, :math:`\delta_l = \partial L/\partial\hat x_l`
    (:func:`dynlearn.analysis.bp_deltas`, :math:`L = \tfrac12\|y-\hat y\|^2`), hidden layers ``1..L-1``."""
    p = jnp.asarray(precisions)
    xhat = network.forward(x)
    deltas = bp_deltas(network, x, y)
    return tuple(xhat[l] - (p[-1] / p[l - 1]) * deltas[l - 1] for l in range(1, network.depth))


def prospective_step(network: Network, state, data: Data, lr, config: RelaxConfig = TRAINING, precisions=None):
    r"""One step of PC learning in the standard regime: infer (from ``state``, warm start) to the clamped equilibrium,
    then :math:`\theta \leftarrow \theta - \eta\,\partial F/\partial\theta` (η = ``lr``). Returns
    ``(network, equilibrium state, F at equilibrium, ‖∂F/∂θ‖)``."""
    p = jnp.ones(network.depth, data.x.dtype) if precisions is None else precisions
    model = PrecisionPC(network, p)
    eq = equilibrium(model, data, config, state0=state)
    grads = model.parameter_gradient(eq.state, data)
    norm = jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(eqx.filter(grads, eqx.is_inexact_array))))
    new = jax.tree.map(lambda w, g: w - lr * g, network, grads)
    return new, eq.state, model.energy(eq.state, data), norm


def bp_loss_and_gradient_norm(network: Network, x: Array, y: Array) -> tuple[Array, Array]:
    """Backprop's loss :math:`L = \\tfrac12\\sum\\|\\hat y - y\\|^2` and the norm of its gradient over all parameters."""
    loss, g = eqx.filter_value_and_grad(lambda n: mse_loss(n(x), y))(network)
    return loss, jnp.sqrt(sum(jnp.sum(v**2) for v in jax.tree.leaves(g)))
