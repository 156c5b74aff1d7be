r"""Phaseless Alignment Learning (PAL): backward weights learned from the neurons' own noise, as an SDE.

Max, Kriener, García Pineda, Sacramento, Senn & Petrovici (2024), "Learning efficient backprojections across
cortical hierarchies in real time", Nature Machine Intelligence 6:619–630 (arXiv 2212.10249). This module writes
PAL on a layered rate network with prospective (latent-equilibrium) rates (Haider et al. 2021, NeurIPS), integrated
as one additive-noise SDE by :func:`dynlearn.simulate` (:mod:`dynlearn.models.pal_simulation`). Layers ``l = 0..N`` (input ``0``, output ``N``); times in ms.

State :class:`PALState`: forward weights and biases (a :class:`dynlearn.Network`), backward matrices
:math:`B_l` (``(n_l, n_{l+1})``, the shape of :math:`W_{l+1}^\top`, ``l = 1..N-1``), somatic potentials :math:`u_l`,
Ornstein–Uhlenbeck noise :math:`\xi_l` of the hidden layers and low-pass filtered rates :math:`\bar r_l` (``l = 2..N``).

.. math::

   v_l &= W_l \rho_{l-1} + b_l, \qquad \rho_0 = x(t) \\
   \tau\,\dot u_l &= -u_l + g_B v_l + g_A \xi_l \quad (l<N), \qquad \tau\,\dot u_N = -u_N + g_{out} v_N \\
   \breve u_l &= u_l + \tau \dot u_l \quad\text{(prospective potential, computed from the vector field)}, \qquad
   \rho_l = \varphi(\breve u_l)\ (l<N), \ \rho_N = \breve u_N \text{ or } \varphi(\breve u_N) \\
   d\xi_l &= -\xi_l/\tau_\xi\,dt + (\sigma/\sqrt{\tau_\xi})\,dW_l \qquad\text{(stationary variance } \sigma^2/2) \\
   \tau_{HP}\,\dot{\bar r}_l &= \rho_l - \bar r_l, \qquad r^{HP}_l = \rho_l - \bar r_l \quad\text{(high-pass filter)} \\
   \dot B_l &= \eta_{bw}\big(\xi_l (r^{HP}_{l+1})^\top - \alpha B_l\big) \qquad\text{(the PAL rule)} \\
   e_N &= \beta\, g_{out}\, \rho_N' \odot (y - \rho_N), \qquad e_l = g_B\,\varphi'(\breve u_l) \odot B_l e_{l+1} \\
   \dot W_l &= \eta_{fw}\, e_l \rho_{l-1}^\top, \qquad \dot b_l = \eta_{fw} e_l \ \text{(unless ``learn_bias=False``)} .

The noise reaches the next layer undelayed because rates are prospective (:math:`\breve u` follows the drive
instantly although :math:`\tau = 5.3` ms); the high-pass filter removes the slow stimulus-driven part of the upper
rate, so :math:`\langle \xi_l (r^{HP}_{l+1})^\top\rangle \propto \sigma^2 \varphi'_l W_{l+1}^\top \varphi'_{l+1}` and
:math:`B_l` aligns with :math:`W_{l+1}^\top` (fixed point :math:`B^* = \langle\xi r^{HP\top}\rangle/\alpha`). With
``prospective=False`` rates are :math:`\varphi(u)` and the fast noise is low-passed by :math:`\tau` (an ablation).

The protocol: ``vector_field(t, state, data)`` reads the input :math:`x(t)` = ``data.inputs(t)``, the target
:math:`y` = ``data.target(t)`` (``None``: no teacher, all errors zero) and PAL's output nudging strength
:math:`\beta` = ``data.nudge``. ``init_state(data)`` settles the model's initial weights (``PAL(network=...,
feedback=...)``) at the noise-free response to ``data.x``; :func:`pal_state` does the same for any weights.

Errors are dendritic: they drive plasticity but not the rates sent upward (the weak-feedback, error-neuron form of
latent equilibrium used by the authors' GLE-PAL layers). With :math:`B_l = W_{l+1}^\top` the forward rule is
:math:`-\beta\,\partial L/\partial W` for :math:`L = \tfrac12\|y - \hat x_N\|^2` (backprop); with :math:`B` fixed
(``eta_bw = 0``) it is feedback alignment in continuous time.

Defaults are the reference values for the 5-20-10-20-5 experiment (Fig. 3a–c; authors' code ``PAL MC``):
conductances :math:`g_l, g_B, g_A = 0.03, 0.1, 0.06` give :math:`\tau = 1/0.19` ms, :math:`g_B\tau = 0.526`,
:math:`g_A\tau = 0.316`; :math:`\tau_\xi = \tau_{HP} = 0.1` ms, :math:`\sigma = 0.05`, :math:`\alpha = 10^{-5}`,
:math:`\eta_{bw} = 50`, :math:`dt = 0.01` ms and patterns presented for :math:`T_{pres} = 1` ms
(output nudging :math:`\beta = 1`), with a linear output of unit gain (:math:`g_{out} = 1`, ``rate_output=False``).
The authors' output unit is logistic with gain :math:`g_{out} = g_B/(g_l+g_B) = 0.769` (its drive without a
teacher): ``PAL(output_gain=G_BASAL / (G_LEAK + G_BASAL), rate_output=True)``, see :data:`REFERENCE_OUTPUT`.
"""


from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array

from ..errors import ConfigError, ShapeError
from ..networks import Network, init_network, matvec
from .base import Data, DynamicalModel
from .. import draws

# reference conductances (PAL MC defaults)
G_LEAK, G_BASAL, G_APICAL = 0.03, 0.1, 0.06
TAU_EFF = 1.0 / (G_LEAK + G_BASAL + G_APICAL)
#: the authors' output layer: a logistic rate of its basal drive, gain g_B / (g_l + g_B) without a teacher
REFERENCE_OUTPUT = dict(output_gain=G_BASAL / (G_LEAK + G_BASAL), rate_output=True)
#: the authors' discrete update pairs the noise of step n with the high-passed rate its step n-4 caused (dt = 0.01 ms)
REFERENCE_LAG = dict(rule_lag=0.04, rule_lag_stages=4)


def _dphi(network: Network, a: Array) -> Array:
    """Elementwise derivative φ'(a) (forward mode, any shape)."""
    return jax.jvp(network.phi, (a,), (jnp.ones_like(a),))[1]


def _f(x):
    return eqx.field(converter=jnp.asarray, default=x)


def feedback_shapes(sizes) -> tuple[tuple[int, int], ...]:
    """Shapes of PAL's backward matrices ``B_1..B_{N-1}``: ``B_l`` has the shape of ``W_{l+1}ᵀ``, ``(n_l, n_{l+1})``."""
    return tuple((a, b) for a, b in zip(sizes[1:-1], sizes[2:]))


class PALState(eqx.Module):
    """The full PAL state (see the module docstring); every part evolves in one SDE.

    ``rlag[l-2]`` has shape ``(k, n_l)`` for ``l = 2..N``: the stages of the B rule's lag (``k = rule_lag_stages``;
    ``(0, n_l)`` when there is none). :func:`pal_state` builds every part.
    """

    network: Network
    feedback: tuple[Array, ...]
    u: tuple[Array, ...]
    xi: tuple[Array, ...]
    rbar: tuple[Array, ...]
    rlag: tuple[Array, ...]

    def __check_init__(self):
        sizes = self.network.sizes
        want_b = feedback_shapes(sizes)
        got_b = tuple(tuple(b.shape[-2:]) for b in self.feedback)
        if got_b != want_b:
            raise ShapeError(
                f"PAL: backward matrices B_l must have the shape of W_(l+1)^T, {want_b} for layer sizes {sizes}; got {got_b}"
            )
        parts = [("u", self.u, sizes[1:]), ("xi", self.xi, sizes[1:-1]), ("rbar", self.rbar, sizes[2:])]
        for name, arrs, want in parts + [("rlag", self.rlag, sizes[2:])]:
            got = tuple(a.shape[-1] for a in arrs)
            if got != tuple(want):
                raise ShapeError(f"PAL: state part {name!r} has widths {got}, expected {tuple(want)} for layer sizes {sizes}")


class PAL(DynamicalModel):
    """PAL dynamics and parameters (array-valued, so models differing only in numbers share one compilation).

    ``network`` and ``feedback`` are optional initial weights, used only by :meth:`init_state`; the weights that
    evolve live in the :class:`PALState`. The output nudging strength β is not a model parameter: it is
    ``data.nudge`` (see the module docstring).
    """

    tau: Array = _f(TAU_EFF)
    tau_xi: Array = _f(0.1)
    tau_hp: Array = _f(0.1)
    sigma: Array = _f(0.05)
    alpha: Array = _f(1e-5)
    eta_bw: Array = _f(50.0)
    eta_fw: Array = _f(0.0)
    basal_gain: Array = _f(G_BASAL * TAU_EFF)
    apical_gain: Array = _f(G_APICAL * TAU_EFF)
    output_gain: Array = _f(1.0)
    rate_output: bool = eqx.field(static=True, default=False)
    rule_lag: Array = _f(0.0)
    rule_lag_stages: int = eqx.field(static=True, default=0)
    prospective: bool = eqx.field(static=True, default=True)
    learn_bias: bool = eqx.field(static=True, default=True)
    network: Network | None = None
    feedback: tuple[Array, ...] | None = None

    def __check_init__(self):
        for name in ("tau", "tau_xi", "tau_hp"):
            v = getattr(self, name)
            if not isinstance(v, jax.core.Tracer) and np.any(np.asarray(v) <= 0):
                raise ValueError(f"PAL: {name} must be positive, got {v}")
        for name in ("sigma", "alpha", "eta_bw", "eta_fw", "output_gain"):
            v = getattr(self, name)
            if not isinstance(v, jax.core.Tracer) and np.any(np.asarray(v) < 0):
                raise ValueError(f"PAL: {name} must be non-negative, got {v}")
        if not isinstance(self.rule_lag_stages, int) or self.rule_lag_stages < 0:
            raise ValueError(f"PAL: rule_lag_stages must be an integer >= 0, got {self.rule_lag_stages!r}")
        if self.rule_lag_stages and not isinstance(self.rule_lag, jax.core.Tracer) and np.any(np.asarray(self.rule_lag) <= 0):
            raise ValueError(f"PAL: rule_lag must be positive when rule_lag_stages = {self.rule_lag_stages}, got {self.rule_lag}")

    @property
    def name(self) -> str:
        return f"PAL(prospective={self.prospective})"

    def dynamics_only(self) -> PAL:
        """The same dynamics without the initial weights (what a simulation carries and batches)."""
        return self if self.network is None and self.feedback is None else dataclasses.replace(self, network=None, feedback=None)

    def predict(self, network: Network, x: Array) -> Array:
        """The noise-free network function: ``ρ_l = φ(g_B (W_l ρ_{l-1} + b_l))`` for hidden layers, output
        ``ρ_N = g_out (W_N ρ_{N-1} + b_N)`` (linear) or ``φ(g_out (W_N ρ_{N-1} + b_N))`` (``rate_output=True``)."""
        rho = x
        for l in range(1, network.depth + 1):
            v = network.apply(l, rho)
            rho = network.phi(self.basal_gain * v) if l < network.depth else self._output_rate(network, self.output_gain * v)
        return rho

    def _output_rate(self, network: Network, a: Array) -> Array:
        return network.phi(a) if self.rate_output else a

    # ------------------------------------------------------------------ dynamics

    def layers(self, y: PALState, x: Array):
        """Bottom-up sweep: ``(du/dt, prospective potentials ŭ, rates ρ_0..ρ_N)``.

        ``ŭ_l = u_l + τ du_l/dt`` is computed from the vector field of layer ``l``, whose drive uses the already
        computed rate of layer ``l-1`` (prospective mode); with ``prospective=False`` rates are ``φ(u)``.
        """
        net = y.network
        n = net.depth
        rho, dus, uh = [x], [], []
        for l in range(1, n + 1):
            v = net.apply(l, rho[-1])
            drive = self.basal_gain * v + self.apical_gain * y.xi[l - 1] if l < n else self.output_gain * v
            du = (drive - y.u[l - 1]) / self.tau
            a = y.u[l - 1] + self.tau * du if self.prospective else y.u[l - 1]
            dus.append(du)
            uh.append(a)
            rho.append(net.phi(a) if l < n else self._output_rate(net, a))
        return dus, uh, rho

    def errors(self, y: PALState, uh, target, nudge):
        """Dendritic errors ``e_1..e_N``: ``e_N = β g_out ρ'_N ⊙ (y − ρ_N)`` with β = ``nudge`` (``ρ'_N = 1`` for a
        linear output, ``φ'(ŭ_N)`` for a rate output: ``e_N = −β ∂L/∂v_N``), ``e_l = g_B φ'(ŭ_l) ⊙ B_l e_{l+1}``
        (zero without a target)."""
        n = y.network.depth
        if target is None:
            return [jnp.zeros_like(a) for a in uh]
        out = self._output_rate(y.network, uh[-1])
        slope = _dphi(y.network, uh[-1]) if self.rate_output else 1.0
        es = [nudge * self.output_gain * slope * (target - out)]
        for l in range(n - 1, 0, -1):
            dphi = _dphi(y.network, uh[l - 1])
            es.append(self.basal_gain * dphi * matvec(y.feedback[l - 1], es[-1]))
        return es[::-1]

    def vector_field(self, t, y: PALState, data: Data) -> PALState:
        """The drift of the PAL SDE at input ``data.inputs(t)``, target ``data.target(t)`` and β = ``data.nudge``."""
        dus, uh, rho = self.layers(y, data.inputs(t))
        n = y.network.depth
        rhp = [rho[l] - y.rbar[l - 2] for l in range(2, n + 1)]
        drbar = [h / self.tau_hp for h in rhp]
        dxi = [-xi / self.tau_xi for xi in y.xi]
        pre, drlag = self.lagged(y, rhp)
        dB = [self.eta_bw * (jnp.outer(y.xi[l], pre[l]) - self.alpha * y.feedback[l]) for l in range(n - 1)]
        es = self.errors(y, uh, data.target(t), data.nudge)
        dW = tuple(self.eta_fw * jnp.outer(es[l], rho[l]) for l in range(n))
        db = tuple(self.eta_fw * es[l] * (1.0 if self.learn_bias else 0.0) for l in range(n))
        return PALState(y.network.with_matrices(dW, db), tuple(dB), tuple(dus), tuple(dxi), tuple(drbar), drlag)

    def lagged(self, y: PALState, rhp):
        r"""``(presynaptic rates of the B rule, d rlag/dt)``: ``r^HP`` itself, or with ``rule_lag_stages = k > 0`` its
        copy through a chain of ``k`` low-pass stages of time constant ``rule_lag / k`` (a delay of mean ``rule_lag``:
        :math:`\tau_s \dot z_1 = r^{HP} - z_1,\ \tau_s \dot z_j = z_{j-1} - z_j`, the rule reads :math:`z_k`).
        Euler with ``dt = rule_lag / k`` makes it an exact delay of ``k`` steps, which is how the authors' discrete
        code pairs the noise with the high-passed rate (see ``theory/pal_reference_fig3.md``)."""
        if not self.rule_lag_stages:  # rlag holds (0, n) arrays: never the shared empty tuple, which tree_at mistakes
            return rhp, tuple(jnp.zeros_like(z) for z in y.rlag)
        tau_s = self.rule_lag / self.rule_lag_stages
        into = [jnp.concatenate([h[None], z[:-1]]) for h, z in zip(rhp, y.rlag)]
        return [z[-1] for z in y.rlag], tuple((i - z) / tau_s for i, z in zip(into, y.rlag))

    def noise_shape(self, y: PALState) -> tuple[jax.ShapeDtypeStruct, ...]:
        """The Brownian motion drives only the OU noise: one entry per hidden unit."""
        return tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in y.xi)

    def noise_operator(self, y: PALState) -> lx.AbstractLinearOperator:
        """Additive noise: ``dW ↦`` a state whose ``ξ`` part is ``σ/√τ_ξ · dW`` and every other part zero."""
        scale = self.sigma / jnp.sqrt(self.tau_xi)
        zero = jax.tree.map(jnp.zeros_like, y)

        def apply(dw):
            return eqx.tree_at(lambda s: s.xi, zero, tuple(scale * d for d in dw))

        return lx.FunctionLinearOperator(apply, self.noise_shape(y))

    def noise_operator_dense(self, y: PALState) -> lx.AbstractLinearOperator:
        """The same map as :meth:`noise_operator` as a PyTree of arrays (what the stochastic Runge–Kutta solvers
        ShARK/SRA1/SEA need, since they carry the diffusion through their internal loops)."""
        scale = self.sigma / jnp.sqrt(self.tau_xi)
        noise = self.noise_shape(y)

        def block(out_leaf, is_xi_index=None):
            return tuple(
                (scale * jnp.eye(n.shape[0], dtype=out_leaf.dtype)) if k == is_xi_index else jnp.zeros(out_leaf.shape + n.shape, out_leaf.dtype)
                for k, n in enumerate(noise)
            )

        tree = jax.tree.map(block, y)
        tree = eqx.tree_at(lambda s: s.xi, tree, tuple(block(x, i) for i, x in enumerate(y.xi)))
        return lx.PyTreeLinearOperator(tree, jax.eval_shape(lambda: y))

    # ------------------------------------------------------------------ states

    def init_state(self, data: Data) -> PALState:
        """The model's initial weights (``network``, ``feedback``) settled at the noise-free response to ``data.x``
        (zero input when ``data.x`` is ``None``); see :func:`pal_state`."""
        if self.network is None or self.feedback is None:
            raise ConfigError(
                "PAL.init_state(data) starts from the model's initial weights: build PAL(network=..., feedback=...), "
                "or call dynlearn.models.pal.pal_state(model, network, feedback, x0)"
            )
        return pal_state(self, self.network, self.feedback, data.x)


def pal_state(model: PAL, network: Network, feedback, x0: Array | None = None) -> PALState:
    """A state with the given weights: ``u`` and ``r̄`` at the noise-free response to ``x0`` (zero input by default), ``ξ = 0``."""
    sizes = network.sizes
    feedback = tuple(jnp.asarray(b) for b in feedback)
    dtype = network.weights[0].dtype
    zero_u = tuple(jnp.zeros(n, dtype) for n in sizes[1:])
    rlag = tuple(jnp.zeros((model.rule_lag_stages, n), dtype) for n in sizes[2:])
    state = PALState(network, feedback, zero_u, tuple(jnp.zeros(n, dtype) for n in sizes[1:-1]), tuple(jnp.zeros(n, dtype) for n in sizes[2:]), rlag)
    x0 = jnp.zeros(sizes[0], dtype) if x0 is None else jnp.asarray(x0, dtype)
    if x0.shape != (sizes[0],):
        raise ShapeError(f"PAL: x0 must have shape ({sizes[0]},), got {x0.shape}")
    for _ in range(2):  # two sweeps settle u (and so the rates) at the drive in both modes
        dus, uh, rho = model.layers(state, x0)
        state = eqx.tree_at(lambda s: s.u, state, tuple((u + model.tau * d).astype(dtype) for u, d in zip(state.u, dus)))
    _, _, rho = model.layers(state, x0)
    return eqx.tree_at(lambda s: s.rbar, state, tuple(r.astype(dtype) for r in rho[2:]))


def init_pal(sizes, *, key: Array, activation: str = "logistic", scale: float = 1.0, dtype=jnp.float64, model: PAL | None = None, x0=None):
    """A reference-style initial state: ``W, B ~ U(−scale, scale)`` (PAL's Fig. 3), biases zero."""
    k_w, k_b = jax.random.split(key)
    net = init_network(sizes, key=k_w, activation=activation, scheme="uniform", gain=scale, dtype=dtype)
    keys = jax.random.split(k_b, len(sizes) - 2)
    fb = tuple(draws.uniform(k, shape, dtype, -scale, scale) for k, shape in zip(keys, feedback_shapes(sizes)))
    return pal_state(model or PAL(), net, fb, x0)
