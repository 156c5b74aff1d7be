r"""e-prop: eligibility propagation (Bellec, Scherr, Subramoney, Hajek, Salaj, Legenstein & Maass, Nat. Commun.
11:3625, 2020), forward in time on the network of :mod:`.recurrent`.

The gradient of :math:`E = \sum_t w_t \ell(y^t)` is approximated by (paper eq. 1 and Methods)

.. math::

    \frac{dE}{dW_{ji}} \approx \sum_t L_j^t\, \bar e_{ji}^t, \qquad
    e_{ji}^t = \frac{\partial z_j^t}{\partial h_j^{t-1}}\cdot\epsilon_{ji}^{t-1} + \frac{\partial z_j^t}{\partial I_j^t}\, g\, p_i^t,
    \qquad \epsilon_{ji}^t = \frac{\partial h_j^t}{\partial h_j^{t-1}}\,\epsilon_{ji}^{t-1} + \frac{\partial h_j^t}{\partial I_j^t}\, g\, p_i^t,

with :math:`p^t = (z_{l-1}^t, z_l^{t-1}, 1)` the presynaptic activity of input, recurrent and bias synapses,
:math:`h_j = (v_j, i_{\mathrm{syn},j}, a_j)` the neuron's own state (its eligibility vector
:math:`\epsilon_{ji}` has one entry per state component; ALIF's threshold adaptation gives the paper's
:math:`\epsilon^a`), :math:`\bar e^t = \kappa \bar e^{t-1} + e^t` the eligibility filtered by the readout leak and
:math:`L_j^t = \sum_k B_{jk}\,\delta_k^t` the learning signal from the output error
:math:`\delta^t = \partial E/\partial y^t`. The per-neuron derivatives are forward-mode derivatives
(``jax.jvp``) of one :func:`~dynlearn.models.spiking.neurons.step` of that neuron, so the traces follow whatever
the neuron model is (reset, refractoriness, adaptation, synaptic filter) without a hand-written formula; for a
LIF neuron without synaptic filter and with detached reset (:math:`v^t = \alpha v^{t-1} + (1-\alpha) I^t`,
:math:`z^t = H(v^t - v_\mathrm{th})` before the reset) they reduce to the paper's
:math:`\epsilon_{ji}^t = \alpha\epsilon_{ji}^{t-1} + p_i^t` and :math:`e_{ji}^t = \psi_j^t \epsilon_{ji}^t`
(:math:`\psi` the surrogate derivative).

Feedback ``B``: ``"symmetric"`` (:math:`B = W_\mathrm{out}^\top`, the paper's symmetric e-prop), ``"random"``
(fixed Gaussian, random e-prop) or ``"adaptive"`` (the paper's adaptive e-prop, Methods, after Kolen & Pollack
1994): :math:`B` starts random and is a trained parameter (:class:`AdaptiveParams`) that receives the readout's own
update, both with the weight decay :math:`\lambda` (``feedback_decay``),

.. math::

    \frac{\partial E}{\partial W^\mathrm{out}_{kj}} = \sum_t \delta_k^t \bar z_j^t + \lambda W^\mathrm{out}_{kj}, \qquad
    \Delta_{B_{jk}} = \sum_t \delta_k^t \bar z_j^t + \lambda B_{jk}

(descent sign), so under any optimiser that treats equal gradients equally, :math:`B - W_\mathrm{out}^\top` only
feels the decay and shrinks (by :math:`1 - \eta\lambda` per SGD step) while both follow the same data term: no
weight is copied from the forward path. Hidden layers below the last one always receive a fixed random broadcast
:math:`B_l \delta^t`. The readout's gradient :math:`\sum_t \delta^t \bar z^{t\top}` is exact.
What e-prop drops is the recurrent path :math:`\partial E/\partial z^t` through other neurons' future states, so
without recurrent weights and with one hidden layer and symmetric feedback, e-prop *is* BPTT.
Memory: the traces are :math:`O(n_\mathrm{post} n_\mathrm{pre})` per sample, whatever ``T``.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from ...models.base import Data
from ...rules.base import LEARNERS, Learner, Rule
from .neurons import ALIF, NeuronState, step
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

FEEDBACK = ("symmetric", "random", "adaptive")


class AdaptiveParams(eqx.Module):
    """The trained parameters of adaptive e-prop: the network and the feedback ``B`` of its last hidden layer,
    stored like the readout, ``(K, n_L)`` (so ``B = W_out`` here is the paper's :math:`B = W_\\mathrm{out}^\\top`)."""

    net: SpikingNet
    feedback: Array


def adaptive_feedback_grads(net: SpikingNet, feedback, grads: SpikingNet, decay: float) -> AdaptiveParams:
    """Adaptive e-prop's update (module docstring): the readout's data gradient plus :math:`\\lambda W_\\mathrm{out}`,
    and the same data gradient plus :math:`\\lambda B` for the feedback."""
    g_out = grads.weights[-1]
    ws = grads.weights[:-1] + (g_out + decay * net.weights[-1],)
    return AdaptiveParams(SpikingNet(ws, grads.biases, grads.recurrent), g_out + decay * feedback)


def feedback_angle(params: AdaptiveParams) -> Array:
    """The angle (degrees) between the learned feedback :math:`B` and :math:`W_\\mathrm{out}^\\top`, as vectors."""
    b, w = jnp.ravel(params.feedback), jnp.ravel(params.net.weights[-1])
    cos = jnp.dot(b, w) / (jnp.linalg.norm(b) * jnp.linalg.norm(w))
    return jnp.degrees(jnp.arccos(jnp.clip(cos, -1.0, 1.0)))


def state_components(neuron) -> tuple[str, ...]:
    """The differentiable state components of ``neuron``: ``v``, ``i_syn`` (if filtered), ``adapt`` (ALIF)."""
    comps = ["v"]
    tau_syn = neuron.tau_syn
    if not (isinstance(tau_syn, (int, float)) and tau_syn == 0):
        comps.append("i_syn")
    if isinstance(neuron, ALIF):
        comps.append("adapt")
    return tuple(comps)


def local_step(neuron, state: NeuronState, current, dt, comps):
    """One neuron step and its per-neuron derivatives ``D[i][k] = ∂h'_i/∂h_k``, ``c[i] = ∂h'_i/∂I``,
    ``g[k] = ∂z/∂h_k``, ``q = ∂z/∂I`` (elementwise over neurons, by ``jax.jvp`` of the step)."""
    fields = ("v", "i_syn", "refractory", "adapt")

    def f(hs, current):
        st = NeuronState(**{k: hs[comps.index(k)] if k in comps else getattr(state, k) for k in fields})
        new, z = step(neuron, st, current, dt)
        return tuple(getattr(new, c) for c in comps), z

    new_state, z = step(neuron, state, current, dt)
    hs = tuple(getattr(state, c) for c in comps)
    ones, zeros = jnp.ones_like(current), jnp.zeros_like(current)
    H = len(comps)
    cols = [jax.jvp(f, (hs, current), (tuple(ones if i == k else zeros for i in range(H)), ones if k == H else zeros))[1] for k in range(H + 1)]
    D = [[cols[k][0][i] for k in range(H)] for i in range(H)]
    c = [cols[H][0][i] for i in range(H)]
    g = [cols[k][1] for k in range(H)]
    return new_state, z, D, c, g, cols[H][1]


def presynaptic(net: SpikingNet, l: int, z_in, z_prev):
    """:math:`p^t = (z_{l-1}^t, z_l^{t-1}, 1)` per sample, ``(B, P)``."""
    parts = [z_in] + ([z_prev] if net.recurrent else []) + [jnp.ones((*z_in.shape[:-1], 1), z_in.dtype)]
    return jnp.concatenate(parts, axis=-1)


def split_synapses(net: SpikingNet, l: int, g):
    """Split a ``(n, P)`` gradient into (input weights, recurrent weights or None, bias)."""
    n_in = net.weights[l].shape[1]
    rec = g[:, n_in:-1] if net.recurrent else None
    return g[:, :n_in], rec, g[:, -1]


def assemble(net: SpikingNet, hidden, readout) -> SpikingNet:
    """The gradient PyTree from per-layer ``(gW, gR, gb)`` and the readout's ``(gW, gb)``."""
    ws = tuple(h[0] for h in hidden) + (readout[0],)
    bs = tuple(h[2] for h in hidden) + (readout[1],)
    rec = tuple(h[1] for h in hidden) if net.recurrent else ()
    return SpikingNet(ws, bs, rec)


def eprop_gradient(net: SpikingNet, cfg: SNNConfig, x, y, key, feedback, weights=None, components=None):
    """e-prop's estimate of :math:`\\partial E/\\partial\\theta` in one forward scan (module docstring).

    ``feedback[l]`` is the ``(K, n_l)`` matrix of hidden layer ``l`` (``None`` for the last: symmetric);
    ``weights`` (T,) replaces the step weights of ``cfg``; ``components`` restricts the traced state components
    (default :func:`state_components`; fewer is a truncated e-prop); returns ``(grads, loss, rates)``."""
    dtype = net.weights[0].dtype
    x, y = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
    drive, target = drive_from(x, key, cfg), target_from(y)
    B, K, L = x.shape[-2], net.sizes[-1], len(net.sizes) - 2
    comps = state_components(cfg.neuron) if components is None else tuple(components)
    H, kappa = len(comps), cfg.kappa
    P = [net.weights[l].shape[1] + (net.sizes[l + 1] if net.recurrent else 0) + 1 for l in range(L)]
    eps0 = tuple(jnp.zeros((H, B, net.sizes[l + 1], P[l]), dtype) for l in range(L))
    ebar0 = tuple(jnp.zeros((B, net.sizes[l + 1], P[l]), dtype) for l in range(L))
    grad0 = tuple(jnp.zeros((net.sizes[l + 1], P[l]), dtype) for l in range(L))
    ro0 = (jnp.zeros((B, net.sizes[-2]), dtype), jnp.zeros((), dtype), jnp.zeros((K, net.sizes[-2]), dtype), jnp.zeros((K,), dtype))

    def body(carry, t):
        (states, prev, yv), eps, ebar, grads, (zbar, obar, gw, gb), loss, counts = carry
        w = cfg.step_weight(t, dtype) if weights is None else weights[t]
        z, new_states, new_eps, new_ebar, sigs = drive(t), [], [], [], []
        for l in range(L):
            p = cfg.gain * presynaptic(net, l, z, prev[l])[:, None, :]
            st, zl, D, c, g, q = local_step(cfg.neuron, states[l], layer_current(net, cfg, l, z, prev[l]), cfg.dt, comps)
            e = sum(g[k][..., None] * eps[l][k] for k in range(H)) + q[..., None] * p
            new_eps.append(jnp.stack([sum(D[i][k][..., None] * eps[l][k] for k in range(H)) + c[i][..., None] * p for i in range(H)]))
            new_ebar.append(kappa * ebar[l] + e)
            new_states.append(st)
            z = zl
            sigs.append(zl)
        yv = kappa * yv + z @ net.weights[-1].T + net.biases[-1]
        delta = w * output_error(cfg, yv, target(t))
        zbar, obar = kappa * zbar + z, kappa * obar + 1.0
        grads = tuple(
            gr + jnp.einsum("bn,bnp->np", delta @ (net.weights[-1] if feedback[l] is None else feedback[l]), eb)
            for l, (gr, eb) in enumerate(zip(grads, new_ebar))
        )
        loss = loss + w * step_loss(cfg, yv, target(t))
        counts = tuple(cn + jnp.mean(s) for cn, s in zip(counts, sigs))
        ro = (zbar, obar, gw + delta.T @ zbar, gb + obar * delta.sum(0))
        return ((tuple(new_states), tuple(sigs), yv), tuple(new_eps), tuple(new_ebar), grads, ro, loss, counts), None

    counts0 = tuple(jnp.zeros((), dtype) for _ in range(L))
    init = (init_carry(net, cfg, B, dtype), eps0, ebar0, grad0, ro0, jnp.zeros((), dtype), counts0)
    out, _ = scan_steps(body, init, cfg.n_steps)
    _, _, _, grads, (_, _, gw, gb), loss, counts = out
    grads = assemble(net, [split_synapses(net, l, g) for l, g in enumerate(grads)], (gw, gb))
    return grads, loss, tuple(cn / cfg.n_steps for cn in counts)


class EProp(Rule):
    """e-prop on :class:`SpikingNet` (module docstring); ``feedback`` in :data:`FEEDBACK`; ``feedback_decay`` the
    weight decay :math:`\\lambda` of the readout and of ``B`` (adaptive feedback only)."""

    cfg: SNNConfig
    feedback: str = eqx.field(static=True, default="symmetric")
    feedback_decay: float = eqx.field(static=True, default=0.0)

    def init(self, key, params):
        """Fixed random feedback ``(K, n_l)``, N(0, 1/K), for every hidden layer (the last one's unused when
        symmetric or adaptive: those take ``W_out`` or the trained ``B`` of :class:`AdaptiveParams`)."""
        params = params.net if isinstance(params, AdaptiveParams) else params
        K = params.sizes[-1]
        keys = jax.random.split(key, len(params.sizes) - 2)
        return tuple(draws.normal(k, (K, n), params.weights[0].dtype) / jnp.sqrt(K) for k, n in zip(keys, params.sizes[1:-1]))

    def update(self, params, rule_state, batch: Data, key):
        fb, net = list(rule_state), params
        if self.feedback == "symmetric":
            fb[-1] = None
        elif self.feedback == "adaptive":
            net, fb[-1] = params.net, params.feedback
        grads, loss, rates = eprop_gradient(net, self.cfg, batch.x, batch.y, key, tuple(fb))
        metrics = {"loss": loss / batch.x.shape[-2], **rate_metrics(rates)}
        if self.feedback == "adaptive":
            grads = adaptive_feedback_grads(net, params.feedback, grads, self.feedback_decay)
            metrics["feedback_angle"] = feedback_angle(params)
        return grads, rule_state, metrics


@LEARNERS.register("snn/eprop")
def eprop_learner(*, feedback: str = "symmetric", recurrent: bool = True, feedback_decay: float = 1e-2, **options) -> Learner:
    """e-prop (Bellec et al. 2020) on a recurrent LIF/ALIF network with coded input (options of
    :func:`dynlearn.models.spiking.bptt.spiking_parts`); ``feedback`` in :data:`FEEDBACK`, ``feedback_decay`` the
    weight decay of the readout and of ``B`` with adaptive feedback (ignored otherwise)."""
    from .bptt import spiking_parts

    if feedback not in FEEDBACK:
        raise ValueError(f"feedback must be one of {FEEDBACK}, got {feedback!r}")
    if isinstance(feedback_decay, bool) or not (isinstance(feedback_decay, (int, float)) and feedback_decay >= 0):
        raise ValueError(f"feedback_decay must be a number >= 0, got {feedback_decay!r}")
    cfg, init, predict, defaults = spiking_parts(recurrent=recurrent, **options)
    adaptive = feedback == "adaptive"
    decay = float(feedback_decay) if adaptive else 0.0

    def init_fn(key, network):
        net = init(key, network)
        if not adaptive:
            return net
        K, n = net.weights[-1].shape
        return AdaptiveParams(net, draws.normal(jax.random.fold_in(key, 1), (K, n), net.weights[0].dtype) / jnp.sqrt(K))

    def predict_fn(params, x):
        return predict(params.net if adaptive else params, x)

    return Learner(
        name="snn/eprop",
        rule=EProp(cfg, feedback, decay),
        init=init_fn,
        predict=predict_fn,
        description="e-prop: eligibility traces of each neuron's own state times a broadcast learning signal, forward in time (Bellec et al. 2020)",
        defaults={**defaults, "feedback": feedback, "recurrent": recurrent, **({"feedback_decay": decay} if adaptive else {})},
    )
