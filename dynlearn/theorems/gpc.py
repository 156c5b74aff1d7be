r"""Theorem checks for generalised predictive coding (float64; :mod:`dynlearn.models.gpc`).

* ``gpc_gaussian_equals_pc`` — with a Gaussian family of unit variance in every layer, the KL energy of
  generalised PC *is* the standard PC energy (Pinchetti et al. 2022, their Gaussian special case): energy, vector
  field and weight update equal those of :class:`dynlearn.models.pc.PredictiveCoding` to round-off, and the nudged
  equilibria and their updates agree.
* ``gpc_ce_limit`` — with a categorical (softmax) output nudged by γ toward a one-hot target, the update divided
  by γ tends to backprop's *cross-entropy* gradient with error :math:`O(\gamma)` — the categorical analogue of
  Whittington & Bogacz's Gaussian/MSE limit (``pc_bp_limit``).

See ``theory/gpc.md``.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ..analysis import bp_gradient
from ..config import THEOREM, THEOREM_STRICT
from ..models.base import Data, equilibrium
from ..models.gpc import GeneralisedPC, layer_families
from ..models.pc import PredictiveCoding
from ..networks import init_network
from .criteria import at_most
from .pc import nudge_limit
from .registry import Verdict, register_check
from .. import draws

#: the quick sweep of the nudge γ
GAMMAS = tuple(np.logspace(-4, -1, 7))


def _problem(sizes, batch, seed, one_hot=False):
    k_net, k_x, k_y = jax.random.split(jax.random.key(seed), 3)
    net = init_network(sizes, key=k_net, activation="tanh", bias_scale=0.1, dtype=jnp.float64)
    x = draws.normal(k_x, (batch, sizes[0]), jnp.float64)
    if one_hot:
        y = jax.nn.one_hot(jax.random.randint(k_y, (batch,), 0, sizes[-1]), sizes[-1], dtype=jnp.float64)
    else:
        y = draws.normal(k_y, (batch, sizes[-1]), jnp.float64)
    return net, x, y


def _rel(a, b):
    """max|a − b| over max|b|, over all leaves."""
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    num = jnp.max(jnp.stack([jnp.max(jnp.abs(u - v)) for u, v in zip(la, lb)]))
    return num / jnp.max(jnp.stack([jnp.max(jnp.abs(v)) for v in lb]))


def _gaps_at(pc, gpc, s, data):
    """Relative gaps of energy, vector field and ∂E/∂θ between ``gpc`` and ``pc`` at the state ``s``."""
    e = jnp.abs(gpc.energy(s, data) - pc.energy(s, data)) / jnp.abs(pc.energy(s, data))
    return jnp.stack([e, _rel(gpc.vector_field(0.0, s, data), pc.vector_field(0.0, s, data)),
                      _rel(gpc.parameter_gradient(s, data), pc.parameter_gradient(s, data))])


@eqx.filter_jit
def _gaussian_gaps(sizes, batch, seed, nudge, families, relax=True):
    """One compiled measurement per seed: the gaps at a random state with the output clamped and nudged, then the
    nudged GPC relaxed (THEOREM) and, at its equilibrium, the gaps again and the residual of *PC's* field there."""
    net, x, y = _problem(sizes, batch, seed)
    data = Data(x, y, nudge)
    out = []
    for mode in ("clamped", "nudged"):
        pc, gpc = PredictiveCoding(net, mode), GeneralisedPC(net, families, mode)
        ref = pc.init_state(data)
        keys = jax.random.split(jax.random.fold_in(jax.random.key(700), seed), len(ref))
        out.append(_gaps_at(pc, gpc, tuple(draws.normal(k, r.shape, r.dtype) for k, r in zip(keys, ref)), data))
    if not relax:  # the comparison at random states only (NaN for the equilibrium figures)
        nan = jnp.full((), jnp.nan, x.dtype)
        return jnp.stack(out), jnp.full((3,), nan), jnp.stack([nan, nan])
    eq = equilibrium(gpc, data, THEOREM.replace(throw=False))
    pc_residual = jnp.max(jnp.stack([jnp.max(jnp.abs(f)) for f in jax.tree.leaves(pc.vector_field(0.0, eq.state, data))]))
    return jnp.stack(out), _gaps_at(pc, gpc, eq.state, data), jnp.stack([eq.residual, pc_residual])


@register_check(
    "gpc_gaussian_equals_pc",
    family="pc",
    statement="generalised PC with unit-variance Gaussian layers equals standard PC: energy, field and update (relative gap <= 1e-12), and its equilibrium is PC's",
    theory="theory/gpc.md",
    quick={"relax": False},
    full={"seeds": tuple(range(10)), "relax": True},
)
def gpc_gaussian_equals_pc(*, sizes=(5, 10, 10, 3), batch=4, seeds=(0, 1, 2), nudge=0.1, hidden_family="gaussian", output_family="gaussian",
                           scale=1.0, relax=True, tol=1e-12, residual_tol=1e-8):
    """Per seed: a random tanh network; at a random state (outputs clamped and nudged) the relative gap of energy,
    vector field and ∂E/∂θ; then the nudged GPC relaxed (THEOREM, max|dx/dt| <= 1e-9): the same gaps at its
    equilibrium (energy and update; the field there is round-off), and PC's own field there (PC's equilibrium is
    the same point iff it vanishes). The
    families are ``hidden_family``/``output_family`` with ``scale`` (a test hands in a non-unit variance or a Laplace
    layer, and the check must fail). ``relax=False`` (the quick run) compares at random states only: equal energy and
    field at every state make the flows, hence the equilibria, the same; the full run also relaxes."""
    families = layer_families(len(sizes) - 1, hidden_family, output_family, scale=scale)
    measured = [_gaussian_gaps(tuple(sizes), batch, jnp.asarray(seed), jnp.asarray(nudge), families, relax) for seed in seeds]
    at_states, at_eq, residuals = (np.asarray([m[k] for m in measured]) for k in range(3))
    ds = xr.Dataset(
        {"gap_at_random_state": (("seed", "output", "quantity"), at_states), "gap_at_equilibrium": (("seed", "quantity"), at_eq),
         "residual": (("seed", "model"), residuals)},
        coords={"seed": list(seeds), "output": ["clamped", "nudged"], "quantity": ["energy", "field", "update"], "model": ["gpc", "pc_at_gpc_equilibrium"]},
    )
    criteria = {
        "energy_gap": at_most(np.fmax(at_states[..., 0].max(), at_eq[:, 0].max()), tol),
        "field_gap": at_most(at_states[..., 1].max(), tol),
        "update_gap": at_most(np.fmax(at_states[..., 2].max(), at_eq[:, 2].max()), tol),
    }
    if relax:
        criteria["gpc_residual"] = at_most(residuals[:, 0].max(), residual_tol)
        criteria["pc_residual_at_gpc_equilibrium"] = at_most(residuals[:, 1].max(), residual_tol)
    verdict = Verdict.from_criteria(**criteria)
    return ds, verdict


@eqx.filter_jit
def _nudged_update(model, x, y, nudge):
    eq = equilibrium(model, Data(x, y, nudge), THEOREM_STRICT.replace(throw=False))
    grads = model.parameter_gradient(eq.state, Data(x, y, nudge))
    return jax.tree.map(lambda g: g / nudge, grads), eq.residual


@register_check(
    "gpc_ce_limit",
    family="pc",
    statement="generalised PC with a categorical output nudged by gamma: update / gamma tends to BP's cross-entropy gradient with error O(gamma) (slope 1 ± 0.15)",
    theory="theory/gpc.md",
    quick={},
    full={"gammas": tuple(np.logspace(-4, -1, 13)), "seed": 1},
)
def gpc_ce_limit(*, sizes=(5, 10, 10, 3), batch=4, seed=0, gammas=GAMMAS, output_family="categorical",
                 slope_tol=0.15, cos_min=0.9999, residual_tol=1e-10):
    """Gaussian hidden layers, ``output_family`` output (categorical: softmax), one-hot targets; per γ the
    equilibrium (THEOREM_STRICT: max|dx/dt| <= 1e-11, no Newton polish — the softmax's shift direction is flat, so the
    Jacobian is singular) and ``∂F/∂θ / γ`` against ``bp_gradient(..., loss="ce")`` per layer."""
    net, x, y = _problem(sizes, batch, seed, one_hot=True)
    model = GeneralisedPC(net, layer_families(net.depth, "gaussian", output_family), "nudged")
    reference = bp_gradient(net, x, y, loss="ce")
    return nudge_limit(gammas, lambda g: _nudged_update(model, x, y, jnp.asarray(g)), reference, net.depth,
                       cos_min=cos_min, slope_tol=slope_tol, residual_tol=residual_tol)
