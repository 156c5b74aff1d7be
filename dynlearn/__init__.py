"""dynlearn: learning without backpropagation as differentiable dynamical systems.

Models (predictive coding, equilibrium propagation, feedback-learning rules, cortical microcircuits) are energies or
vector fields over neural state (:mod:`dynlearn.models.base`: ``Data``, ``DynamicalModel``, ``EnergyModel``);
:func:`equilibrium` relaxes any of them with a :class:`RelaxConfig`; learning rules share one optax-like protocol
(:mod:`dynlearn.rules`); :mod:`dynlearn.analysis` compares their updates to backprop and implicit gradients; and
:mod:`dynlearn.theorems` checks the field's theorems numerically.
"""

__version__ = "0.2.0"

from .config import DEFAULT, NEWTON, THEOREM, THEOREM_STRICT, TRAINING, RelaxConfig  # noqa: E402
from .dynamics import Equilibrium, Trajectory, polish, relax, simulate  # noqa: E402
from .errors import (  # noqa: E402
    ConfigError,
    DivergedError,
    DynlearnError,
    NonFiniteError,
    NotConvergedError,
    OutputPathError,
    ShapeError,
    UnknownNameError,
)
from .models.base import Data, DynamicalModel, EnergyModel, equilibrium  # noqa: E402
from .networks import Network, init_network, lenet5  # noqa: E402
from .runs import load_run  # noqa: E402

__all__ = [
    "DEFAULT",
    "NEWTON",
    "THEOREM",
    "THEOREM_STRICT",
    "TRAINING",
    "ConfigError",
    "Data",
    "DivergedError",
    "DynamicalModel",
    "DynlearnError",
    "EnergyModel",
    "Equilibrium",
    "Network",
    "NonFiniteError",
    "NotConvergedError",
    "OutputPathError",
    "RelaxConfig",
    "ShapeError",
    "Trajectory",
    "UnknownNameError",
    "equilibrium",
    "init_network",
    "lenet5",
    "load_run",
    "polish",
    "relax",
    "simulate",
]
