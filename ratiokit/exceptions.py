"""The exceptions and warnings ratiokit raises beyond ValueError and TypeError.

Each says what went wrong in the user's terms, so it can be caught on its own: a statistic with
no p-value, executor tasks that cannot finish, a fit that ended before it converged.
"""

from __future__ import annotations

from typing import Any

import sklearn.exceptions

__all__ = ["ConvergenceWarning", "ExecutorError", "NonFiniteStatisticError"]


class NonFiniteStatisticError(ValueError):
    """A statistic or an estimate was NaN or infinite, so it has no p-value or value.

    A subclass of ValueError: like invalid input, it means the data or the settings (data at an
    extreme scale, a bandwidth far from the data's scale, a fit that diverged, a custom
    ``forward`` that returns NaN or inf) must change before ratiokit can answer.
    """


class ExecutorError(RuntimeError):
    """Executor tasks that cannot finish; what finished before is kept.

    Raised when a task fails in the executor more than ``max_retries`` times, when the
    executor cannot run it again (a broken process pool, a dask ``KilledWorker``), or when
    no task finishes within ``timeout`` seconds. It is chained from the executor's exception.

    Attributes
    ----------
    unfinished : tuple of str
        The tasks that did not finish, e.g. ``"simulate(theta=[0.6, 1], batch 0)"``.
    outputs : list
        Every task's output in order, None for the unfinished ones.
    n_retries : int
        Tasks resubmitted before the failure.
    result : FitResult or None
        Set by :func:`ratiokit.fit`: the fit up to the failure, or None if no evaluation
        finished.
    """

    def __init__(
        self, message: str, *, unfinished: tuple[str, ...], outputs: list[Any], n_retries: int
    ) -> None:
        super().__init__(message)
        self.unfinished = unfinished
        self.outputs = outputs
        self.n_retries = n_retries
        self.result: Any = None


class ConvergenceWarning(sklearn.exceptions.ConvergenceWarning):
    """A fit ended before its iterates stopped moving (a UserWarning, as in scikit-learn).

    Filtering scikit-learn's ``ConvergenceWarning`` filters this one too.
    """
