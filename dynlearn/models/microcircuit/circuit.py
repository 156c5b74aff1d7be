r"""The dendritic cortical microcircuit (Sacramento, Costa, Bengio & Senn 2018, NeurIPS 31) as an ODE/SDE.

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

where the nudge strength :math:`\nu` = ``data.nudge`` scales the output's teaching conductance: the output nudging
that sets the strength of the top-down feedback, λ of Sacramento et al. (2018), which is the fraction
:math:`\lambda = \nu g_{som}/(g_{lk}+g_B+\nu g_{som})` by which the output potential moves toward the target;
``nudge = 0`` is the free circuit, 1 the paper's nudged one. Without a
target (``data.target(t)`` is ``None``) the circuit is free whatever the nudge. With :math:`\sigma > 0` this is an
SDE with additive noise (:meth:`Microcircuit.diffusion`, :func:`dynlearn.simulate` with ``diffusion=``).

Self-predicting state (SPS, paper §3.1): :math:`W^{PI}_k = -B_k` and
:math:`W^{IP}_k = \frac{g_B(g_{lk}+g_D)}{g_D\,g_{k+1}}W_{k+1}` (:math:`b^{IP}_k` likewise), with
:math:`g_{k+1} = g_{lk}+g_B+g_A` for a hidden layer above and :math:`g_{lk}+g_B` for the output. Without a
target the interneurons then reproduce the layer above and every apical potential vanishes; the free
steady state is the feedforward pass of the *effective* network with weights
:math:`\hat g_k W_k` (:meth:`Microcircuit.effective_network`).

Latent equilibrium (Haider et al. 2021, NeurIPS 34): with ``prospective=True`` every rate that leaves a
neuron is :math:`\varphi(\breve u)`, :math:`\breve u = u + \tau\,\dot u`, and interneurons are nudged toward
:math:`\breve u_{k+1}`. Since the rates inside :math:`\dot u` are themselves prospective, :math:`\breve u`
solves :math:`\breve u = u + \tau f(u; \varphi(\breve u))`; it is computed with
:func:`dynlearn.models.latent_equilibrium.prospective` by ``le_iterations`` fixed-point sweeps started from :math:`u`.
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from ...errors import ShapeError
from ...networks import Network, matvec
from ...networks import activation as get_activation
from ..base import Data, DynamicalModel
from ..latent_equilibrium import prospective as prospective_state
from .parameters import MicrocircuitParams, preset
from .plasticity import urbanczik_senn
from ... import draws


class PatternStream(eqx.Module):
    """Patterns presented one after another for ``t_pres`` each: ``input(t) = inputs[floor(t / t_pres)]``.

    ``targets`` (optional) are presented in step with the inputs (a target potential per pattern). Pass it as
    ``Data(None, None, nudge, stream)``.
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


def _drive(t, data: Data):
    """``(x, target, nudge)`` at time ``t``; no target means a free circuit (zero target, nudge 0)."""
    x, y = data.inputs(t), data.target(t)
    if y is None:
        return x, jnp.zeros(()), 0.0
    return x, y, data.nudge


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
    ``(n,)`` or ``(batch, n)``. The data are a :class:`dynlearn.models.Data` ``(x, y, nudge, stream)``: ``nudge`` is the
    output nudging ν (λ of Sacramento et al. 2018, see the module docstring); a :class:`PatternStream` as ``stream``
    gives the input and target at each time.
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
        if top_down not in ("transpose", "random"):
            raise ValueError(f"top_down must be 'transpose' or 'random', got {top_down!r}")
        if lateral not in ("sps", "random"):
            raise ValueError(f"lateral must be 'sps' or 'random', got {lateral!r}")
        params = preset(params) if isinstance(params, str) else params
        dtype = dtype or jnp.zeros(()).dtype
        n = len(sizes) - 1
        keys = jax.random.split(key, 5 * n)
        weights, biases, tds, wip, bip, wpi = [], [], [], [], [], []
        for l in range(1, n + 1):
            s = weight_scale if weight_scale is not None else float(np.sqrt(3.0 / sizes[l - 1]))
            weights.append(draws.uniform(keys[5 * (l - 1)], (sizes[l], sizes[l - 1]), dtype, -s, s))
            biases.append(bias_scale * draws.normal(keys[5 * (l - 1) + 1], (sizes[l],), dtype))
        for k in range(1, n):
            kk = keys[5 * (k - 1) + 2 : 5 * (k - 1) + 5]
            if top_down == "transpose":
                tds.append(top_down_scale * weights[k].T)
            else:
                tds.append(draws.uniform(kk[0], (sizes[k], sizes[k + 1]), dtype, -top_down_scale, top_down_scale))
            wip.append(lateral_scale * draws.uniform(kk[1], (sizes[k + 1], sizes[k]), dtype, -1.0, 1.0))
            bip.append(jnp.zeros((sizes[k + 1],), dtype))
            wpi.append(lateral_scale * draws.uniform(kk[2], (sizes[k], sizes[k + 1]), dtype, -1.0, 1.0))
        model = cls(tuple(weights), tuple(biases), tuple(tds), tuple(wip), tuple(bip), tuple(wpi), params, activation, output_activation, prospective, le_iterations)
        return model.self_predicting() if lateral == "sps" else model

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
        return Network.from_matrices([gk * w for gk, w in zip(g, self.weights)], [gk * b for gk, b in zip(g, self.biases)], self.activation)

    def validate(self, data: Data) -> None:
        """Inputs and targets against the layer sizes; a :class:`PatternStream` is checked pattern by pattern."""
        if data.stream is not None:
            if not isinstance(data.stream, PatternStream):
                return  # another kind of stream: its shapes are checked when it is read
            x, y = data.stream.inputs, data.stream.targets
        else:
            x, y = data.x, (data.y if (data.y is not None and getattr(data.y, "ndim", 0) >= 1) else None)
        self.effective_network().validate_inputs(x, y)

    # -- dynamics ------------------------------------------------------------------------------

    def init_state(self, data: Data):
        """Initial state: the SPS feedforward guess for the input at ``t = 0`` (:math:`u_k = \\hat g_k v_{B,k}`,
        :math:`u^I_k = u_{k+1}`)."""
        us = self.effective_network().forward(data.inputs(0.0))[1:]
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
        v_b = [matvec(self.weights[k - 1], r_p[k - 1]) + self.biases[k - 1] for k in range(1, n + 1)]
        v_a = [matvec(self.top_down[k - 1], r_p[k + 1]) + matvec(self.w_pi[k - 1], r_i[k - 1]) for k in range(1, n)]
        v_i = [matvec(self.w_ip[k - 1], r_p[k]) + self.b_ip[k - 1] for k in range(1, n)]
        return v_b, v_a, v_i

    def _steady(self, state, hat, drive):
        """Instantaneous steady-state potentials ``V∞`` (and total conductances) given rate potentials ``hat``."""
        x, y, nudge = drive
        p = self.params
        n = self.depth
        v_b, v_a, v_i = self.dendrites(*self.rates(hat, x))
        target_p = [(p.g_B * v_b[k - 1] + p.g_A * v_a[k - 1]) / p.g_hidden for k in range(1, n)]
        g_out = p.g_out_free + nudge * p.g_som
        target_p.append((p.g_B * v_b[n - 1] + nudge * p.g_som * y) / g_out)
        g_p = [p.g_hidden] * (n - 1) + [g_out]
        teacher = hat[0] if self.prospective else state[0]
        target_i = [(p.g_D * v_i[k - 1] + p.g_nI * teacher[k]) / p.g_inter for k in range(1, n)]
        return (tuple(target_p), tuple(target_i)), (tuple(g_p), tuple([p.g_inter] * (n - 1)))

    def _field_given(self, state, hat, drive):
        (tp, ti), (gp, gi) = self._steady(state, hat, drive)
        c = self.params.c_m
        du_p = tuple(g * (v - u) / c for g, v, u in zip(gp, tp, state[0]))
        du_i = tuple(g * (v - u) / c for g, v, u in zip(gi, ti, state[1]))
        return (du_p, du_i)

    def time_constants(self, nudge=0.0):
        """Per-population effective time constants ``((tau_1..tau_N), (tau^I_1..))`` (scalars) at nudge strength ``nudge``."""
        p = self.params
        n = self.depth
        tp = tuple([p.tau_hidden] * (n - 1) + [p.c_m / (p.g_out_free + nudge * p.g_som)])
        return (tp, tuple([p.c_m / p.g_inter] * (n - 1)))

    def prospective_potentials(self, t, state, data: Data):
        r""":math:`\breve u = u + \tau\dot u` with prospective rates inside :math:`\dot u` (fixed-point sweeps).

        Non-prospective models return ``state`` itself.
        """
        if not self.prospective:
            return state
        drive = _drive(t, data)
        taus = jax.tree.map(lambda tau, u: tau * jnp.ones_like(u), self.time_constants(drive[2]), state)
        hat = state
        for _ in range(self.le_iterations or 5 * self.depth + 5):
            hat = prospective_state(lambda t_, u_, a_, hat=hat: self._field_given(u_, hat, drive), t, state, None, taus)
        return hat

    def vector_field(self, t, state, data: Data):
        """:math:`\\dot u` of pyramids and interneurons (rates prospective when ``prospective``)."""
        hat = self.prospective_potentials(t, state, data)
        return self._field_given(state, hat, _drive(t, data))

    def diffusion(self, t, state, data: Data | None = None):
        """Additive somatic noise :math:`\\sigma/c_m` on every potential (for :func:`dynlearn.simulate`)."""
        return jax.tree.map(lambda u: self.params.sigma / self.params.c_m * jnp.ones_like(u), state)

    def two_step(self, data: Data):
        r"""The fast two-step approximation of the steady state (paper §3.4; no prospective rates).

        Forward sweep: :math:`u_k = \hat g_k v_{B,k}`; output
        :math:`u_N = (g_B v_{B,N} + \nu g_{som}u^{trgt})/(g_{lk}+g_B+\nu g_{som})`; backward sweep ``k = N-1..1``:
        interneurons from the forward rates and the (updated) layer above, then
        :math:`u_k = (g_B v_{B,k} + g_A v_{A,k})/(g_{lk}+g_B+g_A)` with the forward-sweep :math:`v_{B,k}`.
        Exact in the free phase of the SPS; to leading order in the feedback strength under nudging.
        """
        p = self.params
        n = self.depth
        x, y, nudge = _drive(0.0, data)
        free = self.effective_network().forward(x)[1:]
        r_f = (x,) + tuple(self.phi(k, u) for k, u in enumerate(free, start=1))
        v_b = [matvec(self.weights[k - 1], r_f[k - 1]) + self.biases[k - 1] for k in range(1, n + 1)]
        u_p = list(free)
        u_p[n - 1] = (p.g_B * v_b[n - 1] + nudge * p.g_som * y) / (p.g_out_free + nudge * p.g_som)
        u_i = [None] * (n - 1)
        for k in range(n - 1, 0, -1):
            v_i = matvec(self.w_ip[k - 1], r_f[k]) + self.b_ip[k - 1]
            u_i[k - 1] = (p.g_D * v_i + p.g_nI * u_p[k]) / p.g_inter
            v_a = matvec(self.top_down[k - 1], self.phi(k + 1, u_p[k])) + matvec(self.w_pi[k - 1], self.phi(k + 1, u_i[k - 1]))
            u_p[k - 1] = (p.g_B * v_b[k - 1] + p.g_A * v_a) / p.g_hidden
        return (tuple(u_p), tuple(u_i))

    # -- observables and plasticity --------------------------------------------------------------

    def apical(self, t, state, data: Data):
        """Apical potentials :math:`v_{A,k}` (``k = 1..N-1``) at ``state`` (from prospective rates if LE)."""
        hat = self.prospective_potentials(t, state, data)
        return self.dendrites(*self.rates(hat, data.inputs(t)))[1]

    def plasticity(self, t, state, data: Data) -> Microcircuit:
        r"""The Urbanczik-Senn rules (paper Eqs. 7-10) at ``state`` (summed over a batch), without learning rates,
        in **descent sign**: a :class:`Microcircuit`-shaped PyTree whose weight fields hold the negated rule terms
        (what ``jax.grad`` of a loss would give; the weights move along its negative). See
        :func:`dynlearn.models.microcircuit.plasticity.urbanczik_senn` for the terms."""
        hat = self.prospective_potentials(t, state, data)
        terms = urbanczik_senn(self, hat, data.inputs(t))
        return eqx.tree_at(lambda m: tuple(getattr(m, k) for k in terms), self, tuple(terms.values()))
