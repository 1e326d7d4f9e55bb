"""Simulator fitting: parameter error against simulation budget, beside ABC.

Two simulators with known parameters (``ratiokit.simulators``): the g-and-k distribution
(n_obs = 1000 observations at A, B, g, k = 3, 1, 2, 0.5) and the M/G/1 queue (n_obs = 500
inter-departure times at service on [1, 5], arrival rate 0.2). For each, R independent data
sets (seeds 0..R-1), and on each data set every estimator below at two or three budgets:

- **ratiokit, gradient-free** (``kind="numpy"``, L-BFGS-B on the method's statistic under
  common random numbers): ``mmd`` (Gaussian kernel, the data's median bandwidth),
  ``energy``, and moment matching of the first 4 (g-and-k) or 3 (queue) powers with
  Hotelling weighting; budget: ``n_sim`` simulated points per evaluation (250, 1000);
- **ratiokit, gradient descent** (g-and-k only, ``kind="torch"``: the quantile function is
  differentiable): ``mmd`` with 256-point minibatches, 250 or 500 Adam steps;
- **rejection ABC** (written here, a plain baseline): N parameter draws from the uniform
  prior box, one simulated data set of n_obs points each, the 1% closest to the data kept
  (at least 20), the estimate their mean; budget: N (2000, 10000);
- **pyabc ABC-SMC** (the peer, run in its own virtual environment): population 200,
  adaptive weighted Euclidean distance, 3 or 6 generations, the estimate the weighted
  posterior mean; budget: its total number of simulated data sets.

ABC compares summaries: for the g-and-k, the robust octile summaries of Drovandi and
Pettitt (2011), ``E4, log(E6 - E2), (E6 + E2 - 2 E4) / (E6 - E2), (E7 - E5 + E3 - E1) /
(E6 - E2)`` with ``E_i`` the ``i/8`` quantile (the spread on the log scale: over the prior box
it ranges over many decades, and its median absolute deviation would drown it); for the
queue, the 0, 0.1, 0.25, 0.5, 0.75 and 0.9 quantiles of the inter-departure times; both ABCs
scale each summary by its median absolute deviation over prior draws. The error of a cell
is, per parameter, the root mean square error over the R data sets; the table's summary is
their mean relative to the true values. The x axis of the figure is the total number of
simulated points (evaluations x points).

**Peer environment.** pyabc is never a ratiokit dependency; it runs with the Python of
``.venv-peers-pyabc`` (override with ``--peer-venv``), created with::

    python3 -m venv .venv-peers-pyabc
    .venv-peers-pyabc/bin/pip install -c constraints.txt pyabc

The peer cannot import ratiokit (no torch there), so this module carries NumPy copies of
the two simulators (:func:`gk_numpy`, :func:`queue_numpy`); the parent checks them against
``ratiokit.simulators`` bit for bit before any run. Missing the venv, the pyabc rows say so.

Run from the repository root::

    python -m benchmarks.fit            # full run (about 40 minutes on 2 busy cores)
    python -m benchmarks.fit --quick    # one data set, the smaller budgets (~5 minutes)

Writes ``benchmarks/results/fit.{md,csv,png}``.

**Discrete simulator** (``--sir``, its own tables ``fit_sir.{md,csv}``): the chain-binomial
SIR epidemic (``ChainBinomialSIR``, 100 villages, beta, gamma = 1.5, 0.4) in both forms,
``crn=True`` (binomial draws by inversion of fixed uniforms) and ``crn=False``
(``rng.binomial``, which breaks common random numbers), fitted by MMD from the centre of its
box with each ``search`` (the default ``"auto"`` beside ``"nelder-mead"``, ``"l-bfgs-b"``
and ``"global"``) on R data sets. A fit is *wrong* when it misses a parameter by more than 4
of the default fit's standard deviations on ``crn=True`` (0.024, 0.018 over 20 data sets);
the table counts wrong fits, and wrong fits that claimed ``converged=True``::

    python -m benchmarks.fit --sir --replicates 20 This module imports only the standard
library and NumPy at the top: the pyabc child runs it with the peer environment's Python.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import _common

TRUE = {"g-and-k": (3.0, 1.0, 2.0, 0.5), "mg1-queue": (1.0, 4.0, 0.2)}
NAMES = {"g-and-k": ("A", "B", "g", "k"), "mg1-queue": ("service_min", "service_width", "rate")}
BOX = {"g-and-k": ((0.0, 10.0),) * 4, "mg1-queue": ((0.0, 10.0), (0.0, 10.0), (0.0, 1 / 3))}
N_OBS = {"g-and-k": 1000, "mg1-queue": 500}
N_SIM = (250, 1000)
STEPS = (250, 500)
ABC_DRAWS = (2000, 10_000)
ABC_ACCEPT = 0.01
PYABC_GENERATIONS = (3, 6)
PYABC_POPULATION = 200
PEER_VENV = _common.REPO_ROOT / ".venv-peers-pyabc"
COLUMNS = ("problem", "estimator", "library", "budget", "replicate", "points", "wall_s", "status")


# --------------------------------------------------------------------------------------
# NumPy simulators and summaries (shared with the peer child)


def gk_numpy(theta: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """The g-and-k quantile function at n standard normals (as ratiokit.simulators.GAndK)."""
    a, b, g, k = theta
    z = rng.standard_normal((n, 1))
    return a + b * (1.0 + 0.8 * np.tanh(0.5 * g * z)) * (1.0 + z**2) ** k * z


def queue_numpy(theta: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """M/G/1 inter-departure times after 100 customers (as ratiokit.simulators.MG1Queue)."""
    s_min, width, rate = theta
    total = n + 100
    cum = np.cumsum(s_min + width * rng.random(total))
    with np.errstate(divide="ignore", invalid="ignore"):
        arrivals = np.cumsum(rng.standard_exponential(total) / rate)
        start = np.maximum.accumulate(arrivals - np.concatenate(([0.0], cum[:-1])))
        gaps = np.diff(cum + start, prepend=0.0)
    return gaps[100:, None]


SIMULATE = {"g-and-k": gk_numpy, "mg1-queue": queue_numpy}


def summaries(problem: str, x: np.ndarray) -> np.ndarray:
    """ABC summaries of one data set (see the module notes)."""
    x = np.asarray(x)[:, 0]
    if problem == "g-and-k":
        e = np.quantile(x, np.arange(1, 8) / 8)
        spread = e[5] - e[1]
        skew, kurtosis = (e[5] + e[1] - 2 * e[3]) / spread, (e[6] - e[4] + e[2] - e[0]) / spread
        return np.array([e[3], np.log(spread), skew, kurtosis])
    return np.quantile(x, [0.0, 0.1, 0.25, 0.5, 0.75, 0.9])


def prior_draws(problem: str, n: int, rng: np.random.Generator) -> np.ndarray:
    box = np.array(BOX[problem])
    return box[:, 0] + (box[:, 1] - box[:, 0]) * rng.random((n, box.shape[0]))


# --------------------------------------------------------------------------------------
# estimators


def rejection_abc(problem: str, data: np.ndarray, n_draws: int, seed: int) -> dict[str, Any]:
    """Plain rejection ABC: keep the closest 1% of prior draws; their mean."""
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    thetas = prior_draws(problem, n_draws, rng)
    stats = np.array([summaries(problem, SIMULATE[problem](t, len(data), rng)) for t in thetas])
    ok = np.isfinite(stats).all(1)
    thetas, stats = thetas[ok], stats[ok]
    observed = summaries(problem, data)
    mad = np.median(np.abs(stats - np.median(stats, 0)), 0)
    dist = np.sqrt((((stats - observed) / np.where(mad > 0, mad, 1.0)) ** 2).sum(1))
    keep = np.argsort(dist)[: max(20, int(ABC_ACCEPT * n_draws))]
    return {
        "theta": thetas[keep].mean(0).tolist(),
        "points": n_draws * len(data),
        "wall_s": time.perf_counter() - start,
        "status": "ok",
    }


def measure_pyabc(problem: str, data_path: str, seed: int, generations: int) -> dict[str, Any]:
    """pyabc's ABC-SMC on the saved data set (child, peer environment)."""
    import logging

    import pyabc

    logging.getLogger("ABC").setLevel(logging.WARNING)
    data = np.load(data_path)
    names, box = NAMES[problem], BOX[problem]
    np.random.seed(seed)  # pyabc draws from NumPy's global generator (this child only)
    prior = pyabc.Distribution(
        **{n: pyabc.RV("uniform", lo, hi - lo) for n, (lo, hi) in zip(names, box, strict=True)}
    )

    def model(par: dict) -> dict:
        theta = np.array([par[n] for n in names])
        gen = np.random.default_rng(np.random.randint(2**31))
        s = summaries(problem, SIMULATE[problem](theta, len(data), gen))
        return {f"s{i}": float(v) if np.isfinite(v) else 1e12 for i, v in enumerate(s)}

    observed = {f"s{i}": float(v) for i, v in enumerate(summaries(problem, data))}
    abc = pyabc.ABCSMC(
        model,
        prior,
        pyabc.AdaptivePNormDistance(p=2),
        population_size=PYABC_POPULATION,
        sampler=pyabc.sampler.SingleCoreSampler(),
    )
    with tempfile.TemporaryDirectory() as tmp:
        abc.new(f"sqlite:///{tmp}/abc.db", observed)
        start = time.perf_counter()
        history = abc.run(max_nr_populations=generations)
        wall = time.perf_counter() - start
        frame, weights = history.get_distribution()
        theta = [float(np.sum(frame[n].to_numpy() * weights)) for n in names]
        n_sims = int(history.total_nr_simulations)
    return {"theta": theta, "points": n_sims * len(data), "wall_s": wall, "status": "ok"}


def ratiokit_fit(
    problem: str, data: np.ndarray, estimator: str, budget: int, seed: int
) -> dict[str, Any]:
    import ratiokit as rk
    from ratiokit.config import SearchConfig, TrainConfig
    from ratiokit.methods import MomentMatching
    from ratiokit.simulators import SIMULATORS

    sim = SIMULATORS[problem]()
    q25, q50, q75 = np.percentile(data, [25, 50, 75])
    if problem == "g-and-k":  # a normal's fit of the data: no skew, light tails
        theta0 = [q50, (q75 - q25) / 1.349, 0.1, 0.1]
    else:  # the shortest gap, the spread of the gaps, and the gaps' mean as 1 / rate
        lo = float(np.min(data))
        theta0 = [0.9 * lo, max(q75 - lo, 0.5), min(0.9 / float(np.mean(data)), 0.3)]
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # convergence is in the row
        if estimator == "mmd (gradient)":
            cfg = TrainConfig(max_steps=budget, lr=0.03, progress=False)
            res = rk.fit(sim, data, method="mmd", theta0=theta0, config=cfg, rng=seed)
        else:
            degree = len(TRUE[problem])
            method = {
                "mmd": "mmd",
                "energy": "energy",
                "moments": MomentMatching("poly", degree=degree, weighting="hotelling"),
            }[estimator]
            cfg = SearchConfig("l-bfgs-b", n_sim=budget)
            res = rk.fit(
                sim, data, method=method, theta0=theta0, kind="numpy", config=cfg, rng=seed
            )
    return {
        "theta": res.theta.tolist(),
        "points": res.n_simulations,
        "wall_s": time.perf_counter() - start,
        "status": "ok" if res.converged else "not converged",
    }


# --------------------------------------------------------------------------------------
# the discrete simulator

SIR_TRUE = (1.5, 0.4)
SIR_SD = (0.024, 0.018)
SIR_SEARCHES = ("auto", "nelder-mead", "l-bfgs-b", "global")
SIR_COLUMNS = ("form", "search", "replicate", "beta", "gamma", "converged", "wrong", "wall_s")


def run_sir(replicates: int) -> list[dict[str, Any]]:
    import ratiokit as rk
    from ratiokit.config import SearchConfig
    from ratiokit.simulators import ChainBinomialSIR

    rows = []
    for crn in (True, False):
        sim = ChainBinomialSIR(crn=crn)
        for seed in range(replicates):
            data = sim.sample(100, rng=seed)
            for search in SIR_SEARCHES:
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # convergence is in the row
                    res = rk.fit(sim, data, config=SearchConfig(search), rng=seed)
                error = np.abs(res.theta - SIR_TRUE) / SIR_SD
                rows.append(
                    {
                        "form": f"crn={crn}",
                        "search": search,
                        "replicate": seed,
                        "beta": float(res.theta[0]),
                        "gamma": float(res.theta[1]),
                        "converged": bool(res.converged),
                        "wrong": bool((error > 4).any()),
                        "wall_s": time.perf_counter() - start,
                    }
                )
                print(rows[-1], flush=True)
    return rows


def report_sir(rows: list[dict[str, Any]]) -> str:
    table = []
    for form in ("crn=True", "crn=False"):
        for search in SIR_SEARCHES:
            cell = [r for r in rows if r["form"] == form and r["search"] == search]
            table.append(
                {
                    "form": form,
                    "search": search,
                    "fits": len(cell),
                    "wrong": sum(r["wrong"] for r in cell),
                    "wrong, converged=True": sum(r["wrong"] and r["converged"] for r in cell),
                    "converged": sum(r["converged"] for r in cell),
                    "median wall s": float(np.median([r["wall_s"] for r in cell])),
                }
            )
    header = _common.machine_header(_common.machine_info())
    return (
        "# Fitting a discrete simulator: chain-binomial SIR\n\n"
        f"{header}\n\n"
        "Wrong: a parameter more than 4 sd (0.024, 0.018) from (1.5, 0.4).\n\n"
        f"{_common.markdown_table(table, list(table[0]))}\n"
    )


# --------------------------------------------------------------------------------------
# the run


def check_copies() -> None:
    """The NumPy copies give ratiokit's simulators' output bit for bit."""
    from ratiokit.simulators import SIMULATORS

    for problem, copy in SIMULATE.items():
        theta = np.array(TRUE[problem])
        ours = SIMULATORS[problem]()(theta, 50, np.random.default_rng(1))
        if not np.array_equal(ours, copy(theta, 50, np.random.default_rng(1))):
            raise RuntimeError(f"the NumPy copy of {problem} differs from ratiokit's simulator")


def _peer_row(problem: str, data: np.ndarray, seed: int, generations: int, python: Any) -> dict:
    if python is None:
        return {"status": f"not installed (create {PEER_VENV.name}; see the module notes)"}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.npy"
        np.save(path, data)
        saved = sys.executable
        sys.executable = str(python)  # run_isolated starts the child with sys.executable
        try:
            kwargs = {"problem": problem, "data_path": str(path), "seed": seed}
            kwargs["generations"] = generations
            return _common.run_isolated("benchmarks.fit:measure_pyabc", kwargs, timeout=1800)
        finally:
            sys.executable = saved


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    import torch

    from ratiokit.simulators import SIMULATORS

    torch.set_num_threads(1)
    check_copies()
    python = args.peer_venv / "bin" / "python"
    python = python if python.exists() else None
    rows = []
    for problem in args.problems:
        n_sims = N_SIM[:1] if args.quick else N_SIM
        plan = [(e, b, "ratiokit") for e in ("mmd", "energy", "moments") for b in n_sims]
        if problem == "g-and-k":
            plan += [
                ("mmd (gradient)", b, "ratiokit") for b in (STEPS[:1] if args.quick else STEPS)
            ]
        plan += [("rejection ABC", b, "baseline") for b in ABC_DRAWS[: 1 if args.quick else 2]]
        plan += [("ABC-SMC", g, "pyabc") for g in PYABC_GENERATIONS[: 1 if args.quick else 2]]
        for rep in range(args.replicates):
            data = SIMULATORS[problem]().sample(N_OBS[problem], rng=rep)
            for estimator, budget, library in plan:
                if library == "ratiokit":
                    out = ratiokit_fit(problem, data, estimator, budget, seed=100 + rep)
                elif library == "baseline":
                    out = rejection_abc(problem, data, budget, seed=100 + rep)
                else:
                    out = _peer_row(problem, data, 100 + rep, budget, python)
                row = {"problem": problem, "estimator": estimator, "library": library}
                row.update(budget=budget, replicate=rep, **out)
                for name, value in zip(NAMES[problem], out.get("theta") or [], strict=False):
                    row[name] = value
                rows.append(row)
                print(
                    f"{problem:9s} {estimator:15s} budget {budget:>6}  rep {rep}  "
                    f"{_common.fmt(row.get('wall_s'))} s  {row.get('status')}  "
                    f"theta {np.round(out.get('theta') or [], 3).tolist()}",
                    flush=True,
                )
    return rows


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (problem, estimator, budget): RMSE per parameter over the data sets."""
    cells: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        key = (row["problem"], row["estimator"], row["library"], row["budget"])
        cells.setdefault(key, []).append(row)
    out = []
    for (problem, estimator, library, budget), group in cells.items():
        ok = [r for r in group if r.get("theta")]
        cell = {"problem": problem, "estimator": estimator, "library": library}
        cell.update(budget=budget, n=len(ok))
        if not ok:
            cell["status"] = group[0].get("status")
            out.append(cell)
            continue
        truth = np.array(TRUE[problem])
        est = np.array([r["theta"] for r in ok])
        rmse = np.sqrt(((est - truth) ** 2).mean(0))
        for name, value in zip(NAMES[problem], rmse, strict=True):
            cell[f"rmse_{name}"] = float(value)
        cell["rel_error"] = float(np.mean(rmse / np.abs(truth)))
        cell["points"] = float(np.mean([r["points"] for r in ok]))
        cell["wall_s"] = float(np.mean([r["wall_s"] for r in ok]))
        cell["converged"] = sum(r.get("status") == "ok" for r in ok)
        cell["status"] = "ok"
        out.append(cell)
    return out


def report(cells: list[dict[str, Any]], args: argparse.Namespace) -> str:
    parts = [
        "# Simulator fitting: parameter error against simulation budget",
        "",
        f"Written by `python -m benchmarks.fit{' --quick' if args.quick else ''}`; see the "
        "module docstring for the estimators, budgets and ABC summaries. Each cell: "
        f"{args.replicates} independent data sets; `rmse_*` is the root mean square error of "
        "each parameter over them, `rel error` their mean relative to the true values, "
        "`points` the simulated points per fit (all evaluations, or all ABC data sets), "
        "`conv` the fits that met their convergence test.",
        "",
        _common.machine_header(_common.machine_info()),
    ]
    for problem in args.problems:
        names = NAMES[problem]
        columns = ["estimator", "library", "budget", "points"]
        columns += [f"rmse_{n}" for n in names]
        columns += ["rel_error", "wall_s", "converged", "n", "status"]
        rows = [c for c in cells if c["problem"] == problem]
        truth = ", ".join(f"{n} = {v:g}" for n, v in zip(names, TRUE[problem], strict=True))
        parts += ["", f"## {problem} (n_obs = {N_OBS[problem]}; {truth})", ""]
        parts.append(
            _common.markdown_table(
                rows, columns, headers={"rel_error": "rel error", "converged": "conv"}
            )
        )
    return "\n".join(parts) + "\n"


def plot(cells: list[dict[str, Any]], problems: list[str], path: Path) -> None:
    from ratiokit.plot import new_figure, save_figure

    fig, axes = new_figure(len(problems), width=5.2, height=4.0)
    labels = sorted({f"{c['estimator']} ({c['library']})" for c in cells})
    colors = {label: f"C{i}" for i, label in enumerate(labels)}  # one colour per estimator
    for ax, problem in zip(axes, problems, strict=True):
        group: dict[str, list[dict[str, Any]]] = {}
        for c in cells:
            if c["problem"] == problem and c.get("rel_error") is not None:
                group.setdefault(f"{c['estimator']} ({c['library']})", []).append(c)
        for label, rows in sorted(group.items()):
            rows.sort(key=lambda r: r["points"])
            xs, ys = [r["points"] for r in rows], [r["rel_error"] for r in rows]
            ax.plot(xs, ys, "o-", color=colors[label], label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("simulated points per fit")
        ax.set_ylabel("mean relative RMSE of the parameters")
        ax.set_title(f"{problem} (n_obs = {N_OBS[problem]})")
        ax.legend(fontsize="x-small")
    save_figure(fig, path)


def read_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of a fit.csv written by :func:`main`, with ``theta`` rebuilt from its columns."""
    import csv

    rows = []
    with open(path, newline="") as handle:
        for raw in csv.DictReader(handle):
            row: dict[str, Any] = dict(raw)
            row["budget"], row["points"] = int(row["budget"]), float(row["points"] or "nan")
            row["wall_s"] = float(row["wall_s"] or "nan")
            values = [row.get(name) for name in NAMES[row["problem"]]]
            row["theta"] = [float(v) for v in values] if all(values) else None
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fit", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one data set, smaller budgets")
    parser.add_argument("--replicates", type=int, default=None, help="data sets (default 4)")
    parser.add_argument("--problems", nargs="*", default=list(TRUE), choices=list(TRUE))
    parser.add_argument("--peer-venv", type=Path, default=PEER_VENV)
    parser.add_argument("--out", type=Path, default=_common.RESULTS_DIR)
    parser.add_argument("--plot-only", action="store_true", help="redraw fit.png from fit.csv")
    parser.add_argument("--sir", action="store_true", help="only the discrete simulator")
    args = parser.parse_args(argv)
    if args.replicates is None:
        args.replicates = 1 if args.quick else 4
    if args.sir:
        rows = run_sir(args.replicates)
        args.out.mkdir(parents=True, exist_ok=True)
        _common.write_csv(args.out / "fit_sir.csv", rows, SIR_COLUMNS)
        (args.out / "fit_sir.md").write_text(report_sir(rows))
        print(f"wrote {args.out / 'fit_sir.md'} and fit_sir.csv")
        return 0
    if args.plot_only:
        plot(summarise(read_csv(args.out / "fit.csv")), args.problems, args.out / "fit.png")
        return 0
    rows = run(args)
    cells = summarise(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    names = sorted({n for p in args.problems for n in NAMES[p]})
    _common.write_csv(args.out / "fit.csv", rows, [*COLUMNS, *names])
    (args.out / "fit.md").write_text(report(cells, args))
    plot(cells, args.problems, args.out / "fit.png")
    print(f"wrote {args.out / 'fit.md'}, fit.csv and fit.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
