"""Run benchmark suites: ``python -m benchmarks [suite ...] [--quick]``.

With no suite named, every suite runs. Adding a suite is one line in :data:`SUITES`: a
module in this package with ``main(argv: list[str] | None) -> int`` that accepts ``--quick``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: Suite name -> module (run from the repository root).
SUITES: dict[str, str] = {
    "kernels": "benchmarks.kernels_scaling",
    "ratio": "benchmarks.ratio_accuracy",
    "two_sample": "benchmarks.two_sample",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("suites", nargs="*", metavar="suite", help=f"any of {sorted(SUITES)}")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--list", action="store_true", help="list the suites and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, module in SUITES.items():
            print(f"{name}: {module}")
        return 0
    unknown = [s for s in args.suites if s not in SUITES]
    if unknown:
        parser.error(f"unknown suite(s) {unknown}; choose from {sorted(SUITES)}")
    status = 0
    for name in args.suites or list(SUITES):
        print(f"=== {name} ({SUITES[name]}) ===", flush=True)
        module = importlib.import_module(SUITES[name])
        status = max(status, module.main(["--quick"] if args.quick else []))
    return status


if __name__ == "__main__":
    sys.exit(main())
