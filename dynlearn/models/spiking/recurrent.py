r"""A discrete-time (recurrent) spiking network: coded input, LIF/ALIF layers, a leaky readout, a per-step loss.

Every spiking learner of dynlearn that trains by a fixed-step simulation (``snn/bptt``, ``snn/eprop``,
``snn/stllr``) runs this network. One step :math:`t = 1..T` of width ``dt`` (ms):

.. math::

    I_l^t = g\,(W_l z_{l-1}^t + R_l z_l^{t-1} + b_l), \qquad
    (h_l^t, z_l^t) = \mathrm{step}(h_l^{t-1}, I_l^t), \qquad
    y^t = \kappa\, y^{t-1} + W_{L+1} z_L^t + b_{L+1},

where :math:`z_0^t` is the coded input, ``step`` is :func:`dynlearn.models.spiking.neurons.step` (exact
exponential LIF/ALIF step, threshold, reset), :math:`h = (v, i_\mathrm{syn}, a)` the neuron state, :math:`R_l`
the recurrent weights (absent in a feedforward network), :math:`\kappa = e^{-dt/\tau_\mathrm{out}}` the readout
leak and :math:`g = 1/(1 - e^{-dt/\tau_\mathrm{mem}})` the input gain, which makes the membrane update
:math:`v^t = \alpha v^{t-1} + W z + \dots` of Bellec et al. (Nat. Commun. 11:3625, 2020, Methods). The loss is a
sum of per-step terms :math:`E = \sum_t w_t\,\ell(y^t, y^{*t})` (``ce`` or ``mse``, weights :math:`w_t` summing to
one over the last ``n_loss`` steps), so its output error :math:`\delta^t = \partial E/\partial y^t` is known at
step ``t`` (online). A classifier predicts :math:`\bar y = \sum_t w_t y^t`.

:func:`bptt_gradient` differentiates :math:`E` through the whole ``lax.scan`` (surrogate-gradient BPTT).

Input coding of a static sample :math:`x \in [0, 1]^n` happens inside the scan, one step at a time (so no
``T``-sized array is ever built): ``"rate"`` (Bernoulli spikes of probability ``rate_max``·x per step),
``"regular"`` (an integrate-and-fire encoder: :math:`\lfloor (t+1) r\rfloor - \lfloor t r\rfloor` with
:math:`r` = ``rate_max``·x, deterministic) and ``"latency"`` (one spike at :math:`t = \mathrm{round}((1-x)(T-1))`,
none for :math:`x < 0.05`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from .neurons import ALIF, LIF, NeuronState, init_state, step
from ... import draws

CODINGS = ("rate", "regular", "latency")
LOSSES = ("ce", "mse")
NEURONS = ("lif", "alif")


class SpikingNet(eqx.Module):
    """Trained parameters: ``weights[l]`` (n_{l+1}, n_l) and ``biases[l]`` for each hidden layer and the readout
    (last), and ``recurrent[l]`` (n_l, n_l) per hidden layer (an empty tuple for a feedforward network)."""

    weights: tuple
    biases: tuple
    recurrent: tuple = ()

    @property
    def sizes(self) -> tuple[int, ...]:
        return (int(self.weights[0].shape[1]), *(int(w.shape[0]) for w in self.weights))


class SNNConfig(eqx.Module):
    """How the network runs (all static, so a rule holding it stays hashable and its step compiles once)."""

    neuron: LIF = LIF(tau_mem=20.0, tau_syn=0.0, v_th=1.0, detach_reset=True)
    n_steps: int = eqx.field(static=True, default=20)
    dt: float = eqx.field(static=True, default=1.0)
    tau_out: float = eqx.field(static=True, default=20.0)
    coding: str = eqx.field(static=True, default="rate")
    rate_max: float = eqx.field(static=True, default=0.5)
    loss: str = eqx.field(static=True, default="ce")
    n_loss: int | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        if self.coding not in CODINGS:
            raise ValueError(f"coding must be one of {CODINGS}, got {self.coding!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if not (isinstance(self.n_steps, int) and self.n_steps >= 1):
            raise ValueError(f"n_steps must be an integer >= 1, got {self.n_steps!r}")
        if self.n_loss is not None and not (1 <= self.n_loss <= self.n_steps):
            raise ValueError(f"n_loss must be in 1..n_steps={self.n_steps}, got {self.n_loss!r}")

    @property
    def gain(self) -> float:
        return 1.0 / (1.0 - math.exp(-self.dt / float(self.neuron.tau_mem)))

    @property
    def kappa(self) -> float:
        return math.exp(-self.dt / self.tau_out) if self.tau_out > 0 else 0.0

    def step_weight(self, t, dtype=jnp.float32) -> Array:
        """:math:`w_t`: ``1/n_loss`` on the last ``n_loss`` steps (all steps by default), 0 before."""
        n = self.n_steps if self.n_loss is None else self.n_loss
        return jnp.where(t >= self.n_steps - n, 1.0 / n, 0.0).astype(dtype)


def scan_steps(body, init, n_steps: int):
    """``lax.scan`` of ``body(carry, t) -> (carry, out)`` over ``t = 0..n_steps-1``, the step counter carried (no
    ``T``-sized input array exists, so a rule that keeps nothing per step has memory independent of ``T``)."""

    def wrapped(c, _):
        t, inner = c
        inner, out = body(inner, t)
        return (t + 1, inner), out

    (_, final), outs = jax.lax.scan(wrapped, (jnp.zeros((), jnp.int32), init), None, length=n_steps)
    return final, outs


def make_neuron(kind: str = "lif", *, tau_mem=20.0, tau_syn=0.0, v_th=1.0, tau_adapt=200.0, beta_adapt=1.8, surrogate_width=0.5, detach_reset=True) -> LIF:
    """An LIF or ALIF population of the shared neuron module (``kind`` in :data:`NEURONS`)."""
    if kind not in NEURONS:
        raise ValueError(f"neuron must be one of {NEURONS}, got {kind!r}")
    common = {"tau_mem": tau_mem, "tau_syn": tau_syn, "v_th": v_th, "surrogate_width": surrogate_width, "detach_reset": detach_reset}
    return ALIF(tau_adapt=tau_adapt, beta_adapt=beta_adapt, **common) if kind == "alif" else LIF(**common)


def init_spiking_net(network, *, key, recurrent: bool = False, init_gain: float = 1.0, rec_gain: float = 0.5) -> SpikingNet:
    """Parameters around a :class:`dynlearn.Network` MLP: its weights (times ``init_gain``) and biases, plus
    recurrent matrices N(0, rec_gain²/n) with zero diagonal when ``recurrent``."""
    ws = tuple(init_gain * w for w in network.weights)
    bs = tuple(b if b is not None else jnp.zeros(w.shape[0], w.dtype) for w, b in zip(network.weights, network.biases))
    rec = ()
    if recurrent:
        keys = jax.random.split(key, len(ws) - 1)
        rec = tuple(
            rec_gain / math.sqrt(w.shape[0]) * draws.normal(k, (w.shape[0], w.shape[0]), w.dtype) * (1 - jnp.eye(w.shape[0], dtype=w.dtype))
            for k, w in zip(keys, ws[:-1])
        )
    return SpikingNet(ws, bs, rec)


def encode(x: Array, t, key, cfg: SNNConfig) -> Array:
    """The input spikes of step ``t`` (0-based) of the coding ``cfg.coding`` (module docstring)."""
    if cfg.coding == "rate":
        u = draws.uniform(jax.random.fold_in(key, t), x.shape, x.dtype)
        return (u < cfg.rate_max * x).astype(x.dtype)
    if cfg.coding == "regular":
        r = cfg.rate_max * x
        return jnp.floor((t + 1) * r + 1e-9) - jnp.floor(t * r + 1e-9)
    t_spike = jnp.round((1.0 - x) * (cfg.n_steps - 1))
    return ((t_spike == t) & (x >= 0.05)).astype(x.dtype)


def step_loss(cfg: SNNConfig, y: Array, target: Array) -> Array:
    """:math:`\\ell(y^t, y^{*t})` summed over the batch (softmax cross-entropy or half squared error)."""
    if cfg.loss == "ce":
        return -jnp.sum(target * jax.nn.log_softmax(y, axis=-1))
    return 0.5 * jnp.sum((y - target) ** 2)


def output_error(cfg: SNNConfig, y: Array, target: Array) -> Array:
    """:math:`\\partial\\ell/\\partial y^t` (per sample): softmax(y) − y* or y − y*."""
    return (jax.nn.softmax(y, axis=-1) if cfg.loss == "ce" else y) - target


def drive_from(x: Array, key, cfg: SNNConfig) -> Callable:
    """``drive(t)``: the input spikes at step ``t`` — coded from a static ``x`` (B, n), or ``x[t]`` for a
    given sequence (T, B, n)."""
    if x.ndim == 3:
        return lambda t: x[t]
    return lambda t: encode(x, t, key, cfg)


def target_from(y: Array) -> Callable:
    """``target(t)``: ``y`` for a static target (B, K), ``y[t]`` for a sequence (T, B, K)."""
    return (lambda t: y[t]) if y.ndim == 3 else (lambda t: y)


def layer_current(net: SpikingNet, cfg: SNNConfig, l: int, z_in: Array, z_prev: Array) -> Array:
    """:math:`I_l^t = g(W_l z_{l-1}^t + R_l z_l^{t-1} + b_l)`."""
    a = z_in @ net.weights[l].T + net.biases[l]
    if net.recurrent:
        a = a + z_prev @ net.recurrent[l].T
    return cfg.gain * a


def init_carry(net: SpikingNet, cfg: SNNConfig, batch: int, dtype):
    """Resting neuron states, zero previous spikes and zero readout."""
    hidden = net.sizes[1:-1]
    states = tuple(init_state(cfg.neuron, (batch, n), dtype) for n in hidden)
    spikes = tuple(jnp.zeros((batch, n), dtype) for n in hidden)
    return states, spikes, jnp.zeros((batch, net.sizes[-1]), dtype)


def network_step(net: SpikingNet, cfg: SNNConfig, states, prev, y, z_in):
    """One step of every layer and the readout: ``(states, spikes, y, voltages)``."""
    new_states, new_spikes, volts = [], [], []
    z = z_in
    for l, (st, zp) in enumerate(zip(states, prev)):
        current = layer_current(net, cfg, l, z, zp)
        st, z = step(cfg.neuron, st, current, cfg.dt)
        new_states.append(st)
        new_spikes.append(z)
        volts.append(st.v)
    y = cfg.kappa * y + z @ net.weights[-1].T + net.biases[-1]
    return tuple(new_states), tuple(new_spikes), y, tuple(volts)


def simulate(net: SpikingNet, cfg: SNNConfig, x: Array, y_target: Array, key, *, record: bool = False, weights=None):
    """Run the network; returns ``(loss E, readout ȳ = Σ w_t y^t, mean spike rate per hidden layer, record)``.

    ``weights`` (T,) replaces the step weights :math:`w_t` of ``cfg`` (e.g. to put the loss on a prefix).
    ``record=True`` also returns the spikes and membrane potentials of every layer over time (``(T, B, n)`` each),
    and the readout ``y^t``; otherwise nothing of length ``T`` is kept."""
    dtype = net.weights[0].dtype
    x, y_target = jnp.asarray(x, dtype), jnp.asarray(y_target, dtype)
    drive, target = drive_from(x, key, cfg), target_from(y_target)
    batch = x.shape[-2]

    def body(carry, t):
        (states, prev, y), loss, ybar, counts = carry
        w = cfg.step_weight(t, dtype) if weights is None else weights[t]
        states, spikes, y, volts = network_step(net, cfg, states, prev, y, drive(t))
        loss = loss + w * step_loss(cfg, y, target(t))
        counts = tuple(c + jnp.mean(s) for c, s in zip(counts, spikes))
        out = (spikes, volts, y) if record else None
        return ((states, spikes, y), loss, ybar + w * y, counts), out

    zeros = tuple(jnp.zeros((), dtype) for _ in net.sizes[1:-1])
    init = (init_carry(net, cfg, batch, dtype), jnp.zeros((), dtype), jnp.zeros((batch, net.sizes[-1]), dtype), zeros)
    (_, loss, ybar, counts), rec = scan_steps(body, init, cfg.n_steps)
    rates = tuple(c / cfg.n_steps for c in counts)
    return loss, ybar, rates, rec


def bptt_gradient(net: SpikingNet, cfg: SNNConfig, x: Array, y: Array, key, weights=None):
    """:math:`\\partial E/\\partial\\theta` by reverse-mode autodiff through the scan (surrogate-gradient BPTT);
    returns ``(grads, loss, rates)``."""

    def f(p):
        loss, _, rates, _ = simulate(p, cfg, x, y, key, weights=weights)
        return loss, rates

    (loss, rates), grads = eqx.filter_value_and_grad(f, has_aux=True)(net)
    return grads, loss, rates


def predict(net: SpikingNet, cfg: SNNConfig, x: Array, key=None) -> Array:
    """The readout :math:`\\bar y` (deterministic: a rate code draws its spikes from the fixed key 0)."""
    key = jax.random.key(0) if key is None else key
    n_out = net.sizes[-1]
    _, ybar, _, _ = simulate(net, cfg, x, jnp.zeros((x.shape[-2], n_out), x.dtype), key)
    return ybar


def rate_metrics(rates) -> dict[str, Array]:
    """``rate_l``: the mean spike probability per step of hidden layer ``l``."""
    return {f"rate_{l + 1}": r for l, r in enumerate(rates)}


__all__ = ["NeuronState", "SNNConfig", "SpikingNet", "bptt_gradient", "encode", "init_spiking_net", "make_neuron", "predict", "simulate"]
