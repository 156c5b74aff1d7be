r"""A synthetic next-token task with a known entropy floor: sequences of a random Markov chain of order ``k``.

The chain has ``vocab`` tokens; each context (the last ``k`` tokens) has a next-token law drawn from a symmetric
Dirichlet(``concentration``) (small concentration: peaked, predictable rows). Sequences of ``length + 1`` tokens
start from the stationary law of the contexts, so every position is stationary; the task is to predict token
``t + 1`` from tokens ``0..t`` (a causal language model), inputs and targets one-hot, ``(n, length, vocab)``.

The best achievable test cross-entropy is known exactly: at position ``t`` it is the conditional entropy
:math:`H(X_{t+1} \mid X_{0..t}) = H(X_{0..t+1}) - H(X_{0..t})` of the stationary chain, which for ``t >= k - 1`` is
:math:`\sum_c \pi(c) H(P(\cdot \mid c))` (:math:`\pi` the stationary law of the contexts); the floor is its mean
over positions. The accuracy ceiling is the same average of :math:`\max_j P(j \mid \cdot)`.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
from scipy.special import entr


@dataclasses.dataclass(frozen=True)
class SequenceTask:
    """Train and test sequences of a Markov chain with the exact optimum of next-token prediction.

    Attributes:
        x_train, y_train, x_test, y_test: one-hot inputs (tokens ``0..T-1``) and targets (tokens ``1..T``), ``(n, T, V)``.
        transition: ``(V**k, V)``, row ``c`` the next-token law of the context with index ``c`` (base-``V`` digits).
        entropy_floor: the least expected cross-entropy per token (nats) of any predictor.
        accuracy_ceiling: the greatest expected next-token accuracy of any predictor.
        unigram_entropy: the cross-entropy of predicting from the stationary token frequencies alone (no context).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    transition: np.ndarray
    order: int
    entropy_floor: float
    accuracy_ceiling: float
    unigram_entropy: float

    @property
    def vocab(self) -> int:
        return self.transition.shape[1]

    @property
    def length(self) -> int:
        return self.x_train.shape[1]


def _stationary_tuples(transition: np.ndarray, vocab: int, order: int) -> np.ndarray:
    """The stationary law of the context chain (``order``-tuples), as an array of shape ``(V,)*order``."""
    n = vocab**order
    chain = np.zeros((n, n))
    for c in range(n):
        for j in range(vocab):
            chain[c, (c * vocab + j) % n] += transition[c, j]
    w, v = np.linalg.eig(chain.T)
    pi = np.abs(np.real(v[:, np.argmin(np.abs(w - 1.0))]))
    return (pi / pi.sum()).reshape((vocab,) * order)


def _limits(transition: np.ndarray, pi: np.ndarray, vocab: int, order: int, length: int) -> tuple[float, float, float]:
    """(entropy floor, accuracy ceiling, unigram entropy), each the mean over the ``length`` predicted positions."""
    flat_pi = pi.reshape(-1)
    # joint laws of the first m tokens for m = 1..order+1 (the last from the context law and the transition)
    joints = [pi.sum(axis=tuple(range(m, order))) for m in range(1, order + 1)]
    joints.append((flat_pi[:, None] * transition).reshape((vocab,) * (order + 1)))
    ent, acc = [], []
    for t in range(length):  # predict token t+1 from tokens 0..t
        m = min(t + 1, order)  # the context that matters: the last m tokens
        joint = joints[m]  # law of (context of m tokens, next)
        ent.append(float(entr(joint).sum() - entr(joints[m - 1]).sum()))
        acc.append(float(joint.reshape(-1, vocab).max(axis=1).sum()))
    unigram = float(entr(joints[0]).sum())
    return float(np.mean(ent)), float(np.mean(acc)), unigram


def _sample(rng, transition, pi, vocab, order, n, length) -> np.ndarray:
    starts = rng.choice(vocab**order, size=n, p=pi.reshape(-1))
    tokens = np.zeros((n, length + 1 + order), dtype=np.int64)
    digits = np.array(list(itertools.product(range(vocab), repeat=order)))  # index -> tuple (base-V digits)
    tokens[:, :order] = digits[starts]
    ctx = starts
    for t in range(order, length + 1 + order):
        cum = np.cumsum(transition[ctx], axis=1)
        nxt = (rng.random(n)[:, None] > cum).sum(axis=1).clip(max=vocab - 1)
        tokens[:, t] = nxt
        ctx = (ctx * vocab + nxt) % vocab**order
    return tokens[:, order - 1 : order + length] if order > 1 else tokens[:, :length + 1]


def markov_sequences(*, vocab: int = 8, length: int = 8, order: int = 1, concentration: float = 0.3, n_train: int = 512,
                     n_test: int = 512, seed: int = 0) -> SequenceTask:
    """Sequences of a random order-``order`` Markov chain over ``vocab`` tokens (see the module docstring).

    With ``order > 1`` a sequence begins inside the stationary chain: its first tokens are the last of a sampled
    context, so position ``t`` sees ``min(t + 1, order)`` relevant tokens, as the floor assumes.
    """
    for name, v, low in (("vocab", vocab, 2), ("length", length, 1), ("order", order, 1), ("n_train", n_train, 1), ("n_test", n_test, 1)):
        if not isinstance(v, int) or v < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
    if not concentration > 0:
        raise ValueError(f"concentration (of the Dirichlet rows) must be > 0, got {concentration!r}")
    rng = np.random.default_rng(seed)
    transition = rng.dirichlet(np.full(vocab, concentration), size=vocab**order)
    pi = _stationary_tuples(transition, vocab, order)
    floor, ceiling, unigram = _limits(transition, pi, vocab, order, length)
    eye = np.eye(vocab)
    splits = []
    for n in (n_train, n_test):
        tok = _sample(rng, transition, pi, vocab, order, n, length)
        splits += [eye[tok[:, :-1]], eye[tok[:, 1:]]]
    return SequenceTask(*splits, transition=transition, order=order, entropy_floor=floor, accuracy_ceiling=ceiling, unigram_entropy=unigram)
