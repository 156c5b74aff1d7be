r"""The shared set-up of the EP checks: the test network, the relaxation presets, and the memoised β sweep.

Every EP check relaxes through :func:`dynlearn.models.equilibrium`; the presets are the core's
(:data:`dynlearn.config.THEOREM`, ``NEWTON``, ``THEOREM_STRICT``) with one variant, :data:`EP_THEOREM`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ...analysis import cosine_similarity, implicit_gradient, loglog_slope, relative_error
from ...config import THEOREM
from ...models.base import Data
from ...models.ep import HopfieldEP, free_phase, nudged_gradients
from ...networks import init_network
from ... import draws

#: the EP checks' relaxation: max|ds/dt| <= 1e-9 within t <= 2000 (20 000 steps)
EP_THEOREM = THEOREM.replace(t1=2000.0, max_steps=20_000)
#: the same relaxation finished by Newton's method to residual 1e-12
EP_POLISHED = EP_THEOREM.replace(polish=True)

ONE_SIDED_BETAS = tuple(np.logspace(-4, -0.5, 15))
SYMMETRIC_BETAS = tuple(np.logspace(-3, -0.3, 12))
HOLOMORPHIC_RADII = (0.05, 0.1, 0.2)


def ep_problem(sizes=(4, 8, 6, 3), seed=0, gain=0.5, batch=4, activation="tanh", model_cls=HopfieldEP):
    """A float64 EP network (xavier weights times ``gain``, biases N(0, 0.1²)), inputs U(0,1), targets U(0,1)."""
    kn, kx, ky = jax.random.split(jax.random.key(seed), 3)
    net = init_network(sizes, key=kn, activation=activation, gain=gain, bias_scale=0.1, dtype=jnp.float64)
    x = draws.uniform(kx, (batch, sizes[0]), jnp.float64)
    y = draws.uniform(ky, (batch, sizes[-1]), jnp.float64)
    return model_cls(net), x, y


def nudged(x, y, nudge) -> Data:
    """``Data(x, y, nudge)`` with the nudge a float64 array (not weakly typed), as :func:`free_phase` passes it:
    compiled solves are shared between checks."""
    return Data(x, y, jnp.asarray(nudge, jnp.float64))


def take(tree, i):
    return jax.tree.map(lambda a: a[i], tree)


def numpy_tree(tree):
    return jax.tree.map(np.asarray, tree)


def fit(x, y, mask=None) -> float:
    """Log-log slope over the finite, positive ``y`` (and ``mask``); NaN with fewer than two points."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(y) & (y > 0) if mask is None else mask & np.isfinite(y) & (y > 0)
    return loglog_slope(x[keep], y[keep]) if keep.sum() >= 2 else float("nan")


@functools.lru_cache(maxsize=8)
def reference(sizes, seed, gain, model_cls):
    """The problem, its polished free equilibrium, the implicit gradient and G(0) (memoised)."""
    model, x, y = ep_problem(sizes, seed, gain, model_cls=model_cls)
    free = free_phase(model, Data(x, y), EP_POLISHED)
    free_data = nudged(x, y, 0.0)
    g_ift = implicit_gradient(model, free.state, free_data, loss=model.cost)
    G0 = model.parameter_gradient(free.state, free_data)
    return {"model": model, "x": x, "y": y, "g_ift": g_ift, "G0": G0, "free_state": free.state, "free_residual": float(free.residual)}


def _estimates(G, G0, g_ift, bs, off, out, name):
    """One-sided and symmetric estimates on the grid ``bs`` whose G(±β) start at ``off``: errors into ``out``."""
    n = len(bs)
    Gp, Gm = take(G, slice(off, off + n)), take(G, slice(off + n, off + 2 * n))
    bcast = lambda a: bs.reshape((-1,) + (1,) * (a.ndim - 1))
    one = jax.tree.map(lambda p, g0: (p - g0[None]) / bcast(p), Gp, G0)
    sym = jax.tree.map(lambda p, m: (p - m) / (2 * bcast(p)), Gp, Gm)
    for estimator, est in (("one_sided", one), ("symmetric", sym)):
        out[(name, estimator, "rel")] = np.array([float(relative_error(take(est, i), g_ift)) for i in range(n)])
        out[(name, estimator, "cos")] = np.array([float(cosine_similarity(take(est, i), g_ift)) for i in range(n)])


@functools.lru_cache(maxsize=8)
def _beta_sweep(sizes, seed, gain, model_cls, betas_one, betas_sym):
    """IFT gradient and G(±β) on both grids, with polished equilibria (memoised: several checks share it).

    The estimates are formed in numpy (one host transfer), then compared with :func:`relative_error` and
    :func:`cosine_similarity`."""
    ref = reference(sizes, seed, gain, model_cls)
    model, x, y = ref["model"], ref["x"], ref["y"]
    b1, b2, b3 = np.asarray(betas_one), np.asarray(betas_sym), np.asarray(HOLOMORPHIC_RADII)
    betas = np.concatenate([b1, -b1, b2, -b2, b3, -b3])
    G, res, status = nudged_gradients(model, Data(x, y), betas, EP_POLISHED.replace(throw=False), free_state=ref["free_state"])
    G, G0, g_ift = numpy_tree(G), numpy_tree(ref["G0"]), numpy_tree(ref["g_ift"])
    n1, n2 = len(b1), len(b2)
    out = {**ref, "nudged_residual": float(jnp.max(res))}
    _estimates(G, G0, g_ift, b1, 0, out, "one")
    _estimates(G, G0, g_ift, b2, 2 * n1, out, "sym")
    off, n = 2 * (n1 + n2), len(b3)
    for i, r in enumerate(b3):
        out[("sym_at", float(r))] = jax.tree.map(lambda g: (g[off + i] - g[off + n + i]) / (2 * r), G)
    if np.any(np.asarray(status) != 0):
        out["nudged_residual"] = float("inf")
    return out


def sweep(sizes, seed, gain, model_cls, betas_one=ONE_SIDED_BETAS, betas_sym=SYMMETRIC_BETAS):
    """The memoised β sweep of the estimator checks (see :func:`_beta_sweep`)."""
    return _beta_sweep(tuple(sizes), int(seed), float(gain), model_cls, tuple(float(b) for b in betas_one), tuple(float(b) for b in betas_sym))
