"""Generic analysis: reference gradients, gradient comparisons, fixed points and their stability."""

from .alignment import alignment_angle, backward_alignment, feedback_report, update_angle, weight_norm_ratio
from .fixed_points import energy_increase, flow_jacobian, is_stable, spectrum
from .implicit import bptt_gradient, implicit_gradient
from .gradients import (
    bp_deltas,
    bp_gradient,
    compare_per_layer,
    cosine_similarity,
    loglog_slope,
    mse_loss,
    relative_error,
)

__all__ = [
    "alignment_angle",
    "backward_alignment",
    "feedback_report",
    "update_angle",
    "weight_norm_ratio",
    "bp_deltas",
    "bp_gradient",
    "bptt_gradient",
    "compare_per_layer",
    "cosine_similarity",
    "energy_increase",
    "flow_jacobian",
    "implicit_gradient",
    "is_stable",
    "loglog_slope",
    "mse_loss",
    "relative_error",
    "spectrum",
]
