"""Dendritic cortical microcircuits (Sacramento, Costa, Bengio & Senn 2018, NeurIPS 31), with optional Latent
Equilibrium rates (Haider et al. 2021, NeurIPS 34).

* :mod:`.parameters` — conductances (:class:`MicrocircuitParams`) and the named presets.
* :mod:`.circuit` — the dynamics (:class:`Microcircuit`), the self-predicting state and :class:`PatternStream`.
* :mod:`.plasticity` — the Urbanczik-Senn rules, :class:`Plasticity` and learning in continuous time
  (:func:`simulate_learning`).
* :mod:`.learner` — the registered ``microcircuit`` learner (a :class:`dynlearn.rules.Rule`).
"""

from .circuit import Microcircuit, PatternStream
from .learner import LEARNER_RELAX, DendriticPrediction, microcircuit_learner
from .parameters import PRESETS, MicrocircuitParams, preset
from .plasticity import (
    PLASTIC_FIELDS,
    Plasticity,
    learning_field,
    plastic_weights,
    save_plastic,
    simulate_learning,
    urbanczik_senn,
    with_weights,
)

__all__ = [
    "LEARNER_RELAX",
    "PLASTIC_FIELDS",
    "PRESETS",
    "DendriticPrediction",
    "Microcircuit",
    "MicrocircuitParams",
    "PatternStream",
    "Plasticity",
    "learning_field",
    "microcircuit_learner",
    "plastic_weights",
    "preset",
    "save_plastic",
    "simulate_learning",
    "urbanczik_senn",
    "with_weights",
]
