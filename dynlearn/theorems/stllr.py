r"""Theorem check for S-TLLR (Apolinario & Roy, TMLR 2025): training memory independent of the number of steps.

* ``stllr_memory`` — XLA's memory analysis of the compiled training step (:func:`dynlearn.analysis.costs.step_costs`:
  the rule's update and Adam, one batch) at ``T`` = 10, 50, 200 steps: S-TLLR's temporary memory is flat (it
  keeps two traces per neuron and a gradient accumulator, whatever ``T``), BPTT's grows linearly in ``T`` (the
  reverse pass needs every step's state). e-prop (traces per synapse, also flat) is measured in the full run.

The learners are passed by name (``flat``: claimed independent of ``T``; ``linear``: claimed to grow with ``T``),
so a test can hand the check BPTT as the "flat" learner and see it fail. See ``theory/stllr.md``.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..analysis.costs import step_costs
from .criteria import at_least, at_most, reported
from .registry import Verdict, register_check


@register_check(
    "stllr_memory",
    family="spiking",
    statement="XLA memory of the compiled training step at T = 10, 50, 200: S-TLLR's temporaries are flat in T (growth <= 1%), BPTT's grow linearly (>= 5x from T=10 to 200, within 5% of a line)",
    theory="theory/stllr.md",
    quick={},
    full={"sizes": (64, 128, 128, 10), "batch": 64, "flat": ("snn/stllr", "snn/eprop")},
)
def stllr_memory(*, sizes=(16, 16, 4), batch=4, steps=(10, 50, 200), flat=("snn/stllr",), linear=("snn/bptt",), flat_tol=0.01, min_growth=5.0, line_tol=0.05):
    """``temp_bytes`` and ``peak_bytes`` of each learner's compiled step at each ``T`` (no step is run).

    Flatness: :math:`(m_{200} - m_{10})/m_{10}` for S-TLLR (and e-prop when listed). Linearity for BPTT: growth
    :math:`m_{200}/m_{10}` and the relative distance of :math:`m_{50}` to the line through :math:`m_{10}, m_{200}`.
    """
    learners = tuple(flat) + tuple(linear)
    temp = np.zeros((len(learners), len(steps)))
    peak = np.zeros_like(temp)
    for i, name in enumerate(learners):
        for j, T in enumerate(steps):
            c = step_costs(name, sizes=sizes, batch=batch, time_repeats=0, n_steps=int(T))
            temp[i, j], peak[i, j] = c["temp_bytes"], c["peak_bytes"]
    ds = xr.Dataset(
        {"temp_bytes": (("learner", "n_steps"), temp), "peak_bytes": (("learner", "n_steps"), peak)},
        coords={"learner": list(learners), "n_steps": list(steps)},
        attrs={"sizes": "-".join(map(str, sizes)), "batch": batch, "source": "XLA memory_analysis of the compiled training step"},
    )
    return ds, memory_verdict(ds, flat, linear, flat_tol=flat_tol, min_growth=min_growth, line_tol=line_tol)


def memory_verdict(ds: xr.Dataset, flat, linear, *, flat_tol=0.01, min_growth=5.0, line_tol=0.05) -> Verdict:
    r"""The criteria of :func:`stllr_memory` on measured ``temp_bytes`` (learner × n_steps): growth
    :math:`(\max_T m_T - m_{T_0})/m_{T_0}` <= ``flat_tol`` for each ``flat`` learner; growth
    :math:`m_{T_1}/m_{T_0}` >= ``min_growth`` and distance to the line through the end points <= ``line_tol`` for
    each ``linear`` learner."""
    ts = np.asarray(ds.n_steps, float)
    criteria = {}
    for name in tuple(flat) + tuple(linear):
        m = np.asarray(ds.temp_bytes.sel(learner=name), float)
        key = name.split("/")[-1]
        if name in tuple(linear):
            line = m[0] + (m[-1] - m[0]) * (ts - ts[0]) / (ts[-1] - ts[0])
            criteria[f"{key}_growth"] = at_least(m[-1] / m[0], min_growth)
            criteria[f"{key}_line_deviation"] = at_most(float(np.max(np.abs(m - line) / line)), line_tol)
            criteria[f"{key}_bytes_per_step"] = reported(float((m[-1] - m[0]) / (ts[-1] - ts[0])))
        else:
            criteria[f"{key}_growth"] = at_most(float((m.max() - m[0]) / m[0]), flat_tol)
            criteria[f"{key}_temp_bytes"] = reported(float(m[-1]))
    return Verdict.from_criteria(**criteria)
