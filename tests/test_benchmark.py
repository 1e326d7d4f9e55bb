"""rk.benchmark: metrics against closed forms, rejection rates, executors, the result object.

Reference values: an oracle method whose log ratio is ``scale`` times the exact one of a
Gaussian mean shift gives closed-form MSEs and divergence errors; type-I error and power are
checked against binomial intervals.
"""

from __future__ import annotations

import csv
import io
import math
import multiprocessing
import sys
import types
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import ClassVar

import numpy as np
import pytest
import torch
from scipy import stats

import ratiokit as rk
from ratiokit import cli
from ratiokit.benchmarking import METRICS, benchmark
from ratiokit.methods import Discrepancy
from ratiokit.synthetic import GaussianShift, ScaleChange


class Oracle(Discrepancy):
    """log r_hat = ``scale`` x the exact log ratio of a Gaussian mean shift; KL by plug-in."""

    name: ClassVar[str] = "oracle"
    has_log_ratio: ClassVar[bool] = True
    divergence_kinds: ClassVar[tuple[str, ...]] = ("kl",)

    def __init__(self, shift: float = 1.0, scale: float = 1.0) -> None:
        super().__init__()
        self.shift, self.scale = shift, scale

    def log_ratio(self, x):
        return self.scale * GaussianShift(dim=x.shape[1], shift=self.shift).log_ratio(x)

    def forward(self, x_p, x_q):
        return self.log_ratio(x_p).mean() - self.log_ratio(x_q).mean()

    def estimate_divergence(self, kind, x_p, x_q):
        return self.log_ratio(x_p).mean()  # KL(P||Q) = E_p[log r]

    def extra_repr(self):
        return f"shift={self.shift}, scale={self.scale}"


class Broken(Discrepancy):
    """A ratio method whose fit always fails."""

    name: ClassVar[str] = "broken"
    has_log_ratio: ClassVar[bool] = True

    def fit_critic(self, x_p, x_q, *, rng=None):
        raise RuntimeError("solver diverged")


def _metric_values(res):
    return np.array([res.column(m) for m in res.metrics if m != "time"])


def _same_table(a, b):
    assert a.columns == b.columns
    for name in ("method", "problem", "n", "seed", "note"):
        np.testing.assert_array_equal(a.column(name), b.column(name))
    np.testing.assert_array_equal(_metric_values(a), _metric_values(b))  # NaN == NaN here


# --- metrics against closed forms -------------------------------------------------------------


@pytest.mark.parametrize("scale", [0.0, 0.5])
def test_log_ratio_mse_matches_the_closed_form(scale):
    # log r(x) = mu.x - s^2/2 with |mu| = s: under P it is N(s^2/2, s^2) and under Q
    # N(-s^2/2, s^2), so E[(log r)^2] = s^2 + s^4/4 at the pooled test points and the MSE of
    # scale * log r is (1 - scale)^2 (s^2 + s^4/4).
    s, n_test = 1.0, 4000
    res = benchmark(
        [Oracle(shift=s, scale=scale)],
        [GaussianShift(dim=2, shift=s)],
        [10],
        seeds=1,
        metrics="log_ratio_mse",
        n_test=n_test,
        rng=0,
    )
    exact = (1 - scale) ** 2 * (s**2 + s**4 / 4)
    # sd of one squared term (1 - scale)^2 (log r)^2: with m = s^2/2, v = s^2,
    # Var[Y^2] = 2 v^2 + 4 m^2 v for Y ~ N(m, v); averaged over 2 n_test points; 5 sd.
    sd = (1 - scale) ** 2 * math.sqrt(2 * s**4 + s**6) / math.sqrt(2 * n_test)
    assert res.column("log_ratio_mse")[0] == pytest.approx(exact, abs=5 * sd)
    assert res.column("note")[0] == ""


def test_divergence_error_matches_a_direct_computation():
    # The oracle's KL estimate is mean(log r(x_p)) over the cell's n points of P, so its
    # error is |mean - s^2/2| with sd s / sqrt(n) (log r ~ N(s^2/2, s^2) under P).
    s, n = 1.0, 400
    res = benchmark(
        {"oracle": Oracle(shift=s)},
        [GaussianShift(shift=s)],
        [n],
        seeds=8,
        metrics=["divergence_error"],
        rng=1,
    )
    assert res.metrics == ("divergence_error[kl]",)
    errors = res.column("divergence_error[kl]")
    assert np.all(errors >= 0)
    # Each error is |Z| with Z ~ N(0, sd^2): E|Z| = sd sqrt(2/pi), Var|Z| = sd^2 (1 - 2/pi);
    # the mean of 8 errors lies within 4 of its standard deviations of E|Z|.
    sd = s / math.sqrt(n)
    tol = 4 * sd * math.sqrt((1 - 2 / math.pi) / 8)
    assert errors.mean() == pytest.approx(sd * math.sqrt(2 / math.pi), abs=tol)


def test_divergence_error_of_registered_methods_against_the_pair():
    # uLSIF's own kinds are pe and pearson, KLIEP's is kl; truth for a unit shift:
    # chi^2 = e - 1 = 1.718, PE = 0.859, KL = 0.5. The oracle tests above check the error's
    # arithmetic; here uLSIF's median error over 3 seeds must be below the truth (relative
    # error < 1, which it meets easily at n = 300). KLIEP's in-sample KL is biased upwards
    # at this n (estimates from 0.42 to 1.8 over 12 samples), so only its sign is checked.
    res = benchmark(
        ["ulsif", "kliep"],
        ["gaussian_shift"],
        [300],
        seeds=3,
        metrics=["divergence_error"],
        rng=2,
    )
    assert res.metrics == (
        "divergence_error[kl]",
        "divergence_error[pearson]",
        "divergence_error[pe]",
    )
    method = res.column("method")
    for kind, truth in [("pearson", math.e - 1), ("pe", (math.e - 1) / 2)]:
        errors = res.column(f"divergence_error[{kind}]")[method == "ulsif"]
        assert np.all(errors >= 0) and np.median(errors) < truth
    assert np.all(res.column("divergence_error[kl]")[method == "kliep"] >= 0)
    assert np.isnan(res.column("divergence_error[kl]")[method == "ulsif"]).all()
    assert np.isnan(res.column("divergence_error[pe]")[method == "kliep"]).all()
    assert "ulsif estimates pe, pearson only" in res.column("note")[0]


def test_type_i_error_lies_in_its_binomial_interval():
    # P vs a fresh sample of P: a permutation test with B = 99 rejects at alpha = 0.05 with
    # probability exactly 5/100, so over R = 200 seeds the count is Binomial(200, 0.05):
    # binom.interval(0.998, 200, 0.05) = [2, 21].
    res = benchmark(
        ["mmd"],
        ["gaussian_shift"],
        [20],
        seeds=200,
        metrics="type_i_error",
        n_permutations=99,
        rng=3,
    )
    low, high = stats.binom.interval(0.998, 200, 0.05)
    rejections = res.column("type_i_error").sum()
    assert low <= rejections <= high
    (row,) = res.summary()
    assert row["type_i_error"] == pytest.approx(rejections / 200)
    assert row["seeds"] == 200


def test_power_is_high_for_a_large_shift():
    # Shift 3 at n = 30: the difference of sample means is 3 / sqrt(2 / 30) = 11.6 standard
    # errors, so the MMD test rejects on every seed but with a negligible probability.
    res = benchmark(
        ["mmd", "ulsif"],
        [GaussianShift(shift=3.0)],
        [30],
        seeds=5,
        metrics="power",
        n_permutations=99,
        rng=4,
    )
    assert np.all(res.column("power") == 1.0)


# --- metrics that do not apply, failures --------------------------------------------------------


def test_metrics_that_do_not_apply_are_nan_with_the_reason():
    res = benchmark(
        ["mmd", "kmm", "moments"],
        [ScaleChange(scale=2.0), "gaussian_mixture"],
        [12],
        seeds=1,
        metrics=["log_ratio_mse", "divergence_error", "time"],
        n_test=20,
        rng=5,
    )
    keys = list(zip(res.column("method"), res.column("problem"), strict=True))
    notes = dict(zip(keys, res.column("note"), strict=True))
    mse = dict(zip(keys, res.column("log_ratio_mse"), strict=True))
    kl = dict(zip(keys, res.column("divergence_error[kl]"), strict=True))
    assert "mmd estimates a density difference, not a ratio" in notes["mmd", "scale_change"]
    assert "mmd has no divergence estimator of its own" in notes["mmd", "scale_change"]
    assert "kmm's ratio exists only at its fitted Q sample" in notes["kmm", "scale_change"]
    assert math.isnan(mse["mmd", "scale_change"]) and math.isnan(mse["kmm", "scale_change"])
    # Moment matching estimates KL itself: scale_change has it in closed form, the mixture not.
    assert res.metrics == ("log_ratio_mse", "divergence_error[kl]", "time")
    assert math.isfinite(mse["moments", "scale_change"]) and notes["moments", "scale_change"] == ""
    assert math.isfinite(kl["moments", "scale_change"]) and math.isnan(
        kl["moments", "gaussian_mixture"]
    )
    assert "gaussian_mixture has no closed form for kl" in notes["moments", "gaussian_mixture"]
    assert np.all(res.column("time") > 0)


def test_infinite_truth_is_reported():
    # chi^2 of N(0, 4) against N(0, 1) diverges (2 S_q - S_p = -2 is not positive definite).
    res = benchmark(
        ["ulsif"], [ScaleChange(scale=2.0)], [12], seeds=1, metrics="divergence_error", rng=6
    )
    assert "the true pe, pearson is infinite" in res.column("note")[0]
    assert res.metrics == ("divergence_error",) and np.isnan(res.column("divergence_error")[0])


def test_a_failing_method_is_recorded_not_raised():
    res = benchmark(
        {"broken": Broken(), "ulsif": "ulsif"},
        ["gaussian_shift"],
        [10],
        seeds=1,
        metrics=["log_ratio_mse", "time"],
        n_test=10,
        rng=7,
    )
    broken, ulsif = res.rows
    assert np.isnan(broken[4]) and np.isnan(broken[5])
    assert "log_ratio_mse: failed: RuntimeError: solver diverged" in broken[-1]
    assert np.isfinite(ulsif[4]) and ulsif[-1] == ""


# --- seeding and executors -------------------------------------------------------------------


GRID = dict(
    methods=["ulsif", "classifier", "mmd"],
    problems=["gaussian_shift"],
    sizes=[16],
    seeds=2,
    metrics=["log_ratio_mse", "divergence_error", "power", "type_i_error"],
    n_permutations=19,
    n_test=30,
)


@pytest.fixture(scope="module")
def serial():
    return benchmark(**GRID, rng=11)


def test_thread_pool_gives_the_serial_table(serial):
    # The same int seed gives the same table whatever runs the cells; classifier critics
    # are initialised under torch's global RNG in several threads at once.
    with ThreadPoolExecutor(max_workers=3) as pool:
        _same_table(serial, benchmark(**GRID, executor=pool, rng=11))


def test_process_pool_gives_the_serial_table(serial):
    # Cells and results cross processes by pickling; workers use one torch thread like this
    # process. fork keeps the test fast (spawned workers re-import torch); no other thread
    # runs here when the pool forks.
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(
        2, mp_context=context, initializer=torch.set_num_threads, initargs=(1,)
    ) as pool:
        _same_table(serial, benchmark(**GRID, executor=pool, rng=11))


def test_a_new_seed_changes_the_table():
    args = dict(methods="ulsif", problems="gaussian_shift", sizes=12, seeds=2, n_test=20)
    a = benchmark(**args, metrics="log_ratio_mse", rng=11)
    b = benchmark(**args, metrics="log_ratio_mse", rng=12)
    assert not np.array_equal(a.column("log_ratio_mse"), b.column("log_ratio_mse"))


@pytest.mark.gpu
def test_cuda_gives_the_cpu_table():
    # Same data and streams on both devices, float64 everywhere: the log-ratio MSEs agree to
    # rounding, and the relabellings are drawn on the CPU, so the tests decide alike.
    args = dict(
        methods=["ulsif", "mmd"],
        problems=["gaussian_shift"],
        sizes=[64],
        seeds=2,
        metrics=["log_ratio_mse", "power", "type_i_error"],
        n_permutations=49,
        n_test=100,
        rng=0,
    )
    cpu, gpu = benchmark(**args), benchmark(**args, device="cuda")
    np.testing.assert_allclose(gpu.column("log_ratio_mse"), cpu.column("log_ratio_mse"), rtol=1e-6)
    for metric in ("power", "type_i_error"):
        np.testing.assert_array_equal(gpu.column(metric), cpu.column(metric))


def test_a_cell_does_not_depend_on_the_rest_of_the_grid():
    # Streams are spawned per problem, size and seed: adding a method or a size leaves the
    # other cells' values unchanged.
    small = benchmark(
        ["ulsif"], ["gaussian_shift"], [12], seeds=2, metrics="log_ratio_mse", n_test=20, rng=13
    )
    large = benchmark(
        ["ulsif", "kliep"],
        ["gaussian_shift"],
        [12, 24],
        seeds=2,
        metrics="log_ratio_mse",
        n_test=20,
        rng=13,
    )
    np.testing.assert_array_equal(small.column("log_ratio_mse"), large.column("log_ratio_mse")[:2])


# --- the result object -------------------------------------------------------------------------


def test_summary_is_mean_and_standard_error_over_seeds(serial):
    rows = serial.summary()
    assert [(r["method"], r["problem"], r["n"]) for r in rows] == [
        ("ulsif", "gaussian_shift", 16),
        ("classifier", "gaussian_shift", 16),
        ("mmd", "gaussian_shift", 16),
    ]
    values = serial.column("log_ratio_mse")[:2]
    assert rows[0]["log_ratio_mse"] == pytest.approx(values.mean())
    assert rows[0]["log_ratio_mse_se"] == pytest.approx(values.std(ddof=1) / math.sqrt(2))
    assert math.isnan(rows[2]["log_ratio_mse"])
    assert rows[2]["note"].startswith("log_ratio_mse: mmd estimates a density difference")


def test_csv_round_trips_exactly(serial, tmp_path):
    text = serial.to_csv()
    table = list(csv.reader(io.StringIO(text)))
    assert tuple(table[0]) == serial.columns and len(table) == len(serial) + 1
    k = serial.columns.index("log_ratio_mse")
    np.testing.assert_array_equal([float(r[k]) for r in table[1:]], serial.column("log_ratio_mse"))
    path = serial.to_csv(tmp_path / "out" / "bench.csv")
    assert path.read_text() == text


def test_markdown_repr_and_columns(serial):
    md = serial.to_markdown()
    assert md.splitlines()[0].startswith("| method | problem | n | seeds | log_ratio_mse |")
    assert "±" in md and "- mmd on gaussian_shift: log_ratio_mse: mmd estimates" in md
    assert len(serial.to_markdown(summary=False).splitlines()) == len(serial) + 2
    text = repr(serial)
    assert text.startswith("BenchmarkResult(6 rows: methods=['ulsif', 'classifier', 'mmd']")
    assert len(text) < 400
    assert serial.column("n").dtype == np.int64 and serial.column("seed").tolist() == [0, 1] * 3
    with pytest.raises(ValueError, match=r"`name` must be one of \['method'"):
        serial.column("mse")


def test_plot_draws_one_panel_per_problem_and_a_line_per_method():
    res = benchmark(
        ["ulsif", "mmd"],
        ["gaussian_shift", GaussianShift(dim=2)],
        [8, 16],
        seeds=2,
        metrics=["type_i_error", "time"],
        n_permutations=9,
        rng=14,
    )
    axes = res.plot(metric="type_i_error")
    assert [ax.get_title() for ax in axes] == ["gaussian_shift", "gaussian_shift(dim=2)"]
    labels = axes[0].get_legend_handles_labels()[1]
    assert sorted(labels) == ["alpha", "mmd", "ulsif"]
    assert axes[0].get_xscale() == "log"
    with pytest.raises(ValueError, match="`metric` must be one of"):
        res.plot(metric="power")


# --- input validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"methods": ["mdm"]}, ValueError, r"`methods` must be one of \['bregman', 'classifier'"),
        ({"methods": [3]}, TypeError, "`methods` must hold method names or Discrepancy"),
        ({"methods": []}, ValueError, "`methods` must hold at least one entry"),
        ({"methods": ["mmd", "mmd"]}, ValueError, "`methods` must have distinct labels"),
        ({"problems": ["blob"]}, ValueError, r"`problems` must be one of \['blobs'"),
        ({"problems": [GaussianShift]}, TypeError, "`problems` must hold problem names"),
        ({"sizes": [3]}, ValueError, "`sizes` must be an integer >= 4; got 3"),
        ({"sizes": []}, ValueError, "`sizes` must be a non-empty sequence"),
        ({"seeds": 0}, ValueError, "`seeds` must be an integer >= 1"),
        ({"metrics": ["mse"]}, ValueError, r"`metrics` must be one of \['divergence_error'"),
        ({"alpha": 1.5}, ValueError, r"`alpha` must be a real number in \(0, 1\)"),
        ({"n_permutations": 0}, ValueError, "`n_permutations` must be an integer >= 1"),
        ({"executor": "pool"}, TypeError, "`executor` must be None, a concurrent"),
        ({"rng": -1}, ValueError, "`rng` must be a non-negative integer seed"),
    ],
)
def test_bad_input_names_the_argument(kwargs, error, match):
    args = {"methods": ["mmd"], "problems": ["gaussian_shift"], "sizes": [8], **kwargs}
    with pytest.raises(error, match=match):
        benchmark(**args)


def test_labels_of_instances_and_mappings():
    res = benchmark(
        {"shift": "mmd", "scaled": rk.MMD(kernel="laplace")},
        [GaussianShift(dim=3, shift=2.0), "gaussian_shift"],
        [8],
        seeds=1,
        metrics="time",
        rng=0,
    )
    assert res.methods == ["shift", "scaled"]
    assert res.problems == ["gaussian_shift(dim=3, shift=2.0)", "gaussian_shift"]
    assert rk.benchmark is benchmark and set(METRICS) >= {"power", "type_i_error"}


# --- the bench command ----------------------------------------------------------------------


def test_bench_lists_the_suites_of_the_checkout(capsys):
    from benchmarks.__main__ import SUITES

    assert cli.main(["bench", "--list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{name}: {module}" for name, module in SUITES.items()]


def test_bench_outside_a_checkout_says_where_to_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["bench", "--quick"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ratiokit: error: `ratiokit bench` runs the benchmarks/ folder")
    assert "run it from the repository root" in err and len(err.splitlines()) == 1


def test_bench_unknown_suite_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["bench", "nonexistent"])
    assert info.value.code == 2
    assert "unknown suite(s) ['nonexistent']" in capsys.readouterr().err


def _fake_suite(monkeypatch, name, main):
    module = types.ModuleType(name)
    module.main = main
    monkeypatch.setitem(sys.modules, name, module)
    return name


def test_bench_quick_writes_to_its_own_folder_and_records_suite_times(monkeypatch, tmp_path):
    import benchmarks.__main__ as entry
    from benchmarks import _common

    seen = []

    def ok(argv):
        seen.append(argv)
        return 0

    def broken(argv):
        raise RuntimeError("suite failed")

    suites = {"a": _fake_suite(monkeypatch, "fake_ok", ok)}
    suites["b"] = _fake_suite(monkeypatch, "fake_broken", broken)
    suites["c"] = _fake_suite(monkeypatch, "fake_ok_again", ok)
    monkeypatch.setattr(entry, "SUITES", suites)
    monkeypatch.setattr(_common, "RESULTS_DIR", tmp_path / "results")
    # A raising suite is reported, the next one still runs, and the exit status is 1.
    assert cli.main(["bench", "--quick"]) == 1
    quick = tmp_path / "results" / "quick"
    assert seen == [["--quick", "--out", str(quick)]] * 2
    text = (quick / "suite_times.md").read_text()
    assert "`python -m benchmarks --quick`" in text and "| total |" in text
    assert "failed (traceback above)" in text and "**cores**" in text
    # A full run writes to the results folder itself, or to --out.
    seen.clear()
    assert cli.main(["bench", "a"]) == 0 and seen == [["--out", str(tmp_path / "results")]]
    assert cli.main(["bench", "c", "--out", str(tmp_path / "elsewhere")]) == 0
    assert seen[-1] == ["--out", str(tmp_path / "elsewhere")]
    assert (tmp_path / "elsewhere" / "suite_times.md").is_file()
