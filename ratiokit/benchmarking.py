"""Benchmark methods on synthetic problems with known answers: :func:`benchmark`.

The module is ``benchmarking``, not ``benchmark``: ``ratiokit`` imports its public names on
first use, and a submodule named like the function would replace ``rk.benchmark`` once imported.

A grid of methods x problems x sample sizes x seeds, each cell scored against the exact log
ratio and divergences of a :mod:`ratiokit.synthetic` pair. Every cell is one task with its own
random streams, spawned from ``rng`` before any task runs, so the table is the same whether the
cells run here or through any :class:`concurrent.futures.Executor` (or a dask ``Client``).
Methods of one (problem, n, seed) see the same samples (common random numbers), so their
differences are not sampling noise of the data.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ratiokit._benchmark_cell import Cell, method_class, run_cell
from ratiokit._rng import RngLike, check_rng
from ratiokit._simulation import check_executor, run_tasks
from ratiokit._validation import check_choice, check_device, check_int
from ratiokit.config import N_PERMUTATIONS
from ratiokit.methods import METHODS, Discrepancy
from ratiokit.results import BenchmarkResult
from ratiokit.synthetic import DIVERGENCES, PROBLEMS, SyntheticPair, make_problem

__all__ = ["KEY_COLUMNS", "METRICS", "benchmark"]

#: Metric names accepted by :func:`benchmark`.
METRICS = ("log_ratio_mse", "divergence_error", "power", "type_i_error", "time")
#: The columns that identify a row, before the metric columns.
KEY_COLUMNS = ("method", "problem", "n", "seed")
#: Smallest n: a learned critic's two-sample test fits on half of each sample, 2 points each.
MIN_SIZE = 4
#: Resubmissions of a cell whose future fails in the executor (a lost worker).
MAX_RETRIES = 2
#: Divergence kinds with an exact value from a pair: its closed forms, and PE = chi^2 / 2.
_EXACT_KINDS = (*DIVERGENCES, "pe")


def _method_label(spec: Any) -> tuple[str, str | Discrepancy]:
    if isinstance(spec, str):
        names = sorted(METHODS)
        return check_choice(spec, "methods", names), spec
    if not isinstance(spec, Discrepancy):
        raise TypeError(
            "`methods` must hold method names or Discrepancy instances; "
            f"got {type(spec).__name__}."
        )
    try:
        default = type(spec)().extra_repr()
    except TypeError:  # no default constructor
        default = None
    settings = spec.extra_repr()
    return (spec.name if settings == default else f"{spec.name}({settings})"), spec


def _problem_label(spec: Any) -> tuple[str, SyntheticPair]:
    if isinstance(spec, str):
        return spec, make_problem(check_choice(spec, "problems", list(PROBLEMS)))
    if not isinstance(spec, SyntheticPair):
        raise TypeError(
            "`problems` must hold problem names or SyntheticPair instances; "
            f"got {type(spec).__name__}."
        )
    default = type(spec)()
    changed = [
        f"{f.name}={np.asarray(getattr(spec, f.name)).tolist()!r}"
        for f in dataclasses.fields(spec)
        if not np.array_equal(getattr(spec, f.name), getattr(default, f.name))
    ]
    return (f"{spec.name}({', '.join(changed)})" if changed else spec.name), spec


def _labelled(items: Any, name: str, resolve: Any) -> dict[str, Any]:
    """``{label: item}`` from a mapping or a sequence (or one item); labels must be distinct.

    ``resolve(item)`` validates an item and returns its default label and stored value.
    """
    if isinstance(items, Mapping):
        out = {}
        for key, item in items.items():
            if not isinstance(key, str):
                raise TypeError(f"`{name}` must have str labels; got {key!r}.")
            out[key] = resolve(item)[1]
    else:
        if isinstance(items, str | Discrepancy | SyntheticPair):
            items = [items]
        if not isinstance(items, Sequence):
            raise TypeError(
                f"`{name}` must be a sequence or a mapping; got {type(items).__name__}."
            )
        out = {}
        for item in items:
            key, value = resolve(item)
            if key in out:
                raise ValueError(
                    f"`{name}` must have distinct labels; got {key!r} twice (pass a mapping "
                    "{label: item} to name them)."
                )
            out[key] = value
    if not out:
        raise ValueError(f"`{name}` must hold at least one entry; got {items!r}.")
    return out


def _exact_divergences(pair: SyntheticPair) -> dict[str, float]:
    """Exact divergences of ``pair`` where it has a closed form (inf where they diverge)."""
    out = {}
    for kind in DIVERGENCES:
        try:
            out[kind] = float(pair.divergence(kind))
        except NotImplementedError:
            continue
    if "pearson" in out:
        out["pe"] = 0.5 * out["pearson"]
    return out


def _plan_columns(
    metrics: Sequence[str],
    methods: Mapping[str, Any],
    problems: Mapping[str, SyntheticPair],
) -> tuple[tuple[str, ...], dict[str, dict[str, float]]]:
    """The metric columns (``divergence_error[kind]`` per kind that some cell can score)."""
    exact = {label: _exact_divergences(pair) for label, pair in problems.items()}
    columns: list[str] = []
    for metric in metrics:
        if metric != "divergence_error":
            columns.append(metric)
            continue
        kinds = {
            kind
            for spec in methods.values()
            for table in exact.values()
            for kind in _own_kinds(spec)
            if math.isfinite(table.get(kind, math.inf))
        }
        found = [f"divergence_error[{k}]" for k in sorted(kinds, key=_EXACT_KINDS.index)]
        columns += found or ["divergence_error"]
    return tuple(columns), exact


def _own_kinds(spec: str | Discrepancy) -> tuple[str, ...]:
    """Divergences the method estimates with an estimator of its own, in the front doors' sense."""
    kinds = spec.kinds if isinstance(spec, Discrepancy) else method_class(spec).divergence_kinds
    return tuple(kinds)


def _not_applicable(
    spec: str | Discrepancy, label: str, problem: str, exact: Mapping[str, float], columns: Any
) -> tuple[tuple[tuple[str, float], ...], tuple[str, ...]]:
    """The divergence columns a cell fills, and why each other column stays NaN."""
    cls = method_class(spec)
    notes = []
    if "log_ratio_mse" in columns and not cls.has_log_ratio:
        notes.append(f"log_ratio_mse: {label} estimates a density difference, not a ratio")
    elif "log_ratio_mse" in columns and not cls.ratio_anywhere:
        notes.append(f"log_ratio_mse: {label}'s ratio exists only at its fitted Q sample")
    div_columns = [c for c in columns if c.startswith("divergence_error")]
    own = _own_kinds(spec)
    fill = tuple(
        (kind, exact[kind])
        for kind in own
        if f"divergence_error[{kind}]" in columns and math.isfinite(exact.get(kind, math.inf))
    )
    if div_columns and not own:
        notes.append(f"divergence_error: {label} has no divergence estimator of its own")
    elif div_columns:
        missing = [k for k in own if k not in exact]
        infinite = [k for k in own if not math.isfinite(exact.get(k, 0.0))]
        if missing:
            notes.append(
                f"divergence_error: {problem} has no closed form for {', '.join(missing)}"
            )
        if infinite:
            notes.append(f"divergence_error: the true {', '.join(infinite)} is infinite")
        others = [c[len("divergence_error[") : -1] for c in div_columns]
        others = [k for k in others if k not in dict(fill)]
        if fill and others:
            notes.append(
                f"divergence_error[{', '.join(others)}]: {label} estimates "
                f"{', '.join(k for k, _ in fill)} only"
            )
    return fill, tuple(notes)


def _benchmark_iv(
    methods: Any,
    problems: Any,
    sizes: Any,
    seeds: Any,
    metrics: Any,
    alpha: Any,
    n_permutations: Any,
    n_test: Any,
) -> tuple[dict[str, Any], dict[str, SyntheticPair], list[int], int, list[str], float]:
    method_map = _labelled(methods, "methods", _method_label)
    problem_map = _labelled(problems, "problems", _problem_label)
    if isinstance(sizes, int | np.integer):
        sizes = [sizes]
    if not isinstance(sizes, Sequence | np.ndarray) or len(sizes) == 0:
        raise ValueError(f"`sizes` must be a non-empty sequence of integers; got {sizes!r}.")
    size_list = [check_int(n, "sizes", minimum=MIN_SIZE) for n in sizes]
    if isinstance(metrics, str):
        metrics = [metrics]
    metric_list = [check_choice(m, "metrics", METRICS) for m in metrics]
    if not metric_list:
        raise ValueError(f"`metrics` must name at least one of {sorted(METRICS)}; got [].")
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0.0 < alpha < 1.0:
        raise ValueError(f"`alpha` must be a real number in (0, 1); got {alpha!r}.")
    check_int(n_permutations, "n_permutations", minimum=1)
    check_int(n_test, "n_test", minimum=1)
    seeds = check_int(seeds, "seeds", minimum=1)
    unique = list(dict.fromkeys(metric_list))
    return method_map, problem_map, list(dict.fromkeys(size_list)), seeds, unique, float(alpha)


def benchmark(
    methods: Any,
    problems: Any,
    sizes: Sequence[int] | int = (500, 5000),
    *,
    seeds: int = 5,
    metrics: Sequence[str] | str = METRICS,
    executor: Any = None,
    rng: RngLike = None,
    alpha: float = 0.05,
    n_permutations: int = N_PERMUTATIONS,
    n_test: int = 1000,
    device: str | torch.device | None = None,
) -> BenchmarkResult:
    r"""Score methods on synthetic problems with exact answers, over sizes and seeds.

    Each cell (method, problem, n, seed) draws ``n`` points from P and ``n`` from Q and fills
    the metrics: ``log_ratio_mse`` = mean of (log r_hat - log r)^2 over ``n_test`` fresh points
    of P and ``n_test`` of Q; ``divergence_error[kind]`` = ``|D_hat - D|`` for each divergence the
    method estimates itself (``divergence_kinds``) that the pair has a finite closed form for,
    by :func:`ratiokit.divergence`; ``power`` = 1 if :func:`ratiokit.two_sample_test` rejects
    P = Q at level ``alpha`` on the two samples, else 0, and ``type_i_error`` the same on the
    sample of P against a fresh one of P (a true null), so their means over seeds are rejection
    rates; ``time`` = seconds to fit the method on the two samples (``fit_critic``: model
    selection or critic training) and evaluate its discrepancy once. A metric that does not
    apply to a cell (no log ratio, no closed form) is NaN, with the reason in the row's note;
    so is one that fails in a cell (the error is in the note).

    Parameters
    ----------
    methods : sequence or mapping of str or Discrepancy
        Registered method names (:data:`ratiokit.METHODS`, or a test of
        :func:`ratiokit.two_sample_test` such as ``"mmdagg"``) or instances, which are
        copied, never modified; a mapping ``{label: method}`` names them in the table.
    problems : sequence or mapping of str or SyntheticPair
        Names of :data:`ratiokit.synthetic.PROBLEMS` (default parameters, e.g. 1-D) or pairs
        such as ``GaussianShift(dim=5)``; a mapping ``{label: problem}`` names them.
    sizes : sequence of int, default=(500, 5000)
        Points drawn from each of P and Q (at least 4).
    seeds : int, default=5
        Independent replicates per (method, problem, n), numbered 0 to ``seeds - 1``.
    metrics : sequence of str, default=METRICS
        Any of "log_ratio_mse", "divergence_error", "power", "type_i_error", "time".
    executor : None, concurrent.futures.Executor or dask.distributed.Client, default=None
        Where the cells run (one task each; tasks and their results are picklable); default:
        here, one after another. The table does not depend on it, except ``time``.
    rng : None, int, SeedSequence or Generator, default=None
        Root of every cell's streams (:meth:`numpy.random.Generator.spawn`); an int gives the
        same table on every run.
    alpha : float, default=0.05
        Level of the two-sample tests.
    n_permutations : int, default=N_PERMUTATIONS
        Relabellings of each two-sample test (default 999, :data:`ratiokit.config.N_PERMUTATIONS`;
        a large grid may pass fewer).
    n_test : int, default=1000
        Held-out points from each of P and Q for ``log_ratio_mse``.
    device : str or torch.device, default=None
        Where methods compute (default: the CPU).

    Returns
    -------
    BenchmarkResult
        One row per cell; ``summary()`` gives means and standard errors over seeds.

    Raises
    ------
    ValueError
        For an unknown method, problem or metric (the message lists the valid ones), repeated
        labels, an ``n`` below 4, invalid settings, or an unavailable ``device``.
    TypeError
        For a method or problem of the wrong type, or an invalid ``executor`` or ``rng``.
    RuntimeError
        If a cell's task keeps failing in the executor (a lost worker), after 2 retries.

    Examples
    --------
    >>> from ratiokit.benchmarking import benchmark
    >>> res = benchmark(["ulsif", "mmd"], ["gaussian_shift"], [50], seeds=2,
    ...                 metrics=["log_ratio_mse", "power"], n_permutations=49, rng=0)
    >>> res.methods, res.metrics
    (['ulsif', 'mmd'], ('log_ratio_mse', 'power'))
    >>> res.column("log_ratio_mse").round(3)  # rows: ulsif seeds 0 and 1, then mmd's
    array([0.905, 0.681,   nan,   nan])
    >>> res.summary()[0]["power"]  # rejection rate over the seeds
    1.0
    >>> str(res.column("note")[2])
    'log_ratio_mse: mmd estimates a density difference, not a ratio'
    """
    method_map, problem_map, size_list, n_seeds, metric_list, alpha = _benchmark_iv(
        methods, problems, sizes, seeds, metrics, alpha, n_permutations, n_test
    )
    executor = check_executor(executor)
    gen = check_rng(rng)
    if device is not None:
        device = str(check_device(device))
    columns, exact = _plan_columns(metric_list, method_map, problem_map)
    # One stream per (problem, n, seed) by nested spawns, so appending a problem, a size, a
    # seed or a method to the grid leaves the other cells' values unchanged.
    cells = []
    streams = gen.spawn(len(problem_map))
    for (p_label, pair), by_problem in zip(problem_map.items(), streams, strict=True):
        for n, by_size in zip(size_list, by_problem.spawn(len(size_list)), strict=True):
            for seed, group in enumerate(by_size.spawn(n_seeds)):
                data_seed, *own = group.bit_generator.seed_seq.spawn(1 + len(method_map))
                for (m_label, spec), own_seed in zip(method_map.items(), own, strict=True):
                    fill, notes = _not_applicable(spec, m_label, p_label, exact[p_label], columns)
                    cell = Cell(
                        method=spec,
                        method_label=m_label,
                        problem=pair,
                        problem_label=p_label,
                        n=n,
                        seed=seed,
                        columns=columns,
                        exact=fill,
                        notes=notes,
                        data_seed=data_seed,
                        own_seed=own_seed,
                        alpha=alpha,
                        n_permutations=n_permutations,
                        n_test=n_test,
                        device=device,
                    )
                    cells.append(cell)
    order = {label: k for k, label in enumerate(method_map)}
    cells.sort(key=lambda c: order[c.method_label])  # stable: problem, n, seed within a method

    def describe(k: int) -> str:
        c = cells[k]
        return f"({c.method_label}, {c.problem_label}, n={c.n}, seed={c.seed})"

    results, _ = run_tasks(
        executor, run_cell, [(c,) for c in cells], max_retries=MAX_RETRIES, describe=describe
    )
    rows = tuple(
        (c.method_label, c.problem_label, c.n, c.seed, *values, note)
        for c, (values, note) in zip(cells, results, strict=True)
    )
    details = {
        "alpha": alpha,
        "n_permutations": n_permutations,
        "n_test": n_test,
        "problems": {label: repr(pair) for label, pair in problem_map.items()},
        "executor": type(executor).__name__ if executor is not None else None,
    }
    return BenchmarkResult(
        columns=(*KEY_COLUMNS, *columns, "note"), rows=rows, alpha=alpha, details=details
    )
