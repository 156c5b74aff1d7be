"""Test set-up: float64 everywhere (theorem tests), single-threaded XLA per worker, no plots on screen."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("DYNLEARN_JOBS", "1")  # CLI tests run in-process; test_cli spawns workers explicitly

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
