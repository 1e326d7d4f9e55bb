"""Run benchmark suites: ``python -m benchmarks [suite ...] [--quick] [--out DIR]``.

With no suite named, every suite runs, in the order of :data:`SUITES`; ``--quick`` is passed
on to each suite (smaller sizes, for a smoke run). Each suite writes its tables and plots to
``--out``: by default ``benchmarks/results/``, and ``benchmarks/results/quick/`` for a quick
run, so a smoke run refreshes its own tables and never overwrites the full-size ones. Each
suite's time is printed as it ends, and all of them at the end and in ``suite_times.md`` of
that folder (with the machine); a suite that raises is reported and the others still run
(exit status 1). ``ratiokit bench`` runs this same entry from the repository root.

Adding a suite is one line in :data:`SUITES`: a module in this package with
``main(argv: list[str] | None) -> int`` that accepts ``--quick`` and ``--out DIR``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

from benchmarks import _common

#: Suite name -> module (run from the repository root).
SUITES: dict[str, str] = {
    "kernels": "benchmarks.kernels_scaling",
    "ratio": "benchmarks.ratio_accuracy",
    "two_sample": "benchmarks.two_sample",
    "gan": "benchmarks.gan",
    "fit": "benchmarks.fit",
    "mutual_information": "benchmarks.mutual_information",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("suites", nargs="*", metavar="suite", help=f"any of {sorted(SUITES)}")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--list", action="store_true", help="list the suites and exit")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results folder (default: benchmarks/results, or benchmarks/results/quick with "
        "--quick)",
    )
    args = parser.parse_args(argv)
    if args.list:
        for name, module in SUITES.items():
            print(f"{name}: {module}")
        return 0
    unknown = [s for s in args.suites if s not in SUITES]
    if unknown:
        parser.error(f"unknown suite(s) {unknown}; choose from {sorted(SUITES)}")
    out = args.out or _common.RESULTS_DIR / ("quick" if args.quick else "")
    out.mkdir(parents=True, exist_ok=True)
    # Inside the checkout, a relative --out: the tables record their command line, and the
    # committed ones must hold no path of this machine.
    here = Path.cwd().resolve()
    target = out.resolve()
    shown = target.relative_to(here) if target.is_relative_to(here) else target
    suite_argv = ["--quick"] * args.quick + ["--out", str(shown)]
    info = _common.machine_info()
    status = 0
    timings: list[tuple[str, float, str]] = []
    for name in args.suites or list(SUITES):
        print(f"=== {name} ({SUITES[name]}) ===", flush=True)
        start = time.perf_counter()
        try:
            module = importlib.import_module(SUITES[name])
            code = module.main(list(suite_argv))
        except Exception:  # noqa: BLE001 - one broken suite must not stop the others
            traceback.print_exc()
            code, outcome = 1, "failed (traceback above)"
        else:
            outcome = "ok" if code == 0 else f"exit status {code}"
        seconds = time.perf_counter() - start
        timings.append((name, seconds, outcome))
        print(f"=== {name}: {outcome} in {seconds:.0f} s ===", flush=True)
        status = max(status, code)
    total = sum(seconds for _, seconds, _ in timings)
    print(f"\nsuite times{' (--quick)' if args.quick else ''}:")
    for name, seconds, outcome in timings:
        print(f"  {name:<12} {seconds:8.1f} s  {outcome}")
    print(f"  {'total':<12} {total:8.1f} s ({total / 60:.1f} min)", flush=True)
    write_times(out / "suite_times.md", timings, info, args)
    return status


def write_times(
    path: Path, timings: list[tuple[str, float, str]], info: dict, args: argparse.Namespace
) -> None:
    """``suite_times.md``: each suite's wall time and outcome, the total, and the machine."""
    info = {
        **info,
        "load average after the run": _common.machine_info()["load average (1, 5, 15 min)"],
    }
    command = "python -m benchmarks " + " ".join([*args.suites, *["--quick"] * args.quick])
    rows = [{"suite": n, "seconds": round(s, 1), "outcome": o} for n, s, o in timings]
    total = sum(s for _, s, _ in timings)
    rows.append({"suite": "total", "seconds": round(total, 1), "outcome": f"{total / 60:.1f} min"})
    table = _common.markdown_table(rows, ["suite", "seconds", "outcome"])
    text = f"# Suite times\n\nCommand: `{command.strip()}`\n\n{table}\n\n## Machine\n\n"
    path.write_text(text + _common.machine_header(info) + "\n")


if __name__ == "__main__":
    sys.exit(main())
