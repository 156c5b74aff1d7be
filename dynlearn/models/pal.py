r"""Phaseless Alignment Learning (PAL): backward weights learned from the neurons' own noise, as an SDE.

Max, Kriener, García Pineda, Sacramento, Senn & Petrovici (2024), "Learning efficient backprojections across
cortical hierarchies in real time", Nature Machine Intelligence 6:619–630 (arXiv 2212.10249). This module writes
PAL on a layered rate network with prospective (latent-equilibrium) rates (Haider et al. 2021, NeurIPS), integrated
as one additive-noise SDE by :func:`dynlearn.simulate`. Layers ``l = 0..N`` (input ``0``, output ``N``); times in ms.

State :class:`PALState`: forward weights and biases (a :class:`dynlearn.Network`), backward matrices
:math:`B_l` (``(n_l, n_{l+1})``, the shape of :math:`W_{l+1}^\top`, ``l = 1..N-1``), somatic potentials :math:`u_l`,
Ornstein–Uhlenbeck noise :math:`\xi_l` of the hidden layers and low-pass filtered rates :math:`\bar r_l` (``l = 2..N``).

.. math::

   v_l &= W_l \rho_{l-1} + b_l, \qquad \rho_0 = x(t) \\
   \tau\,\dot u_l &= -u_l + g_B v_l + g_A \xi_l \quad (l<N), \qquad \tau\,\dot u_N = -u_N + v_N \\
   \breve u_l &= u_l + \tau \dot u_l \quad\text{(prospective potential, computed from the vector field)}, \qquad
   \rho_l = \varphi(\breve u_l)\ (l<N), \ \rho_N = \breve u_N \\
   d\xi_l &= -\xi_l/\tau_\xi\,dt + (\sigma/\sqrt{\tau_\xi})\,dW_l \qquad\text{(stationary variance } \sigma^2/2) \\
   \tau_{HP}\,\dot{\bar r}_l &= \rho_l - \bar r_l, \qquad r^{HP}_l = \rho_l - \bar r_l \quad\text{(high-pass filter)} \\
   \dot B_l &= \eta_{bw}\big(\xi_l (r^{HP}_{l+1})^\top - \alpha B_l\big) \qquad\text{(the PAL rule)} \\
   e_N &= \beta (y - \breve u_N), \qquad e_l = g_B\,\varphi'(\breve u_l) \odot B_l e_{l+1} \\
   \dot W_l &= \eta_{fw}\, e_l \rho_{l-1}^\top, \qquad \dot b_l = \eta_{fw} e_l \ \text{(unless ``learn_bias=False``)} .

The noise reaches the next layer undelayed because rates are prospective (:math:`\breve u` follows the drive
instantly although :math:`\tau = 5.3` ms); the high-pass filter removes the slow stimulus-driven part of the upper
rate, so :math:`\langle \xi_l (r^{HP}_{l+1})^\top\rangle \propto \sigma^2 \varphi'_l W_{l+1}^\top \varphi'_{l+1}` and
:math:`B_l` aligns with :math:`W_{l+1}^\top` (fixed point :math:`B^* = \langle\xi r^{HP\top}\rangle/\alpha`). With
``prospective=False`` rates are :math:`\varphi(u)` and the fast noise is low-passed by :math:`\tau` (an ablation).

Errors are dendritic: they drive plasticity but not the rates sent upward (the weak-feedback, error-neuron form of
latent equilibrium used by the authors' GLE-PAL layers). With :math:`B_l = W_{l+1}^\top` the forward rule is
:math:`-\beta\,\partial L/\partial W` for :math:`L = \tfrac12\|y - \hat x_N\|^2` (backprop); with :math:`B` fixed
(``eta_bw = 0``) it is feedback alignment in continuous time.

Defaults are the reference values for the 5-20-10-20-5 experiment (Fig. 3a–c; authors' code ``PAL MC``):
conductances :math:`g_l, g_B, g_A = 0.03, 0.1, 0.06` give :math:`\tau = 1/0.19` ms, :math:`g_B\tau = 0.526`,
:math:`g_A\tau = 0.316`; :math:`\tau_\xi = \tau_{HP} = 0.1` ms, :math:`\sigma = 0.05`, :math:`\alpha = 10^{-5}`,
:math:`\eta_{bw} = 50`, :math:`dt = 0.01` ms and patterns presented for :math:`T_{pres} = 1` ms.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array

from ..dynamics import model_flow, simulate
from ..errors import DivergedError, NonFiniteError, ShapeError
from ..networks import Network, _matvec, init_network
from .base import DynamicalModel
from .feedback import FeedbackNetwork, batch_key, init_feedback_network, rule_update
from .registry import Learner, register_learner

# reference conductances (PAL MC defaults)
G_LEAK, G_BASAL, G_APICAL = 0.03, 0.1, 0.06
TAU_EFF = 1.0 / (G_LEAK + G_BASAL + G_APICAL)


def _dphi(network: Network, a: Array) -> Array:
    """Elementwise derivative φ'(a) (forward mode, any shape)."""
    return jax.jvp(network.phi, (a,), (jnp.ones_like(a),))[1]


def _f(x):
    return eqx.field(converter=jnp.asarray, default=x)


class PALState(eqx.Module):
    """The full PAL state (see the module docstring); every part evolves in one SDE."""

    network: Network
    feedback: tuple[Array, ...]
    u: tuple[Array, ...]
    xi: tuple[Array, ...]
    rbar: tuple[Array, ...]

    def __check_init__(self):
        sizes = self.network.sizes
        want_b = tuple((a, b) for a, b in zip(sizes[1:-1], sizes[2:]))
        got_b = tuple(tuple(b.shape[-2:]) for b in self.feedback)
        if got_b != want_b:
            raise ShapeError(
                f"PAL: backward matrices B_l must have the shape of W_(l+1)^T, {want_b} for layer sizes {sizes}; got {got_b}"
            )
        for name, arrs, want in (("u", self.u, sizes[1:]), ("xi", self.xi, sizes[1:-1]), ("rbar", self.rbar, sizes[2:])):
            got = tuple(a.shape[-1] for a in arrs)
            if got != tuple(want):
                raise ShapeError(f"PAL: state part {name!r} has widths {got}, expected {tuple(want)} for layer sizes {sizes}")


class PAL(DynamicalModel):
    """PAL dynamics and parameters (array-valued, so models differing only in numbers share one compilation)."""

    tau: Array = _f(TAU_EFF)
    tau_xi: Array = _f(0.1)
    tau_hp: Array = _f(0.1)
    sigma: Array = _f(0.05)
    alpha: Array = _f(1e-5)
    eta_bw: Array = _f(50.0)
    eta_fw: Array = _f(0.0)
    beta: Array = _f(1.0)
    basal_gain: Array = _f(G_BASAL * TAU_EFF)
    apical_gain: Array = _f(G_APICAL * TAU_EFF)
    prospective: bool = eqx.field(static=True, default=True)
    learn_bias: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        for name in ("tau", "tau_xi", "tau_hp"):
            v = getattr(self, name)
            if not isinstance(v, jax.core.Tracer) and np.any(np.asarray(v) <= 0):
                raise ValueError(f"PAL: {name} must be positive, got {v}")
        for name in ("sigma", "alpha", "eta_bw", "eta_fw"):
            v = getattr(self, name)
            if not isinstance(v, jax.core.Tracer) and np.any(np.asarray(v) < 0):
                raise ValueError(f"PAL: {name} must be non-negative, got {v}")

    @property
    def name(self) -> str:
        return f"PAL(prospective={self.prospective})"

    def predict(self, network: Network, x: Array) -> Array:
        """The noise-free network function: ``ρ_l = φ(g_B (W_l ρ_{l-1} + b_l))`` for hidden layers, output ``W_N ρ_{N-1} + b_N``."""
        rho = x
        for l in range(1, network.depth + 1):
            v = _matvec(network.weights[l - 1], rho) + network.biases[l - 1]
            rho = network.phi(self.basal_gain * v) if l < network.depth else v
        return rho

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
            v = _matvec(net.weights[l - 1], rho[-1]) + net.biases[l - 1]
            drive = self.basal_gain * v + self.apical_gain * y.xi[l - 1] if l < n else v
            du = (drive - y.u[l - 1]) / self.tau
            a = y.u[l - 1] + self.tau * du if self.prospective else y.u[l - 1]
            dus.append(du)
            uh.append(a)
            rho.append(net.phi(a) if l < n else a)
        return dus, uh, rho

    def errors(self, y: PALState, uh, target):
        """Dendritic errors ``e_1..e_N``: ``e_N = β(y − ŭ_N)``, ``e_l = g_B φ'(ŭ_l) ⊙ B_l e_{l+1}`` (zero without a target)."""
        n = y.network.depth
        if target is None:
            return [jnp.zeros_like(a) for a in uh]
        es = [self.beta * (target - uh[-1])]
        for l in range(n - 1, 0, -1):
            dphi = _dphi(y.network, uh[l - 1])
            es.append(self.basal_gain * dphi * _matvec(y.feedback[l - 1], es[-1]))
        return es[::-1]

    def vector_field(self, t, y: PALState, x: Array, target: Array | None = None) -> PALState:
        dus, uh, rho = self.layers(y, x)
        n = y.network.depth
        rhp = [rho[l] - y.rbar[l - 2] for l in range(2, n + 1)]
        drbar = [h / self.tau_hp for h in rhp]
        dxi = [-xi / self.tau_xi for xi in y.xi]
        dB = [self.eta_bw * (jnp.outer(y.xi[l], rhp[l]) - self.alpha * y.feedback[l]) for l in range(n - 1)]
        es = self.errors(y, uh, target)
        dW = tuple(self.eta_fw * jnp.outer(es[l], rho[l]) for l in range(n))
        db = tuple(self.eta_fw * es[l] * (1.0 if self.learn_bias else 0.0) for l in range(n))
        dnet = Network(dW, db, y.network.activation)
        return PALState(dnet, tuple(dB), tuple(dus), tuple(dxi), tuple(drbar))

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

    def init_state(self, network: Network, feedback, x0: Array | None = None) -> PALState:
        """A state with the given weights: ``u`` and ``r̄`` at the noise-free response to ``x0`` (zero input by default), ``ξ = 0``."""
        sizes = network.sizes
        feedback = tuple(jnp.asarray(b) for b in feedback)
        dtype = network.weights[0].dtype
        zero_u = tuple(jnp.zeros(n, dtype) for n in sizes[1:])
        state = PALState(network, feedback, zero_u, tuple(jnp.zeros(n, dtype) for n in sizes[1:-1]), tuple(jnp.zeros(n, dtype) for n in sizes[2:]))
        x0 = jnp.zeros(sizes[0], dtype) if x0 is None else jnp.asarray(x0, dtype)
        if x0.shape != (sizes[0],):
            raise ShapeError(f"PAL: x0 must have shape ({sizes[0]},), got {x0.shape}")
        for _ in range(2):  # two sweeps settle u (and so the rates) at the drive in both modes
            dus, uh, rho = self.layers(state, x0)
            state = eqx.tree_at(lambda s: s.u, state, tuple((u + self.tau * d).astype(dtype) for u, d in zip(state.u, dus)))
        _, _, rho = self.layers(state, x0)
        return eqx.tree_at(lambda s: s.rbar, state, tuple(r.astype(dtype) for r in rho[2:]))


def _pal_diffusion(t, y, args):
    return args[0].noise_operator(y)


def _pal_diffusion_dense(t, y, args):
    return args[0].noise_operator_dense(y)


def _zero_save(t, y, args):
    return jnp.zeros(())


def _run(model: PAL, state: PALState, inputs, targets, key, t_pres, dt, solver, brownian, save_fn):
    """Present ``inputs[k]`` (and ``targets[k]``) for ``t_pres`` each, one :func:`simulate` call per pattern inside ``lax.scan``."""
    save_fn = _zero_save if save_fn is None else save_fn
    # one dtype for state and parameters: the network's, promoted like diffrax promotes y0 to the time's dtype
    dtype = jnp.result_type(state.network.weights[0].dtype, jnp.asarray(t_pres).dtype)
    model = jax.tree.map(lambda a: a.astype(dtype), model)
    state = jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, state)

    def segment(y, data):
        x, tgt, k = data
        traj = simulate(
            model_flow,
            y,
            (model, x, tgt),
            t1=t_pres,
            dt0=dt,
            ts=jnp.asarray([t_pres]),
            solver=solver,
            diffusion=_pal_diffusion if solver in ("euler", "heun") else _pal_diffusion_dense,
            noise_shape=model.noise_shape(y),
            key=jax.random.fold_in(key, k),
            save_fn=save_fn,
            brownian=brownian,
            throw=False,
        )
        return traj.final, jax.tree.map(lambda a: a[0], traj.ys)

    ks = jnp.arange(inputs.shape[0])
    return jax.lax.scan(segment, state, (inputs, targets, ks))


@eqx.filter_jit
def _run_batch(model, states, inputs, targets, keys, t_pres, dt, solver, brownian, save_fn):
    def one(m, s, i, t, k):
        return _run(m, s, i, t, k, t_pres, dt, solver, brownian, save_fn)

    return jax.vmap(one)(model, states, inputs, targets, keys)


def _broadcast(tree, n: int):
    return jax.tree.map(lambda a: jnp.broadcast_to(a, (n, *jnp.shape(a))), tree)


def simulate_pal(
    model: PAL,
    state: PALState,
    inputs: Array,
    targets: Array | None = None,
    *,
    key: Array,
    t_pres: float = 1.0,
    dt: float = 0.01,
    solver: str = "euler",
    brownian: str = "unsafe",
    save_fn=None,
    batched: bool = False,
    bound: float = 1e6,
    name: str = "PAL",
):
    r"""Integrate PAL while the patterns ``inputs[k]`` are shown for ``t_pres`` ms each (noise, filters and both rules on).

    Args:
        model: a :class:`PAL` (with ``batched=True`` its parameters may carry a leading seed/condition axis).
        state: initial :class:`PALState` (leading axis ``S`` when ``batched``).
        inputs: ``(K, n_0)`` patterns in presentation order (``(S, K, n_0)`` when batched).
        targets: ``(K, n_N)`` targets (nudged output), or ``None`` for no teacher.
        key: PRNG key of the noise (``(S,)`` keys when batched); the Brownian path of pattern ``k`` is drawn from
            ``fold_in(key, k)``, so a run is reproducible for a given key, ``dt`` and solver.
        dt: fixed step; it must resolve ``τ_ξ`` and ``τ_HP`` (``dt ≤ τ_ξ/5`` is a good rule).
        solver: an additive-noise SDE solver: ``"euler"`` (Euler–Maruyama, the reference codes' choice),
            ``"heun"``, ``"shark"``, ``"sra1"``.
        brownian: ``"unsafe"`` (one Gaussian draw per step; fast) or ``"virtual"`` (a VirtualBrownianTree per pattern).
        save_fn: ``save_fn(t, state, args) -> PyTree`` of derived quantities saved at the end of every pattern
            (e.g. alignment angles), instead of the full state.
        batched: vmap over a leading axis of ``state``, ``inputs``, ``targets``, ``key`` (and ``model``'s arrays):
            all seeds and conditions in one compiled call.
        bound: the run counts as diverged when any weight or potential exceeds this in absolute value.

    Returns:
        ``(final_state, saved)``: ``saved`` has a leading pattern axis (after the seed axis when batched).

    Raises:
        ShapeError: inputs/targets/backward matrices of the wrong shape.
        NonFiniteError: NaN/inf in the inputs, or in a high-pass-filtered rate during the run.
        DivergedError: the state left ``|·| ≤ bound`` or became NaN/inf.
    """
    ws = state.network.weights
    inputs = jnp.asarray(inputs, ws[0].dtype)
    sizes = (ws[0].shape[-1],) + tuple(w.shape[-2] for w in ws)
    lead = 1 if batched else 0
    if inputs.ndim != 2 + lead or inputs.shape[-1] != sizes[0]:
        raise ShapeError(f"{name}: inputs must have shape ({'S, ' if batched else ''}K, {sizes[0]}), got {inputs.shape}")
    if not bool(jnp.all(jnp.isfinite(inputs))):
        raise NonFiniteError(f"{name}: inputs contain NaN or inf")
    if targets is not None:
        targets = jnp.asarray(targets, ws[0].dtype)
        if targets.shape != inputs.shape[:-1] + (sizes[-1],):
            raise ShapeError(f"{name}: targets must have shape {inputs.shape[:-1] + (sizes[-1],)}, got {targets.shape}")
    check_state(state, name=f"{name} (initial state)", bound=bound)
    if dt <= 0 or t_pres <= 0 or t_pres / dt < 1:
        raise ValueError(f"{name}: need 0 < dt <= t_pres, got dt={dt}, t_pres={t_pres}")
    if abs(t_pres / dt - round(t_pres / dt)) > 1e-9:
        raise ValueError(f"{name}: t_pres = {t_pres} must be a whole number of steps dt = {dt}")
    for what in ("tau", "tau_xi", "tau_hp"):
        smallest = float(jnp.min(getattr(model, what)))
        if dt >= 2 * smallest:
            raise ValueError(f"{name}: dt = {dt} does not resolve {what} = {smallest} (the explicit step is unstable for dt >= 2 {what}; use dt <= {what}/5)")
    if batched:
        n = inputs.shape[0]
        model = jax.tree.map(lambda a: jnp.broadcast_to(a, (n,)) if jnp.ndim(a) == 0 else a, model)
        final, saved = _run_batch(model, state, inputs, targets, key, t_pres, dt, solver, brownian, save_fn)
    else:
        final, saved = eqx.filter_jit(_run)(model, state, inputs, targets, key, t_pres, dt, solver, brownian, save_fn)
    check_state(final, name=name, bound=bound)
    return final, saved


@eqx.filter_jit
def _state_stats(state: PALState):
    """Per part: (all finite, max |.|), in one compiled call."""

    def stats(tree):
        leaves = jax.tree.leaves(eqx.filter(tree, eqx.is_inexact_array))
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in leaves]))
        return finite, jnp.max(jnp.stack([jnp.max(jnp.abs(a)) for a in leaves]))

    parts = {"forward weights": state.network, "backward matrices B": state.feedback, "potentials u": state.u, "noise xi": state.xi}
    return [stats(r) for r in state.rbar], {k: stats(v) for k, v in parts.items()}


def check_state(state: PALState, *, name: str = "PAL", bound: float = 1e6) -> None:
    """Raise a clear error if a PAL state is not finite or has left ``|·| ≤ bound``, naming the part that failed.

    Raises:
        NonFiniteError: a high-pass-filter state (the low-passed rate ``r̄``) is NaN/inf.
        DivergedError: any other part is NaN/inf or exceeds ``bound``, or ``r̄`` exceeds ``bound``.
    """
    rbar, parts = jax.device_get(_state_stats(state))
    for l, (finite, big) in enumerate(rbar, start=2):
        if not bool(finite):
            raise NonFiniteError(
                f"{name}: the high-pass filter of layer {l} (its low-passed rate r̄) is NaN/inf; "
                "dt must resolve tau_hp (dt <= tau_hp/5) and the rates must stay finite"
            )
        if float(big) > bound:
            raise DivergedError(f"{name}: the high-pass filter of layer {l} diverged (max|r̄| = {float(big):.3g} > {bound:g}); reduce dt")
    for what, (finite, big) in parts.items():
        if not bool(finite) or float(big) > bound:
            big = float(big) if bool(finite) else float("inf")
            raise DivergedError(
                f"{name}: the SDE diverged: {what} reached max|.| = {big:.3g} (bound {bound:g}); "
                "reduce dt or the learning rates eta_bw/eta_fw (Euler needs eta_bw * alpha * dt < 1)"
            )


def init_pal(sizes, *, key: Array, activation: str = "logistic", scale: float = 1.0, dtype=jnp.float64, model: PAL | None = None, x0=None):
    """A reference-style initial state: ``W, B ~ U(−scale, scale)`` (PAL's Fig. 3), biases zero."""
    k_w, k_b = jax.random.split(key)
    net = init_network(sizes, key=k_w, activation=activation, scheme="uniform", gain=scale, dtype=dtype)
    keys = jax.random.split(k_b, len(sizes) - 2)
    fb = tuple(jax.random.uniform(k, (a, b), dtype, -scale, scale) for k, a, b in zip(keys, sizes[1:-1], sizes[2:]))
    return (model or PAL()).init_state(net, fb, x0)


# ----------------------------------------------------------------------------- learner (mini-batch training)


class PALParams(eqx.Module):
    """What the ``pal`` learner trains: the forward network and the backward matrices ``B_l`` (shape of ``W_{l+1}ᵀ``)."""

    network: Network
    feedback: tuple[Array, ...]
    key: Array

    def __check_init__(self):
        sizes = self.network.sizes
        want = tuple((a, b) for a, b in zip(sizes[1:-1], sizes[2:]))
        got = tuple(tuple(b.shape) for b in self.feedback)
        if got != want:
            raise ShapeError(f"PAL: backward matrices must have shapes {want} for layer sizes {sizes}, got {got}")

    def backward_pairs(self):
        return [(f"B{l + 1}", b, w.T) for l, (b, w) in enumerate(zip(self.feedback, self.network.weights[1:]))]


def pal_batch_update(model: PAL, params: PALParams, x: Array, y: Array, key: Array, *, t_noise: float, dt: float, loss: str = "mse"):
    r"""One mini-batch of PAL: forward weights by the PAL error rule, backward matrices by PAL's noise SDE.

    * Forward: :math:`\Delta W_l \propto \sum_{\text{batch}} e_l \rho_{l-1}^\top` with the dendritic errors of the
      module docstring (``e_N = y − x̂_N``; ``e_l = φ'_l ⊙ B_l e_{l+1}``) at the noise-free rates; returned as the
      gradient-like ``-e ρᵀ``.
    * Backward: every sample of the batch is presented to its own copy of the network for ``t_noise`` ms with the
      noise, the high-pass filter and the PAL rule on and ``W`` held; the returned ``B`` "gradient" is minus the mean
      rate of change :math:`\langle \xi_l (r^{HP}_{l+1})^\top\rangle - \alpha B_l` over samples and time (the batch mean
      of the authors' GLE-PAL layers).
    """
    net = params.network
    x, y = x.astype(net.weights[0].dtype), y.astype(net.weights[0].dtype)
    # forward update: feedback alignment through the current B (the one custom-VJP mechanism of the FA family)
    grads, value = rule_update(FeedbackNetwork(net, params.feedback, params.key, "fa"), x, y, loss=loss)
    # backward update: PAL's SDE over t_noise ms per sample (W fixed, eta_bw = 1 so dB = <xi r_HP^T> - alpha B)
    noise_model = eqx.tree_at(lambda m: (m.eta_bw, m.eta_fw, m.basal_gain, m.apical_gain), model, (jnp.asarray(1.0), jnp.asarray(0.0), jnp.asarray(1.0), jnp.asarray(1.0)))

    # the input projection W_1 x + b_1 is constant during a presentation: run the SDE on the network above it
    # (identity first layer fed with the projection), which has the same dynamics and costs far less for wide inputs
    n1 = net.sizes[1]
    dtype = net.weights[0].dtype
    top = Network((jnp.eye(n1, dtype=dtype),) + net.weights[1:], (jnp.zeros(n1, dtype),) + net.biases[1:], net.activation)
    proj = _matvec(net.weights[0], x) + net.biases[0]

    def per_sample(xs, k):
        k0, k1 = jax.random.split(k)
        s0 = noise_model.init_state(top, params.feedback, xs)
        xi0 = tuple((model.sigma / jnp.sqrt(2.0) * jax.random.normal(kk, a.shape, a.dtype)).astype(a.dtype) for kk, a in zip(jax.random.split(k0, len(s0.xi)), s0.xi))
        s0 = eqx.tree_at(lambda s: s.xi, s0, xi0)
        final, _ = _run(noise_model, s0, xs[None], None, k1, t_noise, dt, "euler", "unsafe", None)
        return tuple(((b1 - b0) / t_noise).astype(b0.dtype) for b1, b0 in zip(final.feedback, params.feedback))

    dB = jax.vmap(per_sample)(proj, jax.random.split(key, x.shape[0]))
    gB = tuple(-jnp.mean(d, axis=0) for d in dB)
    return PALParams(grads.network, gB, params.key), value


@register_learner("pal")
def pal_learner(
    *,
    activation: str = "tanh",
    loss: str = "mse",
    sigma: float = 0.3,
    alpha: float = 0.01,
    tau_xi: float = 0.1,
    tau_hp: float = 0.1,
    t_noise: float = 1.0,
    dt: float = 0.02,
) -> Learner:
    """PAL for mini-batch training: FA-style forward learning through backward matrices that PAL's noise SDE aligns."""
    model = PAL(tau_xi=tau_xi, tau_hp=tau_hp, sigma=sigma, alpha=alpha, basal_gain=1.0, apical_gain=1.0)

    def init(key, sizes):
        fa = init_feedback_network(sizes, key=key, rule="fa", activation=activation)  # W and B as for FA
        return PALParams(fa.network, fa.feedback, fa.key)

    def update(params: PALParams, x, y):
        grads, value = pal_batch_update(model, params, x, y, batch_key(params, x), t_noise=t_noise, dt=dt, loss=loss)
        return grads, {"loss": value / x.shape[0]}

    return Learner(
        name="pal",
        init=init,
        update=update,
        predict=lambda params, x: params.network(x),
        description="phaseless alignment learning: B aligns with W^T from neuronal noise while W learns (Max et al. 2024)",
        defaults=dict(activation=activation, loss=loss, sigma=sigma, alpha=alpha, tau_xi=tau_xi, tau_hp=tau_hp, t_noise=t_noise, dt=dt),
    )
