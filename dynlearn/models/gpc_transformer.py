r"""Generalised predictive coding on a one-block causal transformer (Pinchetti et al., NeurIPS 2022, their §5.3).

:class:`ChainGPC` is the generalised-PC energy of :mod:`dynlearn.models.gpc` on any chain of layer functions, not
only an MLP: node ``l`` holds the natural parameter :math:`x_l` of a law of family :math:`\mathcal F_l`, the layer
below predicts :math:`\mu_l = g_l(x_{l-1})` (``g_1`` reads the input), and

.. math::  F(x) = \sum_{l=1}^{L} D_l\big(m_l(x_l), \mu_l\big) \;+\; w\,R(x) \;[+\;\gamma\, D_L(y, x_L)],

with the divergences :math:`D_l` of the families (:func:`dynlearn.models.gpc.family`), a target-free term :math:`R`
of the loss on the free nodes (0 here; the VAE's prior, :mod:`dynlearn.models.gpc_vae`) weighted by
:math:`w = \gamma` (``"nudged"``) or 1 (``"clamped"``, :math:`m_L = y`). γ is ``data.nudge``.

:class:`TinyTransformer` is the network: token embedding plus positional embedding, one causal self-attention
sublayer with a residual (``heads`` heads), one GELU MLP sublayer with a residual, and a linear readout to logits
over the vocabulary (no layer norm: one block, small weights). :class:`TransformerGPC` puts value nodes at the
outputs of the two sublayers (Gaussian, σ = ``scale``) and at the logits (categorical):

.. math::  \mu_1 = h_0 + {\rm Attn}(h_0),\ h_0 = xE + P;\quad \mu_2 = x_1 + {\rm MLP}(x_1);\quad \mu_3 = x_2 W_o + b_o.

With unit variances and a weak nudge the update :math:`\partial F/\partial\theta/\gamma` tends to backprop's
cross-entropy gradient (``gpc_transformer_ce_limit``). :func:`adam_training` trains any such model (or backprop)
with Adam; :func:`train_transformer` runs the next-token experiment (``gpc_transformer_vs_bp``).
"""

from __future__ import annotations

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array

from ..config import TRAINING, RelaxConfig
from .base import Data, EnergyModel, equilibrium
from .gpc import layer_families

#: inference inside a training step: TRAINING with no error on a slow batch (the residual is recorded instead)
TRAIN_RELAX = TRAINING.replace(throw=False)
#: the transformer experiment's inference: a fixed budget of 20 Euler steps of 0.2 (within the stability bound; the
#: adaptive TRAINING relaxation gave a final test CE within 0.002 nats, at three times the cost)
TRANSFORMER_RELAX = RelaxConfig(solver="euler", dt0=0.2, t1=4.0, steady=False, throw=False)


#: the natural parameter of a family from its mean (the inverse of ``family.mean``), for the warm start
_NATURAL = {"gaussian": lambda m: m, "bernoulli": lambda m: jnp.log(m) - jnp.log1p(-m), "categorical": jnp.log}


class ChainGPC(EnergyModel):
    r"""Generalised PC on a chain of layer functions :meth:`predict` (see the module docstring).

    ``warm_start`` (nudged output of a Gaussian, Bernoulli or categorical family): the relaxation starts with the
    output at the mean :math:`(m(\mu_L) + \gamma y)/(1 + \gamma)`, the nudged output's equilibrium to first order in
    γ given its prediction (exact for a Gaussian), and the other nodes at the feedforward pass. The equilibrium is the
    same; the start spares the slow relaxation of a saturated output (a Bernoulli or softmax logit moves at the rate
    of its variance :math:`s(1-s)`, ~1e-3 for a confidently wrong pixel), which a fixed inference budget cannot afford.
    """

    network: eqx.Module
    families: tuple = eqx.field(static=True)
    output: str = eqx.field(static=True, default="nudged")
    warm_start: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        if self.output not in ("nudged", "clamped"):
            raise ValueError(f"output must be 'nudged' or 'clamped', got {self.output!r}")

    @abc.abstractmethod
    def predict(self, l: int, below: Array) -> Array:
        """:math:`\\mu_l = g_l(x_{l-1})` for ``l = 1..L`` (``below`` is the input for ``l = 1``)."""

    def prior(self, state) -> Array:
        """A target-free loss term on the free nodes, :math:`R(x)` (none by default)."""
        return jnp.zeros(())

    @property
    def depth(self) -> int:
        return len(self.families)

    def validate(self, data: Data) -> None:
        if data.y is None:
            raise ValueError(f"{self.name}: a target is needed (output {self.output!r})")

    def feedforward(self, x: Array) -> list[Array]:
        """``[x_1, ..., x_L]`` of the feedforward pass (every divergence zero)."""
        out, h = [], x
        for l in range(1, self.depth + 1):
            h = self.predict(l, h)
            out.append(h)
        return out

    def init_state(self, data: Data) -> tuple[Array, ...]:
        """The feedforward pass (every divergence zero), with the warm-started output (see the class docstring)."""
        xs = self.feedforward(data.inputs())
        if self.output == "clamped":
            return tuple(xs[:-1])
        fam = self.families[-1]
        if self.warm_start and fam.name in _NATURAL:
            xs[-1] = _NATURAL[fam.name]((fam.mean(xs[-1]) + data.nudge * data.y) / (1.0 + data.nudge))
        return tuple(xs)

    def divergences(self, state, data: Data) -> list[Array]:
        """:math:`D_l(m_l, \\mu_l)` per layer; a clamped output has :math:`m_L = y`."""
        xs = [data.inputs(), *state]
        out = []
        for l, fam in enumerate(self.families, start=1):
            mu = self.predict(l, xs[l - 1])
            m = data.y if (l == self.depth and self.output == "clamped") else fam.mean(xs[l])
            out.append(fam.divergence(m, mu))
        return out

    def energy(self, state, data: Data):
        """:math:`F` of the module docstring, summed over the batch."""
        nudged = self.output == "nudged"
        e = sum(self.divergences(state, data)) + (data.nudge if nudged else 1.0) * self.prior(state)
        if nudged:
            e = e + data.nudge * self.families[-1].divergence(data.y, state[-1])
        return e


class TinyTransformer(eqx.Module):
    """One causal transformer block on one-hot tokens ``(..., T, V)`` -> logits ``(..., T, V)``."""

    embed: Array
    pos: Array
    wq: Array
    wk: Array
    wv: Array
    wo: Array
    w1: Array
    b1: Array
    w2: Array
    b2: Array
    wout: Array
    bout: Array

    @property
    def heads(self) -> int:
        return self.wq.shape[0]

    def embedding(self, x: Array) -> Array:
        """:math:`h_0 = xE + P`."""
        return x @ self.embed + self.pos[: x.shape[-2]]

    def attention_block(self, h: Array) -> Array:
        """:math:`h + \\sum_k {\\rm softmax}(Q_k K_k^\\top/\\sqrt{d_k} + {\\rm causal\\ mask}) V_k W_{o,k}`."""
        q, k, v = (jnp.einsum("...td,hde->...hte", h, w) for w in (self.wq, self.wk, self.wv))
        t = h.shape[-2]
        scores = jnp.einsum("...hte,...hse->...hts", q, k) / math.sqrt(q.shape[-1])
        scores = jnp.where(jnp.tril(jnp.ones((t, t), bool)), scores, -jnp.inf)
        att = jnp.einsum("...hts,...hse->...hte", jax.nn.softmax(scores, axis=-1), v)
        return h + jnp.einsum("...hte,hed->...td", att, self.wo)

    def mlp_block(self, h: Array) -> Array:
        """:math:`h + {\\rm gelu}(hW_1 + b_1)W_2 + b_2`."""
        return h + jax.nn.gelu(h @ self.w1 + self.b1) @ self.w2 + self.b2

    def readout(self, h: Array) -> Array:
        return h @ self.wout + self.bout

    def __call__(self, x: Array) -> Array:
        return self.readout(self.mlp_block(self.attention_block(self.embedding(x))))

    def groups(self) -> dict[str, tuple[Array, ...]]:
        """The parameters by sublayer (what a check compares per group)."""
        return {"embedding": (self.embed, self.pos), "attention": (self.wq, self.wk, self.wv, self.wo),
                "mlp": (self.w1, self.b1, self.w2, self.b2), "readout": (self.wout, self.bout)}


def key_rng(key) -> np.random.Generator:
    """A numpy generator seeded by a JAX key (weights drawn in numpy: no sampler to compile per weight shape)."""
    return np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())


def init_transformer(vocab: int, length: int, *, width: int = 16, mlp: int = 32, heads: int = 1, key, dtype=jnp.float32) -> TinyTransformer:
    """Gaussian weights of variance 1/fan-in (token embeddings of unit variance; the sublayers' output weights halved)."""
    if width % heads:
        raise ValueError(f"width ({width}) must be a multiple of heads ({heads})")
    rng, dh = key_rng(key), width // heads

    def n(shape, fan, gain=1.0):
        return jnp.asarray(gain * rng.standard_normal(shape) / math.sqrt(fan), dtype)

    return TinyTransformer(
        embed=n((vocab, width), 1.0), pos=n((length, width), width), wq=n((heads, width, dh), width), wk=n((heads, width, dh), width),
        wv=n((heads, width, dh), width), wo=n((heads, dh, width), width, 0.5), w1=n((width, mlp), width), b1=jnp.zeros(mlp, dtype),
        w2=n((mlp, width), mlp, 0.5), b2=jnp.zeros(width, dtype), wout=n((width, vocab), width), bout=jnp.zeros(vocab, dtype))


class TransformerGPC(ChainGPC):
    """Generalised PC on :class:`TinyTransformer`: nodes after attention, after the MLP, and the logits."""

    def predict(self, l: int, below: Array) -> Array:
        net = self.network
        return (lambda x: net.attention_block(net.embedding(x)), net.mlp_block, net.readout)[l - 1](below)

    @property
    def name(self) -> str:
        return f"TransformerGPC(output={self.output!r}, families={[f.name for f in self.families]})"


def transformer_gpc(params: TinyTransformer, *, output: str = "nudged", hidden_family: str = "gaussian",
                    output_family: str = "categorical", scale: float = 1.0) -> TransformerGPC:
    """:class:`TransformerGPC` with ``hidden_family`` at the two sublayer nodes and ``output_family`` at the logits."""
    return TransformerGPC(params, layer_families(3, hidden_family, output_family, scale=scale), output)


def gpc_gradient(model: ChainGPC, data: Data, config: RelaxConfig = TRAIN_RELAX):
    """:math:`\\partial F/\\partial\\theta` at the equilibrium of ``model`` given ``data`` (descent sign), and the residual."""
    eq = equilibrium(model, data, config)
    return model.parameter_gradient(eq.state, data), eq.residual


def adam_training(params, grad_fn, evaluate, train: tuple, test: tuple, *, epochs: int, batch: int, lr: float, seed: int):
    """Adam on ``grad_fn(params, xb, yb, key) -> (grads, residual)`` over shuffled mini-batches of ``train = (x, y)``;
    ``evaluate(params, *test) -> dict`` after every epoch (epoch 0: before training). Returns ``(params, {metric:
    (epochs + 1,) array}, residuals)``; one epoch is one compiled ``lax.scan`` (data are arguments, not constants)."""
    x, y = train
    opt = optax.adam(lr)
    n_batches = x.shape[0] // batch
    if not 1 <= batch <= x.shape[0]:
        raise ValueError(f"batch must be in 1..{x.shape[0]} (the number of training samples), got {batch}")

    @eqx.filter_jit
    def epoch(params, opt_state, key, x, y):
        order = jax.random.permutation(key, x.shape[0])[: n_batches * batch].reshape(n_batches, batch)

        def step(carry, idx_k):
            p, s = carry
            idx, k = idx_k
            g, res = grad_fn(p, x[idx], y[idx], k)
            upd, s = opt.update(g, s, p)
            return (eqx.apply_updates(p, upd), s), res

        keys = jax.random.split(jax.random.fold_in(key, 1), n_batches)
        (params, opt_state), res = jax.lax.scan(step, (params, opt_state), (order, keys))
        return params, opt_state, jnp.max(res)

    evaluate = eqx.filter_jit(evaluate)
    opt_state = opt.init(params)
    history, residuals = [evaluate(params, *test)], []
    for e in range(epochs):
        params, opt_state, res = epoch(params, opt_state, jax.random.fold_in(jax.random.key(seed), e), x, y)
        history.append(evaluate(params, *test))
        residuals.append(float(res))
    return params, {k: np.asarray([float(h[k]) for h in history]) for k in history[0]}, np.asarray(residuals)


def next_token_metrics(params: TinyTransformer, x: Array, y: Array) -> dict[str, Array]:
    """Mean cross-entropy per token (nats) and next-token accuracy of the feedforward transformer."""
    logits = params(x)
    ce = -jnp.mean(jnp.sum(y * jax.nn.log_softmax(logits, axis=-1), axis=-1))
    acc = jnp.mean(jnp.argmax(logits, -1) == jnp.argmax(y, -1))
    return {"test_ce": ce, "test_accuracy": acc}


def train_transformer(task, *, method: str, epochs: int, batch: int = 32, lr: float = 3e-3, width: int = 16, mlp: int = 32,
                      heads: int = 1, nudge: float = 0.1, output: str = "nudged", output_family: str = "categorical",
                      config: RelaxConfig = TRANSFORMER_RELAX, seed: int = 0, dtype=jnp.float64):
    """Train :class:`TinyTransformer` on a :class:`dynlearn.experiments.gpc_sequences.SequenceTask` by ``method``
    ``"gpc"`` (:func:`gpc_gradient` of :func:`transformer_gpc`, divided by γ·batch) or ``"bp"`` (autodiff of the mean
    cross-entropy); same initialisation and batches. Returns ``(params, history, residuals)`` (test CE/accuracy per epoch)."""
    if method not in ("gpc", "bp"):
        raise ValueError(f"method must be 'gpc' or 'bp', got {method!r}")
    x, y = jnp.asarray(task.x_train, dtype), jnp.asarray(task.y_train, dtype)
    xt, yt = jnp.asarray(task.x_test, dtype), jnp.asarray(task.y_test, dtype)
    params = init_transformer(task.vocab, task.length, width=width, mlp=mlp, heads=heads, key=jax.random.key(seed), dtype=dtype)
    weight = nudge if output == "nudged" else 1.0

    def grad_fn(p, xb, yb, key):
        if method == "bp":
            return eqx.filter_grad(lambda q: next_token_metrics(q, xb, yb)["test_ce"])(p), jnp.zeros((), dtype)
        model = transformer_gpc(p, output=output, output_family=output_family)
        g, res = gpc_gradient(model, Data(xb, yb, jnp.asarray(nudge, dtype)), config)
        scale = 1.0 / (weight * xb.shape[0] * xb.shape[1])
        return jax.tree.map(lambda a: a * scale, g), res

    return adam_training(params, grad_fn, next_token_metrics, (x, y), (xt, yt), epochs=epochs, batch=batch, lr=lr, seed=seed)
