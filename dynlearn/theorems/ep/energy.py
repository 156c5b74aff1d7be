r"""EP's flow is a gradient descent of F: energy descent along it, and a stable critical point at its end."""

from __future__ import annotations

import equinox as eqx
import jax
import numpy as np
import xarray as xr

from ...analysis import energy_increase, flow_jacobian
from ...dynamics import max_norm, model_flow, polish, simulate
from ...models.base import equilibrium
from ...models.ep import HopfieldEP
from ..criteria import at_most, below
from ..registry import Verdict, register_check
from .problem import EP_THEOREM, ep_problem, nudged


@register_check(
    "ep_energy_descent",
    family="ep",
    statement="Along EP's flow ds/dt = -dF/ds (free and nudged), F never increases and dF/dt = -|dF/ds|^2.",
    theory="theory/ep_energy_and_fixed_points.md",
    quick={"t1": 30.0, "n_save": 151},
    full={"t1": 60.0, "n_save": 601, "seeds": (0, 1, 2, 3)},
)
def ep_energy_descent(
    *, sizes=(4, 8, 6, 3), seeds=(0, 1), gain=1.5, beta=0.5, t1=30.0, dt0=0.01, n_save=151, model_cls=HopfieldEP,
    rise_tol=1e-10, identity_tol=1e-10, decay_tol=1e-6,
):
    ts = np.linspace(0.0, t1, n_save)
    F = np.zeros((len(seeds), 2, n_save))
    G2 = np.zeros_like(F)
    dFdt = np.zeros_like(F)
    for i, seed in enumerate(seeds):
        model, x, y = ep_problem(sizes, seed, gain, model_cls=model_cls)
        s0 = model.init_state(nudged(x, y, 0.0))
        for j, b in enumerate((0.0, beta)):
            data = nudged(x, y, b)
            traj = simulate(model_flow, s0, (model, data), t1=t1, dt0=dt0, ts=ts, solver="tsit5", save_fn=_energy_terms, name=model.name)
            F[i, j], G2[i, j], dFdt[i, j] = (np.asarray(a) for a in traj.ys)
            s0 = traj.final  # the nudged phase starts where the free one ended
    rises = max(energy_increase(F[i, j]) for i in range(len(seeds)) for j in range(2))
    identity = float(np.max(np.abs(dFdt + G2)) / np.max(G2))
    decay = float(np.max(G2[..., -1] / G2[..., 0]))
    ds = xr.Dataset(
        {"F": (("seed", "phase", "time"), F), "grad_norm2": (("seed", "phase", "time"), G2), "dF_dt": (("seed", "phase", "time"), dFdt)},
        coords={"seed": list(seeds), "phase": ["free", f"nudged(beta={beta:g})"], "time": ts},
    )
    verdict = Verdict.from_criteria(
        max_relative_rise=at_most(rises, rise_tol),
        identity_error=at_most(identity, identity_tol),
        final_over_initial_grad2=at_most(decay, decay_tol),
    )
    return ds, verdict


def _energy_terms(t, state, args):
    """``F``, :math:`|\\partial F/\\partial s|^2` and :math:`dF/dt = \\langle\\partial F/\\partial s, f\\rangle` at ``state``."""
    model, data = args
    F = model.energy(state, data)
    g = jax.grad(model.energy)(state, data)
    f = model.vector_field(t, state, data)
    g2 = sum(jax.numpy.sum(a * a) for a in jax.tree.leaves(g))
    dFdt = sum(jax.numpy.sum(a * b) for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(f)))
    return F, g2, dFdt


@register_check(
    "ep_fixed_point",
    family="ep",
    statement="EP's relaxation reaches a critical point of F (residual <= 1e-8, Newton to 1e-12) whose flow Jacobian is symmetric with eigenvalues < 0.",
    theory="theory/ep_energy_and_fixed_points.md",
    quick={"seeds": (0, 1, 2)},
    full={"seeds": tuple(range(10))},
)
def ep_fixed_point(
    *, sizes=(4, 8, 6, 3), seeds=(0, 1, 2), gain=1.5, beta=0.5, model_cls=HopfieldEP,
    relax_tol=1e-8, polish_tol=1e-12, gradient_tol=1e-10, asymmetry_tol=1e-12,
):
    rows = {k: np.zeros((len(seeds), 2)) for k in ("relax_residual", "polish_residual", "energy_gradient", "asymmetry", "max_real_eig")}
    for i, seed in enumerate(seeds):
        model, x, y = ep_problem(sizes, seed, gain, model_cls=model_cls)
        s0 = None
        for j, b in enumerate((0.0, beta)):
            # the free phase's relaxation (EP_THEOREM, float64 nudge): one compiled solve for every EP check; the
            # relaxed residual is a criterion of its own, so the Newton polish is a separate step here
            data = nudged(x, y, b)
            eq = equilibrium(model, data, EP_THEOREM, state0=s0)
            pe = polish(model_flow, eq, (model, data), name=model.name, throw=False)
            jac, grad_e = (np.asarray(a) for a in _jac_and_energy_gradient(model, pe.state, data))
            rows["relax_residual"][i, j] = float(eq.residual)
            rows["polish_residual"][i, j] = float(pe.residual)
            rows["energy_gradient"][i, j] = float(grad_e)
            rows["asymmetry"][i, j] = float(np.linalg.norm(jac - jac.T) / np.linalg.norm(jac))
            rows["max_real_eig"][i, j] = float(np.max(np.linalg.eigvals(jac).real))
            s0 = pe.state
    ds = xr.Dataset({k: (("seed", "phase"), v) for k, v in rows.items()}, coords={"seed": list(seeds), "phase": ["free", f"nudged(beta={beta:g})"]})
    r = {k: float(np.max(v)) for k, v in rows.items()}
    verdict = Verdict.from_criteria(
        relax_residual=at_most(r["relax_residual"], relax_tol),
        polish_residual=at_most(r["polish_residual"], polish_tol),
        energy_gradient=at_most(r["energy_gradient"], gradient_tol),
        jacobian_asymmetry=at_most(r["asymmetry"], asymmetry_tol),
        max_real_eigenvalue=below(r["max_real_eig"], 0.0),
    )
    return ds, verdict


@eqx.filter_jit
def flow_jacobian_at(model, state, data):
    """The dense flow Jacobian of any model (energy or not) at ``state``."""
    return flow_jacobian(model_flow, state, (model, data))


@eqx.filter_jit
def _jac_and_energy_gradient(model, state, data):
    r"""The flow Jacobian and :math:`\max|\partial F/\partial s|` from the energy, at ``state``."""
    return flow_jacobian_at(model, state, data), max_norm(jax.grad(model.energy)(state, data))
