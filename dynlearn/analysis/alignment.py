r"""Alignment metrics for learning rules with separate backward weights (FA, DFA, KP, weight mirror, sign symmetry, PAL).

* :func:`alignment_angle` — the angle (degrees) between two arrays seen as vectors,
  :math:`\angle(A, B) = \arccos \frac{\langle A, B\rangle_F}{\|A\|_F \|B\|_F}`; 0° is perfect alignment, 90° is
  what two independent random matrices give, 180° is anti-alignment.
* :func:`weight_norm_ratio` — :math:`\|B\|_F / \|W^\top\|_F` (BioTorch's "layer weight norm ratio", Sanfiz & Akrout 2021).
* :func:`feedback_report` — every metric for one learner on one batch: per backward matrix the angle to what it
  replaces (:math:`W^\top`) and the norm ratio, per layer the angle between the rule's update and the BP gradient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jaxtyping import Array, Float

from .gradients import bp_gradient, cosine_similarity


def alignment_angle(a, b) -> Float[Array, ""]:
    """Angle in degrees between ``a`` and ``b`` (arrays or PyTrees, flattened); NaN if either is zero."""
    c = cosine_similarity(a, b)
    return jnp.degrees(jnp.arccos(jnp.clip(c, -1.0, 1.0)))


def weight_norm_ratio(b, w_t) -> Float[Array, ""]:
    """:math:`\\|B\\|_F / \\|W^\\top\\|_F` (``w_t`` is the matrix ``B`` stands in for)."""
    nb = jnp.sqrt(sum(jnp.sum(jnp.abs(x) ** 2) for x in jax.tree.leaves(b)))
    nw = jnp.sqrt(sum(jnp.sum(jnp.abs(x) ** 2) for x in jax.tree.leaves(w_t)))
    return nb / nw


def update_angle(update, reference) -> Float[Array, ""]:
    """Angle in degrees between a rule's update and a reference update (e.g. ``-∂L/∂W`` from backprop)."""
    return alignment_angle(update, reference)


def backward_alignment(params) -> dict[str, np.ndarray]:
    """Angle and norm ratio of every backward matrix of ``params`` (anything with ``backward_pairs()``)."""
    pairs = params.backward_pairs()
    return {
        "matrix": np.array([p[0] for p in pairs]),
        "angle": np.array([float(alignment_angle(b, t)) for _, b, t in pairs]),
        "norm_ratio": np.array([float(weight_norm_ratio(b, t)) for _, b, t in pairs]),
    }


def feedback_report(learner, params, x: Array, y: Array, *, loss: str = "mse") -> xr.Dataset:
    """All alignment metrics of ``learner`` at ``params`` on the batch ``(x, y)``.

    Returns a Dataset with ``angle_B`` and ``norm_ratio`` over ``matrix`` (each backward matrix against what it
    replaces under backprop) and ``angle_update_bp`` over ``layer`` (the rule's ``ΔW_l`` against BP's gradient of the
    same network; 0° means the rule follows the gradient). ``params`` is a :class:`dynlearn.Network` (backprop) or
    has ``network`` and ``backward_pairs()`` (the feedback rules, PAL).
    """
    if hasattr(params, "backward_pairs"):
        al = backward_alignment(params)
    else:  # backprop itself: no backward matrices
        al = {"matrix": np.array([], dtype=str), "angle": np.array([]), "norm_ratio": np.array([])}
    grads, _ = learner.update(params, x, y)
    network = getattr(params, "network", params)
    rule_w = getattr(grads, "network", grads).weights
    bp_w = bp_gradient(network, x, y, loss).weights
    ang = np.array([float(update_angle(g, r)) for g, r in zip(rule_w, bp_w)])
    return xr.Dataset(
        {
            "angle_B": ("matrix", al["angle"]),
            "norm_ratio": ("matrix", al["norm_ratio"]),
            "angle_update_bp": ("layer", ang),
        },
        coords={"matrix": al["matrix"], "layer": np.arange(1, len(ang) + 1)},
        attrs={"learner": learner.name},
    )
