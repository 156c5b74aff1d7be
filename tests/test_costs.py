"""XLA's cost counts of a compiled training step (dynlearn.analysis.costs) scale as the arithmetic says."""

import numpy as np
import pytest

from dynlearn.analysis.costs import learner_costs, step_costs


@pytest.fixture(scope="module")
def bp_counts():
    return {w: step_costs("bp", (16, w, w, 10), batch=8, time_repeats=0) for w in (32, 64, 128)}


def test_bp_macs_grow_with_width_as_the_matmuls(bp_counts):
    # MLP 16-w-w-10: MACs ~ batch (16 w + w^2 + 10 w) per pass; the w^2 layer takes over as w grows,
    # so doubling w multiplies MACs by between 2 (linear layers) and 4 (the square layer), approaching 4
    r1 = bp_counts[64]["macs"] / bp_counts[32]["macs"]
    r2 = bp_counts[128]["macs"] / bp_counts[64]["macs"]
    assert 2.0 < r1 < r2 < 4.0, (r1, r2)
    assert r2 > 3.0


def test_bp_has_no_loop_and_memory_grows(bp_counts):
    assert all(c["loops"] == 0 for c in bp_counts.values())
    # parameters (+ Adam's two moments) dominate the arguments: ~3 w^2 floats for the square layer
    ratio = bp_counts[128]["argument_bytes"] / bp_counts[64]["argument_bytes"]
    assert 3.0 < ratio < 4.2, ratio
    assert bp_counts[128]["peak_bytes"] >= bp_counts[128]["argument_bytes"]


def test_bp_macs_scale_with_batch():
    a = step_costs("bp", (16, 64, 64, 10), batch=8, time_repeats=0)["macs"]
    b = step_costs("bp", (16, 64, 64, 10), batch=32, time_repeats=0)["macs"]
    assert 3.0 < b / a < 4.05, b / a  # matmul MACs are linear in the batch; the optimiser's are not


def test_dataset_and_loop_flag():
    ds = learner_costs(["bp", "pc/clamped"], (8, 16, 16, 4), batch=4, time_repeats=1)
    assert list(ds.learner.values) == ["bp", "pc/clamped"]
    assert float(ds.loops.sel(learner="pc/clamped")) > 0  # the relaxation is a while loop: a lower bound
    assert np.all(ds.macs.values > 0) and np.all(np.isfinite(ds.step_ms.values))
