"""Time per EP training step (free + nudged phases + update) against a BP step of the same network, same run.

    python benchmarks/bench_ep.py [--sizes 64 32 10] [--batch 64] [--repeats 21]

Prints, for each EP estimator, the median wall time of one jitted training step (after compilation) and its
ratio to one backprop step (forward + backward + optimizer update) of the same feedforward network.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp


def _median_time(step, params, rule_state, opt_state, x, y, repeats: int) -> float:
    key = jax.random.key(0)
    out = step(params, rule_state, opt_state, x, y, key)  # compile + warm up
    jax.block_until_ready(out)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = step(params, rule_state, opt_state, x, y, key)
        jax.block_until_ready(out)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    from dynlearn.data import load_digits
    import equinox as eqx

    from dynlearn.learning import init_params, make_optimizer, make_step
    from dynlearn.rules import get_learner

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 32, 10])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--nudge", type=float, default=None, help="nudge beta (default: the learner's, 0.5 real / 0.05 holomorphic)")
    parser.add_argument("--n-points", type=int, default=4)
    args = parser.parse_args()

    data = load_digits()
    x = jnp.asarray(data.x_train[: args.batch])
    y = jnp.asarray(data.y_train[: args.batch])
    opt = make_optimizer("adam", 1e-3)
    rows = []
    learners = [("bp", get_learner("bp"))] + [
        (f"ep/{e}", get_learner(f"ep/{e}", n_points=args.n_points, **({} if args.nudge is None else {"nudge": args.nudge})))
        for e in ("one_sided", "symmetric", "holomorphic")
    ]
    for name, learner in learners:
        params = init_params(learner, jax.random.key(0), tuple(args.sizes))
        rule_state = learner.rule.init(jax.random.key(1), params)
        opt_state = opt.init(eqx.filter(params, eqx.is_inexact_array))
        step = make_step(learner, opt)
        rows.append((name, _median_time(step, params, rule_state, opt_state, x, y, args.repeats)))
    bp = rows[0][1]
    print(f"sizes {tuple(args.sizes)}, batch {args.batch}, float32, backend {jax.default_backend()}, median of {args.repeats}")
    print(f"{'learner':<18}{'ms/step':>10}{'x BP':>9}")
    for name, t in rows:
        print(f"{name:<18}{1e3 * t:>10.2f}{t / bp:>9.1f}")


if __name__ == "__main__":
    main()
