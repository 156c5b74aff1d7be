r"""S-TLLR: the STDP-inspired temporal local learning rule (Apolinario & Roy, TMLR 2025), on the feedforward
spiking network of :mod:`.recurrent`.

A three-factor rule: the update of synapse :math:`j \to i` is a learning signal times an eligibility made of a
causal (pre-before-post) and a non-causal (post-before-pre) STDP term (paper eqs. 10-11),

.. math::

    \Delta W_{ij} \propto -\sum_t L_i^t\, e_{ij}^t, \qquad
    e_{ij}^t = \alpha_s\, \psi_i^t\, \bar x_j^t + \beta_s\, \bar\psi_i^{t-1}\, x_j^t, \qquad
    \bar x_j^t = \lambda_\mathrm{pre} \bar x_j^{t-1} + x_j^t, \quad \bar\psi_i^t = \lambda_\mathrm{post}\bar\psi_i^{t-1} + \psi_i^t,

where :math:`x_j^t` is the presynaptic spike, :math:`\psi_i^t = \partial z_i^t/\partial(W x)_i` the surrogate
derivative of the postsynaptic spike (the "secondary activation"), and :math:`L_i^t = \partial\ell_t/\partial
z_i^t` the learning signal at the same step, backpropagated through the layers above *within* step ``t`` only
(``feedback="bp"``: :math:`L_l = (\psi_{l+1}\odot L_{l+1}) W_{l+1}`, :math:`L_L = \delta^t W_\mathrm{out}`) or
broadcast by fixed random matrices (``feedback="dfa"``: :math:`L_l = \delta^t B_l`). Biases get
:math:`\sum_t L_i^t \psi_i^t`; the readout's gradient is exact (:math:`\sum_t\delta^t\bar z^{t\top}`, as in
:mod:`.eprop`). Nothing depends on more than the current step and two traces per neuron, so the training memory
is independent of ``T`` (the ``stllr_memory`` check), where BPTT's grows linearly.

Paper symbols: :math:`\alpha, \beta` → ``alpha_stdp``, ``beta_stdp``; :math:`\lambda_\mathrm{pre},
\lambda_\mathrm{post}` → ``lambda_pre``, ``lambda_post``. Defaults are the paper's DVS-Gesture factors
(:math:`\lambda_\mathrm{post}=0.2, \lambda_\mathrm{pre}=0.75, \beta=-1, \alpha=1`).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ...models.base import Data
from ...rules.base import LEARNERS, Learner, Rule
from .eprop import local_step
from .recurrent import (
    SNNConfig,
    SpikingNet,
    drive_from,
    init_carry,
    layer_current,
    output_error,
    rate_metrics,
    scan_steps,
    step_loss,
    target_from,
)
from ... import draws

FEEDBACK = ("bp", "dfa")


class STLLR(Rule):
    """S-TLLR (module docstring)."""

    cfg: SNNConfig
    alpha_stdp: float = 1.0
    beta_stdp: float = -1.0
    lambda_pre: float = 0.75
    lambda_post: float = 0.2
    feedback: str = eqx.field(static=True, default="bp")

    def init(self, key, params: SpikingNet):
        """Fixed random broadcast matrices ``(K, n_l)``, N(0, 1/K) (used with ``feedback="dfa"``)."""
        K = params.sizes[-1]
        keys = jax.random.split(key, len(params.sizes) - 2)
        return tuple(draws.normal(k, (K, n), params.weights[0].dtype) / jnp.sqrt(K) for k, n in zip(keys, params.sizes[1:-1]))

    def update(self, params: SpikingNet, rule_state, batch: Data, key):
        grads, loss, rates = stllr_gradient(params, self, batch.x, batch.y, key, rule_state)
        return grads, rule_state, {"loss": loss / batch.x.shape[-2], **rate_metrics(rates)}


def _signals(net, rule, delta, psis, fb):
    """Learning signals :math:`L_l^t` of every hidden layer (within-step backprop or random broadcast)."""
    L = len(psis)
    if rule.feedback == "dfa":
        return [delta @ fb[l] for l in range(L)]
    sig = [None] * L
    sig[-1] = delta @ net.weights[-1]
    for l in range(L - 2, -1, -1):
        sig[l] = (psis[l + 1] * sig[l + 1]) @ net.weights[l + 1]
    return sig


def stllr_gradient(net: SpikingNet, rule: STLLR, x, y, key, fb=()):
    """S-TLLR's update (descent sign) in one forward scan; returns ``(grads, loss, rates)``."""
    cfg = rule.cfg
    if net.recurrent:
        raise ValueError("S-TLLR here trains feedforward spiking networks (recurrent=False)")
    dtype = net.weights[0].dtype
    x, y = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
    drive, target = drive_from(x, key, cfg), target_from(y)
    B, L, kappa = x.shape[-2], len(net.sizes) - 2, cfg.kappa
    xbar0 = tuple(jnp.zeros((B, net.sizes[l]), dtype) for l in range(L))
    pbar0 = tuple(jnp.zeros((B, net.sizes[l + 1]), dtype) for l in range(L))
    g0 = tuple((jnp.zeros_like(net.weights[l]), jnp.zeros_like(net.biases[l])) for l in range(L))
    ro0 = (jnp.zeros((B, net.sizes[-2]), dtype), jnp.zeros((), dtype), jnp.zeros_like(net.weights[-1]), jnp.zeros_like(net.biases[-1]))

    def body(carry, t):
        (states, prev, yv), xbar, pbar, grads, (zbar, obar, gw, gb), loss, counts = carry
        w = cfg.step_weight(t, dtype)
        z, ins, new_states, spikes, psis = drive(t), [], [], [], []
        for l in range(L):
            st, zl, _, _, _, q = local_step(cfg.neuron, states[l], layer_current(net, cfg, l, z, prev[l]), cfg.dt, ())
            ins.append(z)
            new_states.append(st)
            spikes.append(zl)
            psis.append(cfg.gain * q)
            z = zl
        yv = kappa * yv + z @ net.weights[-1].T + net.biases[-1]
        delta = w * output_error(cfg, yv, target(t))
        sig = _signals(net, rule, delta, psis, fb)
        new_xbar = tuple(rule.lambda_pre * xb + xi for xb, xi in zip(xbar, ins))
        grads = tuple(
            (gW + rule.alpha_stdp * (s * p).T @ xb + rule.beta_stdp * (s * pb).T @ xi, gB + jnp.sum(s * p, 0))
            for (gW, gB), s, p, pb, xb, xi in zip(grads, sig, psis, pbar, new_xbar, ins)
        )
        new_pbar = tuple(rule.lambda_post * pb + p for pb, p in zip(pbar, psis))
        zbar, obar = kappa * zbar + z, kappa * obar + 1.0
        loss = loss + w * step_loss(cfg, yv, target(t))
        counts = tuple(c + jnp.mean(s) for c, s in zip(counts, spikes))
        ro = (zbar, obar, gw + delta.T @ zbar, gb + obar * delta.sum(0))
        return ((tuple(new_states), tuple(spikes), yv), new_xbar, new_pbar, grads, ro, loss, counts), None

    counts0 = tuple(jnp.zeros((), dtype) for _ in range(L))
    init = (init_carry(net, cfg, B, dtype), xbar0, pbar0, g0, ro0, jnp.zeros((), dtype), counts0)
    out, _ = scan_steps(body, init, cfg.n_steps)
    _, _, _, grads, (_, _, gw, gb), loss, counts = out
    result = SpikingNet(tuple(g[0] for g in grads) + (gw,), tuple(g[1] for g in grads) + (gb,), ())
    return result, loss, tuple(c / cfg.n_steps for c in counts)


@LEARNERS.register("snn/stllr")
def stllr_learner(*, alpha_stdp: float = 1.0, beta_stdp: float = -1.0, lambda_pre: float = 0.75, lambda_post: float = 0.2, feedback: str = "bp", **options) -> Learner:
    """S-TLLR (Apolinario & Roy 2025) on a feedforward LIF network with coded input (options of
    :func:`dynlearn.models.spiking.bptt.spiking_parts`)."""
    from .bptt import spiking_parts

    if feedback not in FEEDBACK:
        raise ValueError(f"feedback must be one of {FEEDBACK}, got {feedback!r}")
    for name, v in (("lambda_pre", lambda_pre), ("lambda_post", lambda_post)):
        if not (isinstance(v, (int, float)) and 0 <= v <= 1):
            raise ValueError(f"{name} must be a number in [0, 1], got {v!r}")
    if options.get("recurrent"):
        raise ValueError("recurrent must be False: S-TLLR here trains feedforward spiking networks")
    options.pop("recurrent", None)
    cfg, init, predict, defaults = spiking_parts(recurrent=False, **options)
    return Learner(
        name="snn/stllr",
        rule=STLLR(cfg, float(alpha_stdp), float(beta_stdp), float(lambda_pre), float(lambda_post), feedback),
        init=init,
        predict=predict,
        description="S-TLLR: causal + non-causal STDP eligibility times a same-step learning signal; memory independent of T (Apolinario & Roy 2025)",
        defaults={**defaults, "alpha_stdp": alpha_stdp, "beta_stdp": beta_stdp, "lambda_pre": lambda_pre, "lambda_post": lambda_post, "feedback": feedback},
    )
