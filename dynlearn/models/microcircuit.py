r"""Dendritic cortical microcircuits (Sacramento, Costa, Bengio & Senn 2018, NeurIPS 31) as an ODE/SDE.

Layers ``0..N``: the input :math:`r_0 = x`, hidden pyramidal layers :math:`k = 1..N-1`, the output
pyramids :math:`N`. Each hidden layer ``k`` also has one interneuron (SST-like) per neuron of layer
``k+1``. Dendritic potentials are instantaneous (algebraic) functions of rates (paper Eqs. 3-5):

.. math::
   v_{B,k} = W_k r_{k-1} + b_k, \qquad
   v_{A,k} = B_k r_{k+1} + W^{PI}_k r^I_k, \qquad
   v^I_k = W^{IP}_k r_k + b^{IP}_k ,

with rates :math:`r_k = \varphi_k(u_k)` (:math:`\varphi_N` the output transfer function) and interneuron
rates :math:`r^I_k = \varphi_{k+1}(u^I_k)` (an interneuron mimics a neuron of layer ``k+1``). The somatic
potentials follow (paper Eqs. 1-2; capacitance :math:`c_m`, rest 0)

.. math::
   c_m\dot u_k &= -g_{lk}u_k + g_B(v_{B,k}-u_k) + g_A(v_{A,k}-u_k) + \sigma\xi_k, \\
   c_m\dot u_N &= -g_{lk}u_N + g_B(v_{B,N}-u_N) + \nu\, g_{som}(u^{trgt}-u_N) + \sigma\xi_N, \\
   c_m\dot u^I_k &= -g_{lk}u^I_k + g_D(v^I_k-u^I_k) + g_{nI}(u_{k+1}-u^I_k) + \sigma\xi^I_k ,

where :math:`\nu` (``nudge``) switches the teaching current on (1) or off (0). With :math:`\sigma > 0`
this is an SDE with additive noise (:func:`dynlearn.simulate` with ``diffusion=``).

Plasticity (Urbanczik & Senn 2014, Neuron 81:521, "dendritic prediction of somatic activity"; paper
Eqs. 7-10), with attenuated dendritic predictions
:math:`\hat v_{B,k} = \tfrac{g_B}{g_{lk}+g_B+g_A}v_{B,k}` (hidden), :math:`\tfrac{g_B}{g_{lk}+g_B}v_{B,N}`
(output), :math:`\hat v^I_k = \tfrac{g_D}{g_{lk}+g_D}v^I_k`:

.. math::
   \dot W_k &= \eta_k\,(\varphi_k(u_k) - \varphi_k(\hat v_{B,k}))\,r_{k-1}^\top, &
   \dot W^{IP}_k &= \eta_{IP}\,(\varphi_{k+1}(u^I_k) - \varphi_{k+1}(\hat v^I_k))\,r_k^\top, \\
   \dot W^{PI}_k &= -\eta_{PI}\, v_{A,k}\,(r^I_k)^\top, &
   \dot B_k &= \eta_{TD}\,(\varphi_k(u_k) - \varphi_k(B_k r_{k+1}))\,r_{k+1}^\top ,

each optionally low-pass filtered with :math:`\tau_w` (:class:`Plasticity`).

Self-predicting state (SPS, paper §3.1): :math:`W^{PI}_k = -B_k` and
:math:`W^{IP}_k = \frac{g_B(g_{lk}+g_D)}{g_D\,g_{k+1}}W_{k+1}` (:math:`b^{IP}_k` likewise), with
:math:`g_{k+1} = g_{lk}+g_B+g_A` for a hidden layer above and :math:`g_{lk}+g_B` for the output. Without a
target the interneurons then reproduce the layer above and every apical potential vanishes; the free
steady state is the feedforward pass of the *effective* network with weights
:math:`\hat g_k W_k` (:meth:`Microcircuit.effective_network`).

Latent equilibrium (Haider et al. 2021, NeurIPS 34): with ``prospective=True`` every rate that leaves a
neuron is :math:`\varphi(\breve u)`, :math:`\breve u = u + \tau\,\dot u`, and interneurons are nudged toward
:math:`\breve u_{k+1}`. Since the rates inside :math:`\dot u` are themselves prospective, :math:`\breve u`
solves :math:`\breve u = u + \tau f(u; \varphi(\breve u))`; it is computed with :func:`prospective` by
``le_iterations`` fixed-point sweeps started from :math:`u`.

Two parameter presets (:data:`PRESETS`): ``"sacramento2018"`` (the 2018 paper's conductances, time in ms)
and ``"bern"`` (the later reference code of the Bern group for LE and PAL; the default).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray


from ..dynamics import Trajectory, simulate
from ..errors import ShapeError
from ..losses import mse_loss
from ..networks import Network, activation as get_activation
from .base import DynamicalModel, equilibrium
from .latent_equilibrium import prospective as prospective_state
from .registry import Learner, register_learner

# ----------------------------------------------------------------------------- parameters


def _concrete(v) -> bool:
    return not isinstance(v, jax.core.Tracer)


class MicrocircuitParams(eqx.Module):
    """Conductances (leak ``g_lk``, basal ``g_B``, apical ``g_A``, interneuron dendrite ``g_D``, output
    teaching ``g_som``, interneuron nudging ``g_nI``), capacitance ``c_m`` and somatic noise ``sigma``.

    Values may be Python floats or (traceable) JAX scalars; concrete values are validated.
    """

    g_lk: Any = 0.03
    g_B: Any = 0.1
    g_A: Any = 0.06
    g_D: Any = 0.1
    g_som: Any = 0.06
    g_nI: Any = 0.06
    c_m: Any = 1.0
    sigma: Any = 0.0

    def __check_init__(self):
        for name in ("g_lk", "g_B", "g_A", "g_D", "g_som", "g_nI", "sigma"):
            v = getattr(self, name)
            if _concrete(v):
                a = np.asarray(v, dtype=float)
                if not np.all(np.isfinite(a)) or np.any(a < 0):
                    what = "noise amplitude" if name == "sigma" else "conductance"
                    raise ValueError(f"microcircuit {what} {name} must be finite and >= 0, got {v!r}")
        for name in ("g_B", "g_D", "c_m"):
            v = getattr(self, name)
            if _concrete(v) and not np.all(np.asarray(v, dtype=float) > 0):
                raise ValueError(
                    f"microcircuit {name} must be > 0 (got {v!r}): "
                    + ("the membrane time constant c_m/g_total would be <= 0" if name == "c_m" else "the dendrite would be disconnected")
                )

    # total conductances and time constants
    @property
    def g_hidden(self):
        """:math:`g_{lk}+g_B+g_A` (hidden pyramids)."""
        return self.g_lk + self.g_B + self.g_A

    @property
    def g_out_free(self):
        """:math:`g_{lk}+g_B` (output pyramids without teaching current)."""
        return self.g_lk + self.g_B

    @property
    def g_inter(self):
        """:math:`g_{lk}+g_D+g_{nI}` (interneurons)."""
        return self.g_lk + self.g_D + self.g_nI

    @property
    def tau_hidden(self):
        """Effective time constant of the hidden pyramids, :math:`c_m/(g_{lk}+g_B+g_A)`."""
        return self.c_m / self.g_hidden

    def attenuation(self, output: bool):
        r""":math:`\hat g = g_B/(g_{lk}+g_B+g_A)` (hidden) or :math:`g_B/(g_{lk}+g_B)` (output)."""
        return self.g_B / (self.g_out_free if output else self.g_hidden)

    @property
    def interneuron_attenuation(self):
        return self.g_D / (self.g_lk + self.g_D)

    def with_feedback(self, lam) -> MicrocircuitParams:
        r"""The weak-feedback family of the BP theorem: :math:`g_A = g_{som} = \lambda g_B`."""
        return eqx.tree_at(lambda p: (p.g_A, p.g_som), self, (lam * self.g_B, lam * self.g_B))

    def replace(self, **changes) -> MicrocircuitParams:
        return eqx.tree_at(lambda p: tuple(getattr(p, k) for k in changes), self, tuple(changes.values()))

    def as_arrays(self, dtype=None) -> MicrocircuitParams:
        """The same values as JAX scalars (so a jitted solve is not recompiled when a value changes)."""
        return jax.tree.map(lambda v: jnp.asarray(v, dtype=dtype), self)


PRESETS: dict[str, dict[str, float]] = {
    # Sacramento et al. (2018) NeurIPS, simulation details (values as corroborated by a public NEST
    # replication: total somatic conductance 1.9, g_A = 0.8, g_B = 1, g_som = 0.8); time in ms.
    "sacramento2018": dict(g_lk=0.1, g_B=1.0, g_A=0.8, g_D=1.0, g_som=0.8, g_nI=0.8, c_m=1.0, sigma=0.0),
    # The Bern group's later reference code (Latent Equilibrium, PAL): tau_eff = 1/0.19 = 5.26 ms.
    "bern": dict(g_lk=0.03, g_B=0.1, g_A=0.06, g_D=0.1, g_som=0.06, g_nI=0.06, c_m=1.0, sigma=0.0),
}


def preset(name: str = "bern", **overrides) -> MicrocircuitParams:
    """The conductances of a named preset (``"bern"`` or ``"sacramento2018"``), with ``overrides``."""
    from ..errors import UnknownNameError

    if name not in PRESETS:
        raise UnknownNameError(f"unknown microcircuit preset {name!r}; choose one of {sorted(PRESETS)}")
    return MicrocircuitParams(**{**PRESETS[name], **overrides})


# ----------------------------------------------------------------------------- inputs


class PatternStream(eqx.Module):
    """Patterns presented one after another for ``t_pres`` each: ``x(t) = inputs[floor(t / t_pres)]``.

    ``targets`` (optional) are presented in step with the inputs (a target potential per pattern).
    """

    inputs: Array
    targets: Array | None
    t_pres: float

    def index(self, t):
        return jnp.clip(jnp.floor(t / self.t_pres).astype(jnp.int32), 0, self.inputs.shape[0] - 1)

    def input(self, t):
        return self.inputs[self.index(t)]

    def target(self, t):
        return None if self.targets is None else self.targets[self.index(t)]

    @property
    def duration(self) -> float:
        return float(self.inputs.shape[0] * self.t_pres)


def _mv(w, x):
    return jnp.einsum("oi,...i->...o", w, x)


def _outer(post, pre):
    return jnp.einsum("...o,...i->oi", post, pre)


def _sum_batch(v, n_out):
    return jnp.reshape(v, (-1, n_out)).sum(0)


# ----------------------------------------------------------------------------- the model


class Microcircuit(DynamicalModel):
    r"""A dendritic cortical microcircuit (Sacramento et al. 2018) with optional prospective rates.

    Attributes:
        weights: forward :math:`W_k` ``(n_k, n_{k-1})``, ``k = 1..N``; ``biases``: :math:`b_k` ``(n_k,)``.
        top_down: :math:`B_k` ``(n_k, n_{k+1})``, ``k = 1..N-1``.
        w_ip: pyramid-to-interneuron :math:`W^{IP}_k` ``(n_{k+1}, n_k)``; ``b_ip`` ``(n_{k+1},)``.
        w_pi: interneuron-to-pyramid (apical) :math:`W^{PI}_k` ``(n_k, n_{k+1})``.
        params: :class:`MicrocircuitParams`.
        activation: hidden transfer function; ``output_activation``: the output layer's (``"linear"``
            makes the free output the effective network's linear output, so the BP reference is the
            plain MSE gradient of :meth:`effective_network`).
        prospective: Latent-Equilibrium rates; ``le_iterations`` fixed-point sweeps for :math:`\breve u`
            (0: ``5 N + 5``; each sweep contracts the error by about the feedback gain, ~0.3 for the presets).

    The state is ``(u_P, u_I)``: ``u_P = (u_1, ..., u_N)``, ``u_I = (u^I_1, ..., u^I_{N-1})``; each array is
    ``(n,)`` or ``(batch, n)``. Data arguments: ``(x, y=None, nudge=1.0)``; ``x`` may be a
    :class:`PatternStream` (then ``y`` defaults to its targets).
    """

    weights: tuple[Array, ...]
    biases: tuple[Array, ...]
    top_down: tuple[Array, ...]
    w_ip: tuple[Array, ...]
    b_ip: tuple[Array, ...]
    w_pi: tuple[Array, ...]
    params: MicrocircuitParams = MicrocircuitParams()
    activation: str = eqx.field(static=True, default="logistic")
    output_activation: str = eqx.field(static=True, default="linear")
    prospective: bool = eqx.field(static=True, default=False)
    le_iterations: int = eqx.field(static=True, default=0)

    def __check_init__(self):
        get_activation(self.activation)
        get_activation(self.output_activation)
        n = len(self.weights)
        if n < 1:
            raise ShapeError("a microcircuit needs at least one forward weight matrix")
        counts = dict(biases=len(self.biases), top_down=len(self.top_down), w_ip=len(self.w_ip), b_ip=len(self.b_ip), w_pi=len(self.w_pi))
        want = dict(biases=n, top_down=n - 1, w_ip=n - 1, b_ip=n - 1, w_pi=n - 1)
        for k, c in counts.items():
            if c != want[k]:
                raise ShapeError(f"microcircuit with {n} forward layers needs {want[k]} {k} arrays, got {c}")
        sizes = [self.weights[0].shape[1]] + [w.shape[0] for w in self.weights]
        for l, w in enumerate(self.weights, start=1):
            if w.ndim != 2 or w.shape != (sizes[l], sizes[l - 1]):
                raise ShapeError(f"forward weight W_{l} has shape {w.shape}; layer sizes {tuple(sizes)} need ({sizes[l]}, {sizes[l - 1]})")
            if self.biases[l - 1].shape != (sizes[l],):
                raise ShapeError(f"bias b_{l} has shape {self.biases[l - 1].shape}; need ({sizes[l]},)")
        for k in range(1, n):
            checks = {
                f"top-down B_{k}": (self.top_down[k - 1], (sizes[k], sizes[k + 1])),
                f"pyramid-to-interneuron W_IP_{k}": (self.w_ip[k - 1], (sizes[k + 1], sizes[k])),
                f"interneuron bias b_IP_{k}": (self.b_ip[k - 1], (sizes[k + 1],)),
                f"interneuron-to-pyramid W_PI_{k}": (self.w_pi[k - 1], (sizes[k], sizes[k + 1])),
            }
            for what, (a, shape) in checks.items():
                if a.shape != shape:
                    raise ShapeError(f"{what} has shape {a.shape}; layer sizes {tuple(sizes)} need {shape}")
        if self.le_iterations < 0:
            raise ValueError(f"le_iterations must be >= 0, got {self.le_iterations}")

    # -- structure -----------------------------------------------------------------------------

    @property
    def sizes(self) -> tuple[int, ...]:
        return (self.weights[0].shape[1],) + tuple(w.shape[0] for w in self.weights)

    @property
    def depth(self) -> int:
        """``N``, the number of forward weight layers (output layer index)."""
        return len(self.weights)

    @property
    def name(self) -> str:
        return f"Microcircuit(sizes={self.sizes}{', prospective' if self.prospective else ''})"

    def phi(self, k: int, u):
        """Transfer function of pyramidal layer ``k`` (1-based; ``k = N`` is the output)."""
        return get_activation(self.output_activation if k == self.depth else self.activation)(u)

    @classmethod
    def create(
        cls,
        sizes: Sequence[int],
        *,
        key: PRNGKeyArray,
        params: MicrocircuitParams | str = "bern",
        activation: str = "logistic",
        output_activation: str = "linear",
        weight_scale: float | None = None,
        top_down: str = "transpose",
        top_down_scale: float = 1.0,
        lateral: str = "sps",
        lateral_scale: float = 1.0,
        bias_scale: float = 0.0,
        prospective: bool = False,
        le_iterations: int = 0,
        dtype=None,
    ) -> Microcircuit:
        """A microcircuit with layer widths ``sizes = (n_0, ..., n_N)``.

        Forward weights are ``U(-s, s)`` with ``s = weight_scale`` (default :math:`\\sqrt{3/n_{in}}`, unit
        variance gain). ``top_down``: ``"transpose"`` (:math:`B_k = W_{k+1}^\\top`, the BP case) or
        ``"random"`` (fixed random, the feedback-alignment case, ``U(-top_down_scale, top_down_scale)``).
        ``lateral``: ``"sps"`` (closed-form self-predicting state) or ``"random"`` (``U(-lateral_scale, .)``).
        """
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) < 2 or any(s <= 0 for s in sizes):
            raise ShapeError(f"sizes must list at least two positive layer widths, got {sizes}")
        if isinstance(params, str):
            params = preset(params)
        dtype = dtype or jnp.zeros(()).dtype
        n = len(sizes) - 1
        keys = jax.random.split(key, 5 * n)
        weights, biases, tds, wip, bip, wpi = [], [], [], [], [], []
        for l in range(1, n + 1):
            s = weight_scale if weight_scale is not None else float(np.sqrt(3.0 / sizes[l - 1]))
            weights.append(jax.random.uniform(keys[5 * (l - 1)], (sizes[l], sizes[l - 1]), dtype, -s, s))
            biases.append(bias_scale * jax.random.normal(keys[5 * (l - 1) + 1], (sizes[l],), dtype))
        for k in range(1, n):
            kk = keys[5 * (k - 1) + 2 : 5 * (k - 1) + 5]
            if top_down == "transpose":
                tds.append(top_down_scale * weights[k].T)
            elif top_down == "random":
                tds.append(jax.random.uniform(kk[0], (sizes[k], sizes[k + 1]), dtype, -top_down_scale, top_down_scale))
            else:
                raise ValueError(f"top_down must be 'transpose' or 'random', got {top_down!r}")
            wip.append(lateral_scale * jax.random.uniform(kk[1], (sizes[k + 1], sizes[k]), dtype, -1.0, 1.0))
            bip.append(jnp.zeros((sizes[k + 1],), dtype))
            wpi.append(lateral_scale * jax.random.uniform(kk[2], (sizes[k], sizes[k + 1]), dtype, -1.0, 1.0))
        model = cls(tuple(weights), tuple(biases), tuple(tds), tuple(wip), tuple(bip), tuple(wpi), params, activation, output_activation, prospective, le_iterations)
        if lateral == "sps":
            model = model.self_predicting()
        elif lateral != "random":
            raise ValueError(f"lateral must be 'sps' or 'random', got {lateral!r}")
        return model

    # -- self-predicting state -----------------------------------------------------------------

    def sps_factor(self, k: int):
        r""":math:`g_B(g_{lk}+g_D)/(g_D\,g_{k+1})`: the SPS ratio :math:`W^{IP}_k / W_{k+1}`."""
        p = self.params
        g_above = p.g_out_free if k + 1 == self.depth else p.g_hidden
        return p.g_B * (p.g_lk + p.g_D) / (p.g_D * g_above)

    def self_predicting(self) -> Microcircuit:
        r"""The closed-form self-predicting state: :math:`W^{PI}_k = -B_k`,
        :math:`W^{IP}_k = \frac{g_B(g_{lk}+g_D)}{g_D g_{k+1}} W_{k+1}`, :math:`b^{IP}_k` likewise (§3.1)."""
        n = self.depth
        w_pi = tuple(-b for b in self.top_down)
        w_ip = tuple(self.sps_factor(k) * self.weights[k] for k in range(1, n))
        b_ip = tuple(self.sps_factor(k) * self.biases[k] for k in range(1, n))
        return eqx.tree_at(lambda m: (m.w_pi, m.w_ip, m.b_ip), self, (w_pi, w_ip, b_ip))

    def effective_network(self) -> Network:
        r"""The feedforward network whose pass is the free steady state in the SPS: weights :math:`\hat g_k W_k`.

        Its output is the output potential :math:`u_N` (linear); hidden rates use ``activation``.
        """
        n = self.depth
        g = [self.params.attenuation(k == n) for k in range(1, n + 1)]
        return Network(tuple(gk * w for gk, w in zip(g, self.weights)), tuple(gk * b for gk, b in zip(g, self.biases)), self.activation)

    # -- dynamics ------------------------------------------------------------------------------

    @staticmethod
    def _data(t, x, y, nudge):
        if isinstance(x, PatternStream):
            y = x.target(t) if y is None else y
            x = x.input(t)
        if y is None:
            return x, jnp.zeros(()), 0.0
        return x, y, nudge

    def init_state(self, x, t=0.0):
        """Initial state: the SPS feedforward guess (:math:`u_k = \\hat g_k v_{B,k}`, :math:`u^I_k = u_{k+1}`)."""
        x = x.input(t) if isinstance(x, PatternStream) else x
        us = self.effective_network().forward(x)[1:]
        return (tuple(us), tuple(us[1:]))

    def rates(self, state, x):
        """``(r_P, r_I)``: ``r_P = (r_0 = x, r_1, ..., r_N)``, ``r_I = (r^I_1, ..., r^I_{N-1})``."""
        u_p, u_i = state
        r_p = (x,) + tuple(self.phi(k, u) for k, u in enumerate(u_p, start=1))
        r_i = tuple(self.phi(k + 1, u) for k, u in enumerate(u_i, start=1))
        return r_p, r_i

    def dendrites(self, r_p, r_i):
        """``(v_B, v_A, v_I)`` from the rates (paper Eqs. 3-5): lists over layers ``1..N``, ``1..N-1``, ``1..N-1``."""
        n = self.depth
        v_b = [_mv(self.weights[k - 1], r_p[k - 1]) + self.biases[k - 1] for k in range(1, n + 1)]
        v_a = [_mv(self.top_down[k - 1], r_p[k + 1]) + _mv(self.w_pi[k - 1], r_i[k - 1]) for k in range(1, n)]
        v_i = [_mv(self.w_ip[k - 1], r_p[k]) + self.b_ip[k - 1] for k in range(1, n)]
        return v_b, v_a, v_i

    def _steady(self, state, hat, x, y, nudge):
        """Instantaneous steady-state potentials ``V∞`` (and total conductances) given rate potentials ``hat``."""
        p = self.params
        n = self.depth
        r_p, r_i = self.rates(hat, x)
        v_b, v_a, v_i = self.dendrites(r_p, r_i)
        target_p, g_p = [], []
        for k in range(1, n):
            target_p.append((p.g_B * v_b[k - 1] + p.g_A * v_a[k - 1]) / p.g_hidden)
            g_p.append(p.g_hidden)
        g_out = p.g_out_free + nudge * p.g_som
        target_p.append((p.g_B * v_b[n - 1] + nudge * p.g_som * y) / g_out)
        g_p.append(g_out)
        teacher = hat[0] if self.prospective else state[0]
        target_i = [(p.g_D * v_i[k - 1] + p.g_nI * teacher[k]) / p.g_inter for k in range(1, n)]
        return (tuple(target_p), tuple(target_i)), (tuple(g_p), tuple([p.g_inter] * (n - 1)))

    def _field_given(self, state, hat, x, y, nudge):
        (tp, ti), (gp, gi) = self._steady(state, hat, x, y, nudge)
        c = self.params.c_m
        du_p = tuple(g * (v - u) / c for g, v, u in zip(gp, tp, state[0]))
        du_i = tuple(g * (v - u) / c for g, v, u in zip(gi, ti, state[1]))
        return (du_p, du_i)

    def time_constants(self, nudge=0.0):
        """Per-population effective time constants ``((tau_1..tau_N), (tau^I_1..))`` (scalars)."""
        p = self.params
        n = self.depth
        tp = tuple([p.tau_hidden] * (n - 1) + [p.c_m / (p.g_out_free + nudge * p.g_som)])
        return (tp, tuple([p.c_m / p.g_inter] * (n - 1)))

    def prospective_potentials(self, t, state, x, y=None, nudge=1.0):
        r""":math:`\breve u = u + \tau\dot u` with prospective rates inside :math:`\dot u` (fixed-point sweeps).

        Non-prospective models return ``state`` itself.
        """
        x, y, nudge = self._data(t, x, y, nudge)
        if not self.prospective:
            return state
        taus = self.time_constants(nudge)
        taus = jax.tree.map(lambda tau, u: tau * jnp.ones_like(u), taus, state)
        iters = self.le_iterations or 5 * self.depth + 5
        hat = state
        for _ in range(iters):
            hat = prospective_state(lambda t_, u_, a_, hat=hat: self._field_given(u_, hat, x, y, nudge), t, state, None, taus)
        return hat

    def vector_field(self, t, state, x, y=None, nudge=1.0):
        """:math:`\\dot u` of pyramids and interneurons (rates prospective when ``prospective``)."""
        hat = self.prospective_potentials(t, state, x, y, nudge)
        x, y, nudge = self._data(t, x, y, nudge)
        return self._field_given(state, hat, x, y, nudge)

    def diffusion(self, t, state, *data):
        """Additive somatic noise :math:`\\sigma/c_m` on every potential (for :func:`dynlearn.simulate`)."""
        return jax.tree.map(lambda u: self.params.sigma / self.params.c_m * jnp.ones_like(u), state)

    # -- observables ---------------------------------------------------------------------------

    def apical(self, state, x, t=0.0, y=None, nudge=1.0):
        """Apical potentials :math:`v_{A,k}` (``k = 1..N-1``) at ``state`` (from prospective rates if LE)."""
        hat = self.prospective_potentials(t, state, x, y, nudge)
        x, _, _ = self._data(t, x, y, nudge)
        return self.dendrites(*self.rates(hat, x))[1]

    def output(self, state):
        """Output potentials :math:`u_N`."""
        return state[0][-1]

    # -- plasticity ----------------------------------------------------------------------------

    def plasticity(self, state, x, t=0.0, y=None, nudge=1.0) -> Microcircuit:
        r"""The Urbanczik-Senn rules (paper Eqs. 7-10) at ``state`` (summed over a batch), without learning rates.

        Returns a :class:`Microcircuit`-shaped PyTree whose weight fields hold the rule terms:
        :math:`(\varphi(u_k) - \varphi(\hat v_{B,k}))r_{k-1}^\top` for ``weights`` (and ``biases``),
        :math:`(\varphi(u^I_k) - \varphi(\hat v^I_k))r_k^\top` for ``w_ip`` (``b_ip``),
        :math:`-v_{A,k}(r^I_k)^\top` for ``w_pi``, :math:`(\varphi(u_k) - \varphi(B_k r_{k+1}))r_{k+1}^\top` for ``top_down``.
        """
        p = self.params
        n = self.depth
        hat = self.prospective_potentials(t, state, x, y, nudge)
        x, _, _ = self._data(t, x, y, nudge)
        u_p, u_i = hat
        r_p, r_i = self.rates(hat, x)
        v_b, v_a, v_i = self.dendrites(r_p, r_i)
        dw, db = [], []
        for k in range(1, n + 1):
            err = self.phi(k, u_p[k - 1]) - self.phi(k, p.attenuation(k == n) * v_b[k - 1])
            dw.append(_outer(err, r_p[k - 1]))
            db.append(_sum_batch(err, self.sizes[k]))
        dwip, dbip, dwpi, dtd = [], [], [], []
        for k in range(1, n):
            err = self.phi(k + 1, u_i[k - 1]) - self.phi(k + 1, p.interneuron_attenuation * v_i[k - 1])
            dwip.append(_outer(err, r_p[k]))
            dbip.append(_sum_batch(err, self.sizes[k + 1]))
            dwpi.append(_outer(-v_a[k - 1], r_i[k - 1]))
            td_err = self.phi(k, u_p[k - 1]) - self.phi(k, _mv(self.top_down[k - 1], r_p[k + 1]))
            dtd.append(_outer(td_err, r_p[k + 1]))
        return eqx.tree_at(
            lambda m: (m.weights, m.biases, m.w_ip, m.b_ip, m.w_pi, m.top_down),
            self,
            (tuple(dw), tuple(db), tuple(dwip), tuple(dbip), tuple(dwpi), tuple(dtd)),
        )

    # -- equilibria ----------------------------------------------------------------------------

    def equilibrium(self, x, y=None, nudge=1.0, *, exact: bool = False, state0=None, **relax_options):
        """Relax to the steady state (``exact=True``: then Newton-polish to residual 1e-12, for theorem checks)."""
        return equilibrium(self, x, y, nudge, state0=state0, polish=exact, **relax_options)

    def two_step(self, x, y=None, nudge=1.0):
        r"""The fast two-step approximation of the steady state (paper §3.4; no prospective rates).

        Forward sweep: :math:`u_k = \hat g_k v_{B,k}`; output
        :math:`u_N = (g_B v_{B,N} + g_{som}u^{trgt})/(g_{lk}+g_B+g_{som})`; backward sweep ``k = N-1..1``:
        interneurons from the forward rates and the (updated) layer above, then
        :math:`u_k = (g_B v_{B,k} + g_A v_{A,k})/(g_{lk}+g_B+g_A)` with the forward-sweep :math:`v_{B,k}`.
        Exact in the free phase of the SPS; to leading order in the feedback strength under nudging.
        """
        p = self.params
        n = self.depth
        x, y, nudge = self._data(0.0, x, y, nudge)
        free = self.effective_network().forward(x)[1:]
        r_f = (x,) + tuple(self.phi(k, u) for k, u in enumerate(free, start=1))
        v_b = [_mv(self.weights[k - 1], r_f[k - 1]) + self.biases[k - 1] for k in range(1, n + 1)]
        u_p = list(free)
        u_p[n - 1] = (p.g_B * v_b[n - 1] + nudge * p.g_som * y) / (p.g_out_free + nudge * p.g_som)
        u_i = [None] * (n - 1)
        for k in range(n - 1, 0, -1):
            v_i = _mv(self.w_ip[k - 1], r_f[k]) + self.b_ip[k - 1]
            u_i[k - 1] = (p.g_D * v_i + p.g_nI * u_p[k]) / p.g_inter
            v_a = _mv(self.top_down[k - 1], self.phi(k + 1, u_p[k])) + _mv(self.w_pi[k - 1], self.phi(k + 1, u_i[k - 1]))
            u_p[k - 1] = (p.g_B * v_b[k - 1] + p.g_A * v_a) / p.g_hidden
        return (tuple(u_p), tuple(u_i))

    def validate_inputs(self, x, y=None) -> None:
        """Inputs and targets against the layer sizes; a :class:`PatternStream` is checked pattern by pattern."""
        if isinstance(x, PatternStream):
            x, y = x.inputs, (x.targets if y is None else None)
        self.effective_network().validate_inputs(x, y)


# ----------------------------------------------------------------------------- learning in time


class Plasticity(eqx.Module):
    r"""Learning rates and the low-pass filter of the plasticity (Sacramento et al. 2018, §3.3).

    ``eta_fw``: forward rates (a scalar or one per layer ``1..N``); ``eta_ip``, ``eta_pi``, ``eta_td``
    (0: that weight is fixed); ``tau_w``: time constant of the low-pass filter
    :math:`\tau_w\dot{\Delta} = -\Delta + \text{rule}`, :math:`\dot W = \Delta` (``None``: no filter).
    ``transpose_top_down``: the top-down weights point along :math:`W_{k+1}^\top` at every instant, with the norm
    of the stored :math:`B_k`: :math:`B_k = \|B_k\|\,W_{k+1}^\top/\|W_{k+1}\|` (weight transport: the backprop-like
    reference while the forward weights learn, with the loop gain of the random B it replaces; ``eta_td`` is then
    unused). A Python bool, or a 0/1 array (so that runs with and without weight transport share one vmapped solve).
    """

    eta_fw: Any = 0.0
    eta_ip: Any = 0.0
    eta_pi: Any = 0.0
    eta_td: Any = 0.0
    tau_w: float | None = eqx.field(static=True, default=None)
    transpose_top_down: Any = False

    def __check_init__(self):
        for name in ("eta_fw", "eta_ip", "eta_pi", "eta_td"):
            for v in jax.tree.leaves(getattr(self, name)):
                if _concrete(v) and (not np.all(np.isfinite(np.asarray(v, float))) or np.any(np.asarray(v, float) < 0)):
                    raise ValueError(f"learning rate {name} must be finite and >= 0, got {v!r}")
        if self.tau_w is not None and not (self.tau_w > 0 and np.isfinite(self.tau_w)):
            raise ValueError(f"tau_w (plasticity low-pass time constant) must be > 0 or None, got {self.tau_w!r}")

    def scale(self, rule: Microcircuit) -> dict[str, tuple]:
        n = rule.depth
        eta_fw = self.eta_fw if isinstance(self.eta_fw, (tuple, list)) else (self.eta_fw,) * n
        if len(eta_fw) != n:
            raise ShapeError(f"eta_fw has {len(eta_fw)} entries but the microcircuit has {n} forward layers")
        return {
            "weights": tuple(e * d for e, d in zip(eta_fw, rule.weights)),
            "biases": tuple(e * d for e, d in zip(eta_fw, rule.biases)),
            "w_ip": tuple(self.eta_ip * d for d in rule.w_ip),
            "b_ip": tuple(self.eta_ip * d for d in rule.b_ip),
            "w_pi": tuple(self.eta_pi * d for d in rule.w_pi),
            "top_down": tuple(self.eta_td * d for d in rule.top_down),
        }


PLASTIC_FIELDS = ("weights", "biases", "w_ip", "b_ip", "w_pi", "top_down")


def plastic_weights(model: Microcircuit) -> dict[str, tuple]:
    """The plastic weights of ``model`` as a dict (the weight part of a learning state)."""
    return {k: getattr(model, k) for k in PLASTIC_FIELDS}


def with_weights(model: Microcircuit, weights: dict[str, tuple], transpose_top_down: bool = False) -> Microcircuit:
    """``model`` with the plastic weights ``weights`` (top-down along ``W_{k+1}^T`` when ``transpose_top_down``, see :class:`Plasticity`)."""
    weights = dict(weights)
    if transpose_top_down is False:
        return eqx.tree_at(lambda m: tuple(getattr(m, k) for k in PLASTIC_FIELDS), model, tuple(weights[k] for k in PLASTIC_FIELDS))
    flag = jnp.asarray(transpose_top_down) > 0.5
    # B_k along W_{k+1}^T with the norm of the stored B_k (so the feedback loop gain does not grow with W)
    aligned = tuple(jnp.linalg.norm(b) / jnp.maximum(jnp.linalg.norm(w), 1e-30) * w.T for w, b in zip(weights["weights"][1:], weights["top_down"]))
    weights["top_down"] = tuple(jnp.where(flag, a, b) for a, b in zip(aligned, weights["top_down"]))
    return eqx.tree_at(lambda m: tuple(getattr(m, k) for k in PLASTIC_FIELDS), model, tuple(weights[k] for k in PLASTIC_FIELDS))


def learning_field(t, y, args):
    """Neurons, weights (and plasticity filters) together: ``y = (neurons, weights, filters)``,
    ``args = (model, plasticity, x, target, nudge)``."""
    model, plasticity, x, target, nudge = args
    neurons, weights, filt = y
    m = with_weights(model, weights, plasticity.transpose_top_down)
    dn = m.vector_field(t, neurons, x, target, nudge)
    rule = plasticity.scale(m.plasticity(neurons, x, t, target, nudge))
    if plasticity.tau_w is None:
        return (dn, rule, filt)
    dfilt = jax.tree.map(lambda r, f: (r - f) / plasticity.tau_w, rule, filt)
    return (dn, filt, dfilt)


def _learning_diffusion(t, y, args):
    model = args[0]
    neurons, weights, filt = y
    return (model.diffusion(t, neurons), jax.tree.map(jnp.zeros_like, weights), jax.tree.map(jnp.zeros_like, filt))


def _neuron_noise(t, y, args):
    """The noise of the learning state as a linear map from the potentials' Brownian increments:
    ``dW -> (g * dW, 0, 0)`` with ``g = model.diffusion(t, neurons)``."""
    import lineax as lx

    model = args[0]
    neurons, weights, filt = y
    g = model.diffusion(t, neurons)
    zeros = jax.tree.map(jnp.zeros_like, (weights, filt))

    def apply(dw):
        return (jax.tree.map(jnp.multiply, g, dw), *zeros)

    return lx.FunctionLinearOperator(apply, jax.eval_shape(lambda: neurons))


class _Packer(eqx.Module):
    """Flattens a learning state to one vector and back (static structure, so jitted solves are reused)."""

    treedef: Any = eqx.field(static=True)
    shapes: tuple = eqx.field(static=True)

    @classmethod
    def of(cls, tree):
        leaves, treedef = jax.tree.flatten(tree)
        return cls(treedef, tuple(tuple(a.shape) for a in leaves))

    def ravel(self, tree):
        return jnp.concatenate([jnp.ravel(a) for a in jax.tree.leaves(tree)])

    def unravel(self, v):
        sizes = [int(np.prod(s)) for s in self.shapes]
        parts = jnp.split(v, np.cumsum(sizes)[:-1]) if len(sizes) > 1 else [v]
        return jax.tree.unflatten(self.treedef, [p.reshape(s) for p, s in zip(parts, self.shapes)])


class _FlatField(eqx.Module):
    packer: _Packer
    noise: bool = eqx.field(static=True)

    def __call__(self, t, v, args):
        fn = _learning_diffusion if self.noise else learning_field
        return self.packer.ravel(fn(t, self.packer.unravel(v), args))


class _FlatSave(eqx.Module):
    packer: _Packer
    save_fn: Any = eqx.field(static=True)

    def __call__(self, t, v, args):
        return self.save_fn(t, self.packer.unravel(v), args)


def simulate_learning(
    model: Microcircuit,
    plasticity: Plasticity,
    x,
    *,
    t1: float,
    dt: float,
    y=None,
    nudge=1.0,
    ts=None,
    save_fn=None,
    key=None,
    solver: str = "euler",
    brownian: str = "unsafe",
    throw: bool = True,
):
    """Simulate neurons and plastic weights together from ``t = 0`` to ``t1`` (fixed step ``dt``).

    ``x`` is typically a :class:`PatternStream`; with ``model.params.sigma > 0`` the somatic noise makes
    it an SDE (``key`` required). ``save_fn(t, (neurons, weights, filters), args)`` records derived
    quantities at ``ts``. Returns ``(trained model, Trajectory)``.

    ``brownian``: the Brownian path of the noise (see :func:`dynlearn.simulate`). The default ``"unsafe"``
    draws one Gaussian increment per fixed step (reproducible for a given ``key`` and ``dt``; a different
    ``dt`` gives a different path); ``"virtual"`` (a :class:`diffrax.VirtualBrownianTree`) gives the same
    path for every ``dt`` and allows differentiating through the solve, at a far higher cost per step.
    """
    neurons = model.init_state(x)
    weights = plastic_weights(model)
    filt = jax.tree.map(jnp.zeros_like, weights) if plasticity.tau_w is not None else jax.tree.map(lambda a: jnp.zeros((0,), a.dtype), weights)
    y0 = (neurons, weights, filt)
    if key is None and _concrete(model.params.sigma) and float(model.params.sigma) > 0:
        raise ValueError(f"{model.name}: somatic noise sigma = {float(model.params.sigma):g} > 0 needs a PRNG key (key=jax.random.key(seed))")
    noisy = key is not None
    field, diffusion, state0, fn = learning_field, _learning_diffusion if noisy else None, y0, save_fn
    packer = noise_shape = None
    # diffrax cannot save states with empty containers (a circuit without hidden layers): flatten those
    empty = model.depth == 1
    if noisy and brownian == "unsafe" and not empty:
        # Brownian increments only for the potentials (weights and filters are noise-free)
        diffusion, noise_shape = _neuron_noise, jax.eval_shape(lambda: neurons)
    elif noisy or empty:
        # one flat state vector: one Brownian tree instead of one per weight array (much faster to compile)
        packer = _Packer.of(y0)
        state0 = packer.ravel(y0)
        field, diffusion = _FlatField(packer, False), (_FlatField(packer, True) if noisy else None)
        fn = None if save_fn is None else _FlatSave(packer, save_fn)
    traj = simulate(
        field,
        state0,
        (model, plasticity, x, y, nudge),
        t1=t1,
        dt0=dt,
        ts=ts,
        solver=solver,
        diffusion=diffusion,
        key=key,
        save_fn=fn,
        noise_shape=noise_shape,
        brownian=brownian,
        name=model.name,
        throw=throw,
    )
    if packer is not None:
        ys = traj.ys if save_fn is not None else jax.vmap(packer.unravel)(traj.ys)
        traj = Trajectory(traj.ts, ys, packer.unravel(traj.final))
    return with_weights(model, traj.final[1], plasticity.transpose_top_down), traj


# ----------------------------------------------------------------------------- learner


def _steady_update(model: Microcircuit, x, y, relax_kw, inference):
    if inference == "two_step":
        state = model.two_step(x, y, 1.0)
    else:
        state = model.equilibrium(x, y, 1.0, **relax_kw).state
    return state, model.plasticity(state, x, 0.0, y, 1.0)


@register_learner("microcircuit")
def microcircuit_learner(
    *,
    preset_name: str = "bern",
    activation: str = "logistic",
    top_down: str = "random",
    inference: str = "ode",
    learn_lateral: bool = True,
    solver: str = "tsit5",
    t1: float = 2000.0,
    tol: float = 1e-5,
    rtol: float = 1e-4,
    atol: float = 1e-6,
    max_steps: int = 4096,
) -> Learner:
    """Sacramento et al. (2018): start in the SPS, nudge the output toward the target, relax the ODE to its
    steady state (``inference="ode"``; ``"two_step"``: the paper's fast approximation), apply the dendritic
    prediction rules to the forward weights (and ``W^{IP}`` when ``learn_lateral``, keeping the SPS as the
    forward weights change). Top-down ``B`` and ``W^{PI}`` stay fixed; ``top_down="random"`` is the
    feedback-alignment setting of the paper, ``"transpose"`` the BP-like one.
    """
    if inference not in ("ode", "two_step"):
        raise ValueError(f"inference must be 'ode' or 'two_step', got {inference!r}")
    relax_kw = dict(solver=solver, t1=t1, tol=tol, rtol=rtol, atol=atol, max_steps=max_steps, throw=False)

    def init(key, sizes):
        return Microcircuit.create(sizes, key=key, params=preset(preset_name).as_arrays(), activation=activation, top_down=top_down)

    def update(model: Microcircuit, x, y):
        state, rule = _steady_update(model, x, y, relax_kw, inference)
        zero = lambda a: jnp.zeros_like(a)  # noqa: E731
        grads = jax.tree.map(zero, eqx.filter(model, eqx.is_inexact_array))
        grads = eqx.tree_at(
            lambda m: (m.weights, m.biases), grads, (jax.tree.map(jnp.negative, rule.weights), jax.tree.map(jnp.negative, rule.biases))
        )
        if learn_lateral:
            grads = eqx.tree_at(lambda m: (m.w_ip, m.b_ip), grads, (jax.tree.map(jnp.negative, rule.w_ip), jax.tree.map(jnp.negative, rule.b_ip)))
        free = model.effective_network()(x)
        apical = model.apical(state, x, 0.0, y, 1.0)
        metrics = {
            "loss": mse_loss(free, y) / x.shape[0],
            "apical_sq": sum(jnp.sum(a**2) for a in apical) / x.shape[0],
        }
        return grads, metrics

    def predict(model: Microcircuit, x):
        if inference == "two_step":
            return model.two_step(x, None, 0.0)[0][-1]
        return model.equilibrium(x, None, 0.0, **relax_kw).state[0][-1]

    return Learner(
        name="microcircuit",
        init=init,
        update=update,
        predict=predict,
        description="dendritic cortical microcircuit (Sacramento et al. 2018): nudge, relax, dendritic-prediction plasticity",
        defaults=dict(preset=preset_name, activation=activation, top_down=top_down, inference=inference, learn_lateral=learn_lateral, **relax_kw),
    )
