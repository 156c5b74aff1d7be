r"""Leaky integrate-and-fire populations and their fixed-step integrator.

Subthreshold dynamics (time in ms; ``current`` is the input drive, in units of the membrane potential):

.. math::

    \tau_\mathrm{syn}\,\dot i = -i + I(t), \qquad \tau_\mathrm{mem}\,\dot v = -(v - 0) + i ,

or, with ``tau_syn = 0`` (current-based synapse without filter), :math:`\tau_\mathrm{mem}\dot v = -v + I(t)`.
A spike is emitted when :math:`v \ge \vartheta`, with :math:`\vartheta = v_\mathrm{th}` (LIF) or
:math:`\vartheta = v_\mathrm{th} + \beta_a a` (ALIF, Bellec et al. 2018/2020, where the adaptation
:math:`\tau_a \dot a = -a` jumps by :math:`1 - e^{-dt/\tau_a}` at each spike); then ``reset="subtract"`` sets
:math:`v \leftarrow v - (\vartheta - v_\mathrm{reset})` and ``reset="zero"`` sets :math:`v \leftarrow v_\mathrm{reset}`,
and the neuron is held at :math:`v_\mathrm{reset}` (no spikes) for ``t_ref`` ms. :class:`ConductanceLIF` replaces the
current-based synapse by a conductance with a reversal potential.

:func:`step` integrates the linear subthreshold ODE exactly over one step with the input held constant over the
step (zero-order hold; the exponential-Euler scheme, exact for piecewise-constant input): with
:math:`\alpha = e^{-dt/\tau_\mathrm{mem}}`, :math:`\kappa = e^{-dt/\tau_\mathrm{syn}}`,

.. math::

    i' = I + (i - I)\kappa, \qquad
    v' = I + (v - I)\alpha + (i - I)\,\frac{\tau_\mathrm{syn}}{\tau_\mathrm{syn} - \tau_\mathrm{mem}}(\kappa - \alpha),

(the last coefficient tends to :math:`(dt/\tau_\mathrm{mem})\alpha` when :math:`\tau_\mathrm{syn} = \tau_\mathrm{mem}`),
then tests the threshold on :math:`v'`. Without synaptic filter this is :math:`v' = \alpha v + (1-\alpha) I`, the
discrete LIF of e-prop (Bellec et al., Nat. Commun. 2020) up to the input scale :math:`1-\alpha`.
A spike is therefore detected at the end of the step in which the threshold is crossed: the fixed-step spike time
is late by at most ``dt`` (first order; the event-driven integrator of :mod:`.events` gives exact times).

:func:`spike` is the Heaviside step with a surrogate derivative (custom JVP) for gradient-based training:
``"fast_sigmoid"`` (SuperSpike, Zenke & Ganguli 2018) :math:`\sigma'(x) = \frac{1}{2w}(1 + |x|/w)^{-2}` or
``"triangle"`` (Bellec et al. 2018) :math:`\sigma'(x) = \frac1w\max(0, 1 - |x|/w)`; both have unit area, so they
approximate the derivative of a unit step; ``w`` is ``surrogate_width``.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

SURROGATES = ("fast_sigmoid", "triangle")


def surrogate_grad(x: Array, width, kind: str = "fast_sigmoid") -> Array:
    r"""The surrogate derivative :math:`\sigma'(x)` of the spike at ``x = v - threshold`` (unit area, see module)."""
    if kind == "fast_sigmoid":
        return 0.5 / width / (1.0 + jnp.abs(x) / width) ** 2
    if kind == "triangle":
        return jnp.maximum(0.0, 1.0 - jnp.abs(x) / width) / width
    raise ValueError(f"surrogate must be one of {SURROGATES}, got {kind!r}")


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _spike(x, width, kind: str):
    del width
    return (x >= 0).astype(x.dtype)


@_spike.defjvp
def _spike_jvp(kind, primals, tangents):
    """The surrogate of ``kind`` (static: only that one is traced) times the tangent of ``x``; ``width`` has none."""
    x, width = primals
    return _spike(x, width, kind), surrogate_grad(x, width, kind) * tangents[0]


def spike(v_minus_threshold: Array, width=0.5, kind: str = "fast_sigmoid") -> Array:
    r"""Heaviside :math:`H(v - \vartheta)` forward; derivative replaced by the surrogate ``kind`` of ``width``."""
    if kind not in SURROGATES:
        raise ValueError(f"surrogate must be one of {SURROGATES}, got {kind!r}")
    x = jnp.asarray(v_minus_threshold)
    return _spike(x, jnp.asarray(width, dtype=x.dtype), kind)


class LIF(eqx.Module):
    """Leaky integrate-and-fire population (parameters shared by its neurons; may be arrays broadcastable to them).

    Attributes:
        tau_mem: membrane time constant τ_m (ms).
        tau_syn: synaptic time constant τ_s (ms); 0 means current-based without synaptic filter.
        v_th: threshold v_th; v_reset: reset potential; t_ref: refractory period (ms).
        reset: ``"subtract"`` (v ← v − (ϑ − v_reset)) or ``"zero"`` (v ← v_reset).
        surrogate_width: w of the surrogate derivative; surrogate: ``"fast_sigmoid"`` or ``"triangle"``.
        detach_reset: stop gradients through the reset term (common for surrogate-gradient BPTT).
    """

    tau_mem: float = 20.0
    tau_syn: float = 5.0
    v_th: float = 1.0
    v_reset: float = 0.0
    t_ref: float = 0.0
    reset: str = eqx.field(static=True, default="subtract")
    surrogate_width: float = 0.5
    surrogate: str = eqx.field(static=True, default="fast_sigmoid")
    detach_reset: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        if self.reset not in ("subtract", "zero"):
            raise ValueError(f"reset must be 'subtract' or 'zero', got {self.reset!r}")
        if self.surrogate not in SURROGATES:
            raise ValueError(f"surrogate must be one of {SURROGATES}, got {self.surrogate!r}")

    def threshold(self, state: NeuronState) -> Array:
        """The current threshold ϑ (v_th for LIF)."""
        return jnp.asarray(self.v_th, dtype=state.v.dtype)

    def adapt_decay(self, dt) -> Array:
        return jnp.asarray(0.0)

    def subthreshold(self, v: Array, i_syn: Array, current: Array, dt) -> tuple[Array, Array]:
        """The subthreshold update over ``dt`` (module equations); see :func:`subthreshold`."""
        return _current_based(self, v, i_syn, current, dt)


class ALIF(LIF):
    """Adaptive LIF: threshold ϑ = v_th + beta_adapt · a, with τ_a da/dt = −a and a jump of 1 − e^{−dt/τ_a} per spike."""

    tau_adapt: float = 200.0
    beta_adapt: float = 1.8

    def threshold(self, state: NeuronState) -> Array:
        return self.v_th + self.beta_adapt * state.adapt

    def adapt_decay(self, dt) -> Array:
        return jnp.exp(-dt / jnp.asarray(self.tau_adapt))


class ConductanceLIF(LIF):
    r"""LIF with a conductance-based synapse: ``i_syn`` is the synaptic conductance :math:`g` (relative to the leak),
    :math:`\tau_\mathrm{syn}\dot g = -g + I(t)`, :math:`\tau_\mathrm{mem}\dot v = -v + g\,(E_\mathrm{syn} - v)`
    with reversal potential ``e_syn`` (> v_th: excitatory, < 0: inhibitory).

    The step is exponential Euler with :math:`g` frozen at its value at the start of the step: with
    :math:`k = 1 + g` and :math:`v_\infty = gE_\mathrm{syn}/k`, :math:`v' = v_\infty + (v - v_\infty)e^{-k\,dt/\tau_\mathrm{mem}}`,
    then :math:`g' = I + (g - I)e^{-dt/\tau_\mathrm{syn}}` — exact without synaptic filter (``tau_syn = 0``,
    :math:`g = I` over the step), first order in ``dt`` otherwise.
    """

    e_syn: float = 5.0

    def subthreshold(self, v, i_syn, current, dt):
        g = jnp.where(jnp.asarray(self.tau_syn) > 0, i_syn, current)
        k = 1.0 + g
        v_inf = g * self.e_syn / k
        v_new = v_inf + (v - v_inf) * jnp.exp(-k * dt / jnp.asarray(self.tau_mem))
        kappa = _decay(self.tau_syn, dt)
        return v_new, current + (i_syn - current) * kappa


class NeuronState(eqx.Module):
    """State of a population: membrane ``v``, synaptic current ``i_syn``, ``refractory`` time left (ms), ``adapt``."""

    v: Array
    i_syn: Array
    refractory: Array
    adapt: Array


def init_state(neuron: LIF, shape, dtype=None, v0=None) -> NeuronState:
    """Resting state (v = v_reset unless ``v0`` is given; zero current, refractory time and adaptation)."""
    z = jnp.zeros(shape, dtype=dtype)
    v = z + neuron.v_reset if v0 is None else jnp.broadcast_to(jnp.asarray(v0, dtype=z.dtype), z.shape)
    return NeuronState(v=v, i_syn=z, refractory=z, adapt=z)


def _decay(tau, dt):
    """e^{−dt/τ}, 0 where τ = 0 (no filter), with gradients safe at τ = 0."""
    tau = jnp.asarray(tau)
    pos = tau > 0
    return jnp.where(pos, jnp.exp(-dt / jnp.where(pos, tau, 1.0)), 0.0)


def subthreshold(neuron: LIF, v: Array, i_syn: Array, current: Array, dt) -> tuple[Array, Array]:
    """``(v, i_syn)`` after ``dt`` without threshold: exact for the current-based LIF with ``current`` held constant
    (module equations); the neuron's own rule for other kinds (:class:`ConductanceLIF`)."""
    return neuron.subthreshold(v, i_syn, current, dt)


def _current_based(neuron: LIF, v: Array, i_syn: Array, current: Array, dt) -> tuple[Array, Array]:
    tm, ts = jnp.asarray(neuron.tau_mem), jnp.asarray(neuron.tau_syn)
    alpha, kappa = _decay(tm, dt), _decay(ts, dt)
    diff = ts - tm
    close = jnp.abs(diff) <= 1e-9 * tm
    coef = jnp.where(close, dt / tm * alpha, ts * (kappa - alpha) / jnp.where(close, 1.0, diff))
    u = i_syn - current
    v_new = current + (v - current) * alpha + u * coef
    i_new = current + u * kappa
    return v_new, i_new


def step(neuron: LIF, state: NeuronState, current: Array, dt) -> tuple[NeuronState, Array]:
    """One step of length ``dt``: exact subthreshold update, threshold, reset, refractory and adaptation.

    Returns ``(new_state, spikes)``; spikes are 0/1 with the surrogate derivative of :func:`spike`.
    """
    new, _ = _step_with_voltage(neuron, state, current, dt)
    return new[0], new[1]


def _step_with_voltage(neuron, state, current, dt):
    current = jnp.asarray(current, dtype=state.v.dtype)
    v_sub, i_new = neuron.subthreshold(state.v, state.i_syn, current, dt)
    held = jax.lax.stop_gradient(state.refractory > 0)
    v_sub = jnp.where(held, jnp.asarray(neuron.v_reset, v_sub.dtype), v_sub)
    theta = neuron.threshold(state)
    s = spike(v_sub - theta, neuron.surrogate_width, neuron.surrogate) * (1.0 - held)
    s_reset = jax.lax.stop_gradient(s) if neuron.detach_reset else s
    if neuron.reset == "subtract":
        v_new = v_sub - s_reset * (theta - neuron.v_reset)
    else:
        v_new = v_sub * (1.0 - s_reset) + s_reset * neuron.v_reset
    fired = jax.lax.stop_gradient(s) > 0
    refr = jnp.where(fired, jnp.asarray(neuron.t_ref, v_sub.dtype), jnp.maximum(state.refractory - dt, 0.0))
    rho = neuron.adapt_decay(dt)
    adapt = rho * state.adapt + (1.0 - rho) * s
    return (NeuronState(v=v_new, i_syn=i_new, refractory=refr, adapt=adapt), s), v_sub


def run(neuron: LIF, currents: Array, dt, state0: NeuronState | None = None):
    """Fixed-step simulation over the leading (time) axis of ``currents`` with :func:`step` inside ``lax.scan``.

    Returns ``(final_state, spikes[T, ...], voltages[T, ...])``; ``voltages`` are the pre-reset potentials the
    threshold was tested on (held at v_reset while refractory).
    """
    currents = jnp.asarray(currents)
    if state0 is None:
        state0 = init_state(neuron, currents.shape[1:], currents.dtype)

    def body(state, current):
        (new, s), v = _step_with_voltage(neuron, state, current, dt)
        return new, (s, v)

    final, (spikes, volts) = jax.lax.scan(body, state0, currents)
    return final, spikes, volts


def lif_first_spike_time(neuron: LIF, current, v0=None):
    r"""Closed-form first spike time of a current-based LIF (``tau_syn = 0``) under constant ``current`` I > v_th:

    :math:`t^* = \tau_\mathrm{mem}\ln\frac{I - v_0}{I - v_\mathrm{th}}`; after each reset to v_reset the
    inter-spike interval is :math:`\tau_\mathrm{mem}\ln\frac{I - v_\mathrm{reset}}{I - v_\mathrm{th}} + t_\mathrm{ref}`.
    """
    v0 = neuron.v_reset if v0 is None else v0
    return neuron.tau_mem * jnp.log((current - v0) / (current - neuron.v_th))


def lif_spike_times_closed_form(neuron: LIF, current, n_spikes: int, v0=None) -> Array:
    """The first ``n_spikes`` spike times of :func:`lif_first_spike_time`'s neuron (reset ``"zero"`` semantics)."""
    t0 = lif_first_spike_time(neuron, current, v0)
    isi = neuron.tau_mem * jnp.log((current - neuron.v_reset) / (current - neuron.v_th)) + neuron.t_ref
    return t0 + isi * jnp.arange(n_spikes)
