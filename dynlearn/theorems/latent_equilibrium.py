r"""Theorem check for Latent Equilibrium (Haider et al. 2021, NeurIPS 34): float64, returns ``(xarray.Dataset, Verdict)``.

* ``le_instantaneous`` — prospective (LE) rates track the feedforward output instantly; standard rates lag
  by about depth x tau.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ..dynamics import model_flow, simulate
from ..models.base import Data
from ..models.latent_equilibrium import LayeredLE, StepInput
from ..networks import init_network
from .criteria import above, at_least, at_most
from .registry import Verdict, register_check
from .. import draws


def _le_readout(t, y, args):
    model, data = args
    return model.readout(t, y, data)


def _le_run(sizes, tau, dt, t_end, n_t, seed, model_cls, solver, step):
    kn, k0, k1 = jax.random.split(jax.random.key(seed), 3)
    net = init_network(sizes, key=kn, activation="tanh", scheme="lecun", gain=1.5, bias_scale=0.1, dtype=jnp.zeros(()).dtype)
    x0 = draws.uniform(k0, (sizes[0],), minval=-1.0, maxval=1.0)
    x1 = x0 + step * (draws.uniform(k1, (sizes[0],), minval=-1.0, maxval=1.0) - x0)
    data = Data(None, stream=StepInput(x0, x1, 0.0))
    y_ff = net(x1)
    ts = jnp.linspace(0.0, t_end, n_t)

    def run(p):
        model = model_cls(net, jnp.asarray(tau), p)
        state0 = tuple(net.forward(x0)[1:])  # at rest for the input before the step
        traj = simulate(model_flow, state0, (model, data), t1=t_end, dt0=dt, ts=ts, solver=solver, save_fn=_le_readout, throw=False)
        return traj.ys

    outs = eqx.filter_vmap(run)(jnp.asarray([1.0, 0.0]))
    scale = jnp.linalg.norm(y_ff - net(x0))
    err = jnp.linalg.norm(outs - y_ff, axis=-1) / scale
    return np.asarray(ts), np.asarray(err), float(scale)


@register_check(
    "le_instantaneous",
    family="latent_equilibrium",
    statement=(
        "After an input step, a layered network with prospective rates (LE) has output error <= 1e-9 x (step size) at every time "
        "(the O(dt) bound holds with zero constant when u+tau du/dt is taken from the vector field), while the standard network lags: "
        "its integrated relative error is depth x tau within 5% (linear response to a small step), and its error exceeds 10% until t = depth x tau."
    ),
    theory="theory/le_instantaneous.md",
    quick=dict(depths=(1, 2, 3), width=8),
    full=dict(depths=(1, 2, 3, 4, 6), width=32),
)
def le_instantaneous(
    *,
    depths=(1, 2, 3),
    width: int = 8,
    n_in: int = 5,
    n_out: int = 3,
    tau: float = 1.0,
    step: float = 0.05,
    dt: float = 0.01,
    solver: str = "tsit5",
    seed: int = 0,
    model_cls=LayeredLE,
    tol: float = 1e-9,
    lag_tol: float = 0.05,
    min_early_err: float = 0.1,
):
    """A step of size ``step`` (x1 = x0 + step (x' - x0)) from rest; the lag of a cascade of ``depth`` leaky layers is
    exactly depth x tau in the linear response (Erlang impulse response); the nonlinearity adds O(step)."""
    rows, errs = [], []
    for d in depths:
        sizes = (n_in,) + (width,) * (d - 1) + (n_out,)
        t_end = 6.0 * tau * (max(depths) + 2)
        n_t = int(round(t_end / (0.05 * tau))) + 1
        ts, err, _ = _le_run(sizes, tau, dt, t_end, n_t, seed, model_cls, solver, step)
        rows.append((float(err[0].max()), float(np.trapezoid(err[1], ts)), float(err[1][ts < d * tau].min())))
        errs.append(err)
    rows = np.array(rows)
    ds = xr.Dataset(
        {
            "rel_err": (("depth", "coding", "time"), np.array(errs)),
            "le_max_rel_err": ("depth", rows[:, 0]),
            "lag": ("depth", rows[:, 1]),
            "plain_min_err_before_depth_tau": ("depth", rows[:, 2]),
        },
        coords={"depth": np.array(depths), "coding": ["prospective", "standard"], "time": ts},
        attrs={"tau": tau, "dt": dt, "solver": solver, "lag": "integral over t of the standard network's relative output error"},
    )
    lag_ratio = rows[:, 1] / (np.array(depths) * tau)
    verdict = Verdict.from_criteria(
        le_max_rel_err=at_most(rows[:, 0].max(), tol),
        lag_over_depth_tau_min=at_least(lag_ratio.min(), 1 - lag_tol),
        lag_over_depth_tau_max=at_most(lag_ratio.max(), 1 + lag_tol),
        plain_err_before_depth_tau=above(rows[:, 2].min(), min_early_err),
    )
    return ds, verdict
