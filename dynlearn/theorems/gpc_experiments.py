r"""Theorem checks for generalised PC beyond MLPs: a one-block transformer and a VAE (Pinchetti et al., NeurIPS 2022).

* ``gpc_transformer_ce_limit`` — :class:`dynlearn.models.gpc_transformer.TransformerGPC` (Gaussian nodes of unit
  variance after attention and MLP, a categorical output nudged by γ): ``∂F/∂θ / γ`` tends to backprop's cross-entropy
  gradient with error :math:`O(\gamma)`, in every parameter group.
* ``gpc_vae_elbo_limit`` — :class:`dynlearn.models.gpc_vae.VAEGPC` (Gaussian nodes, a Bernoulli output nudged toward
  the image, the prior term on the latent node): ``∂F/∂θ / γ`` tends to the gradient of the negative ELBO with the
  reparametrisation trick at the same noise.
* ``gpc_transformer_vs_bp`` / ``gpc_vae_vs_bp`` — the paper's experimental claim at small scale: trained by gPC, the
  same network reaches a held-out loss comparable to backprop's (next-token cross-entropy on a Markov chain with a known
  entropy floor; reconstruction BCE per pixel on held-out digits).

See ``theory/gpc_transformer.md`` and ``theory/gpc_vae.md``.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ..analysis import loglog_slope
from ..analysis.gradients import cosine_similarity, relative_error
from ..config import THEOREM_STRICT
from ..data import load
from ..experiments.gpc_sequences import markov_sequences
from ..models.base import Data, equilibrium
from ..models.gpc_transformer import (
    TRANSFORMER_RELAX,
    init_transformer,
    next_token_metrics,
    train_transformer,
    transformer_gpc,
)
from ..models.gpc_vae import (
    VAE_RELAX,
    VAEGPC,
    init_vae,
    negative_elbo,
    train_vae,
    vae_gpc,
)
from .criteria import at_least, at_most, below, reported, within
from .registry import Verdict, register_check
from .. import draws

#: the nudges of the quick limit sweeps (the full runs use seven)
GAMMAS = (1e-4, 1e-3, 1e-2, 1e-1)
#: the limit relaxations: THEOREM_STRICT (max|dx/dt| <= 1e-11, no Newton polish: the softmax's shift direction is
#: flat) with fixed Euler steps (cheaper to compile than Tsit5) inside the stability bound 2/curvature: 0.3 for the
#: transformer problem, 0.1 for the VAE (largest curvature ~14, its latent node)
LIMIT_RELAX = THEOREM_STRICT.replace(solver="euler", dt0=0.1, throw=False)
@eqx.filter_jit
def _limit_update(model, x, y, nudge, dt0):
    """``(∂F/∂θ / γ, residual)`` at the nudged equilibrium of ``model`` (:data:`LIMIT_RELAX` with Euler steps ``dt0``)."""
    data = Data(x, y, nudge)
    eq = equilibrium(model, data, LIMIT_RELAX.replace(dt0=dt0))
    return jax.tree.map(lambda g: g / nudge, model.parameter_gradient(eq.state, data)), eq.residual


@eqx.filter_jit
def _compare(groups: dict, reference: dict):
    """Cosine and relative error per group (one compiled call: op-by-op dispatch of many small reductions is slow)."""
    return (jnp.stack([cosine_similarity(groups[k], reference[k]) for k in reference]),
            jnp.stack([relative_error(groups[k], reference[k]) for k in reference]))


def nudge_sweep(update_at, reference: dict, gammas, *, cos_min: float, slope_tol: float, residual_tol: float):
    """``update_at(γ) -> (groups dict, residual)`` against ``reference`` (the same groups) for each γ: the cosine and
    relative error per group, the worst group's log-log slope of the error (1 for an O(γ) bias), the residuals."""
    names = list(reference)
    cos, rel, res = [], [], []
    for g in gammas:
        groups, r = update_at(g)
        c, e = _compare(groups, reference)
        cos.append(np.asarray(c))
        rel.append(np.asarray(e))
        res.append(float(r))
    cos, rel, gammas = np.asarray(cos), np.asarray(rel), np.asarray(gammas, float)
    try:
        slopes = np.array([loglog_slope(gammas, rel[:, i]) for i in range(len(names))])
    except ValueError:
        slopes = np.full(len(names), np.nan)
    ds = xr.Dataset({"cosine": (("gamma", "group"), cos), "relative_error": (("gamma", "group"), rel),
                     "residual": ("gamma", np.asarray(res)), "slope": ("group", slopes)},
                    coords={"gamma": gammas, "group": names})
    verdict = Verdict.from_criteria(
        min_cosine_at_smallest_gamma=at_least(cos[np.argmin(gammas)].min(), cos_min),
        worst_slope=within(slopes[np.argmax(np.abs(slopes - 1))], 1.0, slope_tol),
        max_residual=at_most(max(res), residual_tol),
    )
    return ds, verdict


def _tokens(key, batch, length, vocab):
    return jax.nn.one_hot(jax.random.randint(key, (batch, length), 0, vocab), vocab, dtype=jnp.float64)


@register_check(
    "gpc_transformer_ce_limit",
    family="gpc",
    statement="gPC on a one-block causal transformer (unit-variance Gaussian nodes, categorical output nudged by gamma): update/gamma tends to BP's cross-entropy gradient in every parameter group, error O(gamma)",
    theory="theory/gpc_transformer.md",
    quick={},
    full={"gammas": tuple(np.logspace(-4, -1, 7)), "seed": 1},
)
def gpc_transformer_ce_limit(*, vocab=5, length=4, width=6, mlp=8, heads=2, batch=3, seed=0, gammas=GAMMAS, output_family="categorical",
                             readout_scale=0.3, dt0=0.3, cos_min=0.9999, slope_tol=0.15, residual_tol=1e-10):
    """A random transformer (readout weights scaled by ``readout_scale``: output probabilities >= ~0.05, so the softmax's
    curvature, the slowest relaxation rate, stays away from 0), random one-hot tokens and targets; per γ the nudged
    equilibrium (Euler steps ``dt0``) and ``∂F/∂θ / γ`` against ``d/dθ Σ CE(y, transformer(x))`` by autodiff, per
    parameter group; ``output_family="gaussian"`` is the must-fail twin (it tends to the squared-error gradient)."""
    k_net, k_x, k_y = jax.random.split(jax.random.key(seed), 3)
    net = init_transformer(vocab, length, width=width, mlp=mlp, heads=heads, key=k_net, dtype=jnp.float64)
    net = eqx.tree_at(lambda p: p.wout, net, net.wout * readout_scale)
    x, y = _tokens(k_x, batch, length, vocab), _tokens(k_y, batch, length, vocab)
    reference = eqx.filter_jit(eqx.filter_grad(lambda p, x, y: next_token_metrics(p, x, y)["test_ce"] * batch * length))(net, x, y).groups()
    model = transformer_gpc(net, output_family=output_family)

    def update_at(g):
        update, res = _limit_update(model, x, y, jnp.asarray(g), dt0)
        return update.groups(), res

    return nudge_sweep(update_at, reference, gammas, cos_min=cos_min, slope_tol=slope_tol, residual_tol=residual_tol)


@register_check(
    "gpc_vae_elbo_limit",
    family="gpc",
    statement="gPC on a VAE (Gaussian nodes, latent prior term, Bernoulli output nudged toward the image by gamma): update/gamma tends to BP's reparametrised negative-ELBO gradient at the same noise, error O(gamma)",
    theory="theory/gpc_vae.md",
    quick={},
    full={"gammas": tuple(np.logspace(-4, -1, 7)), "seed": 1},
)
def gpc_vae_elbo_limit(*, n_in=8, hidden=6, latent=2, batch=3, seed=0, gammas=GAMMAS, output_family="bernoulli", prior=True, dt0=0.1,
                       cos_min=0.9999, slope_tol=0.15, residual_tol=1e-10):
    """A random VAE, images uniform in [0, 1], one noise draw ε; per γ the nudged equilibrium (Euler steps ``dt0``) and ``∂F/∂θ / γ``
    against autodiff of :func:`dynlearn.models.gpc_vae.negative_elbo` at ε, per layer (weights and bias).
    ``prior=False`` drops the prior term from the energy (a must-fail twin)."""
    k_net, k_x, k_e = jax.random.split(jax.random.key(seed), 3)
    net = init_vae(n_in, hidden, latent, key=k_net, dtype=jnp.float64)
    x = draws.uniform(k_x, (batch, n_in), jnp.float64)
    eps = draws.normal(k_e, (batch, latent), jnp.float64)
    grads = eqx.filter_jit(eqx.filter_grad(negative_elbo))(net, x, eps)
    reference = {f"layer {l + 1}": (grads.w[l], grads.b[l]) for l in range(4)}
    model = vae_gpc(net, eps, output_family=output_family)
    if not prior:
        model = _NoPrior(model.network, model.families, model.output, model.warm_start, model.eps)

    def update_at(g):
        update, res = _limit_update(model, x, x, jnp.asarray(g), dt0)
        return {f"layer {l + 1}": (update.w[l], update.b[l]) for l in range(4)}, res

    return nudge_sweep(update_at, reference, gammas, cos_min=cos_min, slope_tol=slope_tol, residual_tol=residual_tol)


class _NoPrior(VAEGPC):
    """The VAE energy without the prior term (a broken variant for the must-fail twin)."""

    def prior(self, state):
        return jnp.zeros(())


def _final(history, key):
    return float(history[key][-1])


@register_check(
    "gpc_transformer_vs_bp",
    family="gpc",
    statement="a one-block transformer trained by gPC (nudged, Adam) reaches a held-out next-token cross-entropy within 0.05 nats of the same network trained by BP, on a Markov chain with a known entropy floor",
    theory="theory/gpc_transformer.md",
    quick={},
    full={"n_train": 2048, "n_test": 2048, "epochs": 30},
)
def gpc_transformer_vs_bp(*, vocab=8, length=8, order=1, n_train=384, n_test=512, epochs=6, batch=32, lr=3e-3, width=16, mlp=32,
                          heads=1, nudge=0.1, output_family="categorical", seed=0, gap_tol=0.05):
    """Both methods from the same initialisation and batches (:func:`dynlearn.models.gpc_transformer.train_transformer`;
    gPC's inference :data:`TRANSFORMER_RELAX`); test cross-entropy and accuracy per epoch, the exact entropy floor,
    accuracy ceiling and context-free (unigram) entropy of the chain."""
    task = markov_sequences(vocab=vocab, length=length, order=order, n_train=n_train, n_test=n_test, seed=seed)
    runs = {m: train_transformer(task, method=m, epochs=epochs, batch=batch, lr=lr, width=width, mlp=mlp, heads=heads, nudge=nudge,
                                 output_family=output_family, config=TRANSFORMER_RELAX, seed=seed) for m in ("gpc", "bp")}
    ds = xr.Dataset({k: (("trained_by", "epoch"), np.stack([runs[m][1][k] for m in runs])) for k in ("test_ce", "test_accuracy")},
                    coords={"trained_by": list(runs), "epoch": np.arange(epochs + 1)})
    ds["inference_residual"] = ("epoch_trained", runs["gpc"][2])
    ds.attrs.update(entropy_floor=task.entropy_floor, accuracy_ceiling=task.accuracy_ceiling, unigram_entropy=task.unigram_entropy)
    ce = {m: _final(runs[m][1], "test_ce") for m in runs}
    verdict = Verdict.from_criteria(
        ce_gap_gpc_minus_bp=at_most(ce["gpc"] - ce["bp"], gap_tol),
        gpc_ce_below_unigram=below(ce["gpc"], task.unigram_entropy),
        gpc_ce=reported(ce["gpc"]), bp_ce=reported(ce["bp"]), entropy_floor=reported(task.entropy_floor),
        gpc_accuracy=reported(_final(runs["gpc"][1], "test_accuracy")), bp_accuracy=reported(_final(runs["bp"][1], "test_accuracy")),
        accuracy_ceiling=reported(task.accuracy_ceiling),
    )
    return ds, verdict


def mean_image_bce(x_train, x_test) -> float:
    """Held-out BCE per pixel of the best decoder that ignores its latent: constant logits at the training pixels'
    mean (their maximum-likelihood value), numpy only."""
    p = np.clip(np.asarray(x_train, np.float64).mean(0), 1e-12, 1 - 1e-12)
    xt = np.asarray(x_test, np.float64)
    return float(-np.mean(xt * np.log(p) + (1 - xt) * np.log1p(-p)))


@register_check(
    "gpc_vae_vs_bp",
    family="gpc",
    statement="a VAE on digits trained by gPC (nudged Bernoulli output, Adam) uses its latent as backprop's does: its held-out BCE per pixel falls below the mean image's by at least 3/4 of BP's fall",
    theory="theory/gpc_vae.md",
    quick={},
    full={"epochs": 40, "lr": 3e-3},
)
def gpc_vae_vs_bp(*, n_train=None, n_test=256, epochs=2, batch=32, lr=1e-2, hidden=32, latent=4, nudge=0.1, output_family="bernoulli", seed=0,
                  inference_time=20.0, gain_min=0.75, bp_fall_min=0.01):
    """Both methods from the same initialisation, batches and noise (:func:`dynlearn.models.gpc_vae.train_vae`; gPC's
    inference :data:`VAE_RELAX`) on the first ``n_train`` training digits (None: all 1437); the held-out BCE per pixel
    per epoch, and the reconstructions of eight held-out digits. The baseline is the mean image
    (:func:`mean_image_bce`), the best any decoder can do without its latent. ``inference_time``: the end time of
    gPC's fixed-step inference (2 is the must-fail twin: the output logits stay unrelaxed and training stalls at the
    mean image). ``bp_fall_min`` (nats per pixel): BP must beat the mean image by this much, or the ratio compares
    two numbers at the noise (BP's fall is 0.041 in the quick run and 0.099 in the full one)."""
    d = load("digits")
    x, xt = d.x_train[:n_train], d.x_test[:n_test]
    runs = {m: train_vae(x, xt, method=m, epochs=epochs, batch=batch, lr=lr, hidden=hidden, latent=latent, nudge=nudge,
                         output_family=output_family, config=VAE_RELAX.replace(t1=inference_time), seed=seed) for m in ("gpc", "bp")}
    shown = jnp.asarray(xt[:8])
    baseline = mean_image_bce(x, xt)
    ds = xr.Dataset({"test_bce": (("trained_by", "epoch"), np.stack([runs[m][1]["test_bce"] for m in runs])),
                     "original": (("sample", "pixel"), np.asarray(shown)),
                     "reconstruction": (("trained_by", "sample", "pixel"), np.stack([np.asarray(runs[m][0].reconstruct(shown)) for m in runs])),
                     "inference_residual": ("epoch_trained", runs["gpc"][2])},
                    coords={"trained_by": list(runs), "epoch": np.arange(epochs + 1)}, attrs={"mean_image_bce": baseline})
    bce = {m: float(runs[m][1]["test_bce"][-1]) for m in runs}
    bp_fall = baseline - bce["bp"]  # the ratio means something only when BP itself beats the mean image
    verdict = Verdict.from_criteria(
        bp_fall_below_mean_image=at_least(bp_fall, bp_fall_min),
        gain_over_mean_image_gpc_over_bp=at_least((baseline - bce["gpc"]) / bp_fall if bp_fall > 0 else float("nan"), gain_min),
        bce_ratio_gpc_over_bp=reported(bce["gpc"] / bce["bp"]),
        gpc_bce=reported(bce["gpc"]), bp_bce=reported(bce["bp"]), mean_image_bce=reported(baseline),
        untrained_bce=reported(float(runs["bp"][1]["test_bce"][0])),
    )
    return ds, verdict
