r"""Theorem checks for SoftHebb (Moraitis et al., Neuromorph. Comput. Eng. 2022), float64.

The rule :math:`\dot w_k = \eta\langle y_k (x - u_k w_k)\rangle`, :math:`y = \mathrm{softmax}(Wx/\tau)`, is integrated
as an ODE on the weights with :func:`dynlearn.dynamics.simulate` (full data average, Tsit5 at a fixed step).

* ``softhebb_norm`` — the norms go to the rule's fixed point :math:`\|w_k\| = 1` at the predicted rate: along the
  flow :math:`1 - \|w_k(t)\|^2 = (1 - \|w_k(0)\|^2)\, e^{-2\eta\int_0^t m_k}`, :math:`m_k = \langle y_k u_k\rangle`
  (exact for any data), so near the fixed point the gap decays at rate :math:`2\eta m_k^*`.
* ``softhebb_bayes`` — on data from a mixture of von Mises–Fisher components (concentration κ, equal priors), the
  network with :math:`\tau = 1/\kappa` learns the component mean directions (angle within the finite-sample bound),
  its outputs approach the posterior responsibilities (mean KL bound), and the learned weights are the fixed point of
  EM for that mixture (computed independently here).

Both take the plasticity as an argument, so the tests hand them broken variants (hard WTA, flipped sign, no decay)
and see them fail. See ``theory/softhebb_norm.md`` and ``theory/softhebb_bayes.md``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from scipy.optimize import linear_sum_assignment
from scipy.special import ive

from ..dynamics import simulate
from ..models.hebbian.softhebb import SoftHebbPlasticity, norm_rate
from .criteria import at_most, reported, within
from .registry import Verdict, register_check


@functools.lru_cache(maxsize=16)
def _vmf_cached(d, n_components, kappa, n, seed):
    return _vmf_draw(d, n_components, kappa, n, seed)


def vmf_mixture(d: int, n_components: int, kappa: float, n: int, seed: int):
    """``(x, labels, means)``: ``n`` samples of an equal-prior mixture of von Mises–Fisher components on the unit
    sphere of R^d with concentration ``kappa`` and random mean directions (scipy's exact sampler; memoised, copies)."""
    return tuple(a.copy() for a in _vmf_cached(int(d), int(n_components), float(kappa), int(n), int(seed)))


def _vmf_draw(d: int, n_components: int, kappa: float, n: int, seed: int):
    """``(x, labels, means)``: ``n`` samples of an equal-prior mixture of von Mises–Fisher components on the unit
    sphere of R^d with concentration ``kappa`` and random mean directions (scipy's exact sampler)."""
    from scipy.stats import vonmises_fisher

    rng = np.random.default_rng(seed)
    means = rng.standard_normal((n_components, d))
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    labels = rng.integers(n_components, size=n)
    x = np.empty((n, d))
    for k in range(n_components):
        idx = np.flatnonzero(labels == k)
        if idx.size:
            x[idx] = vonmises_fisher(means[k], kappa).rvs(idx.size, random_state=rng).reshape(idx.size, d)
    return x, labels, means


def mean_resultant(d: int, kappa: float) -> float:
    r""":math:`A_d(\kappa) = I_{d/2}(\kappa)/I_{d/2-1}(\kappa) = \mathbb E[\mu\cdot x]` of a vMF component."""
    return float(ive(d / 2, kappa) / ive(d / 2 - 1, kappa))


def posterior(x, means, kappa):
    """Responsibilities of the equal-prior vMF mixture: softmax(kappa means x)."""
    return jax.nn.softmax(kappa * x @ means.T, axis=-1)


def farthest_point_init(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``k`` data points chosen greedily far apart (a random first one): the unsupervised EM/k-means start."""
    rng = np.random.default_rng(seed + 7919)
    idx = [int(rng.integers(x.shape[0]))]
    for _ in range(k - 1):
        idx.append(int(np.argmin(np.max(x @ x[idx].T, axis=1))))
    return x[idx].copy()


def _augmented_field(t, state, args):
    """``(W, A)`` with :math:`\\dot W` the rule and :math:`\\dot A_k = 2\\eta m_k` (the predicted log-rate of the norm gap)."""
    w, _ = state
    plasticity, x, eta = args
    return plasticity.field(t, w, (x, eta)), 2.0 * eta * norm_rate(plasticity, w, x)


def _save_norms(t, state, args):
    """Saved along the norm check's flow: the gaps 1 - |w_k|^2, the integrated rates A_k and the rates m_k."""
    w, log_rate = state
    return 1.0 - jnp.sum(w**2, axis=1), log_rate, norm_rate(args[0], w, args[1])


def _rule_field(t, w, args):
    """The rule's field with ``args = (plasticity, x, eta)``."""
    plasticity, x, eta = args
    return plasticity.field(t, w, (x, eta))


def _norm_run(w0, args, t1, dt, ts):
    """One run of the augmented flow from ``w0``: saved gaps, integrated rates, rates and the final weights (numpy)."""
    state0 = (jnp.asarray(w0), jnp.zeros(w0.shape[0]))
    traj = simulate(_augmented_field, state0, args, t1=t1, dt0=dt, ts=ts, solver="tsit5", save_fn=_save_norms,
                    name="softhebb_norm", throw=False)
    return (*(np.asarray(a) for a in traj.ys), np.asarray(traj.final[0]))


# ----------------------------------------------------------------------------- softhebb_norm


@register_check(
    "softhebb_norm",
    family="hebbian",
    statement="SoftHebb: weight norms converge to the fixed point 1 along 1-|w|^2 = (1-|w0|^2) exp(-2 eta int <y u>) (rel. error <= 1e-6), final |‖w‖-1| <= 1e-8, late decay rate = 2 eta m_k* within 2%",
    theory="theory/softhebb_norm.md",
    quick={},
    full={"seeds": (0, 1, 2, 3, 4), "n": 4000, "n_units": 8, "dt": 0.05},
)
def softhebb_norm(
    *, d=8, n_components=4, n_units=4, kappa=20.0, tau=0.25, n=500, eta=1.0, t1=80.0, dt=0.2, n_save=81, seeds=(0, 1), perturb=1e-2,
    tol_identity=1e-6, tol_final=1e-8, tol_rate=0.02, plasticity: SoftHebbPlasticity | None = None,
):
    """Integrate the rule from weights of norms in [0.3, 1.8] on vMF-mixture data (concentration ``kappa``) at
    temperature ``tau`` (soft enough that no unit loses every sample: a unit with :math:`m_k \to 0` never converges);
    compare the norm gaps with the exact law."""
    plasticity = SoftHebbPlasticity(tau=tau) if plasticity is None else plasticity
    ts = np.linspace(0.0, t1, n_save)
    gaps, preds, rates, late_gaps, late = [], [], [], [], []
    for seed in seeds:
        x, _, _ = vmf_mixture(d, n_components, kappa, n, seed)
        rng = np.random.default_rng(seed + 1)
        w0 = x[rng.choice(n, n_units, replace=False)] + 0.3 * rng.standard_normal((n_units, d))
        w0 *= (rng.uniform(0.3, 1.8, n_units) / np.linalg.norm(w0, axis=1))[:, None]
        args = (plasticity, jnp.asarray(x), eta)
        gap, log_rate, m, w_star = _norm_run(w0, args, t1, dt, ts)
        gaps.append(gap)
        preds.append(gap[:1] * np.exp(-log_rate))
        rates.append(m)
        # the linearised rate: from the converged weights with norms moved by +-perturb, the gap decays as exp(-2 eta m* t)
        signs = np.where(np.arange(n_units) % 2 == 0, 1.0, -1.0)
        if not np.all(np.isfinite(w_star)):  # the run diverged: nothing to linearise about
            late_gaps.append(np.full_like(gap, np.nan))
            late += [np.nan] * n_units
            continue
        g2, _, _, _ = _norm_run(w_star * (1.0 + perturb * signs)[:, None], args, t1, dt, ts)
        late_gaps.append(g2)
        m_star = np.asarray(norm_rate(plasticity, jnp.asarray(w_star), jnp.asarray(x)))
        for k in range(n_units):
            g = np.abs(g2[:, k])
            win = (g < 1e-3 * g[0]) & (g > 1e-10 * g[0])
            slope = -np.polyfit(ts[win], np.log(g[win]), 1)[0] if win.sum() >= 3 else np.nan
            late.append(slope / (2.0 * eta * m_star[k]) - 1.0)
    gaps, preds, rates, late_gaps, late = np.stack(gaps), np.stack(preds), np.stack(rates), np.stack(late_gaps), np.asarray(late)
    identity_err = np.abs(gaps - preds) / np.abs(gaps[:, :1])
    final = np.abs(np.sqrt(np.maximum(1.0 - gaps[:, -1], 0.0)) - 1.0)
    ds = xr.Dataset(
        {
            "norm_gap": (("seed", "time", "unit"), gaps),
            "predicted_gap": (("seed", "time", "unit"), preds),
            "rate": (("seed", "time", "unit"), rates),
            "identity_error": (("seed", "time", "unit"), identity_err),
            "perturbed_gap": (("seed", "time", "unit"), late_gaps),
            "late_rate_rel_error": (("seed", "unit"), late.reshape(len(seeds), n_units)),
        },
        coords={"seed": list(seeds), "time": ts, "unit": np.arange(n_units)},
        attrs={"eta": eta, "tau": plasticity.tau, "kappa": kappa, "perturb": perturb},
    )
    verdict = Verdict.from_criteria(
        identity_rel_error=at_most(np.max(identity_err) if np.all(np.isfinite(identity_err)) else np.nan, tol_identity),
        final_norm_gap=at_most(np.max(final) if np.all(np.isfinite(final)) else np.nan, tol_final),
        late_rate_rel_error=within(late[np.nanargmax(np.abs(late))] if np.any(np.isfinite(late)) else np.nan, 0.0, tol_rate),
        min_rate_m=reported(np.min(rates[:, -1])),
    )
    return ds, verdict


# ----------------------------------------------------------------------------- softhebb_bayes


def em_fixed_point(x, w0, kappa, iters=2000, tol=1e-14):
    """EM for the equal-prior vMF mixture with known ``kappa``: mu_k <- normalise(sum_n r_nk x_n), from ``w0``."""
    mu = w0 / np.linalg.norm(w0, axis=1, keepdims=True)
    for _ in range(iters):
        a = kappa * x @ mu.T
        r = np.exp(a - a.max(1, keepdims=True))
        r /= r.sum(1, keepdims=True)
        new = r.T @ x
        new /= np.linalg.norm(new, axis=1, keepdims=True)
        if np.max(np.abs(new - mu)) < tol:
            return new
        mu = new
    return mu


def _angles_deg(a, b):
    """Angles (degrees) between the rows of ``a`` and ``b``: 2 arcsin(|a^ - b^|/2), accurate down to round-off."""
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return np.degrees(2.0 * np.arcsin(np.clip(np.linalg.norm(a - b, axis=-1) / 2.0, 0.0, 1.0)))


def _kl(p, q):
    """Mean over samples of KL(p || q) (rows are distributions); q clipped at 1e-300 (a hard WTA gives ~690 per zero)."""
    return np.mean(np.sum(p * (np.log(np.maximum(p, 1e-300)) - np.log(np.maximum(q, 1e-300))), axis=-1))


@register_check(
    "softhebb_bayes",
    family="hebbian",
    statement="SoftHebb on a von Mises-Fisher mixture (tau = 1/kappa): weights within the finite-sample angle bound of the component means, mean KL(posterior || soft-WTA output) within its bound, and the weights are the EM fixed point (angle <= 1e-4 deg)",
    theory="theory/softhebb_bayes.md",
    quick={},
    full={"seeds": (0, 1, 2, 3, 4), "n": 16000, "t1": 200.0, "dt": 0.05},
)
def softhebb_bayes(
    *, d=8, n_components=4, kappa=20.0, n=1000, eta=1.0, t1=100.0, dt=0.2, n_save=51, seeds=(0, 1), sigmas=4.0,
    tol_em_deg=1e-4, plasticity: SoftHebbPlasticity | None = None,
):
    """Learn the mixture with the rule from an unsupervised farthest-point start; compare with the truth and with EM.

    The angle bound is ``sigmas`` times the finite-sample angular error of a component mean estimated from its
    ``n_k = n / K`` samples, :math:`\\sqrt{(d-1)/(\\kappa A_d(\\kappa) n_k)}` (radians). The KL of the outputs to the
    posterior grows as the square of the weights' error, so its bound is ``sigmas**2`` times the KL of the labelled
    (oracle) estimate of the means on the same samples, the finite-sample floor."""
    plasticity = SoftHebbPlasticity(tau=1.0 / kappa) if plasticity is None else plasticity
    ts = np.linspace(0.0, t1, n_save)
    n_k = n / n_components
    angle_bound = np.degrees(sigmas * np.sqrt((d - 1) / (kappa * mean_resultant(d, kappa) * n_k)))
    rows = {"angle": [], "oracle_angle": [], "kl": [], "oracle_kl": [], "em_angle": [], "kl_curve": [], "ce_curve": [], "angle_curve": []}
    for seed in seeds:
        x, labels, means = vmf_mixture(d, n_components, kappa, n, seed)
        w0 = farthest_point_init(x, n_components, seed)
        traj = simulate(_rule_field, jnp.asarray(w0), (plasticity, jnp.asarray(x), eta), t1=t1, dt0=dt, ts=ts, solver="tsit5",
                        name="softhebb_bayes", throw=False)
        ws = np.asarray(traj.ys)
        w = ws[-1]
        _, col = linear_sum_assignment(-(means @ w.T))  # unit col[k] stands for component k
        p = np.asarray(posterior(x, means, kappa))
        xj = jnp.asarray(x)
        y_t = np.asarray(jax.vmap(lambda wt, xj=xj: plasticity.outputs(wt, xj)[1])(jnp.asarray(ws)))[:, :, col]
        rows["kl_curve"].append([_kl(p, y) for y in y_t])
        rows["ce_curve"].append([-np.mean(np.sum(p * np.log(np.maximum(y, 1e-300)), axis=-1)) for y in y_t])
        rows["angle_curve"].append(np.max(_angles_deg(ws[:, col], means[None]), axis=1))
        rows["angle"].append(_angles_deg(w[col], means))
        rows["kl"].append(rows["kl_curve"][-1][-1])
        oracle = np.stack([x[labels == k].sum(0) for k in range(n_components)])
        rows["oracle_angle"].append(_angles_deg(oracle, means))
        rows["oracle_kl"].append(_kl(p, np.asarray(posterior(x, oracle / np.linalg.norm(oracle, axis=1, keepdims=True), kappa))))
        rows["em_angle"].append(_angles_deg(w[col], em_fixed_point(x, w0, kappa)[col]))
    r = {k: np.asarray(v) for k, v in rows.items()}
    ds = xr.Dataset(
        {
            "angle_to_mean": (("seed", "component"), r["angle"]),
            "oracle_angle": (("seed", "component"), r["oracle_angle"]),
            "angle_to_em": (("seed", "component"), r["em_angle"]),
            "mean_kl": ("seed", r["kl"]),
            "oracle_kl": ("seed", r["oracle_kl"]),
            "kl_curve": (("seed", "time"), r["kl_curve"]),
            "cross_entropy_curve": (("seed", "time"), r["ce_curve"]),
            "worst_angle_curve": (("seed", "time"), r["angle_curve"]),
        },
        coords={"seed": list(seeds), "component": np.arange(n_components), "time": ts},
        attrs={"kappa": kappa, "tau": plasticity.tau, "angle_bound_deg": angle_bound, "kl_ratio_bound": sigmas**2, "d": d, "n": n},
    )
    finite = lambda v: v if np.all(np.isfinite(v)) else np.nan
    verdict = Verdict.from_criteria(
        angle_to_mean_worst_deg=at_most(finite(r["angle"].max()), angle_bound),
        kl_ratio_to_oracle_worst=at_most(finite((r["kl"] / r["oracle_kl"]).max()), sigmas**2),
        mean_kl_worst=reported(r["kl"].max()),
        angle_to_em_worst_deg=at_most(finite(r["em_angle"].max()), tol_em_deg),
        oracle_angle_worst_deg=reported(r["oracle_angle"].max()),
        oracle_kl_worst=reported(r["oracle_kl"].max()),
        cross_entropy_drop=reported(np.min(r["ce_curve"][:, 0] - r["ce_curve"][:, -1])),
    )
    return ds, verdict
