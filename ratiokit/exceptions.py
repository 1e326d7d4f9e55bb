"""The exceptions and warnings ratiokit raises beyond ValueError and TypeError.

Each says what went wrong in the user's terms, so it can be caught on its own: a statistic with
no p-value, a training loss that became NaN, executor tasks that cannot finish, a fit that ended
before it converged.
"""

from __future__ import annotations

from typing import Any

import sklearn.exceptions

__all__ = [
    "ConvergenceWarning",
    "ExecutorError",
    "NonFiniteLossError",
    "NonFiniteStatisticError",
]


class NonFiniteStatisticError(ValueError):
    """A statistic or an estimate was NaN or infinite, so it has no p-value or value.

    A subclass of ValueError: like invalid input, it means the data or the settings (data at an
    extreme scale, a bandwidth far from the data's scale, a fit that diverged, a custom
    ``forward`` that returns NaN or inf) must change before ratiokit can answer.
    """


class NonFiniteLossError(RuntimeError):
    """A training loss or gradient became NaN or infinite; no update was made with it.

    Raised by every optimiser step of ratiokit (:func:`ratiokit.train` and the critics of the
    trained ratio methods) before the update, so the parameters keep their last finite values.
    A subclass of RuntimeError: the run, not the input, went wrong; lower the learning rate.

    Attributes
    ----------
    step : int
        The step that failed: the model holds its parameters from ``step - 1`` (a critic
        trained with early stopping is reset to its best state).
    outcome : TrainOutcome or None
        The run up to the last good step (set by :func:`ratiokit.train`), else None.
    """

    def __init__(self, message: str, *, step: int) -> None:
        super().__init__(message)
        self.step = step
        self.outcome: Any = None


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
