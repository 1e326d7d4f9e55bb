"""Matplotlib helpers, imported only when a plot is asked for.

``import ratiokit`` never imports this module or matplotlib. Figures are built as
:class:`matplotlib.figure.Figure` objects, not through pyplot, so no global figure manager or
backend is touched: :func:`save_figure` renders with the file format's own canvas (Agg for
PNG), and a figure can still be shown in a notebook or added to a pyplot session by the
caller.

One convention for every ``plot_*`` helper and every result's ``.plot``: ``ax`` is where to
draw, a matplotlib Axes (or, for a figure of several panels, a sequence or array of Axes,
one per panel), and None makes a new figure; the return value is what was drawn on, the Axes
or an ndarray of Axes, never a Figure (``axes[0].figure`` is the figure). So the front doors
(``TwoSampleTestResult.plot()``, ``RatioDiagnostics.plot()``, the ``ratiokit demo`` command)
compose them into larger figures. :func:`new_figure` and :func:`mmd_demo_figure` build a
whole Figure, and :func:`save_figure` writes one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullLocator

from ratiokit._validation import as_sample, as_sample_pair, check_int, check_positive

__all__ = [
    "mmd_demo_figure",
    "new_figure",
    "plot_benchmark",
    "plot_coverage",
    "plot_fit",
    "plot_null_distribution",
    "plot_pairs",
    "plot_ratio_diagnostics",
    "plot_samples",
    "plot_sbc",
    "plot_statistics",
    "save_figure",
]

#: Colours of the first and second sample (P, Q) in every plot.
P_COLOR, Q_COLOR = "C0", "C1"
#: Scatter plots draw at most this many points per sample (a seeded subsample beyond).
MAX_SCATTER_POINTS = 3000


def new_figure(
    ncols: int = 1, nrows: int = 1, *, width: float = 4.2, height: float = 3.8
) -> tuple[Figure, np.ndarray]:
    """Create a figure with a grid of axes, outside pyplot's global state.

    Parameters
    ----------
    ncols : int, default=1
        Number of columns of axes.
    nrows : int, default=1
        Number of rows of axes.
    width : float, default=4.2
        Width of one panel in inches.
    height : float, default=3.8
        Height of one panel in inches.

    Returns
    -------
    fig : Figure
        The figure, with a constrained layout.
    axes : ndarray of Axes of shape (nrows * ncols,)
        The panels in row-major order.

    Examples
    --------
    >>> fig, axes = new_figure(3)
    >>> axes.shape, fig.get_size_inches().round(1).tolist()
    ((3,), [12.6, 3.8])
    """
    ncols = check_int(ncols, "ncols", minimum=1)
    nrows = check_int(nrows, "nrows", minimum=1)
    width = check_positive(width, "width")
    height = check_positive(height, "height")
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes.ravel()


def _axes(ax: Axes | None) -> Axes:
    if ax is None:
        return new_figure()[1][0]
    if not isinstance(ax, Axes):
        raise TypeError(f"`ax` must be a matplotlib Axes or None; got {type(ax).__name__}.")
    return ax


def _panels(ax: Any, n: int, what: str, width: float, height: float) -> np.ndarray:
    """``ax`` as an ndarray of ``n`` Axes (one per ``what``), or a new row of ``n`` panels."""
    if ax is None:
        return new_figure(n, width=width, height=height)[1]
    axes = np.asarray(ax, dtype=object).ravel()
    if axes.size != n or not all(isinstance(one, Axes) for one in axes):
        raise TypeError(
            f"`ax` must be {n} matplotlib Axes ({what}) or None; got {axes.size} item(s) of "
            f"type {sorted({type(one).__name__ for one in axes})}."
        )
    return axes


def _to_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy()


def _thin(x: np.ndarray, max_points: int, seed: int) -> np.ndarray:
    """At most ``max_points`` rows of ``x``, a seeded subsample without replacement."""
    if x.shape[0] <= max_points:
        return x
    keep = np.random.default_rng(seed).choice(x.shape[0], size=max_points, replace=False)
    return x[np.sort(keep)]


def plot_samples(
    x_p: Any,
    x_q: Any,
    ax: Axes | None = None,
    labels: tuple[str, str] = ("P", "Q"),
    title: str | None = None,
) -> Axes:
    """Draw two samples: a scatter of their first two features, or histograms for 1-D data.

    Parameters
    ----------
    x_p : array-like or Tensor of shape (n, d) or (n,)
        First sample (drawn in colour ``C0``).
    x_q : array-like or Tensor of shape (m, d) or (m,)
        Second sample (drawn in colour ``C1``), with the same number of features.
    ax : Axes, default=None
        Where to draw; default: the single panel of a new figure (``ax.figure``).
    labels : tuple of two str, default=("P", "Q")
        Legend entries of the two samples.
    title : str, default=None
        Title of the panel.

    Returns
    -------
    Axes
        The panel drawn on. For d >= 2 it holds one scatter collection per sample (features
        beyond the first two are not shown; each sample is thinned to at most 3000 points by
        a fixed-seed subsample); for d = 1 one filled step histogram per sample, on shared bins.

    Raises
    ------
    ValueError, TypeError
        For invalid samples (see :func:`ratiokit.discrepancy`), ``labels`` that are not two
        strings, or an ``ax`` that is not an Axes.

    Examples
    --------
    >>> import numpy as np
    >>> gen = np.random.default_rng(0)
    >>> ax = plot_samples(gen.normal(size=(100, 2)), gen.normal(1.0, 1.0, size=(80, 2)))
    >>> len(ax.collections), [t.get_text() for t in ax.get_legend().get_texts()]
    (2, ['P (n=100)', 'Q (n=80)'])
    """
    a, b = as_sample_pair(x_p, x_q, min_samples=1)
    labels = _check_labels(labels)
    ax = _axes(ax)
    p, q = _to_numpy(a), _to_numpy(b)
    if p.shape[1] == 1:
        pooled = np.concatenate([p[:, 0], q[:, 0]])
        bins = np.histogram_bin_edges(pooled, bins="auto")
        bins = bins if len(bins) <= 81 else np.linspace(pooled.min(), pooled.max(), 81)
        for values, label, color in ((p[:, 0], labels[0], P_COLOR), (q[:, 0], labels[1], Q_COLOR)):
            ax.hist(
                values,
                bins=bins,
                density=True,
                histtype="stepfilled",
                alpha=0.45,
                color=color,
                edgecolor=color,
                label=f"{label} (n={len(values)})",
            )
        ax.set_xlabel("x")
        ax.set_ylabel("density")
        ax.legend(loc="upper left", fontsize="small")
    else:
        n_max = max(p.shape[0], q.shape[0])
        size = float(np.clip(5000.0 / min(n_max, MAX_SCATTER_POINTS), 2.0, 16.0))
        for k, (values, label, color) in enumerate(
            ((p, labels[0], P_COLOR), (q, labels[1], Q_COLOR))
        ):
            shown = _thin(values, MAX_SCATTER_POINTS, seed=k)
            ax.scatter(
                shown[:, 0],
                shown[:, 1],
                s=size,
                alpha=0.5,
                color=color,
                linewidths=0,
                label=f"{label} (n={values.shape[0]})",
            )
        ax.set_xlabel("x[0]")
        ax.set_ylabel("x[1]")
        ax.set_aspect("equal", adjustable="datalim")
        ax.legend(loc="upper left", fontsize="small", markerscale=max(1.0, 16.0 / size) ** 0.5)
    if title is not None:
        ax.set_title(title)
    return ax


def plot_null_distribution(
    null_distribution: Any,
    statistic: float,
    ax: Axes | None = None,
    *,
    label: str = "observed",
    color: str = "C3",
    title: str | None = None,
) -> Axes:
    """Draw a null distribution as a histogram and the observed statistic as a vertical line.

    Parameters
    ----------
    null_distribution : array-like of shape (k,)
        Statistics under the null hypothesis (e.g. from permutations), at least 2 values.
    statistic : float
        The observed statistic.
    ax : Axes, default=None
        Where to draw; default: the single panel of a new figure.
    label : str, default="observed"
        Legend entry of the observed statistic (its value is appended).
    color : str, default="C3"
        Colour of the histogram and the line.
    title : str, default=None
        Title of the panel.

    Returns
    -------
    Axes
        The panel, holding one histogram patch and one line.

    Raises
    ------
    ValueError
        If ``null_distribution`` is not a finite 1-D sample of at least 2 values, or
        ``statistic`` is not finite.

    Examples
    --------
    >>> import numpy as np
    >>> ax = plot_null_distribution(np.random.default_rng(0).normal(size=200), 3.5)
    >>> len(ax.patches), len(ax.lines)
    (1, 1)
    """
    null = _to_numpy(as_sample(null_distribution, "null_distribution"))
    if null.shape[1] != 1:
        raise ValueError(
            "`null_distribution` must be a 1-D array of shape (n_statistics,); "
            f"got shape {null.shape}."
        )
    statistic = float(statistic)
    if not np.isfinite(statistic):
        raise ValueError(f"`statistic` must be a finite number; got {statistic!r}.")
    ax = _axes(ax)
    ax.hist(
        null[:, 0],
        bins=min(40, max(5, null.shape[0] // 5)),
        density=True,
        histtype="stepfilled",
        alpha=0.35,
        color=color,
        edgecolor=color,
        label=f"null ({null.shape[0]} draws)",
    )
    ax.axvline(statistic, color=color, linewidth=2.0, label=f"{label} = {statistic:.3g}")
    ax.set_xlabel("statistic")
    ax.set_ylabel("density")
    ax.legend(loc="upper right", fontsize="small")
    if title is not None:
        ax.set_title(title)
    return ax


def plot_ratio_diagnostics(diagnostics: Any, ax: Any = None) -> np.ndarray:
    """Draw a :class:`~ratiokit.results.RatioDiagnostics` in three panels.

    Left: the balancing means ``E_q[r]`` and ``E_p[1/r]`` with 95% intervals (1.96 standard
    errors) against the target 1. Middle: the reliability curve of the implied classifier,
    observed fraction of points from P against mean predicted ``D`` per bin, with binomial
    95% intervals and the diagonal. Right: the reweighting test's null distribution and
    statistic (a note instead when too few points were kept).

    Parameters
    ----------
    diagnostics : RatioDiagnostics
    ax : sequence of 3 Axes, default=None
        Where to draw, one Axes per panel; default: the panels of a new figure.

    Returns
    -------
    ndarray of Axes of shape (3,)
        The panels drawn on.

    Raises
    ------
    TypeError
        If ``ax`` is not three matplotlib Axes.
    """
    axes = _panels(ax, 3, "one per panel", width=4.0, height=3.6)
    d = diagnostics
    panel = axes[0]
    means = [d.mean_ratio_q, d.mean_inverse_ratio_p]
    half = [1.96 * d.se_ratio_q, 1.96 * d.se_inverse_ratio_p]
    shown = [m if np.isfinite(m) else np.nan for m in means]
    panel.errorbar([0, 1], shown, yerr=half, fmt="o", color="C0", capsize=4)
    panel.axhline(1.0, color="0.4", linestyle="--", linewidth=1.0, label="target 1")
    if any(not abs(m - 1.0) + h < 2.0 for m, h in zip(means, half, strict=True)):
        panel.set_yscale("symlog", linthresh=1.0)  # far-off means stay on the panel
    panel.set_xticks([0, 1], ["E_q[r]", "E_p[1/r]"])
    panel.set_xlim(-0.6, 1.6)
    panel.set_title("balancing (95% intervals)")
    panel.legend(loc="best", fontsize="small")
    panel = axes[1]
    used = d.counts > 0
    pred, obs, n = d.predicted[used], d.observed[used], d.counts[used]
    band = 1.96 * np.sqrt(np.clip(pred * (1.0 - pred), 0.0, None) / n)
    panel.plot([0.0, 1.0], [0.0, 1.0], color="0.4", linestyle="--", linewidth=1.0)
    panel.errorbar(pred, obs, yerr=band, fmt="o-", color="C0", capsize=3, markersize=4)
    panel.set_xlim(0.0, 1.0)
    panel.set_ylim(0.0, 1.0)
    panel.set_xlabel("predicted D = r n_p / (r n_p + n_q)")
    panel.set_ylabel("observed fraction from P")
    panel.set_title(f"calibration (error {d.calibration_error:.3f})")
    panel = axes[2]
    test = d.reweighted_test
    if test is None:
        panel.text(0.5, 0.5, f"{d.n_kept} point(s) kept:\nno test", ha="center", va="center")
        panel.set_axis_off()
    else:
        title = f"P vs reweighted Q ({d.n_kept} kept): p = {test.pvalue:.3g}"
        if d.checks["reweighted Q ~ P"] is None:
            title += f" (inconclusive: power <= {d.reweighted_power:.2g})"
        plot_null_distribution(test.null_distribution, test.statistic, ax=panel, title=title)
    return axes


def _check_labels(labels: Any) -> tuple[str, str]:
    if (
        isinstance(labels, str)
        or not isinstance(labels, Sequence)
        or len(labels) != 2
        or not all(isinstance(s, str) for s in labels)
    ):
        raise TypeError(f"`labels` must be a pair of strings; got {labels!r}.")
    return labels[0], labels[1]


def plot_statistics(
    names: Sequence[str],
    statistics: Sequence[float],
    null_sds: Sequence[float],
    ax: Axes | None = None,
    *,
    title: str | None = "signal vs. null spread",
) -> Axes:
    """Bars of statistics in units of their null standard deviation, with the +-2 sd band.

    The scale is linear within 4 sd of 0 and logarithmic beyond, so a statistic at noise
    level and one hundreds of sd away both show; a bar inside the shaded band is
    indistinguishable from noise.

    Parameters
    ----------
    names : sequence of str
        One tick label per statistic.
    statistics : sequence of float
        The statistics (e.g. MMD^2), finite.
    null_sds : sequence of float
        The standard deviation of each statistic under the null hypothesis P = Q (positive).
    ax : Axes, default=None
        Where to draw; default: the single panel of a new figure.
    title : str or None, default="signal vs. null spread"
        Title of the panel.

    Returns
    -------
    Axes
        The panel; ``ax.containers[0]`` holds one bar per statistic, annotated with its
        value.

    Raises
    ------
    ValueError
        If the sequences are empty or differ in length, a statistic is not finite, or a null
        standard deviation is not positive.

    Examples
    --------
    >>> ax = plot_statistics(["shifted", "same"], [0.03, -0.0002], [0.0003, 0.0003])
    >>> len(ax.containers[0])  # one bar per statistic
    2
    """
    if not (len(names) == len(statistics) == len(null_sds)) or len(names) == 0:
        raise ValueError(
            "`names`, `statistics` and `null_sds` must be non-empty and of one length; "
            f"got {len(names)}, {len(statistics)} and {len(null_sds)}."
        )
    values = np.asarray(statistics, dtype=float)
    sds = np.asarray(null_sds, dtype=float)
    if not (np.all(np.isfinite(values)) and np.all(np.isfinite(sds)) and np.all(sds > 0)):
        raise ValueError(
            "`statistics` must be finite and `null_sds` finite and positive; "
            f"got {values.tolist()} and {sds.tolist()}."
        )
    ax = _axes(ax)
    z = values / sds
    positions = np.arange(len(names))
    ax.axhspan(-2.0, 2.0, color="0.6", alpha=0.35, linewidth=0, label="null: within ±2 sd")
    ax.bar(positions, z, width=0.6, color="C2", label="statistic / null sd")
    ax.axhline(0.0, color="0.3", linewidth=0.8)
    for x, v, zi in zip(positions, values, z, strict=True):
        ax.annotate(
            f"{v:.2g}\n({zi:.1f} sd)",
            (x, max(zi, 2.0)),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize="small",
        )
    low = min(-4.0, float(z.min()) * 1.5)
    high = max(8.0, float(z.max()) * 4.0)
    ax.set_yscale("symlog", linthresh=4.0)
    ax.set_ylim(low, high)
    # Ticks at the band's edges and at powers of ten beyond the linear part.
    decades = [10.0**k for k in range(1, int(np.log10(max(high, -low))) + 1)]
    ticks = [-d for d in decades if -d >= low][::-1] + [-2.0, 0.0, 2.0] + decades
    ax.set_yticks([t for t in ticks if low <= t <= high])
    ax.yaxis.set_major_formatter(FuncFormatter(lambda t, _pos: f"{t:g}"))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_xticks(positions, list(names))
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel("statistic in null standard deviations")
    ax.legend(loc="upper right", fontsize="small")
    if title is not None:
        ax.set_title(title)
    return ax


def mmd_demo_figure(
    pairs: Sequence[tuple[str, Any, Any]],
    statistics: Sequence[float],
    null_sds: Sequence[float],
    *,
    labels: tuple[str, str] | Sequence[tuple[str, str]] = ("P", "Q"),
    title: str | None = None,
) -> Figure:
    """One panel of samples per pair, and a panel comparing their statistics to the null.

    The last panel is :func:`plot_statistics`: each pair's statistic in units of its null
    standard deviation.

    Parameters
    ----------
    pairs : sequence of (str, array-like, array-like)
        ``(name, x_p, x_q)`` for each pair (see :func:`plot_samples`).
    statistics : sequence of float
        The statistic (e.g. MMD^2) of each pair.
    null_sds : sequence of float
        The standard deviation of each pair's statistic under the null hypothesis P = Q
        (positive).
    labels : pair of str, or a sequence of them (one per pair), default=("P", "Q")
        Legend entries of the two samples of each pair.
    title : str, default=None
        Title of the whole figure.

    Returns
    -------
    Figure
        ``len(pairs) + 1`` panels in one row.

    Raises
    ------
    ValueError
        If ``pairs``, ``statistics``, ``null_sds`` (and a per-pair ``labels``) differ in
        length or are empty, a statistic is not finite or a null standard deviation is not
        positive.

    Examples
    --------
    >>> import numpy as np
    >>> gen = np.random.default_rng(0)
    >>> x, y = gen.normal(size=(50, 2)), gen.normal(size=(50, 2))
    >>> fig = mmd_demo_figure([("same", x, y)], [0.001], [0.004], labels=[("Q", "Q'")])
    >>> len(fig.axes)
    2
    """
    if len(labels) == 2 and all(isinstance(s, str) for s in labels):
        per_pair = [_check_labels(labels)] * len(pairs)
    else:
        per_pair = [_check_labels(pair_labels) for pair_labels in labels]
    if len(per_pair) != len(pairs):
        raise ValueError(
            f"`labels` must be one pair of strings or one per pair; got {len(per_pair)} "
            f"for {len(pairs)} pairs."
        )
    if not (len(pairs) == len(statistics) == len(null_sds)) or len(pairs) == 0:
        raise ValueError(
            "`pairs`, `statistics` and `null_sds` must be non-empty and of one length; "
            f"got {len(pairs)}, {len(statistics)} and {len(null_sds)}."
        )
    fig, axes = new_figure(len(pairs) + 1)
    for ax, (name, x_p, x_q), pair_labels in zip(axes, pairs, per_pair, strict=False):
        plot_samples(x_p, x_q, ax=ax, labels=pair_labels, title=name)
    plot_statistics([name for name, _, _ in pairs], statistics, null_sds, ax=axes[-1])
    if title is not None:
        fig.suptitle(title)
    return fig


#: A fit's figure draws at most this many parameter traces and marginals.
MAX_FIT_PANELS = 6


def plot_fit(result: Any, ax: Any = None, *, truth: Any = None, rng: Any = 0) -> np.ndarray:
    """Loss trace, one trace per parameter, the bootstrap correlation, and data against
    simulated marginals.

    Parameters
    ----------
    result : FitResult
        A fit from :func:`ratiokit.fit`.
    ax : sequence of Axes, default=None
        One matplotlib Axes per panel (their number is given under Returns); default: a new
        figure with the panels in rows of four.
    truth : array-like of shape (k,), default=None
        True parameters, drawn as dashed lines when known.
    rng : None, int or Generator, default=0
        Seeds the simulations of the marginal panels (as many points as the data).

    Returns
    -------
    ndarray of Axes
        The panels drawn on, in this order: the loss (with its running minimum for a search), the
        first six parameters (estimate and bootstrap interval as a band), the correlation
        matrix of their bootstrap replicates (a heatmap labelled with the parameter names
        and the values, when there are two parameters and a ``correlation``), and the first
        six features of the data against simulations at the estimate (left out for a
        result loaded without its simulator).

    Raises
    ------
    ValueError
        If ``truth`` does not hold one value per parameter.

    Examples
    --------
    >>> import numpy as np
    >>> from ratiokit import fit
    >>> from ratiokit.simulators import GaussianLocationScale
    >>> sim = GaussianLocationScale()
    >>> res = fit(sim, sim.sample(200, rng=0), theta0=[0.0, 1.0], kind="numpy", rng=0)
    >>> len(plot_fit(res, truth=sim.theta_true))  # loss, loc, scale, one marginal
    4
    """
    theta = None if result.theta is None else np.asarray(result.theta)
    names = list(result.param_names)[:MAX_FIT_PANELS]
    if truth is not None:
        truth = np.asarray(truth, dtype=np.float64).reshape(-1)
        if theta is None or truth.size != theta.size:
            size = 0 if theta is None else theta.size
            raise ValueError(f"`truth` must hold {size} parameters; got {truth.size}.")
    data = np.asarray(result.data)
    n_marginals = 0 if result.fitted is None else min(data.shape[1], MAX_FIT_PANELS)
    corr = None if result.correlation is None else np.asarray(result.correlation)
    n_corr = int(corr is not None and len(names) > 1)
    n_panels = 1 + len(names) + n_corr + n_marginals
    if ax is None:
        ncols = min(4, n_panels)
        grid = new_figure(ncols, -(-n_panels // ncols), width=3.6, height=3.0)[1]
        for spare in grid[n_panels:]:
            spare.set_visible(False)
        axes = grid[:n_panels]
    else:
        axes = _panels(ax, n_panels, "one per panel", 3.6, 3.0)
    loss = np.asarray(result.history.get("loss", []), dtype=np.float64)
    ax = axes[0]
    steps = np.arange(1, loss.size + 1)
    finite = np.where(np.isfinite(loss), loss, np.nan)
    ax.plot(steps, finite, lw=0.8, color="0.5", label="loss")
    if result.kind == "numpy" and loss.size:
        best = np.minimum.accumulate(np.where(np.isfinite(loss), loss, np.inf))
        ax.plot(steps, np.where(np.isfinite(best), best, np.nan), color="C3", label="best")
        ax.legend(fontsize="small")
    ax.set_xlabel("evaluation" if result.kind == "numpy" else "step")
    ax.set_title(f"{result.method} loss")
    thetas = np.asarray(result.history.get("theta", np.empty((0, len(names)))))
    for i, name in enumerate(names):
        ax = axes[1 + i]
        if thetas.size:
            ax.plot(np.arange(1, thetas.shape[0] + 1), thetas[:, i], lw=0.8, color="C0")
        ax.axhline(theta[i], color="C0", lw=1.5, label=f"estimate {theta[i]:.4g}")
        if result.confidence_interval is not None:
            low, high = result.confidence_interval[i]
            ax.axhspan(low, high, color="C0", alpha=0.15)
        if truth is not None:
            ax.axhline(truth[i], color="k", ls="--", lw=1.0, label=f"truth {truth[i]:.4g}")
        ax.set_title(name)
        ax.set_xlabel("evaluation" if result.kind == "numpy" else "step")
        ax.legend(fontsize="small")
    if n_corr:
        _plot_correlation(corr[: len(names), : len(names)], names, axes[1 + len(names)])
    sim = result.fitted.simulate(data.shape[0], rng=rng) if n_marginals else None
    for j in range(n_marginals):
        ax = plot_samples(
            data[:, j],
            sim[:, j],
            ax=axes[1 + len(names) + n_corr + j],
            labels=("data", "fitted"),
            title=f"feature {j}" if data.shape[1] > 1 else "data vs fitted",
        )
        # The central 99% of the pooled values: heavy tails would squash the histograms.
        low, high = np.quantile(np.r_[data[:, j], sim[:, j]], [0.005, 0.995])
        if high > low:
            ax.set_xlim(low - 0.05 * (high - low), high + 0.05 * (high - low))
    return axes


def _plot_correlation(corr: np.ndarray, names: list[str], ax: Axes) -> None:
    """A heatmap of a correlation matrix on [-1, 1], each cell labelled with its value."""
    ax.imshow(corr, vmin=-1.0, vmax=1.0, cmap="RdBu_r")
    ticks = np.arange(len(names))
    ax.set_xticks(ticks, names, rotation=45, ha="right")
    ax.set_yticks(ticks, names)
    for (i, j), value in np.ndenumerate(corr):
        color = "w" if abs(value) > 0.6 else "k"
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", color=color, fontsize="small")
    ax.set_title("bootstrap correlation")


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix), creating parent folders.

    Parameters
    ----------
    fig : Figure
        The figure to write.
    path : str or path-like
        Destination, e.g. ``"out/mmd_demo.png"``.
    dpi : int, default=120
        Resolution of raster formats.

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    TypeError
        If ``fig`` is not a matplotlib Figure.
    """
    if not isinstance(fig, Figure):
        raise TypeError(f"`fig` must be a matplotlib Figure; got {type(fig).__name__}.")
    dpi = check_int(dpi, "dpi", minimum=1)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    return out


def plot_benchmark(result: Any, ax: Any = None, *, metric: str | None = None) -> np.ndarray:
    """Draw a :class:`~ratiokit.results.BenchmarkResult`: ``metric`` against n per method.

    One panel per problem, one line per method through the means over seeds, with error bars
    of one standard error. Sizes are on a log scale; errors, MSEs and times too (when
    positive); rejection rates on [0, 1], with the level alpha for ``type_i_error``.

    Parameters
    ----------
    result : BenchmarkResult
    ax : sequence of Axes, default=None
        Where to draw, one Axes per problem; default: the panels of a new figure.
    metric : str, default=None
        One of ``result.metrics``; default: the first with a value.

    Returns
    -------
    ndarray of Axes of shape (n_problems,)
        The panels drawn on.

    Raises
    ------
    ValueError
        If ``metric`` is not one of ``result.metrics``.
    TypeError
        If ``ax`` is not one matplotlib Axes per problem.

    Examples
    --------
    >>> from ratiokit.benchmarking import benchmark
    >>> res = benchmark(["ulsif"], ["gaussian_shift"], [20, 40], seeds=2, metrics="time", rng=0)
    >>> plot_benchmark(res)[0].get_title()
    'gaussian_shift'
    """
    summary = result.summary()
    if metric is None:
        found = [m for m in result.metrics if any(np.isfinite(r[m]) for r in summary)]
        metric = (found or list(result.metrics))[0]
    if metric not in result.metrics:
        raise ValueError(f"`metric` must be one of {list(result.metrics)}; got {metric!r}.")
    problems = result.problems
    axes = _panels(ax, len(problems), "one per problem", width=4.4, height=3.6)
    rate = metric in ("power", "type_i_error")
    for panel, problem in zip(axes, problems, strict=True):
        drawn = []
        for k, method in enumerate(result.methods):
            rows = [r for r in summary if r["method"] == method and r["problem"] == problem]
            n = np.array([r["n"] for r in rows], dtype=np.float64)
            mean = np.array([r[metric] for r in rows], dtype=np.float64)
            se = np.array([r[f"{metric}_se"] for r in rows], dtype=np.float64)
            keep = np.isfinite(mean)
            if keep.any():
                order = np.argsort(n[keep])
                panel.errorbar(
                    n[keep][order],
                    mean[keep][order],
                    yerr=np.nan_to_num(se[keep][order]),
                    fmt="o-",
                    capsize=3,
                    markersize=4,
                    color=f"C{k % 10}",
                    label=method,
                )
                drawn.append(mean[keep])
        if metric == "type_i_error":
            panel.axhline(result.alpha, color="0.4", linestyle="--", linewidth=1.0, label="alpha")
        if len(result.sizes) > 1:
            panel.set_xscale("log")
        if rate:
            panel.set_ylim(-0.05, 1.05)
        elif drawn and (np.concatenate(drawn) > 0).all():
            panel.set_yscale("log")
        if not drawn:
            panel.text(0.5, 0.5, "no values", ha="center", va="center", transform=panel.transAxes)
        panel.set_xlabel("n (points per sample)")
        panel.set_ylabel(metric + (" (s)" if metric == "time" else ""))
        panel.set_title(problem)
        if panel.get_legend_handles_labels()[0]:
            panel.legend(fontsize="small")
    return axes


def plot_sbc(result: Any, ax: Any = None) -> np.ndarray:
    """Draw an :class:`~ratiokit.results.SBCResult`: a rank histogram per coordinate.

    Each panel shows the ranks per bin against the 99% interval of ``Binomial(n_sbc, p_b)``,
    ``p_b`` the bin's share of rank values: the band where a calibrated posterior's counts
    fall, bin by bin. A U shape means an overconfident posterior, a hump an underconfident
    one, a slope a biased one.

    Parameters
    ----------
    result : SBCResult
    ax : sequence of Axes, default=None
        One Axes per coordinate; default: the panels of a new figure.

    Returns
    -------
    ndarray of Axes of shape (d,)

    Raises
    ------
    TypeError
        If ``ax`` is not one matplotlib Axes per coordinate.
    """
    from scipy.stats import binom

    counts = result.bin_counts
    n_sbc = int(counts[0].sum())
    edges = result.bin_edges
    low, high = binom.interval(0.99, n_sbc, result.expected_counts / n_sbc)
    axes = _panels(ax, counts.shape[0], "one per coordinate", width=4.0, height=3.2)
    for j, panel in enumerate(axes):
        panel.stairs(high, edges, baseline=low, fill=True, color="0.85", label="99% band")
        panel.stairs(counts[j], edges, color=P_COLOR, linewidth=1.5, label="ranks")
        panel.set_xlim(edges[0], edges[-1])
        panel.set_xlabel(f"rank of theta[{j}] among {result.n_samples} draws")
        panel.set_ylabel("count")
        panel.set_title(f"theta[{j}]: chi-square p = {result.pvalue[j]:.3g}")
    axes[0].legend(fontsize="small")
    return axes


def plot_coverage(result: Any, ax: Axes | None = None) -> Axes:
    """Draw a :class:`~ratiokit.results.CoverageResult`: coverage against credibility.

    The diagonal is a calibrated posterior, and the shaded band the 99% binomial interval
    around it at each level; a curve below the band is an overconfident posterior, above it
    a conservative one.

    Parameters
    ----------
    result : CoverageResult
    ax : Axes, default=None
        Where to draw; default: a new figure.

    Returns
    -------
    Axes

    Raises
    ------
    TypeError
        If ``ax`` is not a matplotlib Axes or None.
    """
    ax = _axes(ax)
    ax.fill_between(
        result.levels, result.band_low, result.band_high, color="0.85", label="99% band"
    )
    ax.plot([0, 1], [0, 1], color="0.4", linestyle="--", linewidth=1.0, label="calibrated")
    ax.plot(result.levels, result.coverage, "o-", color=P_COLOR, markersize=3, label="posterior")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("credibility level")
    ax.set_ylabel("expected coverage")
    ax.legend(fontsize="small")
    return ax


def plot_pairs(
    theta: Any,
    ax: Any = None,
    *,
    reference: Any = None,
    truth: Any = None,
    names: Sequence[str] | None = None,
) -> np.ndarray:
    """A pair plot of draws: each coordinate's histogram and each pair's scatter.

    Panel (i, j) of the d x d grid shows coordinates j (x axis) against i (y axis) below the
    diagonal and the histogram of coordinate i on it; the panels above the diagonal are
    hidden. ``reference`` draws (e.g. an exact posterior's) are overlaid in the second
    colour, and ``truth`` is marked. Scatter panels draw at most
    :data:`MAX_SCATTER_POINTS` points per sample (a seeded subsample beyond).

    Parameters
    ----------
    theta : array-like of shape (n, d)
        The draws.
    ax : array of Axes of shape (d, d) or (d * d,), default=None
        Where to draw; default: a new figure.
    reference : array-like of shape (m, d), default=None
        Draws to compare with.
    truth : array-like of shape (d,), default=None
        A point to mark (the parameters the observation was simulated at).
    names : sequence of str, default=None
        Coordinate names; default ``theta[0]``, ``theta[1]``, ...

    Returns
    -------
    ndarray of Axes of shape (d, d)

    Raises
    ------
    TypeError
        If ``ax`` is not d * d matplotlib Axes or None.
    ValueError
        If the draws, ``reference``, ``truth`` or ``names`` do not have d coordinates.

    Examples
    --------
    >>> import numpy as np
    >>> draws = np.random.default_rng(0).normal(size=(500, 3))
    >>> plot_pairs(draws, truth=[0.0, 0.0, 0.0]).shape
    (3, 3)
    """
    a = _to_numpy(as_sample(theta, "theta"))
    d = a.shape[1]
    b = None if reference is None else _to_numpy(as_sample(reference, "reference"))
    if b is not None and b.shape[1] != d:
        raise ValueError(
            f"`theta` and `reference` must have the same number of coordinates; got {d} and "
            f"{b.shape[1]}."
        )
    point = None if truth is None else np.asarray(truth, dtype=np.float64).reshape(-1)
    if point is not None and point.size != d:
        raise ValueError(f"`truth` must have {d} coordinates; got {point.size}.")
    labels = [f"theta[{j}]" for j in range(d)] if names is None else [str(v) for v in names]
    if len(labels) != d:
        raise ValueError(f"`names` must hold {d} names; got {len(labels)}.")
    if ax is None:
        axes = new_figure(d, d, width=2.4, height=2.4)[1]
    else:
        axes = _panels(ax, d * d, "a d x d grid", width=2.4, height=2.4)
    grid = axes.reshape(d, d)
    samples = [(a, P_COLOR, "draws")] + ([] if b is None else [(b, Q_COLOR, "reference")])
    for i in range(d):
        for j in range(d):
            panel = grid[i, j]
            if j > i:
                panel.set_axis_off()
                continue
            for sample, color, _ in samples:
                if i == j:
                    panel.hist(sample[:, i], bins=40, density=True, histtype="step", color=color)
                else:
                    shown = _thin(sample, MAX_SCATTER_POINTS, seed=0)
                    panel.scatter(shown[:, j], shown[:, i], s=2, alpha=0.3, color=color)
            if point is not None:
                if i == j:
                    panel.axvline(point[i], color="k", linewidth=1.0)
                else:
                    panel.plot(point[j], point[i], "k+", markersize=10)
            panel.set_xlabel(labels[j] if i == d - 1 else "")
            panel.set_ylabel(labels[i] if j == 0 and i > 0 else "")
    handles = [grid[0, 0].plot([], [], color=color, label=label)[0] for _, color, label in samples]
    grid[0, 0].legend(handles=handles, fontsize="small")
    return grid
