"""MMD^2 wall time and peak memory against n: dense tiles, KeOps, and a naive full-Gram baseline.

For n = m in {1e3, 1e4, 1e5} and d = 10 this times ``ratiokit.MMD`` (Gaussian kernel, fixed
bandwidth, unbiased estimator) with ``backend="dense"`` and ``backend="keops"``, beside a
naive torch baseline that builds the full n x n, m x m and n x m Gram matrices with
``torch.cdist`` and takes their means. Every configuration runs in a fresh subprocess, so
its peak RSS is its own; "working" memory is the peak during the timed calls minus the RSS
after imports, data creation and a warm-up call (which also compiles the KeOps formula).
The baseline is not run where its predicted memory exceeds ``--memory-limit-gib``; such rows
say "out of memory (needs ~X GiB)". float64 throughout, plus float32 rows at n = 1e4; on a
CUDA machine, GPU rows up to n = 1e6 with KeOps.

Run from the repository root::

    python -m benchmarks.kernels_scaling            # full run, n up to 1e5 (~20 min on 2 cores)
    python -m benchmarks.kernels_scaling --quick    # n = 1e3 and 3e3, float64 (a minute or two)
    python -m benchmarks.kernels_scaling --sizes 1000 10000 --backends dense keops
    python -m benchmarks.kernels_scaling --one keops float64 10000   # one row, as JSON

Writes ``benchmarks/results/kernels_scaling.{md,csv,png}``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import _common

D = 10
SIZES = (1_000, 10_000, 100_000)
QUICK_SIZES = (1_000, 3_000)
FLOAT32_SIZES = (10_000,)
BACKENDS = ("naive", "dense", "keops")
#: GPU rows (only where ``torch.cuda.is_available()``): (backend, dtype, n).
GPU_CONFIGS = (
    ("dense", "float64", 100_000),
    ("keops", "float64", 100_000),
    ("keops", "float32", 100_000),
    ("keops", "float64", 1_000_000),
    ("keops", "float32", 1_000_000),
)
#: Mean shift of y on every coordinate, so MMD^2 is clearly positive (relative differences
#: between backends are then meaningful).
SHIFT = 0.25
SEED = 0
#: Points in the warm-up call (same d and dtype as the timed call).
WARMUP_N = 256
MEMORY_LIMIT_GIB = 16.0
CHILD_TIMEOUT_S = 3600.0
ACCEPT_N = 100_000
THREAD_CHECK_N = 10_000
ACCEPT_PEAK_MIB = 2048.0

CSV_COLUMNS = (
    "backend",
    "dtype",
    "n",
    "d",
    "seconds",
    "peak_rss_mib",
    "working_mib",
    "mmd2",
    "status",
    "device",
    "repeats",
    "threads",
    "gpu_peak_mib",
)


def bandwidth(d: int) -> float:
    """Fixed bandwidth sqrt(2 d): the median pairwise distance of N(0, I_d) data, roughly."""
    return math.sqrt(2.0 * d)


def naive_peak_bytes(n: int, m: int, itemsize: int) -> int:
    """Predicted peak of the naive baseline: three Gram matrices plus two temporaries."""
    big = max(n * n, m * m, n * m)
    return itemsize * (n * n + m * m + n * m + 2 * big)


def naive_mmd2(x: Any, y: Any, h: float) -> Any:
    """Unbiased MMD^2 the textbook way: full Gram matrices from ``torch.cdist``, then means."""
    import torch

    def gram(a: Any, b: Any) -> Any:
        return torch.exp(-torch.cdist(a, b).square() / (2.0 * h * h))

    n, m = x.shape[0], y.shape[0]
    k_xx, k_yy, k_xy = gram(x, x), gram(y, y), gram(x, y)
    s_xx = (k_xx.sum() - k_xx.diagonal().sum()) / (n * (n - 1))
    s_yy = (k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return s_xx + s_yy - 2.0 * k_xy.mean()


def make_data(n: int, d: int, dtype: str, device: str = "cpu") -> tuple[Any, Any]:
    """x ~ N(0, I_d), y ~ N(SHIFT * 1, I_d), drawn in float64 (so float32 rows see the same
    data rounded), seeded."""
    import torch

    gen = torch.Generator().manual_seed(SEED)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = torch.randn(n, d, generator=gen, dtype=torch.float64) + SHIFT
    dt = getattr(torch, dtype)
    return x.to(device=device, dtype=dt), y.to(device=device, dtype=dt)


def measure_one(
    backend: str,
    dtype: str,
    n: int,
    d: int = D,
    device: str = "cpu",
    budget_s: float = 10.0,
    threads: int | None = None,
) -> dict[str, Any]:
    """One configuration, meant to run in its own process (see ``_common.run_isolated``)."""
    import torch

    if threads:
        torch.set_num_threads(threads)

    h = bandwidth(d)
    x, y = make_data(n, d, dtype, device)
    if backend == "naive":

        def call(a: Any, b: Any) -> Any:
            return naive_mmd2(a, b, h)
    else:
        import ratiokit

        mmd = ratiokit.MMD("gaussian", bandwidth=h, estimator="unbiased", backend=backend)

        def call(a: Any, b: Any) -> Any:
            return mmd(a, b)

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    with torch.no_grad():
        # Warm-up on a small input of the same d and dtype: compiles (or loads) the KeOps
        # formula and starts thread pools, so neither is timed.
        wx, wy = make_data(WARMUP_N, d, dtype, device)
        call(wx, wy)
        sync()
        del wx, wy
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        _common.mark_baseline()

        def timed() -> float:
            out = call(x, y)
            sync()
            return float(out)

        seconds, times, value = _common.time_call(timed, budget_s=budget_s)
    result = {
        "seconds": seconds,
        "seconds_all": times,
        "repeats": len(times),
        "mmd2": value,
        "threads": torch.get_num_threads(),
    }
    if device.startswith("cuda"):
        result["gpu_peak_mib"] = torch.cuda.max_memory_allocated() / _common.MIB
    return result


def run_config(
    backend: str,
    dtype: str,
    n: int,
    *,
    d: int = D,
    device: str = "cpu",
    memory_limit_gib: float = MEMORY_LIMIT_GIB,
    timeout: float = CHILD_TIMEOUT_S,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run one configuration in a subprocess (or mark the naive baseline out of memory)."""
    row: dict[str, Any] = {"backend": backend, "dtype": dtype, "n": n, "d": d, "device": device}
    if backend == "naive":
        need = naive_peak_bytes(n, n, 4 if dtype == "float32" else 8) / _common.GIB
        avail = _mem_available_gib()
        limit = memory_limit_gib if avail is None else min(memory_limit_gib, 0.8 * avail)
        row["predicted_gib"] = need
        if need > limit:
            row["status"] = f"out of memory (needs ~{need:,.0f} GiB; limit {limit:.0f} GiB)"
            return row
    kwargs = {"backend": backend, "dtype": dtype, "n": n, "d": d, "device": device}
    kwargs["threads"] = threads
    # OMP_NUM_THREADS also bounds KeOps' OpenMP loops on the CPU.
    env = {"OMP_NUM_THREADS": str(threads)} if threads else None
    result = _common.run_isolated(
        "benchmarks.kernels_scaling:measure_one", kwargs, timeout=timeout, env=env
    )
    row.update(result)
    return row


def _mem_available_gib() -> float | None:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 / _common.GIB
    except OSError:
        pass
    return None


def _pairs(row: dict[str, Any]) -> float:
    """Kernel evaluations in one MMD^2 call: n^2 + m^2 + n m (n = m here)."""
    return 3.0 * row["n"] ** 2


def agreement(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Relative differences of MMD^2 between backends at each (device, dtype, n)."""
    ok = {
        (r["device"], r["dtype"], r["n"], r["backend"]): r["mmd2"]
        for r in rows
        if r.get("status") == "ok"
    }
    out = []
    keys = sorted({(dev, dt, n) for dev, dt, n, _ in ok}, key=lambda k: (k[0], k[2], k[1]))
    for dev, dt, n in keys:
        entry: dict[str, Any] = {"device": dev, "dtype": dt, "n": n}
        for a, b in (("dense", "keops"), ("naive", "dense"), ("naive", "keops")):
            va, vb = ok.get((dev, dt, n, a)), ok.get((dev, dt, n, b))
            if va is not None and vb is not None:
                entry[f"{a} vs {b}"] = abs(va - vb) / max(abs(va), abs(vb), 1e-300)
        if dt != "float64":  # each backend against its own float64 value
            for be in BACKENDS:
                v32, v64 = ok.get((dev, dt, n, be)), ok.get((dev, "float64", n, be))
                if v32 is not None and v64 is not None:
                    entry[f"{be}: {dt} vs float64"] = abs(v32 - v64) / abs(v64)
        out.append(entry)
    return out


def _fmt_mib(value: Any) -> str:
    return "" if value is None else f"{value:,.1f}"


def _fmt_seconds(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.3g}" if value < 100 else f"{value:,.0f}"


def _fmt_rel(value: Any) -> str:
    return "" if value is None else f"{value:.1e}"


def results_table(rows: list[dict[str, Any]]) -> str:
    show = []
    for r in rows:
        s = dict(r)
        if s.get("status") == "ok" and s.get("seconds"):
            s["pairs_per_s"] = f"{_pairs(s) / s['seconds']:.2e}"
        s["n"] = f"{s['n']:,}"
        s["mmd2"] = "" if s.get("mmd2") is None else f"{s['mmd2']:.12g}"
        show.append(s)
    columns = ["backend", "dtype", "device", "n", "threads", "seconds", "repeats", "pairs_per_s"]
    columns += ["peak_rss_mib", "working_mib", "mmd2", "status"]
    if any(r.get("gpu_peak_mib") is not None for r in rows):
        columns.insert(-2, "gpu_peak_mib")
    headers = {
        "seconds": "seconds (best)",
        "pairs_per_s": "kernel evals / s",
        "peak_rss_mib": "peak RSS (MiB)",
        "working_mib": "working (MiB)",
        "gpu_peak_mib": "GPU peak (MiB)",
        "mmd2": "MMD²",
    }
    formats = {
        "seconds": _fmt_seconds,
        "peak_rss_mib": _fmt_mib,
        "working_mib": _fmt_mib,
        "gpu_peak_mib": _fmt_mib,
        "mmd2": str,
        "n": str,
    }
    return _common.markdown_table(show, columns, headers=headers, formats=formats)


def agreement_table(entries: list[dict[str, Any]]) -> str:
    columns = ["device", "dtype", "n"]
    for e in entries:
        columns += [k for k in e if k not in columns]
    rows = [{**e, "n": f"{e['n']:,}"} for e in entries]
    formats = {c: _fmt_rel for c in columns if " vs " in c}
    formats["n"] = str
    return _common.markdown_table(rows, columns, formats=formats)


def acceptance(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for r in rows:
        if r["n"] == ACCEPT_N and r["backend"] != "naive" and r["device"] == "cpu":
            if r.get("status") != "ok":
                lines.append(f"- {r['backend']} {r['dtype']}: not measured ({r['status']})")
                continue
            ok = r["peak_rss_mib"] < ACCEPT_PEAK_MIB
            lines.append(
                f"- {r['backend']} {r['dtype']}: peak RSS {r['peak_rss_mib']:,.0f} MiB "
                f"(working {r['working_mib']:,.1f} MiB), {r['seconds']:,.0f} s: "
                f"{'PASS' if ok else 'FAIL'} (target: peak < {ACCEPT_PEAK_MIB:,.0f} MiB)"
            )
    return lines or [f"- n = {ACCEPT_N:,} was not run (see --sizes / --quick)."]


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Log-log time and memory against n, one line per backend (float64), OOM marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.transforms import blended_transform_factory

    colors = {"naive": "tab:red", "dense": "tab:blue", "keops": "tab:green"}
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(14, 5))
    series = sorted({(r["backend"], r["dtype"], r["device"]) for r in rows})
    for backend, dtype, device in series:
        pts = [
            r for r in rows if (r["backend"], r["dtype"], r["device"]) == (backend, dtype, device)
        ]
        ok = sorted((r for r in pts if r.get("status") == "ok"), key=lambda r: r["n"])
        label = backend + ("" if dtype == "float64" else f" {dtype}")
        label += "" if device == "cpu" else f" ({device})"
        style = dict(
            color=colors.get(backend, "gray"),
            marker="o" if dtype == "float64" else "s",
            linestyle="-" if dtype == "float64" else "none",
            markerfacecolor=None if device == "cpu" else "white",
        )
        if ok:
            ns = [r["n"] for r in ok]
            ax_t.plot(ns, [r["seconds"] for r in ok], label=label, **style)
            ax_m.plot(ns, [r["peak_rss_mib"] for r in ok], label=f"{label}: peak RSS", **style)
            if dtype == "float64" and device == "cpu":
                ax_m.plot(
                    ns,
                    [max(r["working_mib"], 0.1) for r in ok],
                    color=style["color"],
                    linestyle=":",
                    marker=".",
                    label=f"{label}: working",
                )
        for r in pts:
            if str(r.get("status", "")).startswith("out of memory"):
                itemsize = 4 if dtype == "float32" else 8
                need_gib = naive_peak_bytes(r["n"], r["n"], itemsize) / _common.GIB
                need_mib = need_gib * 1024
                ax_m.plot(
                    [r["n"]],
                    [need_mib],
                    marker="X",
                    markersize=11,
                    color=style["color"],
                    linestyle="none",
                )
                ax_m.annotate(
                    f"{backend}: OOM, not run\n(needs ~{need_gib:,.0f} GiB)",
                    (r["n"], need_mib),
                    textcoords="offset points",
                    xytext=(-110, -28),
                    fontsize=8,
                    color=style["color"],
                )
                if ok:
                    ax_m.plot(
                        [ok[-1]["n"], r["n"]],
                        [ok[-1]["peak_rss_mib"], need_mib],
                        color=style["color"],
                        linestyle="--",
                        linewidth=0.8,
                    )
                trans = blended_transform_factory(ax_t.transData, ax_t.transAxes)
                ax_t.plot(
                    [r["n"]],
                    [0.06],
                    marker="X",
                    markersize=11,
                    color=style["color"],
                    transform=trans,
                    linestyle="none",
                )
                ax_t.annotate(
                    f"{backend}: OOM, not run",
                    (r["n"], 0.06),
                    xycoords=trans,
                    textcoords="offset points",
                    xytext=(-100, -4),
                    fontsize=8,
                    color=style["color"],
                )
    ax_m.axhline(ACCEPT_PEAK_MIB, color="gray", linestyle="--", linewidth=0.8)
    ax_m.text(
        0.98,
        ACCEPT_PEAK_MIB * 1.15,
        "2 GiB target",
        fontsize=8,
        color="gray",
        ha="right",
        transform=blended_transform_factory(ax_m.transAxes, ax_m.transData),
    )
    for ax, ylabel, title in (
        (ax_t, "seconds per MMD² call", "Wall time"),
        (ax_m, "MiB", "Peak RSS (solid) and working memory (dotted)"),
    ):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("n = m (d = 10)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize=7, loc="upper left")
    ax_m.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle("MMD², Gaussian kernel, unbiased: ratiokit dense tiles / KeOps vs full Gram")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def read_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``kernels_scaling.csv`` with numbers parsed (for ``--plot-only``)."""
    import csv

    rows = []
    with open(path, newline="") as handle:
        for raw in csv.DictReader(handle):
            row: dict[str, Any] = {}
            for key, value in raw.items():
                if key in ("n", "d", "repeats", "threads"):
                    row[key] = int(value) if value else None
                elif key in ("seconds", "peak_rss_mib", "working_mib", "mmd2", "gpu_peak_mib"):
                    row[key] = float(value) if value else None
                else:
                    row[key] = value
            rows.append(row)
    return rows


def _configs(sizes: list[int], backends: list[str], float32: bool) -> list[tuple[str, str, int]]:
    out = []
    for n in sizes:
        for dtype in ("float64", "float32") if float32 and n in FLOAT32_SIZES else ("float64",):
            out += [(b, dtype, n) for b in BACKENDS if b in backends]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.kernels_scaling", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="n = 1e3 and 3e3, float64, 1 thread by default"
    )
    parser.add_argument("--sizes", type=int, nargs="+", help="values of n = m (default 1e3..1e5)")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--no-float32", action="store_true", help="skip the float32 rows")
    parser.add_argument("--memory-limit-gib", type=float, default=MEMORY_LIMIT_GIB)
    parser.add_argument("--timeout", type=float, default=CHILD_TIMEOUT_S, help="per row, s")
    parser.add_argument("--out", type=Path, default=_common.RESULTS_DIR)
    parser.add_argument(
        "--one", nargs=3, metavar=("BACKEND", "DTYPE", "N"), help="run one row, print JSON"
    )
    parser.add_argument("--device", default="cpu", help="device for --one")
    parser.add_argument(
        "--plot-only", action="store_true", help="redraw the plot from the CSV in --out"
    )
    parser.add_argument(
        "--threads", type=int, help="CPU threads per row (torch and OpenMP; default: torch's)"
    )
    args = parser.parse_args(argv)
    if args.quick and args.threads is None:
        args.threads = 1  # on the busy shared machine 2 threads ran the dense rows 4x slower

    if args.plot_only:
        plot(read_csv(args.out / "kernels_scaling.csv"), args.out / "kernels_scaling.png")
        return 0

    if args.one:
        backend, dtype, n = args.one
        row = run_config(
            backend,
            dtype,
            int(n),
            device=args.device,
            memory_limit_gib=args.memory_limit_gib,
            timeout=args.timeout,
            threads=args.threads,
        )
        print(json.dumps(row, indent=1))
        return 0 if row.get("status") == "ok" else 1

    import torch

    start = time.perf_counter()
    info = _common.machine_info()
    sizes = args.sizes or list(QUICK_SIZES if args.quick else SIZES)
    float32 = not (args.no_float32 or args.quick)
    configs = [(*c, "cpu") for c in _configs(sizes, args.backends, float32)]
    if torch.cuda.is_available():
        configs += [(b, dt, n, "cuda") for b, dt, n in GPU_CONFIGS if b in args.backends]
        gpu_note = f"GPU rows run on {info['gpu']}."
    else:
        gpu_note = "no GPU: torch.cuda.is_available() is False here, so no GPU rows were run."
    print(gpu_note, flush=True)

    def one(backend: str, dtype: str, n: int, device: str, threads: int | None) -> dict:
        print(f"{backend:>6} {dtype} n={n:>9,} {device} ...", end=" ", flush=True)
        row = run_config(
            backend,
            dtype,
            n,
            device=device,
            memory_limit_gib=args.memory_limit_gib,
            timeout=args.timeout,
            threads=threads,
        )
        if row.get("status") == "ok":
            print(
                f"{row['seconds']:.3g} s (best of {row['repeats']}, {row['threads']} threads), "
                f"peak RSS {row['peak_rss_mib']:,.0f} MiB, working {row['working_mib']:,.1f} "
                f"MiB, MMD² = {row['mmd2']:.12g}",
                flush=True,
            )
        else:
            print(row["status"], flush=True)
        return row

    rows = [one(b, dt, n, dev, args.threads) for b, dt, n, dev in configs]
    # With --threads, also time n = 1e4 with torch's default thread count, for comparison.
    thread_rows = []
    if args.threads and THREAD_CHECK_N in sizes:
        print("thread check: torch's default thread count", flush=True)
        backends = [b for b in ("dense", "keops") if b in args.backends]
        thread_rows = [one(b, "float64", THREAD_CHECK_N, "cpu", None) for b in backends]
        thread_rows += [
            r
            for r in rows
            if r["n"] == THREAD_CHECK_N and r["dtype"] == "float64" and r["backend"] in backends
        ]
    threads_md = ""
    if thread_rows:
        threads_md = (
            "\n## Thread count (n = 10,000, float64)\n\n"
            f"The rows above ran with `--threads {args.threads}` (torch intra-op threads and "
            "`OMP_NUM_THREADS`). For comparison, the same rows with torch's default thread "
            "count, in the same run:\n\n" + results_table(thread_rows) + "\n"
        )
    total = time.perf_counter() - start
    info["load average at the end"] = _common.machine_info()["load average (1, 5, 15 min)"]

    agree = agreement(rows)
    table = results_table(rows)
    agree_md = agreement_table(agree) if agree else "(no pair of backends ran at one n)"
    h = bandwidth(D)
    threads_desc = (
        f"{args.threads} (`--threads`: torch intra-op threads and `OMP_NUM_THREADS`)"
        if args.threads
        else f"torch's default ({torch.get_num_threads()})"
    )
    cmd = "python -m benchmarks.kernels_scaling " + " ".join(argv or sys.argv[1:])
    md = f"""# MMD² scaling: ratiokit dense tiles and KeOps vs a naive full-Gram baseline

Generated by `{cmd.strip()}` in {total / 60:.1f} minutes.

{_common.machine_header(info)}

**Setup.** `ratiokit.MMD("gaussian", bandwidth={h:.4f}, estimator="unbiased", backend=...)`
(fixed bandwidth sqrt(2 d)), default dense tile 1024 x 1024; x ~ N(0, I_{D}),
y ~ N({SHIFT} * 1, I_{D}), n = m, d = {D}, seed {SEED}; float32 rows use the same data rounded.
The **naive** baseline builds the three full Gram matrices with `torch.cdist` and takes their
means; it is not run where its predicted peak (three Gram matrices plus two temporaries)
exceeds {args.memory_limit_gib:g} GiB. Each row runs in a fresh subprocess: one warm-up call on
{WARMUP_N} points of the same d and dtype (compiles or loads the KeOps formula; not timed),
then timed calls until 5 calls or 10 s; **seconds** is the best call. **Peak RSS** is the
child's peak resident set size over its whole life (`ru_maxrss`, imports and data included);
**working** is the peak during the timed calls minus the RSS just before them (peak reset via
`/proc/self/clear_refs`). *kernel evals / s* counts n² + m² + nm evaluations per call.
CPU threads per row: {threads_desc}. Other processes (test runs) shared the 2 cores during
the run, so timings are noisy (see the load averages above); memory figures are not affected.

## Results

{table}

## Agreement between backends (relative difference of MMD²)

{agree_md}
{threads_md}
## Acceptance: MMD² at n = m = 100,000, d = 10 with peak memory under 2 GiB

{chr(10).join(acceptance(rows))}

## GPU

{gpu_note}

Total runtime: {total:.0f} s ({total / 60:.1f} min).
"""
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "kernels_scaling.md").write_text(md)
    _common.write_csv(args.out / "kernels_scaling.csv", rows, CSV_COLUMNS)
    plot(rows, args.out / "kernels_scaling.png")
    print()
    print(table)
    print()
    print("Agreement (relative difference of MMD²):")
    print(agree_md)
    print()
    print("\n".join(acceptance(rows)))
    print(f"\nTotal runtime: {total:.0f} s. Wrote {args.out}/kernels_scaling.{{md,csv,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
