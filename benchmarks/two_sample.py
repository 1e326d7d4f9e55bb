"""Two-sample tests: time and peak memory against n beside hyppo, alibi-detect and frouros,
and a type-I error and power table.

Run from the repository root::

    nice -n 10 python -m benchmarks.two_sample --sections timing peers   # 1-2 hours on 2 cores
    nice -n 10 python -m benchmarks.two_sample --sections power          # about an hour
    python -m benchmarks.two_sample --quick            # n = 500, 1 thread, peers 120 s
    python -m benchmarks.two_sample --sections timing --retime   # ratiokit again, kept apart
    python -m benchmarks.two_sample --plot-only        # redraw the figures from the CSVs

**Timing** (``--sections timing``): every configuration runs in a fresh process
(:func:`benchmarks._common.run_isolated`): ``ratiokit.two_sample_test`` with 999
permutations at d = 10 for n = m from 500 to 10,000 (MMD, energy, MMDAgg, linear-time and
random-feature MMD, Hotelling's T^2, the power-criterion bandwidth and the C2ST / uLSIF
learned-critic tests; KeOps up to 5,000) and the MMD test at n = m = 50,000 (dense tiles: on
the CPU they measured several times faster than KeOps for many permutation columns, see the
``mmd-keops`` rows). The MMD test is timed with 2 and with 1 CPU thread: on this shared
2-core machine a second thread helps only when no other process holds a core. One warm-up
call on 100 points (imports, KeOps compilation) precedes the timed call; *peak RSS* is the
process's peak resident memory, *working* the peak during the timed call minus the memory
before it. Each row records the 1-minute load average before and after it (other processes
on the machine); ``--retime`` measures ratiokit's rows again on a quieter machine and keeps
them beside those of the main run (``run`` = "retime"), never in place of them.

**Peers** (``--sections peers``), each in its own virtual environment, run as a subprocess
with a time limit per call (``--peer-timeout``; a timeout is reported as such, never
extrapolated), on the same data (seeded NumPy draws, regenerated in the peer process):

- hyppo: ``MMD().test(x, y, reps=B, auto=False, workers=-1)`` and ``Energy().test(...)``,
  after a warm-up call on 20 points (numba's compilation); ``pip install hyppo`` into
  ``.venv-peers-hyppo``;
- alibi-detect: ``MMDDrift(x, backend="pytorch" or "keops", n_permutations=B,
  sigma=[h], batch_size_permutations=...).predict(y)`` on float32 data (its usual input),
  after a warm-up detector on 200 points; the KeOps detector's permutation batch is
  capped at 2e8 kernel values (0.8 GB), as its default (all permutations at once) would need
  about 160 GB at 5,000 (the torch detector ignores the setting: it loops over the
  permutations in Python, each on a permuted copy of the full kernel matrix);
  ``pip install -c constraints.txt "alibi-detect[torch,keops]"`` into ``.venv-peers-alibi``
  (Business Source License: benchmarked here, never a dependency);
- frouros: ``MMD(kernel=partial(rbf_kernel, sigma=h),
  callbacks=[PermutationTestDistanceBased(num_permutations=B, num_jobs=-1)])``, fit on x and
  compared with y; ``pip install frouros`` into ``.venv-peers-frouros``.

hyppo is run up to n = m = 1,000 (it needed 471 s there; 2,000 would take about half an
hour per call). Each peer process may use at most ``--peer-memory-gib`` of address space
(default 16), so a peer that would exhaust the shared machine's memory fails alone. A missing
peer environment is created with that pip command when ``--install-peers`` is given, and
otherwise reported as "not installed". ``--venv-prefix`` sets where the environments live
(default: the repository root, ``.venv-peers-<name>``).

**Power** (``--sections power``): rejection rates at alpha = 0.05 over ``--runs`` seeded
runs with 199 permutations, for H0 (two N(0, I) samples), a mean shift, a variance change
(d = 10) and the blobs problem (:class:`ratiokit.synthetic.GaussianBlobs`: differences at
the scale of the blobs, far below the data's spread, where the median bandwidth has almost
no power).

Outputs in ``benchmarks/results/``: ``two_sample.md`` (tables, acceptance checks, machine),
``two_sample_timing.csv``, ``two_sample_power.csv``, ``two_sample.png`` (time and memory
against n) and ``two_sample_power.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import _common

DIM = 10
B = 999
SEED = 0
#: Per-coordinate mean shift of y in the timing data (so every test has something to find).
TIMING_SHIFT = 0.02
SIZES = (500, 1000, 2000, 5000, 10000)
LARGE = 50000
QUICK_SIZES = (500,)
#: ratiokit methods timed, and the largest n = m each is timed at.
TIMED_METHODS = {
    "mmd": 10000,
    "energy": 10000,
    "mmdagg": 5000,
    "mmd-linear": LARGE,
    "mmd_rff": LARGE,
    "moments": LARGE,
    "mmd_opt": 10000,
    "ulsif": 10000,
    "classifier": 5000,
    "mmd-keops": 5000,
}
#: Largest n = m each peer is run at.
PEER_MAX_N = {"hyppo-mmd": 1000, "hyppo-energy": 1000}
PEERS = {
    "hyppo-mmd": "hyppo",
    "hyppo-energy": "hyppo",
    "alibi-torch": "alibi",
    "alibi-keops": "alibi",
    "frouros": "frouros",
}
PEER_INSTALL = {
    "hyppo": ["hyppo"],
    "alibi": ["-c", "constraints.txt", "alibi-detect[torch,keops]"],
    "frouros": ["frouros"],
}
TIMING_COLUMNS = [
    "library",
    "method",
    "n",
    "d",
    "permutations",
    "seconds",
    "peak_rss_mib",
    "working_mib",
    "pvalue",
    "status",
    "threads",
    "run",
    "load_start",
    "load_end",
]
POWER_COLUMNS = ["method", "problem", "n", "runs", "rejection_rate", "ci_low", "ci_high"]
RESULTS = _common.RESULTS_DIR


# ---------------------------------------------------------------------------------------------
# ratiokit, in an isolated child process
# ---------------------------------------------------------------------------------------------


def _method(name: str) -> Any:
    from ratiokit.methods.mmd import MMD

    if name == "mmd-linear":
        return MMD(estimator="linear")
    if name == "mmd-keops":
        return MMD(backend="keops")
    return name


def _data(n: int, d: int, seed: int, shift: float) -> tuple[Any, Any]:
    import numpy as np

    gen = np.random.default_rng(seed)
    return gen.normal(size=(n, d)), gen.normal(shift, 1.0, size=(n, d))


def measure_ratiokit(method: str, n: int, d: int, permutations: int, threads: int) -> dict:
    """One timed ``two_sample_test`` (child process of :func:`_common.run_isolated`)."""
    import torch

    torch.set_num_threads(threads)
    from ratiokit.two_sample import two_sample_test

    x, y = _data(n, d, SEED, TIMING_SHIFT)
    warm_x, warm_y = _data(100, d, SEED + 1, 0.0)
    # The same number of permutations: KeOps compiles one formula per column batch width.
    two_sample_test(warm_x, warm_y, method=_method(method), n_permutations=permutations)
    _common.mark_baseline()
    start = time.perf_counter()
    res = two_sample_test(
        x, y, method=_method(method), n_permutations=permutations, rng=SEED, progress=False
    )
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "pvalue": res.pvalue, "statistic": res.statistic}


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def time_ratiokit(
    sizes: list[int], large: bool, threads: list[int], run: str, methods: list[str] | None
) -> list[dict]:
    """Every method at ``threads[0]`` CPU threads; the MMD test again at any other count."""
    rows = []
    for count in threads:
        for method, biggest in TIMED_METHODS.items():
            if (count != threads[0] and method != "mmd") or method not in (methods or [method]):
                continue
            for n in [*sizes, *([LARGE] if large and count == threads[0] else [])]:
                if n > biggest and not (method == "mmd" and n == LARGE):
                    continue
                kwargs = {"method": method, "n": n, "d": DIM, "permutations": B}
                kwargs["threads"] = count
                timeout = 7200 if n >= LARGE else 1800
                load = _load()
                row = _common.run_isolated(
                    "benchmarks.two_sample:measure_ratiokit",
                    kwargs,
                    timeout=timeout,
                    env={"OMP_NUM_THREADS": str(count)},
                )
                row.update(library="ratiokit", method=method, n=n, d=DIM, permutations=B)
                row.update(threads=count, run=run, load_start=load, load_end=_load())
                rows.append(row)
                print(_line(row), flush=True)
    return rows


def _line(row: dict) -> str:
    cells = [
        f"{row['library']}/{row['method']}",
        f"n={row['n']}",
        f"{_common.fmt(row.get('seconds'))} s",
        f"peak {_common.fmt(row.get('peak_rss_mib'))} MiB",
        f"p={_common.fmt(row.get('pvalue'))}",
        f"load {row.get('load_start')}-{row.get('load_end')}",
        row.get("status", "ok"),
    ]
    return "  ".join(cells)


# ---------------------------------------------------------------------------------------------
# peers, each in its own environment
# ---------------------------------------------------------------------------------------------

#: Runs in the peer's interpreter: arguments as JSON on stdin, one result line on stdout.
PEER_SCRIPT = r"""
import json, resource, sys, time
import numpy as np

args = json.loads(sys.stdin.read())
n, d, b, peer = args["n"], args["d"], args["permutations"], args["peer"]
gen = np.random.default_rng(args["seed"])
x = gen.normal(size=(n, d))
y = gen.normal(args["shift"], 1.0, size=(n, d))
h = args["bandwidth"]
extra = {}
if peer.startswith("hyppo"):
    from hyppo.ksample import MMD, Energy

    test = MMD() if peer == "hyppo-mmd" else Energy()
    # numba compiles hyppo's kernels on the first call (about 80 s for the MMD in a new
    # environment, cached on disk afterwards): not timed, as the other peers' warm-ups.
    test.test(x[:20], y[:20], reps=9, auto=False, workers=-1, random_state=0)
    start = time.perf_counter()
    stat, pvalue = test.test(x, y, reps=b, auto=False, workers=-1, random_state=0)
    seconds = time.perf_counter() - start
elif peer.startswith("alibi"):
    import torch

    torch.set_num_threads(args["threads"])
    from alibi_detect.cd import MMDDrift

    backend = "pytorch" if peer == "alibi-torch" else "keops"
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    sigma = np.array([h], dtype=np.float32)
    # One batch of permutations holds (2 n)^2 kernel values per permutation: cap it at 2e8
    # values (0.8 GB); the default (1e6 permutations at once) needs 6.7 GB at n = 1000.
    batch = max(1, int(2e8 // (2 * n) ** 2))
    kw = {"backend": backend, "sigma": sigma, "batch_size_permutations": batch}
    warm = MMDDrift(x32[:200], n_permutations=9, **kw)
    warm.predict(y32[:200])  # imports and KeOps compilation are not timed
    start = time.perf_counter()
    detector = MMDDrift(x32, n_permutations=b, **kw)
    out = detector.predict(y32)
    seconds = time.perf_counter() - start
    stat, pvalue = float(out["data"]["distance"]), float(out["data"]["p_val"])
else:
    from functools import partial

    from frouros.callbacks.batch import PermutationTestDistanceBased
    from frouros.detectors.data_drift import MMD
    from frouros.utils.kernels import rbf_kernel

    start = time.perf_counter()
    callback = PermutationTestDistanceBased(num_permutations=b, num_jobs=-1, random_state=0)
    detector = MMD(kernel=partial(rbf_kernel, sigma=h), callbacks=[callback])
    detector.fit(X=x)
    result, logs = detector.compare(X=y)
    seconds = time.perf_counter() - start
    stat = float(result.distance)
    pvalue = float(logs["PermutationTestDistanceBased"]["p_value"])
usage = [resource.getrusage(w).ru_maxrss for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
print("@@PEER@@" + json.dumps({
    "seconds": seconds, "statistic": float(stat), "pvalue": float(pvalue),
    "peak_rss_mib": max(usage) / 1024.0, **extra,
}), flush=True)
"""


def _venv_python(prefix: Path, env_name: str) -> Path:
    return prefix / f".venv-peers-{env_name}" / "bin" / "python"


def ensure_peer(prefix: Path, env_name: str, install: bool) -> bool:
    """True when the peer's environment exists (created with pip when ``install``)."""
    python = _venv_python(prefix, env_name)
    if python.exists():
        return True
    if not install:
        return False
    venv = python.parent.parent
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", *PEER_INSTALL[env_name]]
    subprocess.run(pip, check=True, cwd=_common.REPO_ROOT)
    return python.exists()


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _memory_limit(gib: float) -> Any:
    """``preexec_fn`` capping the child's address space (inherited by its own workers)."""
    import resource

    limit = int(gib * 2**30)

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


def run_peer(
    prefix: Path,
    peer: str,
    n: int,
    permutations: int,
    threads: int,
    timeout: float,
    memory_gib: float,
) -> dict:
    row = {"library": peer.split("-")[0], "method": peer, "n": n, "d": DIM}
    row.update(permutations=permutations, threads=threads, run="main", load_start=_load())
    python = _venv_python(prefix, PEERS[peer])
    args = {
        "peer": peer,
        "n": n,
        "d": DIM,
        "permutations": permutations,
        "seed": SEED,
        "shift": TIMING_SHIFT,
        "bandwidth": (2.0 * DIM) ** 0.5,
        "threads": threads,
    }
    env = dict(os.environ)
    # The peers' own KeOps cache (their pykeops version may differ from ratiokit's), as an
    # absolute path: pykeops builds its modules from another working directory.
    env["KEOPS_CACHE_FOLDER"] = str(prefix.resolve() / ".keops_cache_peers")
    env["OMP_NUM_THREADS"] = str(threads)
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
        handle.write(PEER_SCRIPT)
    start = time.perf_counter()
    # A session of its own: on a timeout the peer's worker processes (joblib, multiprocessing)
    # are killed with it instead of being left running.
    proc = subprocess.Popen(
        [str(python), handle.name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
        preexec_fn=_memory_limit(memory_gib),
    )
    try:
        stdout, stderr = proc.communicate(json.dumps(args), timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        proc.communicate()
        row.update(status=f"timeout after {timeout:.0f} s", seconds=None, load_end=_load())
        return row
    finally:
        _kill_group(proc.pid)  # stray workers of a finished run, if any
        os.unlink(handle.name)
    row["wall_s"] = time.perf_counter() - start
    row["load_end"] = _load()
    for line in reversed(stdout.splitlines()):
        if line.startswith("@@PEER@@"):
            row.update(json.loads(line[len("@@PEER@@") :]), status="ok")
            return row
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    why = lines[-1] if lines else "no output"
    if "MemoryError" in stderr or "std::bad_alloc" in stderr or "out of memory" in stderr:
        why = f"out of memory (address space capped at {memory_gib:g} GiB): {why}"
    row["status"] = f"failed (exit {proc.returncode}): {why}"
    return row


def time_peers(
    prefix: Path,
    sizes: list[int],
    threads: int,
    timeout: float,
    install: bool,
    memory_gib: float,
) -> list[dict]:
    rows = []
    for peer, env_name in PEERS.items():
        if not ensure_peer(prefix, env_name, install):
            rows.append({"library": env_name, "method": peer, "status": "not installed", "d": DIM})
            print(f"{peer}: not installed ({_venv_python(prefix, env_name)})", flush=True)
            continue
        for n in sizes:
            if n > PEER_MAX_N.get(peer, n):
                continue
            row = run_peer(prefix, peer, n, B, threads, timeout, memory_gib)
            rows.append(row)
            print(_line(row), flush=True)
            if row["status"] != "ok":  # larger sizes would only take longer
                break
    return rows


# ---------------------------------------------------------------------------------------------
# type-I error and power
# ---------------------------------------------------------------------------------------------


def _power_problems(quick: bool) -> dict[str, tuple[Any, int]]:
    from ratiokit.synthetic import GaussianBlobs, GaussianShift, ScaleChange

    n = 200 if quick else 250
    problems = {
        "H0 (N(0, I) vs N(0, I), d=10)": (GaussianShift(dim=DIM, shift=0.0), n),
        "mean shift |mu|=0.5, d=10": (GaussianShift(dim=DIM, shift=0.5), n),
        "variance x1.2^2, d=10": (ScaleChange(dim=DIM, scale=1.2), n),
        "blobs (3x3, eps=6)": (GaussianBlobs(), 2 * n),
    }
    if quick:  # the type-I error, and the problem the median bandwidth misses
        problems = {k: v for k, v in problems.items() if k.startswith(("H0", "blobs"))}
    return problems


def _power_methods() -> dict[str, Any]:
    from ratiokit.methods import DeepKernelMMD
    from ratiokit.methods.mmd import MMD

    return {
        "mmd (median)": lambda: "mmd",
        "energy": lambda: "energy",
        "mmdagg": lambda: "mmdagg",
        "mmd_opt (power criterion, split)": lambda: "mmd_opt",
        "mmd_deep (split, 100 steps)": lambda: DeepKernelMMD(max_steps=100, batch_size=64),
        "mmd_rff (256 frequencies)": lambda: "mmd_rff",
        "mmd linear-time": lambda: MMD(estimator="linear"),
        "moments (Hotelling T^2)": lambda: "moments",
        "ulsif (split)": lambda: "ulsif",
        "classifier (split; C2ST statistic)": lambda: "classifier",
    }


def power_table(runs: int, quick: bool) -> list[dict]:
    import numpy as np
    import torch
    from scipy import stats

    from ratiokit.two_sample import two_sample_test

    torch.set_num_threads(1)  # many small tests: one thread is faster on the shared machine
    rows = []
    for problem, (pair, n) in _power_problems(quick).items():
        for name, make in _power_methods().items():
            start = time.perf_counter()
            # The test's p-value, and for learned ratios the C2ST's exact binomial p-value.
            rejections = {name: 0, f"{name}: C2ST accuracy, binomial p": 0}
            for seed in range(runs):
                gen = np.random.default_rng([seed, 99])
                x, y = pair.sample_p(n, rng=gen), pair.sample_q(n, rng=gen)
                res = two_sample_test(
                    x, y, method=make(), n_permutations=199, rng=seed, progress=False
                )
                rejections[name] += res.pvalue <= 0.05
                binomial = res.details.get("binomial_pvalue")
                if binomial is None:
                    rejections.pop(f"{name}: C2ST accuracy, binomial p", None)
                else:
                    rejections[f"{name}: C2ST accuracy, binomial p"] += binomial <= 0.05
            for label, count in rejections.items():
                low, high = stats.binomtest(int(count), runs).proportion_ci(0.95)
                row = {"method": label, "problem": problem, "n": n, "runs": runs}
                row.update(rejection_rate=count / runs, ci_low=low, ci_high=high)
                rows.append(row)
            print(
                f"{problem:32s} {name:34s} {rejections[name] / runs:.2f} "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    return rows


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------


def _find(rows: list[dict], method: str, n: int, threads: float | None, run: str) -> dict | None:
    """The row of a configuration (the first thread count measured, unless one is given)."""
    for row in rows:
        if row.get("method") == method and row.get("n") == n and row.get("status") == "ok":
            if (threads is None or row.get("threads") == threads) and row.get("run") == run:
                return row
    return None


def _timeout_bound(rows: list[dict], method: str, n: int) -> float | None:
    """For a peer that timed out at or below n, its time at n is at least the limit."""
    for row in rows:
        status = str(row.get("status", ""))
        if row.get("method") == method and status.startswith("timeout") and row["n"] <= n:
            return float(status.split()[2])
    return None


def _load_text(row: dict) -> str:
    return f"load {_common.fmt(row.get('load_start'))}-{_common.fmt(row.get('load_end'))}"


def acceptance(rows: list[dict]) -> list[str]:
    """The issue's acceptance checks, from the main run and, where present, the re-timing."""
    lines = []
    for run in ("main", "retime"):
        counts = sorted(
            {r.get("threads") for r in rows if r.get("method") == "mmd" and r.get("run") == run}
            - {None}
        )
        for count in counts:
            ours = _find(rows, "mmd", 5000, count, run)
            if ours is not None:
                verdict = "PASS" if ours["seconds"] < 10 else "FAIL"
                lines.append(
                    f"- [{run} run] MMD test, n = m = 5,000, d = 10, 999 permutations, "
                    f"{count:.0f} thread(s): {ours['seconds']:.2f} s ({verdict}, target < 10 s; "
                    f"{_load_text(ours)})"
                )
    for peer, bar, n in (
        ("alibi-torch", 40, 5000),
        ("alibi-keops", 40, 5000),
        ("frouros", 40, 5000),
        ("hyppo-mmd", 100, 1000),
        ("hyppo-energy", 100, 1000),
    ):
        theirs = _find(rows, peer, n, None, "main")
        for run in ("main", "retime"):
            mine_row = _find(rows, "mmd" if "energy" not in peer else "energy", n, 2.0, run)
            if mine_row is None:
                continue
            mine = mine_row["seconds"]
            label = "same run" if run == "main" else "ratiokit re-timed on a quieter machine"
            if theirs is not None:
                ratio = theirs["seconds"] / mine
                verdict = "PASS" if ratio >= bar else "FAIL"
                lines.append(
                    f"- vs {peer} at n = m = {n:,} ({label}): {theirs['seconds']:.1f} s / "
                    f"{mine:.2f} s = {ratio:.0f}x ({verdict}, target >= {bar}x)"
                )
                continue
            bound = _timeout_bound(rows, peer, n)
            if bound is not None:
                ratio = bound / mine
                verdict = "PASS" if ratio >= bar else "undetermined"
                lines.append(
                    f"- vs {peer} at n = m = {n:,} ({label}): timed out after {bound:.0f} s, so "
                    f">= {ratio:.0f}x ({verdict}, target >= {bar}x; a bound, not a measurement)"
                )
    for row in rows:
        if row.get("method") == "mmd" and row.get("n") == LARGE:
            if row.get("status") == "ok":
                gib = row["peak_rss_mib"] / 1024
                verdict = "PASS" if gib < 24 else "FAIL"
                lines.append(
                    f"- [{row.get('run')} run] MMD test at n = m = 50,000 (dense tiles, 999 "
                    f"permutations, {row['threads']:.0f} threads): {row['seconds']:.0f} s, peak "
                    f"RSS {gib:.2f} GiB ({verdict}, target < 24 GiB)"
                )
            else:
                lines.append(f"- MMD test at n = m = 50,000: {row.get('status')}")
    return lines


TABLE_COLUMNS = [
    "library",
    "method",
    "n",
    "threads",
    "seconds",
    "peak_rss_mib",
    "working_mib",
    "pvalue",
    "load",
    "run",
    "status",
]


#: How to read the tables: load on the shared machine, the peers' p-values, what is not timed.
NOTES = """\
- **Load and threads.** The machine has 2 cores shared with other work. When another process
  holds a core, torch's second intra-op thread waits for it at every parallel operation, so
  2 threads can be several times slower than 1 (compare the 1-thread and 2-thread MMD rows
  of one run and their load columns). Every row records the load; re-timed rows
  (run = retime), where present, were measured when the machine was quieter.
- **Peers run on the same data** (the same seeded draws, regenerated in each peer's
  process), so their p-values estimate the same permutation p-value as ratiokit's: they
  differ by a few Monte Carlo standard errors of 999 permutations at most (one is about
  0.008 at p = 0.07).
- **Methods not in the timing table** (the power-criterion and deep-kernel MMD, MMDAgg, the
  learned-critic uLSIF and C2ST tests) fit or search on a split before their permutation
  test; their cost is dominated by that fit and they are run in the power table below, not
  timed against n: `--methods` selects the timed methods.
- **MMDAgg** evaluates 20 kernels, so its permutation null costs 20 MMD nulls (one
  N^2/2 x B product per kernel: inherent, as in Schrab et al.'s implementation, which also
  needs two extra sets of permutations that the min-P aggregation here does without).
"""


def _record_invocation(info: dict, args: argparse.Namespace, sections: list[str]) -> list[dict]:
    """Append this invocation to ``two_sample_runs.json``; return all of them."""
    path = RESULTS / "two_sample_runs.json"
    runs = json.loads(path.read_text()) if path.exists() else []
    runs.append(
        {
            "command": f"python -m benchmarks.two_sample {' '.join(args.argv)}".rstrip(),
            "sections": " ".join(sections),
            "date": info["date"],
            "commit": info["ratiokit"],
            "load before": info["load average (1, 5, 15 min)"],
            "load after": info["load average after the run"],
        }
    )
    path.write_text(json.dumps(runs, indent=1) + "\n")
    return runs


def write_report(
    timing: list[dict],
    power: list[dict],
    info: dict,
    args: argparse.Namespace,
    runs: list[dict],
) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    parts = ["# Two-sample tests: time, memory, type-I error and power", ""]
    parts += ["## Invocations", ""]
    parts += [
        _common.markdown_table(
            runs, ["command", "sections", "date", "commit", "load before", "load after"]
        ),
        "",
    ]
    parts += ["## Machine (last invocation)", "", _common.machine_header(info), ""]
    parts += ["## Notes", "", NOTES]
    if timing:
        for row in timing:
            row["load"] = _load_text(row).removeprefix("load ")
        parts += ["## Acceptance", "", *acceptance(timing), ""]
        parts += [
            f"## Time and peak memory (d = {DIM}, {B} permutations, n = m)",
            "",
            "Each row is one fresh process; *seconds* is one timed call after a warm-up "
            "(imports, KeOps compilation). *peak RSS* is the whole process (imports "
            "included); *working* is ratiokit's extra memory during the call. *load* is the "
            "machine's 1-minute load average before and after the row (2 cores, shared with "
            "other work: above about 1, a second thread competes for a core). Rows with run "
            "= main come from one invocation, peers included; run = retime rows re-measure "
            "ratiokit later on a quieter machine. Peers: see the script's docstring for the "
            "exact calls; a timeout is the per-call limit, not a measurement.",
            "",
            _common.markdown_table(
                timing,
                TABLE_COLUMNS,
                headers={"peak_rss_mib": "peak RSS (MiB)", "working_mib": "working (MiB)"},
            ),
            "",
        ]
    if power:
        parts += [
            "## Type-I error and power (alpha = 0.05, 199 permutations)",
            "",
            "Rejection rate over seeded runs, with its 95% Clopper-Pearson interval. Split "
            "methods learn on half of each sample and test on the other half. Under H0 an "
            "exact test rejects at rate 0.05.",
            "",
            _common.markdown_table(
                power, ["problem", "method", "n", "runs", "rejection_rate", "ci_low", "ci_high"]
            ),
            "",
        ]
    (RESULTS / "two_sample.md").write_text("\n".join(parts))


def _read_csv(path: Path) -> list[dict]:
    import csv

    if not path.exists():
        return []
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key, value in row.items():
            try:
                row[key] = float(value) if value not in ("", None) else None
            except ValueError:
                pass
            if key == "n" and row[key] is not None:
                row[key] = int(row[key])
    return rows


def plot(timing: list[dict], power: list[dict]) -> None:
    from ratiokit.plot import new_figure, save_figure

    if timing:
        fig, (ax_t, ax_m) = new_figure(2, width=6.5, height=5.0)
        ok = [r for r in timing if r.get("status") == "ok"]
        series = sorted(
            {(r["library"], r["method"], r.get("threads"), r.get("run") or "main") for r in ok},
            key=lambda k: (k[0] != "ratiokit", k[1], -(k[2] or 0), k[3]),
        )
        for library, method, threads, run in series:
            rows = sorted(
                (
                    r
                    for r in ok
                    if (r["library"], r["method"], r.get("threads"), r.get("run") or "main")
                    == (library, method, threads, run)
                ),
                key=lambda r: r["n"],
            )
            ours = library == "ratiokit"
            style = {"marker": "o" if ours else "s", "linestyle": "-" if ours else "--"}
            label = f"{library}: {method}" if not ours else f"ratiokit: {method}"
            if ours and threads == 1:
                label += " (1 thread)"
            if run == "retime":
                label += " (re-timed)"
                style["linestyle"] = ":"
            ns = [r["n"] for r in rows]
            ax_t.plot(ns, [r["seconds"] for r in rows], label=label, **style)
            ax_m.plot(ns, [r["peak_rss_mib"] for r in rows], label=label, **style)
        ax_t.axhline(10, color="grey", linewidth=0.8, linestyle=":")
        for ax, ylabel in ((ax_t, "seconds"), (ax_m, "peak RSS (MiB)")):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("n = m (d = 10)")
            ax.set_ylabel(ylabel)
        ax_t.set_title(f"permutation test, {B} permutations")
        ax_m.set_title("peak memory of the process")
        ax_t.legend(fontsize="x-small", ncol=2)
        save_figure(fig, RESULTS / "two_sample.png")
    if power:
        problems = list(dict.fromkeys(r["problem"] for r in power))
        methods = list(dict.fromkeys(r["method"] for r in power))
        fig, axes = new_figure(len(problems), width=4.0, height=4.5)
        for ax, problem in zip(axes, problems, strict=True):
            rates = {r["method"]: r["rejection_rate"] for r in power if r["problem"] == problem}
            ax.barh(range(len(methods)), [rates.get(m, 0.0) for m in methods])
            ax.set_yticks(range(len(methods)))
            ax.set_yticklabels(methods if ax is axes[0] else [], fontsize="small")
            ax.axvline(0.05, color="C3", linewidth=1)
            ax.set_xlim(0, 1)
            ax.set_title(problem, fontsize="small")
            ax.set_xlabel("rejection rate")
        save_figure(fig, RESULTS / "two_sample_power.png")


# ---------------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.two_sample", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="n = 500, 1 thread, peers 120 s, 10 power runs of H0 and blobs",
    )
    parser.add_argument(
        "--sections", nargs="+", choices=("timing", "peers", "power"), default=None
    )
    parser.add_argument("--no-large", action="store_true", help="skip n = m = 50,000")
    parser.add_argument("--runs", type=int, default=None, help="power runs (default 100)")
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[2, 1],
        help="CPU threads per process; extra counts re-time the MMD test (peers use the first)",
    )
    parser.add_argument("--peer-timeout", type=float, default=None, help="seconds per peer call")
    parser.add_argument(
        "--peer-memory-gib", type=float, default=16.0, help="address-space cap per peer process"
    )
    parser.add_argument(
        "--retime",
        action="store_true",
        help="ratiokit rows again (run = retime), kept beside the main run's rows",
    )
    parser.add_argument(
        "--methods", nargs="+", default=None, help="ratiokit methods to time (default: all)"
    )
    parser.add_argument("--venv-prefix", default=str(_common.REPO_ROOT))
    parser.add_argument("--install-peers", action="store_true")
    parser.add_argument("--plot-only", action="store_true")
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    global RESULTS
    RESULTS = Path(args.out) if args.out else _common.RESULTS_DIR
    args.argv = list(argv if argv is not None else sys.argv[1:])
    timing_csv, power_csv = RESULTS / "two_sample_timing.csv", RESULTS / "two_sample_power.csv"
    if args.plot_only:
        plot(_read_csv(timing_csv), _read_csv(power_csv))
        return 0
    sections = args.sections or ["timing", "peers", "power"]
    # Quick: one thread count, the last (1 by default). Two threads on this shared 2-core
    # machine made the uLSIF and C2ST tests 10-30x slower than one (load 6-8).
    threads = args.threads[-1:] if args.quick else args.threads
    sizes = list(QUICK_SIZES if args.quick else SIZES)
    info = _common.machine_info()
    print(_common.machine_header(info), flush=True)
    timing: list[dict] = []
    if "timing" in sections:
        timing += time_ratiokit(
            sizes,
            large=not (args.quick or args.no_large),
            threads=threads,
            run="retime" if args.retime else "main",
            methods=args.methods,
        )
    if "peers" in sections:
        timeout = args.peer_timeout or (120.0 if args.quick else 1800.0)
        peer_sizes = [n for n in sizes if n <= 5000]
        timing += time_peers(
            Path(args.venv_prefix),
            peer_sizes,
            threads[0],
            timeout,
            args.install_peers,
            args.peer_memory_gib,
        )
    power: list[dict] = []
    if "power" in sections:
        power = power_table(args.runs or (10 if args.quick else 100), args.quick)

    # Rows of the last run that this run did not measure again are kept, but not an old
    # "not installed" of a method this run measured.
    def key(row: dict) -> tuple:
        cells = ("library", "method", "n", "threads", "run")
        return tuple(row.get(c) or "main" if c == "run" else row.get(c) for c in cells)

    fresh = {key(r) for r in timing}
    measured = {r["method"] for r in timing if r.get("status") != "not installed"}

    def stale(row: dict) -> bool:
        missing = row.get("status") == "not installed" and row.get("method") in measured
        return key(row) in fresh or missing

    timing = [r for r in _read_csv(timing_csv) if not stale(r)] + timing
    timing.sort(key=lambda r: (r.get("library") != "ratiokit", str(r.get("library"))))
    if "power" not in sections:
        power = _read_csv(power_csv)
    if timing:
        _common.write_csv(timing_csv, timing, TIMING_COLUMNS)
    if power:
        _common.write_csv(power_csv, power, POWER_COLUMNS)
    info["load average after the run"] = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    runs = _record_invocation(info, args, sections)
    write_report(timing, power, info, args, runs)
    plot(timing, power)
    for line in acceptance(timing):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
