"""Density-ratio accuracy and fit time against exact answers, beside the densratio package.

For each synthetic problem (``ratiokit.synthetic``: a Gaussian mean shift in d = 1, 5 and 20,
a change of scale, a Gaussian mixture, a Student t against a Gaussian) and each n = m in
{500, 2000, 10000}, every ratio method fits on n points of each sample and is scored on
2000 fresh points from P and 2000 from Q:

- **log-ratio MSE** at the P points and at the Q points, against the exact log ratio
  (RuLSIF against its own target, the relative ratio ``log r_alpha``, alpha = 0.1, as the
  densratio package returns it); estimates are floored at the smallest positive float
  before the log, for every method alike;
- **divergence error**, where the exact value is finite: uLSIF's chi^2 = 2 PE, RuLSIF's
  ``PE_alpha`` and KLIEP's KL(P||Q) (other methods: their first own divergence kind, e.g.
  the classifier's JS), against the pair's closed form (``ratiokit.synthetic``) or, where it
  has none, adaptive quadrature of the exact densities in 1-D (a Gaussian mean shift in d
  dimensions reduces to 1-D; the other 5-D and 20-D cells have no reference);
- **fit time**: the best of up to 3 fits within 5 s (one fit when a fit takes longer),
  model selection included; each method runs in a fresh subprocess (peak memory is its own).

Methods: ratiokit's ``ulsif``, ``rulsif`` and ``kliep``, every other registered method of
``ratiokit.methods.METHODS`` with ``has_log_ratio`` whose ``log_ratio`` works at new points
(methods that weight the fitted sample only, such as ``kmm``, are skipped), and the densratio
package's uLSIF, RuLSIF and KLIEP measured in the same run. The comparison is paired: densratio
gets the same bandwidth grid (ratiokit's ``bandwidth_grid_``: multiples of the median pooled
distance), the same ridge grid (9 x 9) and the same 100 kernel centres (densratio draws its
centres with ``numpy.random.choice``; the child replaces that one call with ratiokit's
centre indices), so the two fit the same kernel model and differ only in model selection
and solver; where they select the same cell, uLSIF's log ratios agree to rounding.

**Peer environment.** densratio is never a ratiokit dependency. It runs with the Python of a
separate virtual environment, ``.venv-peers-densratio`` in the repository root (override with
``--peer-venv`` or ``$RATIOKIT_DENSRATIO_VENV``). If it is missing, the densratio rows say
"not installed" and the script prints the command that creates it::

    python3 -m venv .venv-peers-densratio
    .venv-peers-densratio/bin/pip install -c constraints.txt densratio numpy

**Threads.** Both libraries run with ``--threads`` CPU threads (default 1: torch's intra-op
threads, and ``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` for NumPy's BLAS), which gives
steadier timings on a shared machine.

Run from the repository root::

    python -m benchmarks.ratio_accuracy                 # full run (about an hour on 2 cores)
    python -m benchmarks.ratio_accuracy --quick         # n = 500, one problem, 4 methods (~2 min)
    python -m benchmarks.ratio_accuracy --sizes 10000 --problems gaussian_shift_d1
    python -m benchmarks.ratio_accuracy --plot-only     # redraw the PNG from the CSV

Writes ``benchmarks/results/ratio_accuracy.{md,csv,png}``. The acceptance target (design
document): ratiokit's uLSIF and RuLSIF, leave-one-out model selection included, at least 50x
faster than densratio's at n = 10,000, at equal or better log-ratio MSE.

This module imports only the standard library and NumPy at the top: the densratio child runs
it with the peer environment's Python.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import _common

SUITE = "ratio"
SIZES = (500, 2_000, 10_000)
QUICK_SIZES = (500,)
N_EVAL = 2_000
ALPHA = 0.1
N_CENTRES = 100
ACCEPT_N = 10_000
ACCEPT_SPEEDUP = 50.0
#: Problem label -> (``ratiokit.synthetic.make_problem`` name, parameters).
PROBLEMS: dict[str, tuple[str, dict[str, Any]]] = {
    "gaussian_shift_d1": ("gaussian_shift", {"dim": 1}),
    "gaussian_shift_d5": ("gaussian_shift", {"dim": 5}),
    "gaussian_shift_d20": ("gaussian_shift", {"dim": 20}),
    "scale_change": ("scale_change", {}),
    "gaussian_mixture": ("gaussian_mixture", {}),
    "student_t": ("student_t", {}),
}
QUICK_PROBLEMS = ("gaussian_shift_d1",)
#: Methods of a quick run: the three with a densratio counterpart, and the classifier.
QUICK_METHODS = ("ulsif", "rulsif", "kliep", "classifier")
#: ratiokit's kernel ratio methods, by module (they work before and after registration).
OURS = {
    "ulsif": "ratiokit.methods.ulsif:ULSIF",
    "rulsif": "ratiokit.methods.ulsif:RuLSIF",
    "kliep": "ratiokit.methods.kliep:KLIEP",
}
#: ratiokit method -> densratio method.
PEER_METHODS = {"ulsif": "uLSIF", "rulsif": "RuLSIF", "kliep": "KLIEP"}
PEER_VENV = Path(
    os.environ.get("RATIOKIT_DENSRATIO_VENV", _common.REPO_ROOT / ".venv-peers-densratio")
)
PEER_INSTALL = (
    "python3 -m venv .venv-peers-densratio && "
    ".venv-peers-densratio/bin/pip install -c constraints.txt densratio numpy"
)
TIMEOUT_S = 3600.0
#: Rows written after every cell, for ``--resume``.
PARTIAL = "ratio_accuracy.partial.csv"
TINY = np.finfo(np.float64).tiny
CSV_COLUMNS = (
    "problem",
    "d",
    "n",
    "method",
    "library",
    "target",
    "mse_p",
    "mse_q",
    "mse",
    "zero_mse",
    "divergence",
    "estimate",
    "exact",
    "abs_error",
    "fit_s",
    "fit_cpu_s",
    "fits_timed",
    "bandwidth",
    "lambda",
    "peak_rss_mib",
    "load_1min",
    "status",
)


# --------------------------------------------------------------------------------------
# children (run in fresh interpreters)


def method_class(method: str) -> type:
    """The class of a ratiokit method: one of :data:`OURS`, else from the registry."""
    import importlib

    from ratiokit.methods import METHODS

    if method in OURS:
        module, _, name = OURS[method].partition(":")
        return getattr(importlib.import_module(module), name)
    return METHODS[method]


def _number(value: Any) -> float | None:
    """A fitted hyperparameter as a float, or None (absent, or not a single number)."""
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        return None


def _centre_rows(centres: Any, x_p: np.ndarray) -> list[int]:
    """Row indices in ``x_p`` of a fitted model's kernel centres (empty if it has none)."""
    if centres is None:
        return []
    index = {row.tobytes(): i for i, row in enumerate(x_p)}
    return [index[row.tobytes()] for row in np.asarray(centres.cpu(), dtype=np.float64)]


def _scores(log_est_p: np.ndarray, log_est_q: np.ndarray, data: Any, target: str) -> dict:
    """MSE of estimated log values against the exact target at the evaluation points."""
    key = "lr" if target == "log r" else "lra"
    return {
        "mse_p": float(np.mean((log_est_p - data[f"{key}_p"]) ** 2)),
        "mse_q": float(np.mean((log_est_q - data[f"{key}_q"]) ** 2)),
    }


def timed_fits(fn: Any) -> tuple[float, float, int, Any]:
    """Best wall time and best CPU time of up to 3 calls within 5 s, the count, the last result.

    CPU time (``time.process_time``: every thread of this process) is what the wall time
    would be on an idle core for a one-thread fit, and moves little with other processes'
    load on a shared machine; the wall time includes waiting for a core.
    """
    cpu: list[float] = []

    def call() -> Any:
        start = time.process_time()
        out = fn()
        cpu.append(time.process_time() - start)
        return out

    fit_s, times, result = _common.time_call(call, max_repeats=3, budget_s=5.0)
    return fit_s, min(cpu), len(times), result


def measure_ratiokit(
    data: str, method: str, threads: int, kind: str | None, seed: int
) -> dict[str, Any]:
    """Fit a registered ratiokit method on the saved samples; score it (child process)."""
    import torch

    torch.set_num_threads(threads)
    cls = method_class(method)
    arrays = np.load(data)
    x_p, x_q = torch.from_numpy(arrays["x_p"]), torch.from_numpy(arrays["x_q"])
    _common.mark_baseline()
    fit_s, fit_cpu_s, fits, est = timed_fits(lambda: cls().fit_critic(x_p, x_q, rng=seed))
    relative = method == "rulsif"
    with torch.no_grad():
        if relative:
            log_p, log_q = (
                np.log(np.maximum(est.relative_ratio(arrays[k]), TINY)) for k in ("e_p", "e_q")
            )
        else:
            log_p, log_q = est.log_ratio(arrays["e_p"]), est.log_ratio(arrays["e_q"])
        estimate = float(est.estimate_divergence(kind, x_p, x_q)) if kind else None
    return {
        **_scores(log_p, log_q, arrays, "log r_alpha" if relative else "log r"),
        "fit_s": fit_s,
        "fit_cpu_s": fit_cpu_s,
        "fits_timed": fits,
        "estimate": estimate,
        "bandwidth": _number(getattr(est, "bandwidth_", None)),
        "lambda": _number(getattr(est, "lambda_", None)),
        "bandwidth_grid": np.asarray(getattr(est, "bandwidth_grid_", [])).tolist(),
        "centre_rows": _centre_rows(getattr(est, "centres_", None), arrays["x_p"]),
        "lambdas": list(getattr(est, "lambdas", [])),
    }


def measure_densratio(
    data: str,
    method: str,
    threads: int,
    sigma_range: list[float],
    lambda_range: list[float],
    centre_rows: list[int],
    kind: str | None,
    seed: int,
) -> dict[str, Any]:
    """Fit densratio's method on the saved samples; score it (child, peer environment).

    ``threads`` is applied by the parent through ``OPENBLAS_NUM_THREADS`` (BLAS reads it at
    import); it is an argument so that the call records it.
    """
    import importlib

    from densratio import densratio

    if centre_rows:  # ratiokit's centres: densratio draws them with numpy.random.choice
        rows = np.asarray(centre_rows)

        def same_centres(n: int, size: int, replace: bool = True) -> np.ndarray:
            return rows[:size]

        for module in ("densratio.RuLSIF", "densratio.KLIEP"):
            importlib.import_module(module).choice = same_centres
    arrays = np.load(data)
    x_p, x_q = arrays["x_p"], arrays["x_q"]
    kwargs: dict[str, Any] = {
        "method": method,
        "alpha": ALPHA if method == "RuLSIF" else 0.0,
        "kernel_num": N_CENTRES,
        "sigma_range": np.asarray(sigma_range),
        "verbose": False,
    }
    if method != "KLIEP":
        kwargs["lambda_range"] = np.asarray(lambda_range)
    np.random.seed(seed)  # densratio draws its centres (and KLIEP folds) from NumPy's global RNG
    _common.mark_baseline()
    fit_s, fit_cpu_s, fits, res = timed_fits(lambda: densratio(x_p, x_q, **kwargs))

    def log_values(x: np.ndarray) -> np.ndarray:
        return np.log(np.maximum(res.compute_density_ratio(x), TINY))

    log_p, log_q = log_values(arrays["e_p"]), log_values(arrays["e_q"])
    if kind is None:  # no finite reference value for this problem
        estimate = None
    elif method == "uLSIF":
        estimate = 2.0 * float(res.alpha_PE)  # chi^2 = 2 PE
    elif method == "RuLSIF":
        estimate = float(res.alpha_PE)
    else:  # KLIEP's estimate of KL: the mean log ratio on the P sample
        estimate = float(np.mean(log_values(x_p)))
    return {
        **_scores(log_p, log_q, arrays, "log r_alpha" if method == "RuLSIF" else "log r"),
        "fit_s": fit_s,
        "fit_cpu_s": fit_cpu_s,
        "fits_timed": fits,
        "estimate": estimate,
        "bandwidth": float(res.kernel_info.sigma),
        "lambda": None if res.lambda_ is None else float(res.lambda_),
    }


@contextlib.contextmanager
def _python(executable: Path) -> Iterator[None]:
    """Run :func:`_common.run_isolated` children with another Python (the peer venv's)."""
    saved = sys.executable
    sys.executable = str(executable)
    try:
        yield
    finally:
        sys.executable = saved


# --------------------------------------------------------------------------------------
# exact answers (parent)


LOG2 = math.log(2.0)
#: Integrands of ``integral F(log p(x), log q(x)) dx`` for divergences without a closed form;
#: each value is the integral plus the offset in :data:`OFFSETS`. JS is in nats (at most
#: log 2), PE_alpha = (E_p[r_alpha] - 1) / 2 with alpha = :data:`ALPHA`.
INTEGRANDS = {
    "kl": lambda lp, lq: math.exp(lp) * (lp - lq),
    "rkl": lambda lp, lq: math.exp(lq) * (lq - lp),
    "pearson": lambda lp, lq: math.exp(2.0 * lp - lq),
    "hellinger": lambda lp, lq: -math.exp(0.5 * (lp + lq)),
    "js": lambda lp, lq: (
        0.5
        * (
            math.exp(lp) * (lp - np.logaddexp(lp, lq) + LOG2)
            + math.exp(lq) * (lq - np.logaddexp(lp, lq) + LOG2)
        )
    ),
    "pe": lambda lp, lq: (
        0.5 * math.exp(2.0 * lp - np.logaddexp(math.log(ALPHA) + lp, math.log1p(-ALPHA) + lq))
    ),
}
OFFSETS = {"pearson": -1.0, "hellinger": 1.0, "pe": -0.5}


def quadrature_divergence(pair: Any, kind: str) -> float | None:
    """``kind`` by 1-D adaptive quadrature of the exact densities; None beyond one dimension.

    A Gaussian mean shift in d dimensions has the same ratio distribution as in one (the log
    ratio depends on x only through its projection on the shift), so it reduces to d = 1.
    ``"pe"`` is RuLSIF's PE_alpha(P||Q) = (E_p[r_alpha] - 1) / 2, alpha = :data:`ALPHA`.
    """
    from scipy import integrate

    from ratiokit.synthetic import GaussianShift

    if isinstance(pair, GaussianShift):
        pair = GaussianShift(dim=1, shift=pair.shift)
    if pair.dim != 1:
        return None
    term = INTEGRANDS[kind]

    def integrand(x: float) -> float:
        return term(float(pair.log_p([[x]])[0]), float(pair.log_q([[x]])[0]))

    value = integrate.quad(integrand, -np.inf, np.inf, epsabs=1e-12, limit=200)[0]
    return value + OFFSETS.get(kind, 0.0)


#: A divergence kind -> the synthetic pair's closed form.
CLOSED_FORMS = {"kl": "kl_pq", "rkl": "kl_qp", "pearson": "pearson", "hellinger": "hellinger2"}


def exact_value(pair: Any, kind: str) -> float | None:
    """The closed form of ``kind`` where the pair has one, else 1-D quadrature, else None."""
    if kind in CLOSED_FORMS:
        try:
            return float(getattr(pair, CLOSED_FORMS[kind])())
        except NotImplementedError:
            pass
    return quadrature_divergence(pair, kind) if kind in INTEGRANDS else None


def exact_divergence(pair: Any, method: str, kinds: tuple[str, ...]) -> tuple[str | None, Any]:
    """(kind, exact value) of the method's first own kind with a finite reference, else Nones.

    uLSIF is scored on chi^2 = 2 PE, RuLSIF on PE_alpha and KLIEP on KL(P||Q); the other
    methods on the first of their own kinds (``Discrepancy.kinds``) with a finite value.
    """
    preferred = {"ulsif": ("pearson",), "rulsif": ("pe",), "kliep": ("kl",)}.get(method, kinds)
    for kind in preferred:
        value = exact_value(pair, kind)
        if value is not None and math.isfinite(value):
            return kind, value
    return None, None


def other_ratio_methods(exclude: Any) -> tuple[list[str], list[str]]:
    """Registered methods with a ``log_ratio`` usable at new points, and the ones skipped.

    Read from the classes' ``ratio_anywhere`` (a probe fit of every method took about two
    minutes of a run on the busy machine, most of it training the neural critics).
    """
    from ratiokit.methods import METHODS

    usable, skipped = [], []
    for name in sorted(METHODS):
        cls = METHODS[name]
        if name in exclude or not cls.has_log_ratio:
            continue
        if cls.ratio_anywhere:
            usable.append(name)
        else:
            skipped.append(f"`{name}` (its ratio exists only at its fitted sample)")
    return usable, skipped


# --------------------------------------------------------------------------------------
# the run


def make_data(label: str, n: int, seed: int, path: Path) -> tuple[Any, dict[str, float]]:
    """Save training and evaluation samples with exact (relative) log ratios to ``path``."""
    from ratiokit.synthetic import make_problem

    name, params = PROBLEMS[label]
    pair = make_problem(name, **params)
    seeds = np.random.SeedSequence([seed, n, list(PROBLEMS).index(label)]).spawn(4)
    x_p, x_q = pair.sample_p(n, rng=seeds[0]), pair.sample_q(n, rng=seeds[1])
    e_p, e_q = pair.sample_p(N_EVAL, rng=seeds[2]), pair.sample_q(N_EVAL, rng=seeds[3])
    lr_p, lr_q = pair.log_ratio(e_p), pair.log_ratio(e_q)

    def relative(lr: np.ndarray) -> np.ndarray:
        return lr - np.logaddexp(math.log(ALPHA) + lr, math.log1p(-ALPHA))

    np.savez(
        path, x_p=x_p, x_q=x_q, e_p=e_p, e_q=e_q, lr_p=lr_p, lr_q=lr_q,
        lra_p=relative(lr_p), lra_q=relative(lr_q),
    )  # fmt: skip
    zero = {
        "log r": float((np.mean(lr_p**2) + np.mean(lr_q**2)) / 2),
        "log r_alpha": float((np.mean(relative(lr_p) ** 2) + np.mean(relative(lr_q) ** 2)) / 2),
    }
    return pair, zero


def run_cell(
    label: str,
    n: int,
    methods: list[str],
    args: argparse.Namespace,
    peer_python: Path | None,
    workdir: Path,
) -> list[dict[str, Any]]:
    """All methods on one (problem, n): ratiokit first (its grids are densratio's)."""
    path = workdir / f"{label}_{n}.npz"
    pair, zero = make_data(label, n, args.seed, path)
    env = {var: str(args.threads) for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    rows, grids = [], {}
    for method in methods:
        kind, exact = exact_divergence(pair, method, method_class(method)().kinds)
        target = "log r_alpha" if method == "rulsif" else "log r"
        base = {"problem": label, "d": pair.dim, "n": n, "method": method, "target": target}
        base |= {"zero_mse": zero[target], "divergence": kind, "exact": exact}
        kwargs = {"data": str(path), "method": method, "threads": args.threads}
        kwargs |= {"kind": kind, "seed": args.seed}
        result = _common.run_isolated(
            "benchmarks.ratio_accuracy:measure_ratiokit", kwargs, timeout=args.timeout, env=env
        )
        grids[method] = tuple(
            result.pop(k, []) for k in ("bandwidth_grid", "lambdas", "centre_rows")
        )
        rows.append(_finish({**base, "library": "ratiokit", **result}))
        _report(rows[-1])
        peer = PEER_METHODS.get(method)
        if peer is None or args.no_peer or n > args.peer_max_n:
            continue
        peer_row = {**base, "method": method, "library": "densratio"}
        if peer_python is None:
            rows.append({**peer_row, "status": f"not installed ({PEER_INSTALL})"})
            continue
        sigma_range, lambda_range, centre_rows = grids[method]
        if not sigma_range:
            rows.append({**peer_row, "status": "skipped: the ratiokit fit failed (no grid)"})
            continue
        kwargs = {"data": str(path), "method": peer, "threads": args.threads}
        kwargs |= {"sigma_range": sigma_range, "lambda_range": lambda_range}
        kwargs |= {"centre_rows": centre_rows, "kind": kind, "seed": args.seed}
        with _python(peer_python):
            result = _common.run_isolated(
                "benchmarks.ratio_accuracy:measure_densratio",
                kwargs,
                timeout=args.timeout,
                env=env,
            )
        rows.append(_finish({**peer_row, **result}))
        _report(rows[-1])
    path.unlink()
    return rows


def _finish(row: dict[str, Any]) -> dict[str, Any]:
    if row.get("status") == "ok":
        row["mse"] = (row["mse_p"] + row["mse_q"]) / 2
        if row.get("estimate") is not None and row.get("exact") is not None:
            row["abs_error"] = abs(row["estimate"] - row["exact"])
    return row


def _report(row: dict[str, Any]) -> None:
    if row.get("status") != "ok":
        print(f"  {row['library']:>9} {row['method']:<10} {row.get('status')}", flush=True)
        return
    err = row.get("abs_error")
    div = f", |{row['divergence']} error| {err:.3g}" if err is not None else ""
    print(
        f"  {row['library']:>9} {row['method']:<10} fit {row['fit_s']:8.3f} s "
        f"(CPU {row['fit_cpu_s']:8.3f} s), "
        f"MSE P {row['mse_p']:.4g} Q {row['mse_q']:.4g}{div}",
        flush=True,
    )


# --------------------------------------------------------------------------------------
# tables and plot


def _label(row: dict[str, Any]) -> str:
    name = PEER_METHODS[row["method"]] if row["library"] == "densratio" else row["method"]
    return f"{row['library']} {name}"


def results_table(rows: list[dict[str, Any]]) -> str:
    cols = ["problem", "n", "label", "target", "mse_p", "mse_q", "zero_mse", "divergence"]
    cols += ["estimate", "exact", "abs_error", "fit_s", "fit_cpu_s", "bandwidth", "lambda"]
    cols += ["status"]
    headers = {
        "label": "method",
        "mse_p": "MSE at P points",
        "mse_q": "MSE at Q points",
        "zero_mse": "zero predictor",
        "abs_error": "abs. error",
        "fit_s": "fit (s)",
        "fit_cpu_s": "fit CPU (s)",
        "bandwidth": "sigma",
        "lambda": "lambda",
    }
    shown = [{**r, "label": _label(r), "n": f"{r['n']:,}"} for r in rows]
    return _common.markdown_table(shown, cols, headers=headers)


#: Relative MSE difference below which two fits count as equal (the same kernel model,
#: solved by two libraries, agrees to rounding).
EQUAL_RTOL = 1e-6


def acceptance(rows: list[dict[str, Any]]) -> tuple[str, dict[str, bool] | None]:
    """Speedup and MSE at n = ACCEPT_N for uLSIF and RuLSIF: a table, a summary, the verdicts.

    Four verdicts: ``"speed_cpu"`` and ``"speed_wall"`` (every cell at least ACCEPT_SPEEDUP
    times faster in CPU time, in wall time), ``"per_cell"`` (in every cell ratiokit's MSE is
    at most densratio's, up to :data:`EQUAL_RTOL`) and ``"geomean"`` (for each method, the
    geometric mean over problems of ratiokit MSE / densratio MSE is at most 1).
    """
    table, summary = [], []
    for method in ("ulsif", "rulsif"):
        ratios = []
        for label in PROBLEMS:
            pair = {
                r["library"]: r
                for r in rows
                if r["problem"] == label and r["n"] == ACCEPT_N and r["method"] == method
            }
            ours, peer = pair.get("ratiokit"), pair.get("densratio")
            if not (ours and peer and ours.get("status") == "ok" and peer.get("status") == "ok"):
                continue
            ratios.append(ours["mse"] / peer["mse"])
            same = math.isclose(ours["bandwidth"], peer["bandwidth"], rel_tol=1e-9) and (
                math.isclose(ours["lambda"], peer["lambda"], rel_tol=1e-9)
            )
            table.append(
                {
                    "problem": label,
                    "method": method,
                    "ratiokit_s": ours["fit_s"],
                    "densratio_s": peer["fit_s"],
                    "speedup": peer["fit_s"] / ours["fit_s"],
                    "ratiokit_cpu_s": ours["fit_cpu_s"],
                    "densratio_cpu_s": peer["fit_cpu_s"],
                    "speedup_cpu": peer["fit_cpu_s"] / ours["fit_cpu_s"],
                    "ratiokit_mse": ours["mse"],
                    "densratio_mse": peer["mse"],
                    "mse_ratio": ratios[-1],
                    "same_cell": "yes" if same else "no",
                }
            )
        if ratios:
            summary.append((method, math.exp(np.mean(np.log(ratios))), len(ratios)))
    if not table:
        return f"No cell at n = {ACCEPT_N:,} with both libraries ran.", None
    headers = {
        "ratiokit_s": "ratiokit wall (s)",
        "densratio_s": "densratio wall (s)",
        "speedup": "speedup, wall (x)",
        "ratiokit_cpu_s": "ratiokit CPU (s)",
        "densratio_cpu_s": "densratio CPU (s)",
        "speedup_cpu": "speedup, CPU (x)",
        "ratiokit_mse": "ratiokit MSE",
        "densratio_mse": "densratio MSE",
        "mse_ratio": "MSE ratio (ratiokit / densratio)",
        "same_cell": "same (sigma, lambda)",
    }
    md = _common.markdown_table(table, list(table[0]), headers=headers)
    speedups = [r["speedup"] for r in table]
    cpu_speedups = [r["speedup_cpu"] for r in table]
    fast = sum(s >= ACCEPT_SPEEDUP for s in speedups)
    fast_cpu = sum(s >= ACCEPT_SPEEDUP for s in cpu_speedups)
    as_good = sum(r["mse_ratio"] <= 1.0 + EQUAL_RTOL for r in table)
    same = sum(r["same_cell"] == "yes" for r in table)
    md += (
        f"\n\nSpeedup in CPU time: {min(cpu_speedups):.0f}x to {max(cpu_speedups):.0f}x "
        f"({fast_cpu} of {len(table)} cells at {ACCEPT_SPEEDUP:g}x or more); in wall time: "
        f"{min(speedups):.0f}x to {max(speedups):.0f}x ({fast} of {len(table)}). "
        f"MSE equal or better in {as_good} of {len(table)} cells ({same} select the same "
        "(sigma, lambda) as densratio). "
    )
    md += " ".join(
        f"{method}: geometric-mean MSE ratio {ratio:.3f} over {count} problems."
        for method, ratio, count in summary
    )
    verdicts = {
        "speed_cpu": fast_cpu == len(table),
        "speed_wall": fast == len(table),
        "per_cell": as_good == len(table),
        "geomean": all(ratio <= 1.0 + EQUAL_RTOL for _, ratio, _ in summary),
    }
    return md, verdicts


def verdict_text(verdicts: dict[str, bool] | None) -> str:
    """The acceptance verdict in words: met only when fast and as accurate in every cell."""
    if verdicts is None:
        return "Not evaluated in this run."

    def word(ok: bool) -> str:
        return "met" if ok else "**not met**"

    speed, wall = word(verdicts["speed_cpu"]), word(verdicts["speed_wall"])
    per_cell, geomean = word(verdicts["per_cell"]), word(verdicts["geomean"])
    overall = "**Met**" if verdicts["speed_cpu"] and verdicts["per_cell"] else "**Not met**"
    return (
        f"{overall}. Speed (every cell at n = {ACCEPT_N:,} at least {ACCEPT_SPEEDUP:g}x "
        f"faster) in CPU time: {speed}; in wall time on the shared machine: {wall}. "
        "Accuracy in every cell (ratiokit MSE at most densratio's): "
        f"{per_cell}. Accuracy on aggregate (geometric-mean MSE ratio at most 1 per method): "
        f"{geomean}."
    )


#: One colour per method in the plot (a library's two lines differ in style, not colour).
COLORS = {
    "ulsif": "C0",
    "rulsif": "C1",
    "kliep": "C2",
    "bregman": "C4",
    "classifier": "C7",
    "fdiv": "C8",
    "moments": "C9",
}


def _cpu(row: dict[str, Any]) -> float:
    """A row's CPU seconds per fit (its wall seconds in CSVs from before CPU time was kept)."""
    return row.get("fit_cpu_s") or row["fit_s"]


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.get("status") == "ok"]
    labels = sorted({_label(r) for r in ok})
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(13, 5))
    spare = iter(["C3", "C5", "C6"])
    for label in labels:
        mine = [r for r in ok if _label(r) == label]
        ns = sorted({r["n"] for r in mine})
        # Geometric means over the problems that ran at every n of this method.
        common_problems = set.intersection(
            *({r["problem"] for r in mine if r["n"] == n} for n in ns)
        )
        pick = [[r for r in mine if r["n"] == n and r["problem"] in common_problems] for n in ns]
        if not common_problems:
            continue
        # CPU time: the clock that does not depend on the shared machine's load.
        times = [math.exp(np.mean([math.log(_cpu(r)) for r in p])) for p in pick]
        mses = [math.exp(np.mean([math.log(max(r["mse"], 1e-12)) for r in p])) for p in pick]
        method = mine[0]["method"]
        style = {
            "color": COLORS.get(method) or next(spare, "k"),
            "linestyle": "--" if mine[0]["library"] == "densratio" else "-",
            "marker": "s" if mine[0]["library"] == "densratio" else "o",
        }
        ax_t.plot(ns, times, label=label, **style)
        ax_m.plot(ns, mses, label=label, **style)
    for ax, ylabel, title in (
        (ax_t, "CPU seconds per fit (model selection included)", "Fit CPU time"),
        (ax_m, "log-ratio MSE, (P + Q) / 2 (RuLSIF: of log r_alpha)", "Accuracy"),
    ):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("n = m")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title} (geometric mean over problems)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Density-ratio estimators: ratiokit (solid) vs densratio (dashed)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def read_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``ratio_accuracy.csv`` with numbers parsed (for ``--plot-only``)."""
    rows = []
    with open(path, newline="") as handle:
        for raw in csv.DictReader(handle):
            row: dict[str, Any] = {}
            for key, value in raw.items():
                if key in ("n", "d", "fits_timed"):
                    row[key] = int(value) if value else None
                elif key in ("problem", "method", "library", "target", "divergence", "status"):
                    row[key] = value or None
                else:
                    row[key] = float(value) if value else None
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ratio_accuracy", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="n = 500, one problem, " + ", ".join(QUICK_METHODS)
    )
    parser.add_argument("--sizes", type=int, nargs="+", help="values of n = m")
    parser.add_argument("--problems", nargs="+", choices=list(PROBLEMS))
    parser.add_argument("--methods", nargs="+", help="ratiokit methods (default: all ratio ones)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per fit (both)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peer-venv", type=Path, default=PEER_VENV)
    parser.add_argument("--no-peer", action="store_true", help="skip densratio")
    parser.add_argument("--peer-max-n", type=int, default=max(SIZES), help="largest n for it")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, help="per fit, s")
    parser.add_argument("--out", type=Path, default=_common.RESULTS_DIR)
    parser.add_argument("--plot-only", action="store_true", help="redraw the PNG from the CSV")
    parser.add_argument(
        "--resume", action="store_true", help=f"keep the cells already in {PARTIAL} in --out"
    )
    args = parser.parse_args(argv)
    if args.plot_only:
        plot(read_csv(args.out / "ratio_accuracy.csv"), args.out / "ratio_accuracy.png")
        return 0

    start = time.perf_counter()
    info = _common.machine_info()
    sizes = args.sizes or list(QUICK_SIZES if args.quick else SIZES)
    problems = args.problems or list(QUICK_PROBLEMS if args.quick else PROBLEMS)
    others, skipped = other_ratio_methods(OURS)
    methods = args.methods or (list(QUICK_METHODS) if args.quick else [*OURS, *others])
    peer_python = args.peer_venv / "bin" / "python"
    if not peer_python.exists():
        print(f"densratio: not installed; create it with: {PEER_INSTALL}", flush=True)
        peer_python = None
    partial = args.out / PARTIAL
    rows: list[dict[str, Any]] = read_csv(partial) if args.resume and partial.exists() else []
    resumed = len(rows)
    done = {(r["problem"], r["n"]) for r in rows}
    with tempfile.TemporaryDirectory(prefix="ratio_accuracy_") as tmp:
        # Largest n first: the acceptance cells (n = ACCEPT_N) come in before the rest.
        for n, label in itertools.product(sorted(sizes, reverse=True), problems):
            if (label, n) in done:
                print(f"{label}, n = {n:,}: kept from {partial}", flush=True)
                continue
            print(f"{label}, n = {n:,}", flush=True)
            load = os.getloadavg()[0]
            cell = run_cell(label, n, methods, args, peer_python, Path(tmp))
            rows += [{**row, "load_1min": load} for row in cell]
            _common.write_csv(partial, rows, CSV_COLUMNS)  # progress survives a crash
    total = time.perf_counter() - start
    order = {label: i for i, label in enumerate(PROBLEMS)}
    rows.sort(key=lambda r: (order[r["problem"]], r["n"]))  # stable: methods stay in run order
    info["load average at the end"] = _common.machine_info()["load average (1, 5, 15 min)"]

    accept_md, verdicts = acceptance(rows)
    verdict_line = verdict_text(verdicts)
    skipped_md = ", ".join(skipped) if skipped else "none"
    extra_md = ", ".join(m for m in methods if m not in OURS) or "none"
    resumed_note = (
        f" (resumed: {resumed} rows kept from an earlier, interrupted run of the same command)"
        if resumed
        else ""
    )
    cmd = "python -m benchmarks.ratio_accuracy " + " ".join(argv or sys.argv[1:])
    md = f"""# Density-ratio accuracy and fit time: ratiokit vs densratio

Generated by `{cmd.strip()}` in {total / 60:.1f} minutes{resumed_note}.

{_common.machine_header(info)}

**Setup.** For each problem and n = m, every method fits on n points from P and n from Q
(seed {args.seed}) and is scored on {N_EVAL} fresh points from P and {N_EVAL} from Q. *MSE at
P / Q points* is the mean squared error of the estimated log ratio against the exact one
(`ratiokit.synthetic`); RuLSIF is scored on its own target, the relative ratio
`log r_alpha` with alpha = {ALPHA}, which densratio's RuLSIF returns too. *zero predictor*
is the MSE of log r = 0, (P + Q) / 2, for scale. Estimates are floored at the smallest
positive float before the log (a clipped kernel model can be exactly 0). The divergence
column compares each method's own estimate with the exact value where one is finite:
chi^2 = 2 PE for uLSIF, PE_alpha for RuLSIF, KL(P||Q) for KLIEP, and the first own kind of
the others (KL for fdiv, bregman and moments, JS for the classifier), from the pair's closed
form (`ratiokit.synthetic`) or else 1-D adaptive quadrature of the exact densities (the
mean shifts reduce to 1-D; other multivariate cells have no reference). Problems: Gaussian
mean shift of norm 1 in d = 1, 5, 20; `ScaleChange` (P = N(0, 2^2), Q = N(0, 1): chi^2 is
infinite); the default `GaussianMixture`
(P = N(-2, 1)/2 + N(2, 1)/2, Q = N(0, 2^2)); `StudentTGaussian` (t with 3 degrees of
freedom against N(0, 1): chi^2 infinite).

Both libraries search the same 9 bandwidths (ratiokit's default: 2^(-3 .. 2) times the median
pooled pairwise distance, passed to densratio as `sigma_range`) and the same 9 ridges
(`lambda_range`, 10^(-3 .. 1)) with the same {N_CENTRES} Gaussian kernel centres, drawn from
the P sample by ratiokit and handed to densratio (whose one `numpy.random.choice` call for
them is replaced in its subprocess). uLSIF and RuLSIF select by leave-one-out: ratiokit in
closed form for all ridges of a bandwidth at once (exact for RuLSIF too, and without scoring
a held-out point by its own centre's kernel); densratio by Kanamori et al.'s formula (for
RuLSIF, the alpha = 0 update), with dense n x n intermediates. KLIEP selects the
bandwidth by 5-fold likelihood cross-validation (ratiokit: a Newton interior-point solver;
densratio: projected gradient ascent, moving to a 10x smaller step at the first step that
does not improve).
*fit (s)* is the best wall time of up to 3 fits within 5 s (one fit when a fit takes longer),
model selection included, each library in its own subprocess with {args.threads} CPU
thread(s) (torch intra-op threads and `OMP_NUM_THREADS` / `OPENBLAS_NUM_THREADS`); *fit CPU
(s)* is the best CPU time of the same fits (`time.process_time`, all threads of the
process). Other engineers' processes shared the 2 cores during the run (the load averages
above, and the 1-minute load before each cell in the CSV's `load_1min`), so a wall time
includes waiting for a core and depends on when it ran: a fit of a minute or more averages
the load over its run, a short fit may catch a quiet or a busy second. The CPU time of a
one-thread fit is what its wall time would be on an idle core, and is the fairer clock for
comparing the two libraries here; both are shown.

Other registered ratio methods run: {extra_md}; skipped (no ratio at new
points): {skipped_md}.

## Acceptance: uLSIF and RuLSIF at n = {ACCEPT_N:,}

Target: at least {ACCEPT_SPEEDUP:g}x faster than densratio at equal or better log-ratio MSE.
Checked per cell (problem x method): at least {ACCEPT_SPEEDUP:g}x faster, and ratiokit's MSE
((P + Q) / 2) at most densratio's (equal within a relative {EQUAL_RTOL:g}: where both select
the same (sigma, lambda) they fit the same model). The geometric mean over the problems of
(ratiokit MSE / densratio MSE) is shown too: one cell's ratio moves with the selected ridge,
a noisy choice for both libraries.

{accept_md}

{verdict_line}

## Results

{results_table(rows)}

Total runtime: {total:.0f} s ({total / 60:.1f} min).
"""
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ratio_accuracy.md").write_text(md)
    partial.unlink(missing_ok=True)
    _common.write_csv(args.out / "ratio_accuracy.csv", rows, CSV_COLUMNS)
    plot(rows, args.out / "ratio_accuracy.png")
    print()
    print(accept_md)
    print(verdict_line)
    print(f"\nTotal runtime: {total:.0f} s. Wrote {args.out}/ratio_accuracy.{{md,csv,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
