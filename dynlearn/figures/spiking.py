"""Figures for spiking networks: a small LIF network's raster and membrane traces with exact (event-driven) against
fixed-step spike times, and the IDE rate equilibrium."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from matplotlib.ticker import NullLocator

from ..models.spiking.events import event_spike_times, fixed_step_raster
from ..models.spiking.ide import fixed_point, simulate
from ..models.spiking.neurons import LIF
from ..theorems import run_check
from ..theorems.spiking import _coupled_network, _ide_problem
from . import register_figure
from ._plot import new_figure, slope_guide, verdict_title


@register_figure("lif_event_vs_fixed_step", "Raster and membrane traces of a 4-neuron LIF network; fixed-step spike times converge to the event-driven ones at O(dt)")
def fig_lif_event_vs_fixed_step(quick: bool = True, seed: int = 0):
    r = run_check("lif_event_vs_fixed_step", quick=quick)
    with jax.enable_x64(True):
        return _lif_figure(r, seed)


def _lif_figure(r, seed):
    cfg = {"n": 4, "t_end": 100.0, "max_spikes": 24, "tau_syn": 5.0, "coupling": 0.1, "dt_trace": 0.04}
    neuron = LIF(tau_syn=cfg["tau_syn"])
    w, drive = _coupled_network(cfg["n"], seed, cfg["coupling"])
    te, who = (np.asarray(a) for a in event_spike_times(neuron, drive, w, t_end=cfg["t_end"], max_spikes=cfg["max_spikes"]))
    n_steps = round(cfg["t_end"] / cfg["dt_trace"])
    spikes, volts = (np.asarray(a) for a in fixed_step_raster(neuron, drive, w, cfg["dt_trace"], n_steps))
    t_grid = cfg["dt_trace"] * np.arange(1, n_steps + 1)
    fig, (a, b, c) = new_figure(3, width=4.0, height=3.4)
    for j in range(cfg["n"]):
        a.plot(t_grid, volts[:, j] + 1.5 * j, lw=0.8, color=f"C{j}")
        a.axhline(1.0 + 1.5 * j, color="0.6", lw=0.5, ls=":")
        k = np.nonzero(spikes[:, j])[0]
        b.plot(t_grid[k], np.full(k.size, j + 0.15), "|", ms=9, color=f"C{j}")
        b.plot(te[who == j], np.full(int(np.sum(who == j)), j - 0.15), "|", ms=9, color="k")
    a.set(xlabel="t (ms)", ylabel=r"membrane $v_j$ (offset 1.5 per neuron; dotted: $v_\mathrm{th}$)")
    verdict_title(a, f"membrane traces, fixed step dt = {cfg['dt_trace']:g} ms", None)
    b.plot([], [], "|", color="k", label="event-driven (exact)")
    b.plot([], [], "|", color="C0", label=f"fixed step dt = {cfg['dt_trace']:g}")
    b.set(xlabel="t (ms)", ylabel="neuron", yticks=range(cfg["n"]))
    b.legend(fontsize=7, loc="upper right")
    verdict_title(b, "raster: exact spike times vs fixed step", None)
    ds = r.data
    dts = np.asarray(ds.dt)
    for s in ds.seed.values:
        c.loglog(dts, ds.mean_abs_error.sel(seed=s), "o-", ms=3, label=f"network {s} (slope {float(ds.slope.sel(seed=s)):.2f})")
    slope_guide(c, dts, float(ds.mean_abs_error.values[0, 0]) * 0.5, 1.0, label="slope 1 (pass: 1 ± 0.15)")
    c.set(xlabel=r"step $dt$ (ms)", ylabel=r"mean $|t_\mathrm{fixed} - t_\mathrm{event}|$ (ms)")
    c.xaxis.set_minor_locator(NullLocator())
    c.set_xticks(dts, [f"{d:g}" for d in dts])
    c.legend(fontsize=7)
    m = r.verdict.measured
    verdict_title(c, f"fixed-step spike times → exact at O(dt)\nclosed-form error of event times {m['closed_form_error']:.1e} ≤ 1e-9", r.passed)
    out = xr.Dataset(
        {
            "voltage": (("time", "neuron"), volts),
            "fixed_step_spikes": (("time", "neuron"), spikes),
            "event_time": ("spike", te),
            "event_neuron": ("spike", who),
            "mean_abs_error": ds.mean_abs_error,
        },
        coords={"time": t_grid, "neuron": np.arange(cfg["n"])},
    )
    return fig, out, {"check": "lif_event_vs_fixed_step", "seed": seed, **cfg}


@register_figure("ide_rate_equilibrium", "IDE: the time-averaged firing rates of a feedback IF network converge to a* = clamp(W a* + F x + b) at O(1/T)")
def fig_ide_rate_equilibrium(quick: bool = True, seed: int = 0):
    r = run_check("ide_rate_equilibrium", quick=quick)
    with jax.enable_x64(True):
        return _ide_figure(r, seed)


def _ide_figure(r, seed):
    ds = r.data
    horizons = np.asarray(ds.horizon)
    n_steps = 2 * int(horizons.max())
    params, x, _ = _ide_problem(seed, (8, 16))
    a_star = np.asarray(fixed_point(params, x).value[-1])[0]
    spikes = np.asarray(simulate(params, jnp.asarray(np.broadcast_to(np.asarray(x), (n_steps, *x.shape))))[-1])[:, 0]
    rates = np.cumsum(spikes, axis=0) / np.arange(1, n_steps + 1)[:, None]
    fig, (a, b) = new_figure(2, width=4.4)
    t = np.arange(1, n_steps + 1)
    show = np.argsort(np.abs(a_star - 0.5))[:4]  # neurons with rates inside (0, 1)
    for i, j in enumerate(show):
        a.semilogx(t, rates[:, j], lw=0.9, color=f"C{i}", label=f"neuron {j}: $a^*$ = {a_star[j]:.3f}")
        a.axhline(a_star[j], color=f"C{i}", ls="--", lw=0.8)
    a.set(xlabel="time steps t", ylabel=r"running rate $a[t] = \frac{1}{t}\sum_{\tau \leq t} s[\tau]$")
    a.legend(fontsize=7)
    verdict_title(a, r"rates converge to $a^* = \sigma(W a^* + F x + b)$ (dashed)", None)
    for s in ds.seed.values:
        b.loglog(horizons, ds.rate_error.sel(seed=s), "o-", ms=3, label=f"network {s} (slope {float(ds.slope.sel(seed=s)):.2f})")
    slope_guide(b, horizons, float(ds.rate_error.values[0, 0]) * 1.5, -1.0, label="slope −1 (pass: −1 ± 0.15)")
    m = r.verdict.measured
    b.set(xlabel="horizon T", ylabel=r"$\max_{t\in[T,2T)} \|a[t] - a^*\|_\infty$")
    b.legend(fontsize=7, title=f"LIF view (weighted rate) bias: τ=20: {m.get('lif_rate_bias_tau20', math.nan):.3f}", title_fontsize=7)
    verdict_title(b, r"distance to $a^*$ falls as $O(1/T)$ (IF neurons)", r.passed)
    out = xr.Dataset(
        {"running_rate": (("time", "neuron"), rates[:, show]), "a_star": ("neuron", a_star[show]), "rate_error": ds.rate_error},
        coords={"time": t, "neuron": show},
    )
    return fig, out, {"check": "ide_rate_equilibrium", "seed": seed}
