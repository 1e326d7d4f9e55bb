"""The bad-input table: every invalid input gives a ValueError or TypeError naming the argument."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ratiokit as rk
from ratiokit._validation import as_sample, as_sample_pair, check_choice, check_int

GEN = np.random.default_rng(0)
GOOD = GEN.normal(size=(20, 3))


def with_nan() -> np.ndarray:
    x = GOOD.copy()
    x[4, 1] = np.nan
    return x


def with_inf() -> np.ndarray:
    x = GOOD.copy()
    x[0, 0] = -np.inf
    return x


BAD_X_Q = [
    (with_nan(), ValueError, r"`x_q` must hold finite values; got NaN or inf in 1 of 20 rows"),
    (with_inf(), ValueError, r"`x_q` must hold finite values"),
    (np.empty((0, 3)), ValueError, r"`x_q` must have at least 2 samples; got 0"),
    (GOOD[:1], ValueError, r"`x_q` must have at least 2 samples; got 1"),
    (np.zeros((4, 3, 2)), ValueError, r"`x_q` must be a 2-D array .* got shape \(4, 3, 2\)"),
    (np.zeros((5, 0)), ValueError, r"`x_q` must have at least one feature"),
    (np.array([["a", "b", "c"]] * 5), TypeError, r"`x_q` must be an array of real numbers"),
    (np.array([[object()] * 3] * 5), TypeError, r"`x_q` must be an array of real numbers"),
    (np.ones((5, 3), dtype=complex), TypeError, r"`x_q` must be an array of real numbers"),
    ([[1.0, 2.0], [3.0]], ValueError, r"`x_q` must be a rectangular array"),
    (
        GOOD[:, :2],
        ValueError,
        r"`x_p` and `x_q` must have the same number of features; got 3 and 2",
    ),
    (torch.ones(5, 3, dtype=torch.complex64), TypeError, r"`x_q` must hold real numbers"),
]


@pytest.mark.parametrize(("x_q", "error", "match"), BAD_X_Q)
def test_bad_sample_is_named(x_q, error, match):
    with pytest.raises(error, match=match):
        rk.discrepancy(GOOD, x_q)


def test_bad_x_p_is_named_too():
    with pytest.raises(ValueError, match="`x_p` must hold finite values"):
        rk.discrepancy(with_nan(), GOOD)


def test_constant_data_has_no_median_bandwidth():
    # All pooled distances are 0: the median heuristic is undefined and says what to pass.
    const = np.ones((10, 2))
    with pytest.raises(ValueError, match="`bandwidth`='median' is undefined for constant data"):
        rk.discrepancy(const, const)
    # A fixed bandwidth is fine on constant data: identical samples give MMD^2 = 0 exactly.
    assert rk.discrepancy(const, const, method=rk.MMD(bandwidth=1.0)) == 0.0


@pytest.mark.parametrize(
    ("rng", "error"),
    [
        ("seed", TypeError),
        (1.5, TypeError),
        (np.random.RandomState(0), TypeError),
        (-1, ValueError),
    ],
)
def test_bad_rng_is_named(rng, error):
    with pytest.raises(error, match="`rng` must be"):
        rk.discrepancy(GOOD, GOOD, rng=rng)


@pytest.mark.parametrize(
    ("method", "error", "match"),
    [
        ("mdm", ValueError, r"`method` must be one of \[.*'mmd'.*\] or a Discrepancy; got 'mdm'"),
        (42, TypeError, "`method` must be a method name or a Discrepancy"),
    ],
)
def test_bad_method_is_named(method, error, match):
    with pytest.raises(error, match=match):
        rk.discrepancy(GOOD, GOOD, method=method)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"kernel": "gauss"}, ValueError, "`kernel` must be one of"),
        ({"bandwidth": -1.0}, ValueError, "`bandwidth` must be a positive real number; got -1.0"),
        ({"bandwidth": []}, ValueError, "`bandwidth` must hold at least one value"),
        ({"bandwidth": "mean"}, ValueError, "`bandwidth` must be one of"),
        ({"bandwidth": "1"}, ValueError, "`bandwidth` must be one of"),
        ({"estimator": "u"}, ValueError, "`estimator` must be one of"),
        ({"backend": "gpu"}, ValueError, "`backend` must be one of"),
        ({"tile_size": 0}, ValueError, "`tile_size` must be an integer >= 1"),
        ({"tile_size": 2.0}, TypeError, "`tile_size` must be an integer"),
        ({"alpha": float("nan")}, ValueError, "`alpha` must be a positive real number"),
    ],
)
def test_bad_mmd_settings_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        rk.MMD(**kwargs)


def test_valid_inputs_are_normalised():
    # 1-D is n samples of one feature; ints become float64; NumPy float32 stays float32.
    assert as_sample([1, 2, 3], "x").shape == (3, 1)
    assert as_sample(np.arange(6).reshape(3, 2), "x").dtype == torch.float64
    assert as_sample(np.ones((3, 2), np.float32), "x").dtype == torch.float32
    a, b = as_sample_pair(np.ones((3, 2), np.float32), np.ones((4, 2)))
    assert a.dtype == b.dtype == torch.float64  # promoted to the common dtype
    assert check_int(np.int64(3), "n") == 3
    assert check_choice("a", "x", ["a", "b"]) == "a"
    with pytest.raises(TypeError, match="`n` must be an integer; got True"):
        check_int(True, "n")
