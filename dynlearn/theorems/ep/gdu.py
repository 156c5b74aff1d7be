r"""The GDU property (Ernoult et al. 2019): EP's updates in the prototypical setting equal minus BPTT's, step by step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ...models.gdu import PrototypicalRNN, bptt_steps, ep_steps, fixed_point, init_prototypical
from ..criteria import at_most, within
from ..registry import Verdict, register_check
from .problem import fit, take
from ... import draws


class NonGradientRNN(PrototypicalRNN):
    """Negative control: the map ``tanh(W s + U x + b)`` (asymmetric ``W``) is not the gradient of Φ."""

    def transition(self, x, s, params=None):
        W, U, b = self.params if params is None else params
        return jnp.tanh(W @ s + U @ x + b)


def _errors(d_s, d_t, gs, gt, K):
    """EP's updates ``(d_s, d_t)`` against minus BPTT's gradients ``(gs, gt)``: overall relative errors (neural,
    weight), the largest per-step ones over steps with a significant gradient, and the per-step curves."""
    diff_s = np.asarray(d_s + gs)
    gs_n = np.linalg.norm(np.asarray(gs), axis=-1)
    diff_t = sum(np.sum(np.reshape(np.asarray(a + g), (K, -1)) ** 2, axis=1) for a, g in zip(d_t, gt))
    gt_n2 = sum(np.sum(np.reshape(np.asarray(g), (K, -1)) ** 2, axis=1) for g in gt)
    total_s = np.linalg.norm(diff_s) / np.linalg.norm(np.asarray(gs))
    total_t = np.sqrt(diff_t.sum() / gt_n2.sum())
    sig = gs_n >= 1e-6 * gs_n.max()
    per_s = np.linalg.norm(diff_s, axis=-1)[sig] / gs_n[sig]
    sig_t = gt_n2 >= 1e-12 * gt_n2.max()
    per_t = np.sqrt(diff_t[sig_t] / gt_n2[sig_t])
    return total_s, total_t, per_s.max(), per_t.max(), np.linalg.norm(diff_s, axis=-1) / gs_n.max(), np.sqrt(diff_t / gt_n2.max())


def _error_rows(ds_p, dt_p, gs, gt, nb, K):
    """Per nudge: one-sided errors (``ds_p[i]``) and centred ones (``(ds_p[i] + ds_p[nb + i]) / 2``, nudges ±β)."""
    rows = {k: [] for k in ("neural", "weight", "neural_max_step", "weight_max_step", "neural_centered", "weight_centered")}
    curves_s, curves_t = [], []
    for i in range(nb):
        e1 = _errors(ds_p[i], take(dt_p, i), gs, gt, K)
        e2 = _errors(0.5 * (ds_p[i] + ds_p[nb + i]), jax.tree.map(lambda a: 0.5 * (a[i] + a[nb + i]), dt_p), gs, gt, K)
        for k, v in zip(("neural", "weight", "neural_max_step", "weight_max_step"), e1[:4]):
            rows[k].append(v)
        rows["neural_centered"].append(e2[0])
        rows["weight_centered"].append(e2[1])
        curves_s.append(e1[4])
        curves_t.append(e1[5])
    return rows, curves_s, curves_t


@register_check(
    "ep_gdu",
    family="ep",
    statement="In the prototypical discrete-time setting, EP's neural and weight updates in the first K nudged steps equal minus the BPTT gradients step by step as beta -> 0 (GDU property).",
    theory="theory/ep_gdu.md",
    quick={},
    full={"K": 60, "betas": tuple(np.logspace(-5, -1, 9))},
)
def ep_gdu(
    *, n_in=5, n_hidden=10, n_out=3, seed=0, w_norm=0.9, T=200, K=30, betas=(1e-1, 1e-2, 1e-3, 1e-4), model_cls=PrototypicalRNN,
    slope_tol=0.15, centered_slope_tol=0.2, error_tol=1e-3, step_error_tol=1e-2, residual_tol=1e-12,
):
    base = init_prototypical(jax.random.key(seed), n_in, n_hidden, n_out, w_norm=w_norm)
    model = model_cls(base.W, base.U, base.b, base.n_out)
    kx, ky = jax.random.split(jax.random.key(seed + 1))
    x = draws.normal(kx, (n_in,), jnp.float64)
    y = draws.uniform(ky, (n_out,), jnp.float64)
    eq = fixed_point(model, x, steps=T)
    gs, gt = bptt_steps(model, x, y, eq.state, K)
    b = np.asarray(betas, float)
    ds_p, dt_p = ep_steps(model, x, y, eq.state, jnp.asarray(np.concatenate([b, -b])), K)
    rows, curves_s, curves_t = _error_rows(ds_p, dt_p, gs, gt, len(b), K)
    imin = int(np.argmin(b))
    data = {k: ("beta", np.array(v)) for k, v in rows.items()}
    data["step_error_neural"] = (("beta", "t"), np.array(curves_s))
    data["step_error_weight"] = (("beta", "t"), np.array(curves_t))
    # the curves of the figure: a few neurons / synapses at the smallest beta
    data["ep_neural"] = (("t", "unit"), np.asarray(ds_p[imin]))
    data["bptt_neural"] = (("t", "unit"), -np.asarray(gs))
    data["ep_synapse"] = (("t", "synapse"), np.reshape(np.asarray(dt_p[0][imin]), (K, -1))[:, :8])
    data["bptt_synapse"] = (("t", "synapse"), -np.reshape(np.asarray(gt[0]), (K, -1))[:, :8])
    coords = {"beta": b, "t": np.arange(K), "unit": np.arange(gs.shape[1]), "synapse": np.arange(8)}
    ds = xr.Dataset(data, coords=coords, attrs={"T": T, "K": K, "fixed_point_residual": float(eq.residual)})
    verdict = Verdict.from_criteria(
        neural_slope=within(fit(b, rows["neural"]), 1.0, slope_tol),
        weight_slope=within(fit(b, rows["weight"]), 1.0, slope_tol),
        # centred: beta >= 1e-3, above the round-off floor
        centered_weight_slope=within(fit(b, rows["weight_centered"], b >= 1e-3), 2.0, centered_slope_tol),
        neural_error_min_beta=at_most(rows["neural"][imin], error_tol),
        weight_error_min_beta=at_most(rows["weight"][imin], error_tol),
        # every step with |grad| >= 1e-6 max
        max_step_error_min_beta=at_most(max(rows["neural_max_step"][imin], rows["weight_max_step"][imin]), step_error_tol),
        fixed_point_residual=at_most(float(eq.residual), residual_tol),
    )
    return ds, verdict
