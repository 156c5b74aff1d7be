r"""Discrete-time EP in the "prototypical" setting, and the BPTT gradients it matches step by step.

Ernoult, Grollier, Querlioz, Bengio & Scellier (2019, NeurIPS), "Updates of equilibrium prop match gradients
of backprop through time in an RNN with static input". The transition map is the gradient of a primitive
function :math:`\Phi`:

.. math::  s_{t+1} = \frac{\partial\Phi}{\partial s}(x, s_t, \theta), \qquad
           \Phi = \sum_i \log\cosh\big((W s + U x + b)_i\big) \;\Rightarrow\; s_{t+1} = W^\top\tanh(W s_t + U x + b),

contracting when :math:`\|W\|_2 < 1`. The free phase iterates the map to its fixed point :math:`s^*`; the
nudged phase starts there and iterates :math:`s^\beta_{t+1} = \partial\Phi/\partial s(x, s^\beta_t) - \beta\,\partial\ell/\partial s(s^\beta_t)`
with :math:`\ell = \tfrac12\|s_{\text{out}} - y\|^2`. EP's neural and weight updates

.. math::  \Delta^{EP}_s(\beta, t) = \frac{s^\beta_{t+1} - s^\beta_t}{\beta}, \qquad
           \Delta^{EP}_\theta(\beta, t) = \frac{1}{\beta}\Big(\frac{\partial\Phi}{\partial\theta}(s^\beta_{t+1}) - \frac{\partial\Phi}{\partial\theta}(s^\beta_t)\Big)

tend, as :math:`\beta\to 0`, to minus the BPTT gradients :math:`\nabla_s(t) = \partial L/\partial s_{T-t}` and
:math:`\nabla_\theta(t) = \partial L/\partial\theta_{T-t}` (per-step parameter copies) of :math:`L = \ell(s_T)`,
for every :math:`t` (the GDU property), when the last steps of the free phase sit at :math:`s^*`.

As a :class:`~dynlearn.models.DynamicalModel` the map is the flow :math:`\dot s = \partial\Phi/\partial s - s`, whose
steady states are the map's fixed points; :func:`fixed_point` reaches them through :func:`dynlearn.models.equilibrium`.
The nudge :math:`\beta` of the paper is an argument of :func:`ep_steps` (``nudges``).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from ..config import NEWTON, RelaxConfig
from ..dynamics import Equilibrium
from .base import Data, DynamicalModel, equilibrium
from .. import draws


class PrototypicalRNN(DynamicalModel):
    r"""The prototypical setting: :math:`\Phi(x, s) = \sum_i \log\cosh((Ws + Ux + b)_i)`, ``n_out`` output units
    (the last entries of ``s``). ``W`` is ``(m, n)``, ``U`` is ``(m, n_in)``, ``b`` is ``(m,)``; the state is ``(n,)``."""

    W: Array
    U: Array
    b: Array
    n_out: int = eqx.field(static=True, default=1)

    @property
    def params(self):
        return (self.W, self.U, self.b)

    def primitive(self, x, s, params=None) -> Array:
        r""":math:`\Phi(x, s, \theta)`."""
        W, U, b = self.params if params is None else params
        a = W @ s + U @ x + b
        return jnp.sum(jnp.logaddexp(a, -a) - jnp.log(2.0))  # log cosh, overflow-safe

    def transition(self, x, s, params=None) -> Array:
        r""":math:`\partial\Phi/\partial s = W^\top\tanh(Ws + Ux + b)`."""
        return jax.grad(lambda v: self.primitive(x, v, params))(s)

    def primitive_gradient(self, x, s):
        r""":math:`\partial\Phi/\partial\theta` at ``s`` (a ``(W, U, b)`` tuple)."""
        return jax.grad(lambda p: self.primitive(x, s, p))(self.params)

    def loss(self, s, y) -> Array:
        return 0.5 * jnp.sum((s[-self.n_out :] - y) ** 2)

    def vector_field(self, t, s, data: Data):
        """``Φ'(s) - s``: zero at a fixed point of the map."""
        return self.transition(data.x, s) - s

    def init_state(self, data: Data) -> Array:
        return jnp.zeros(self.W.shape[1], self.W.dtype)


def init_prototypical(key, n_in: int, n_hidden: int, n_out: int, *, w_norm: float = 0.9, u_scale: float = 1.0, b_scale: float = 0.1) -> PrototypicalRNN:
    """A random prototypical RNN with state size ``n_hidden + n_out``, square ``W`` rescaled to ``||W||_2 = w_norm``."""
    n = n_hidden + n_out
    kw, ku, kb = jax.random.split(key, 3)
    W = draws.normal(kw, (n, n))
    W = w_norm * W / jnp.linalg.norm(W, 2)
    U = u_scale * draws.normal(ku, (n, n_in)) / jnp.sqrt(n_in)
    b = b_scale * draws.normal(kb, (n,))
    return PrototypicalRNN(W, U, b, n_out)


def fixed_point(model: PrototypicalRNN, x, *, steps: int = 200, config: RelaxConfig = NEWTON) -> Equilibrium:
    """The free phase: iterate the map ``steps`` times from ``s = 0``, then relax the flow ``Φ'(s) - s`` from there
    with :func:`~dynlearn.models.equilibrium` (``NEWTON``: Newton-polished to residual 1e-12). Raises
    :class:`dynlearn.NotConvergedError` if the fixed point is not reached."""
    data = Data(x)
    return equilibrium(model, data, config, state0=_iterate(model, x, model.init_state(data), steps))


@eqx.filter_jit
def _iterate(model, x, s, steps):
    return jax.lax.fori_loop(0, steps, lambda i, v: model.transition(x, v), s)


@eqx.filter_jit
def bptt_steps(model: PrototypicalRNN, x, y, s_star, K: int):
    r"""Per-step BPTT gradients of :math:`L = \ell(s_T)` over the last ``K`` steps, which start at ``s_star``.

    Returns ``(grad_s, grad_theta)``: ``grad_s[t] = ∂L/∂s_{T-t}`` for ``t = 0..K-1`` (shape ``(K, n)``), and
    ``grad_theta[t] = ∂L/∂θ_{T-t}`` (a ``(W, U, b)`` tuple with a leading ``K`` axis), where
    :math:`\theta_j` is the copy of the parameters used by the step that produces :math:`s_j`.
    """
    thetas = jax.tree.map(lambda p: jnp.broadcast_to(p, (K, *p.shape)), model.params)
    eps = jnp.zeros((K + 1, s_star.shape[0]), s_star.dtype)

    def L(thetas, eps):
        def step(s, inp):
            theta, e = inp
            s = model.transition(x, s, theta) + e
            return s, None

        s, _ = jax.lax.scan(step, s_star + eps[0], (thetas, eps[1:]))
        return model.loss(s, y)

    g_theta, g_eps = jax.grad(L, argnums=(0, 1))(thetas, eps)
    # eps[j] perturbs s_{T-K+j}; t = K - j.  theta[j-1] produces s_{T-K+j}, i.e. it is theta_{T-t} with t = K - j.
    grad_s = g_eps[::-1][: K]  # t = 0..K-1  <->  j = K..1
    grad_theta = jax.tree.map(lambda g: g[::-1], g_theta)  # t = 0..K-1  <->  j = K..1
    return grad_s, grad_theta


@eqx.filter_jit
def ep_steps(model: PrototypicalRNN, x, y, s_star, nudges, K: int):
    r"""EP's updates :math:`\Delta^{EP}_s(\beta, t)` and :math:`\Delta^{EP}_\theta(\beta, t)` for ``t = 0..K-1`` and every
    nudge ``nudges[k]`` (the paper's β): shapes ``(B, K, n)`` and ``(W, U, b)`` with leading ``(B, K)`` axes."""

    def one(beta):
        def step(s, _):
            s_new = model.transition(x, s) - beta * jax.grad(lambda v: model.loss(v, y))(s)
            return s_new, s_new

        _, traj = jax.lax.scan(step, s_star, None, length=K)
        states = jnp.concatenate([s_star[None], traj])  # s^β_0 .. s^β_K
        d_s = (states[1:] - states[:-1]) / beta
        phis = jax.vmap(lambda s: model.primitive_gradient(x, s))(states)
        d_theta = jax.tree.map(lambda p: (p[1:] - p[:-1]) / beta, phis)
        return d_s, d_theta

    return jax.vmap(one)(jnp.asarray(nudges))


__all__ = ["PrototypicalRNN", "bptt_steps", "ep_steps", "fixed_point", "init_prototypical"]
