"""Vector-field evaluations to reach a PC network's equilibrium: the gradient flow (Euler at its best step) against
optimistix's minimisers (``RelaxConfig(method=...)``, :mod:`dynlearn.minimise`).

The problem is predictive coding's inference with the output clamped to the label (``PredictiveCoding(output=
"clamped")``), from the feedforward pass, on a batch of real data, float64, to the same stopping test
max|dx/dt| <= ``--tol``. Euler evaluates the field once per step (the residual is carried, see
:mod:`dynlearn.steady_state`); each minimiser step evaluates the energy and its gradient once (one forward and one
backward pass, the cost of one field evaluation). The best Euler step is searched on a grid refined around the
largest stable one (bisection). Printed: evaluations, wall time of the compiled solve, and the ratio best Euler / method
(target >= 3); written to ``--json``.

    python benchmarks/equilibria.py                 # digits 64-128-128-10 and Fashion-MNIST 784-128-128-10
    python benchmarks/equilibria.py --quick         # digits only
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import jax
import jax.numpy as jnp

METHODS = ("lbfgs", "bfgs", "nonlinear_cg")


def problem(name: str, hidden=(128, 128), batch: int = 64, seed: int = 0):
    from dynlearn.data import load
    from dynlearn.models.base import Data
    from dynlearn.models.pc import PredictiveCoding
    from dynlearn.networks import init_network

    d = load("digits") if name == "digits" else load(name, n_train=batch, n_test=10)
    x, y = jnp.asarray(d.x_train[:batch], jnp.float64), jnp.asarray(d.y_train[:batch], jnp.float64)
    net = init_network((x.shape[-1], *hidden, y.shape[-1]), key=jax.random.key(seed), activation="tanh", dtype=jnp.float64)
    return PredictiveCoding(net, output="clamped"), Data(x, y)


def solve(model, data, config) -> dict:
    from dynlearn.models.base import equilibrium

    eq = equilibrium(model, data, config.replace(throw=False))  # compile
    jax.block_until_ready(eq.state)
    t = time.perf_counter()
    eq = equilibrium(model, data, config.replace(throw=False))
    jax.block_until_ready(eq.state)
    return {"evaluations": int(eq.num_steps), "residual": float(eq.residual), "converged": bool(eq.converged), "seconds": time.perf_counter() - t}


def best_euler(model, data, tol: float, lo: float = 0.05, hi: float = 1.5) -> dict:
    """The Euler step that converges in the fewest steps: bisect for the largest stable step (to 0.01), then try the
    few just below it (near the stability limit the oscillating mode slows convergence again)."""
    from dynlearn import RelaxConfig

    runs = {}

    def run(dt):
        dt = round(float(dt), 3)
        if dt not in runs:
            runs[dt] = solve(model, data, RelaxConfig(solver="euler", dt0=dt, tol=tol, t1=1e5, max_steps=20_000))
        return runs[dt]["converged"]

    if not run(lo):
        raise SystemExit(f"Euler does not converge even at dt = {lo}")
    while hi - lo > 0.01:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if run(mid) else (lo, mid)
    for k in range(1, 6):
        run(lo - 0.01 * k)
    ok = {dt: r for dt, r in runs.items() if r["converged"]}
    best = min(ok, key=lambda dt: ok[dt]["evaluations"])
    return {"dt": best, **ok[best], "tried": {str(k): v["evaluations"] if v["converged"] else None for k, v in sorted(runs.items())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="digits only")
    parser.add_argument("--tol", type=float, default=1e-6, help="stopping test max|dx/dt| (default 1e-6)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--json", default="benchmarks/equilibria.json", help="where to write the results")
    args = parser.parse_args()
    from dynlearn import RelaxConfig

    with jax.enable_x64(True):
        out = {}
        for name in ("digits",) if args.quick else ("digits", "fashion_mnist"):
            model, data = problem(name, batch=args.batch)
            euler = best_euler(model, data, args.tol)
            row = {"euler": euler}
            print(f"{name} {'-'.join(map(str, model.network.sizes))}, batch {args.batch}, tol {args.tol:g}")
            print(f"  euler dt {euler['dt']:g}: {euler['evaluations']} evaluations, {euler['seconds'] * 1e3:.1f} ms (steps tried: {euler['tried']})")
            for m in METHODS:
                r = solve(model, data, RelaxConfig(method=m, tol=args.tol, atol=1e-14, max_steps=5000))
                r["ratio_euler_over_method"] = euler["evaluations"] / max(r["evaluations"], 1)
                row[m] = r
                print(f"  {m:13s}: {r['evaluations']:5d} evaluations, {r['seconds'] * 1e3:7.1f} ms, residual {r['residual']:.2e}, "
                      f"converged {r['converged']}, euler/{m} = {r['ratio_euler_over_method']:.2f}")
            out[name] = row
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
