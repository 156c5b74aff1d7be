r"""Event-driven exact spike times of small LIF networks, and the matching fixed-step network simulation.

Network of ``N`` LIF neurons (shared parameters), constant external drive ``I`` and recurrent weights ``W``:

.. math::

    \tau_\mathrm{syn}\,\dot i = -i + I, \qquad \tau_\mathrm{mem}\,\dot v = -v + i, \qquad
    v_j(t^-) = v_\mathrm{th} \;\Rightarrow\; v_j \leftarrow v_\mathrm{reset},\; i \leftarrow i + W_{:,j}

(with ``tau_syn = 0``: :math:`\tau_\mathrm{mem}\dot v = -v + I` and a spike of ``j`` kicks
:math:`v \leftarrow v + W_{:,j}`, delta synapses). At the exact crossing both reset modes give v_reset; a neuron
kicked over threshold (a cascade) is reset as its ``reset`` says.

:func:`event_spike_times` integrates the subthreshold ODE with diffrax (Tsit5, tight PID tolerances) and a
:class:`diffrax.Event` on :math:`\max_j (v_j - v_\mathrm{th})` (upward crossings) whose time is refined by an
optimistix Newton root-find on the dense solution; at the event the neuron at threshold is reset, the synaptic
kick applied, and integration restarts from the event time — a ``lax.scan`` over at most ``max_spikes`` segments.
A kick that lifts another neuron over threshold makes it spike at the same instant (a cascade).

:func:`fixed_step_spike_times` simulates the same network with :func:`.neurons.step` at step ``dt`` (a spike at
step k is dated at the end of that step; kicks are applied after it), so its spike times carry an O(dt) error.
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import Array

from .neurons import LIF, NeuronState, init_state, step


def _check_neuron(neuron: LIF):
    if type(neuron) is not LIF:
        raise ValueError("event-driven simulation supports plain LIF neurons only (no adaptation)")
    if not isinstance(neuron.t_ref, jax.core.Tracer) and float(neuron.t_ref) != 0.0:
        raise ValueError("event-driven simulation supports t_ref=0 only")


def _as_arrays(neuron: LIF, dtype) -> LIF:
    """The neuron with its numeric fields as arrays, so that networks differing only in them share one compilation."""
    return eqx.tree_at(
        lambda m: (m.tau_mem, m.tau_syn, m.v_th, m.v_reset, m.t_ref),
        neuron,
        tuple(jnp.asarray(getattr(neuron, k), dtype) for k in ("tau_mem", "tau_syn", "v_th", "v_reset", "t_ref")),
    )


def _field(t, y, args):
    neuron, drive = args
    v, i = y
    has_syn = neuron.tau_syn > 0
    di = jnp.where(has_syn, (-i + drive) / jnp.where(has_syn, neuron.tau_syn, 1.0), 0.0)
    return (-v + jnp.where(has_syn, i, drive)) / neuron.tau_mem, di


def _crossing(t, y, args, **kwargs):
    neuron, _ = args
    return jnp.max(y[0]) - neuron.v_th


def _kick(neuron: LIF, v, i, j, fired, weights):
    """Reset neuron ``j`` (per ``neuron.reset``) and deliver its spike: ``i += W[:, j]`` (or ``v +=`` without filter)."""
    n = v.shape[0]
    after = v - (neuron.v_th - neuron.v_reset) if neuron.reset == "subtract" else jnp.full_like(v, neuron.v_reset)
    v = jnp.where(fired & (jnp.arange(n) == j), after, v)
    kick = jnp.where(fired, weights[:, j], 0.0)
    has_syn = neuron.tau_syn > 0
    return v + jnp.where(has_syn, 0.0, kick), i + jnp.where(has_syn, kick, 0.0)


def event_spike_times(
    neuron: LIF,
    drive: Array,
    weights: Array | None = None,
    t_end: float = 100.0,
    max_spikes: int = 16,
    v0: Array | None = None,
    rtol: float = 1e-12,
    atol: float = 1e-12,
    root_find: bool = True,
) -> tuple[Array, Array]:
    """Exact spike times of the network in the module docstring, on ``[0, t_end]``.

    Args:
        neuron: a :class:`LIF` with ``t_ref = 0``; drive: constant external drive ``I``, shape ``(N,)``;
        weights: ``W`` (``W[i, j]`` from ``j`` to ``i``), default none; v0: initial membrane (default v_reset).
        rtol, atol: the ODE solver's tolerances; root_find: refine each event time by Newton's method (without it,
            an event is dated at the end of the solver step that crossed the threshold, as a plain step test would).

    Returns:
        ``(times, neurons)`` of shape ``(max_spikes,)``, sorted in time, padded with ``inf`` / ``-1``.
    """
    _check_neuron(neuron)
    drive = jnp.asarray(drive)
    n = drive.shape[0]
    weights = jnp.zeros((n, n), drive.dtype) if weights is None else jnp.asarray(weights, drive.dtype)
    v0 = jnp.full((n,), neuron.v_reset, drive.dtype) if v0 is None else jnp.asarray(v0, drive.dtype)
    t_end = jnp.asarray(t_end, drive.dtype)
    floor = 100 * float(jnp.finfo(drive.dtype).eps)  # tolerances below round-off are unreachable (float32)
    rtol, atol = max(rtol, floor), max(atol, floor)
    return _event_core(_as_arrays(neuron, drive.dtype), drive, weights, t_end, v0, int(max_spikes), float(rtol), float(atol), bool(root_find))


@eqx.filter_jit
def _event_core(neuron, drive, weights, t_end, v0, max_spikes, rtol, atol, root_find):
    tol = max(0.1 * rtol, 10 * float(jnp.finfo(drive.dtype).eps))
    finder = optx.Newton(rtol=tol, atol=tol) if root_find else None
    event = diffrax.Event(_crossing, root_finder=finder, direction=True)
    controller = diffrax.PIDController(rtol=rtol, atol=atol)

    def segment(t, y):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(_field), diffrax.Tsit5(), t0=t, t1=t_end, dt0=0.1, y0=y, args=(neuron, drive), event=event,
            stepsize_controller=controller, max_steps=4096, saveat=diffrax.SaveAt(t1=True), throw=False,
        )
        return sol.ts[-1], jax.tree.map(lambda a: a[-1], sol.ys), sol.event_mask

    def body(carry, _):
        t, y, done = carry
        at_threshold = jnp.any(y[0] >= neuron.v_th)  # kicked over threshold: spikes now (cascade)
        t_new, y_new, fired = jax.lax.cond(
            at_threshold | done, lambda: (t, y, at_threshold & ~done), lambda: segment(t, y)
        )
        fired = fired & ~done
        j = jnp.argmax(y_new[0])
        v, i = _kick(neuron, *y_new, j, fired, weights)
        return (t_new, (v, i), done | ~fired), (jnp.where(fired, t_new, jnp.inf), jnp.where(fired, j, -1))

    carry0 = (jnp.zeros((), drive.dtype), (v0, jnp.zeros_like(v0)), jnp.asarray(False))
    _, (times, who) = jax.lax.scan(body, carry0, None, max_spikes)
    return times, who


def fixed_step_raster(neuron: LIF, drive: Array, weights: Array | None, dt, n_steps: int, v0=None):
    """Fixed-step simulation of the same network: ``(spikes[T, N], voltages[T, N])`` at times ``dt·(k+1)``.

    Each step is :func:`.neurons.step` under the constant drive; the spikes of step k then kick ``i_syn``
    (or ``v`` when ``tau_syn = 0``) by ``W s``. ``dt`` may be traced (e.g. vmapped over step sizes).
    """
    drive = jnp.asarray(drive)
    n = drive.shape[0]
    weights = jnp.zeros((n, n), drive.dtype) if weights is None else jnp.asarray(weights, drive.dtype)
    state0 = init_state(neuron, (n,), drive.dtype, v0=v0)
    has_syn = jnp.asarray(neuron.tau_syn) > 0

    def body(state, _):
        new, s = step(neuron, state, drive, dt)
        kick = weights @ s
        new = NeuronState(new.v + jnp.where(has_syn, 0.0, kick), new.i_syn + jnp.where(has_syn, kick, 0.0),
                          new.refractory, new.adapt)
        return new, (s, new.v)

    _, (spikes, volts) = jax.lax.scan(body, state0, None, n_steps)
    return spikes, volts


@eqx.filter_jit
def fixed_step_spike_times(neuron: LIF, drive, weights, dt, n_steps: int, max_spikes: int = 16, v0=None):
    """The first ``max_spikes`` spike times ``(times, neurons)`` of :func:`fixed_step_raster`, in the format of
    :func:`event_spike_times` (a spike in step k is dated ``(k + 1) dt``)."""
    spikes, _ = fixed_step_raster(neuron, drive, weights, dt, n_steps, v0)
    k, j = jnp.nonzero(spikes > 0, size=max_spikes, fill_value=-1)
    return jnp.where(k >= 0, (k + 1) * dt, jnp.inf), jnp.where(k >= 0, j, -1)
