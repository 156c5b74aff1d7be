r"""Theorem checks for the feedback-alignment family (float64).

* ``kp_exact_decay`` — Kolen–Pollack: with plain SGD, :math:`\|W_l - B_l^\top\|` shrinks exactly by
  :math:`(1-\lambda)` per step whatever the data (Kolen & Pollack 1994; Akrout et al. 2019).
* ``fa_alignment`` — feedback alignment on a linear teacher–student task: the forward weights come to agree
  with the fixed random feedback, :math:`\angle(W^\top, B)` falls well below 90°, and the FA update then points
  within 90° of the BP gradient (Lillicrap et al. 2016).
* ``weight_mirror_fixed_point`` — weight mirror with W fixed: :math:`B \to (\eta\sigma^2/\lambda) W^\top`
  (Akrout et al. 2019).

Every check takes the component under test as an argument (learner factory, network class, mirror rule), so a
test can hand it a broken one and see it fail. See ``theory/kp_exact_decay.md``, ``theory/fa_alignment.md``
and ``theory/weight_mirror_fixed_point.md``.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import xarray as xr

from ..analysis import alignment_angle, bp_gradient
from ..data import teacher_student
from ..learning import make_step
from ..models.feedback import FeedbackNetwork, fa_learner, init_feedback_network, kp_learner, mirror_update, rule_update
from ..networks import init_network
from .registry import Verdict, register_check


def _teacher_data(sizes, n, seed, activation):
    d = teacher_student(sizes, n_train=n, n_test=1, activation=activation, seed=seed)
    return jnp.asarray(d.x_train, jnp.float64), jnp.asarray(d.y_train, jnp.float64)


def _to64(tree):
    return jax.tree.map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, tree)


# ----------------------------------------------------------------------------- kp_exact_decay


@register_check(
    "kp_exact_decay",
    family="feedback",
    statement="Kolen-Pollack with SGD: ||W_l - B_l^T|| decays exactly as (1 - lambda)^t (relative error <= 1e-10)",
    theory="theory/kp_exact_decay.md",
    quick={},
    full={"steps": 2000, "seeds": tuple(range(5))},
)
def kp_exact_decay(*, sizes=(6, 12, 10, 4), steps=300, batch=16, lr=0.05, decay=0.3, seeds=(0, 1), tol=1e-10, learner_factory=kp_learner):
    """Train the KP learner with plain SGD on a tanh teacher–student task; compare ||W - B^T|| with (1 - lr·decay)^t."""
    learner = learner_factory(activation="tanh", decay=decay)
    opt = optax.sgd(lr)
    step = make_step(learner, opt)
    lam = lr * decay

    @eqx.filter_jit
    def measure(params):
        pairs = list(zip(params.network.weights[1:], params.feedback))
        return jnp.stack([jnp.linalg.norm(w - b.T) for w, b in pairs]), jnp.stack([alignment_angle(b, w.T) for w, b in pairs])

    gaps, errs, angles = [], [], []
    for seed in seeds:
        x, y = _teacher_data((sizes[0], 8, sizes[-1]), batch * 8, seed, "tanh")
        params = _to64(learner.init(jax.random.key(seed), sizes))
        opt_state = opt.init(eqx.filter(params, eqx.is_inexact_array))
        gap, ang = [], []
        for t in range(steps + 1):
            g, a = measure(params)
            gap.append(g)
            ang.append(a)
            if t < steps:
                i = (t % 8) * batch
                params, opt_state, _ = step(params, opt_state, x[i : i + batch], y[i : i + batch])
        gap = np.asarray(jnp.stack(gap))
        ang = jnp.stack(ang)
        predicted = gap[0] * (1.0 - lam) ** np.arange(steps + 1)[:, None]
        gaps.append(gap)
        errs.append(np.abs(gap - predicted) / predicted)
        angles.append(np.array(ang))
    gaps, errs, angles = np.stack(gaps), np.stack(errs), np.stack(angles)
    matrices = [f"W{l}-B{l}^T" for l in range(2, len(sizes))]
    ds = xr.Dataset(
        {
            "gap": (("seed", "step", "matrix"), gaps),
            "predicted": (("seed", "step", "matrix"), gaps[:, :1] * (1.0 - lam) ** np.arange(steps + 1)[None, :, None]),
            "relative_error": (("seed", "step", "matrix"), errs),
            "angle_B_WT": (("seed", "step", "matrix"), angles),
        },
        coords={"seed": list(seeds), "step": np.arange(steps + 1), "matrix": matrices},
        attrs={"lambda": lam},
    )
    max_err = float(errs.max())
    shrink = float((gaps[:, -1] / gaps[:, 0]).max())
    verdict = Verdict.from_criteria(
        max_relative_error=(max_err, f"<= {tol:g}", max_err <= tol),
        total_shrink=(shrink, f"(1 - lambda)^{steps} = {(1 - lam) ** steps:.3e} (reported)", True),
        final_angle_B_WT=(float(angles[:, -1].max()), "reported (deg)", True),
    )
    return ds, verdict


# ----------------------------------------------------------------------------- fa_alignment


@register_check(
    "fa_alignment",
    family="feedback",
    statement="Feedback alignment on a linear teacher-student task: angle(W^T, B) falls from ~90 deg to < 60 deg (a drop of >= 20 deg); the FA update is then within 90 deg of the BP gradient",
    theory="theory/fa_alignment.md",
    quick={},
    full={"seeds": tuple(range(10)), "steps": 6000},
)
def fa_alignment(
    *, sizes=(10, 20, 5), steps=1500, batch=32, lr=0.01, init_scale=0.1, seeds=(0, 1, 2, 3), n_points=31, max_angle=60.0, network_cls=FeedbackNetwork
):
    """Train FA (linear network, SGD) on a linear teacher; track angle(W_2^T, B_2) and angle(ΔW_1^FA, ΔW_1^BP).

    The student's forward weights start small (``init_scale`` × Xavier), as in Lillicrap et al. (2016), so what
    it learns, not its initialisation, decides the final weights.
    """
    opt = optax.sgd(lr)
    step = make_step(fa_learner(activation="linear"), opt)

    @eqx.filter_jit
    def measures(params, xb, yb):
        grads, loss = rule_update(params, xb, yb)
        bp = bp_gradient(params.network, xb, yb)
        w, b = params.network.weights[1], params.feedback[0]
        return alignment_angle(w.T, b), alignment_angle(grads.network.weights[0], bp.weights[0]), loss / xb.shape[0]

    record = np.unique(np.linspace(0, steps, n_points).round().astype(int))
    ang_wb, ang_up, losses = [], [], []
    for seed in seeds:
        x, y = _teacher_data(sizes, batch * 16, seed, "linear")
        p = _to64(init_feedback_network(sizes, key=jax.random.key(seed), rule="fa", activation="linear"))
        net = eqx.tree_at(lambda n: n.weights, p.network, tuple(init_scale * w for w in p.network.weights))
        params = network_cls(net, p.feedback, p.key, "fa")
        opt_state = opt.init(eqx.filter(params, eqx.is_inexact_array))
        a1, a2, ls = [], [], []
        for t in range(steps + 1):
            i = (t % 16) * batch
            if t in record:
                m = measures(params, x, y)
                a1.append(float(m[0]))
                a2.append(float(m[1]))
                ls.append(float(m[2]))
            if t < steps:
                params, opt_state, _ = step(params, opt_state, x[i : i + batch], y[i : i + batch])
        ang_wb.append(a1)
        ang_up.append(a2)
        losses.append(ls)
    ang_wb, ang_up, losses = np.array(ang_wb), np.array(ang_up), np.array(losses)
    ds = xr.Dataset(
        {"angle_WT_B": (("seed", "step"), ang_wb), "angle_update_bp": (("seed", "step"), ang_up), "loss": (("seed", "step"), losses)},
        coords={"seed": list(seeds), "step": record},
    )
    start, final = float(ang_wb[:, 0].mean()), float(ang_wb[:, -1].max())
    drop = float((ang_wb[:, 0] - ang_wb[:, -1]).min())
    # the update angle is meaningful while there is an error left to reduce: use the last point with loss > 1e-6 x initial
    live = losses > 1e-6 * losses[:, :1]
    last_live = np.array([np.flatnonzero(r)[-1] for r in live])
    up_final = float(max(ang_up[i, j] for i, j in enumerate(last_live)))
    ds["last_live_step"] = ("seed", record[last_live])
    verdict = Verdict.from_criteria(
        start_angle=(start, "about 90 deg (reported)", True),
        final_angle_worst_seed=(final, f"< {max_angle} deg", final < max_angle),
        angle_drop_worst_seed=(drop, ">= 20 deg (start minus final, every seed)", drop >= 20.0),
        update_angle_to_bp_worst_seed=(up_final, "< 90 deg (at the last step with loss > 1e-6 x initial)", up_final < 90.0),
        loss_ratio=(float((losses[:, -1] / losses[:, 0]).max()), "< 0.1 (the student learns)", bool(np.all(losses[:, -1] < 0.1 * losses[:, 0]))),
    )
    return ds, verdict


# ----------------------------------------------------------------------------- weight_mirror_fixed_point


@register_check(
    "weight_mirror_fixed_point",
    family="feedback",
    statement="Weight mirror with W fixed: B -> (eta sigma^2 / lambda) W^T (angle < 5 deg, norm ratio within 10%)",
    theory="theory/weight_mirror_fixed_point.md",
    quick={},
    full={"seeds": tuple(range(10)), "steps": 2000},
)
def weight_mirror_fixed_point(
    *, sizes=(8, 12, 10, 6), steps=400, eta=0.5, sigma=0.7, decay=0.05, samples=256, seeds=(0, 1, 2), max_angle=5.0, norm_tol=0.1, mirror_fn=mirror_update
):
    """Iterate the mirror-mode step ``B += η⟨ξ(Wξ)ᵀ⟩ − λB`` from random ``B`` with fresh noise every step."""

    @jax.jit
    def run(net, fb, key):
        def body(fb, k):
            d = mirror_fn(net, fb, k, sigma=sigma, decay=decay, samples=samples, eta=eta)
            fb = tuple(b + di for b, di in zip(fb, d))
            target = tuple((eta * sigma**2 / decay) * w.T for w in net.weights[1:])
            ang = jnp.stack([alignment_angle(b, t) for b, t in zip(fb, target)])
            ratio = jnp.stack([jnp.linalg.norm(b) / jnp.linalg.norm(t) for b, t in zip(fb, target)])
            return fb, (ang, ratio)

        return jax.lax.scan(body, fb, jax.random.split(key, steps))[1]

    angs, ratios = [], []
    for seed in seeds:
        k_net, k_fb, k_noise = jax.random.split(jax.random.key(seed), 3)
        net = init_network(sizes, key=k_net, dtype=jnp.float64)
        fb = tuple(jax.random.normal(k, w.T.shape, jnp.float64) for k, w in zip(jax.random.split(k_fb, len(sizes) - 2), net.weights[1:]))
        a, r = run(net, fb, k_noise)
        angs.append(np.asarray(a))
        ratios.append(np.asarray(r))
    angs, ratios = np.stack(angs), np.stack(ratios)
    matrices = [f"B{l}" for l in range(2, len(sizes))]
    ds = xr.Dataset(
        {"angle_to_target": (("seed", "step", "matrix"), angs), "norm_ratio": (("seed", "step", "matrix"), ratios)},
        coords={"seed": list(seeds), "step": np.arange(1, steps + 1), "matrix": matrices},
        attrs={"scale": eta * sigma**2 / decay},
    )
    final_ang = float(angs[:, -1].max())
    final_ratio = float(np.abs(ratios[:, -1] - 1).max())
    verdict = Verdict.from_criteria(
        final_angle_worst=(final_ang, f"< {max_angle} deg", final_ang < max_angle),
        norm_ratio_error_worst=(final_ratio, f"<= {norm_tol} (|B| / |eta sigma^2/lambda W^T| - 1)", final_ratio <= norm_tol),
        start_angle=(float(angs[:, 0].mean()), "reported (deg)", True),
    )
    return ds, verdict
