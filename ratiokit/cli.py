"""The ``ratiokit`` command: ``doctor`` checks an installation, ``demo`` shows what it does,
``test`` runs a two-sample test on two files, ``bench`` runs a checkout's benchmark suites.

This is the one module that prints. Each subcommand is a ``_cmd_<name>(args) -> int``
function registered in :func:`build_parser`; user errors (``ValueError``/``TypeError`` raised by
ratiokit) become a one-line ``ratiokit: error: ...`` and exit status 1, and bad arguments exit
with status 2 (argparse).

Examples
--------
>>> build_parser().parse_args(["demo", "--n", "500"]).n
500
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

import ratiokit

if TYPE_CHECKING:
    import torch

    from ratiokit.kernels import Kernel

__all__ = ["build_parser", "main"]

PROG = "ratiokit"


# ---------------------------------------------------------------------------------------------
# doctor
# ---------------------------------------------------------------------------------------------

#: Distributions whose versions ``ratiokit doctor`` reports, in order.
VERSION_PACKAGES = (
    "numpy",
    "scipy",
    "torch",
    "scikit-learn",
    "pykeops",
    "keopscore",
    "matplotlib",
    "dask",
    "distributed",
)
#: Largest relative error accepted between two float64 evaluations of one kernel sum.
_FLOAT64_RTOL = 1e-10
#: Seconds the dask check waits for its in-process cluster and task.
_DASK_TIMEOUT_S = 20


class _Skip(Exception):
    """Raised by a check that does not apply on this machine (e.g. no GPU)."""


@dataclass(frozen=True)
class _Check:
    """One line of ``ratiokit doctor``: ``run()`` returns the message of a passed check."""

    name: str
    run: Callable[[], str]
    required: bool = False


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _max_rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def _check_torch() -> str:
    import torch

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(64, 48, dtype=torch.float64, generator=gen)
    b = torch.randn(48, 32, dtype=torch.float64, generator=gen)
    err = _max_rel_error(a @ b, torch.as_tensor(a.numpy() @ b.numpy()))
    if not err < _FLOAT64_RTOL:
        raise RuntimeError(f"float64 matmul differs from NumPy's (max rel. error {err:.1e})")
    return f"float64 matmul ({torch.get_num_threads()} threads)"


def _gaussian_problem(
    device: str, n: int = 200, m: int = 300
) -> tuple[Kernel, torch.Tensor, torch.Tensor, torch.Tensor]:
    import torch

    from ratiokit.kernels import Kernel

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, dtype=torch.float64, generator=gen).to(device)
    y = torch.randn(m, 3, dtype=torch.float64, generator=gen).to(device)
    w = torch.randn(m, 2, dtype=torch.float64, generator=gen).to(device)
    return Kernel("gaussian", 1.0), x, y, w


def _check_dense() -> str:
    import torch

    from ratiokit.kernels import kernel_sum

    kernel, x, y, w = _gaussian_problem("cpu")
    # tile_size=64 makes the blocked path walk several tiles of the 200 x 300 Gram matrix.
    tiled = kernel_sum(kernel, x, y, w, backend="dense", tile_size=64)
    direct = torch.exp(-0.5 * torch.cdist(x, y) ** 2) @ w
    err = _max_rel_error(tiled, direct)
    if not err < _FLOAT64_RTOL:
        raise RuntimeError(f"tiled kernel sum differs from the full Gram matrix ({err:.1e})")
    return f"tiled sum matched the full Gram matrix (max rel. error {err:.0e})"


def _check_keops(device: str) -> str:
    import torch

    from ratiokit.kernels import keops_available, kernel_sum

    if device == "cuda" and not torch.cuda.is_available():
        raise _Skip("no CUDA device")
    if not keops_available():
        import pykeops.torch  # noqa: F401  (re-raises the import error with its reason)
    kernel, x, y, w = _gaussian_problem(device)
    lazy = kernel_sum(kernel, x, y, w, backend="keops")
    dense = kernel_sum(kernel, x, y, w, backend="dense")
    err = _max_rel_error(lazy, dense)
    if not err < _FLOAT64_RTOL:
        raise RuntimeError(f"KeOps and dense kernel sums differ (max rel. error {err:.1e})")
    return f"compiled and matched the dense kernel sum (max rel. error {err:.0e})"


def _check_cuda() -> str:
    import torch

    if not torch.cuda.is_available():
        built = (
            "built without CUDA" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
        )
        raise _Skip(f"no CUDA device (torch {built})")
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(256, 256, dtype=torch.float64, generator=gen)
    err = _max_rel_error((a.cuda() @ a.cuda()).cpu(), a @ a)
    if not err < _FLOAT64_RTOL:
        raise RuntimeError(f"float64 matmul on the GPU differs from the CPU ({err:.1e})")
    name = torch.cuda.get_device_name(0)
    return f"{name}, CUDA {torch.version.cuda}: float64 matmul matched the CPU"


def _check_matplotlib() -> str:
    from ratiokit.plot import new_figure

    fig, axes = new_figure()
    axes[0].plot([0.0, 1.0], [0.0, 1.0])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=20)
    if not buffer.getvalue().startswith(b"\x89PNG\r\n\x1a\n"):
        raise RuntimeError("the PNG writer returned no PNG data")
    return "rendered a PNG without pyplot"


def _check_dask() -> str:
    from dask.distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=False,
            dashboard_address=None,
            timeout=_DASK_TIMEOUT_S,
        ) as cluster,
        Client(cluster, timeout=_DASK_TIMEOUT_S) as client,
    ):
        result = client.submit(sum, [1, 2, 3]).result(timeout=_DASK_TIMEOUT_S)
    if result != 6:
        raise RuntimeError(f"the task returned {result!r} instead of 6")
    return "LocalCluster(1 worker, in-process) ran a task"


def _doctor_checks() -> list[_Check]:
    import torch

    keops = _version("pykeops")
    return [
        _Check(f"torch {torch.__version__}", _check_torch, required=True),
        _Check("kernel sums (dense)", _check_dense, required=True),
        _Check(f"KeOps {keops} (CPU)", lambda: _check_keops("cpu")),
        _Check("GPU (torch)", _check_cuda),
        _Check(f"KeOps {keops} (GPU)", lambda: _check_keops("cuda")),
        _Check(f"matplotlib {_version('matplotlib')}", _check_matplotlib),
        _Check(f"dask.distributed {_version('distributed')}", _check_dask),
    ]


def _one_line(err: BaseException, limit: int = 300) -> str:
    text = str(err).strip().splitlines()
    reason = f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")
    return reason if len(reason) <= limit else reason[: limit - 3] + "..."


def _run_check(check: _Check) -> tuple[str, str]:
    """Run one check in isolation; return its status ("ok", "skip", "FAIL") and its line."""
    start = time.perf_counter()
    # Libraries print progress (KeOps compilation) and warn; the doctor shows verdicts only.
    sink = io.StringIO()
    try:
        with (
            contextlib.redirect_stdout(sink),
            contextlib.redirect_stderr(sink),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            message = check.run()
        status = "ok"
    except _Skip as skip:
        status, message = "skip", str(skip)
    except Exception as err:  # noqa: BLE001  (one broken backend must not stop the doctor)
        status, message = "FAIL", _one_line(err)
    elapsed = time.perf_counter() - start
    name = check.name if check.required or status != "FAIL" else f"{check.name} (optional)"
    timing = f" [{elapsed:.1f} s]" if elapsed >= 1.0 else ""
    return status, f"{'[' + status + ']':<7}{name}: {message}{timing}"


def _print_versions() -> None:
    rows = [
        ("python", f"{platform.python_version()}  ({sys.executable})"),
        ("platform", f"{platform.platform()}, {os.cpu_count()} CPUs"),
        ("ratiokit", ratiokit.__version__),
    ]
    rows += [(dist, _version(dist)) for dist in VERSION_PACKAGES]
    width = max(len(name) for name, _ in rows) + 2
    for name, value in rows:
        print(f"  {name:<{width}}{value}")


def _cmd_doctor(args: argparse.Namespace) -> int:
    print(f"{PROG} doctor: versions")
    _print_versions()
    print()
    print("checks (torch and dense kernel sums are required; the others are optional)")
    failed_required, counts = 0, {"ok": 0, "skip": 0, "FAIL": 0}
    for check in _doctor_checks():
        status, line = _run_check(check)
        print(line, flush=True)
        counts[status] += 1
        failed_required += status == "FAIL" and check.required
    print()
    summary = f"{counts['ok']} ok, {counts['skip']} skipped, {counts['FAIL']} failed"
    if failed_required:
        print(f"{failed_required} required check(s) failed ({summary}).")
        return 1
    print(f"All required checks passed ({summary}).")
    return 0


# ---------------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------------

#: The demo's mean shift |mu| between P = N(mu, I) and Q = N(0, I) in 2-D.
DEMO_SHIFT = 0.5
DEMO_DIM = 2
#: Random relabellings of the pooled sample behind the null spread and the p-value of MMD^2.
DEMO_PERMUTATIONS = 200


@dataclass(frozen=True)
class _PairResult:
    """One row of the MMD section: a pair of samples and its statistics."""

    name: str
    labels: tuple[str, str]
    x_p: np.ndarray
    x_q: np.ndarray
    mmd2: float
    exact: float
    bandwidth: float
    null_sd: float
    pvalue: float

    @property
    def samples(self) -> str:
        return " vs ".join(self.labels)


def _gaussian_shift_mmd2(shift: float, dim: int, bandwidth: float) -> float:
    """Population MMD^2 between N(mu, I) and N(0, I), |mu| = shift, for a Gaussian kernel.

    ``E k(x, y) = (h^2 / (h^2 + 2))^(d/2) exp(-|m_x - m_y|^2 / (2 (h^2 + 2)))`` for
    ``x ~ N(m_x, I)``, ``y ~ N(m_y, I)``: x - y ~ N(m_x - m_y, 2 I), integrated per dimension.
    """
    h2 = bandwidth**2
    scale = (h2 / (h2 + 2.0)) ** (dim / 2.0)
    return float(2.0 * scale * (1.0 - np.exp(-(shift**2) / (2.0 * (h2 + 2.0)))))


def _mmd_pair(
    name: str,
    labels: tuple[str, str],
    x_p: np.ndarray,
    x_q: np.ndarray,
    shift: float,
    rng: np.random.Generator,
) -> _PairResult:
    from ratiokit.two_sample import two_sample_test

    seed = int(rng.integers(2**31))
    res = two_sample_test(
        x_p, x_q, method="mmd", n_permutations=DEMO_PERMUTATIONS, rng=seed, progress=False
    )
    bandwidth = float(res.details["bandwidth"])
    exact = _gaussian_shift_mmd2(shift, DEMO_DIM, bandwidth)
    null_sd = float(res.null_distribution.std(ddof=1))
    return _PairResult(
        name, labels, x_p, x_q, res.statistic, exact, bandwidth, null_sd, res.pvalue
    )


def _demo_mmd(n: int, rng: np.random.Generator) -> list[_PairResult]:
    """Section 1: MMD^2 of a shifted pair and of a pair from one distribution."""
    from ratiokit.synthetic import GaussianShift

    pair = GaussianShift(dim=DEMO_DIM, shift=DEMO_SHIFT)
    streams = rng.spawn(6)
    shifted = _mmd_pair(
        "shifted",
        ("P", "Q"),
        pair.sample_p(n, rng=streams[0]),
        pair.sample_q(n, rng=streams[1]),
        DEMO_SHIFT,
        streams[2],
    )
    same = _mmd_pair(
        "same",
        ("Q", "Q'"),
        pair.sample_q(n, rng=streams[3]),
        pair.sample_q(n, rng=streams[4]),
        0.0,
        streams[5],
    )
    return [shifted, same]


def _print_mmd_table(results: Sequence[_PairResult]) -> None:
    print(
        f"MMD^2 between two samples: P = N(mu, I), Q = N(0, I) in {DEMO_DIM}-D, "
        f"|mu| = {DEMO_SHIFT}"
    )
    print(
        "Gaussian kernel, median-heuristic bandwidth, unbiased estimate; null sd and "
        f"p-value from {DEMO_PERMUTATIONS} random relabellings (ratiokit.two_sample_test)"
    )
    print()
    header = (
        "pair",
        "samples",
        "n",
        "bandwidth",
        "MMD^2",
        "exact",
        "null sd",
        "MMD^2/sd",
        "p-value",
    )
    rows = [header]
    for r in results:
        rows.append(
            (
                r.name,
                r.samples,
                f"{r.x_p.shape[0]}",
                f"{r.bandwidth:.3f}",
                f"{r.mmd2:.2e}",
                f"{r.exact:.2e}",
                f"{r.null_sd:.2e}",
                f"{r.mmd2 / r.null_sd:.1f}",
                f"{r.pvalue:.3g}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [cell.rjust(w) for cell, w in zip(row[2:], widths[2:], strict=True)]
        print("  ".join(cells))
    print()
    notes = (
        "exact:   population MMD^2 at that bandwidth (closed form for Gaussians); the shifted",
        "         estimate scatters around it by O(1/sqrt(n)), more than the null sd.",
        "null sd: spread of MMD^2 over random relabellings of the pooled points (P = Q); a",
        "         same-distribution pair lands within about 2 null sd of 0 (it can be negative).",
        "p-value: (1 + #relabellings with MMD^2 >= the observed) / (1 + relabellings); never 0.",
    )
    print("\n".join(notes))


def _demo_mmd_figure(results: Sequence[_PairResult], out: Path) -> Path:
    from ratiokit.plot import mmd_demo_figure, save_figure

    fig = mmd_demo_figure(
        [(f"{r.name}: {r.samples}", r.x_p, r.x_q) for r in results],
        [r.mmd2 for r in results],
        [r.null_sd for r in results],
        labels=[r.labels for r in results],
        title=f"MMD^2 demo: {DEMO_DIM}-D Gaussian mean shift |mu| = {DEMO_SHIFT}, "
        f"n = {results[0].x_p.shape[0]} per sample",
    )
    return save_figure(fig, out / "mmd_demo.png")


#: The demo's g-and-k fit: Adam steps on theta, learning rate, and the goodness-of-fit test's
#: relabellings.
FIT_STEPS = 1000
FIT_LR = 0.05
FIT_PERMUTATIONS = 199


@dataclass(frozen=True)
class _FitDemo:
    """The fit section: the observations, the start, the fit and its goodness-of-fit test."""

    data: np.ndarray
    theta0: np.ndarray
    result: ratiokit.FitResult
    test: ratiokit.TwoSampleTestResult


def _demo_fit(n: int, rng: np.random.Generator) -> _FitDemo:
    """Section 2: fit the g-and-k distribution's four parameters to n draws at known values.

    The start is what a normal fit of the data would say: ``A`` at the median, ``B`` at the
    interquartile range over 1.349, and nearly no skew or tail (``g = k = 0.1``).
    """
    import torch

    from ratiokit.config import TrainConfig
    from ratiokit.simulators import GAndK

    sim = GAndK()
    data_rng, fit_rng, test_rng = rng.spawn(3)
    data = sim.sample(n, rng=data_rng)
    q25, q50, q75 = np.percentile(data, [25, 50, 75])
    theta0 = np.array([q50, max((q75 - q25) / 1.349, 1e-3), 0.1, 0.1])
    config = TrainConfig(max_steps=FIT_STEPS, lr=FIT_LR, progress=False)
    threads = torch.get_num_threads()
    # Minibatches of 256 points: one thread is faster, and immune to oversubscribed cores
    # (two threads on a busy 2-core machine made this step 20x slower).
    torch.set_num_threads(1)
    try:
        result = ratiokit.fit(sim, data, method="mmd", theta0=theta0, config=config, rng=fit_rng)
    finally:
        torch.set_num_threads(threads)
    test = result.goodness_of_fit(n_permutations=FIT_PERMUTATIONS, rng=test_rng, progress=False)
    return _FitDemo(data, theta0, result, test)


def _print_fit(demo: _FitDemo) -> None:
    from ratiokit.simulators import GAndK

    res, n = demo.result, demo.data.shape[0]
    print("Fitting a simulator: the g-and-k distribution,")
    print("x = A + B (1 + 0.8 tanh(g z / 2)) (1 + z^2)^k z with z ~ N(0, 1),")
    print(f"to {n} observations drawn at known parameters (ratiokit.fit, method 'mmd'):")
    print(f"gradient descent on (A, B, g, k) through the quantile function, {res.n_steps} Adam")
    print("steps of 256 simulated points, Gaussian-kernel MMD^2 at the data's median bandwidth,")
    print("bounds [0, 10] as transforms; the estimate averages the second half of the steps.")
    print()
    rows = [("param", "truth", "start", "estimate", "error")]
    for name, truth, start, est in zip(
        res.param_names, GAndK().theta_true, demo.theta0, res.theta, strict=True
    ):
        rows.append((name, f"{truth:g}", f"{start:.3f}", f"{est:.3f}", f"{est - truth:+.3f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)]
        print("  ".join([row[0].ljust(widths[0]), *cells]))
    print()
    state = "yes" if res.converged else f"no ({res.details.get('message', 'still moving')})"
    print(f"converged: {state}; {res.n_simulations:,} points simulated in {res.wall_time:.1f} s")
    test = demo.test
    verdict = "no evidence of misfit" if test.pvalue > 0.05 else "the fit is rejected"
    print(f"goodness of fit: MMD two-sample test of the {n} observations against {n} fresh")
    print(
        f"simulations at the estimate: p = {test.pvalue:.3g} ({test.n_permutations} "
        f"permutations), {verdict}."
    )


def _cmd_demo(args: argparse.Namespace) -> int:
    from ratiokit._rng import check_rng

    start = time.perf_counter()
    rng = check_rng(args.seed)
    print(f"{PROG} {ratiokit.__version__} demo (n = {args.n}, seed = {args.seed})")
    print()
    results = _demo_mmd(args.n, rng)
    _print_mmd_table(results)
    if not args.no_plot:
        path = _demo_mmd_figure(results, Path(args.out))
        print()
        print(f"figure written to {path}")
    print()
    fitted = _demo_fit(args.n, rng)
    _print_fit(fitted)
    if not args.no_plot:
        from ratiokit.plot import save_figure
        from ratiokit.simulators import GAndK

        fig = fitted.result.plot(truth=GAndK().theta_true, rng=0)[0].figure
        fig.suptitle(f"g-and-k fit by MMD, n = {args.n}: estimates and truth (dashed)")
        path = save_figure(fig, Path(args.out) / "gandk_fit.png")
        print()
        print(f"figure written to {path}")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


# ---------------------------------------------------------------------------------------------
# test
# ---------------------------------------------------------------------------------------------

#: File types ``ratiokit test`` reads, by suffix, and their column delimiter (None: whitespace).
TEXT_DELIMITERS = {".csv": ",", ".tsv": "\t", ".txt": None, ".dat": None}


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _first_non_number(path: Path, delimiter: str | None) -> str | None:
    """Where the first cell that is not a number lies, after an optional header line:
    the column by its header name (else its 1-based index) and the 1-based line number."""
    rows = []
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            text = line.split("#", 1)[0].strip()  # comments and blank lines, as np.loadtxt
            if text:
                rows.append((number, [cell.strip() for cell in text.split(delimiter)]))
    header = None
    if rows and not all(map(_is_number, rows[0][1])):
        header = [name.strip("'\"") for name in rows.pop(0)[1]]
    for data_row, (number, cells) in enumerate(rows, start=1):
        for index, cell in enumerate(cells):
            if not _is_number(cell):
                column = f"column {index + 1}"
                if header is not None and index < len(header):
                    column = f"column {header[index]!r} ({column})"
                return (
                    f"{cell!r} in {column} of data row {data_row} (line {number}) is not a number"
                )
    return None


def _read_text(path: Path, delimiter: str | None) -> np.ndarray:
    """Numbers of a delimited text file; one header line of column names is skipped."""
    try:
        return np.loadtxt(path, delimiter=delimiter, ndmin=2, dtype=np.float64)
    except ValueError:
        try:  # a header line of column names
            return np.loadtxt(path, delimiter=delimiter, ndmin=2, dtype=np.float64, skiprows=1)
        except ValueError as err:  # a non-number below the header, or ragged rows
            where = _first_non_number(path, delimiter) or str(err).rstrip(".")
            raise ValueError(f"cannot read `{path}` as a table of numbers: {where}.") from err


def _load_sample(name: str) -> np.ndarray:
    """Load one sample from a .npy array or a delimited text file (rows are points)."""
    path = Path(name)
    suffix = path.suffix.lower()
    if suffix != ".npy" and suffix not in TEXT_DELIMITERS:
        kinds = ", ".join([".npy", *TEXT_DELIMITERS])
        raise ValueError(f"`{name}` must be a {kinds} file; got suffix {path.suffix!r}.")
    try:
        path.open("rb").close()
    except OSError as err:  # missing, a folder, no permission
        raise ValueError(f"cannot read `{name}`: {err.strerror or err}.") from err
    if suffix != ".npy":
        return _read_text(path, TEXT_DELIMITERS[suffix])
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:  # not an array, truncated, pickled objects
        raise ValueError(f"cannot read `{name}` as a NumPy array: {err}") from err


def _cmd_test(args: argparse.Namespace) -> int:
    x, y = _load_sample(args.x), _load_sample(args.y)  # before importing torch: fast errors
    from ratiokit._validation import as_sample_pair
    from ratiokit.config import N_PERMUTATIONS
    from ratiokit.two_sample import two_sample_test

    # Validate under the file names, so a message says which file is wrong.
    x, y = as_sample_pair(x, y, (args.x, args.y), min_samples=2)
    res = two_sample_test(
        x,
        y,
        method=args.method,
        n_permutations=N_PERMUTATIONS if args.permutations is None else args.permutations,
        alternative=args.alternative,
        rng=args.seed,
        progress=True if args.progress else None,
        standardize=args.standardize,
        fit_size=args.fit_size,
    )
    n, m, d = x.shape[0], y.shape[0], x.shape[1]
    if args.json:
        record = {
            "x": args.x,
            "y": args.y,
            "n_x": n,
            "n_y": m,
            "n_features": d,
            "method": res.method,
            "statistic": res.statistic,
            "pvalue": res.pvalue,
            "alternative": res.alternative,
            "n_permutations": res.n_permutations,
            "seed": args.seed,
            "details": res.details,
        }
        # Strict JSON: the statistic and p-value are finite (a NaN statistic raises), and a
        # non-finite value anywhere else is an error rather than a bare NaN token.
        print(json.dumps(record, allow_nan=False))
        return 0
    kind = "exact: all relabellings" if res.details.get("exact") else "random relabellings"
    print(f"two-sample test of H0: P = Q, method {res.method!r}")
    print(f"  x: {args.x} ({n} x {d})")
    print(f"  y: {args.y} ({m} x {d})")
    print(f"statistic  {res.statistic:.6g}")
    print(f"p-value    {res.pvalue:.6g}  ({res.n_permutations} {kind}, {res.alternative})")
    return 0


# ---------------------------------------------------------------------------------------------
# bench
# ---------------------------------------------------------------------------------------------


def _benchmarks_main() -> Callable[[list[str]], int]:
    """``main`` of ``benchmarks/__main__.py`` in the working directory (a source checkout).

    The suites live at the repository root, beside ``ratiokit/``, and are not installed with
    the package, so the command runs them only from there.
    """
    root = Path.cwd().resolve()
    folder = root / "benchmarks"
    if not (folder / "__main__.py").is_file():
        source = Path(ratiokit.__file__).resolve().parent.parent
        hint = ""
        if (source / "benchmarks" / "__main__.py").is_file():
            hint = f" (this installation's checkout is {source})"
        raise ValueError(
            f"`{PROG} bench` runs the benchmarks/ folder of a source checkout, and there is "
            f"none in {root}; run it from the repository root{hint}, e.g. "
            f"`cd /path/to/ratiokit && {PROG} bench --quick`."
        )
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    module = importlib.import_module("benchmarks.__main__")
    found = Path(module.__file__).resolve().parent
    if found != folder:
        raise ValueError(
            f"`{PROG} bench` must run {folder}; got the benchmarks package at {found} "
            "(imported earlier): run it in a fresh process from the repository root."
        )
    return module.main


def _cmd_bench(args: argparse.Namespace) -> int:
    argv = [*args.suites] + (["--quick"] if args.quick else []) + (["--list"] if args.list else [])
    argv += ["--out", args.out] if args.out else []
    return int(_benchmarks_main()(argv))


# ---------------------------------------------------------------------------------------------
# parser and entry point
# ---------------------------------------------------------------------------------------------


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer; got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}; got {value}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """Return the ``ratiokit`` argument parser (one subparser per command)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Likelihood-free density-ratio estimation: estimate, test and fit by "
        "comparing samples.",
    )
    parser.add_argument(
        "-V", "--version", action="version", version=f"{PROG} {ratiokit.__version__}"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    doctor = commands.add_parser(
        "doctor",
        help="print versions and check each backend (torch, KeOps, GPU, dask)",
        description="Print versions and check each backend. Exit status 0 unless a required "
        "check (torch, dense kernel sums) fails.",
    )
    doctor.set_defaults(func=_cmd_doctor)

    demo = commands.add_parser(
        "demo",
        help="compare synthetic samples with MMD, fit the g-and-k distribution, save figures",
        description="Compare two synthetic samples with MMD^2, fit the four parameters of "
        "the g-and-k distribution to N draws at known values (with a goodness-of-fit test), "
        "and save a figure of each.",
    )
    demo.add_argument(
        "--out",
        default="demo_output",
        metavar="DIR",
        help="folder for the figure (default: %(default)s)",
    )
    demo.add_argument(
        "--n",
        type=_int_at_least(10),
        default=2000,
        metavar="N",
        help="points per sample (default: %(default)s)",
    )
    demo.add_argument(
        "--seed",
        type=_int_at_least(0),
        default=0,
        metavar="S",
        help="random seed (default: %(default)s)",
    )
    demo.add_argument("--no-plot", action="store_true", help="skip the figure")
    demo.set_defaults(func=_cmd_demo)

    test = commands.add_parser(
        "test",
        help="permutation two-sample test of two samples stored in files",
        description="Test whether two samples (rows are points, columns features) come from "
        "one distribution. Files: .npy arrays, or .csv/.tsv/.txt/.dat tables (an optional "
        "header line of column names is skipped). Exit status 0 when the test ran, 1 on "
        "unreadable or invalid data.",
    )
    test.add_argument("x", metavar="X", help="first sample (.npy, .csv, .tsv, .txt, .dat)")
    test.add_argument("y", metavar="Y", help="second sample, with the same columns")
    test.add_argument(
        "--method",
        default="mmd",
        metavar="NAME",
        help="mmd, mmdagg, energy, mmd_opt, mmd_rff, mmd_deep, or any registered method "
        "(default: %(default)s)",
    )
    test.add_argument(
        "--permutations",
        type=_int_at_least(1),
        default=None,
        metavar="B",
        help="random relabellings (default: ratiokit.config.N_PERMUTATIONS, 999)",
    )
    test.add_argument(
        "--alternative",
        choices=("greater", "less", "two-sided"),
        default="greater",
        help="(default: %(default)s)",
    )
    test.add_argument(
        "--seed",
        type=_int_at_least(0),
        default=None,
        metavar="S",
        help="random seed; the same seed gives the same p-value (default: fresh entropy)",
    )
    test.add_argument(
        "--standardize",
        action="store_true",
        help="give every feature unit variance first (pooled mean and standard deviation, "
        "label-free: the test stays exact); for features in different units",
    )
    test.add_argument(
        "--fit-size",
        type=float,
        default=None,
        metavar="F",
        help="for a method with a learned critic (mmd_opt, mmd_deep, classifier, ...): the "
        "fraction of each sample it is fitted on, tested on the rest (default: 0.5)",
    )
    test.add_argument("--json", action="store_true", help="print one JSON object")
    test.add_argument(
        "--progress",
        action="store_true",
        help="always show the progress bar of long computations (by default it shows only "
        "when stderr is a terminal, never in a log file or a pipe)",
    )
    test.set_defaults(func=_cmd_test)

    bench = commands.add_parser(
        "bench",
        help="run the benchmark suites of a source checkout (from its root)",
        description="Run the benchmark suites as `python -m benchmarks` does: from the "
        "repository root of a source checkout, each suite writes its tables and plots to "
        "benchmarks/results/ (benchmarks/results/quick/ with --quick). Exit status 0 when "
        "every suite ran, 1 otherwise.",
    )
    bench.add_argument(
        "suites", nargs="*", metavar="SUITE", help="suites to run (default: all; see --list)"
    )
    bench.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    bench.add_argument("--list", action="store_true", help="list the suites and exit")
    bench.add_argument(
        "--out",
        default=None,
        help="results folder (default: benchmarks/results, or benchmarks/results/quick with "
        "--quick, so a smoke run never overwrites the full-size tables)",
    )
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``ratiokit`` command line and return its exit status.

    Parameters
    ----------
    argv : list of str, default=None
        Arguments after the program name; default: ``sys.argv[1:]``.

    Returns
    -------
    int
        0 on success, 1 when a command fails on a user error or runs out of memory (a
        one-line message on stderr, no traceback), 130 on Ctrl-C. Invalid arguments exit with
        status 2 through :class:`SystemExit`, as argparse does.
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, TypeError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    except MemoryError:
        print(
            f"{PROG}: error: out of memory; use smaller samples or fewer permutations",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
