r"""Surrogate-gradient BPTT on the spiking network of :mod:`.recurrent`: the baseline of every spiking rule.

:math:`\partial E/\partial\theta` by reverse-mode differentiation of the whole ``lax.scan`` over ``T`` steps, the
spike's derivative replaced by its surrogate (Neftci, Mostafa & Zenke, IEEE Signal Process. Mag. 36, 2019;
Bellec et al. 2018). Exact for the surrogate model, but it stores the states of all ``T`` steps for the backward
pass, so its memory grows linearly with ``T`` (the ``stllr_memory`` check measures it).

:func:`spiking_parts` turns the options every spiking learner shares into the network configuration, the
parameter builder and the predictor.
"""

from __future__ import annotations

from ...models.base import Data
from ...rules.base import LEARNERS, Learner, Rule
from .recurrent import (
    SNNConfig,
    SpikingNet,
    bptt_gradient,
    init_spiking_net,
    make_neuron,
    predict,
    rate_metrics,
)


def spiking_parts(
    *, n_steps: int = 20, coding: str = "rate", rate_max: float = 0.5, neuron: str = "lif", tau_mem: float = 20.0, tau_syn: float = 0.0,
    tau_out: float = 20.0, v_th: float = 1.0, surrogate_width: float = 0.5, tau_adapt: float = 200.0, beta_adapt: float = 1.8,
    n_loss: int | None = None, loss: str = "ce", init_gain: float = 1.0, dt: float = 1.0, recurrent: bool = False,
):
    """``(cfg, init, predict, defaults)`` of a spiking learner.

    Options: ``n_steps`` T, ``coding`` (rate/regular/latency) and ``rate_max`` of the input code, ``neuron``
    (lif/alif) with ``tau_mem``, ``tau_syn`` (0: no synaptic filter), ``v_th``, ``surrogate_width``,
    ``tau_adapt``, ``beta_adapt``; ``tau_out`` the readout leak; ``n_loss`` the last steps the loss averages over
    (all by default); ``loss`` ce/mse; ``init_gain`` scales the MLP's initial weights; ``recurrent`` adds
    recurrent weights to every hidden layer.
    """
    for name, v in (("n_steps", n_steps),) + ((("n_loss", n_loss),) if n_loss is not None else ()):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    for name, v in (("rate_max", rate_max), ("tau_mem", tau_mem), ("tau_out", tau_out), ("v_th", v_th), ("surrogate_width", surrogate_width), ("tau_adapt", tau_adapt)):
        if not (isinstance(v, (int, float)) and v > 0):
            raise ValueError(f"{name} must be a number > 0, got {v!r}")
    if not (isinstance(tau_syn, (int, float)) and tau_syn >= 0):
        raise ValueError(f"tau_syn must be a number >= 0, got {tau_syn!r}")
    nrn = make_neuron(neuron, tau_mem=float(tau_mem), tau_syn=float(tau_syn), v_th=float(v_th), tau_adapt=float(tau_adapt),
                      beta_adapt=float(beta_adapt), surrogate_width=float(surrogate_width))
    cfg = SNNConfig(nrn, n_steps=n_steps, dt=float(dt), tau_out=float(tau_out), coding=coding, rate_max=float(rate_max), loss=loss, n_loss=n_loss)

    def init(key, network) -> SpikingNet:
        return init_spiking_net(network, key=key, recurrent=recurrent, init_gain=init_gain)

    def predict_fn(params: SpikingNet, x):
        return predict(params, cfg, x)

    defaults = {"lr": 3e-3, "activation": "tanh", "n_steps": n_steps, "coding": coding, "neuron": neuron, "loss": loss}
    return cfg, init, predict_fn, defaults


class BPTT(Rule):
    """Surrogate-gradient BPTT through the scan (module docstring)."""

    cfg: SNNConfig

    def update(self, params: SpikingNet, rule_state, batch: Data, key):
        grads, loss, rates = bptt_gradient(params, self.cfg, batch.x, batch.y, key)
        return grads, rule_state, {"loss": loss / batch.x.shape[-2], **rate_metrics(rates)}


@LEARNERS.register("snn/bptt")
def bptt_learner(*, recurrent: bool = False, **options) -> Learner:
    """Surrogate-gradient BPTT on the coded-input spiking network (options of :func:`spiking_parts`)."""
    cfg, init, predict_fn, defaults = spiking_parts(recurrent=recurrent, **options)
    return Learner(
        name="snn/bptt",
        rule=BPTT(cfg),
        init=init,
        predict=predict_fn,
        description="surrogate-gradient BPTT through a LIF/ALIF spiking network with coded input (the spiking baseline)",
        defaults={**defaults, "recurrent": recurrent},
    )


__all__ = ["BPTT", "bptt_learner", "spiking_parts"]
