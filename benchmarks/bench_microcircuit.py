"""Cost per simulated second of a dendritic microcircuit learning in continuous time (CPU or GPU).

Neurons, plastic weights (forward, W_IP, W_PI) and a stream of patterns integrated together with
`dynlearn.models.microcircuit.simulate_learning` (Euler, fixed step). Reports wall seconds per simulated
second, per Euler step, and with somatic noise (SDE): with the default Brownian path (one Gaussian increment per
step for the potentials only, `brownian="unsafe"`) and with a VirtualBrownianTree (`brownian="virtual"`, timed over
a shorter run, `--virtual-seconds`, because it costs milliseconds per step). Usage:

    python benchmarks/bench_microcircuit.py [--sizes 30 50 10] [--dt 0.1] [--seconds 2] [--virtual-seconds 0.1] [--x64]
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[30, 50, 10])
    ap.add_argument("--dt", type=float, default=0.1, help="Euler step in ms (default 0.1 ms, the papers' choice)")
    ap.add_argument("--seconds", type=float, default=2.0, help="simulated seconds per timed run")
    ap.add_argument("--t-pres", type=float, default=10.0, help="presentation time per pattern, ms")
    ap.add_argument("--virtual-seconds", type=float, default=0.1, help="simulated seconds for the VirtualBrownianTree run (0: skip)")
    ap.add_argument("--x64", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import jax

    jax.config.update("jax_enable_x64", args.x64)

    from dynlearn.models import Data
    from dynlearn.models.microcircuit import Microcircuit, PatternStream, Plasticity, preset, simulate_learning

    sizes = tuple(args.sizes)
    plast = Plasticity(eta_fw=1e-3, eta_ip=1e-3, eta_pi=1e-3, tau_w=None)
    results = {}
    runs = [("ode", 0.0, "unsafe", args.seconds), ("sde", 0.1, "unsafe", args.seconds)]
    if args.virtual_seconds > 0:
        runs.append(("sde_virtual_tree", 0.1, "virtual", args.virtual_seconds))
    for label, sigma, brownian, seconds in runs:
        t1 = 1000.0 * seconds
        n_pat = max(1, int(t1 / args.t_pres))
        key = jax.random.key(0)
        x = jax.random.uniform(key, (n_pat, sizes[0]), minval=-1.0, maxval=1.0)
        y = jax.random.normal(jax.random.key(1), (n_pat, sizes[-1]))
        stream = Data(None, None, 1.0, PatternStream(x, y, args.t_pres))  # output nudged toward the targets (nudge 1)
        model = Microcircuit.create(sizes, key=key, params=preset("bern", sigma=sigma).as_arrays(), top_down="random")
        kw = dict(t1=t1, dt=args.dt, key=jax.random.key(2) if sigma else None, brownian=brownian)
        start = time.perf_counter()
        m, _ = simulate_learning(model, plast, stream, **kw)
        jax.block_until_ready(m.weights)
        compile_and_first = time.perf_counter() - start
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            m, _ = simulate_learning(model, plast, stream, **kw)
            jax.block_until_ready(m.weights)
            times.append(time.perf_counter() - start)
        best = min(times)
        steps = t1 / args.dt
        results[label] = {
            "wall_s_per_simulated_s": best / seconds,
            "us_per_step": 1e6 * best / steps,
            "first_call_s": compile_and_first,
            "simulated_s": seconds,
        }
    out = {"device": str(jax.devices()[0]), "sizes": sizes, "dt_ms": args.dt, "x64": args.x64, "results": results}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
