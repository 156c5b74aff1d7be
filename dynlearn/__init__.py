"""dynlearn: learning without backpropagation as differentiable dynamical systems.

Models (predictive coding, equilibrium propagation, feedback-learning rules, cortical microcircuits)
are energies or vector fields over neural state; :func:`relax` and :func:`simulate` integrate them
with diffrax; :mod:`dynlearn.analysis` compares their updates to backprop and implicit gradients; and
:mod:`dynlearn.theorems` checks the field's theorems numerically.
"""

__version__ = "0.1.0"

from .dynamics import Equilibrium, Trajectory, model_flow, polish, relax, simulate  # noqa: E402
from .errors import (  # noqa: E402
    DivergedError,
    DynlearnError,
    NonFiniteError,
    NotConvergedError,
    ShapeError,
    UnknownNameError,
)
from .networks import Network, init_network  # noqa: E402

__all__ = [
    "DivergedError",
    "DynlearnError",
    "Equilibrium",
    "Network",
    "NonFiniteError",
    "NotConvergedError",
    "ShapeError",
    "Trajectory",
    "UnknownNameError",
    "init_network",
    "model_flow",
    "polish",
    "relax",
    "simulate",
]
