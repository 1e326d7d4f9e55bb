"""Frozen result objects returned by the front doors: floats and NumPy arrays, never live state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["DivergenceResult", "TrainHistory", "TwoSampleTestResult"]


def _short(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array(shape={value.shape})"
    if isinstance(value, float):
        return f"{value:.6g}"
    return repr(value)


class _CompactRepr:
    """A one-line ``repr`` that prints the shapes of arrays, not their values."""

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={_short(getattr(self, name))}"
            for name in self.__dataclass_fields__  # type: ignore[attr-defined]
            if self.__dataclass_fields__[name].repr  # type: ignore[attr-defined]
        )
        return f"{type(self).__name__}({fields})"


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
        Bootstrap standard error when asked for, else None.
    bootstrap : ndarray or None
        The bootstrap replicates behind ``standard_error``.
    details : dict
        Method-specific values.
    """

    value: float
    kind: str
    method: str
    standard_error: float | None = None
    bootstrap: np.ndarray | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, repr=False, eq=False)
class TrainHistory(_CompactRepr):
    """Record of a training run of :func:`ratiokit._train.train`, one entry per step.

    Attributes
    ----------
    step : ndarray of int64, shape (n_steps,)
        Step numbers, from 1.
    model_loss : ndarray of float64, shape (n_steps,)
        The model's (generative) loss on the step's minibatch, before its update.
    critic_loss : ndarray of float64, shape (n_steps,)
        Mean of the step's critic losses, before each update; NaN for a method without
        trainable critic parameters (no critic steps).
    wall_time : ndarray of float64, shape (n_steps,)
        Seconds of training from the start of the run to the end of each step (a resumed
        run continues from the time saved in its checkpoint).
    """

    step: np.ndarray
    model_loss: np.ndarray
    critic_loss: np.ndarray
    wall_time: np.ndarray

    def __len__(self) -> int:
        return int(self.step.shape[0])
