r"""Feedback alignment (Lillicrap, Cownden, Tweed & Akerman 2016, Nat. Commun. 7:13276): fixed random feedback.

The error travels down through fixed random layers: for a Linear layer
:math:`\delta_{l-1} = \varphi'(\hat x_{l-1}) \odot B_l^\top \delta_l` with ``B_l`` (shaped like ``W_l``) drawn once,
``N(0, 2/(n_{l-1} + n_l))``; for a convolution ``B_l`` is a random kernel of the same shape (Glorot scale). The forward
weights learn :math:`\Delta W_l \propto -\delta_l h_{l-1}^\top`; the feedback never changes. Works on any
:class:`dynlearn.Network` (MLPs, :func:`dynlearn.networks.lenet5`).
"""

from __future__ import annotations

from jaxtyping import PRNGKeyArray

from ...losses import get_loss
from ...networks import Network
from ..base import LEARNERS, Learner
from .network import random_feedback
from .rule import FeedbackRule, feedback_learner


class FeedbackAlignment(FeedbackRule):
    """FA: one fixed random feedback layer per forward layer ``2..L``, a copy of it with Glorot-scaled random weights."""

    def init_feedback(self, key: PRNGKeyArray, network: Network, *, scale: float = 1.0) -> tuple:
        return random_feedback(key, network, scale=scale)


@LEARNERS.register("fa")
def fa_learner(*, activation="tanh", loss: str = "mse") -> Learner:
    """Feedback alignment: errors travel down through fixed random layers."""
    return feedback_learner(
        "fa", FeedbackAlignment(get_loss(loss)), "feedback alignment: fixed random backward layers (Lillicrap et al. 2016)", activation=activation, loss=loss
    )
