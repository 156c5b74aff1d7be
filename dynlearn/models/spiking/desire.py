r"""Desire backpropagation (Gerlinghoff, Luo, Goh & Wong, Neurocomputing 2023; arXiv 2211.05412).

A multi-layer spiking network (every layer, the output included, is a LIF layer without bias; the class is the
output neuron with most spikes) learns by STDP gated by a ternary per-neuron *desire*
:math:`d_i \in \{-1, 0, +1\}` (spike less / leave alone / spike more), derived from the output error and sent
backward layer by layer:

.. math::

    r_i = \tfrac1T\sum_t z_i^t, \qquad
    d_k^{(L)} = \sigma_k\,[\,|y^*_k - r_k| > \theta_\mathrm{out}], \quad \sigma_k = 2y^*_k - 1, \\
    \epsilon_i = d_i\,\bigl|[d_i > 0] - r_i\bigr|, \qquad
    s_j = \sum_i W_{ij}\,\epsilon_i, \qquad d_j^{(l-1)} = \mathrm{sign}(s_j)\,[\,|s_j| \ge \theta_\mathrm{hid}],

and the update of synapse :math:`j \to i` is postsynaptic spikes times the presynaptic trace, signed by the desire
(paper Sec. 3):

.. math::  \Delta W_{ij} = \eta\, d_i \sum_t z_i^t\, \bar x_j^t, \qquad \bar x_j^t = \lambda \bar x_j^{t-1} + x_j^t .

The rule returns :math:`-\sum_t d_i z_i^t \bar x_j^t / T` (descent sign, averaged over the batch); no gradient and
no surrogate derivative is used anywhere. Neurons are the shared LIF (:mod:`.neurons`, reset by subtraction,
no synaptic filter) with :math:`\alpha = \lambda` = ``decay`` per step and input gain :math:`1/(1-\alpha)`, so the
membrane adds :math:`W x` per step and leaks by ``decay``; the input is the paper's integrate-and-fire pixel code
(``coding="regular"``, one spike per :math:`1/x` steps). Paper symbols: :math:`\theta_\mathrm{hid},
\theta_\mathrm{out}` → ``desire_hidden``, ``desire_output`` (0.05, 0.30); decay 0.5; T = 20 steps.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ...models.base import Data
from ...rules.base import LEARNERS, Learner, Rule
from .neurons import LIF, init_state, step
from .recurrent import SNNConfig, SpikingNet, encode, scan_steps
from ... import draws


def desire_forward(net: SpikingNet, cfg: SNNConfig, x, key):
    """Spikes ``z_l^t`` of every layer (the output included) and presynaptic traces, each ``(T, B, n)``."""
    dtype = net.weights[0].dtype
    x = jnp.asarray(x, dtype)
    B = x.shape[0]
    decay = math.exp(-cfg.dt / float(cfg.neuron.tau_mem))
    states0 = tuple(init_state(cfg.neuron, (B, w.shape[0]), dtype) for w in net.weights)
    traces0 = tuple(jnp.zeros((B, w.shape[1]), dtype) for w in net.weights)

    def body(carry, t):
        states, traces = carry
        z, new_states, new_traces, spikes = encode(x, t, key, cfg), [], [], []
        for w, st, tr in zip(net.weights, states, traces):
            new_traces.append(decay * tr + z)
            st, z = step(cfg.neuron, st, cfg.gain * (z @ w.T), cfg.dt)
            new_states.append(st)
            spikes.append(z)
        return (tuple(new_states), tuple(new_traces)), (tuple(spikes), tuple(new_traces))

    _, (spikes, traces) = scan_steps(body, (states0, traces0), cfg.n_steps)
    return spikes, traces


def desires(net: SpikingNet, rates, y, desire_hidden: float, desire_output: float):
    """Ternary desires of every layer, output last (module equations)."""
    r_out = rates[-1]
    d = jnp.where(jnp.abs(y - r_out) > desire_output, 2.0 * y - 1.0, 0.0)
    out = [d]
    for l in range(len(net.weights) - 1, 0, -1):
        err = d * jnp.abs((d > 0).astype(d.dtype) - rates[l])
        s = err @ net.weights[l]
        d = jnp.where(jnp.abs(s) >= desire_hidden, jnp.where(s > 0, 1.0, -1.0), 0.0).astype(s.dtype)
        out.append(d)
    return out[::-1]


class DesireBP(Rule):
    """Desire backpropagation (module docstring)."""

    cfg: SNNConfig
    desire_hidden: float = 0.05
    desire_output: float = 0.30

    def update(self, params: SpikingNet, rule_state, batch: Data, key):
        spikes, traces = desire_forward(params, self.cfg, batch.x, key)
        rates = [jnp.mean(s, 0) for s in spikes]
        ds = desires(params, rates, jnp.asarray(batch.y, rates[-1].dtype), self.desire_hidden, self.desire_output)
        B, T = batch.x.shape[0], self.cfg.n_steps
        gw = tuple(-jnp.einsum("tbi,tbj->ij", d[None] * s, tr) / (B * T) for d, s, tr in zip(ds, spikes, traces))
        grads = SpikingNet(gw, tuple(jnp.zeros_like(b) for b in params.biases), ())
        correct = jnp.mean(jnp.argmax(rates[-1], -1) == jnp.argmax(batch.y, -1))
        metrics = {"loss": jnp.mean(jnp.sum(jnp.abs(batch.y - rates[-1]), -1)), "accuracy": correct,
                   **{f"rate_{l + 1}": jnp.mean(r) for l, r in enumerate(rates[:-1])},
                   **{f"desire_{l + 1}": jnp.mean(jnp.abs(d)) for l, d in enumerate(ds)}}
        return grads, rule_state, metrics


def desire_predict(params: SpikingNet, cfg: SNNConfig, x):
    """Output spike counts (the class is their argmax)."""
    spikes, _ = desire_forward(params, cfg, x, jax.random.key(0))
    return jnp.sum(spikes[-1], 0)


@LEARNERS.register("snn/desire")
def desire_learner(*, n_steps: int = 20, decay: float = 0.5, v_th: float = 1.0, desire_hidden: float = 0.05, desire_output: float = 0.30,
                   coding: str = "regular", rate_max: float = 1.0) -> Learner:
    """Desire backpropagation (Gerlinghoff et al. 2023): STDP gated by ternary desires, bias-free LIF layers."""
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be an integer >= 1, got {n_steps!r}")
    if not (isinstance(decay, (int, float)) and 0 < decay < 1):
        raise ValueError(f"decay must be a number in (0, 1), got {decay!r}")
    for name, v in (("desire_hidden", desire_hidden), ("desire_output", desire_output), ("v_th", v_th), ("rate_max", rate_max)):
        if not (isinstance(v, (int, float)) and v > 0):
            raise ValueError(f"{name} must be a number > 0, got {v!r}")
    neuron = LIF(tau_mem=1.0 / math.log(1.0 / decay), tau_syn=0.0, v_th=float(v_th), detach_reset=True)
    cfg = SNNConfig(neuron, n_steps=n_steps, coding=coding, rate_max=float(rate_max))

    def init(key, network) -> SpikingNet:
        """Kaiming-normal weights N(0, 2/n_in) of the network's shape (the paper's), zero biases (unused)."""
        keys = jax.random.split(key, len(network.weights))
        ws = tuple(draws.normal(k, w.shape, w.dtype) * jnp.sqrt(2.0 / w.shape[1]) for k, w in zip(keys, network.weights))
        return SpikingNet(ws, tuple(jnp.zeros(w.shape[0], w.dtype) for w in ws), ())

    return Learner(
        name="snn/desire",
        rule=DesireBP(cfg, float(desire_hidden), float(desire_output)),
        init=init,
        predict=lambda params, x: desire_predict(params, cfg, x),
        description="desire backpropagation: ternary per-neuron desires from the output error gate STDP (Gerlinghoff et al. 2023)",
        defaults={"lr": 3e-3, "activation": "tanh", "n_steps": n_steps, "decay": decay, "desire_hidden": desire_hidden, "desire_output": desire_output},
    )


__all__ = ["DesireBP", "desire_forward", "desire_learner", "desires"]
