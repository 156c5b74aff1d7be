"""Generic analysis: reference gradients, gradient comparisons, fixed points and their stability."""

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
    "feedback_report",
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
