"""Frozen result objects returned by the front doors: floats and NumPy arrays, never live state."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

import numpy as np

from ratiokit.config import N_PERMUTATIONS

__all__ = [
    "BenchmarkResult",
    "C2STResult",
    "ConfidenceInterval",
    "CoverageResult",
    "DivergenceResult",
    "FitResult",
    "MutualInformationResult",
    "RatioDiagnostics",
    "SBCResult",
    "TrainHistory",
    "TwoSampleTestResult",
]


def _short(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array(shape={value.shape})"
    if isinstance(value, float):
        return f"{value:.6g}"
    return repr(value)


class ConfidenceInterval(NamedTuple):
    """A two-sided interval ``low <= value <= high``, as scipy's ``BootstrapResult`` holds."""

    low: float
    high: float


def _plain(value: Any) -> Any:
    """``value`` as plain data: a result or named tuple as a dict, a tuple as a list, a NumPy
    scalar as a Python one; arrays, numbers, strings and None as they are."""
    if isinstance(value, _ResultData):
        return value.to_dict()
    if isinstance(value, tuple) and hasattr(value, "_asdict"):  # a named tuple
        return {key: _plain(item) for key, item in value._asdict().items()}
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The scalars of a :func:`_plain` record, nested dicts as ``outer.inner`` keys (as
    ``pandas.json_normalize`` names them); arrays and lists are left out."""
    row: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            row.update(_flatten(value, f"{name}."))
        elif value is None or isinstance(value, (bool, int, float, str)):
            row[name] = value
    return row


class _ResultData:
    """A result as data: :meth:`to_dict` and :meth:`to_dataframe`, from its dataclass fields."""

    def to_dict(self) -> dict[str, Any]:
        """Every field by name, as plain data.

        Arrays stay NumPy arrays; NumPy scalars become Python numbers; a nested result or
        named tuple (a confidence interval) becomes a dict, a tuple a list. So
        ``json.dumps(result.to_dict(), default=numpy.ndarray.tolist)`` writes it as JSON.

        Returns
        -------
        dict of str
        """
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]

    def _columns(self) -> dict[str, Any]:
        """The table of :meth:`to_dataframe`, column by column.

        A result with a length (a record of steps) has one row per entry, its 1-D array
        fields of that length as columns. Any other result is one row: its scalar fields,
        the scalars of a dict field (``details``) or of a nested result as ``field.key``
        columns; its arrays stay in :meth:`to_dict`.
        """
        record = self.to_dict()
        if hasattr(self, "__len__"):
            n = len(self)  # type: ignore[arg-type]
            return {
                name: value
                for name, value in record.items()
                if isinstance(value, np.ndarray) and value.shape == (n,)
            }
        return {name: [value] for name, value in _flatten(record).items()}

    def to_dataframe(self) -> Any:
        """The result as a :class:`pandas.DataFrame`.

        A training history has one row per step, a benchmark one row per cell, and any other
        result one row of its scalar fields (a ``details`` entry or a nested result's field
        as a ``field.key`` column); arrays such as a null distribution are in
        :meth:`to_dict`.

        Returns
        -------
        pandas.DataFrame

        Raises
        ------
        ImportError
            If the optional `pandas` package is not installed.
        """
        try:
            import pandas
        except ImportError as err:
            raise ImportError(
                f"`{type(self).__name__}.to_dataframe` needs the `pandas` package, which is "
                "not installed; install it (`pip install pandas`, or the `ratiokit[dataframe]` "
                "extra) or use `to_dict()`."
            ) from err
        return pandas.DataFrame(self._columns())


class _CompactRepr(_ResultData):
    """A one-line ``repr`` that prints the shapes of arrays, not their values."""

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={self._repr_field(name)}"
            for name in self.__dataclass_fields__  # type: ignore[attr-defined]
            if self.__dataclass_fields__[name].repr  # type: ignore[attr-defined]
        )
        return f"{type(self).__name__}({fields})"

    def _repr_field(self, name: str) -> str:
        return _short(getattr(self, name))


@dataclass(frozen=True, repr=False)
class TwoSampleTestResult(_CompactRepr):
    """Outcome of a two-sample test of H0: P = Q.

    Attributes
    ----------
    statistic : float
        The observed test statistic (larger means more evidence against H0).
    pvalue : float
        ``(1 + #{null >= statistic}) / (1 + B)`` for a permutation test (never 0), or an
        exact/asymptotic p-value where the method says so.
    null_distribution : ndarray of shape (B,)
        The statistic recomputed under H0 (permutations, or an exact enumeration).
    method : str
        Registry name of the method that produced the statistic.
    alternative : str
        ``"greater"``, ``"less"`` or ``"two-sided"``.
    n_permutations : int
        B, the number of null statistics (all distinct permutations when enumerated exactly).
    details : dict
        Method-specific values (bandwidths, split sizes, accuracy), as floats and strings.
    """

    statistic: float
    pvalue: float
    null_distribution: np.ndarray
    method: str
    alternative: str
    n_permutations: int
    details: dict[str, Any] = field(default_factory=dict)

    def reject(self, alpha: float = 0.05) -> bool:
        """Whether H0 is rejected at level ``alpha`` (``pvalue <= alpha``)."""
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"`alpha` must be in (0, 1); got {alpha!r}.")
        return self.pvalue <= alpha

    def plot(self, ax: Any = None) -> Any:
        """Histogram of the null distribution with the observed statistic; returns the Axes."""
        from ratiokit.plot import plot_null_distribution

        title = f"{self.method}: p = {self.pvalue:.3g} ({self.n_permutations} permutations)"
        return plot_null_distribution(self.null_distribution, self.statistic, ax=ax, title=title)


@dataclass(frozen=True, repr=False)
class DivergenceResult(_CompactRepr):
    """An estimated divergence between P and Q.

    Attributes
    ----------
    value : float
        The estimate.
    kind : str
        Which divergence (``"kl"``, ``"rkl"``, ``"js"``, ``"pearson"``, ``"hellinger"``,
        ``"tv"``, ``"pe"``, or a method's own discrepancy such as ``"mmd2"``).
    method : str
        Registry name of the estimating method.
    standard_error : float or None
        Bootstrap standard error when asked for and at least 2 replicates are finite, else
        None (never NaN).
    bootstrap : ndarray or None
        The finite bootstrap replicates behind ``standard_error``.
    details : dict
        Method-specific values.
    n_nonfinite_bootstrap : int
        Bootstrap replicates left out of ``bootstrap`` because they were NaN or infinite
        (``divergence`` warns when there are any).
    confidence_interval : ConfidenceInterval or None
        ``(low, high)``, the bootstrap percentile interval at ``confidence_level``: the
        ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of ``bootstrap`` (linear
        interpolation, as :func:`numpy.quantile`); None when ``standard_error`` is None.
    confidence_level : float
        Level of ``confidence_interval``.
    """

    value: float
    kind: str
    method: str
    standard_error: float | None = None
    bootstrap: np.ndarray | None = None
    details: dict[str, Any] = field(default_factory=dict)
    n_nonfinite_bootstrap: int = 0
    confidence_interval: ConfidenceInterval | None = None
    confidence_level: float = 0.95


#: Fewest effective terms (``(sum v)^2 / sum v^2``) for a balancing mean to be judged.
MIN_BALANCE_ESS = 10.0
#: The reweighting check's stated alternative: Gaussians whose means differ by this many
#: standard deviations (Mahalanobis), a "medium" effect (Cohen 1988) ...
REWEIGHTED_SHIFT = 0.5
#: ... against which the test must be able to reach this power, or the check is inconclusive.
MIN_REWEIGHTED_POWER = 0.8


@dataclass(frozen=True, repr=False, eq=False)
class RatioDiagnostics(_CompactRepr):
    """Checks of a fitted density ratio on held-out samples, from ``RatioEstimator.diagnostics``.

    See :func:`ratiokit.diagnostics.ratio_diagnostics` for the statistics and why each is
    valid.

    Attributes
    ----------
    mean_ratio_q, se_ratio_q : float
        ``mean_j r(y_j)`` over Q's held-out sample (1 in expectation for the true ratio) and
        its standard error.
    mean_inverse_ratio_p, se_inverse_ratio_p : float
        ``mean_i 1 / r(x_i)`` over P's held-out sample (1 for the true ratio where P covers
        Q's support) and its standard error.
    ess_ratio_q, ess_inverse_ratio_p : float
        Effective number of terms of each mean, ``(sum v)^2 / sum v^2``: below
        :data:`MIN_BALANCE_ESS` a few points carry the mean and its normal interval means
        nothing, so the check fails.
    bin_edges : ndarray of shape (k + 1,)
        Edges of the reliability curve's bins of the implied classifier
        ``D = r n_p / (r n_p + n_q)`` (quantiles of D; k <= n_bins).
    predicted, observed : ndarray of shape (k,)
        Per bin, the mean of D and the fraction of points from P (NaN for an empty bin).
    counts : ndarray of int64, shape (k,)
        Points per bin.
    calibration_error : float
        ``sum_b counts_b |observed_b - predicted_b| / sum_b counts_b``.
    calibration_pvalue : float
        Hosmer-Lemeshow p-value of the reliability curve (chi^2, one degree per bin).
    reweighted_pvalue : float
        p-value of the two-sample test of P's sample against Q's sample thinned by
        rejection with acceptance ``r / max r``; NaN if fewer than 2 points were kept.
    n_kept : int
        Points of Q's sample kept for that test.
    reweighted_power : float
        The most power any level-``alpha`` test of ``n_p`` against ``n_kept`` points can have
        against the alternative :data:`REWEIGHTED_SHIFT` (0 when no test ran); below
        :data:`MIN_REWEIGHTED_POWER` the reweighting check is inconclusive.
    n_p, n_q : int
        Held-out sizes.
    method : str
        Name of the ratio method.
    alpha : float
        Level of the verdicts in :attr:`checks`.
    reweighted_test : TwoSampleTestResult or None
        The full result of the reweighting test.
    """

    mean_ratio_q: float
    se_ratio_q: float
    mean_inverse_ratio_p: float
    se_inverse_ratio_p: float
    ess_ratio_q: float
    ess_inverse_ratio_p: float
    bin_edges: np.ndarray
    predicted: np.ndarray
    observed: np.ndarray
    counts: np.ndarray
    calibration_error: float
    calibration_pvalue: float
    reweighted_pvalue: float
    n_kept: int
    reweighted_power: float
    n_p: int
    n_q: int
    method: str
    alpha: float = 0.05
    reweighted_test: TwoSampleTestResult | None = field(default=None, repr=False)

    @property
    def balance_pvalues(self) -> tuple[float, float]:
        """Two-sided normal p-values of ``E_q[r] = 1`` and ``E_p[1/r] = 1``."""
        from scipy.stats import norm

        def pvalue(mean: float, se: float) -> float:
            if not np.isfinite(mean):
                return 0.0
            if se == 0.0:
                return 1.0 if mean == 1.0 else 0.0
            return float(2.0 * norm.sf(abs(mean - 1.0) / se))

        return (
            pvalue(self.mean_ratio_q, self.se_ratio_q),
            pvalue(self.mean_inverse_ratio_p, self.se_inverse_ratio_p),
        )

    @property
    def checks(self) -> dict[str, bool | None]:
        """Each check's verdict at level :attr:`alpha`: True (no evidence against the ratio),
        False (evidence against it) or None (inconclusive).

        The reweighting check is inconclusive when it did not reject and
        :attr:`reweighted_power` is below :data:`MIN_REWEIGHTED_POWER` (too few points were
        kept for a non-rejection to mean anything; always when fewer than 2 were kept). Each
        verdict is at level ``alpha`` on its own (four checks: about ``4 alpha`` in all).
        """
        p_q, p_p = self.balance_pvalues
        rejected = self.reweighted_pvalue <= self.alpha
        powerless = self.reweighted_power < MIN_REWEIGHTED_POWER
        return {
            "E_q[r] = 1": p_q > self.alpha and self.ess_ratio_q >= MIN_BALANCE_ESS,
            "E_p[1/r] = 1": p_p > self.alpha and self.ess_inverse_ratio_p >= MIN_BALANCE_ESS,
            "calibrated": self.calibration_pvalue > self.alpha,
            "reweighted Q ~ P": False if rejected else None if powerless else True,
        }

    @property
    def passed(self) -> bool:
        """Whether every check passed (False if one failed or was inconclusive)."""
        return all(ok is True for ok in self.checks.values())

    @property
    def verdict(self) -> str:
        """One line: the checks that failed, with their numbers, and an inconclusive one, or
        that all passed."""
        p_q, p_p = self.balance_pvalues
        values = {
            "E_q[r] = 1": (
                f"E_q[r] = {self.mean_ratio_q:.3g} +- {self.se_ratio_q:.2g} "
                f"(ESS {self.ess_ratio_q:.3g})"
            ),
            "E_p[1/r] = 1": (
                f"E_p[1/r] = {self.mean_inverse_ratio_p:.3g} +- {self.se_inverse_ratio_p:.2g} "
                f"(ESS {self.ess_inverse_ratio_p:.3g})"
            ),
            "calibrated": f"calibration p = {self.calibration_pvalue:.3g}",
            "reweighted Q ~ P": f"reweighted test p = {self.reweighted_pvalue:.3g}",
        }
        checks = self.checks
        failed = [values[name] for name, ok in checks.items() if ok is False]
        unsure = []
        if checks["reweighted Q ~ P"] is None:
            unsure.append(
                f"reweighted Q ~ P inconclusive: {self.n_kept} of {self.n_q} points of Q kept, "
                f"power at most {self.reweighted_power:.2g} (< {MIN_REWEIGHTED_POWER:g}) "
                f"against a {REWEIGHTED_SHIFT:g}-sd mean shift"
            )
        if not failed and not unsure:
            return f"all checks passed at level {self.alpha:g}"
        head = "failed" if failed else "inconclusive"
        return f"{head} at level {self.alpha:g}: " + "; ".join(failed + unsure)

    def plot(self, ax: Any = None) -> np.ndarray:
        """Balancing means, reliability curve and the reweighting test's null, in three panels.

        ``ax``: three matplotlib Axes to draw on (default: a new figure); returns them, an
        ndarray of Axes of shape (3,) (see :func:`ratiokit.plot.plot_ratio_diagnostics`).
        """
        from ratiokit.plot import plot_ratio_diagnostics

        return plot_ratio_diagnostics(self, ax=ax)


@dataclass(frozen=True, repr=False, eq=False)
class TrainHistory(_CompactRepr):
    """Record of a training run, one entry per step: of :func:`ratiokit.train` (a model and
    the method's critic) or of its critic-only mode (:func:`ratiokit.critics.train_critic`,
    which trains the critics of the ratio methods and of the deep-kernel MMD).

    In the alternating loop each step is ``critic_steps`` critic updates and one model update,
    and there is no held-out check (``val_step`` is empty, ``best_step`` the last step). In
    the critic-only mode each step is one critic update, ``model_loss`` is NaN, and the
    held-out loss is checked at step 0 and once per epoch for early stopping.

    Attributes
    ----------
    step : ndarray of int64, shape (n_steps,)
        Step numbers, from 1.
    model_loss : ndarray of float64, shape (n_steps,)
        The model's (generative) loss on the step's minibatch, before its update; NaN in
        the critic-only mode.
    critic_loss : ndarray of float64, shape (n_steps,)
        The critic's loss on the step's minibatch(es), before the update (the mean over
        ``critic_steps`` in the alternating loop); NaN for a method without trainable critic
        parameters (no critic steps).
    wall_time : ndarray of float64, shape (n_steps,)
        Seconds of training from the start of the run to the end of each step (a resumed
        run continues from the time saved in its checkpoint).
    val_step : ndarray of int64, shape (n_checks,)
        Steps after which the held-out loss was computed (0: before the first update);
        empty without a validation split.
    val_loss : ndarray of float64, shape (n_checks,)
        The held-out loss at those steps.
    best_step : int
        The step whose state the trained module holds: the lowest held-out loss with a
        validation split, else the last step (0 before any).
    stopped_early : bool
        Whether training stopped on ``patience`` before ``max_steps``.

    Examples
    --------
    >>> import numpy as np
    >>> h = TrainHistory(step=np.arange(1, 4), model_loss=np.full(3, np.nan),
    ...                  critic_loss=np.array([0.7, 0.6, 0.5]), wall_time=np.zeros(3),
    ...                  val_step=np.array([0]), val_loss=np.array([0.7]), best_step=3,
    ...                  stopped_early=False)
    >>> len(h), h.best_step, repr(h)[:45]
    (3, 3, 'TrainHistory(step=array(shape=(3,)), model_lo')
    """

    step: np.ndarray
    model_loss: np.ndarray
    critic_loss: np.ndarray
    wall_time: np.ndarray
    val_step: np.ndarray
    val_loss: np.ndarray
    best_step: int
    stopped_early: bool

    def __len__(self) -> int:
        return int(self.step.shape[0])


#: Version of the files :meth:`FitResult.save` writes.
FIT_FORMAT_VERSION = 2


@dataclass(frozen=True, repr=False, eq=False)
class FitResult(_CompactRepr):
    """The outcome of :func:`ratiokit.fit`, as data: estimates, traces, intervals, settings.

    What acts (simulate, test the fit) is the :class:`~ratiokit.fitted.FittedSimulator` in
    :attr:`fitted`; :meth:`simulate` and :meth:`goodness_of_fit` forward to it.

    Attributes
    ----------
    theta : ndarray of shape (k,) or None
        The estimate (None for a generator module, whose weights are in ``fitted``).
    param_names : tuple of str
        Names of the entries of ``theta``.
    loss : float
        The method's statistic at ``theta`` (kind ``"numpy"``), or the model's mean
        minibatch loss over the second half of training (gradient-based kinds).
    converged : bool
        Whether the search met its tolerance, or the training's parameters stopped drifting.
    method : str
        Registry name of the discrepancy minimised.
    kind : str
        ``"numpy"`` (gradient-free search), ``"torch"`` (gradient descent on theta) or
        ``"module"`` (a generator network).
    n_steps : int
        Objective evaluations (``"numpy"``) or training steps.
    n_simulations : int
        Simulated points in all, bootstrap included.
    wall_time : float
        Seconds the fit took.
    confidence_interval : ndarray of shape (k, 2) or None
        Bootstrap interval of each parameter at ``confidence_level``, built as
        ``interval_method`` says (None with fewer than two finite replicates).
    correlation : ndarray of shape (k, k) or None
        Correlation matrix of the finite bootstrap replicates (None with fewer than three;
        NaN where a parameter's replicates do not vary). The repr prints it, rounded, for
        up to four parameters: strongly correlated parameters are poorly identified
        separately, whatever their intervals say.
    history : dict of str to ndarray
        ``"loss"`` (T,) and ``"theta"`` (T, k) per evaluation or step; training also records
        ``"step"``, ``"critic_loss"`` and ``"wall_time"``.
    confidence_level : float
    interval_method : str
        ``"student-t"``: ``u_hat -+ t * sd`` on the search's unconstrained scale, mapped
        back, so the interval contains ``theta`` by construction (see
        :func:`ratiokit._search.bootstrap_interval`); ``"percentile"`` for a result saved by
        ratiokit before that rule, whose interval need not contain ``theta``.
    bootstrap : ndarray of shape (B, k) or None
        The bootstrap estimates (NaN rows for replicates that failed).
    failures : tuple of (theta, message)
        Parameter values where the simulator or method failed (treated as infeasible).
    details : dict
        Settings and bookkeeping: search, optimiser message, ``n_retries`` (executor tasks
        resubmitted), ``n_dropped`` (NaN rows dropped), ``theta0``, bounds, training config.
    data : ndarray of shape (n, d)
        The observations fitted.
    fitted : FittedSimulator or None
        The simulator at ``theta``, or the trained generator (kind ``"module"``); None after
        :meth:`load` (rebuild it with :meth:`FittedSimulator.load`).
    """

    theta: np.ndarray | None
    param_names: tuple[str, ...]
    loss: float
    converged: bool
    method: str
    kind: str
    n_steps: int
    n_simulations: int
    wall_time: float
    confidence_interval: np.ndarray | None = None
    correlation: np.ndarray | None = None
    history: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    confidence_level: float = field(default=0.95, repr=False)
    interval_method: str = field(default="student-t", repr=False)
    bootstrap: np.ndarray | None = field(default=None, repr=False)
    failures: tuple[tuple[tuple[float, ...], str], ...] = field(default=(), repr=False)
    details: dict[str, Any] = field(default_factory=dict, repr=False)
    data: np.ndarray | None = field(default=None, repr=False)
    fitted: Any = field(default=None, repr=False)

    @property
    def standard_error(self) -> np.ndarray | None:
        """Bootstrap standard deviation of each parameter (None without a bootstrap)."""
        if self.bootstrap is None:
            return None
        ok = self.bootstrap[np.isfinite(self.bootstrap).all(1)]
        return ok.std(0, ddof=1) if ok.shape[0] > 1 else None

    def _repr_field(self, name: str) -> str:
        corr = self.correlation
        if name == "correlation" and corr is not None and corr.shape[0] <= 4:
            return repr(np.round(corr, 2).tolist())
        return super()._repr_field(name)

    def to_dict(self) -> dict[str, Any]:
        """Every field but :attr:`fitted` (which acts, and is no data), as plain data: arrays
        as NumPy arrays, the rest as Python values (see ``DivergenceResult.to_dict``)."""
        record = super().to_dict()
        del record["fitted"]
        return record

    def _columns(self) -> dict[str, Any]:
        """One row per parameter (name, estimate, interval, standard error); a generator's fit,
        which has no theta, is one row of its scalars."""
        if self.theta is None:
            return super()._columns()
        k = len(self.theta)
        interval = (
            np.full((k, 2), np.nan)
            if self.confidence_interval is None
            else np.asarray(self.confidence_interval)
        )
        se = self.standard_error
        return {
            "parameter": list(self.param_names),
            "theta": np.asarray(self.theta, dtype=np.float64),
            "low": interval[:, 0],
            "high": interval[:, 1],
            "standard_error": np.full(k, np.nan) if se is None else se,
        }

    def _fitted(self) -> Any:
        if self.fitted is None:
            raise ValueError(
                "`fitted` must hold the fitted simulator to simulate from this result; got "
                "None (a loaded result: rebuild it with "
                "FittedSimulator.load(path, simulator=...))."
            )
        return self.fitted

    def simulate(self, n: int, *, rng: Any = None) -> np.ndarray:
        """Draw ``n`` points from the fitted model: ``self.fitted.simulate(n, rng=rng)``
        (see :meth:`FittedSimulator.simulate`).

        Raises
        ------
        ValueError
            If :attr:`fitted` is None (a loaded result), or as
            :meth:`FittedSimulator.simulate`.
        """
        return self._fitted().simulate(n, rng=rng)

    def goodness_of_fit(
        self,
        *,
        method: Any = "mmd",
        n_sim: int | None = None,
        n_permutations: int = N_PERMUTATIONS,
        rng: Any = None,
        progress: bool | None = None,
    ) -> TwoSampleTestResult:
        """Two-sample test of :attr:`data` against fresh simulations at the fitted parameters:
        ``self.fitted.goodness_of_fit(self.data, ...)`` (see
        :meth:`FittedSimulator.goodness_of_fit` for the parameters and the warning).

        Raises
        ------
        ValueError
            If :attr:`fitted` or :attr:`data` is None.
        """
        if self.data is None:
            raise ValueError("`data` must be kept with the result to test its fit; got None.")
        return self._fitted().goodness_of_fit(
            self.data,
            method=method,
            n_sim=n_sim,
            n_permutations=n_permutations,
            rng=rng,
            progress=progress,
        )

    def plot(self, ax: Any = None, *, truth: Any = None, rng: Any = 0) -> Any:
        """Loss and parameter traces, the bootstrap correlation heatmap, and data against
        marginals simulated by :attr:`fitted` (none without it), on ``ax`` (one Axes per
        panel; default: a new figure); returns the ndarray of Axes drawn on (see
        :func:`ratiokit.plot.plot_fit`).

        ``truth`` (k,) draws the true parameters when they are known.
        """
        from ratiokit.plot import plot_fit

        return plot_fit(self, ax, truth=truth, rng=rng)

    def save(self, path: Any, *, overwrite: bool = False) -> Any:
        """Write the result to the folder ``path``: ``fit.json``, ``arrays.npz`` and, for a
        module, its ``state_dict`` in ``model.pt``. Returns the folder's :class:`pathlib.Path`.

        Nothing is written until every file is encoded; then each is written to a temporary
        name and moved into place, ``fit.json`` last: it records the SHA-256 of the others,
        so :meth:`load` detects a damaged file or a folder mixing two saves. The simulator
        itself (code) is not saved: pass it to :meth:`FittedSimulator.load` to simulate
        again.

        Parameters
        ----------
        path : str or path-like
            The folder (created if missing).
        overwrite : bool, default=False
            Replace the files of an earlier save in the folder.

        Raises
        ------
        TypeError
            If ``overwrite`` is not a bool.
        ValueError
            If the folder already holds one of the three files and ``overwrite`` is False.
        """
        import io
        import json
        from pathlib import Path

        from ratiokit._checkpoint import atomic_write, digest

        if not isinstance(overwrite, bool):
            raise TypeError(f"`overwrite` must be True or False; got {overwrite!r}.")
        folder = Path(path)
        taken = [name for name in _FIT_FILES if (folder / name).exists()]
        if taken and not overwrite:
            raise ValueError(
                f"`path` must be a folder without a saved result; got {str(folder)!r}, which "
                f"holds {taken}. Pass `overwrite=True` to replace them or choose another folder."
            )
        arrays = {f"history__{key}": np.asarray(value) for key, value in self.history.items()}
        for name in ("theta", "confidence_interval", "correlation", "bootstrap", "data"):
            if getattr(self, name) is not None:
                arrays[name] = np.asarray(getattr(self, name))
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        files = {"arrays.npz": buffer.getvalue()}
        if self.kind == "module" and self.fitted is not None:
            import torch

            buffer = io.BytesIO()
            torch.save(self.fitted.simulator.state_dict(), buffer)
            files["model.pt"] = buffer.getvalue()
        record = {
            "format": "ratiokit.FitResult",
            "version": FIT_FORMAT_VERSION,
            "param_names": list(self.param_names),
            "loss": self.loss,
            "converged": self.converged,
            "method": self.method,
            "kind": self.kind,
            "n_steps": self.n_steps,
            "n_simulations": self.n_simulations,
            "wall_time": self.wall_time,
            "confidence_level": self.confidence_level,
            "interval_method": self.interval_method,
            "failures": [[list(theta), why] for theta, why in self.failures],
            "details": self.details,
            "sha256": {name: digest(data) for name, data in files.items()},
        }
        files["fit.json"] = json.dumps(record, indent=1).encode()  # written last
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            atomic_write(folder / name, data)
        return folder

    @classmethod
    def load(cls, path: Any) -> FitResult:
        """Read a result written by :meth:`save`; nothing in the files is executed.

        The result has no :attr:`fitted` (the simulator's code is not saved): rebuild it
        with :meth:`FittedSimulator.load`.

        Parameters
        ----------
        path : str or path-like
            The folder.

        Raises
        ------
        ValueError
            If the folder does not hold a saved FitResult of a known version, or a file is
            damaged or from another save (its SHA-256 differs from the one in ``fit.json``).
        """
        import io
        import zipfile
        from pathlib import Path

        folder = Path(path)
        record, hashes = _read_record(folder)
        try:
            with np.load(io.BytesIO(_read_checked(folder, "arrays.npz", hashes))) as npz:
                arrays = {key: npz[key] for key in npz.files}
        except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
            raise ValueError(f"`path` must hold an intact arrays.npz; {err}") from err
        try:
            fields = _fit_fields(record)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"`path` must hold an intact fit.json; got one in {str(folder)!r} whose "
                f"field {err} is missing or malformed."
            ) from err
        prefix = "history__"
        return cls(
            **fields,
            theta=arrays.get("theta"),
            confidence_interval=arrays.get("confidence_interval"),
            correlation=arrays.get("correlation"),
            history={k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)},
            bootstrap=arrays.get("bootstrap"),
            data=arrays.get("data"),
        )

    @staticmethod
    def load_weights(path: Any) -> dict[str, Any]:
        """The generator's ``state_dict`` saved by :meth:`save` in ``path/model.pt``, read
        with ``torch.load(weights_only=True)``: tensors only, nothing executed.

        Raises
        ------
        ValueError
            As :meth:`load`, if ``model.pt`` is missing, does not match the SHA-256 in
            ``fit.json`` or holds anything but tensors.
        """
        from pathlib import Path

        from ratiokit._checkpoint import load_tensors

        folder = Path(path)
        _, hashes = _read_record(folder)
        data = _read_checked(folder, "model.pt", hashes)
        return load_tensors(data, f"{str(folder / 'model.pt')!r}")


def _read_record(folder: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``fit.json`` of a saved FitResult, and the SHA-256 of its other files (None for
    version 1, which recorded none)."""
    import json

    try:
        record = json.loads((folder / "fit.json").read_bytes())
    except OSError as err:
        raise ValueError(f"`path` must be a folder written by FitResult.save; {err}") from err
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"`path` must hold an intact fit.json; got one that is not valid JSON in "
            f"{str(folder)!r} ({err})."
        ) from err
    found = record if isinstance(record, dict) else {}
    if found.get("format") != "ratiokit.FitResult" or found.get("version") not in (1, 2):
        raise ValueError(
            "`path` must hold a FitResult of format version 1 or 2; got "
            f"{found.get('format')!r} version {found.get('version')!r}."
        )
    # Version 1 recorded no hashes; from version 2 every other file is checked.
    return record, found.get("sha256", {}) if found["version"] >= 2 else None


def _read_checked(folder: Any, name: str, hashes: Any) -> bytes:
    """The bytes of ``folder / name``, checked against ``hashes`` (the SHA-256 in fit.json)."""
    from ratiokit._checkpoint import digest

    try:
        data = (folder / name).read_bytes()
    except OSError as err:
        raise ValueError(f"`path` must be a folder written by FitResult.save; {err}") from err
    if hashes is not None and (not isinstance(hashes, dict) or hashes.get(name) != digest(data)):
        raise ValueError(
            f"`path` must hold the files of one save; {name} in {str(folder)!r} does "
            "not match the SHA-256 recorded in fit.json: it was modified, truncated or "
            "written by another save."
        )
    return data


#: The files :meth:`FitResult.save` writes in its folder.
_FIT_FILES = ("fit.json", "arrays.npz", "model.pt")

#: The type each field of ``fit.json`` must have.
_FIT_TYPES: dict[str, Any] = {
    "param_names": list,
    "loss": (int, float),
    "converged": bool,
    "method": str,
    "kind": str,
    "n_steps": int,
    "n_simulations": int,
    "wall_time": (int, float),
    "confidence_level": (int, float),
    "failures": list,
    "details": dict,
}


def _fit_fields(record: dict[str, Any]) -> dict[str, Any]:
    """The scalar fields of a ``fit.json`` record; KeyError or TypeError naming a field
    that is missing or of the wrong type."""
    for name, types in _FIT_TYPES.items():
        if not isinstance(record[name], types):
            raise TypeError(repr(name))
    if record["kind"] not in ("numpy", "torch", "module"):
        raise ValueError(repr("kind"))
    try:
        failures = tuple((tuple(map(float, theta)), str(why)) for theta, why in record["failures"])
    except (TypeError, ValueError) as err:
        raise TypeError(repr("failures")) from err
    # Saves before the Student-t rule recorded none: their intervals were percentiles.
    interval_method = record.get("interval_method", "percentile")
    if not isinstance(interval_method, str):
        raise TypeError(repr("interval_method"))
    return {
        "param_names": tuple(str(name) for name in record["param_names"]),
        "loss": float(record["loss"]),
        "converged": record["converged"],
        "method": record["method"],
        "kind": record["kind"],
        "n_steps": record["n_steps"],
        "n_simulations": record["n_simulations"],
        "wall_time": float(record["wall_time"]),
        "confidence_level": float(record["confidence_level"]),
        "interval_method": interval_method,
        "failures": failures,
        "details": record["details"],
    }


@dataclass(frozen=True, repr=False, eq=False)
class BenchmarkResult(_ResultData):
    """Scores of methods on synthetic problems, one row per cell, from :func:`ratiokit.benchmark`.

    Attributes
    ----------
    columns : tuple of str
        ``"method"``, ``"problem"``, ``"n"``, ``"seed"``, the metric columns (see
        :attr:`metrics`), then ``"note"``.
    rows : tuple of tuple
        One per (method, problem, n, seed), in ``columns`` order: method and problem labels,
        n (points per sample), seed (the replicate, from 0), the metric values (floats, NaN
        where a metric does not apply or failed) and the note saying why.
    alpha : float
        Level of the two-sample tests behind ``power`` and ``type_i_error``.
    details : dict
        Settings: ``n_permutations``, ``n_test``, the problems' parameters, the executor.
    """

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    alpha: float = 0.05
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metric columns, e.g. ``("log_ratio_mse", "divergence_error[kl]", "time")``."""
        return self.columns[4:-1]

    def _distinct(self, name: str) -> list[Any]:
        k = self.columns.index(name)
        return list(dict.fromkeys(row[k] for row in self.rows))

    @property
    def methods(self) -> list[str]:
        """Method labels, in the order given."""
        return self._distinct("method")

    @property
    def problems(self) -> list[str]:
        """Problem labels, in the order given."""
        return self._distinct("problem")

    @property
    def sizes(self) -> list[int]:
        """Sample sizes n, in the order given."""
        return self._distinct("n")

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return (
            f"BenchmarkResult({len(self)} rows: methods={self.methods}, "
            f"problems={self.problems}, sizes={self.sizes}, "
            f"seeds={len(self._distinct('seed'))}, metrics={list(self.metrics)})"
        )

    def column(self, name: str) -> np.ndarray:
        """One column over the rows: float64 for metrics, int64 for n and seed, else str.

        Raises
        ------
        ValueError
            If ``name`` is not one of :attr:`columns`.
        """
        if name not in self.columns:
            raise ValueError(f"`name` must be one of {list(self.columns)}; got {name!r}.")
        k = self.columns.index(name)
        values = [row[k] for row in self.rows]
        if name in self.metrics:
            return np.array(values, dtype=np.float64)
        return np.array(values, dtype=np.int64 if name in ("n", "seed") else str)

    def summary(self) -> list[dict[str, Any]]:
        """Mean and standard error over seeds per (method, problem, n), as a list of dicts.

        Keys: ``method``, ``problem``, ``n``, ``seeds``, each metric (the mean over the seeds
        where it has a value), ``<metric>_se`` (``std(ddof=1) / sqrt(k)``; NaN for k < 2)
        and ``note``.
        """
        from ratiokit._benchmark_table import summarize

        return summarize(self)

    def to_markdown(self, *, summary: bool = True) -> str:
        """A markdown table: means ± standard errors over seeds (or every row), with notes."""
        from ratiokit._benchmark_table import format_markdown

        return format_markdown(self, summary=summary)

    def to_csv(self, path: Any = None) -> Any:
        """Every row as CSV, floats written exactly: the text, or the path written to.

        ``path``: where to write (parent folders are created); None returns the text.
        """
        from ratiokit._benchmark_table import write_csv

        return write_csv(self, path)

    def _columns(self) -> dict[str, Any]:
        """One row per cell: each column as :meth:`column` gives it."""
        return {name: self.column(name) for name in self.columns}

    def plot(self, ax: Any = None, *, metric: str | None = None) -> np.ndarray:
        """``metric`` against n, one line per method and one panel per problem.

        ``ax``: one matplotlib Axes per problem (default: a new figure); returns them, an
        ndarray of Axes of shape (n_problems,). ``metric`` defaults to the first metric with
        a value; error bars are one standard error over seeds (see
        :func:`ratiokit.plot.plot_benchmark`).
        """
        from ratiokit.plot import plot_benchmark

        return plot_benchmark(self, ax=ax, metric=metric)


@dataclass(frozen=True, repr=False, eq=False)
class MutualInformationResult(_CompactRepr):
    """An estimated mutual information I(x; y) = KL(p(x, y) || p(x) p(y)), in nats.

    Attributes
    ----------
    estimate : float
        The mean of ``block_estimates``.
    standard_error : float or None
        ``std(block_estimates, ddof=1) / sqrt(k)`` over the k disjoint held-out blocks; None
        when there is one block. It is the evaluation's, given the trained critic: the
        variability of training is not in it.
    bound : str
        ``"lower bound"`` where the method's value is a variational lower bound on I(x; y)
        in expectation (dv, nwj, infonce, js), ``"estimate"`` where it is not (smile, a
        clipped bound; classifier, a plug-in).
    method : str
        ``"classifier"``, ``"dv"``, ``"infonce"``, ``"js"``, ``"nwj"`` or ``"smile"``.
    critic : str
        ``"joint"`` or ``"separable"``.
    block_estimates : ndarray of shape (k,)
        The method's value on each held-out block of paired rows.
    history : TrainHistory
        The critic's training record.
    details : dict
        ``n_train``, ``n_test``, ``batch_size``, ``log_batch_size`` (InfoNCE's cap: the log
        of the largest held-out block), for smile ``clip``, and with telescoping
        ``telescope``, ``mixing_weights`` and ``waymark_terms`` (the K log-ratio terms, which
        add up to the estimate).
    """

    estimate: float
    standard_error: float | None
    bound: str
    method: str
    critic: str
    block_estimates: np.ndarray
    history: TrainHistory
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, repr=False, eq=False)
class SBCResult(_CompactRepr):
    """Simulation-based calibration (:func:`ratiokit.sbc`): ranks and their uniformity test.

    Attributes
    ----------
    ranks : ndarray of int of shape (n_sbc, d)
        ``R_ij = #{l : theta^(l)_j < theta_ij}``, in {0, ..., n_samples}; uniform for a
        calibrated posterior.
    n_samples : int
        L, the posterior draws per simulated pair.
    bin_edges : ndarray of int of shape (n_bins + 1,)
        Bin b holds the rank values ``bin_edges[b] <= R < bin_edges[b + 1]``.
    bin_counts : ndarray of int of shape (d, n_bins)
        Ranks per bin, per coordinate.
    expected_counts : ndarray of shape (n_bins,)
        ``n_sbc * (values in the bin) / (L + 1)``, the counts' expectation under uniformity.
    statistic : ndarray of shape (d,)
        Pearson's chi-square ``sum_b (count_b - expected_b)^2 / expected_b`` per coordinate.
    pvalue : ndarray of shape (d,)
        Its p-value against chi-square with ``n_bins - 1`` degrees of freedom.
    """

    ranks: np.ndarray
    n_samples: int
    bin_edges: np.ndarray
    bin_counts: np.ndarray
    expected_counts: np.ndarray
    statistic: np.ndarray
    pvalue: np.ndarray

    @property
    def n_bins(self) -> int:
        """The number of rank bins of the chi-square test."""
        return self.expected_counts.size

    def _columns(self) -> dict[str, Any]:
        """One row per coordinate: its chi-square statistic and p-value."""
        return {
            "coordinate": np.arange(self.statistic.size),
            "statistic": self.statistic,
            "pvalue": self.pvalue,
        }

    def plot(self, ax: Any = None) -> np.ndarray:
        """Rank histograms, one panel per coordinate, with the 99% binomial band of each bin
        under uniformity; returns the ndarray of Axes (see :func:`ratiokit.plot.plot_sbc`)."""
        from ratiokit.plot import plot_sbc

        return plot_sbc(self, ax=ax)


@dataclass(frozen=True, repr=False, eq=False)
class CoverageResult(_CompactRepr):
    """Expected coverage of highest-density regions (:func:`ratiokit.expected_coverage`).

    Attributes
    ----------
    levels : ndarray of shape (k,)
        The credibility levels alpha.
    coverage : ndarray of shape (k,)
        The fraction of true parameters inside the posterior's alpha-HDR; alpha for a
        calibrated posterior, below it for an overconfident one.
    credibility : ndarray of shape (n_sbc,)
        Each true parameter's mid-rank credibility ``c_i`` (it is inside the alpha-HDR when
        ``c_i < alpha``); uniform on (0, 1) for a calibrated posterior.
    band_low, band_high : ndarray of shape (k,)
        The central 99% interval of ``Binomial(n_sbc, alpha) / n_sbc`` at each level: where
        a calibrated posterior's coverage falls with probability about 0.99, level by level.
    n_samples : int
        L, the posterior draws per simulated pair.
    """

    levels: np.ndarray
    coverage: np.ndarray
    credibility: np.ndarray
    band_low: np.ndarray
    band_high: np.ndarray
    n_samples: int

    def _columns(self) -> dict[str, Any]:
        """One row per level: the coverage and the band."""
        return {
            "level": self.levels,
            "coverage": self.coverage,
            "band_low": self.band_low,
            "band_high": self.band_high,
        }

    def plot(self, ax: Any = None) -> Any:
        """The coverage curve against the diagonal, with the binomial band; returns the Axes
        (see :func:`ratiokit.plot.plot_coverage`)."""
        from ratiokit.plot import plot_coverage

        return plot_coverage(self, ax=ax)


@dataclass(frozen=True, repr=False)
class C2STResult(_CompactRepr):
    """A classifier two-sample test (:func:`ratiokit.c2st`): held-out accuracy and p-values.

    Attributes
    ----------
    accuracy : float
        The fraction of held-out points the critic classifies correctly; 0.5 when the two
        samples are indistinguishable, 1 when they are separated.
    pvalue : float
        The accuracy's permutation p-value ``(1 + #{acc_b >= acc}) / (1 + B)``.
    binomial_pvalue : float
        ``P(Binomial(n_x + n_y, 1/2) >= correct)``: exact or conservative under H0.
    n_x, n_y : int
        Held-out points of each sample the accuracy is computed on.
    method : str
        The critic's method.
    n_permutations : int
        B, the relabellings of the permutation p-value.
    details : dict
        The two-sample test's details: split sizes, and its statistic, the mean held-out
        log-ratio difference, with its permutation p-value (``log_ratio_difference`` and
        ``log_ratio_difference_pvalue``).
    """

    accuracy: float
    pvalue: float
    binomial_pvalue: float
    n_x: int
    n_y: int
    method: str
    n_permutations: int
    details: dict[str, Any] = field(default_factory=dict)
