r"""What one training step costs, as XLA counts it: FLOPs, bytes accessed and memory of the compiled step.

For every learner the training step (:func:`dynlearn.learning.make_step`: the rule's update and the optimiser)
is lowered and compiled for one batch; the numbers are XLA's own, from ``compiled.cost_analysis()`` (``flops``,
``transcendentals``, ``bytes accessed``) and ``compiled.memory_analysis()`` (arguments, outputs, temporaries,
generated code). No operation is counted by hand. MACs are reported as ``flops / 2`` (XLA counts a
multiply-add of a dot product as two FLOPs).

What XLA's static count means: HLO cost analysis counts the body of a ``while`` loop **once**, whatever its trip
count, because the count of iterations is only known at run time. A learner whose update relaxes a model
(PC, EP, PAL, the microcircuit) runs its vector field inside such a loop, so its ``flops`` is one pass of the
loop body plus everything outside it — a lower bound, not the cost of the step. ``loops`` says how many
``while`` loops the compiled step has (0: the count is exact). :func:`step_costs` also times the step, which
is the honest comparison across learners with loops.

Peak memory is ``argument + output + temp - alias`` bytes (XLA's buffer assignment on this backend), the memory
the step needs live at once; ``temp`` alone is what the step allocates beyond its inputs and outputs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import equinox as eqx
import jax
import numpy as np
import xarray as xr

from ..learning import init_params, make_optimizer, make_step
from ..rules import get_learner, learner_names
from .. import draws

COUNTS = ("flops", "macs", "transcendentals", "bytes_accessed", "argument_bytes", "output_bytes", "temp_bytes", "peak_bytes", "loops", "step_ms")


def _compiled_step(learner, sizes: Sequence[int], batch: int, seed: int):
    """The compiled training step of ``learner`` on an MLP of widths ``sizes`` and its (array) arguments."""
    key = jax.random.key(seed)
    params = init_params(learner, key, sizes)
    rule_state = learner.rule.init(key, params)
    opt = make_optimizer("adam", learner.defaults.get("lr", 1e-3))
    opt_state = opt.init(eqx.filter(params, eqx.is_inexact_array))
    step = make_step(learner, opt)
    kx, ky, kk = jax.random.split(jax.random.key(seed + 1), 3)
    x = draws.uniform(kx, (batch, sizes[0]))
    y = jax.nn.one_hot(jax.random.randint(ky, (batch,), 0, sizes[-1]), sizes[-1])
    dyn, static = eqx.partition((params, rule_state, opt_state), eqx.is_array)

    def fn(dyn, x, y, k):
        return eqx.filter(step(*eqx.combine(dyn, static), x, y, k), eqx.is_array)

    jitted = jax.jit(fn)
    args = (dyn, x, y, kk)
    return jitted.lower(*args).compile(), args


def _cost_dict(compiled) -> dict:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older JAX: one dict per device program
        cost = cost[0] if cost else {}
    return dict(cost or {})


def step_costs(learner_name: str, sizes: Sequence[int] = (64, 128, 128, 10), batch: int = 64, *, seed: int = 0, time_repeats: int = 5, **learner_options) -> dict[str, float]:
    """XLA's counts for one compiled training step of ``learner_name`` (see the module docstring), and its time.

    Args:
        sizes: MLP layer widths (input, hidden..., output); batch: samples per step.
        time_repeats: runs of the compiled step to time (the minimum is reported as ``step_ms``; 0 skips timing).
    """
    learner = get_learner(learner_name, **learner_options)
    compiled, args = _compiled_step(learner, sizes, batch, seed)
    cost = _cost_dict(compiled)
    mem = compiled.memory_analysis()
    flops = float(cost.get("flops", np.nan))
    arg_b, out_b = float(mem.argument_size_in_bytes), float(mem.output_size_in_bytes)
    temp_b, alias_b = float(mem.temp_size_in_bytes), float(mem.alias_size_in_bytes)
    loops = compiled.as_text().count(" while(")
    times = []
    for _ in range(time_repeats):
        t = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t)
    return {
        "flops": flops,
        "macs": flops / 2,
        "transcendentals": float(cost.get("transcendentals", np.nan)),
        "bytes_accessed": float(cost.get("bytes accessed", np.nan)),
        "argument_bytes": arg_b,
        "output_bytes": out_b,
        "temp_bytes": temp_b,
        "peak_bytes": arg_b + out_b + temp_b - alias_b,
        "loops": float(loops),
        "step_ms": 1e3 * min(times) if times else np.nan,
    }


def learner_costs(learners: Sequence[str] | None = None, sizes: Sequence[int] = (64, 128, 128, 10), batch: int = 64, *, seed: int = 0, time_repeats: int = 5) -> xr.Dataset:
    """:func:`step_costs` of every registered learner (or ``learners``) as a Dataset over ``learner``."""
    names = list(learner_names() if learners is None else learners)
    rows = [step_costs(n, sizes, batch, seed=seed, time_repeats=time_repeats) for n in names]
    ds = xr.Dataset({k: ("learner", np.asarray([r[k] for r in rows])) for k in COUNTS}, coords={"learner": names})
    ds.attrs.update(sizes="-".join(map(str, sizes)), batch=batch, backend=jax.default_backend(), source="XLA cost_analysis / memory_analysis of the compiled step")
    ds["macs"].attrs["note"] = "flops/2; while-loop bodies counted once (a lower bound when loops > 0)"
    return ds
