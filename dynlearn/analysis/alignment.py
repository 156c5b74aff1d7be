r"""Alignment metrics for learning rules with separate backward weights (FA, DFA, KP, weight mirror, sign symmetry, PAL).

* :func:`alignment_angle` — the angle (degrees) between two arrays seen as vectors,
  :math:`\angle(A, B) = \arccos \frac{\langle A, B\rangle_F}{\|A\|_F \|B\|_F}`; 0° is perfect alignment, 90° is
  what two independent random matrices give, 180° is anti-alignment.
* :func:`weight_norm_ratio` — :math:`\|B\|_F / \|W^\top\|_F` (BioTorch's "layer weight norm ratio", Sanfiz & Akrout 2021).
* :func:`feedback_report` — every metric for one learner on one batch: per backward matrix the angle to what it
  replaces (the forward weights it stands in for; :math:`W^\top` in the papers' layout) and the norm ratio, per
  layer the angle between the rule's update and the BP gradient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jaxtyping import Array, Float, PRNGKeyArray

from ..models.base import Data
from .gradients import bp_gradient, cosine_similarity, layer_weights


def alignment_angle(a, b) -> Float[Array, ""]:
    """Angle in degrees between ``a`` and ``b`` (arrays or PyTrees, flattened); NaN if either is zero."""
    c = cosine_similarity(a, b)
    return jnp.degrees(jnp.arccos(jnp.clip(c, -1.0, 1.0)))


def weight_norm_ratio(b, w_t) -> Float[Array, ""]:
    """:math:`\\|B\\|_F / \\|W^\\top\\|_F` (``w_t`` is what ``B`` stands in for, in ``B``'s layout)."""
    nb = jnp.sqrt(sum(jnp.sum(jnp.abs(x) ** 2) for x in jax.tree.leaves(b)))
    nw = jnp.sqrt(sum(jnp.sum(jnp.abs(x) ** 2) for x in jax.tree.leaves(w_t)))
    return nb / nw


def update_angle(update, reference) -> Float[Array, ""]:
    """Angle in degrees between a rule's update and a reference update (e.g. ``-∂L/∂W`` from backprop)."""
    return alignment_angle(update, reference)


def backward_pairs(learner, params) -> list[tuple]:
    """``(label, B, target)`` per backward matrix of ``params``: from the learner's rule when it has
    ``backward_pairs(params)`` (the feedback family), else from ``params.backward_pairs()`` (PAL), else none (backprop).

    ``B`` and ``target`` are arrays or lists of arrays of the same shapes (the layout of the forward weights). On a
    convolutional network the pairs are those of the layers that have one (DFA reports only the hidden layers whose
    path to the output is made of Linear layers).
    """
    rule_pairs = getattr(learner.rule, "backward_pairs", None)
    if rule_pairs is not None:
        return rule_pairs(params)
    if hasattr(params, "backward_pairs"):
        return params.backward_pairs()
    return []


def backward_alignment(pairs) -> dict[str, np.ndarray]:
    """Angle and norm ratio of every ``(label, B, target)`` pair (see :func:`backward_pairs`)."""
    return {
        "matrix": np.array([p[0] for p in pairs], dtype=str),
        "angle": np.array([float(alignment_angle(b, t)) for _, b, t in pairs]),
        "norm_ratio": np.array([float(weight_norm_ratio(b, t)) for _, b, t in pairs]),
    }


def feedback_report(learner, params, x: Array, y: Array, *, key: PRNGKeyArray | None = None) -> xr.Dataset:
    """All alignment metrics of ``learner`` at ``params`` on the batch ``(x, y)``.

    Returns a Dataset with ``angle_B`` and ``norm_ratio`` over ``matrix`` (each backward matrix against what it
    replaces under backprop) and ``angle_update_bp`` over ``layer`` (the angle between the rule's update of the weights
    of layer ``l`` and BP's gradient of the same network with the learner's loss; 0° means the rule follows the
    gradient). ``params`` is a :class:`dynlearn.Network` (backprop) or has a ``network`` (the feedback rules, PAL); any
    layer type works (the weights compared are each layer's weight arrays). ``key`` feeds the rule's update
    (default ``key(0)``).
    """
    key = jax.random.key(0) if key is None else key
    k_state, k_update = jax.random.split(key)
    al = backward_alignment(backward_pairs(learner, params))
    rule_state = learner.rule.init(k_state, params)
    grads, _, _ = learner.rule.update(params, rule_state, Data(x, y), k_update)
    network = getattr(params, "network", params)
    rule_w = layer_weights(getattr(grads, "network", grads))
    bp_w = layer_weights(bp_gradient(network, x, y, learner.defaults.get("loss", "mse")))
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
