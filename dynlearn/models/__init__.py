"""Models: energies and vector fields over neural state, plus the learners that train them."""

from .base import DynamicalModel, EnergyModel, equilibrium
from .registry import Learner, get_learner, learner_names, register_learner

__all__ = ["DynamicalModel", "EnergyModel", "equilibrium", "Learner", "get_learner", "learner_names", "register_learner"]
