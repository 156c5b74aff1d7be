r"""Infinitesimal inference: PC, EP and CHL reach their reference gradients as the nudge goes to 0, error O(nudge)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ...analysis import bp_gradient, relative_error
from ...config import THEOREM_STRICT
from ...models.base import Data
from ...models.chl import chl_gradient
from ...models.ep import HopfieldEP
from ...models.pc import PredictiveCoding, pc_update
from ...networks import init_network
from ..criteria import at_most, within
from ..registry import Verdict, register_check
from .problem import ONE_SIDED_BETAS, fit, sweep, take
from ... import draws

NUDGES = tuple(np.logspace(-3, -1, 9))  # on the one-sided EP grid


@register_check(
    "ebm_infinitesimal_inference",
    family="ep",
    statement="PC (soft nudge gamma, vs BP), EP (nudge beta, vs its implicit gradient) and CHL (feedback gamma, vs BP) all reach their reference gradient as the nudge -> 0, error O(nudge).",
    theory="theory/ebm_infinitesimal_inference.md",
    quick={},
    full={"nudges": tuple(np.logspace(-4, -0.5, 15))},
)
def ebm_infinitesimal_inference(
    *, sizes=(5, 10, 10, 3), ep_sizes=(4, 8, 6, 3), seed=0, nudges=NUDGES, ep_gain=0.5, ep_model_cls=HopfieldEP,
    slope_tol=0.15, error_tol=1e-2,
):
    nudges = np.asarray(nudges, float)
    kn, kx, ky = jax.random.split(jax.random.key(seed), 3)
    net = init_network(sizes, key=kn, activation="tanh", gain=1.0, bias_scale=0.1, dtype=jnp.float64)
    x = draws.uniform(kx, (4, sizes[0]), jnp.float64, -1.0, 1.0)
    y = draws.uniform(ky, (4, sizes[-1]), jnp.float64, -1.0, 1.0)
    g_bp = bp_gradient(net, x, y)
    # PC: soft nudge gamma on the free output; (1/gamma) dE/dtheta at the nudged equilibrium (dE/dtheta = 0 at the FF pass)
    G_pc = _pc_nudged_gradients(PredictiveCoding(net, output="nudged"), x, y, jnp.asarray(nudges))
    pc_err = [float(relative_error(jax.tree.map(lambda g, n=n: g / n, take(G_pc, i)), g_bp)) for i, n in enumerate(nudges)]
    # EP: one-sided estimate against its own implicit gradient (the 4-8-6-3 network of the estimator checks)
    sw = sweep(ep_sizes, seed, ep_gain, ep_model_cls)
    grid = np.asarray(ONE_SIDED_BETAS)
    idx = [int(np.argmin(np.abs(np.log(grid / n)))) for n in nudges]
    if not np.allclose(grid[idx], nudges, rtol=1e-9):
        raise ValueError(f"nudges must lie on the one-sided EP grid {grid}")
    ep_err = list(sw[("one", "one_sided", "rel")][idx])
    # CHL: feedback gamma, output clamped to the target, layer-scaled contrastive Hebbian update vs BP
    chl_err = [float(relative_error(_chl(net, Data(x, y, jnp.asarray(n))), g_bp)) for n in nudges]
    errs = np.array([pc_err, ep_err, chl_err])
    slopes = [fit(nudges, e) for e in errs]
    ds = xr.Dataset(
        {"rel_error": (("algorithm", "nudge"), errs), "slope": ("algorithm", np.array(slopes))},
        coords={"algorithm": ["PC", "EP", "CHL"], "nudge": nudges},
        attrs={
            "reference_PC": "BP gradient of the feedforward network (bp_gradient); nudge = gamma, soft output nudge",
            "reference_EP": "implicit-function gradient of EP's own free-equilibrium loss; nudge = beta (one-sided)",
            "reference_CHL": "BP gradient of the feedforward network; nudge = feedback strength gamma (Xie & Seung 2003), output clamped to y",
        },
    )
    crit = {}
    for name, s, e in zip(("PC", "EP", "CHL"), slopes, errs):
        crit[f"slope_{name}"] = within(s, 1.0, slope_tol)
        crit[f"rel_error_min_nudge_{name}"] = at_most(e[np.argmin(nudges)], error_tol)
    return ds, Verdict.from_criteria(**crit)


@eqx.filter_jit
def _pc_nudged_gradients(model, x, y, gammas):
    """PC's descent-sign ∂E/∂θ at the equilibrium nudged by each γ (relaxed without a polish, to 1e-11)."""
    return jax.vmap(lambda gamma: pc_update(model, Data(x, y, gamma), THEOREM_STRICT))(gammas)


@eqx.filter_jit
def _chl(net, data):
    return chl_gradient(net, data, THEOREM_STRICT)
