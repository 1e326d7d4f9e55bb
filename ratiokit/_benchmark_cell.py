"""One cell of :func:`ratiokit.benchmark`: fit, score and test one method on one sample.

A cell is a picklable task (:class:`Cell`) and :func:`run_cell` a module-level function, so
executors in other processes run them. Every random stream of a cell is a child of the seed
sequences it carries, spawned from fresh copies, so a cell run twice (a retry) or anywhere
gives the same values.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch

from ratiokit._rng import check_rng
from ratiokit._validation import as_sample_pair
from ratiokit.methods import METHODS, Discrepancy, get_method
from ratiokit.ratio import divergence
from ratiokit.synthetic import SyntheticPair
from ratiokit.two_sample import two_sample_test

__all__ = ["Cell", "method_class", "run_cell"]

#: Streams of a cell's data: the two samples, a second sample of P (the null) and test points.
_SEED_NAMES = ("x_p", "x_q", "x_null", "test_p", "test_q")
#: Errors of a method inside a cell: recorded in the row's note, not raised.
_METHOD_ERRORS = (ArithmeticError, RuntimeError, ValueError)


@dataclass(frozen=True)
class Cell:
    """One task of the grid: everything a worker needs, picklable."""

    method: str | Discrepancy
    method_label: str
    problem: SyntheticPair
    problem_label: str
    n: int
    seed: int
    columns: tuple[str, ...]
    exact: tuple[tuple[str, float], ...]  # (kind, exact value) per divergence column to fill
    notes: tuple[str, ...]  # why a column is NaN, known before running
    data_seed: np.random.SeedSequence  # shared by the methods of one (problem, n, seed)
    own_seed: np.random.SeedSequence
    alpha: float
    n_permutations: int
    n_test: int
    device: str | None


def method_class(spec: str | Discrepancy) -> type[Discrepancy]:
    """The class of a method given by a registered name or an instance."""
    return type(spec) if isinstance(spec, Discrepancy) else METHODS[spec]


def _fresh(spec: str | Discrepancy) -> Discrepancy:
    """A new instance for a name, or a copy of an instance (never the caller's object)."""
    return get_method(spec)


def _copy(seed: np.random.SeedSequence) -> np.random.SeedSequence:
    """A fresh copy: spawning from it never changes the task's own (a retry sees the same)."""
    return np.random.SeedSequence(seed.entropy, spawn_key=seed.spawn_key, pool_size=seed.pool_size)


def run_cell(cell: Cell) -> tuple[tuple[float, ...], str]:
    """Fill one cell: its metric values in ``cell.columns`` order, and its note.

    A module-level function, so executors in other processes can run it. An error of the
    method in one metric (a failed solve, a NaN loss) leaves that metric NaN, with the error
    in the note; the other metrics are still computed.
    """
    pair, n = cell.problem, cell.n
    data = dict(zip(_SEED_NAMES, _copy(cell.data_seed).spawn(len(_SEED_NAMES)), strict=True))
    fit_seed, power_seed, null_seed, *kind_seeds = _copy(cell.own_seed).spawn(3 + len(cell.exact))
    x_p, x_q = pair.sample_p(n, rng=data["x_p"]), pair.sample_q(n, rng=data["x_q"])
    values = dict.fromkeys(cell.columns, math.nan)
    notes = list(cell.notes)

    def attempt(column: str, compute: Callable[[], float]) -> None:
        try:
            values[column] = float(compute())
        except _METHOD_ERRORS as err:
            notes.append(f"{column}: failed: {type(err).__name__}: {err}")

    cls = method_class(cell.method)
    score_ratio = "log_ratio_mse" in values and cls.has_log_ratio and cls.ratio_anywhere
    if "time" in values or score_ratio:
        try:
            seconds, fitted = _fit(cell, x_p, x_q, fit_seed)
        except _METHOD_ERRORS as err:
            failed = [c for c in ("time", "log_ratio_mse") if c in values]
            notes += [f"{c}: failed: {type(err).__name__}: {err}" for c in failed]
            score_ratio = False
        else:
            values["time"] = seconds
    if score_ratio:
        p_test = pair.sample_p(cell.n_test, rng=data["test_p"])
        q_test = pair.sample_q(cell.n_test, rng=data["test_q"])
        test = np.vstack([p_test, q_test])
        attempt("log_ratio_mse", partial(_log_ratio_mse, fitted, pair, test, cell.device))
    for (kind, truth), seed in zip(cell.exact, kind_seeds, strict=True):
        attempt(
            f"divergence_error[{kind}]",
            partial(_divergence_error, cell, x_p, x_q, kind, truth, seed),
        )
    if "power" in values:
        attempt("power", partial(_rejects, cell, x_p, x_q, power_seed))
    if "type_i_error" in values:
        x_null = pair.sample_p(n, rng=data["x_null"])
        attempt("type_i_error", partial(_rejects, cell, x_p, x_null, null_seed))
    return tuple(values[c] for c in cell.columns), "; ".join(notes)


def _fit(
    cell: Cell, x_p: np.ndarray, x_q: np.ndarray, seed: np.random.SeedSequence
) -> tuple[float, Discrepancy]:
    """Fit the method on the two samples and evaluate it once: (seconds, fitted method)."""
    method = _fresh(cell.method)
    a, b = as_sample_pair(x_p, x_q, min_samples=method.min_samples, device=cell.device)
    method = method.to(a.device)
    start = time.perf_counter()
    method.fit_critic(a, b, rng=check_rng(seed))
    with torch.no_grad():
        method(a, b)
    return time.perf_counter() - start, method


def _divergence_error(
    cell: Cell, x_p: np.ndarray, x_q: np.ndarray, kind: str, truth: float, seed: Any
) -> float:
    estimate = divergence(x_p, x_q, kind=kind, method=cell.method, rng=seed, device=cell.device)
    return abs(estimate.value - truth)


def _log_ratio_mse(
    method: Discrepancy, pair: SyntheticPair, x: np.ndarray, device: str | None
) -> float:
    """Mean squared error of the fitted log ratio at the rows of ``x``, against the exact one.

    ``x`` goes where the method was fitted (``device``; the CPU by default).
    """
    with torch.no_grad():
        estimate = method.log_ratio(torch.as_tensor(x, device=device)).double().cpu().numpy()
    return float(np.mean((estimate - pair.log_ratio(x)) ** 2))


def _rejects(cell: Cell, x: np.ndarray, y: np.ndarray, seed: Any) -> float:
    res = two_sample_test(
        x,
        y,
        method=cell.method,
        n_permutations=cell.n_permutations,
        rng=seed,
        device=cell.device,
        progress=False,
    )
    return float(res.pvalue <= cell.alpha)
