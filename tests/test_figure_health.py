"""The figure health check finds empty and non-finite plotted series from matplotlib's own data, and only those."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.figure import Figure

from dynlearn.figures._health import plotted_problems


def _fig():
    fig = Figure()
    return fig, fig.subplots(1, 2)


def test_a_clean_figure_has_no_problems():
    fig, (a, b) = _fig()
    x = np.linspace(1, 10, 20)
    a.plot(x, x**2, label="curve")
    a.plot([], [], "k--", label="a legend entry for a style")
    a.fill_between(x, x, 2 * x, alpha=0.2)
    a.axhline(3.0, ls="--")
    a.axvline(2.0)
    a.scatter(x, x)
    a.set_yscale("log")
    b.bar(np.arange(3), [1.0, 2.0, 3.0])
    b.imshow(np.ones((3, 3)))
    assert plotted_problems(fig) == []


@pytest.mark.parametrize(
    "draw, expected",
    [
        (lambda a: a.plot([1, 2, 3], [1.0, np.nan, 2.0], label="half"), "'half' has 1 non-finite of 3 points"),
        (lambda a: a.plot([], []), "line #0 is empty"),
        (lambda a: a.plot([1, 2], [np.nan, np.inf], label="gone"), "'gone' has no finite point"),
        (lambda a: (a.plot([1, 2], [1.0, 0.0], label="to zero"), a.set_yscale("log")), "'to zero' has values <= 0 on a log y axis"),
        (lambda a: a.bar([0, 1], [1.0, np.nan]), "bar set #0 has 1 non-finite of 2 points"),
        (lambda a: a.fill_between([1, 2], [np.nan, np.nan], [1, 2]), "band #0 is empty"),
        (lambda a: a.scatter([1, 2], [np.nan, 1.0], label="dots"), "'dots' has 1 non-finite"),
        (lambda a: a.imshow(np.full((2, 2), np.nan)), "has no finite pixel"),
    ],
)
def test_each_kind_of_bad_series_is_named(draw, expected):
    fig, (a, b) = _fig()
    b.plot([1, 2], [1, 2])  # a good panel beside the bad one
    draw(a)
    problems = plotted_problems(fig)
    assert len(problems) == 1 and expected in problems[0] and problems[0].startswith("panel 1"), problems


def test_make_figure_records_and_warns(tmp_path, monkeypatch):
    import xarray as xr

    from dynlearn.figures import FIGURES, FigureSpec, make_figure

    def broken(quick=True, seed=0):
        fig = Figure()
        fig.subplots().plot([1, 2], [np.nan, np.nan], label="lost")
        return fig, xr.Dataset({"v": ("i", [np.nan, np.nan])}), {}

    FIGURES._load()
    monkeypatch.setitem(FIGURES._entries, "broken_for_test", FigureSpec("broken_for_test", broken, "test"))
    with pytest.warns(UserWarning, match="figure broken_for_test: panel 1: line 'lost' has no finite point"):
        _, nc = make_figure("broken_for_test", out=tmp_path)
    with xr.open_dataset(nc) as ds:
        assert "no finite point" in ds.attrs["plotted_problems"]


@pytest.mark.slow
def test_every_registered_figure_plots_only_finite_series(tmp_path):
    """Render every figure (quick) and read its data back: no plotted series empty or non-finite, nothing <= 0 on a
    log axis. Slow (the whole main job's figures); the main job prints the same findings as warnings."""
    import warnings

    import xarray as xr

    from dynlearn.figures import figure_specs, make_figure

    bad = {}
    for name in figure_specs():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, nc = make_figure(name, quick=True, out=tmp_path)
        with xr.open_dataset(nc) as ds:
            if ds.attrs.get("plotted_problems"):
                bad[name] = ds.attrs["plotted_problems"]
    assert not bad, bad
