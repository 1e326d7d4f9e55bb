"""Helpers shared by the benchmark scripts: machine info, timing, isolated runs, tables.

Peak memory is only honest when each configuration runs in a process of its own, so a
benchmark script describes one configuration as a module-level function and calls
:func:`run_isolated`, which starts a fresh interpreter, runs it there and returns its result
together with the child's peak resident set size (RSS)::

    # in benchmarks/my_suite.py
    def measure(n):
        x = make_data(n)  # imports and data do not count as working memory
        _common.mark_baseline()  # RSS from here on is the "working memory"
        seconds, times, value = _common.time_call(lambda: work(x))
        return {"seconds": seconds, "value": value}

    row = _common.run_isolated("benchmarks.my_suite:measure", {"n": 1000}, timeout=600)
    # row["peak_rss_mib"], row["working_mib"], row["status"] == "ok", ...

Tables are lists of dicts written with :func:`markdown_table` and :func:`write_csv`.
"""

from __future__ import annotations

import csv
import datetime as _dt
import importlib
import importlib.metadata
import json
import math
import os
import platform
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "REPO_ROOT",
    "RESULTS_DIR",
    "current_rss_mib",
    "fmt",
    "machine_header",
    "machine_info",
    "mark_baseline",
    "markdown_table",
    "peak_rss_mib",
    "reset_peak_rss",
    "run_isolated",
    "time_call",
    "write_csv",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
MIB = 1024.0**2
GIB = 1024.0**3
#: The child prints its result on one stdout line that starts with this marker.
_MARKER = "@@RATIOKIT_BENCH_RESULT@@"

# --------------------------------------------------------------------------------------
# machine information


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _mem_total_gib() -> float | None:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024 / GIB
    except OSError:
        pass
    return None


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _git_commit() -> str:
    """The checked-out commit (read-only ``git rev-parse``), with ``+dirty`` when modified."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if head.returncode != 0:
            return "no commit yet"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_info() -> dict[str, str]:
    """CPU, cores, memory, GPU, library versions, load and date, as display strings."""
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count() or 0
    mem = _mem_total_gib()
    if torch.cuda.is_available():
        gpu = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    else:
        gpu = "no GPU (torch.cuda.is_available() is False)"
    try:
        load = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:  # pragma: no cover
        load = "unknown"
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": f"{os.cpu_count()} logical, {usable} usable by this process",
        "memory": f"{mem:.1f} GiB" if mem is not None else "unknown",
        "gpu": gpu,
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": f"{torch.__version__} ({torch.get_num_threads()} intra-op threads)",
        "numpy": _version("numpy"),
        "pykeops": _version("pykeops"),
        "ratiokit": f"{_version('ratiokit')} (commit {_git_commit()})",
        "load average (1, 5, 15 min)": load,
    }


def machine_header(info: Mapping[str, str]) -> str:
    """Markdown bullet list of :func:`machine_info`."""
    return "\n".join(f"- **{key}**: {value}" for key, value in info.items())


# --------------------------------------------------------------------------------------
# memory and time


def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def current_rss_mib() -> float:
    """Resident set size of this process now (``VmRSS``), in MiB."""
    kib = _proc_status_kib("VmRSS")
    if kib is None:  # pragma: no cover - not Linux: fall back to the peak
        return peak_rss_mib()
    return kib / 1024.0


def peak_rss_mib() -> float:
    """Peak resident set size of this process (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value / MIB if sys.platform == "darwin" else value / 1024.0


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux >= 4.0); False if unsupported.

    Writing ``5`` to ``/proc/self/clear_refs`` resets ``VmHWM`` and with it ``ru_maxrss``.
    """
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


#: Memory readings of the isolated child, filled by :func:`mark_baseline`.
_STATE: dict[str, Any] = {}


def mark_baseline() -> None:
    """Mark the end of setup in an isolated child: memory used from here on is "working".

    Call it after imports, data creation and warm-up, just before the measured work.
    """
    _STATE["setup_peak_rss_mib"] = peak_rss_mib()
    _STATE["baseline_rss_mib"] = current_rss_mib()
    _STATE["peak_was_reset"] = reset_peak_rss()


def time_call(
    fn: Callable[[], Any],
    *,
    min_repeats: int = 1,
    max_repeats: int = 5,
    budget_s: float = 10.0,
) -> tuple[float, list[float], Any]:
    """Call ``fn`` repeatedly and return ``(best seconds, all seconds, last result)``.

    Repeats until ``max_repeats`` calls or ``budget_s`` seconds in total, but at least
    ``min_repeats`` calls. The best (minimum) time is the least disturbed by other processes.
    """
    times: list[float] = []
    result = None
    while len(times) < min_repeats or (len(times) < max_repeats and sum(times) < budget_s):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), times, result


# --------------------------------------------------------------------------------------
# isolated runs


def _child_main(argv: Sequence[str]) -> int:
    """Entry point of the child: ``python -m benchmarks._common --child module:function``."""
    if len(argv) != 2 or argv[0] != "--child":
        print("usage: python -m benchmarks._common --child module:function < kwargs.json")
        return 2
    module_name, _, func_name = argv[1].partition(":")
    kwargs = json.loads(sys.stdin.read() or "{}")
    func = getattr(importlib.import_module(module_name), func_name)
    result = dict(func(**kwargs) or {})
    measured_peak = peak_rss_mib()
    if "baseline_rss_mib" in _STATE:
        base = _STATE["baseline_rss_mib"]
        # Peak of the child's whole life: setup (before the reset) or the measured part.
        result.setdefault("peak_rss_mib", max(measured_peak, _STATE["setup_peak_rss_mib"]))
        result.setdefault("working_mib", max(measured_peak - base, 0.0))
        result.setdefault("baseline_rss_mib", base)
        result.setdefault("setup_peak_rss_mib", _STATE["setup_peak_rss_mib"])
        result.setdefault("peak_was_reset", _STATE["peak_was_reset"])
    else:
        result.setdefault("peak_rss_mib", measured_peak)
    result.setdefault("status", "ok")
    sys.stdout.flush()
    print(_MARKER + json.dumps(result), flush=True)
    return 0


def run_isolated(
    target: str,
    kwargs: Mapping[str, Any] | None = None,
    *,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    count_instructions: bool = False,
) -> dict[str, Any]:
    """Run ``target`` ("package.module:function") in a fresh interpreter; return its result.

    The function receives ``kwargs`` (JSON-serialisable) and returns a JSON-serialisable
    dict; :func:`run_isolated` adds ``peak_rss_mib`` (the child's peak RSS), and when the
    function called :func:`mark_baseline`, ``baseline_rss_mib`` and ``working_mib`` (peak
    RSS during the measured part minus the RSS at the mark). ``status`` is ``"ok"``, or
    says why no result came back (timeout, killed, an exception's last line).
    ``KEOPS_CACHE_FOLDER`` defaults to the checkout's ``.keops_cache`` (as in the Makefile).
    ``count_instructions``: run the child under ``valgrind --tool=callgrind`` and add
    ``instructions``, the number it executed in all (None if callgrind reported none);
    about 50 times slower, and its memory figures are valgrind's.
    """
    child_env = dict(os.environ)
    child_env.setdefault("KEOPS_CACHE_FOLDER", str(REPO_ROOT / ".keops_cache"))
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), child_env.get("PYTHONPATH", "")) if p
    )
    if env:
        child_env.update(env)
    cmd = [sys.executable, "-m", "benchmarks._common", "--child", target]
    if count_instructions:
        cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd]
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            input=json.dumps(dict(kwargs or {})),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO_ROOT,
            env=child_env,
        )
    except subprocess.TimeoutExpired:
        return {"status": f"timeout after {timeout:.0f} s", "wall_s": time.perf_counter() - start}
    wall = time.perf_counter() - start
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_MARKER):
            result = json.loads(line[len(_MARKER) :])
            result["wall_s"] = wall
            if count_instructions:
                found = re.search(r"Collected : (\d+)", proc.stderr)
                result["instructions"] = int(found.group(1)) if found else None
            return result
    if proc.returncode < 0:
        why = f"killed by signal {-proc.returncode}"
        if proc.returncode == -9:
            why += " (out of memory?)"
    else:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        why = f"failed (exit {proc.returncode}): {lines[-1] if lines else 'no output'}"
    sys.stderr.write(proc.stderr[-4000:])
    return {"status": why, "wall_s": wall}


# --------------------------------------------------------------------------------------
# tables


def fmt(value: Any, digits: int = 3) -> str:
    """Display form of a table cell: floats to ``digits`` significant digits, None as ''."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if abs(value) >= 10**digits:
            return f"{value:.0f}"
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}"
    return str(value)


def markdown_table(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    headers: Mapping[str, str] | None = None,
    formats: Mapping[str, Callable[[Any], str]] | None = None,
) -> str:
    """A GitHub markdown table of ``rows`` (dicts) with the given columns, in order.

    ``headers`` renames columns; ``formats`` maps a column to a function giving its cell text
    (default :func:`fmt`). Numeric columns are right-aligned.
    """
    rows = list(rows)
    headers = headers or {}
    formats = formats or {}
    head = [headers.get(c, c) for c in columns]
    body = [[formats.get(c, fmt)(row.get(c)) for c in columns] for row in rows]
    numeric = [
        all(isinstance(row.get(c), int | float) or row.get(c) is None for row in rows)
        for c in columns
    ]
    align = ["---:" if num else "---" for num in numeric]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in body]
    return "\n".join(lines)


def write_csv(path: str | Path, rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> None:
    """Write ``rows`` (dicts) as CSV with the given columns; missing values are empty."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: "" if row.get(c) is None else row.get(c) for c in columns})


if __name__ == "__main__":
    # Run as a module the file is ``__main__``; the function under test imports
    # ``benchmarks._common``, so the child entry point must use that copy's state.
    from benchmarks._common import _child_main as _entry

    sys.exit(_entry(sys.argv[1:]))
