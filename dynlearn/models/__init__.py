"""Models: energies and vector fields over neural state (the protocol is in :mod:`dynlearn.models.base`)."""

from .base import Data, DynamicalModel, EnergyModel, equilibrium

__all__ = ["Data", "DynamicalModel", "EnergyModel", "equilibrium"]
