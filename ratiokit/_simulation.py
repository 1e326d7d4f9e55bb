"""Simulations for a black-box fit: common random numbers, batches, executors and retries.

One evaluation at ``theta`` draws ``n_sim`` points in batches of at most ``sim_batch_size``,
batch ``b`` always from the same seed (common random numbers: the objective is then a
deterministic, and for a smooth simulator smooth, function of ``theta``). Batches are the
unit of work: they run in this process, or fan out through any
:class:`concurrent.futures.Executor` or a ``dask.distributed.Client``, and come back in batch
order, so every path gives the same numbers bit for bit.

Two kinds of failure are kept apart. A simulator that raises, or returns NaN or a wrong
shape, fails *at that theta*: the failure is captured inside the task and reported with
theta (a search treats theta as infeasible). A task that fails in the executor (a worker
died, a cancelled future) says nothing about theta: it is resubmitted up to
``max_retries`` times, and finished batches are kept, never recomputed.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "NAN_POLICIES",
    "SimulationEngine",
    "TaskError",
    "check_executor",
    "check_output",
    "format_theta",
    "run_tasks",
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


def run_tasks(
    executor: Any,
    fn: Callable[..., Any],
    tasks: Sequence[tuple],
    *,
    max_retries: int,
    describe: Callable[[int], str],
) -> tuple[list[Any], int]:
    """``([fn(*t) for t in tasks], n_retries)``, in order, here or through ``executor``.

    Tasks whose future raises are resubmitted (at most ``max_retries`` times each);
    results already returned are kept.

    Raises
    ------
    RuntimeError
        When a task still fails after ``max_retries`` resubmissions (the message names it
        with ``describe(index)``); the other pending tasks are cancelled.
    """
    if executor is None:
        return [fn(*task) for task in tasks], 0
    futures = [_submit(executor, fn, task) for task in tasks]
    results: list[Any] = [None] * len(tasks)
    attempts = [1] * len(tasks)
    pending = list(range(len(tasks)))
    n_retries = 0
    while pending:
        failed = []
        for i in pending:
            try:
                results[i] = futures[i].result()
            except Exception as err:  # noqa: BLE001 - executor failures: worker lost, cancelled
                if attempts[i] > max_retries:
                    for j in pending:
                        futures[j].cancel()
                    raise RuntimeError(
                        f"task {describe(i)} failed {attempts[i]} times in the executor "
                        f"(`max_retries`={max_retries}); last error: {type(err).__name__}: {err}"
                    ) from err
                failed.append(i)
        for i in failed:
            futures[i] = _submit(executor, fn, tasks[i])
            attempts[i] += 1
            n_retries += 1
        pending = failed
    return results, n_retries


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
        self.n_simulations = 0
        self.n_dropped = 0
        self.n_retries = 0

    def run(self, thetas: Sequence[np.ndarray]) -> list[np.ndarray | str]:
        """Simulate at every ``theta``: an array (n_sim', d) each, or a failure message."""
        nb = len(self.sizes)
        tasks = [
            (self.simulator, np.asarray(theta, dtype=np.float64), self.sizes[b], self.seeds[b])
            for theta in thetas
            for b in range(nb)
        ]

        def describe(i: int) -> str:
            return f"simulate(theta={format_theta(tasks[i][1])}, batch {i % nb})"

        outputs, retries = run_tasks(
            self.executor, simulate_batch, tasks, max_retries=self.max_retries, describe=describe
        )
        self.n_retries += retries
        results: list[np.ndarray | str] = []
        for t in range(len(thetas)):
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
