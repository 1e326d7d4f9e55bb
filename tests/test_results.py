"""Results as data: ``to_dict()`` and ``to_dataframe()`` of every result type.

Each result is built by hand, so the expected dicts and rows below are written out from its
fields, independently of the code that derives them. pandas is optional and not a test
dependency: a stand-in module records the columns ``to_dataframe`` hands to
``pandas.DataFrame``, and one test uses the real pandas where it is installed.
"""

from __future__ import annotations

import json
import math
import sys
import types

import numpy as np
import pytest

from ratiokit.results import (
    BenchmarkResult,
    ConfidenceInterval,
    DivergenceResult,
    FitResult,
    RatioDiagnostics,
    TrainHistory,
    TwoSampleTestResult,
)

NULL = np.array([0.1, 0.3, 0.2])
TEST = TwoSampleTestResult(
    statistic=0.5,
    pvalue=0.25,
    null_distribution=NULL,
    method="mmd",
    alternative="greater",
    n_permutations=3,
    details={"bandwidth": np.float64(1.5), "backend": "dense", "sizes": (10, 12)},
)
DIVERGENCE = DivergenceResult(
    0.4,
    "kl",
    "moments",
    standard_error=0.1,
    bootstrap=np.array([0.3, 0.5]),
    confidence_interval=ConfidenceInterval(0.31, 0.49),
)
HISTORY = TrainHistory(
    step=np.arange(1, 4),
    model_loss=np.array([3.0, 2.0, 1.0]),
    critic_loss=np.array([np.nan, -1.0, -2.0]),
    wall_time=np.array([0.1, 0.2, 0.3]),
    val_step=np.array([0, 2]),
    val_loss=np.array([1.5, 0.5]),
    best_step=2,
    stopped_early=False,
)
BENCHMARK = BenchmarkResult(
    columns=("method", "problem", "n", "seed", "time", "note"),
    rows=(("ulsif", "shift", 10, 0, 0.5, ""), ("ulsif", "shift", 10, 1, 0.7, "slow")),
    details={"n_permutations": 9},
)


def diagnostics() -> RatioDiagnostics:
    return RatioDiagnostics(
        mean_ratio_q=1.0,
        se_ratio_q=0.1,
        mean_inverse_ratio_p=0.9,
        se_inverse_ratio_p=0.2,
        ess_ratio_q=50.0,
        ess_inverse_ratio_p=40.0,
        bin_edges=np.array([0.0, 0.5, 1.0]),
        predicted=np.array([0.25, 0.75]),
        observed=np.array([0.2, 0.8]),
        counts=np.array([5, 5]),
        calibration_error=0.05,
        calibration_pvalue=0.6,
        reweighted_pvalue=0.25,
        n_kept=12,
        reweighted_power=0.3,
        n_p=10,
        n_q=10,
        method="ulsif",
        reweighted_test=TEST,
    )


class Frame:
    """Stand-in for ``pandas.DataFrame``: keeps the columns it is given."""

    def __init__(self, data: dict) -> None:
        self.data = data

    def rows(self) -> list[dict]:
        names = list(self.data)
        return [
            dict(zip(names, values, strict=True))
            for values in zip(*self.data.values(), strict=True)
        ]


@pytest.fixture
def fake_pandas(monkeypatch):
    module = types.ModuleType("pandas")
    module.DataFrame = Frame
    monkeypatch.setitem(sys.modules, "pandas", module)


def test_to_dict_holds_every_field_as_plain_data():
    record = TEST.to_dict()
    assert list(record) == [
        "statistic",
        "pvalue",
        "null_distribution",
        "method",
        "alternative",
        "n_permutations",
        "details",
    ]
    assert record["null_distribution"] is NULL  # arrays as they are
    # A NumPy scalar becomes a Python float, a tuple a list.
    assert type(record["details"]["bandwidth"]) is float
    assert record["details"] == {"bandwidth": 1.5, "backend": "dense", "sizes": [10, 12]}
    assert TwoSampleTestResult(**record).pvalue == TEST.pvalue
    # JSON with arrays as lists: everything else is already plain.
    text = json.dumps(record, default=np.ndarray.tolist)
    assert json.loads(text)["null_distribution"] == [0.1, 0.3, 0.2]


def test_nested_results_and_intervals_become_dicts():
    record = DIVERGENCE.to_dict()
    assert record["confidence_interval"] == {"low": 0.31, "high": 0.49}
    assert record["confidence_level"] == 0.95 and record["n_nonfinite_bootstrap"] == 0
    nested = diagnostics().to_dict()["reweighted_test"]
    assert nested["statistic"] == 0.5 and nested["null_distribution"] is NULL
    assert HISTORY.to_dict()["critic_loss"] is HISTORY.critic_loss
    bench = BENCHMARK.to_dict()
    assert bench["rows"] == [
        ["ulsif", "shift", 10, 0, 0.5, ""],
        ["ulsif", "shift", 10, 1, 0.7, "slow"],
    ]
    assert bench["alpha"] == 0.05 and bench["details"] == {"n_permutations": 9}


@pytest.mark.usefixtures("fake_pandas")
def test_a_test_or_divergence_result_is_one_row_of_its_scalars():
    (row,) = TEST.to_dataframe().rows()
    assert row == {
        "statistic": 0.5,
        "pvalue": 0.25,
        "method": "mmd",
        "alternative": "greater",
        "n_permutations": 3,
        "details.bandwidth": 1.5,
        "details.backend": "dense",
    }
    (row,) = DIVERGENCE.to_dataframe().rows()
    assert row == {
        "value": 0.4,
        "kind": "kl",
        "method": "moments",
        "standard_error": 0.1,
        "n_nonfinite_bootstrap": 0,
        "confidence_interval.low": 0.31,
        "confidence_interval.high": 0.49,
        "confidence_level": 0.95,
    }


@pytest.mark.usefixtures("fake_pandas")
def test_diagnostics_row_holds_the_reweighting_tests_scalars():
    (row,) = diagnostics().to_dataframe().rows()
    assert row["calibration_pvalue"] == 0.6 and row["n_kept"] == 12 and row["alpha"] == 0.05
    assert row["reweighted_test.pvalue"] == 0.25
    assert row["reweighted_test.details.backend"] == "dense"
    assert "bin_edges" not in row and "reweighted_test.null_distribution" not in row


@pytest.mark.usefixtures("fake_pandas")
def test_a_history_has_one_row_per_step_and_a_benchmark_one_per_cell():
    rows = HISTORY.to_dataframe().rows()
    assert len(rows) == 3
    assert rows[1] == {"step": 2, "model_loss": 2.0, "critic_loss": -1.0, "wall_time": 0.2}
    assert math.isnan(rows[0]["critic_loss"])
    rows = BENCHMARK.to_dataframe().rows()
    assert [row["seed"] for row in rows] == [0, 1] and rows[1]["note"] == "slow"
    assert rows[0] == {
        "method": "ulsif",
        "problem": "shift",
        "n": 10,
        "seed": 0,
        "time": 0.5,
        "note": "",
    }


@pytest.mark.usefixtures("fake_pandas")
def test_a_generator_fit_is_one_row_of_its_scalars():
    fit = FitResult(
        theta=None,
        param_names=(),
        loss=0.1,
        converged=True,
        method="mmd",
        kind="module",
        n_steps=10,
        n_simulations=100,
        wall_time=1.5,
        details={"search": "local", "bounds": [[0.0, 1.0]]},
    )
    assert fit.to_dict()["param_names"] == []
    (row,) = fit.to_dataframe().rows()
    assert row["loss"] == 0.1 and row["converged"] is True and row["n_steps"] == 10
    assert row["details.search"] == "local" and "details.bounds" not in row
    assert row["theta"] is None and row["kind"] == "module"


def test_to_dataframe_names_pandas_when_it_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` raises ImportError
    for result in (TEST, DIVERGENCE, HISTORY, BENCHMARK, diagnostics()):
        with pytest.raises(ImportError, match=r"needs the `pandas` package"):
            result.to_dataframe()


def test_to_dataframe_with_pandas():
    pandas = pytest.importorskip("pandas")
    frame = HISTORY.to_dataframe()
    assert isinstance(frame, pandas.DataFrame)
    assert frame.shape == (3, 4) and frame["model_loss"].tolist() == [3.0, 2.0, 1.0]
    assert TEST.to_dataframe().shape == (1, 7)
    assert BENCHMARK.to_dataframe()["time"].tolist() == [0.5, 0.7]


def test_a_fit_is_one_row_per_parameter_and_its_dict_holds_no_live_object():
    pandas = pytest.importorskip("pandas")
    boot = np.array([[0.9, 2.0], [1.1, 2.4], [1.0, 2.2]])
    res = FitResult(
        theta=np.array([1.0, 2.2]), param_names=("loc", "scale"), loss=0.1, converged=True,
        method="mmd", kind="numpy", n_steps=10, n_simulations=100, wall_time=0.5,
        confidence_interval=np.array([[0.8, 1.2], [1.9, 2.5]]), bootstrap=boot,
        fitted=object(),
    )  # fmt: skip
    frame = res.to_dataframe()
    assert isinstance(frame, pandas.DataFrame)
    assert list(frame["parameter"]) == ["loc", "scale"]
    np.testing.assert_array_equal(frame["theta"], [1.0, 2.2])
    np.testing.assert_array_equal(frame[["low", "high"]], [[0.8, 1.2], [1.9, 2.5]])
    # The standard error is the sample standard deviation of the replicates, by hand.
    np.testing.assert_allclose(frame["standard_error"], [0.1, 0.2])
    record = res.to_dict()
    assert "fitted" not in record and record["param_names"] == ["loc", "scale"]
