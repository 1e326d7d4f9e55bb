"""Tests for the matplotlib helpers (ratiokit/plot.py)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ratiokit import plot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _agg_backend(monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")


def _run_python(code):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )


def _legend(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_import_ratiokit_does_not_import_matplotlib_or_pykeops():
    proc = _run_python(
        "import ratiokit, sys; "
        "assert 'matplotlib' not in sys.modules and 'pykeops' not in sys.modules"
    )
    assert proc.returncode == 0, proc.stderr


def test_plot_module_leaves_pyplot_alone(tmp_path):
    # Figures are plain Figure objects: no pyplot import, no global figure manager.
    target = tmp_path / "sub" / "f.png"
    proc = _run_python(
        "import sys, numpy as np; from ratiokit import plot; "
        "x = np.random.default_rng(0).normal(size=(50, 2)); "
        "fig = plot.mmd_demo_figure([('a', x, x + 1)], [1.0], [0.1]); "
        f"plot.save_figure(fig, {str(target)!r}); "
        "assert 'matplotlib.pyplot' not in sys.modules"
    )
    assert proc.returncode == 0, proc.stderr
    assert target.read_bytes()[:8] == PNG_MAGIC


def test_plot_samples_2d_scatter():
    gen = np.random.default_rng(0)
    ax = plot.plot_samples(gen.normal(size=(120, 2)), gen.normal(size=(80, 2)), title="two")
    assert isinstance(ax, Axes)
    assert len(ax.collections) == 2  # one scatter per sample
    assert [len(c.get_offsets()) for c in ax.collections] == [120, 80]
    assert len(ax.patches) == 0
    assert _legend(ax) == ["P (n=120)", "Q (n=80)"]
    assert ax.get_title() == "two"


def test_plot_samples_1d_histograms_on_shared_bins():
    gen = np.random.default_rng(1)
    ax = plot.plot_samples(gen.normal(size=200), gen.normal(1.0, 1.0, size=(150, 1)))
    assert len(ax.patches) == 2  # one filled step histogram per sample
    assert len(ax.collections) == 0
    assert _legend(ax) == ["P (n=200)", "Q (n=150)"]
    left = [p.get_path().vertices[:, 0].min() for p in ax.patches]
    assert left[0] == left[1]


def test_plot_samples_draws_on_given_axes_and_accepts_tensors():
    fig, axes = plot.new_figure(2)
    x = torch.randn(30, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = plot.plot_samples(x, x + 1.0, ax=axes[1], labels=("data", "model"))
    assert out is axes[1]
    assert len(axes[0].collections) == 0
    assert _legend(out) == ["data (n=30)", "model (n=30)"]
    assert out.get_xlabel() == "x[0]" and out.get_ylabel() == "x[1]"


def test_plot_samples_thins_large_samples():
    gen = np.random.default_rng(2)
    big = plot.MAX_SCATTER_POINTS + 500
    ax = plot.plot_samples(gen.normal(size=(big, 2)), gen.normal(size=(10, 2)))
    assert [len(c.get_offsets()) for c in ax.collections] == [plot.MAX_SCATTER_POINTS, 10]
    assert _legend(ax)[0] == f"P (n={big})"


def test_plot_samples_rejects_bad_input():
    x = np.zeros((5, 2))
    with pytest.raises(ValueError, match=r"`x_q` must have the same number of features|features"):
        plot.plot_samples(x, np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"`x_p` must be a 2-D array"):
        plot.plot_samples(np.zeros((2, 2, 2)), x)
    with pytest.raises(TypeError, match=r"`labels` must be a pair of strings"):
        plot.plot_samples(x, x, labels=("P",))
    with pytest.raises(TypeError, match=r"`labels` must be a pair of strings"):
        plot.plot_samples(x, x, labels="PQ")
    with pytest.raises(TypeError, match=r"`ax` must be a matplotlib Axes"):
        plot.plot_samples(x, x, ax="left")


def test_new_figure_grid():
    fig, axes = plot.new_figure(3, 2, width=2.0, height=1.5)
    assert isinstance(fig, Figure)
    assert axes.shape == (6,)
    assert tuple(fig.get_size_inches()) == (6.0, 3.0)
    with pytest.raises(ValueError, match=r"`ncols` must be an integer >= 1; got 0"):
        plot.new_figure(0)


def test_plot_null_distribution():
    null = np.random.default_rng(3).normal(size=300)
    ax = plot.plot_null_distribution(null, 2.5, label="MMD^2")
    assert len(ax.patches) == 1 and len(ax.lines) == 1
    assert ax.lines[0].get_xdata()[0] == 2.5
    assert _legend(ax) == ["null (300 draws)", "MMD^2 = 2.5"]
    with pytest.raises(ValueError, match=r"`statistic` must be a finite number"):
        plot.plot_null_distribution(null, float("nan"))
    with pytest.raises(ValueError, match=r"`null_distribution` must be a 1-D array"):
        plot.plot_null_distribution(np.zeros((10, 2)), 1.0)


def test_plot_statistics_bars_in_null_units():
    ax = plot.plot_statistics(["shifted", "same"], [0.03, -0.0003], [0.0003, 0.0003])
    heights = [bar.get_height() for bar in ax.containers[0]]
    assert heights == pytest.approx([100.0, -1.0])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["shifted", "same"]
    assert ax.get_yscale() == "symlog"
    with pytest.raises(ValueError, match=r"`null_sds` finite and positive"):
        plot.plot_statistics(["a"], [1.0], [0.0])
    with pytest.raises(ValueError, match=r"of one length; got 2, 1 and 1"):
        plot.plot_statistics(["a", "b"], [1.0], [1.0])


def test_mmd_demo_figure_and_save(tmp_path):
    gen = np.random.default_rng(4)
    x, y = gen.normal(size=(60, 2)), gen.normal(size=(60, 2))
    fig = plot.mmd_demo_figure(
        [("shifted", x + 1.0, y), ("same", x, y)],
        [0.2, 0.001],
        [0.01, 0.01],
        labels=[("P", "Q"), ("Q", "Q'")],
        title="demo",
    )
    assert len(fig.axes) == 3
    assert _legend(fig.axes[1]) == ["Q (n=60)", "Q' (n=60)"]
    assert fig.get_suptitle() == "demo"
    path = plot.save_figure(fig, tmp_path / "new" / "demo.png")
    assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 1000
    with pytest.raises(ValueError, match=r"one per pair; got 1 for 2 pairs"):
        plot.mmd_demo_figure(
            [("a", x, y), ("b", x, y)], [1.0, 1.0], [1.0, 1.0], labels=[("P", "Q")]
        )
    with pytest.raises(TypeError, match=r"`fig` must be a matplotlib Figure"):
        plot.save_figure("fig", tmp_path / "x.png")


def test_fit_plot_draws_the_bootstrap_correlation_with_parameter_names():
    from ratiokit.results import FitResult

    corr = np.array([[1.0, 0.97, -0.2], [0.97, 1.0, np.nan], [-0.2, np.nan, 1.0]])
    result = FitResult(
        theta=np.array([1.0, 2.0, 3.0]),
        param_names=("mu", "sigma", "nu"),
        loss=0.1,
        converged=True,
        method="mmd",
        kind="numpy",
        n_steps=2,
        n_simulations=20,
        wall_time=0.1,
        confidence_interval=np.array([[0.5, 1.5], [1.5, 2.5], [2.5, 3.5]]),
        correlation=corr,
        history={"loss": np.array([2.0, 1.0]), "theta": np.ones((2, 3))},
        data=np.zeros((4, 1)),
    )  # loaded without its simulator: no marginal panels
    drawn = result.plot()
    titles = [ax.get_title() for ax in drawn]
    assert titles == ["mmd loss", "mu", "sigma", "nu", "bootstrap correlation"]
    # The spare cell of the grid is hidden and not returned.
    assert [ax.get_visible() for ax in drawn[0].figure.axes] == [True] * 5 + [False] * 3
    ax = drawn[4]
    np.testing.assert_array_equal(ax.images[0].get_array().filled(np.nan), corr)
    assert ax.images[0].get_clim() == (-1.0, 1.0)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["mu", "sigma", "nu"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["mu", "sigma", "nu"]
    cells = [t.get_text() for t in ax.texts]
    assert cells == ["1.00", "0.97", "-0.20", "0.97", "1.00", "nan", "-0.20", "nan", "1.00"]
    # One parameter has no correlation to draw.
    single = FitResult(**{**result.__dict__, "param_names": ("mu",), "theta": np.ones(1),
                          "confidence_interval": None, "correlation": np.ones((1, 1)),
                          "history": {}})  # fmt: skip
    assert [ax.get_title() for ax in single.plot()] == ["mmd loss", "mu"]
    # Panels of the user's own: one Axes per panel, in order, or a TypeError naming `ax`.
    mine = plot.new_figure(2)[1]
    assert list(single.plot(ax=mine)) == list(mine) and mine[1].get_title() == "mu"
    with pytest.raises(TypeError, match=r"`ax` must be 2 matplotlib Axes \(one per panel\)"):
        single.plot(ax=mine[0])


def _results():
    """A hand-built result of each kind whose ``.plot`` follows the convention, with the
    number of panels it draws."""
    from ratiokit.results import BenchmarkResult, RatioDiagnostics, TwoSampleTestResult

    test = TwoSampleTestResult(0.5, 0.2, np.linspace(0.0, 1.0, 20), "mmd", "greater", 20)
    diag = RatioDiagnostics(
        1.0, 0.1, 1.0, 0.1, 50.0, 50.0, np.array([0.0, 0.5, 1.0]), np.array([0.3, 0.7]),
        np.array([0.2, 0.8]), np.array([5, 5]), 0.05, 0.5, 0.2, 30, 0.9, 10, 10, "ulsif",
        reweighted_test=test,
    )  # fmt: skip
    bench = BenchmarkResult(
        ("method", "problem", "n", "seed", "time", "note"),
        (("ulsif", "a", 10, 0, 0.5, ""), ("ulsif", "b", 10, 0, 0.7, "")),
    )
    return [(test, 1), (diag, 3), (bench, 2)]


def test_every_plot_takes_ax_and_returns_what_it_drew_on():
    # The convention: `ax` (an Axes, or a sequence of Axes for several panels; None for a new
    # figure) is the first parameter after the data, and what was drawn on comes back.
    import inspect

    for name in plot.__all__:
        if name.startswith("plot_") and name != "plot_fit":  # plot_fit: harmonised later
            params = inspect.signature(getattr(plot, name)).parameters
            assert params["ax"].default is None and "axes" not in params, name
    for result, n_panels in _results():
        params = list(inspect.signature(result.plot).parameters)
        assert params[0] == "ax", type(result).__name__
        drawn = result.plot()
        assert not isinstance(drawn, Figure)
        if n_panels == 1:
            assert isinstance(drawn, Axes) and result.plot(ax=drawn) is drawn
        else:
            assert isinstance(drawn, np.ndarray) and drawn.shape == (n_panels,)
            assert all(isinstance(ax, Axes) for ax in drawn)
            _, mine = plot.new_figure(n_panels)
            again = result.plot(ax=list(mine))  # any sequence of Axes
            assert all(a is b for a, b in zip(again, mine, strict=True))
            with pytest.raises(TypeError, match=rf"`ax` must be {n_panels} matplotlib Axes"):
                result.plot(ax=mine[0])
