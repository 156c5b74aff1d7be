"""The benchmark's split: every contestant reads the same arrays; standardised inputs use the training statistics."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from compare import _save_split  # noqa: E402

from dynlearn.data import load  # noqa: E402


def test_standardised_split_uses_the_training_pixels_statistics(tmp_path):
    _save_split("digits", tmp_path / "unit.npz")
    _save_split("digits", tmp_path / "std.npz", "standardised")
    u, z = np.load(tmp_path / "unit.npz"), np.load(tmp_path / "std.npz")
    d = load("digits")
    np.testing.assert_array_equal(u["x_train"], d.x_train.reshape(len(d.x_train), -1))
    m, s = float(u["x_train"].mean()), float(u["x_train"].std())
    assert abs(float(z["x_train"].mean())) < 1e-5 and float(z["x_train"].std()) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(z["x_test"], (u["x_test"] - m) / s, rtol=1e-5, atol=1e-6)  # not the test set's own
    assert abs(float(z["x_test"].mean())) > 1e-4
    for k in ("y_train", "labels_test"):
        np.testing.assert_array_equal(u[k], z[k])


def test_an_unknown_input_scaling_is_refused_naming_it(tmp_path):
    with pytest.raises(SystemExit, match="--inputs must be one of unit, standardised, got 'zscore'"):
        _save_split("digits", tmp_path / "x.npz", "zscore")
    assert not (tmp_path / "x.npz").exists()
