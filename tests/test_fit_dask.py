"""rk.fit through a dask.distributed LocalCluster: the serial result, even when a worker dies.

A task that kills every worker it runs on, or a cluster without workers, ends the fit in
bounded time with an ExecutorError that keeps what finished (see tests/test_simulation.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import ratiokit as rk
from ratiokit.config import SearchConfig
from ratiokit.exceptions import ExecutorError
from ratiokit.simulators import GaussianLocationScale
from tests import test_simulation as faults

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")

GAUSS = GaussianLocationScale(theta_true=(1.0, 2.0))


class KillFirstTask:
    """N(theta[0], theta[1]^2) that kills its worker process on the first task it ever runs.

    The first call anywhere creates ``marker`` atomically (``O_EXCL``) and exits the process
    without returning; every call that returns appends its ``(theta, n, first draw)`` to
    ``log`` (an ``O_APPEND`` write of one short line), so a test can count the completed
    simulations.
    """

    def __init__(self, marker: Path, log: Path):
        self.marker, self.log = str(marker), str(log)

    def __call__(self, theta, n, rng):
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pass
        else:
            os.close(fd)
            os._exit(1)  # the worker dies mid-task, as on a lost machine
        x = theta[0] + theta[1] * rng.standard_normal((n, 1))
        with open(self.log, "a") as handle:
            handle.write(f"{theta.tolist()} {n} {x[0, 0]!r}\n")
        return x


def completed(log: Path) -> list[str]:
    return sorted(log.read_text().splitlines()) if log.exists() else []


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=50,  # logging.CRITICAL: the killed worker is expected
    )
    with distributed.Client(cluster) as client:
        yield client
    cluster.close()


def test_dask_gives_the_serial_fit_when_a_worker_dies(tmp_path, client):
    data = GAUSS.sample(300, rng=7)
    # L-BFGS-B simulates its k + 1 finite-difference points together (12 tasks at a time).
    config = SearchConfig("l-bfgs-b", n_sim=400, sim_batch_size=100)
    kwargs = {"theta0": [0.0, 1.0], "config": config, "kind": "numpy", "rng": 3}
    serial_marker = tmp_path / "serial.marker"
    serial_marker.touch()  # the serial run must not kill the test process
    serial_log, dask_log = tmp_path / "serial.log", tmp_path / "dask.log"
    serial = rk.fit(KillFirstTask(serial_marker, serial_log), data, **kwargs)
    dask_marker = tmp_path / "dask.marker"
    res = rk.fit(KillFirstTask(dask_marker, dask_log), data, executor=client, **kwargs)
    assert dask_marker.exists()  # a worker did die on its first task
    # Common random numbers and batches returned in order: the same fit, bit for bit.
    np.testing.assert_array_equal(res.theta, serial.theta)
    np.testing.assert_array_equal(res.history["loss"], serial.history["loss"])
    assert res.n_simulations == serial.n_simulations
    # Nothing lost, nothing duplicated: every batch completed exactly once, as serially.
    assert completed(dask_log) == completed(serial_log)
    assert len(completed(dask_log)) == res.n_steps * 4  # 4 batches per evaluation


def test_dask_bootstrap_and_executor_interface_match_serial(tmp_path, client):
    data = GAUSS.sample(200, rng=8)
    kwargs = {"theta0": [0.0, 1.0], "method": "moments", "n_bootstrap": 4, "rng": 5}
    serial = rk.fit(GAUSS, data, kind="numpy", **kwargs)
    via_client = rk.fit(GAUSS, data, kind="numpy", executor=client, **kwargs)
    via_executor = rk.fit(GAUSS, data, kind="numpy", executor=client.get_executor(), **kwargs)
    for other in (via_client, via_executor):
        np.testing.assert_array_equal(other.theta, serial.theta)
        np.testing.assert_array_equal(other.bootstrap, serial.bootstrap)
        np.testing.assert_array_equal(other.confidence_interval, serial.confidence_interval)


def test_dask_task_that_kills_its_workers_ends_the_fit_keeping_what_finished():
    # Workers die on every task with theta[0] > 0.5. dask runs such a task on
    # `allowed-failures` + 1 workers, then fails it with KilledWorker; on main, rk.fit
    # resubmitted it into a cluster that had lost its workers and blocked forever. With
    # allowed-failures = 0 dask gives up after the first death (its default, 3, takes four
    # worker restarts to reach the same KilledWorker). `timeout` only bounds a broken run.
    data = GAUSS.sample(300, rng=7)
    serial = faults.serial_reference(data)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=50,  # logging.CRITICAL: the killed worker is expected
        )
    with distributed.Client(cluster) as client:
        with pytest.raises(ExecutorError, match="KilledWorker") as info:
            rk.fit(faults.exit_above, data, executor=client, timeout=120, **faults.KWARGS)
    cluster.close()
    assert isinstance(info.value.__cause__, distributed.KilledWorker)
    faults.assert_kept_the_serial_prefix(info.value, serial)


def test_dask_cluster_without_workers_ends_the_fit_after_timeout():
    # Tasks queued on a cluster with no worker wait forever (dask's no-workers-timeout is
    # None by default): the state a LocalCluster reaches when its restarted workers take
    # longer than `lost-worker-timeout` to come back. `timeout` bounds the wait.
    data = GAUSS.sample(300, rng=7)
    cluster = distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=":0")
    with distributed.Client(cluster) as client:
        with pytest.raises(ExecutorError, match=r"no executor task finished within `timeout`=1 s"):
            rk.fit(faults.gauss, data, executor=client, timeout=1, **faults.KWARGS)
    cluster.close()
