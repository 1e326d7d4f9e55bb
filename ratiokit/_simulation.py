"""Simulations for a black-box fit: common random numbers, batches, executors and retries.

One evaluation at ``theta`` draws ``n_sim`` points in batches of at most ``sim_batch_size``,
batch ``b`` always from the same seed (common random numbers: the objective is then a
deterministic, and for a smooth simulator smooth, function of ``theta``). Batches are the
unit of work: they run in this process, or fan out through any
:class:`concurrent.futures.Executor` or a ``dask.distributed.Client``, and come back in batch
order, so every path gives the same numbers bit for bit.

Two kinds of failure are kept apart. A simulator that raises, or returns NaN or a wrong
shape, fails *at that theta*: the failure is captured inside the task and reported with
theta (a search treats theta as infeasible). A task that fails in the executor (a lost
connection, a cancelled future) says nothing about theta: it is resubmitted up to
``max_retries`` times, and finished batches are kept, never recomputed.

Some executor failures cannot be retried, and end the work with an :class:`ExecutorError`
that names the unfinished tasks and keeps the finished ones: a broken executor (a
process-pool worker died: every pending task fails and no task can be submitted), a dask
task that killed its workers (``KilledWorker``: dask already ran it on
``distributed.scheduler.allowed-failures`` + 1 workers, and a resubmission would kill more),
and a wait longer than ``timeout`` for the next task to finish (a cluster that lost every
worker leaves its tasks queued forever). Tasks are collected as they finish, so one that
never ends cannot hide the others.
"""

from __future__ import annotations

import concurrent.futures
import queue
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np

from ratiokit.exceptions import ExecutorError

__all__ = [
    "NAN_POLICIES",
    "SimulationEngine",
    "TaskError",
    "check_executor",
    "check_output",
    "format_theta",
    "run_tasks",
    "run_tasks_keeping",
]

#: What NaN or infinite rows in a simulation mean: a failed simulation, or rows to drop.
NAN_POLICIES = ("fail", "drop")


@dataclass(frozen=True)
class TaskError:
    """A simulator's exception, captured inside a task (picklable, so it crosses processes)."""

    message: str


def simulate_batch(simulator: Callable[..., Any], theta: np.ndarray, n: int, seed: Any) -> Any:
    """Run ``simulator(theta, n, rng)`` with ``rng`` made from ``seed``; capture its error.

    A module-level function, so executors in other processes can run it.
    """
    try:
        out = simulator(theta.copy(), n, np.random.default_rng(seed))
        return np.asarray(out)
    except Exception as err:  # noqa: BLE001 - any simulator error is reported with theta
        return TaskError(f"{type(err).__name__}: {err}")


def check_executor(executor: Any) -> Any:
    """Return ``executor`` after checking it is None, an Executor or a dask Client.

    Raises
    ------
    TypeError
        For anything else.
    """
    if executor is None or isinstance(executor, concurrent.futures.Executor):
        return executor
    if _is_dask(executor):
        return executor
    raise TypeError(
        "`executor` must be None, a concurrent.futures.Executor or a dask.distributed.Client; "
        f"got {type(executor).__name__}."
    )


def _is_dask(executor: Any) -> bool:
    return type(executor).__module__.split(".")[0] == "distributed" and hasattr(executor, "submit")


def _submit(executor: Any, fn: Callable[..., Any], args: tuple) -> Any:
    if _is_dask(executor):
        # pure=False: every submission is a new task, so a retry is never served the
        # failed result again from the scheduler's cache.
        return executor.submit(fn, *args, pure=False)
    return executor.submit(fn, *args)


def _unretriable(err: BaseException) -> bool:
    """Whether an executor failure cannot be fixed by resubmitting the task."""
    if isinstance(err, concurrent.futures.BrokenExecutor):  # e.g. a process-pool worker died
        return True
    # A dask task that killed `allowed-failures` + 1 workers: dask already retried it.
    kind = type(err)
    return kind.__name__ == "KilledWorker" and kind.__module__.split(".")[0] == "distributed"


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()).rstrip(".")
    return f"{type(err).__name__}: {text}"


def run_tasks(
    executor: Any,
    fn: Callable[..., Any],
    tasks: Sequence[tuple],
    *,
    max_retries: int,
    describe: Callable[[int], str],
    timeout: float | None = None,
) -> tuple[list[Any], int]:
    """``([fn(*t) for t in tasks], n_retries)``, in order, here or through ``executor``.

    Results are collected as tasks finish. A task whose future raises is resubmitted (at
    most ``max_retries`` times); results already returned are kept.

    Raises
    ------
    ExecutorError
        When a task still fails after ``max_retries`` resubmissions, the executor cannot
        run it again (see the module notes), or no task finishes within ``timeout`` seconds
        (None: no limit). The message names the unfinished tasks with ``describe(index)``;
        they are cancelled, and the error keeps the finished results.
    """
    if executor is None:
        return [fn(*task) for task in tasks], 0
    results: list[Any] = [None] * len(tasks)
    done = [False] * len(tasks)
    attempts = [0] * len(tasks)
    running: dict[Any, int] = {}  # future -> task index
    finished: queue.SimpleQueue = queue.SimpleQueue()
    n_retries = 0

    def stop(why: str, cause: BaseException | None) -> NoReturn:
        for future, i in running.items():
            if future.done() and not future.cancelled() and future.exception() is None:
                results[i], done[i] = future.result(), True  # finished while another was read
            else:
                future.cancel()
        names = [describe(i) for i in range(len(tasks)) if not done[i]]
        listed = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise ExecutorError(
            f"{why}; unfinished: {listed}.",
            unfinished=tuple(names),
            outputs=results,
            n_retries=n_retries,
        ) from cause

    def submit(i: int) -> None:
        try:
            future = _submit(executor, fn, tasks[i])
        except Exception as err:  # noqa: BLE001 - a broken or shut-down executor refuses work
            stop(f"the executor refused task {describe(i)}: {_one_line(err)}", err)
        attempts[i] += 1
        running[future] = i
        future.add_done_callback(finished.put)

    for i in range(len(tasks)):
        submit(i)
    while running:
        try:
            future = finished.get(timeout=timeout)
        except queue.Empty:
            stop(
                f"no executor task finished within `timeout`={timeout:g} s; raise `timeout` "
                "if a task takes longer, or check that the executor still has workers",
                None,
            )
        i = running.pop(future)
        try:
            results[i], done[i] = future.result(), True
        except Exception as err:  # noqa: BLE001 - executor failures: worker lost, cancelled
            if _unretriable(err):
                stop(
                    f"task {describe(i)} failed in the executor and cannot be resubmitted: "
                    f"{_one_line(err)}",
                    err,
                )
            if attempts[i] > max_retries:
                stop(
                    f"task {describe(i)} failed {attempts[i]} times in the executor "
                    f"(`max_retries`={max_retries}); last error: {_one_line(err)}",
                    err,
                )
            submit(i)
            n_retries += 1
    return results, n_retries


def run_tasks_keeping(
    executor: Any,
    fn: Callable[..., Any],
    tasks: Sequence[tuple],
    *,
    max_retries: int,
    describe: Callable[[int], str],
    timeout: float | None,
    missing: Any,
) -> tuple[list[Any], int, ExecutorError | None]:
    """:func:`run_tasks` that keeps what finished when the executor stops the work:
    ``(outputs, n_retries, error)``, ``missing`` in place of each unfinished task's output and
    ``error`` the :class:`~ratiokit.exceptions.ExecutorError` (None if every task finished)."""
    try:
        outputs, retries = run_tasks(
            executor, fn, tasks, max_retries=max_retries, describe=describe, timeout=timeout
        )
    except ExecutorError as err:
        return [missing if out is None else out for out in err.outputs], err.n_retries, err
    return outputs, retries, None


def check_output(
    out: Any, n: int, n_features: int, nan_policy: str
) -> tuple[np.ndarray | None, str | None, int]:
    """Validate one simulated batch: ``(array (n', d), None, n_dropped)`` or ``(None, why, 0)``.

    The array must be numeric of shape (n, d), or (n,) when d = 1. NaN or infinite rows make
    the batch fail (``nan_policy="fail"``) or are dropped and counted (``"drop"``).
    """
    if isinstance(out, TaskError):
        return None, f"raised {out.message}", 0
    arr = np.asarray(out)
    if arr.dtype.kind not in "biuf":
        return None, f"returned an array of dtype {arr.dtype}; expected real numbers", 0
    arr = arr.astype(np.float64, copy=False)
    if arr.ndim == 1 and n_features == 1:
        arr = arr[:, None]
    if arr.shape != (n, n_features):
        return (
            None,
            f"returned shape {arr.shape} for n = {n}; expected ({n}, {n_features})",
            0,
        )
    bad = ~np.isfinite(arr).all(axis=1)
    n_bad = int(bad.sum())
    if n_bad and nan_policy == "fail":
        return None, f"returned NaN or inf in {n_bad} of {n} rows", 0
    return (arr[~bad] if n_bad else arr), None, n_bad


class SimulationEngine:
    """Simulate ``n_sim`` points at each of many ``theta`` with common random numbers.

    Parameters
    ----------
    simulator : callable
        ``simulator(theta, n, rng) -> array (n, d)``.
    n_sim : int
        Points per ``theta``.
    sim_batch_size : int
        Largest batch (one task, one seed).
    rng : numpy.random.Generator
        Spawns one seed per batch, fixed for the engine's life.
    n_features : int
        ``d``, the number of features of the data.
    executor : None, Executor or dask Client
    max_retries : int
        Resubmissions of a task that fails in the executor.
    nan_policy : {"fail", "drop"}
    timeout : float or None, default=None
        Longest wait, in seconds, for the next executor task to finish.

    Attributes
    ----------
    n_simulations : int
        Points simulated so far (successful batches).
    n_dropped : int
        NaN or infinite rows dropped so far (``nan_policy="drop"``).
    n_retries : int
        Tasks resubmitted so far.
    """

    def __init__(
        self,
        simulator: Callable[..., Any],
        n_sim: int,
        sim_batch_size: int,
        rng: np.random.Generator,
        n_features: int,
        executor: Any,
        max_retries: int,
        nan_policy: str,
        timeout: float | None = None,
    ) -> None:
        self.simulator = simulator
        n_batches = -(-n_sim // sim_batch_size)
        self.sizes = [sim_batch_size] * (n_batches - 1) + [
            n_sim - sim_batch_size * (n_batches - 1)
        ]
        self.seeds = [g.bit_generator.seed_seq for g in rng.spawn(n_batches)]
        self.n_features = n_features
        self.executor = executor
        self.max_retries = max_retries
        self.nan_policy = nan_policy
        self.timeout = timeout
        self.n_simulations = 0
        self.n_dropped = 0
        self.n_retries = 0

    def run(self, thetas: Sequence[np.ndarray]) -> list[np.ndarray | str]:
        """Simulate at every ``theta``: an array (n_sim', d) each, or a failure message.

        Raises
        ------
        ExecutorError
            From :func:`run_tasks`, with ``outputs`` per theta (None where a batch did not
            finish), counted like a normal return.
        """
        nb = len(self.sizes)
        tasks = [
            (self.simulator, np.asarray(theta, dtype=np.float64), self.sizes[b], self.seeds[b])
            for theta in thetas
            for b in range(nb)
        ]

        def describe(i: int) -> str:
            return f"simulate(theta={format_theta(tasks[i][1])}, batch {i % nb})"

        try:
            outputs, retries = run_tasks(
                self.executor,
                simulate_batch,
                tasks,
                max_retries=self.max_retries,
                describe=describe,
                timeout=self.timeout,
            )
        except ExecutorError as err:
            self.n_retries += err.n_retries
            err.outputs = self._collect(thetas, err.outputs)
            raise
        self.n_retries += retries
        return self._collect(thetas, outputs)

    def _collect(self, thetas: Sequence[np.ndarray], outputs: list[Any]) -> list[Any]:
        """Per theta: its batches joined, a failure message, or None if a batch is missing."""
        nb = len(self.sizes)
        results: list[np.ndarray | str | None] = []
        for t in range(len(thetas)):
            if any(out is None for out in outputs[t * nb : (t + 1) * nb]):
                results.append(None)
                continue
            parts, dropped, why = [], 0, None
            for b in range(nb):
                arr, why, n_bad = check_output(
                    outputs[t * nb + b], self.sizes[b], self.n_features, self.nan_policy
                )
                if why is not None:
                    break
                parts.append(arr)
                dropped += n_bad
            if why is not None:
                results.append(f"the simulator {why} at theta={format_theta(thetas[t])}")
                continue
            self.n_simulations += sum(self.sizes)
            self.n_dropped += dropped
            results.append(np.concatenate(parts) if nb > 1 else parts[0])
        return results


def format_theta(theta: Any) -> str:
    """``theta`` for a message: ``[0.5, 2]`` (6 significant digits)."""
    return "[" + ", ".join(f"{v:.6g}" for v in np.asarray(theta, dtype=np.float64).ravel()) + "]"
