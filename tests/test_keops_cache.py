"""KeOps' shared cache folder: the import, first compilation and exit-time index writes are
serialised across processes by ratiokit's lock, so concurrent processes never read a
half-written file."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from ratiokit import _keops
from ratiokit.kernels import Kernel, kernel_sum

pytestmark = pytest.mark.keops

# Imports KeOps the way ratiokit does, says so, and exits when told (writing pykeops' indexes).
IMPORT_THEN_WAIT = """
import sys, time
from ratiokit._keops import keops_available
print("ready", flush=True)
assert keops_available()
print("imported at", repr(time.time()), flush=True)
sys.stdin.readline()
"""


def _child(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", IMPORT_THEN_WAIT],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _imported_at(proc: subprocess.Popen) -> float:
    # pykeops prints its own messages to stdout; ours is the line that starts so.
    for line in proc.stdout:
        if line.startswith("imported at "):
            return float(line.split()[-1])
    raise AssertionError(proc.stderr.read())


def _still_running(proc: subprocess.Popen, seconds: float) -> bool:
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return True
    return False


def test_import_and_exit_writes_wait_for_the_lock(tmp_path, monkeypatch):
    folder = tmp_path / "keops"
    monkeypatch.setenv("KEOPS_CACHE_FOLDER", str(folder))
    env = dict(os.environ)

    # 1. While another process holds the lock, importing KeOps waits for it: the child's
    # import ends after the release (without the lock it would take about a second).
    with _keops.cache_lock():
        proc = _child(env)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(2.0)
        released = time.time()
    assert _imported_at(proc) >= released

    # 2. The exit-time index writes also wait for the lock: pykeops would otherwise truncate
    # the index files (a window in which another process's import fails with EOFError).
    with _keops.cache_lock():
        before = {p.name: p.stat().st_mtime_ns for p in folder.rglob("*.pkl")}
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert _still_running(proc, 2.0)
        assert {p.name: p.stat().st_mtime_ns for p in folder.rglob("*.pkl")} == before
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    indexes = sorted(p.name for p in folder.rglob("*.pkl"))
    assert indexes == ["LoadKeOps_cpp_class_cache.pkl", "get_keops_dll_impl_cache.pkl"]
    assert all(p.stat().st_size > 0 for p in folder.rglob("*.pkl"))
    assert not list(folder.rglob("*.tmp"))  # written to a temporary file, then renamed


# Counts pykeops' compiler runs (through subprocess.run) made with and without ratiokit's lock
# held; a script that starts with this ends by printing the counts.
COUNT_COMPILES = """
import contextlib, subprocess
import torch
import ratiokit._keops, ratiokit.kernels
from ratiokit.kernels import Kernel, kernel_sum

held, runs = [0], {True: 0, False: 0}
lock, run = ratiokit._keops.cache_lock, subprocess.run

@contextlib.contextmanager
def counted_lock():
    with lock():
        held[0] += 1
        try:
            yield
        finally:
            held[0] -= 1

def counted_run(command, *args, **kwargs):
    if "-shared" in str(command):  # a compiled module, not a probe of the compiler
        runs[held[0] > 0] += 1
    return run(command, *args, **kwargs)

ratiokit._keops.cache_lock = ratiokit.kernels.cache_lock = counted_lock
subprocess.run = counted_run
"""


def _compile_counts(line: str) -> tuple[int, int]:
    """(locked, unlocked) from the line a COUNT_COMPILES script prints last."""
    words = line.split()
    assert words[0] == "compiled", line
    return int(words[1]), int(words[3])


# The value and gradient of one formula.
CONCURRENT = (
    COUNT_COMPILES
    + """
g = torch.Generator().manual_seed(0)
x = torch.randn(64, 6, generator=g, dtype=torch.float64, requires_grad=True)
k = Kernel("laplace", (0.3, 0.9, 2.7, 8.1))
out = kernel_sum(k, x, x, torch.ones(64, dtype=torch.float64), backend="keops").sum()
out.backward()
print(repr(float(out.detach())), repr(float(x.grad.abs().sum())))
print("compiled", runs[True], "locked", runs[False], "unlocked")
"""
)

# One formula per pattern of single rows (a single row is a parameter of the formula).
ROW_PATTERNS = (
    COUNT_COMPILES
    + """
g = torch.Generator().manual_seed(0)
for nx, ny in [(1, 1), (1, 5), (5, 1), (5, 5), (2, 9)]:
    x, y = torch.randn(nx, 3, generator=g), torch.randn(ny, 3, generator=g)
    kernel_sum(Kernel("gaussian", (0.5,)), x, y, torch.ones(ny), backend="keops")
print("compiled", runs[True], "locked", runs[False], "unlocked")
"""
)


# Slow: each process imports torch and the formula compiles from scratch (minutes on a loaded
# 2-core machine); `make test` runs it after the default suite.
@pytest.mark.slow
def test_four_processes_compiling_one_formula(tmp_path):
    # A fresh cache folder: four processes import KeOps, compile the same formula (value and
    # gradient) and exit at about the same time.
    env = dict(os.environ, KEOPS_CACHE_FOLDER=str(tmp_path / "keops"), OMP_NUM_THREADS="1")
    procs = [
        subprocess.Popen([sys.executable, "-c", CONCURRENT], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]  # fmt: skip
    outputs = [p.communicate(timeout=900) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, f"a process exited with {p.returncode}:\n{err}"
    # The last two lines are ours; pykeops prints its compile messages to stdout before them.
    lines = [out.strip().splitlines()[-2:] for out, _ in outputs]
    # Every compilation ran under the lock (the first use of a formula, warmed up on a tiny
    # input, is the very formula the full call runs), and someone did compile in the empty cache.
    counts = [_compile_counts(line) for _, line in lines]
    assert all(unlocked == 0 for _, unlocked in counts), counts
    assert sum(locked for locked, _ in counts) >= 1, counts
    values = {value for value, _ in lines}
    assert len(values) == 1, values  # identical results: nobody loaded a corrupt module
    # And the result is right: compare with the dense backend in this process.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=g, dtype=torch.float64)
    ref = kernel_sum(Kernel("laplace", (0.3, 0.9, 2.7, 8.1)), x, x,
                     torch.ones(64, dtype=torch.float64), backend="dense").sum()  # fmt: skip
    assert float(values.pop().split()[0]) == pytest.approx(float(ref), rel=1e-10)


@pytest.mark.slow
def test_single_rows_compile_under_the_lock(tmp_path):
    # x or y with one row is another formula than with two or more; the warm-up under the lock
    # must compile the formula the call then runs, for each pattern (four formulas here).
    env = dict(os.environ, KEOPS_CACHE_FOLDER=str(tmp_path / "keops"), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", ROW_PATTERNS], env=env, capture_output=True,
                          text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert _compile_counts(done.stdout.strip().splitlines()[-1]) == (4, 0)
