"""Learning rules: one module per rule, each registering its learner (see :mod:`dynlearn.rules.base`)."""

from .base import LEARNERS, Learner, Rule, get_learner, learner_names

__all__ = ["LEARNERS", "Learner", "Rule", "get_learner", "learner_names"]
