"""The spyx contestant of ``bench_spiking.py``, run in its own environment (``benchmarks/.venv/spyx``).

The same network and step as the hand-written reference (rate-coded input drawn per step, LIF hidden layers with
decay α and threshold 1, reset by subtraction, a leaky readout with decay κ, per-step cross-entropy, ``jax.grad``
through the time loop, one Adam update), built from spyx's layers (``spyx.nn.LIF`` with its SuperSpike surrogate,
``spyx.nn.LI``, ``flax.nnx.Linear``) and run by ``spyx.nn.run``. spyx's LIF emits its spike from the membrane
before the update and does not detach the reset: the same work per step. This process also times the
hand-written step, so its ratio is measured side by side; it prints one JSON line.

    benchmarks/.venv/spyx/bin/python benchmarks/spyx_contestant.py --sizes 64,128,128,10 --batch 64 --steps 20
"""

from __future__ import annotations

import argparse
import json
import math
import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import importlib.metadata as metadata

import jax
import jax.numpy as jnp
import spyx
from flax import nnx

from snn_reference import adam_step, best_times, handwritten_step


def spyx_step(sizes, batch, n_steps, tau_mem=20.0, tau_out=20.0, rate_max=0.5):
    alpha, kappa = math.exp(-1 / tau_mem), math.exp(-1 / tau_out)
    rngs = nnx.Rngs(0)
    layers = []
    for i, o in zip(sizes[:-2], sizes[1:-1]):
        layers += [nnx.Linear(i, o, rngs=rngs), spyx.nn.LIF((o,), beta=alpha, rngs=rngs)]
    layers += [nnx.Linear(sizes[-2], sizes[-1], rngs=rngs), spyx.nn.LI((sizes[-1],), beta=kappa, rngs=rngs)]
    graphdef, params = nnx.split(spyx.nn.Sequential(*layers))

    def loss_fn(params, x, y, key):
        model = nnx.merge(graphdef, params)
        spikes = (jax.random.uniform(key, (n_steps, *x.shape)) < rate_max * x).astype(x.dtype)  # [T, B, in]
        out, _ = spyx.nn.run(model, spikes)
        return -jnp.sum(y * jax.nn.log_softmax(out, axis=-1)) / n_steps

    return adam_step(loss_fn, params, sizes, batch)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="64,128,128,10")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=20)
    a = ap.parse_args()
    sizes = tuple(int(s) for s in a.sizes.split(","))
    best = best_times({"hand": handwritten_step(sizes, a.batch, a.steps), "spyx": spyx_step(sizes, a.batch, a.steps)}, a.repeats)
    print(json.dumps({"spyx_s": best["spyx"], "hand_s": best["hand"], "spyx": metadata.version("spyx"), "jax": jax.__version__}))


if __name__ == "__main__":
    main()
