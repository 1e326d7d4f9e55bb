"""Which method estimates each divergence kind best: the evidence for ``divergence``'s defaults.

For each ``kind`` of :func:`ratiokit.divergence` and each registered method that can estimate
it (its own estimator, or the plug-in of its fitted log ratio), the method is fitted on n
points of P and n of Q and its estimate is compared with the exact divergence, over several
seeds and two synthetic pairs with known answers: a Gaussian mean shift of norm 1 in d = 2
and the default ``GaussianMixture`` (P = N(-2, 1)/2 + N(2, 1)/2, Q = N(0, 2^2)). Exact values
come from the pairs' closed forms or 1-D adaptive quadrature of the exact densities
(:func:`benchmarks.ratio_accuracy.exact_value`; TV and PE = chi^2 / 2 here). A method is
fitted once per configuration and its fit serves every kind it estimates by plug-in.

The table gives, per kind and method, the mean relative error ``|estimate - exact| / exact``
over seeds for each pair, their average, and the mean fit time. The default of each kind in
:data:`ratiokit.ratio.DEFAULT_METHODS` is the method with the smallest average.

Run from the repository root::

    python -m benchmarks.divergence_defaults             # n = 1000, 5 seeds (~15 min, 2 cores)
    python -m benchmarks.divergence_defaults --seeds 2 --n 500

Writes ``benchmarks/results/divergence_defaults.{md,csv}``.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import numpy as np
import torch
from scipy import integrate

from benchmarks._common import machine_header, machine_info
from benchmarks.ratio_accuracy import exact_value
from ratiokit.methods import METHODS, get_method
from ratiokit.ratio import KINDS, _can_estimate, _divergence_value
from ratiokit.synthetic import GaussianMixture, GaussianShift

RESULTS = Path(__file__).resolve().parent / "results"
PAIRS = {
    "gaussian_shift_d2": GaussianShift(dim=2, shift=1.0),
    "gaussian_mixture": GaussianMixture(),
}


def exact(pair: object, kind: str) -> float:
    """The exact divergence ``kind`` of ``pair`` (closed form or 1-D quadrature)."""
    if kind == "pe":
        return 0.5 * exact(pair, "pearson")
    if kind != "tv":
        return float(exact_value(pair, kind))
    if isinstance(pair, GaussianShift):  # reduces to 1-D: TV = 2 Phi(|mu| / 2) - 1
        pair = GaussianShift(dim=1, shift=pair.shift)

    def integrand(x: float) -> float:
        lp, lq = float(pair.log_p([[x]])[0]), float(pair.log_q([[x]])[0])
        return 0.5 * abs(math.exp(lp) - math.exp(lq))

    return integrate.quad(integrand, -np.inf, np.inf, epsabs=1e-12, limit=400)[0]


def measure(n: int, seeds: int) -> list[dict[str, object]]:
    """One row per (pair, seed, method, kind): estimate, exact value, fit time, error."""
    rows = []
    for p_index, (label, pair) in enumerate(PAIRS.items()):
        truth = {kind: exact(pair, kind) for kind in KINDS}
        for seed in range(seeds):
            gen = np.random.default_rng([p_index, seed])
            a = torch.as_tensor(pair.sample_p(n, rng=gen))
            b = torch.as_tensor(pair.sample_q(n, rng=gen))
            for name, cls in METHODS.items():
                fits: dict[str, tuple[object, float, str]] = {}
                for kind in KINDS:
                    if not _can_estimate(cls, kind):
                        continue
                    method = cls.for_divergence(kind)
                    key = repr(method)
                    if key not in fits:
                        start = time.perf_counter()
                        try:
                            fitted = get_method(method).fit_critic(a, b, rng=seed)
                            note = ""
                        except Exception as err:  # noqa: BLE001 - recorded in the table
                            fitted, note = None, f"{type(err).__name__}: {err}"
                        fits[key] = (fitted, time.perf_counter() - start, note)
                    fitted, seconds, note = fits[key]
                    value = math.nan
                    if fitted is not None:
                        try:
                            value = _divergence_value(fitted, kind, a, b)
                        except Exception as err:  # noqa: BLE001
                            note = f"{type(err).__name__}: {err}"
                    rows.append(
                        {
                            "pair": label,
                            "seed": seed,
                            "n": n,
                            "method": name,
                            "kind": kind,
                            "estimate": value,
                            "exact": truth[kind],
                            "fit_s": seconds,
                            "rel_error": abs(value - truth[kind]) / truth[kind],
                            "note": note,
                        }
                    )
                    print(rows[-1], flush=True)
    return rows


def summarise(rows: list[dict[str, object]]) -> tuple[list[list[str]], dict[str, str]]:
    """Per (kind, method): mean relative error per pair, their average, fit time; the best."""
    table, best = [], {}
    for kind in KINDS:
        scores = {}
        for name in METHODS:
            mine = [r for r in rows if r["kind"] == kind and r["method"] == name]
            if not mine:
                continue
            per_pair, variances = [], []
            for label in PAIRS:
                errs = [r["rel_error"] for r in mine if r["pair"] == label]
                per_pair.append(float(np.mean(errs)))  # NaN if any seed failed
                variances.append(float(np.var(errs, ddof=1)) / len(errs))
            se = math.sqrt(sum(variances)) / len(PAIRS)  # of the average over pairs
            bias = [
                float(
                    np.mean([r["estimate"] / r["exact"] - 1 for r in mine if r["pair"] == label])
                )
                for label in PAIRS
            ]
            avg = float(np.mean(per_pair))
            fit_s = float(np.mean([r["fit_s"] for r in mine]))
            scores[name] = avg
            table.append(
                [
                    kind,
                    name,
                    *[f"{e:.3f}" for e in per_pair],
                    *[f"{b:+.3f}" for b in bias],
                    f"{avg:.3f} ± {se:.3f}",
                    f"{fit_s:.2f}",
                ]
            )
        finite = {k: v for k, v in scores.items() if math.isfinite(v)}
        best[kind] = min(finite, key=finite.get)
    return table, best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    rows = measure(args.n, args.seeds)
    minutes = (time.perf_counter() - start) / 60
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "divergence_defaults.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    table, best = summarise(rows)
    pairs = list(PAIRS)
    header = [
        "kind",
        "method",
        *[f"rel. error, {p}" for p in pairs],
        *[f"bias, {p}" for p in pairs],
        "mean rel. error ± se",
        "fit (s)",
    ]
    lines = [
        "# Divergence estimates by kind and method: the defaults of `ratiokit.divergence`",
        "",
        f"Generated by `python -m benchmarks.divergence_defaults --n {args.n} "
        f"--seeds {args.seeds}` in {minutes:.1f} minutes.",
        "",
        machine_header(machine_info()),
        "",
        f"n = m = {args.n} points per sample, seeds 0 to {args.seeds - 1}; relative error "
        "|estimate - exact| / exact and relative bias estimate / exact - 1, means over seeds; "
        "the last error column averages the two pairs (± its standard error over seeds).",
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + " |",
        *["| " + " | ".join(row) + " |" for row in table],
        "",
        "*fit (s)* is the mean wall time of one fit with one torch thread, on a machine that "
        "may be shared (the load average above): a measure of relative cost only.",
        "",
        "Most accurate method per kind (smallest mean relative error): "
        + ", ".join(f"{k}: `{m}`" for k, m in best.items())
        + ".",
        "",
    ]
    (RESULTS / "divergence_defaults.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
