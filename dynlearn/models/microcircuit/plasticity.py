r"""Plasticity of the dendritic cortical microcircuit, and learning in continuous time.

Urbanczik & Senn (2014, Neuron 81:521, "dendritic prediction of somatic activity"); Sacramento et al. (2018)
Eqs. 7-10. With the attenuated dendritic predictions :math:`\hat v_{B,k} = \tfrac{g_B}{g_{lk}+g_B+g_A}v_{B,k}`
(hidden), :math:`\tfrac{g_B}{g_{lk}+g_B}v_{B,N}` (output), :math:`\hat v^I_k = \tfrac{g_D}{g_{lk}+g_D}v^I_k`:

.. math::
   \dot W_k &= \eta_k\,(\varphi_k(u_k) - \varphi_k(\hat v_{B,k}))\,r_{k-1}^\top, &
   \dot W^{IP}_k &= \eta_{IP}\,(\varphi_{k+1}(u^I_k) - \varphi_{k+1}(\hat v^I_k))\,r_k^\top, \\
   \dot W^{PI}_k &= -\eta_{PI}\, v_{A,k}\,(r^I_k)^\top, &
   \dot B_k &= \eta_{TD}\,(\varphi_k(u_k) - \varphi_k(B_k r_{k+1}))\,r_{k+1}^\top ,

each optionally low-pass filtered with :math:`\tau_w` (:class:`Plasticity`). :func:`urbanczik_senn` returns these
terms in **descent sign** (their negatives, the sign of a loss gradient); :func:`learning_field` moves the weights
along minus the scaled terms. :func:`simulate_learning` integrates neurons and weights together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ...dynamics import Trajectory, simulate
from ...errors import ShapeError
from ...networks import matvec
from ..base import Data
from .parameters import concrete

if TYPE_CHECKING:
    from .circuit import Microcircuit

#: the plastic weight fields of a :class:`Microcircuit`, in the order of a learning state's weight dict
PLASTIC_FIELDS = ("weights", "biases", "w_ip", "b_ip", "w_pi", "top_down")


def _outer(post, pre):
    return jnp.einsum("...o,...i->oi", post, pre)


def _sum_batch(v, n_out):
    return jnp.reshape(v, (-1, n_out)).sum(0)


def urbanczik_senn(model: Microcircuit, hat, x) -> dict[str, tuple]:
    r"""The rule terms (Eqs. 7-10, summed over a batch) at rate potentials ``hat``, in **descent sign**:
    :math:`(\varphi(\hat v_{B,k}) - \varphi(u_k))r_{k-1}^\top` for ``weights`` (and ``biases``),
    :math:`(\varphi(\hat v^I_k) - \varphi(u^I_k))r_k^\top` for ``w_ip`` (``b_ip``), :math:`v_{A,k}(r^I_k)^\top` for
    ``w_pi`` and :math:`(\varphi(B_k r_{k+1}) - \varphi(u_k))r_{k+1}^\top` for ``top_down``, keyed by :data:`PLASTIC_FIELDS`."""
    p = model.params
    n = model.depth
    u_p, u_i = hat
    r_p, r_i = model.rates(hat, x)
    v_b, v_a, v_i = model.dendrites(r_p, r_i)
    dw, db = [], []
    for k in range(1, n + 1):
        err = model.phi(k, p.attenuation(k == n) * v_b[k - 1]) - model.phi(k, u_p[k - 1])
        dw.append(_outer(err, r_p[k - 1]))
        db.append(_sum_batch(err, model.sizes[k]))
    dwip, dbip, dwpi, dtd = [], [], [], []
    for k in range(1, n):
        err = model.phi(k + 1, p.interneuron_attenuation * v_i[k - 1]) - model.phi(k + 1, u_i[k - 1])
        dwip.append(_outer(err, r_p[k]))
        dbip.append(_sum_batch(err, model.sizes[k + 1]))
        dwpi.append(_outer(v_a[k - 1], r_i[k - 1]))
        td_err = model.phi(k, matvec(model.top_down[k - 1], r_p[k + 1])) - model.phi(k, u_p[k - 1])
        dtd.append(_outer(td_err, r_p[k + 1]))
    return dict(weights=tuple(dw), biases=tuple(db), w_ip=tuple(dwip), b_ip=tuple(dbip), w_pi=tuple(dwpi), top_down=tuple(dtd))


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
                if concrete(v) and (not np.all(np.isfinite(np.asarray(v, float))) or np.any(np.asarray(v, float) < 0)):
                    raise ValueError(f"learning rate {name} must be finite and >= 0, got {v!r}")
        if self.tau_w is not None and not (self.tau_w > 0 and np.isfinite(self.tau_w)):
            raise ValueError(f"tau_w (plasticity low-pass time constant) must be > 0 or None, got {self.tau_w!r}")

    def scale(self, terms: Microcircuit) -> dict[str, tuple]:
        """The learning rates times the (descent-sign) rule terms of :meth:`Microcircuit.plasticity`, keyed by
        :data:`PLASTIC_FIELDS`; the weights change at minus this rate."""
        n = terms.depth
        eta_fw = self.eta_fw if isinstance(self.eta_fw, (tuple, list)) else (self.eta_fw,) * n
        if len(eta_fw) != n:
            raise ShapeError(f"eta_fw has {len(eta_fw)} entries but the microcircuit has {n} forward layers")
        return {
            "weights": tuple(e * d for e, d in zip(eta_fw, terms.weights)),
            "biases": tuple(e * d for e, d in zip(eta_fw, terms.biases)),
            "w_ip": tuple(self.eta_ip * d for d in terms.w_ip),
            "b_ip": tuple(self.eta_ip * d for d in terms.b_ip),
            "w_pi": tuple(self.eta_pi * d for d in terms.w_pi),
            "top_down": tuple(self.eta_td * d for d in terms.top_down),
        }


def plastic_weights(model: Microcircuit) -> dict[str, tuple]:
    """The plastic weights of ``model`` as a dict (the weight part of a learning state)."""
    return {k: getattr(model, k) for k in PLASTIC_FIELDS}


def save_plastic(t, y, args) -> dict[str, tuple]:
    """A ``save_fn`` for :func:`simulate_learning`: the learning weights (all plastic fields but ``top_down``)."""
    return {k: y[1][k] for k in PLASTIC_FIELDS if k != "top_down"}


def with_weights(model: Microcircuit, weights: dict[str, tuple], transpose_top_down: bool = False) -> Microcircuit:
    """``model`` with the plastic weights ``weights`` (top-down along ``W_{k+1}^T`` when ``transpose_top_down``, see :class:`Plasticity`)."""
    weights = dict(weights)
    if transpose_top_down is not False:
        flag = jnp.asarray(transpose_top_down) > 0.5
        # B_k along W_{k+1}^T with the norm of the stored B_k (so the feedback loop gain does not grow with W)
        aligned = tuple(jnp.linalg.norm(b) / jnp.maximum(jnp.linalg.norm(w), 1e-30) * w.T for w, b in zip(weights["weights"][1:], weights["top_down"]))
        weights["top_down"] = tuple(jnp.where(flag, a, b) for a, b in zip(aligned, weights["top_down"]))
    return eqx.tree_at(lambda m: tuple(getattr(m, k) for k in PLASTIC_FIELDS), model, tuple(weights[k] for k in PLASTIC_FIELDS))


def learning_field(t, y, args):
    """Neurons, weights (and plasticity filters) together: ``y = (neurons, weights, filters)``,
    ``args = (model, plasticity, data)`` with ``data`` a :class:`dynlearn.models.Data`."""
    model, plasticity, data = args
    neurons, weights, filt = y
    m = with_weights(model, weights, plasticity.transpose_top_down)
    dn = m.vector_field(t, neurons, data)
    velocity = jax.tree.map(jnp.negative, plasticity.scale(m.plasticity(t, neurons, data)))
    if plasticity.tau_w is None:
        return (dn, velocity, filt)
    dfilt = jax.tree.map(lambda r, f: (r - f) / plasticity.tau_w, velocity, filt)
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
    data: Data,
    *,
    t1: float,
    dt: float,
    ts=None,
    save_fn=None,
    key=None,
    solver: str = "euler",
    brownian: str = "unsafe",
    throw: bool = True,
):
    """Simulate neurons and plastic weights together from ``t = 0`` to ``t1`` (fixed step ``dt``).

    ``data`` is typically ``Data(None, None, nudge, PatternStream(...))`` (``nudge``: the output nudging, λ of
    Sacramento et al. 2018); with ``model.params.sigma > 0`` the somatic noise makes it an SDE (``key`` required).
    ``save_fn(t, (neurons, weights, filters), args)`` records derived quantities at ``ts`` (e.g. :func:`save_plastic`).
    Returns ``(trained model, Trajectory)``.

    ``brownian``: the Brownian path of the noise (see :func:`dynlearn.simulate`). The default ``"unsafe"``
    draws one Gaussian increment per fixed step (reproducible for a given ``key`` and ``dt``; a different
    ``dt`` gives a different path); ``"virtual"`` (a :class:`diffrax.VirtualBrownianTree`) gives the same
    path for every ``dt`` and allows differentiating through the solve, at a far higher cost per step.
    """
    if not isinstance(data, Data):
        raise TypeError(f"{model.name}: simulate_learning takes a dynlearn.models.Data, got {type(data).__name__}")
    model.validate(data)
    neurons = model.init_state(data)
    weights = plastic_weights(model)
    filt = jax.tree.map(jnp.zeros_like, weights) if plasticity.tau_w is not None else jax.tree.map(lambda a: jnp.zeros((0,), a.dtype), weights)
    y0 = (neurons, weights, filt)
    if key is None and concrete(model.params.sigma) and float(model.params.sigma) > 0:
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
        field, state0, (model, plasticity, data), t1=t1, dt0=dt, ts=ts, solver=solver, diffusion=diffusion, key=key,
        save_fn=fn, noise_shape=noise_shape, brownian=brownian, name=model.name, throw=throw,
    )
    if packer is not None:
        ys = traj.ys if save_fn is not None else jax.vmap(packer.unravel)(traj.ys)
        traj = Trajectory(traj.ts, ys, packer.unravel(traj.final))
    return with_weights(model, traj.final[1], plasticity.transpose_top_down), traj
