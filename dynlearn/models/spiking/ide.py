r"""Implicit differentiation on the equilibrium of feedback spiking networks (IDE; Xiao, Meng, Zhang, Wang & Lin,
"Training feedback spiking neural networks by implicit differentiation on the equilibrium state", NeurIPS 2021).

A feedback SNN: hidden layers :math:`1..L` in a chain, layer 1 driven by the input and by feedback :math:`W` from
layer :math:`L`. IF neurons with reset by subtraction (the paper's :math:`u`, :math:`V_{th}`; dynlearn's ``v``,
``v_th``), integrating within one time step from the first layer to the last:

.. math::

    u_1[t+1] = u_1[t] + W s_L[t] + F_1 x[t] + b_1 - V_{th}s_1[t+1], \qquad
    u_{l+1}[t+1] = u_{l+1}[t] + F_{l+1}s_l[t+1] + b_{l+1} - V_{th}s_{l+1}[t+1],

:math:`s = H(u - V_{th})`. Summing over time, the average rates :math:`a[T] = \frac1T\sum_t s[t]` satisfy
:math:`a = \sigma(\bar u/V_{th}) + O(1/T)` with :math:`\sigma = \mathrm{clamp}(\cdot, 0, 1)` and the average input
:math:`\bar u`, so they converge to the fixed point of

.. math::  a^*_1 = \sigma\big((W a^*_L + F_1\bar x + b_1)/V_{th}\big), \qquad
           a^*_{l+1} = \sigma\big((F_{l+1}a^*_l + b_{l+1})/V_{th}\big)

when that map is a contraction (the IF view). The LIF view (``neuron="lif"``, leak :math:`\lambda = e^{-dt/\tau_m}`,
:math:`u[t+1] = \lambda u[t] + \dots`, simulated with :func:`.neurons.step`) uses the weighted average rate
:math:`\hat a[T] = \sum_t\lambda^{T-t}s[t] / \sum_t\lambda^{T-t}`, which satisfies the same equation up to a bias
that vanishes as :math:`\lambda\to 1`.

The loss :math:`L(o)` of the readout :math:`o = R a_L + c` is differentiated at the equilibrium by the
implicit-function theorem: :math:`g = J_f^\top g + \partial L/\partial a`, solved by a second fixed-point iteration
(:func:`ide_backward`, optimistix), then :math:`\partial L/\partial\theta = (\partial f/\partial\theta)^\top g`.
No backward pass through time: memory is independent of the number of time steps.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import Array

from ..base import Data, DynamicalModel
from .neurons import LIF, init_state, spike, step


class FeedbackSNN(eqx.Module):
    """Parameters of a feedback SNN: ``forward[l]`` :math:`F_{l+1}` (out, in), ``biases[l]``, ``feedback`` :math:`W`
    (n_1, n_L), ``readout`` :math:`R` (n_out, n_L) and ``readout_bias`` :math:`c`; ``v_th`` :math:`V_{th}` (static)."""

    forward: tuple[Array, ...]
    biases: tuple[Array, ...]
    feedback: Array
    readout: Array
    readout_bias: Array
    v_th: float = eqx.field(static=True, default=1.0)


def clamp_rate(u: Array, v_th: float = 1.0) -> Array:
    r""":math:`\sigma(u / V_{th})`, :math:`\sigma = \mathrm{clamp}(\cdot, 0, 1)`: the IF neuron's rate for average input u."""
    return jnp.clip(u / v_th, 0.0, 1.0)


def equilibrium_map(params: FeedbackSNN, a: tuple[Array, ...], x: Array) -> tuple[Array, ...]:
    r"""The map :math:`f(a)` whose fixed point is :math:`a^*` (module docstring; layers updated in Jacobi form)."""
    pre = [x @ params.forward[0].T + a[-1] @ params.feedback.T + params.biases[0]]
    pre += [a[l - 1] @ params.forward[l].T + params.biases[l] for l in range(1, len(params.forward))]
    return tuple(clamp_rate(p, params.v_th) for p in pre)


def readout(params: FeedbackSNN, a: tuple[Array, ...]) -> Array:
    """:math:`o = R a_L + c`."""
    return a[-1] @ params.readout.T + params.readout_bias


def zero_rates(params: FeedbackSNN, batch_shape) -> tuple[Array, ...]:
    return tuple(jnp.zeros((*batch_shape, f.shape[0]), f.dtype) for f in params.forward)


@eqx.filter_jit
def fixed_point(params: FeedbackSNN, x: Array, *, rtol=1e-13, atol=1e-13, max_steps=1000, a0=None):
    """:math:`a^*` by optimistix's fixed-point iteration of :func:`equilibrium_map` (returns the optimistix Solution)."""
    a0 = zero_rates(params, x.shape[:-1]) if a0 is None else a0
    solver = optx.FixedPointIteration(rtol=rtol, atol=atol)
    return optx.fixed_point(lambda a, _: equilibrium_map(params, a, x), solver, a0, max_steps=max_steps, throw=False)


@eqx.filter_jit
def ide_backward(params: FeedbackSNN, a, x, dl_da, *, rtol=1e-13, atol=1e-13, max_steps=1000):
    r"""IDE's backward pass at the rates ``a``: solve :math:`g = J_f^\top g + \partial L/\partial a` by fixed-point
    iteration (optimistix), then return ``(∂L/∂θ of the map's parameters, g, solution)``; :math:`J_f` is the map's
    Jacobian at ``a`` (with :math:`\sigma'` = 1 inside (0, 1), 0 where the rate is clamped). Computed in the default
    float type (float32 arrays under x64 are promoted, and the parameter gradient is cast back)."""
    dtype = jnp.result_type(float)
    dtypes = jax.tree.map(lambda u: u.dtype, params)
    params, a, x, dl_da = jax.tree.map(lambda u: u.astype(dtype) if eqx.is_inexact_array(u) else u, (params, a, x, dl_da))
    _, vjp = jax.vjp(lambda a_, p: equilibrium_map(p, a_, x), a, params)

    def iterate(g, _):
        return jax.tree.map(jnp.add, vjp(g)[0], dl_da)

    solver = optx.FixedPointIteration(rtol=rtol, atol=atol)
    sol = optx.fixed_point(iterate, solver, dl_da, max_steps=max_steps, throw=False)
    grads = jax.tree.map(lambda g, d: g.astype(d), vjp(sol.value)[1], dtypes)
    return grads, sol.value, sol


def ide_gradient(params: FeedbackSNN, a, x, y, loss, **solver_options) -> tuple[FeedbackSNN, Array]:
    """``(∂L/∂θ, L)`` of ``loss(readout(a), y)`` with ``a`` taken as the equilibrium: readout gradient directly,
    the rest by :func:`ide_backward`."""
    def of_readout(p, a_):
        return loss(readout(p, a_), y)

    value, (g_read, dl_da) = jax.value_and_grad(of_readout, argnums=(0, 1))(params, a)
    g_map, _, _ = ide_backward(params, a, x, dl_da, **solver_options)
    grads = jax.tree.map(jnp.add, g_map, g_read)
    return grads, value


class IDEFixedPoint(DynamicalModel):
    r"""The flow :math:`\dot a = f(a) - a` of :func:`equilibrium_map` (its equilibria are the rate fixed points), for
    :func:`dynlearn.analysis.implicit_gradient` and :func:`dynlearn.models.equilibrium`; ``data.x`` is the input."""

    params: FeedbackSNN

    def init_state(self, data: Data):
        return zero_rates(self.params, data.x.shape[:-1])

    def vector_field(self, t, state, data: Data):
        return jax.tree.map(jnp.subtract, equilibrium_map(self.params, state, data.x), state)


# ----------------------------------------------------------------------------- spiking simulation


@eqx.filter_jit
def simulate(params: FeedbackSNN, inputs: Array, *, neuron: str = "if", tau_mem: float = 20.0, dt: float = 1.0):
    """Run the feedback SNN over ``inputs[T, batch..., n_0]`` (spikes or currents).

    Returns the spike trains of every layer, a tuple of ``[T, batch..., n_l]``. ``neuron="if"`` integrates
    :math:`u \\leftarrow u + \\text{input}`; ``"lif"`` uses :func:`.neurons.step` of a current-based LIF with the
    input scaled by :math:`1/(1-\\lambda)` so that :math:`u \\leftarrow \\lambda u + \\text{input}` (the paper's LIF).
    """
    if neuron not in ("if", "lif"):
        raise ValueError(f"neuron must be 'if' or 'lif', got {neuron!r}")
    v_th = params.v_th
    lif = LIF(tau_mem=tau_mem, tau_syn=0.0, v_th=v_th, v_reset=0.0, reset="subtract")
    lam = jnp.exp(-dt / tau_mem)
    n_layers = len(params.forward)
    shapes = [(*inputs.shape[1:-1], f.shape[0]) for f in params.forward]

    def integrate(u, current):
        if neuron == "if":
            u = u + current
            s = spike(u - v_th)
            return u - v_th * s, s
        new, s = step(lif, init_state(lif, u.shape, u.dtype, v0=u), current / (1 - lam), dt)
        return new.v, s

    def body(carry, x_t):
        us, s_last = carry
        new_u, new_s = [], []
        for l in range(n_layers):
            if l == 0:
                current = x_t @ params.forward[0].T + s_last @ params.feedback.T + params.biases[0]
            else:
                current = new_s[-1] @ params.forward[l].T + params.biases[l]
            u, s = integrate(us[l], current)
            new_u.append(u)
            new_s.append(s)
        return (tuple(new_u), new_s[-1]), tuple(new_s)

    us0 = tuple(jnp.zeros(s, inputs.dtype) for s in shapes)
    _, spikes = jax.lax.scan(body, (us0, jnp.zeros(shapes[-1], inputs.dtype)), inputs)
    return spikes


def average_rates(spikes: tuple[Array, ...], *, neuron: str = "if", tau_mem: float = 20.0, dt: float = 1.0):
    r"""The rates the equilibrium is taken at: the plain average :math:`\frac1T\sum_t s[t]` (IF) or the weighted
    average :math:`\sum_t\lambda^{T-t}s[t]/\sum_t\lambda^{T-t}` (LIF)."""
    n = spikes[0].shape[0]
    if neuron == "if":
        w = jnp.ones((n,))
    else:
        w = jnp.exp(-dt / tau_mem) ** jnp.arange(n - 1, -1, -1)
    w = (w / jnp.sum(w)).astype(spikes[0].dtype)
    return tuple(jnp.tensordot(w, s, axes=(0, 0)) for s in spikes)


def running_rates(spikes: Array) -> Array:
    """:math:`a[t] = \\frac1t\\sum_{\\tau\\le t}s[\\tau]` for every t (leading axis)."""
    t = jnp.arange(1, spikes.shape[0] + 1, dtype=spikes.dtype).reshape((-1,) + (1,) * (spikes.ndim - 1))
    return jnp.cumsum(spikes, axis=0) / t
