"""Wall time of PAL's SDE per simulated second on this machine, for one seed and for many seeds in one vmapped call.

    python benchmarks/bench_pal.py [--sizes 5 20 10 20 5] [--seeds 1 16] [--sim-ms 100] [--repeats 3]

Two settings are timed: the paper's (dt = 0.01 ms, tau_xi = tau_HP = 0.1 ms, T_pres = 1 ms) and the quick check's
(dt = 0.1 ms, tau_xi = tau_HP = 0.5 ms, T_pres = 5 ms). Each is integrated for ``--sim-ms`` of simulated time with
Euler-Maruyama (one ``dynlearn.simulate`` call per pattern inside ``lax.scan``, float64), after a warm-up call that
compiles it. Printed: compile+first-run seconds, median run seconds, seconds per simulated second, and microseconds
per step per seed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 20, 10, 20, 5])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--sim-ms", type=float, default=100.0, help="simulated milliseconds per timed call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="write the rows as JSON to this file")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    from dynlearn.models.pal import PAL, init_pal
    from dynlearn.models.pal_simulation import simulate_pal

    settings = {
        "paper (dt 0.01 ms)": dict(dt=0.01, t_pres=1.0, tau=0.1, sigma=0.05, alpha=1e-5, eta_bw=50.0),
        "quick (dt 0.1 ms)": dict(dt=0.1, t_pres=5.0, tau=0.5, sigma=0.5, alpha=1.2e-3, eta_bw=0.7),
    }
    sizes = tuple(args.sizes)
    rows = []
    for name, s in settings.items():
        model = PAL(tau_xi=s["tau"], tau_hp=s["tau"], sigma=s["sigma"], alpha=s["alpha"], eta_bw=s["eta_bw"])
        n_pat = int(round(args.sim_ms / s["t_pres"]))
        for n_seed in args.seeds:
            keys = jax.random.split(jax.random.key(0), n_seed)
            states = jax.vmap(lambda k: init_pal(sizes, key=k, model=model))(keys)
            inputs = jax.random.uniform(jax.random.key(1), (n_seed, n_pat, sizes[0]), jnp.float64, -1, 1)

            def run():
                final, _ = simulate_pal(model, states, inputs, key=keys, t_pres=s["t_pres"], dt=s["dt"], batched=True)
                return jax.block_until_ready(final)

            t0 = time.perf_counter()
            run()
            first = time.perf_counter() - t0
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                run()
                times.append(time.perf_counter() - t0)
            med = statistics.median(times)
            steps = args.sim_ms / s["dt"]
            row = dict(
                setting=name, seeds=n_seed, compile_and_first_s=round(first, 2), run_s=round(med, 3),
                s_per_simulated_s=round(med * 1000.0 / args.sim_ms, 2), us_per_step_per_seed=round(1e6 * med / steps / n_seed, 2),
            )
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"sizes": sizes, "sim_ms": args.sim_ms, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
