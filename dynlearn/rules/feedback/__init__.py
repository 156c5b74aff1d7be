"""The feedback-alignment family: one mechanism (:mod:`.mechanism`), the parameters (:mod:`.network`), what the rules
share (:mod:`.rule`), and one module per rule — :mod:`.fa`, :mod:`.dfa`, :mod:`.kp`, :mod:`.wm`,
:mod:`.sign_symmetry` (``usf``, ``brsf``, ``frsf``) — each registering its learner."""

from .dfa import DirectFeedbackAlignment, dfa_learner
from .fa import FeedbackAlignment, fa_learner
from .kp import KolenPollack, decoupled_decay, kp_learner, with_weight_decay
from .mechanism import feedback_call
from .network import (
    FeedbackNetwork,
    init_feedback_network,
    replace_weights,
    weight_arrays,
)
from .rule import FeedbackRule, feedback_learner
from .sign_symmetry import (
    BatchRandomSignSymmetry,
    FixedRandomSignSymmetry,
    SignSymmetry,
    UniformSignSymmetry,
    brsf_learner,
    frsf_learner,
    usf_learner,
)
from .wm import WeightMirror, mirror_update, wm_learner

__all__ = [
    "BatchRandomSignSymmetry",
    "DirectFeedbackAlignment",
    "FeedbackAlignment",
    "FeedbackNetwork",
    "FeedbackRule",
    "FixedRandomSignSymmetry",
    "KolenPollack",
    "SignSymmetry",
    "UniformSignSymmetry",
    "WeightMirror",
    "brsf_learner",
    "decoupled_decay",
    "dfa_learner",
    "fa_learner",
    "feedback_call",
    "feedback_learner",
    "frsf_learner",
    "init_feedback_network",
    "kp_learner",
    "mirror_update",
    "replace_weights",
    "usf_learner",
    "weight_arrays",
    "with_weight_decay",
    "wm_learner",
]
