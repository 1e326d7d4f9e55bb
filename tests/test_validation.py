"""The bad-input table: every invalid input gives a ValueError or TypeError naming the argument."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ratiokit as rk
from ratiokit._validation import as_sample, as_sample_pair, check_choice, check_device, check_int
from ratiokit.methods import MMD, ULSIF

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


# --- containers, precisions, devices: every front door reads them the same way -------------


class Frame:
    """A minimal data frame: named columns over an array (pandas and polars have both)."""

    def __init__(self, values: np.ndarray, columns: list[str]) -> None:
        self.values, self.columns = values, columns

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self.values if dtype is None else self.values.astype(dtype)


X_P, X_Q = GEN.normal(size=(40, 2)), GEN.normal(0.5, 1.0, size=(40, 2))
FRONT_DOORS = {
    "discrepancy": lambda a, b, **kw: rk.discrepancy(a, b, method=rk.MMD(bandwidth=1.0), **kw),
    "divergence": lambda a, b, **kw: rk.divergence(a, b, method="ulsif", **kw).value,
    "estimate_ratio": lambda a, b, **kw: (
        rk.estimate_ratio(a, b, **kw).log_ratio(torch.as_tensor(X_Q)).numpy()
    ),
    "two_sample_test": lambda a, b, **kw: (
        rk.two_sample_test(a, b, method=rk.MMD(bandwidth=1.0), n_permutations=19, **kw).pvalue
    ),
}


@pytest.mark.parametrize("door", FRONT_DOORS)
def test_data_frames_are_matched_by_column_name_or_refused(door):
    # The same names in the same order: the frames are their arrays (column i is column i).
    call = FRONT_DOORS[door]
    same = call(Frame(X_P, ["a", "b"]), Frame(X_Q, ["a", "b"]), rng=0)
    np.testing.assert_array_equal(same, call(X_P, X_Q, rng=0))
    # Swapped names over swapped data would compare a with b: refused, naming both orders.
    with pytest.raises(ValueError, match=r"must have the same columns in the same order; got "
                       r"\['a', 'b'\] and \['b', 'a'\]"):  # fmt: skip
        call(Frame(X_P, ["a", "b"]), Frame(X_Q[:, ::-1], ["b", "a"]), rng=0)
    with pytest.raises(ValueError, match=r"got \['a', 'b'\] and \['a', 'c'\]"):
        call(Frame(X_P, ["a", "b"]), Frame(X_Q, ["a", "c"]), rng=0)


@pytest.mark.parametrize("door", FRONT_DOORS)
def test_masked_entries_are_refused_and_a_bare_mask_is_data(door):
    call = FRONT_DOORS[door]
    masked = np.ma.masked_array(X_Q.copy(), mask=np.zeros(X_Q.shape, bool))
    # Nothing masked: the masked array is its data.
    np.testing.assert_array_equal(call(X_P, masked, rng=0), call(X_P, X_Q, rng=0))
    masked[3, 1] = np.ma.masked
    masked[7] = np.ma.masked
    with pytest.raises(ValueError, match=r"`(x_q|y)` must be a plain array without masked "
                       r"entries .* 3 masked entries in 2 rows"):  # fmt: skip
        call(X_P, masked, rng=0)


def test_estimate_ratio_keeps_the_column_names_as_a_fit_on_a_data_frame_does():
    # scikit-learn then checks them at log_ratio (for the frames it recognises).
    est = rk.estimate_ratio(Frame(X_P, ["a", "b"]), Frame(X_Q, ["a", "b"]), rng=0)
    assert est.feature_names_in_.tolist() == ["a", "b"]
    assert not hasattr(rk.estimate_ratio(X_P, X_Q, rng=0), "feature_names_in_")


def test_ratio_estimator_refuses_masked_entries_in_fit_and_log_ratio():
    X = np.ma.masked_array(np.vstack([X_P, X_Q]), mask=False)
    y = np.r_[np.ones(40, int), np.zeros(40, int)]
    est = rk.RatioEstimator(rng=0).fit(X, y)
    X[0, 0] = np.ma.masked
    with pytest.raises(ValueError, match="`X` must be a plain array without masked entries"):
        rk.RatioEstimator(rng=0).fit(X, y)
    with pytest.raises(ValueError, match="`X` must be a plain array without masked entries"):
        est.log_ratio(X)


@pytest.mark.parametrize("door", FRONT_DOORS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_tensors_are_computed_in_float32(door, dtype):
    # The half-precision values, upcast exactly to float32 by hand, are the reference.
    a, b = torch.tensor(X_P, dtype=dtype), torch.tensor(X_Q, dtype=dtype)
    got = FRONT_DOORS[door](a, b, rng=0)
    want = FRONT_DOORS[door](a.float(), b.float(), rng=0)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


@pytest.mark.parametrize("door", FRONT_DOORS)
def test_tensors_that_require_grad_are_read_as_data(door):
    a = torch.tensor(X_P, requires_grad=True)
    got = FRONT_DOORS[door](a, torch.tensor(X_Q), rng=0)
    np.testing.assert_array_equal(got, FRONT_DOORS[door](X_P, X_Q, rng=0))
    assert a.grad is None


def test_log_ratio_reads_1d_input_as_one_feature():
    # DESIGN: a 1-D input is n samples of one feature, for NumPy arrays as for tensors.
    est = rk.estimate_ratio(X_P[:, 0], X_Q[:, 0], rng=0)
    x = np.linspace(-2.0, 2.0, 5)
    np.testing.assert_array_equal(est.log_ratio(x), est.log_ratio(x[:, None]))
    np.testing.assert_array_equal(est.log_ratio(list(x)), est.log_ratio(x[:, None]))
    half = torch.tensor(x, dtype=torch.float16)
    out = est.log_ratio(half)
    assert out.dtype == torch.float16 and out.shape == (5,)  # a tensor of its dtype out
    with pytest.raises(ValueError, match="X has 1 features, but RatioEstimator is expecting 2"):
        rk.estimate_ratio(X_P, X_Q, rng=0).log_ratio(x)


# A CUDA index beyond the devices present: unavailable here and on a GPU machine alike.
MISSING_CUDA = f"cuda:{torch.cuda.device_count()}"


@pytest.mark.parametrize(
    "call",
    [
        lambda dev: rk.discrepancy(X_P, X_Q, method="mmd", device=dev),
        lambda dev: rk.divergence(X_P, X_Q, method="ulsif", device=dev),
        lambda dev: rk.estimate_ratio(X_P, X_Q, device=dev),
        lambda dev: rk.RatioEstimator(device=dev).fit(
            np.vstack([X_P, X_Q]), np.r_[np.ones(40, int), np.zeros(40, int)]
        ),
        lambda dev: rk.two_sample_test(X_P, X_Q, method="mmd", device=dev),
        lambda dev: rk.benchmark(["mmd"], ["gaussian_shift"], sizes=[10], seeds=1, device=dev),
    ],
    ids=[
        "discrepancy",
        "divergence",
        "estimate_ratio",
        "RatioEstimator.fit",
        "two_sample_test",
        "benchmark",
    ],
)
def test_unavailable_device_is_refused_before_any_work(call, monkeypatch):
    fits = []  # any critic fit is work started before the check
    for cls in (MMD, ULSIF):
        monkeypatch.setattr(cls, "fit_critic", lambda *a, **k: fits.append(1))
    with pytest.raises(ValueError, match=rf"`device` must be an available device; got "
                       rf"'{MISSING_CUDA}', but this machine has"):  # fmt: skip
        call(MISSING_CUDA)
    assert fits == []


def test_check_device_names_bad_devices():
    assert check_device(None) is None
    assert check_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"`device` must be a torch device such as 'cpu' or "
                       r"'cuda'; got 'gpu'"):  # fmt: skip
        check_device("gpu")
    with pytest.raises(TypeError, match=r"`device` must be a torch device .*; got 1.5"):
        check_device(1.5)
    if not torch.backends.mps.is_available():
        with pytest.raises(ValueError, match=r"got 'mps', but torch.backends.mps"):
            check_device("mps")


def test_method_of_a_wrong_type_is_a_type_error_at_divergence():
    with pytest.raises(TypeError, match="`method` must be a method name or a Discrepancy"):
        rk.divergence(X_P, X_Q, method=["ulsif"])
