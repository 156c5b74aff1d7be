"""The compiled epoch's overhead over a hand-written ``lax.scan`` of the same PC step, timed in one process.

``compare.py`` runs every contestant in its own process, so a ratio of two 20 ms digits epochs there also holds the
two processes' differences. Here ``dynlearn-scan`` (what :func:`dynlearn.learning.train` runs) and ``hand-scan`` (the
same step in plain JAX, ``scan_contestants.py``) alternate epoch by epoch in one process, on the same batch order,
after two warm-up epochs each; printed: min and median seconds per epoch and their ratios.

    python benchmarks/scan_overhead.py                       # digits, 80 epochs each
    python benchmarks/scan_overhead.py --dataset fashion_mnist --epochs 16
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from scan_contestants import dynlearn_scan, hand_scan  # noqa: E402

WARMUP = 2


def time_epochs(dataset: str, epochs: int, batch: int, T: int, dt: float, seed: int) -> dict[str, list[float]]:
    """Seconds per epoch of each contestant, epochs alternating (the order flips every epoch)."""
    from dynlearn.data import load

    d = load(dataset)
    x = d.x_train.reshape(len(d.x_train), -1)
    sizes = (x.shape[1], 128, 128, d.y_train.shape[1])
    xd, yd = jnp.asarray(x), jnp.asarray(d.y_train)
    n_batches = len(x) // batch
    rng = np.random.default_rng(seed)
    made = {"dynlearn-scan": dynlearn_scan(sizes, T, dt, seed), "hand-scan": hand_scan(sizes, T, dt, seed)}
    state = {k: v[1] for k, v in made.items()}
    seconds: dict[str, list[float]] = {k: [] for k in made}
    for r in range(epochs + WARMUP):
        order = jnp.asarray(rng.permutation(len(x))[: n_batches * batch].reshape(n_batches, batch))
        names = list(made) if r % 2 else list(reversed(made))
        for k in names:
            t = time.perf_counter()
            state[k] = jax.block_until_ready(made[k][3](state[k], xd, yd, order))
            if r >= WARMUP:
                seconds[k].append(time.perf_counter() - t)
    return seconds


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="digits", help="digits or fashion_mnist (dynlearn.data.load)")
    p.add_argument("--epochs", type=int, default=80, help="timed epochs per contestant (after 2 warm-up epochs)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=20, help="inference steps T")
    p.add_argument("--dt", type=float, default=0.1, help="Euler step of the inference")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    for name, v in (("--epochs", a.epochs), ("--batch", a.batch), ("--steps", a.steps)):
        if v < 1:
            p.error(f"{name} must be >= 1, got {v}")
    if not a.dt > 0:
        p.error(f"--dt must be > 0, got {a.dt}")
    s = time_epochs(a.dataset, a.epochs, a.batch, a.steps, a.dt, a.seed)
    for k, v in s.items():
        print(f"{k:14s} s/epoch min {min(v):.4f}  median {statistics.median(v):.4f}")
    mine, hand = s["dynlearn-scan"], s["hand-scan"]
    print(f"dynlearn / hand-written scan: min {min(mine) / min(hand):.3f}, median {statistics.median(mine) / statistics.median(hand):.3f} ({a.dataset}, {a.epochs} epochs each)")


if __name__ == "__main__":
    main()
