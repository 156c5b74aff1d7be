r"""EP's estimators against the implicit gradient: one-sided O(β), symmetric O(β²), holomorphic exact at finite |β|."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ...analysis import relative_error
from ...config import NEWTON
from ...models.base import Data
from ...models.ep import HopfieldEP, energy_hessians, nudged_gradients
from ..criteria import at_least, at_most, below, between, reported, within
from ..registry import Verdict, register_check
from .problem import HOLOMORPHIC_RADII, ONE_SIDED_BETAS, SYMMETRIC_BETAS, fit, numpy_tree, reference, sweep

_REFERENCE = "implicit-function gradient at the free equilibrium (lineax LU)"


@register_check(
    "ep_gradient_one_sided",
    family="ep",
    statement="One-sided EP (G(beta)-G(0))/beta tends to the implicit gradient as beta -> 0 with relative error O(beta) (log-log slope 1).",
    theory="theory/ep_estimators.md",
    quick={},
    full={"seed": 1},
)
def ep_gradient_one_sided(
    *, sizes=(4, 8, 6, 3), seed=0, gain=0.5, betas=ONE_SIDED_BETAS, fit_max=0.03, model_cls=HopfieldEP,
    slope_tol=0.15, error_tol=1e-3, cosine_tol=1e-6, floor_tol=1e-8,
):
    sw = sweep(sizes, seed, gain, model_cls, betas, SYMMETRIC_BETAS)
    b = np.asarray(betas)
    rel, cos = sw[("one", "one_sided", "rel")], sw[("one", "one_sided", "cos")]
    slope = fit(b, rel, b <= fit_max)
    ds = xr.Dataset(
        {"rel_error": ("beta", rel), "cosine": ("beta", cos), "symmetric_rel_error": ("beta", sw[("one", "symmetric", "rel")])},
        coords={"beta": b},
        attrs={"reference": _REFERENCE, "fit_max": fit_max},
    )
    floor = sw["nudged_residual"] / b.min()  # the error floor of a finite-β estimate: residual / β
    verdict = Verdict.from_criteria(
        slope=within(slope, 1.0, slope_tol),
        rel_error_at_min_beta=at_most(rel[np.argmin(b)], error_tol),
        one_minus_cos_at_min_beta=at_most(1 - cos[np.argmin(b)], cosine_tol),
        noise_floor=at_most(floor, floor_tol),
    )
    return ds, verdict


@register_check(
    "ep_gradient_symmetric",
    family="ep",
    statement="Symmetric EP (G(beta)-G(-beta))/(2 beta) tends to the implicit gradient with error O(beta^2) (slope 2), below one-sided EP at every beta.",
    theory="theory/ep_estimators.md",
    quick={},
    full={"seed": 1},
)
def ep_gradient_symmetric(
    *, sizes=(4, 8, 6, 3), seed=0, gain=0.5, betas=SYMMETRIC_BETAS, fit_max=0.1, model_cls=HopfieldEP, slope_tol=0.2, error_tol=1e-5,
):
    sw = sweep(sizes, seed, gain, model_cls, ONE_SIDED_BETAS, betas)
    b = np.asarray(betas)
    rel, cos, rel1 = sw[("sym", "symmetric", "rel")], sw[("sym", "symmetric", "cos")], sw[("sym", "one_sided", "rel")]
    slope = fit(b, rel, b <= fit_max)
    ratio = float(np.max(rel / rel1))
    ds = xr.Dataset(
        {"rel_error": ("beta", rel), "cosine": ("beta", cos), "one_sided_rel_error": ("beta", rel1)},
        coords={"beta": b},
        attrs={"reference": _REFERENCE, "fit_max": fit_max},
    )
    verdict = Verdict.from_criteria(
        slope=within(slope, 2.0, slope_tol),
        max_ratio_to_one_sided=below(ratio, 1.0),  # symmetric below one-sided at every beta
        rel_error_at_min_beta=at_most(rel[np.argmin(b)], error_tol),
    )
    return ds, verdict


# ----------------------------------------------------------------------------- holomorphic EP


def _fourier_errors(G, radii, Ns, g_ift, sw):
    """Holomorphic estimates from the stacked G(β_k) (radius-major, then N, then k): errors vs the IFT gradient,
    symmetric EP's error at each radius, and the largest N = 2 vs real symmetric EP difference."""
    err = np.zeros((len(radii), len(Ns)))
    sym_err = np.full(len(radii), np.nan)
    n2_vs_sym, i = 0.0, 0
    for a, r in enumerate(radii):
        for c, N in enumerate(Ns):
            w = np.exp(-2j * np.pi * np.arange(N) / N) / (N * r)
            est = jax.tree.map(lambda g: np.real(np.tensordot(w, g[i : i + N], axes=1)), G)
            err[a, c] = float(relative_error(est, g_ift))
            if N == 2 and ("sym_at", r) in sw:  # symmetric EP at beta = r, relaxed in real arithmetic
                sym = sw[("sym_at", r)]
                n2_vs_sym = max(n2_vs_sym, float(relative_error(est, sym)))
                sym_err[a] = float(relative_error(sym, g_ift))
            i += N
    return err, sym_err, n2_vs_sym


def _geometric_fit(Ns, e):
    """Fitted error ratio per extra nudge, the semilog R² (over errors above 1e-12) and the first N with error <= 1e-8."""
    pre_floor = e > 1e-12
    coef = np.polyfit(Ns[pre_floor], np.log(e[pre_floor]), 1) if pre_floor.sum() >= 3 else (np.nan, np.nan)
    resid = np.log(e[pre_floor]) - np.polyval(coef, Ns[pre_floor])
    r2 = 1 - np.sum(resid**2) / np.sum((np.log(e[pre_floor]) - np.log(e[pre_floor]).mean()) ** 2)
    reached = Ns[e <= 1e-8]
    return float(np.exp(coef[0])), float(r2), int(reached.min()) if reached.size else -1


@register_check(
    "ep_holomorphic",
    family="ep",
    statement="Holomorphic EP (N complex nudges on |beta| = r, first Fourier coefficient) converges to the implicit gradient geometrically in N at fixed finite r; N = 2 is symmetric EP.",
    theory="theory/ep_holomorphic.md",
    quick={},
    full={"n_max": 24, "radii": HOLOMORPHIC_RADII},
)
def ep_holomorphic(
    *, sizes=(4, 8, 6, 3), seed=0, gain=0.5, radii=(0.05, 0.1), r_check=0.05, n_max=14, symmetric_reference=True, model_cls=HopfieldEP,
    error_tol=1e-8, rate_max=0.5, r2_min=0.9, n2_tol=1e-10, residual_tol=1e-12,
):
    ref = reference(tuple(sizes), int(seed), float(gain), model_cls)
    model, x, y, free_state = ref["model"], ref["x"], ref["y"], ref["free_state"]
    # symmetric EP at beta = r relaxed in real arithmetic (the shared beta sweep); False skips that comparison
    sw = sweep(sizes, seed, gain, model_cls) if symmetric_reference else {}
    Ns = np.arange(2, n_max + 1)
    radii = tuple(float(r) for r in radii)
    if float(r_check) not in radii:
        radii = radii + (float(r_check),)
    betas = np.array([r * np.exp(2j * np.pi * k / N) for r in radii for N in Ns for k in range(N)])
    # Newton takes every complex equilibrium to residual <= 1e-12, so the relaxation only has to bring it into
    # Newton's basin: NEWTON stops it at max|ds/dt| <= 1e-6, then polishes
    G, res, status = nudged_gradients(model, Data(x, y), betas, NEWTON.replace(throw=False), free_state=free_state)
    err, sym_err, n2_vs_sym = _fourier_errors(numpy_tree(G), radii, Ns, numpy_tree(ref["g_ift"]), sw)
    rate_pred = _predicted_rate(model, free_state, x, r_check)
    a = radii.index(float(r_check))
    e = err[a]
    rate, r2, n_reach = _geometric_fit(Ns, e)
    ds = xr.Dataset(
        {"rel_error": (("radius", "N"), err), "symmetric_rel_error": ("radius", sym_err)},
        coords={"radius": list(radii), "N": Ns},
        attrs={"reference": "implicit-function gradient at the free equilibrium", "predicted_rate_at_r_check": rate_pred, "fitted_rate_at_r_check": rate, "r_check": r_check},
    )
    converged = bool(np.all(np.asarray(status) == 0))
    max_res = float(jnp.max(res)) if converged else float("inf")
    crit = dict(
        min_error=at_most(float(e.min()), error_tol),
        first_N_below_1e8=between(n_reach, 1, n_max),
        rate_per_N=below(rate, rate_max),  # geometric decay: fitted error ratio per extra nudge
        predicted_rate=reported(rate_pred),  # r / |nearest singularity of beta -> s*_beta| (linearised)
        loglinear_r2=at_least(r2, r2_min),
    )
    if symmetric_reference:
        crit["n2_equals_symmetric"] = at_most(n2_vs_sym, n2_tol)
        crit["symmetric_error_at_r"] = reported(float(sym_err[a]))
    crit["nudged_converged"] = at_most(max_res, residual_tol)
    return ds, Verdict.from_criteria(**crit)


def _predicted_rate(model, state, x, r) -> float:
    r"""``r / R`` with ``R = 1/λ_max((H^{-1})_{out,out})``: the nudge at which :math:`H + \beta P_{out}` turns
    singular at the free equilibrium (a linearised estimate of the radius of convergence of β ↦ G(β))."""
    n_out = model.network.sizes[-1]
    H = np.asarray(energy_hessians(model, state, x))
    Rs = [1.0 / np.max(np.abs(np.linalg.eigvals(np.linalg.inv(h)[-n_out:, -n_out:]))) for h in H]
    return float(r / min(Rs))
