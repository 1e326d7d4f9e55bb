"""Executor faults (ratiokit._simulation) end in bounded time, name theta, keep what finished.

A simulator that *raises* at some theta fails that point and the search goes on (tests in
test_fit.py). These tests cover the executor itself failing: a process-pool worker that dies,
a task that never finishes, and an executor that refuses work. The reference for what a
stopped fit keeps is the serial fit of the same search with a simulator that raises where
the executor fails: Nelder-Mead evaluates one theta at a time, so the stopped fit must hold
exactly the serial fit's evaluations before the first failing theta, bit for bit.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import threading
import warnings

import numpy as np
import pytest

import ratiokit as rk
from ratiokit._simulation import format_theta, run_tasks
from ratiokit.config import SearchConfig, TrainConfig
from ratiokit.exceptions import ExecutorError
from ratiokit.simulators import GaussianLocationScale

GAUSS = GaussianLocationScale(theta_true=(1.0, 2.0))
# n_sim = 200 in batches of 100: two tasks per theta, so a failing theta has a batch that
# may or may not have finished when the other fails.
CONFIG = SearchConfig(n_sim=200, sim_batch_size=100)
KWARGS = {"theta0": [0.0, 1.0], "config": CONFIG, "kind": "numpy", "rng": 3}
THRESHOLD = 0.5  # the executor fails where theta[0] > THRESHOLD; the truth is theta[0] = 1


@pytest.fixture(scope="module")
def data():
    return GAUSS.sample(300, rng=7)


def gauss(theta, n, rng):
    return theta[0] + theta[1] * rng.standard_normal((n, 1))


def raise_above(theta, n, rng):
    """The serial reference: fails (raises) exactly where the executor fails."""
    if theta[0] > THRESHOLD:
        raise ValueError("above the threshold")
    return gauss(theta, n, rng)


def exit_above(theta, n, rng):
    """Kills the process that runs it (as a segfault or a lost machine would) above THRESHOLD."""
    if theta[0] > THRESHOLD:
        os._exit(1)
    return gauss(theta, n, rng)


def serial_reference(data):
    """The serial fit and the index of its first evaluation above THRESHOLD."""
    with pytest.warns(UserWarning, match="failed at"):
        res = rk.fit(raise_above, data, **KWARGS)
    first = int(np.argmax(res.history["theta"][:, 0] > THRESHOLD))
    assert first > 0 and res.history["theta"][first, 0] > THRESHOLD  # the search gets there
    return res, first


@pytest.fixture(scope="module")
def serial(data):
    return serial_reference(data)


def assert_kept_the_serial_prefix(err, serial):
    """``err.result`` is the serial fit stopped before its first failing evaluation."""
    ref, first = serial
    kept = err.result
    assert kept is not None and not kept.converged
    np.testing.assert_array_equal(kept.history["theta"], ref.history["theta"][:first])
    np.testing.assert_array_equal(kept.history["loss"], ref.history["loss"][:first])
    best = int(np.argmin(ref.history["loss"][:first]))
    np.testing.assert_array_equal(kept.theta, ref.history["theta"][best])
    assert kept.n_steps == first and kept.n_simulations == first * CONFIG.n_sim
    assert kept.failures == ()  # nothing failed *at* a theta: the executor failed
    # The message names the failed simulations by theta.
    theta = format_theta(ref.history["theta"][first])
    assert f"simulate(theta={theta}, batch" in str(err)
    assert err.unfinished and all(f"theta={theta}" in name for name in err.unfinished)
    assert "`result`" in str(err)


def test_a_dying_process_pool_worker_ends_the_fit_keeping_what_finished(data, serial):
    # On main this escaped as a bare BrokenProcessPool from deep in the search (raised by
    # the resubmission to the broken pool), with every finished evaluation lost.
    context = multiprocessing.get_context("fork")  # fast: no re-import of torch per worker
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
        with pytest.raises(ExecutorError, match="BrokenProcessPool") as info:
            rk.fit(exit_above, data, executor=pool, **KWARGS)
    err = info.value
    assert isinstance(err, RuntimeError)
    assert isinstance(err.__cause__, concurrent.futures.process.BrokenProcessPool)
    assert err.result.details["message"] == "stopped by the executor: BrokenProcessPool"
    assert_kept_the_serial_prefix(err, serial)


class HangAbove:
    """gauss that blocks (a hung simulation) above THRESHOLD until ``release`` is set."""

    def __init__(self):
        self.release = threading.Event()

    def __call__(self, theta, n, rng):
        if theta[0] > THRESHOLD:
            self.release.wait()
        return gauss(theta, n, rng)


def test_a_task_that_never_finishes_ends_the_fit_after_timeout(data, serial):
    sim = HangAbove()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        try:
            with pytest.raises(ExecutorError, match=r"within `timeout`=0\.5 s") as info:
                rk.fit(sim, data, executor=pool, timeout=0.5, **KWARGS)
        finally:
            sim.release.set()  # let the pool's threads end
    assert info.value.__cause__ is None
    assert info.value.result.details["message"] == "stopped by the executor: ExecutorError"
    assert_kept_the_serial_prefix(info.value, serial)


def test_run_tasks_collects_tasks_as_they_finish_and_keeps_them():
    # Task 0 never finishes; tasks 1 and 2 do. Waiting in submission order would block on
    # task 0 forever; collected as they finish, 1 and 2 are kept and only 0 is named.
    release = threading.Event()
    tasks = [(release.wait,), (lambda: "one",), (lambda: "two",)]
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        try:
            with pytest.raises(ExecutorError, match=r"unfinished: task 0\.") as info:
                run_tasks(
                    pool,
                    lambda f: f(),
                    tasks,
                    max_retries=2,
                    describe=lambda i: f"task {i}",
                    timeout=0.2,
                )
        finally:
            release.set()
    assert info.value.outputs == [None, "one", "two"]
    assert info.value.unfinished == ("task 0",)


def test_an_executor_that_refuses_work_ends_the_fit(data):
    pool = concurrent.futures.ThreadPoolExecutor(1)
    pool.shutdown()
    with pytest.raises(ExecutorError, match="the executor refused task simulate") as info:
        rk.fit(gauss, data, executor=pool, **KWARGS)
    assert isinstance(info.value.__cause__, RuntimeError)  # "cannot schedule new futures"
    assert info.value.result is None  # no evaluation finished


@pytest.mark.parametrize(
    ("timeout", "error", "match"),
    [
        (0, ValueError, r"`timeout` must be a positive real number; got 0\."),
        (float("inf"), ValueError, r"`timeout` must be a positive real number; got inf\."),
        ("60", TypeError, r"`timeout` must be a positive real number; got '60'\."),
    ],
)
def test_timeout_is_validated(data, timeout, error, match):
    with pytest.raises(error, match=match):
        rk.fit(gauss, data, timeout=timeout, **KWARGS)


class BreaksAt(concurrent.futures.Executor):
    """A thread pool that breaks at submission ``k``, once the earlier tasks have finished,
    as a process pool does when a worker dies: every later submission raises."""

    def __init__(self, k):
        self.pool = concurrent.futures.ThreadPoolExecutor(2)
        self.k, self.futures = k, []

    def submit(self, fn, /, *args, **kwargs):
        if len(self.futures) >= self.k:
            concurrent.futures.wait(self.futures)
            raise concurrent.futures.process.BrokenProcessPool("a worker died")
        self.futures.append(self.pool.submit(fn, *args, **kwargs))
        return self.futures[-1]

    def shutdown(self, wait=True, **kwargs):
        self.pool.shutdown(wait)


def test_a_bootstrap_stopped_by_the_executor_keeps_the_fit_and_finished_replicates(data):
    kwargs = {**KWARGS, "method": "moments", "n_bootstrap": 4}
    ref = rk.fit(gauss, data, **kwargs)
    # The search submits two batches per evaluation; the pool breaks at replicate 2.
    executor = BreaksAt(2 * ref.n_steps + 2)
    with pytest.raises(ExecutorError, match="the executor refused task bootstrap 2") as info:
        rk.fit(gauss, data, executor=executor, **kwargs)
    executor.shutdown()
    err = info.value
    assert isinstance(err.__cause__, concurrent.futures.process.BrokenProcessPool)
    assert err.unfinished == ("bootstrap 2", "bootstrap 3")
    kept = err.result
    # The point estimate is the serial one; replicates 0 and 1 finished and are kept.
    np.testing.assert_array_equal(kept.theta, ref.theta)
    np.testing.assert_array_equal(kept.history["loss"], ref.history["loss"])
    assert kept.converged == ref.converged
    np.testing.assert_array_equal(kept.bootstrap[:2], ref.bootstrap[:2])
    assert np.isnan(kept.bootstrap[2:]).all() and kept.details["n_bootstrap_failed"] == 2


def test_a_torch_fit_bootstrap_stopped_by_the_executor_keeps_finished_replicates(data):
    # A differentiable fit trains in this process; only its replicates go to the executor,
    # which breaks at the second one, after the first finished (alone: bit for bit).
    kwargs = {"theta0": [0.0, 1.0], "n_bootstrap": 2, "rng": 4, "method": "mmd"}
    kwargs["config"] = TrainConfig(max_steps=10, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # whether 10 steps converge is not tested
        ref = rk.fit(GAUSS, data, **kwargs)
    executor = BreaksAt(1)
    with pytest.raises(ExecutorError, match="the executor refused task bootstrap 1") as info:
        rk.fit(GAUSS, data, executor=executor, **kwargs)
    executor.shutdown()
    kept = info.value.result
    assert kept.kind == "torch" and info.value.unfinished == ("bootstrap 1",)
    np.testing.assert_array_equal(kept.theta, ref.theta)
    np.testing.assert_array_equal(kept.bootstrap[0], ref.bootstrap[0])
    assert np.isnan(kept.bootstrap[1:]).all()
