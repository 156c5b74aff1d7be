r"""Equilibrium propagation (EP): a layered Hopfield energy, its nudged phases, and three gradient estimators.

Model (Scellier & Bengio 2017, Front. Comput. Neurosci. 11:24). Layers :math:`s_0 = x` (clamped input),
:math:`s_1, \dots, s_L` (free; :math:`s_L` is the output), weights only between adjacent layers:

.. math::  E(s) = \tfrac12 \sum_{l=1}^{L} \|s_l\|^2 - \sum_{l=1}^{L} \rho(s_l)^\top \big(W_l\,\rho_{l-1}(s_{l-1}) + b_l\big),
           \qquad C(s) = \tfrac12 \|y - s_L\|^2, \qquad F = E + \beta\,C,

with :math:`\rho_0 = \mathrm{id}` on the input (the :class:`dynlearn.Network` convention) and :math:`\rho` a
bounded activation (hard sigmoid, logistic or tanh). The dynamics are the plain gradient flow
:math:`\dot s = -\partial F/\partial s`; the factor :math:`\rho'(s_l)` in
:math:`\dot s_l = \rho'(s_l)\odot(W_l\rho(s_{l-1}) + b_l + W_{l+1}^\top\rho(s_{l+1})) - s_l` is part of the
gradient. Everything is summed over the batch.

EP's theorem: with :math:`G(\beta) = \partial F/\partial\theta(s^*_\beta)` and :math:`J(\theta) = C(s^*_0)`,
:math:`dJ/d\theta = G'(0)`. The estimators of :math:`G'(0)` (all return a loss gradient, like ``jax.grad``):

* ``"one_sided"``: :math:`(G(\beta) - G(0))/\beta`, bias :math:`O(\beta)` (Scellier & Bengio 2017);
* ``"symmetric"``: :math:`(G(\beta) - G(-\beta))/2\beta`, bias :math:`O(\beta^2)` (Laborieux et al. 2021,
  Front. Neurosci. 15:633674);
* ``"holomorphic"``: :math:`\beta_k = r e^{2\pi i k/N}`, :math:`\hat g = \mathrm{Re}\,\frac{1}{Nr}\sum_k G(\beta_k)e^{-2\pi ik/N}`,
  the first Fourier coefficient of :math:`G` on the circle, with error :math:`O((r/R)^N)` — exact at finite
  :math:`r` as :math:`N` grows (Laborieux & Zenke 2022, NeurIPS). :math:`N = 2` is the symmetric estimator.

Complex nudged phases are relaxed as real systems in :math:`(\mathrm{Re}\,s, \mathrm{Im}\,s)`: the flow
:math:`-\partial F/\partial s` is holomorphic in :math:`s` for a holomorphic :math:`\rho` (tanh, logistic), and
its real and imaginary parts are integrated by the same :func:`dynlearn.relax` as every other model.

:class:`ContrastiveHebbian` is the layered network of Xie & Seung (2003, Neural Comput. 15:441) whose
contrastive Hebbian learning (CHL) update tends to backprop's gradient as the feedback strength
:math:`\gamma \to 0`.
"""

from __future__ import annotations

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ..dynamics import Equilibrium, polish, relax
from ..errors import NotConvergedError
from ..losses import mse_loss
from ..networks import Network, _matvec, init_network
from .base import DynamicalModel, EnergyModel, equilibrium
from .registry import Learner, register_learner


Rule = Literal["one_sided", "symmetric", "holomorphic"]
RULES = ("one_sided", "symmetric", "holomorphic")
BOUNDED = ("hard_sigmoid", "logistic", "tanh")
HOLOMORPHIC = ("logistic", "tanh")


def _is_complex(tree) -> bool:
    return any(jnp.iscomplexobj(a) for a in jax.tree.leaves(tree))


def _complexify(tree):
    return jax.tree.map(lambda a: a.astype(jnp.result_type(a.dtype, jnp.complex64)) if eqx.is_inexact_array(a) else a, tree)


class HopfieldEP(EnergyModel):
    r"""The layered Hopfield energy of equilibrium propagation (Scellier & Bengio 2017).

    The state is the tuple ``(s_1, ..., s_L)`` of free layers (hidden layers and the output), each
    ``(batch, n_l)`` or ``(n_l,)``; the input ``x`` is clamped. Data are ``(x, y, beta)``: the total
    energy is :math:`F = E + \beta C`. States may be complex (holomorphic EP) when :math:`\rho` is
    holomorphic (tanh, logistic).
    """

    network: Network

    def __check_init__(self):
        if self.network.activation not in BOUNDED:
            raise ValueError(
                f"EP's Hopfield energy needs a bounded activation (one of {BOUNDED}) so that F is bounded below; "
                f"got {self.network.activation!r}"
            )

    @property
    def name(self) -> str:
        return f"HopfieldEP(sizes={self.network.sizes}, rho={self.network.activation!r})"

    def rho(self, s: Array) -> Array:
        return self.network.phi(s)

    def rates(self, state, x) -> list[Array]:
        """``[x, ρ(s_1), ..., ρ(s_L)]`` (identity on the clamped input)."""
        return [x, *(self.rho(s) for s in state)]

    def hopfield_energy(self, state, x) -> Array:
        """:math:`E(s)`, without the cost."""
        r = self.rates(state, x)
        e = sum(0.5 * jnp.sum(s * s) for s in state)  # s*s, not |s|^2: holomorphic in s
        for l in range(1, self.network.depth + 1):
            e = e - jnp.sum(r[l] * (_matvec(self.network.weights[l - 1], r[l - 1]) + self.network.biases[l - 1]))
        return e

    def cost(self, state, y) -> Array:
        r""":math:`C = \tfrac12\|y - s_L\|^2`, summed over the batch."""
        d = y - state[-1]
        return 0.5 * jnp.sum(d * d)

    def energy(self, state, x, y=None, beta=0.0):
        e = self.hopfield_energy(state, x)
        if y is not None:
            e = e + beta * self.cost(state, y)
        return e

    def vector_field(self, t, state, x, y=None, beta=0.0):
        r""":math:`-\partial F/\partial s` (the complex derivative for complex states)."""
        cplx = _is_complex(state)
        if cplx:
            state = _complexify(state)
        grads = jax.grad(self.energy, holomorphic=cplx)(state, x, y, beta)
        return jax.tree.map(jnp.negative, grads)

    def parameter_gradient(self, state, x, y=None, beta=0.0) -> Network:
        r""":math:`\partial F/\partial\theta = \partial E/\partial\theta` at ``state`` (complex for complex states)."""
        if not _is_complex(state):
            return super().parameter_gradient(state, x, y, beta)

        def energy_of(network):
            return eqx.tree_at(lambda m: m.network, self, network).energy(state, x, y, beta)

        return jax.grad(energy_of, holomorphic=True)(_complexify(self.network))

    def init_state(self, x: Array) -> tuple[Array, ...]:
        """All free layers at zero."""
        batch = x.shape[:-1]
        return tuple(jnp.zeros((*batch, n), x.dtype) for n in self.network.sizes[1:])

    def output(self, state) -> Array:
        return state[-1]

    def hessian_min_eigenvalues(self, state, x) -> Array:
        r"""Smallest eigenvalue of :math:`\partial^2 E/\partial s^2` per sample (``(batch,)`` or ``()``).

        Positive everywhere ⇔ ``state`` is a strict local minimum, a linearly stable equilibrium of the flow.
        """
        single = x.ndim == 1
        xs = x[None] if single else x
        st = tuple(s[None] for s in state) if single else state

        def one(s_flat, xi):
            sizes = self.network.sizes[1:]
            split = jnp.split(s_flat, np.cumsum(sizes)[:-1])
            return self.hopfield_energy(tuple(split), xi)

        flat = jnp.concatenate(st, axis=-1)
        hess = jax.vmap(jax.hessian(one))(flat, xs)
        ev = jnp.linalg.eigvalsh(hess)[:, 0]
        return ev[0] if single else ev


# ----------------------------------------------------------------------------- phases


def _split_flow(t, y, args):
    """A holomorphic flow ``f(z)`` written as a real flow on ``(Re z, Im z)``."""
    re, im = y
    model, x, target, (beta_re, beta_im) = args
    z = jax.tree.map(lambda a, b: a + 1j * b, re, im)
    f = model.vector_field(t, z, x, target, beta_re + 1j * beta_im)
    return jax.tree.map(jnp.real, f), jax.tree.map(jnp.imag, f)


def _relax_any(model, state0, x, y, beta, *, polish_: bool, relax_options: dict) -> Equilibrium:
    """Relax (and optionally polish) with data ``(x, y, beta)``; complex ``beta`` relaxes the split real system."""
    relax_options = dict(relax_options)
    relax_options.setdefault("name", model.name)
    name = relax_options["name"]
    args = (model, x, y, beta)
    if jnp.iscomplexobj(beta):
        args = (model, x, y, (jnp.real(beta), jnp.imag(beta)))  # real arrays only: diffrax sees a real system
        y0 = (jax.tree.map(jnp.real, state0), jax.tree.map(jnp.imag, state0))
        eq = relax(_split_flow, y0, args, **relax_options)
        if polish_:
            eq = polish(_split_flow, eq, args, name=name, throw=relax_options.get("throw", True))
        re, im = eq.state
        return eqx.tree_at(lambda e: e.state, eq, jax.tree.map(lambda a, b: a + 1j * b, re, im))
    return equilibrium(model, x, y, beta, state0=state0, polish=polish_, **relax_options)


def free_phase(model: HopfieldEP, x, y=None, *, state0=None, polish: bool = False, **relax_options) -> Equilibrium:
    r"""The free equilibrium :math:`s^*_0` (:math:`\beta = 0`), relaxed from ``state0`` (default: zeros).

    ``polish=True`` finishes with Newton's method to residual 1e-12 (theorem checks need it: the error
    floor of a finite-β estimator is residual/β). Raises :class:`NotConvergedError` / :class:`DivergedError`.
    """
    state0 = model.init_state(x) if state0 is None else state0
    return _relax_any(model, state0, x, y, jnp.zeros((), jnp.result_type(float)), polish_=polish, relax_options=relax_options)


def nudged_phase(model: HopfieldEP, x, y, beta, *, state0, polish: bool = False, **relax_options) -> Equilibrium:
    r"""The nudged equilibrium :math:`s^*_\beta` of :math:`F = E + \beta C`, relaxed from ``state0``
    (normally the free equilibrium). ``beta`` may be negative or complex."""
    beta = jnp.asarray(beta)
    if jnp.iscomplexobj(beta):
        state0 = _complexify(state0)
    return _relax_any(model, state0, x, y, beta, polish_=polish, relax_options=relax_options)


def nudge_points(rule: str, beta, n_points: int = 4):
    r"""The nudges :math:`\beta_k`, their weights :math:`c_k` and the free-phase weight :math:`c_0` of a rule:
    :math:`\hat g = c_0 G(0) + \sum_k c_k G(\beta_k)`."""
    if rule not in RULES:
        raise ValueError(f"unknown EP rule {rule!r}; choose one of {RULES}")
    if not isinstance(beta, jax.core.Tracer):
        b = np.asarray(beta)
        if b.ndim != 0 or not np.isfinite(b) or b == 0:
            raise ValueError(f"EP divides by beta: it must be a finite nonzero number, got {beta!r}")
        if rule == "holomorphic" and b <= 0:
            raise ValueError(f"holomorphic EP needs a radius beta > 0, got {beta!r}")
    if rule == "one_sided":
        return jnp.reshape(jnp.asarray(beta), (1,)), jnp.reshape(1.0 / jnp.asarray(beta), (1,)), -1.0 / beta
    if rule == "symmetric":
        betas = jnp.stack([jnp.asarray(beta), -jnp.asarray(beta)])
        return betas, jnp.stack([0.5 / beta, -0.5 / beta]), 0.0
    if int(n_points) < 2:
        raise ValueError(f"holomorphic EP needs n_points >= 2, got {n_points}")
    k = jnp.arange(int(n_points))
    phase = jnp.exp(2j * jnp.pi * k / n_points)
    return beta * phase, jnp.conj(phase) / (n_points * beta), 0.0


def nudged_gradients(model: HopfieldEP, x, y, betas, *, free_state, polish: bool = False, **relax_options):
    r""":math:`G(\beta_k) = \partial F/\partial\theta(s^*_{\beta_k})` for every ``betas[k]``, each nudged phase
    relaxed from ``free_state``; one compiled relaxation, vmapped over β.

    Returns ``(G, residuals, status)``: ``G`` is a :class:`Network` with a leading β axis on every leaf.
    """
    return _nudged_gradients(model, x, y, jnp.asarray(betas), free_state, polish, relax_options)


@eqx.filter_jit
def _nudged_gradients(model, x, y, betas, free_state, polish, relax_options):
    relax_options = dict(relax_options)

    def one(beta):
        eq = nudged_phase(model, x, y, beta, state0=free_state, polish=polish, **relax_options)
        return model.parameter_gradient(eq.state, x, y, beta), eq.residual, eq.status

    grads, residual, status = jax.vmap(one)(betas)
    return grads, residual, status


def _check_phase(residual, status, what: str, tol) -> None:
    if isinstance(status, jax.core.Tracer):
        return
    status, residual = np.atleast_1d(np.asarray(status)), np.atleast_1d(np.asarray(residual))
    if np.any(status != 0) or not np.all(np.isfinite(residual)):
        bad = int(np.argmax((status != 0) | ~np.isfinite(residual)))
        raise NotConvergedError(
            f"EP {what} phase did not converge (nudge #{bad}: residual max|ds/dt| = {residual[bad]:.3e}, tol {tol}); "
            "increase t1/max_steps, lower beta, or check that the network is contracting"
        )


def ep_gradient(
    model: HopfieldEP,
    x,
    y,
    *,
    rule: str = "symmetric",
    beta: float = 0.1,
    n_points: int = 4,
    free_state=None,
    polish: bool = False,
    check_stability: bool = False,
    **relax_options,
) -> tuple[Network, dict]:
    r"""EP's estimate of :math:`dJ/d\theta` (a loss gradient) with ``rule`` in ``one_sided``, ``symmetric``,
    ``holomorphic`` (``n_points`` nudges on the circle of radius ``beta``).

    Returns ``(grads, info)``; ``info`` has the free state, the free residual and the nudged residuals.
    Raises ``ValueError`` for ``beta = 0`` or an unknown rule, :class:`NotConvergedError` when a phase does
    not converge or (``check_stability=True``) when the free equilibrium is not a strict minimum of E.
    Jit-able (errors then become equinox runtime errors).
    """
    model.network.validate_inputs(x, y)
    if rule == "holomorphic" and model.network.activation not in HOLOMORPHIC:
        raise ValueError(f"holomorphic EP needs a holomorphic activation {HOLOMORPHIC}, got {model.network.activation!r}")
    betas, coefs, c0 = nudge_points(rule, beta, n_points)
    if free_state is None:
        free = free_phase(model, x, y, polish=polish, **relax_options)
        free_state, free_res = free.state, free.residual
        _check_phase(free.residual, free.status, "free", relax_options.get("tol", 1e-6))
    else:
        free_res = jnp.max(jnp.stack([jnp.max(jnp.abs(f)) for f in model.vector_field(0.0, free_state, x, y, 0.0)]))
    if check_stability and not isinstance(free_res, jax.core.Tracer):
        lam = np.asarray(model.hessian_min_eigenvalues(free_state, x))
        if np.any(lam <= 0):
            raise NotConvergedError(
                f"EP free equilibrium is not a stable minimum (smallest Hessian eigenvalue {lam.min():.3e} <= 0): "
                "the network is not contracting; reduce the weights"
            )
    traced = any(isinstance(a, jax.core.Tracer) for a in jax.tree.leaves((model, x, y, free_state)))
    nudged_options = relax_options if traced else {**relax_options, "throw": False}  # concrete: report below
    grads, residuals, status = nudged_gradients(model, x, y, betas, free_state=free_state, polish=polish, **nudged_options)
    _check_phase(residuals, status, "nudged", relax_options.get("tol", 1e-6))
    est = jax.tree.map(lambda g: jnp.tensordot(coefs.astype(g.dtype) if jnp.iscomplexobj(g) else coefs, g, axes=1), grads)
    est = jax.tree.map(lambda e: jnp.real(e), est)
    if rule == "one_sided":
        g0 = model.parameter_gradient(free_state, x, y, 0.0)
        est = jax.tree.map(lambda e, g: e + c0 * g, est, g0)
    return est, {"free_state": free_state, "free_residual": free_res, "nudged_residual": jnp.max(residuals)}


# ----------------------------------------------------------------------------- contrastive Hebbian learning


class ContrastiveHebbian(DynamicalModel):
    r"""Layered network with weak symmetric feedback (Xie & Seung 2003, Neural Comput. 15:441).

    Pre-activations :math:`u_l` of layers :math:`l = 1..L`, rates :math:`r_0 = x`, :math:`r_l = \varphi(u_l)`
    (hidden), :math:`r_L = u_L` (linear output, the :class:`dynlearn.Network` convention), and

    .. math::  \dot u_l = -u_l + W_l r_{l-1} + b_l + \gamma\, W_{l+1}^\top r_{l+1}, \qquad l < L,

    :math:`\dot u_L = -u_L + W_L r_{L-1} + b_L` when the output is free; ``clamped=True`` fixes
    :math:`r_L = y`. The equilibria are the critical points of the layer-weighted Hopfield energy
    :math:`\sum_l \gamma^{l}[\sum_i \int^{r_{l,i}}\varphi^{-1} - r_l^\top(W_l r_{l-1} + b_l)]`. As
    :math:`\gamma\to 0` the free phase is the feedforward pass and the CHL update
    :math:`-\gamma^{-(L-l)}(r^c_l r^{c\top}_{l-1} - r^f_l r^{f\top}_{l-1})` tends to backprop's
    :math:`\partial L/\partial W_l` with :math:`L = \tfrac12\|\hat x_L - y\|^2`, with relative error :math:`O(\gamma)`.
    Data are ``(x, y, gamma)``.
    """

    network: Network
    clamped: bool = eqx.field(static=True, default=False)

    @property
    def name(self) -> str:
        return f"ContrastiveHebbian(sizes={self.network.sizes}, clamped={self.clamped})"

    def rates(self, state, x, y):
        net = self.network
        u = list(state) + ([y] if self.clamped else [])
        return [x] + [net.phi(v) for v in u[:-1]] + [u[-1]]

    def vector_field(self, t, state, x, y=None, gamma=0.0):
        net = self.network
        r = self.rates(state, x, y)
        out = []
        for l in range(1, len(state) + 1):
            drive = _matvec(net.weights[l - 1], r[l - 1]) + net.biases[l - 1]
            if l < net.depth:
                drive = drive + gamma * _matvec(net.weights[l].T, r[l + 1])
            out.append(drive - state[l - 1])
        return tuple(out)

    def init_state(self, x):
        """The feedforward pass (pre-activations), restricted to the free layers."""
        xs = self.network.forward(x)[1:]
        return tuple(xs[:-1]) if self.clamped else tuple(xs)


def chl_gradient(network: Network, x, y, gamma, *, polish: bool = False, **relax_options) -> Network:
    r"""The CHL estimate of :math:`\partial L/\partial\theta`: free and clamped phases at feedback ``gamma``,
    :math:`g_{W_l} = -\gamma^{-(L-l)}(r^c_l r^{c\top}_{l-1} - r^f_l r^{f\top}_{l-1})`, :math:`g_{b_l} = -\gamma^{-(L-l)}(r^c_l - r^f_l)`."""
    gamma = jnp.asarray(gamma)
    rates = []
    for clamped in (False, True):
        model = ContrastiveHebbian(network, clamped)
        eq = equilibrium(model, x, y, gamma, polish=polish, **relax_options)
        rates.append(model.rates(eq.state, x, y))
    free, clamp = rates
    L = network.depth
    ws, bs = [], []
    for l in range(1, L + 1):
        scale = -(gamma ** (-(L - l)))
        outer = lambda r: jnp.einsum("...i,...j->ij", r[l], r[l - 1])
        ws.append(scale * (outer(clamp) - outer(free)))
        bs.append(scale * jnp.sum(jnp.reshape(clamp[l] - free[l], (-1, clamp[l].shape[-1])), axis=0))
    return Network(tuple(ws), tuple(bs), network.activation)



# ----------------------------------------------------------------------------- learner


@register_learner("ep")
def ep_learner(
    *,
    rule: str = "symmetric",
    beta: float | None = None,
    n_points: int = 4,
    activation: str = "tanh",
    solver: str = "tsit5",
    t1: float = 1000.0,
    tol: float = 1e-3,
    rtol: float = 1e-4,
    atol: float = 1e-6,
    max_steps: int = 8192,
    init_gain: float = 1.0,
) -> Learner:
    r"""Equilibrium propagation on the layered Hopfield energy: free phase, nudged phase(s), EP estimate.

    ``rule`` is ``"one_sided"`` (free + one nudged phase), ``"symmetric"`` (phases at ±β) or
    ``"holomorphic"`` (``n_points`` complex nudges of modulus β; needs tanh or logistic). ``beta`` defaults to
    0.5 for the real rules and 0.05 for holomorphic EP, whose estimate is exact at any radius inside the disc
    where β ↦ s*_β is analytic; with larger radii the complex relaxation of a trained network can run into
    the poles of tanh and fail to settle (a clear error, not NaNs). Prediction is the output layer of the
    free equilibrium.
    """
    if beta is None:
        beta = 0.05 if rule == "holomorphic" else 0.5
    if rule not in RULES:
        raise ValueError(f"unknown EP rule {rule!r}; choose one of {RULES}")
    if activation not in BOUNDED:
        raise ValueError(f"EP needs a bounded activation {BOUNDED}, got {activation!r}")
    if rule == "holomorphic" and activation not in HOLOMORPHIC:
        raise ValueError(f"holomorphic EP needs a holomorphic activation {HOLOMORPHIC}, got {activation!r}")
    nudge_points(rule, beta, n_points)  # validates beta
    relax_kw = dict(solver=solver, t1=t1, tol=tol, rtol=rtol, atol=atol, max_steps=max_steps)

    def update(network: Network, x, y):
        model = HopfieldEP(network)
        grads, info = ep_gradient(model, x, y, rule=rule, beta=beta, n_points=n_points, **relax_kw)
        out = info["free_state"][-1]
        metrics = {"loss": mse_loss(out, y) / x.shape[0], "free_residual": info["free_residual"], "nudged_residual": info["nudged_residual"]}
        return grads, metrics

    def predict(network: Network, x):
        model = HopfieldEP(network)
        return free_phase(model, x, **relax_kw).state[-1]

    def init(key, sizes):
        return init_network(sizes, key=key, activation=activation, gain=init_gain)

    return Learner(
        name=f"ep/{rule}",
        init=init,
        update=update,
        predict=predict,
        description="equilibrium propagation on a layered Hopfield energy (one_sided, symmetric or holomorphic nudging)",
        defaults={"rule": rule, "beta": beta, "n_points": n_points, "activation": activation, **relax_kw, "init_gain": init_gain},
    )


__all__ = [
    "ContrastiveHebbian",
    "HopfieldEP",
    "RULES",
    "chl_gradient",
    "ep_gradient",
    "ep_learner",
    "free_phase",
    "nudge_points",
    "nudged_gradients",
    "nudged_phase",
]
