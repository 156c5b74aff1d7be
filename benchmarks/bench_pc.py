"""Time per predictive-coding training step against one backprop step of the same network, in one run.

A BP step costs about three matrix passes (forward, and two in the backward pass). A PC step with T
fixed Euler inference steps costs two per inference step (the prediction and the error fed back through
Wᵀ) plus one for the weight update: the roofline ratio is (2T + 1)/3. This script measures the ratio for
several T, and for the default adaptive (Tsit5, steady-state) inference, and prints both side by side.

    python benchmarks/bench_pc.py                 # 64-128-128-10 (digits), batch 64
    python benchmarks/bench_pc.py --sizes 784,256,256,10 --repeats 50
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import jax  # noqa: E402
import optax  # noqa: E402

import equinox as eqx  # noqa: E402

from dynlearn.learning import init_params, make_step  # noqa: E402
from dynlearn.rules import get_learner  # noqa: E402


def time_step(learner, sizes, batch, repeats, key):
    """Median seconds of one jitted training step (rule update + Adam) and the step's metrics."""
    params = init_params(learner, key, sizes)
    rule_state = learner.rule.init(key, params)
    opt = optax.adam(1e-3)
    opt_state = opt.init(eqx.filter(params, eqx.is_inexact_array))
    step = make_step(learner, opt)
    kx, ky, k_step = jax.random.split(jax.random.key(1), 3)
    x = jax.random.uniform(kx, (batch, sizes[0]))
    y = jax.nn.one_hot(jax.random.randint(ky, (batch,), 0, sizes[-1]), sizes[-1])
    out = step(params, rule_state, opt_state, x, y, k_step)
    jax.block_until_ready(out)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(step(params, rule_state, opt_state, x, y, k_step))
        times.append(time.perf_counter() - t)
    return statistics.median(times), out[3]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="64,128,128,10", help="layer widths, comma-separated")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=100)
    p.add_argument("--steps", default="5,10,20,50", help="fixed Euler inference steps T to time")
    args = p.parse_args()
    sizes = tuple(int(s) for s in args.sizes.split(","))
    key = jax.random.key(0)
    bp, _ = time_step(get_learner("bp", activation="gelu"), sizes, args.batch, args.repeats, key)
    print(f"network {'-'.join(map(str, sizes))}, batch {args.batch}, {jax.devices()[0].platform}, median of {args.repeats}")
    print(f"BP step: {bp * 1e3:.3f} ms")
    print(f"{'inference':<28}{'ms/step':>10}{'PC/BP':>9}{'roofline (2T+1)/3':>20}{'measured/roofline':>20}")
    for T in (int(t) for t in args.steps.split(",")):
        learner = get_learner("pc", solver="euler", dt0=0.2, t1=0.2 * T, steady=False, max_steps=T + 1)
        pc, metrics = time_step(learner, sizes, args.batch, args.repeats, key)
        assert int(metrics["inference_steps"]) == T, metrics
        roof = (2 * T + 1) / 3
        print(f"{f'Euler, T = {T}':<28}{pc * 1e3:>10.3f}{pc / bp:>9.1f}{roof:>20.1f}{pc / bp / roof:>20.2f}")
    pc, metrics = time_step(get_learner("pc"), sizes, args.batch, args.repeats, key)
    steps = float(metrics["inference_steps"])
    T_eff = 6 * steps  # Tsit5: six vector-field evaluations per step
    roof = (2 * T_eff + 1) / 3
    print(f"{f'Tsit5 steady ({steps:.0f} steps)':<28}{pc * 1e3:>10.3f}{pc / bp:>9.1f}{roof:>20.1f}{pc / bp / roof:>20.2f}")


if __name__ == "__main__":
    main()
