"""Time per spiking training step against a hand-written ``lax.scan`` LIF loop doing the same computation.

The reference is the plainest JAX one can write for the same network: rate-coded input drawn per step, LIF layers
``v = αv + Wx + b``, spike ``H(v - 1)`` with the fast-sigmoid surrogate, reset by subtraction (detached), a leaky
readout, per-step cross-entropy, ``jax.grad`` through the scan and one Adam update — i.e. ``snn/bptt``'s step
without the library (no neuron module, no rule/learner layers). The ratio ``library / hand-written`` is the
library's overhead (target <= 1.2). e-prop's and S-TLLR's steps are timed on the same network and printed
against the same reference (they do different work: traces per synapse, and two traces per neuron). Where
``benchmarks/setup_peers.sh`` has installed spyx, ``spyx_contestant.py`` builds the same network from spyx's layers
in spyx's environment and times it beside its own run of the hand-written step.

    python benchmarks/bench_spiking.py                  # 64-128-128-10 (digits), batch 64, T = 20
    python benchmarks/bench_spiking.py --sizes 784,256,10 --steps 50 --repeats 30
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from dynlearn.learning import init_params, make_step
from dynlearn.rules import get_learner

from snn_reference import best_times, handwritten_step


def library_step(name, sizes, batch, n_steps):
    """The jitted training step of learner ``name`` (rule update + Adam) and its arguments."""
    learner = get_learner(name, n_steps=n_steps)
    key = jax.random.key(0)
    params = init_params(learner, key, sizes)
    rule_state = learner.rule.init(key, params)
    opt = optax.adam(1e-3)
    opt_state = opt.init(eqx.filter(params, eqx.is_inexact_array))
    step = make_step(learner, opt)
    kx, ky = jax.random.split(jax.random.key(1))
    x = jax.random.uniform(kx, (batch, sizes[0]))
    y = jax.nn.one_hot(jax.random.randint(ky, (batch,), 0, sizes[-1]), sizes[-1])
    return step, (params, rule_state, opt_state, x, y, jax.random.key(2))


def spyx_times(a) -> dict | None:
    """Run ``spyx_contestant.py`` in spyx's environment with the same shapes; ``None`` where it is not installed."""
    here = os.path.dirname(os.path.abspath(__file__))
    python = os.path.join(here, ".venv", "spyx", "bin", "python")
    if not os.path.exists(python):
        return None
    args = [python, os.path.join(here, "spyx_contestant.py"), "--sizes", a.sizes, "--batch", str(a.batch), "--steps", str(a.steps), "--repeats", str(a.repeats)]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="64,128,128,10")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20, help="time steps T")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--learners", default="snn/bptt,snn/eprop,snn/stllr,snn/desire")
    a = ap.parse_args()
    sizes = tuple(int(s) for s in a.sizes.split(","))
    steps = {"hand-written lax.scan BPTT": handwritten_step(sizes, a.batch, a.steps)}
    steps.update({name: library_step(name, sizes, a.batch, a.steps) for name in a.learners.split(",")})
    best = best_times(steps, a.repeats)
    ref = best["hand-written lax.scan BPTT"]
    print(f"sizes {sizes}, batch {a.batch}, T = {a.steps}, backend {jax.default_backend()}")
    print(f"{'step':<28}{'ms':>10}{'ratio to hand-written':>24}")
    for name, t in best.items():
        print(f"{name:<28}{1e3 * t:>10.2f}{t / ref:>24.2f}")
    peer = spyx_times(a)
    if peer is None:
        print("spyx: not installed (bash benchmarks/setup_peers.sh puts it in benchmarks/.venv/spyx)")
        return
    ratio = peer["spyx_s"] / peer["hand_s"]
    print(f"{'spyx ' + peer['spyx']:<28}{1e3 * peer['spyx_s']:>10.2f}{ratio:>24.2f}   (its own process, beside its own hand-written run)")
    if "snn/bptt" in best:
        print(f"snn/bptt / spyx, each against the hand-written step of its process: {best['snn/bptt'] / ref / ratio:.2f}")


if __name__ == "__main__":
    main()
