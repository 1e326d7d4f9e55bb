"""Tests for two_sample_test and the permutation engine (ratiokit/two_sample.py, _permutation.py).

References are brute force: every statistic of a relabelling is recomputed from scratch on the
relabelled samples with the NumPy code in tests/reference.py (full Gram matrices), and exact
p-values by looping over all combinations with itertools.
"""

import doctest
import itertools
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.linear_model import LogisticRegression

import ratiokit as rk
from ratiokit import _permutation as engine
from ratiokit.kernels import Kernel
from ratiokit.methods import (
    METHODS,
    DeepKernelMMD,
    Discrepancy,
    MMDAgg,
    OptimizedMMD,
    RandomFeatureMMD,
)
from ratiokit.methods._hotelling import hotelling_statistics
from ratiokit.methods.mmd import MMD, EnergyDistance
from ratiokit.two_sample import two_sample_test
from tests import reference

# Statistics computed by tiles (BLAS, blocked sums) and by full NumPy Gram matrices agree to
# ~1e-13 relative in float64; 1e-10 leaves room for cancellation in the U-statistic.
RTOL = 1e-10


def normal(n, d, seed, shift=0.0, scale=1.0):
    return np.random.default_rng(seed).normal(shift, scale, size=(n, d))


def brute_exact(stat, x, y, alternative="greater"):
    """All C(n+m, n) relabellings by itertools, in lexicographic order, and the exact p-value."""
    pooled, n = np.concatenate([x, y]), len(x)
    values = []
    for rows in itertools.combinations(range(len(pooled)), n):
        mask = np.zeros(len(pooled), dtype=bool)
        mask[list(rows)] = True
        values.append(stat(pooled[mask], pooled[~mask]))
    values = np.array(values)
    obs = stat(x, y)
    tol = 1e-9 * max(abs(obs), np.abs(values).max())
    greater = np.mean(values >= obs - tol)
    less = np.mean(values <= obs + tol)
    p = {"greater": greater, "less": less, "two-sided": min(1.0, 2 * min(greater, less))}
    return values, p[alternative]


# --- test-only methods (the interface a new method would use) ------------------------------


class LogisticRatio(Discrepancy):
    """A learned ratio: quadratic logistic regression fitted by Newton's method (no rng)."""

    name: ClassVar[str] = "logistic"
    has_log_ratio: ClassVar[bool] = True
    learned_critic: ClassVar[bool] = True

    def __init__(self):
        super().__init__()
        self.coef_ = None

    @staticmethod
    def _features(x):
        x = x.to(torch.float64)
        return torch.cat([torch.ones(len(x), 1, dtype=x.dtype), x, x * x], 1)

    def fit_critic(self, x_p, x_q, *, rng=None):
        f = self._features(torch.cat([x_p, x_q]))
        t = torch.cat([torch.ones(len(x_p)), torch.zeros(len(x_q))]).to(torch.float64)
        w = torch.zeros(f.shape[1], dtype=torch.float64)
        for _ in range(25):
            p = torch.sigmoid(f @ w)
            hess = f.T @ (f * (p * (1 - p))[:, None]) + 1e-3 * torch.eye(f.shape[1])
            w = w + torch.linalg.solve(hess, f.T @ (t - p) - 1e-3 * w)
        self.coef_ = w
        self.prior_ = math.log(len(x_p) / len(x_q))
        return self

    def log_ratio(self, x):
        return self._features(x) @ self.coef_ - self.prior_

    def forward(self, x_p, x_q):
        return self.log_ratio(x_p).mean() - self.log_ratio(x_q).mean()


class MeanGap(Discrepancy):
    """A non-kernel statistic, ||mean x - mean y||^2: evaluated with torch.func.vmap."""

    name: ClassVar[str] = "mean_gap"

    def forward(self, x_p, x_q):
        return ((x_p.mean(0) - x_q.mean(0)) ** 2).sum()


class ScalarMeanGap(MeanGap):
    """The same statistic through a Python float: vmap cannot trace it (column-by-column)."""

    name: ClassVar[str] = "scalar_mean_gap"

    def forward(self, x_p, x_q):
        return torch.tensor(float(((x_p.mean(0) - x_q.mean(0)) ** 2).sum()), dtype=x_p.dtype)


def hotelling_reference(x, y):
    """Hotelling's two-sample T^2 with the pooled covariance (textbook formula, NumPy)."""
    n, m = len(x), len(y)
    diff = x.mean(0) - y.mean(0)
    pooled = ((n - 1) * np.cov(x.T, ddof=1) + (m - 1) * np.cov(y.T, ddof=1)) / (n + m - 2)
    return n * m / (n + m) * diff @ np.linalg.solve(np.atleast_2d(pooled), diff)


class Moments(Discrepancy):
    """Stands in for MomentMatching: Hotelling's T^2 from hotelling_t2 -> (t2, df1, df2),
    called on every relabelling (no batched form), through the public test hooks."""

    name: ClassVar[str] = "moments_stub"
    test_fit: ClassVar[str] = "none"
    scale_invariant: ClassVar[bool] = True

    def null_statistics(self, z, labels, progress):
        return hotelling_statistics(self, z, labels, progress, batched=False)

    def hotelling_t2(self, x_p, x_q):
        n, m, d = len(x_p), len(x_q), x_p.shape[1]
        diff = x_p.mean(0) - x_q.mean(0)
        cx, cy = x_p - x_p.mean(0), x_q - x_q.mean(0)
        pooled = (cx.T @ cx + cy.T @ cy) / (n + m - 2)
        t2 = n * m / (n + m) * diff @ torch.linalg.solve(pooled, diff)
        return t2, d, n + m - d - 1

    def forward(self, x_p, x_q):
        return self.hotelling_t2(x_p, x_q)[0]


# --- errors --------------------------------------------------------------------------------

X, Y = normal(20, 2, 0), normal(15, 2, 1)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"method": "mdm"}, ValueError, r"`method` must be one of \[.*'mmdagg'.*\] or a Discrep"),
        ({"method": 3}, TypeError, "`method` must be a method name or a Discrepancy"),
        ({"n_permutations": 0}, ValueError, r"`n_permutations` must be an integer >= 1; got 0\."),
        ({"n_permutations": 9.5}, TypeError, r"`n_permutations` must be an integer; got 9\.5\."),
        (
            {"alternative": "bigger"},
            ValueError,
            r"`alternative` must be one of \['greater', 'less', 'two-sided'\]; got 'bigger'\.",
        ),
        ({"progress": "yes"}, TypeError, r"`progress` must be None, True or False; got 'yes'\."),
        ({"rng": "seed"}, TypeError, "`rng` must be None, an int"),
        ({"rng": -1}, ValueError, "`rng` must be a non-negative integer seed"),
        ({"device": "bogus"}, ValueError, r"`device` must be a torch device .*; got 'bogus'\."),
    ],
)
def test_settings_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        two_sample_test(X, Y, **kwargs)


@pytest.mark.parametrize(
    ("x", "y", "method", "match"),
    [
        (np.full((5, 2), np.nan), Y, "mmd", r"`x` must hold finite values; got NaN or inf in 5"),
        (X, np.zeros((3, 2, 2)), "mmd", r"`y` must be a 2-D array .*; got shape \(3, 2, 2\)\."),
        (X, normal(15, 3, 1), "mmd", r"`x` and `y` must have the same number of features; got 2"),
        (X[:1], Y, "mmd", r"`x` must have at least 2 samples; got 1\."),
        (X[:3], Y, OptimizedMMD(), "must each have at least 4 samples for method 'mmd_opt'"),
        (X, Y, MMDAgg(null="wild"), r"same number of samples for `null`='wild'.*; got 20 and 15"),
        (np.ones((6, 2)), np.ones((6, 2)), "mmdagg", "`bandwidths`='auto' is undefined for const"),
    ],
)
def test_sample_errors(x, y, method, match):
    with pytest.raises(ValueError, match=match):
        two_sample_test(x, y, method=method)


def test_string_data_is_a_type_error():
    with pytest.raises(TypeError, match="`x` must be an array of real numbers; got an array of"):
        two_sample_test(np.array([["a", "b"], ["c", "d"]]), Y)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: MMDAgg(kernels="energy"), ValueError, r"`kernels` must be one of \['gaussian'"),
        (lambda: MMDAgg(kernels=()), ValueError, "`kernels` must name at least one kernel"),
        (lambda: MMDAgg(bandwidths=[1.0, -1.0]), ValueError, r"`bandwidths` must be a positive"),
        (lambda: MMDAgg(bandwidths=[]), ValueError, "`bandwidths` must hold at least one value"),
        (lambda: MMDAgg(bandwidths="med"), ValueError, r"`bandwidths` must be one of \['auto'\]"),
        (lambda: MMDAgg(bandwidths=2.0), TypeError, "`bandwidths` must be 'auto' or a sequence"),
        (
            lambda: MMDAgg(null="boot"),
            ValueError,
            r"`null` must be one of \['permutation', 'wild'",
        ),
        (lambda: MMDAgg(n_bandwidths=0), ValueError, "`n_bandwidths` must be an integer >= 1"),
        (lambda: OptimizedMMD(kernel="energy"), ValueError, r"`kernel` must be one of \['gauss"),
        (lambda: OptimizedMMD(reg=0.0), ValueError, "`reg` must be a positive real number"),
        (
            lambda: RandomFeatureMMD(estimator="linear"),
            ValueError,
            r"`estimator` must be one of \['biased', 'unbiased'\]; got 'linear'\.",
        ),
        (lambda: RandomFeatureMMD(n_features=0), ValueError, "`n_features` must be an integer"),
        (lambda: DeepKernelMMD(hidden=(0,)), ValueError, "`hidden` must be an integer >= 1"),
        (lambda: DeepKernelMMD(lr=-1.0), ValueError, "`lr` must be a positive real number"),
    ],
)
def test_method_setting_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_unfitted_random_features_and_deep_kernel_raise():
    x = torch.zeros(4, 2, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="RandomFeatureMMD has no frequencies yet"):
        RandomFeatureMMD()(x, x)
    with pytest.raises(RuntimeError, match="DeepKernelMMD has no kernel yet"):
        DeepKernelMMD()(x, x)


def test_non_finite_held_out_scores_are_reported():
    class Broken(LogisticRatio):
        def log_ratio(self, x):
            return torch.full((len(x),), float("nan"), dtype=torch.float64)

    with pytest.raises(ValueError, match="returned non-finite log-ratios on the held-out"):
        two_sample_test(X, Y, method=Broken())


# --- the engine against brute force --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "bandwidth"), [("gaussian", 1.3), ("laplace", (0.7, 2.0)), ("energy", 1.0)]
)
@pytest.mark.parametrize("estimator", ["unbiased", "biased", "linear"])
def test_batched_null_equals_brute_force(name, bandwidth, estimator):
    n, m = 13, 9
    z = normal(n + m, 3, 2)
    labels = engine.draw_labels(n, m, 40, np.random.default_rng(3))
    kernel = Kernel(name, bandwidth)
    zt = torch.as_tensor(z)
    if estimator == "linear":
        values = engine.linear_mmd2(kernel, zt, labels, batch_size=7).numpy()
    else:
        forms = engine.dense_forms(
            zt, engine.kernel_tiles([kernel]), 1, labels, tile_size=5, batch_size=6
        )
        values = forms.mmd2(n, m, estimator)[0].numpy()
    mat = labels.matrix.numpy()
    for c in range(mat.shape[1]):
        # Each group in increasing row order (the pairing of the linear statistic).
        expected = reference.mmd2(name, z[mat[:, c]], z[~mat[:, c]], bandwidth, estimator)
        assert values[c] == pytest.approx(expected, rel=RTOL, abs=1e-14)


@pytest.mark.keops
def test_keops_forms_equal_dense_forms():
    n, m = 30, 25
    z = torch.as_tensor(normal(n + m, 2, 4))
    labels = engine.draw_labels(n, m, 20, np.random.default_rng(5))
    kernel = Kernel("gaussian", 0.9)
    dense = engine.dense_forms(z, engine.kernel_tiles([kernel]), 1, labels, tile_size=16)
    lazy = engine.keops_forms(kernel, z, labels, batch_size=8)
    for est in ("unbiased", "biased"):
        torch.testing.assert_close(lazy.mmd2(n, m, est), dense.mmd2(n, m, est), rtol=RTOL, atol=0)


def test_dense_products_equal_gram_matrix_products():
    z = torch.as_tensor(normal(23, 2, 6))
    w = torch.as_tensor(normal(23, 3, 7))
    kernels = [Kernel("gaussian", 0.5), Kernel("imq", 2.0)]
    out = engine.dense_products(z, engine.kernel_tiles(kernels), 2, w, tile_size=8)
    for k, kernel in enumerate(kernels):
        gram = reference.gram(kernel.name, z.numpy(), z.numpy(), kernel.bandwidths)
        np.testing.assert_allclose(out[k].numpy(), gram @ w.numpy(), rtol=RTOL)


def test_feature_forms_equal_low_rank_gram():
    n, m = 11, 8
    phi = normal(n + m, 5, 8)
    labels = engine.draw_labels(n, m, 15, np.random.default_rng(9))
    forms = engine.feature_forms(torch.as_tensor(phi), labels, batch_size=4)
    gram, mat = phi @ phi.T, labels.matrix.numpy().astype(float)
    np.testing.assert_allclose(forms.q[0].numpy(), np.einsum("ic,ij,jc->c", mat, gram, mat))
    np.testing.assert_allclose(forms.r[0].numpy(), mat.T @ gram.sum(1))
    np.testing.assert_allclose(forms.t[0].numpy(), mat.T @ np.diag(gram))


def test_labels_exact_enumeration_and_random_draws():
    exact = engine.draw_labels(3, 2, 10, np.random.default_rng(0))  # C(5, 3) = 10 <= 10
    mat = exact.matrix.numpy()
    assert exact.exact and mat.shape == (5, 10)
    assert {tuple(np.flatnonzero(c)) for c in mat.T} == set(itertools.combinations(range(5), 3))
    assert tuple(np.flatnonzero(mat[:, 0])) == (0, 1, 2)  # the observed labelling first
    rand = engine.draw_labels(3, 2, 9, np.random.default_rng(0))  # 10 > 9: random draws
    assert not rand.exact and rand.matrix.shape == (5, 10)
    assert (rand.matrix.sum(0) == 3).all()
    swaps = engine.draw_labels(3, 3, 8, np.random.default_rng(0), scheme="swap")  # 2^3
    assert swaps.exact and swaps.matrix.shape == (6, 8)
    # A swap column calls exactly one of x_i, y_i "x" for every pair i.
    assert (swaps.matrix[:3] ^ swaps.matrix[3:]).all()


def test_random_labels_do_not_depend_on_the_chunk_of_columns_used():
    big = engine.draw_labels(40, 30, 300, np.random.default_rng(11)).matrix
    small = engine.draw_labels(40, 30, 100, np.random.default_rng(11)).matrix
    # Drawn in fixed chunks from one stream: the first 101 columns coincide.
    assert torch.equal(big[:, :101], small)


# --- exact and randomized p-values ---------------------------------------------------------


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
def test_exact_enumeration_equals_brute_force_over_combinations(alternative):
    x, y = normal(4, 2, 12), normal(3, 2, 13, shift=0.5)
    mmd = MMD(bandwidth=1.1)

    def stat(a, b):
        return reference.mmd2("gaussian", a, b, 1.1)

    res = two_sample_test(x, y, method=mmd, n_permutations=99, alternative=alternative, rng=0)
    values, p = brute_exact(stat, x, y, alternative)
    assert res.details["exact"] and res.n_permutations == math.comb(7, 4) == len(values)
    np.testing.assert_allclose(res.null_distribution, values, rtol=RTOL)
    assert res.pvalue == pytest.approx(p, rel=1e-12)
    assert res.statistic == pytest.approx(stat(x, y), rel=RTOL)


def test_random_null_values_are_relabelling_statistics_and_p_has_the_plus_one_form():
    x, y = normal(5, 1, 14), normal(5, 1, 15, shift=1.0)
    values, _ = brute_exact(lambda a, b: reference.mmd2("gaussian", a, b, 0.8), x, y)
    res = two_sample_test(x, y, method=MMD(bandwidth=0.8), n_permutations=100, rng=1)
    assert not res.details["exact"] and res.n_permutations == 100  # C(10, 5) = 252 > 100
    # Every null value is the MMD^2 of some relabelling (one of the 252).
    gaps = np.abs(res.null_distribution[:, None] - values[None, :]).min(1)
    assert gaps.max() < 1e-12
    count = np.sum(res.null_distribution >= res.statistic - 1e-12)
    assert res.pvalue == (1 + count) / 101


def test_random_p_value_approaches_the_exact_one():
    x, y = normal(5, 2, 16), normal(6, 2, 17, shift=0.4)
    exact = two_sample_test(x, y, method=MMD(bandwidth=1.0), n_permutations=500, rng=0)
    rand = two_sample_test(x, y, method=MMD(bandwidth=1.0), n_permutations=400, rng=0)
    assert exact.details["exact"] and not rand.details["exact"]  # C(11, 5) = 462
    # The randomized p-value is (1 + Binomial(B, p)) / (1 + B): within 4 binomial sd + 1/B.
    p, b = exact.pvalue, 400
    assert abs(rand.pvalue - p) < 4 * math.sqrt(p * (1 - p) / b) + 1 / b


@pytest.mark.filterwarnings("ignore:MMDAgg over:UserWarning")  # few relabellings on purpose
def test_wild_bootstrap_enumerates_the_swaps():
    x, y = normal(5, 1, 18), normal(5, 1, 19, shift=0.7)
    method = MMDAgg(kernels="gaussian", bandwidths=[0.9], null="wild")
    res = two_sample_test(x, y, method=method, n_permutations=32, rng=0)
    assert (
        res.details["exact"]
        and res.n_permutations == 32
        and res.details["null"] == ("wild bootstrap")
    )
    # Brute force: the MMD^2 of every swap pattern, ranked; one kernel so min-P is its p-value.
    stats_ = []
    for bits in itertools.product([False, True], repeat=5):
        s = np.array(bits)
        a, b = np.where(s[:, None], y, x), np.where(s[:, None], x, y)
        stats_.append(reference.mmd2("gaussian", a, b, 0.9))
    stats_ = np.array(stats_)
    p = np.mean(stats_ >= stats_[0] - 1e-12)
    assert res.pvalue == pytest.approx(p, rel=1e-12)
    assert res.details["mmd2"][0] == pytest.approx(stats_[0], rel=RTOL)


def test_p_value_is_never_zero():
    x, y = normal(200, 2, 20), normal(200, 2, 21, shift=5.0)
    res = two_sample_test(x, y, n_permutations=99, rng=0)
    assert res.pvalue == 1 / 100
    assert res.null_distribution.max() < res.statistic


def test_ties_equal_in_exact_arithmetic_count():
    # n = m: a relabelling and its complement have the same MMD^2 in exact arithmetic but are
    # computed by different sums; each must count as a tie, so every count is even.
    x, y = normal(3, 1, 22), normal(3, 1, 23, shift=2.0)
    res = two_sample_test(x, y, method=MMD(bandwidth=1.0), n_permutations=99, rng=0)
    assert res.n_permutations == 20 and res.pvalue == 2 / 20
    # All points equal: every relabelling ties with the observed one.
    same = two_sample_test(np.ones((6, 2)), np.ones((6, 2)), method=MMD(bandwidth=1.0), rng=0)
    assert same.pvalue == 1.0


def test_alternatives_follow_their_definitions():
    x, y = normal(30, 2, 24), normal(30, 2, 25)
    kw = {"method": MMD(bandwidth=1.0), "n_permutations": 199, "rng": 3}
    g, lo, two = (two_sample_test(x, y, alternative=a, **kw) for a in ALTS)
    null, t = g.null_distribution, g.statistic
    assert g.pvalue == (1 + np.sum(null >= t)) / 200
    assert lo.pvalue == (1 + np.sum(null <= t)) / 200
    assert two.pvalue == min(1.0, 2 * min(g.pvalue, lo.pvalue))


ALTS = ("greater", "less", "two-sided")


# --- statistics, seeds, devices, tiles ------------------------------------------------------


@pytest.mark.parametrize(
    "method",
    [
        MMD(bandwidth=0.9),
        MMD(bandwidth=0.9, estimator="biased"),
        MMD(bandwidth=0.9, estimator="linear"),
        MMD("imq", bandwidth=[0.5, 2.0]),
        EnergyDistance(),
    ],
    ids=["unbiased", "biased", "linear", "imq-sum", "energy"],
)
def test_statistic_equals_the_method_estimate(method):
    x, y = normal(40, 3, 26), normal(35, 3, 27, shift=0.3)
    res = two_sample_test(x, y, method=method, n_permutations=20, rng=0)
    expected = method(torch.as_tensor(x), torch.as_tensor(y))
    assert res.statistic == pytest.approx(float(expected), rel=RTOL)
    assert res.method == method.name


def test_median_bandwidth_is_resolved_on_the_pooled_sample():
    x, y = normal(40, 2, 28), normal(30, 2, 29, shift=0.5)
    res = two_sample_test(x, y, n_permutations=20, rng=0)
    h = MMD().fit_critic(torch.as_tensor(x), torch.as_tensor(y)).kernel_.bandwidths[0]
    assert res.details["bandwidth"] == pytest.approx(h)  # 70 points: no subsample, rng-free


def test_seeded_results_are_identical_and_seeds_differ():
    x, y = normal(50, 2, 30), normal(50, 2, 31, shift=0.2)
    a = two_sample_test(x, y, n_permutations=99, rng=7)
    b = two_sample_test(x, y, n_permutations=99, rng=7)
    c = two_sample_test(x, y, n_permutations=99, rng=8)
    assert a.pvalue == b.pvalue and np.array_equal(a.null_distribution, b.null_distribution)
    assert not np.array_equal(a.null_distribution, c.null_distribution)


def test_p_values_are_identical_across_tile_and_batch_sizes():
    x, y = normal(70, 3, 32), normal(50, 3, 33, shift=0.25)
    results = [
        two_sample_test(x, y, method=MMD(tile_size=t), n_permutations=199, rng=4)
        for t in (7, 64, 1024)
    ]
    assert len({r.pvalue for r in results}) == 1
    for r in results[1:]:
        np.testing.assert_allclose(r.null_distribution, results[0].null_distribution, rtol=RTOL)
    labels = engine.draw_labels(70, 50, 199, np.random.default_rng(1))
    z = torch.as_tensor(np.concatenate([x, y]))
    tiles = engine.kernel_tiles([Kernel("gaussian", 1.5)])
    p = set()
    for batch in (1, 13, None):
        forms = engine.dense_forms(z, tiles, 1, labels, tile_size=32, batch_size=batch)
        values = forms.mmd2(70, 50, "unbiased")[0].numpy()
        p.add(engine.pvalue(values[0], values[1:], "greater", exact=False, scale=1.0))
    assert len(p) == 1


@pytest.mark.keops
def test_keops_backend_gives_the_same_p_value():
    x, y = normal(60, 2, 34), normal(60, 2, 35, shift=0.3)
    dense = two_sample_test(x, y, method=MMD(backend="dense"), n_permutations=99, rng=5)
    lazy = two_sample_test(x, y, method=MMD(backend="keops"), n_permutations=99, rng=5)
    assert lazy.details["backend"] == "keops" and lazy.pvalue == dense.pvalue
    np.testing.assert_allclose(lazy.null_distribution, dense.null_distribution, rtol=RTOL)


def test_float32_input_gives_the_float64_p_value(device):
    x, y = normal(60, 2, 36), normal(50, 2, 37, shift=0.3)
    kw = {"method": MMD(bandwidth=1.0), "n_permutations": 99, "rng": 2, "device": device}
    r64 = two_sample_test(x, y, **kw)
    r32 = two_sample_test(x.astype(np.float32), y.astype(np.float32), **kw)
    # The engine works in float64; only the rounding of the inputs to float32 differs.
    assert r32.pvalue == r64.pvalue
    assert r32.statistic == pytest.approx(r64.statistic, rel=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize(
    "method",
    [MMD(bandwidth=1.5), MMD(bandwidth=1.5, estimator="linear"), MMDAgg(bandwidths=[0.5, 2.0])],
    ids=["dense", "linear", "mmdagg"],
)
def test_cuda_gives_the_cpu_p_value(method):
    # The relabellings come from rng on the CPU; only the rounding of the float64 sums differs
    # between the devices, far below the tie tolerance (1e-9 of the statistics' scale).
    x, y = normal(300, 3, 72), normal(300, 3, 73, shift=0.15)
    cpu = two_sample_test(x, y, method=method, n_permutations=199, rng=1)
    gpu = two_sample_test(x, y, method=method, n_permutations=199, rng=1, device="cuda")
    assert gpu.pvalue == cpu.pvalue
    np.testing.assert_allclose(gpu.null_distribution, cpu.null_distribution, rtol=1e-9)


def test_user_method_is_not_modified():
    mmd = MMD()
    two_sample_test(normal(20, 2, 38), normal(20, 2, 39), method=mmd, n_permutations=9)
    assert mmd.kernel_ is None


@pytest.mark.filterwarnings("ignore:MMDAgg over:UserWarning")  # few relabellings on purpose
@pytest.mark.parametrize(
    "method",
    [
        MMD(bandwidth=1.0),
        MMD(bandwidth=1.0, estimator="linear"),
        MMDAgg(bandwidths=[0.5, 2.0]),
        RandomFeatureMMD(bandwidth=1.0, n_features=8),
        MeanGap(),
    ],
    ids=["dense", "linear", "mmdagg", "features", "vmap"],
)
def test_progress_bar_can_be_forced_on_every_path(capsys, method):
    two_sample_test(X, Y, method=method, n_permutations=9, progress=True, rng=0)
    assert "permutation null" in capsys.readouterr().err
    two_sample_test(X, Y, method=method, n_permutations=9, progress=False, rng=0)
    assert capsys.readouterr().err == ""


class SlowMeanGap(ScalarMeanGap):
    """The per-relabelling path with a known cost: 15 ms per statistic."""

    name: ClassVar[str] = "slow_mean_gap"

    def forward(self, x_p, x_q):
        time.sleep(0.015)
        return super().forward(x_p, x_q)


def test_progress_bar_appears_by_itself_after_a_second_on_a_terminal_only(capsys, monkeypatch):
    # 100 statistics of 15 ms each: about 1.5 s. progress=None shows the bar (after tqdm's
    # delay of 1 s) only when stderr is a terminal: captured stderr is not, like a log file.
    with pytest.warns(UserWarning, match="cannot be vectorised"):
        two_sample_test(X, Y, method=SlowMeanGap(), n_permutations=99, rng=0)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with pytest.warns(UserWarning, match="cannot be vectorised"):
        two_sample_test(X, Y, method=SlowMeanGap(), n_permutations=99, rng=0)
    assert "permutation null" in capsys.readouterr().err
    # The same test with 9 relabellings takes 0.15 s and shows nothing.
    with pytest.warns(UserWarning, match="cannot be vectorised"):
        two_sample_test(X, Y, method=SlowMeanGap(), n_permutations=9, rng=0)
    assert capsys.readouterr().err == ""


def test_a_statistic_that_vmap_cannot_trace_warns_at_the_callers_line():
    with pytest.warns(UserWarning, match=r"statistic of 'scalar_mean_gap' cannot be vect") as rec:
        two_sample_test(X, Y, method=ScalarMeanGap(), n_permutations=9, rng=0)
    assert rec[0].filename == __file__


def test_tiles_of_tiny_bandwidths_have_no_subnormal_values():
    # Points 0 to 40 apart and bandwidths down to 1e-3: most kernel values are far below the
    # smallest normal float64 (2.2e-308), where exp returns slow subnormals. Tiles evaluate
    # them as about exp(-700) ~ 1e-304 instead; every value still matches the NumPy Gram
    # matrix to 1e-12 relative or 1e-300 absolute.
    z = normal(60, 2, 69, scale=10.0)
    kernels = [
        Kernel("gaussian", 0.05),
        Kernel("laplace", (1e-3, 1.0)),
        Kernel("rq", 0.05, alpha=2.0),
        Kernel("imq", 1e-3),
    ]
    tile = engine.kernel_tiles(kernels)(torch.as_tensor(z), torch.as_tensor(z), True).numpy()
    for value, kernel in zip(tile, kernels, strict=True):
        expected = reference.gram(kernel.name, z, z, kernel.bandwidths, kernel.alpha)
        np.testing.assert_allclose(value, expected, rtol=1e-12, atol=1e-300)
        assert np.all(np.abs(value) >= np.finfo(np.float64).tiny)
    assert (reference.gram("gaussian", z, z, 0.05) < np.finfo(np.float64).tiny).mean() > 0.9


def test_result_plot_and_reject():
    res = two_sample_test(normal(40, 2, 40), normal(40, 2, 41, shift=2.0), rng=0)
    assert res.reject(0.05)
    ax = res.plot()
    assert len(ax.lines) == 1


@settings(deadline=None, max_examples=25)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(2, 12),
    m=st.integers(2, 12),
    b=st.integers(1, 60),
)
def test_property_p_value_grid_and_row_order_invariance(seed, n, m, b):
    gen = np.random.default_rng(seed)
    x, y = gen.normal(size=(n, 2)), gen.normal(size=(m, 2))
    kw = {"method": MMD(bandwidth=1.0), "n_permutations": b, "rng": seed}
    res = two_sample_test(x, y, **kw)
    k = res.pvalue * (res.n_permutations if res.details["exact"] else res.n_permutations + 1)
    assert 0 < res.pvalue <= 1 and abs(k - round(k)) < 1e-9
    shuffled = two_sample_test(x[gen.permutation(n)], y[gen.permutation(m)], **kw)
    assert shuffled.statistic == pytest.approx(res.statistic, rel=1e-9, abs=1e-12)


# --- other statistics -----------------------------------------------------------------------


@pytest.mark.parametrize("method", [MeanGap(), ScalarMeanGap()], ids=["vmap", "loop"])
@pytest.mark.filterwarnings("ignore:the statistic of 'scalar_mean_gap' cannot be vectorised")
def test_generic_statistics_equal_brute_force(method):
    x, y = normal(4, 2, 42), normal(4, 2, 43, shift=0.8)
    res = two_sample_test(x, y, method=method, n_permutations=99, rng=0)

    def gap(a, b):
        return float(((a.mean(0) - b.mean(0)) ** 2).sum())

    values, p = brute_exact(gap, x, y)
    np.testing.assert_allclose(res.null_distribution, values, rtol=1e-12)
    assert res.pvalue == pytest.approx(p)


def test_hotelling_hook_and_its_f_test():
    x, y = normal(4, 2, 44), normal(4, 2, 45, shift=0.5)
    res = two_sample_test(x, y, method=Moments(), n_permutations=99, rng=0)
    values, p = brute_exact(hotelling_reference, x, y)
    np.testing.assert_allclose(res.null_distribution, values, rtol=1e-10)
    assert res.pvalue == pytest.approx(p) and res.statistic == pytest.approx(values[0])
    # F = (n + m - d - 1) / (d (n + m - 2)) T^2 ~ F(d, n + m - d - 1) (Hotelling, 1931).
    f = (8 - 2 - 1) / (2 * 6) * values[0]
    assert res.details["f_pvalue"] == pytest.approx(stats.f.sf(f, 2, 5), rel=1e-10)


def test_learned_critic_is_fitted_on_one_part_and_tested_on_the_rest():
    x, y = normal(90, 1, 46, shift=0.6), normal(70, 1, 47)
    res = two_sample_test(x, y, method=LogisticRatio(), n_permutations=199, rng=0)
    d = res.details
    assert (d["n_x"], d["n_y"], d["n_fit_x"], d["n_fit_y"]) == (35, 35, 55, 35)
    assert res.statistic > 0 and res.pvalue < 0.05
    # The held-out set is balanced: the number correct is compared with Binomial(70, 1/2).
    k = round(d["accuracy"] * 70)
    assert d["binomial_pvalue"] == pytest.approx(stats.binom.sf(k - 1, 70, 0.5), rel=1e-12)
    assert 0 < d["accuracy_pvalue"] <= 1


def test_learned_statistics_equal_a_direct_computation():
    # Exact enumeration on the held-out parts (2 + 2 points: C(4, 2) = 6 relabellings).
    x, y = normal(4, 1, 48, shift=1.0), normal(5, 1, 49)
    res = two_sample_test(x, y, method=LogisticRatio(), n_permutations=99, rng=0)
    assert res.details["exact"] and res.n_permutations == 6
    # In exact arithmetic the six values are +/- three mean differences of the scores.
    s = np.sort(res.null_distribution)
    np.testing.assert_allclose(s, -s[::-1], atol=1e-12)


# --- MMDAgg, selection, random features, deep kernels ----------------------------------------


@pytest.mark.filterwarnings("ignore:MMDAgg over:UserWarning")  # few relabellings on purpose
def test_mmdagg_equals_brute_force_min_p_aggregation():
    x, y = normal(4, 1, 50), normal(4, 1, 51, shift=1.2)
    method = MMDAgg(kernels=("gaussian", "laplace"), bandwidths=[0.3, 1.0, 3.0])
    res = two_sample_test(x, y, method=method, n_permutations=99, rng=0)
    pooled = np.concatenate([x, y])
    combos = list(itertools.combinations(range(8), 4))
    table = np.empty((6, len(combos)))
    for c, rows in enumerate(combos):
        mask = np.zeros(8, dtype=bool)
        mask[list(rows)] = True
        for k, (name, h) in enumerate(itertools.product(("gaussian", "laplace"), (0.3, 1.0, 3.0))):
            table[k, c] = reference.mmd2(name, pooled[mask], pooled[~mask], h)
    ranks = np.mean(table[:, None, :] >= table[:, :, None] - 1e-12, axis=2)  # p_l of each column
    agg = -np.log(6 * ranks.min(0))
    assert res.details["exact"] and res.statistic == pytest.approx(agg[0])
    assert res.pvalue == pytest.approx(np.mean(agg >= agg[0] - 1e-12))
    np.testing.assert_allclose(res.details["mmd2"], table[:, 0], rtol=RTOL)


def test_mmdagg_forward_is_the_mean_mmd_over_the_collection():
    x, y = torch.as_tensor(normal(30, 2, 52)), torch.as_tensor(normal(25, 2, 53, shift=0.5))
    agg = MMDAgg(bandwidths=[0.5, 2.0]).fit_critic(x, y)
    expected = np.mean(
        [
            reference.mmd2(k, x.numpy(), y.numpy(), h)
            for k in ("gaussian", "laplace")
            for h in (0.5, 2.0)
        ]
    )
    assert float(agg(x, y)) == pytest.approx(expected, rel=RTOL)
    assert len(agg.collection_) == 4


def test_power_criterion_equals_a_dense_computation():
    x, y = normal(30, 2, 54), normal(20, 2, 55, scale=1.5)
    mmd = OptimizedMMD(bandwidths=[0.3, 1.0, 3.0]).fit_critic(
        torch.as_tensor(x), torch.as_tensor(y)
    )
    for h, value in zip(mmd.candidates_, mmd.criterion_, strict=True):
        kxx = reference.gram("gaussian", x, x, h)
        kyy = reference.gram("gaussian", y, y, h)
        kxy = reference.gram("gaussian", x, y, h)
        a = (kxx.sum(1) - 1) / 29 - kxy.mean(1)
        b = (kyy.sum(1) - 1) / 19 - kxy.mean(0)
        var = 4 * a.var(ddof=1) / 30 + 4 * b.var(ddof=1) / 20
        assert value == pytest.approx((a.mean() + b.mean()) / np.sqrt(var + 1e-8), rel=RTOL)
    assert mmd.kernel_.bandwidths == (mmd.candidates_[int(np.argmax(mmd.criterion_))],)


def test_optimized_mmd_finds_a_small_scale_difference_the_median_misses():
    # Q: points of P moved by a tiny 0.05 in a random direction on a 2-D grid of spread 10.
    # At the median bandwidth (~10) the two look identical; at ~0.05 they do not.
    gen = np.random.default_rng(56)
    grid = np.repeat(gen.uniform(0, 10, size=(30, 2)), 10, axis=0)
    x = grid + 0.01 * gen.normal(size=grid.shape)
    y = grid + 0.05 * gen.normal(size=grid.shape)
    median = two_sample_test(x, y, n_permutations=99, rng=0)
    chosen = two_sample_test(x, y, method="mmd_opt", n_permutations=99, rng=0)
    assert median.pvalue > 0.05 and chosen.pvalue == 0.01
    assert chosen.details["bandwidth"] < 0.2 * median.details["bandwidth"]


def test_random_feature_mmd_is_the_mmd_of_its_feature_kernel():
    x, y = torch.as_tensor(normal(25, 3, 57)), torch.as_tensor(normal(20, 3, 58, shift=0.4))
    for est in ("unbiased", "biased"):
        rff = RandomFeatureMMD(bandwidth=1.5, n_features=64, estimator=est).fit_critic(x, y, rng=0)
        fx, fy = rff.features(x).numpy(), rff.features(y).numpy()
        kxx, kyy, kxy = fx @ fx.T, fy @ fy.T, fx @ fy.T
        if est == "biased":
            expected = kxx.mean() + kyy.mean() - 2 * kxy.mean()
        else:
            expected = (
                (kxx.sum() - np.trace(kxx)) / (25 * 24)
                + (kyy.sum() - np.trace(kyy)) / (20 * 19)
                - 2 * kxy.mean()
            )
        assert float(rff(x, y)) == pytest.approx(expected, rel=RTOL)
        res = two_sample_test(x, y, method=rff, n_permutations=20, rng=0)
        # two_sample_test redraws the frequencies from its own stream; its statistic is the
        # same kind of estimate: check it against the exact Gaussian-kernel MMD^2 instead.
        exact = reference.mmd2("gaussian", x.numpy(), y.numpy(), 1.5, est)
        assert abs(res.statistic - exact) < 0.1


@pytest.mark.parametrize(
    ("name", "alpha"), [("gaussian", 1.0), ("laplace", 1.0), ("imq", 1.0), ("rq", 2.0)]
)
def test_random_features_approximate_each_kernel(name, alpha):
    # phi(a)' phi(b) averages F = 4000 cosines bounded by 1: its sd is below 1/sqrt(2F) ~ 0.011
    # (|cos| <= 1, Var(cos) <= 1/2); 0.06 is over 5 sd for each of the 40 pairs.
    x = torch.as_tensor(normal(8, 3, 59))
    y = torch.as_tensor(normal(5, 3, 60))
    rff = RandomFeatureMMD(name, bandwidth=1.3, n_features=4000, alpha=alpha)
    rff.fit_critic(x, y, rng=1)
    approx = (rff.features(x) @ rff.features(y).T).numpy()
    exact = reference.gram(name, x.numpy(), y.numpy(), 1.3, alpha)
    assert np.abs(approx - exact).max() < 0.06


def test_deep_kernel_trains_and_tests_on_held_out_data():
    x, y = normal(120, 2, 61), normal(120, 2, 62, scale=1.8)
    method = DeepKernelMMD(hidden=(16,), n_features=4, max_steps=40, batch_size=64)
    res = two_sample_test(x, y, method=method, n_permutations=99, rng=0)
    assert res.details["n_fit_x"] == 60 and res.details["kernel"] == "deep"
    assert res.pvalue == 0.01
    # forward is the unbiased MMD^2 of its kernel: compare with the dense Gram matrix.
    fitted = DeepKernelMMD(hidden=(8,), n_features=3, max_steps=3, tile_size=7)
    fitted.fit_critic(torch.as_tensor(x[:30]), torch.as_tensor(y[:30]), rng=1)
    a, b = torch.as_tensor(x[:20]), torch.as_tensor(y[:17])
    with torch.no_grad():
        w = fitted._augment(torch.cat([a, b]))
        k = fitted._tile(w, w, True).numpy()
    expected = (
        (k[:20, :20].sum() - 20) / 380
        + (k[20:, 20:].sum() - 17) / (17 * 16)
        - 2 * k[:20, 20:].mean()
    )
    with torch.no_grad():
        assert float(fitted(a, b)) == pytest.approx(expected, rel=RTOL)


@pytest.mark.filterwarnings("ignore:MMDAgg over:UserWarning")  # few relabellings on purpose
def test_test_only_methods_are_reachable_by_name():
    x, y = normal(30, 2, 63), normal(30, 2, 64)
    for name in ("mmdagg", "mmd_opt", "mmd_rff"):
        assert two_sample_test(x, y, method=name, n_permutations=19, rng=0).method == name


# --- registered methods with their own test statistics ---------------------------------------


def test_moment_matching_batched_hotelling_equals_its_hotelling_t2():
    moments = pytest.importorskip("ratiokit.methods.moments")
    x, y = normal(5, 2, 65), normal(4, 2, 66, shift=0.5)
    for method in (moments.MomentMatching("mean"), moments.MomentMatching(ridge=0.1)):
        res = two_sample_test(x, y, method=method, n_permutations=200, rng=0)
        values, p = brute_exact(lambda a, b, mm=method: mm.hotelling_t2(a, b).t2, x, y)
        assert res.details["exact"] and res.n_permutations == 126
        np.testing.assert_allclose(res.null_distribution, values, rtol=1e-9)
        assert res.pvalue == pytest.approx(p)
        assert res.details["f_pvalue"] == pytest.approx(method.hotelling_t2(x, y).pvalue)


def test_ratio_defined_only_at_fitted_points_is_tested_by_its_forward():
    kmm = pytest.importorskip("ratiokit.methods.kmm")
    method = kmm.KernelMeanMatching(bandwidth=1.0)
    x, y = normal(8, 2, 67), normal(8, 2, 68, shift=0.5)
    res = two_sample_test(x, y, method=method, n_permutations=99, rng=0)
    # The held-out halves, as two_sample_test splits them (the first of three streams spawned
    # from rng: one permutation of each sample's rows, the first half held out).
    split = np.random.default_rng(0).spawn(3)[0]
    a, b = x[split.permutation(8)[:4]], y[split.permutation(8)[:4]]
    # forward is the biased MMD^2 with its kernel: brute force over all C(8, 4) relabellings.
    values, p = brute_exact(lambda u, v: reference.mmd2("gaussian", u, v, 1.0, "biased"), a, b)
    assert res.details["exact"] and res.n_permutations == 70
    np.testing.assert_allclose(res.null_distribution, values, rtol=RTOL)
    assert res.pvalue == pytest.approx(p) and res.details["estimator"] == "biased"


# --- registered ratio methods: learned-critic tests ------------------------------------------

# Neural critics: small and briefly trained (validity never depends on the fit, and this
# problem is easy), so the six cases take a few seconds.
NEURAL = {"hidden": (16,), "max_steps": 150}
RATIO_METHODS = {
    "ulsif": {},
    "rulsif": {},
    "kliep": {},
    "classifier": NEURAL,
    "fdiv": NEURAL,
    "bregman": NEURAL,
}


@pytest.mark.parametrize(("name", "settings_"), RATIO_METHODS.items(), ids=list(RATIO_METHODS))
def test_registered_ratio_methods_are_tested_on_held_out_log_ratios(name, settings_):
    # P = N(2, 1), Q = N(0, 1): the Bayes classifier is right 84% of the time, so every fitted
    # ratio separates the 30 + 30 held-out points far beyond all 99 relabellings.
    x, y = normal(60, 1, 70, shift=2.0), normal(60, 1, 71)
    method = METHODS[name](**settings_)
    res = two_sample_test(x, y, method=method, n_permutations=99, rng=0)
    d = res.details
    assert res.method == name and d["statistic"] == "mean log-ratio difference"
    assert (d["n_x"], d["n_y"], d["n_fit_x"], d["n_fit_y"]) == (30, 30, 30, 30)
    assert res.pvalue == 0.01 and d["accuracy"] > 0.65 and d["binomial_pvalue"] < 0.01
    # The statistic, recomputed directly: the method fitted on the other halves (the split
    # and fit streams spawned from rng as two_sample_test documents), scored on the held-out.
    split, fit, _ = np.random.default_rng(0).spawn(3)
    px, py = split.permutation(60), split.permutation(60)
    method.fit_critic(torch.as_tensor(x[px[30:]]), torch.as_tensor(y[py[30:]]), rng=fit)
    with torch.no_grad():
        sx = method.log_ratio(torch.as_tensor(x[px[:30]]))
        sy = method.log_ratio(torch.as_tensor(y[py[:30]]))
    assert res.statistic == pytest.approx(float(sx.mean() - sy.mean()), rel=1e-9)


def test_the_two_sample_docs_page_runs():
    page = Path(__file__).resolve().parents[1] / "docs" / "two_sample.md"
    result = doctest.testfile(str(page), module_relative=False)
    assert result.attempted >= 3 and result.failed == 0


# --- issue 13: no silent wrong answers --------------------------------------------------------


class ConstantStatistic(Discrepancy):
    """A custom statistic that returns one value (NaN or inf) whatever the labels."""

    name: ClassVar[str] = "constant"

    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, x_p, x_q):
        return torch.full((), self.value, dtype=x_p.dtype) + 0.0 * x_p.sum()


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_custom_statistic_raises_instead_of_a_p_value(value):
    # Before: NaN compared as "more extreme than every relabelling" and gave p = 1/(B+1).
    x, y = normal(10, 2, 1), normal(10, 2, 2)
    with pytest.raises(
        rk.NonFiniteStatisticError,
        match=r"the observed statistic of method 'constant' is (nan|inf) and 99 of 99 permuted",
    ):
        two_sample_test(x, y, method=ConstantStatistic(value), n_permutations=99, rng=0)


def test_pvalue_names_non_finite_permuted_statistics():
    null = np.array([0.5, np.nan, 2.0, np.inf, -np.inf])
    with pytest.raises(
        ValueError, match=r"^3 of 5 permuted values of the statistic are NaN or inf"
    ):
        engine.pvalue(1.0, null, "greater", exact=False, scale=1.0)
    # Exact enumeration: the observed column is among the null ones and is not counted twice.
    with pytest.raises(engine.NonFiniteStatisticError, match=r"^the observed .* 1 of 2 perm"):
        engine.pvalue(math.nan, np.array([math.nan, 1.0, math.inf]), "less", exact=True, scale=1)


def _affine_case(method, log_scale, offset):
    """x, y (n = m = 15, d = 2, a mean shift) and the same data as a x + b."""
    x, y = normal(15, 2, 11), normal(15, 2, 12, shift=0.6)
    a = 10.0**log_scale
    b = a * offset  # the offset in units of the data's spread
    res = two_sample_test(x, y, method=method, n_permutations=49, rng=5)
    moved = two_sample_test(a * x + b, a * y + b, method=method, n_permutations=49, rng=5)
    return a, res, moved


@settings(deadline=None, max_examples=25)
@given(
    log_scale=st.floats(-150, 150),
    offset=st.floats(-1e3, 1e3),
    method=st.sampled_from(["mmd", "energy", "moments"]),
)
def test_invariant_statistics_give_the_same_p_value_at_any_scale(log_scale, offset, method):
    # MMD^2 with the median bandwidth (kernel values of distances / median distance), the
    # energy distance (scales by a) and Hotelling's T^2 do not depend on x -> a x + b (a > 0)
    # in exact arithmetic. Before, MMD gave NaN (p = 0.01) at 1e-155, the energy p-value
    # drifted below 1e-15 and Hotelling's T^2 moved with the offset. Here only the rounding of
    # a x + b differs (about 1e-16 |b| / a relative, <= 1e-13): statistics agree to 1e-8
    # relative (T^2 is a ratio with a condition number of order 10) and the p-values exactly
    # (a null value within 1e-9 of the observed one, a tie, is a 1e-8-probability event).
    a, res, moved = _affine_case(method, log_scale, offset)
    units = a if method == "energy" else 1.0
    assert moved.statistic == pytest.approx(res.statistic * units, rel=1e-8)
    np.testing.assert_allclose(moved.null_distribution, res.null_distribution * units, rtol=1e-6)
    assert moved.pvalue == res.pvalue


@pytest.mark.parametrize("log_scale", [-150.0, -20.0, -16.0, 100.0, 150.0])
def test_median_mmd_and_energy_p_values_at_the_issue_scales(log_scale):
    # The scales of the issue, one by one (the property above samples between them).
    for method in ("mmd", "energy", "mmd_opt", "kmm"):
        _, res, moved = _affine_case(method, log_scale, 0.0)
        assert np.isfinite(moved.statistic) and moved.pvalue == res.pvalue


def test_data_beyond_the_kernel_range_is_a_clear_error():
    # At 1e160 the median distance's square overflows: a bandwidth error, not NaN or an
    # OverflowError; the energy distance has no bandwidth and is computed on scaled data.
    x, y = normal(15, 2, 11) * 1e160, normal(15, 2, 12) * 1e160
    with pytest.raises(
        ValueError,
        match=r"^`bandwidth`='median' must resolve to a value between 1.5e-154 and 6.7e\+153",
    ):
        two_sample_test(x, y, n_permutations=9, rng=0)
    res = two_sample_test(x, y, method="energy", n_permutations=9, rng=0)
    base = two_sample_test(x / 1e160, y / 1e160, method="energy", n_permutations=9, rng=0)
    assert res.pvalue == base.pvalue and res.statistic == pytest.approx(base.statistic * 1e160)


@pytest.mark.parametrize("bandwidth", [1e-300, 1e300])
def test_extreme_bandwidth_is_a_clear_error(bandwidth):
    # Before: ZeroDivisionError (1 / h^2 with h^2 = 0) and OverflowError (h^2).
    x, y = normal(15, 2, 11), normal(15, 2, 12)
    with pytest.raises(ValueError, match=r"^`bandwidth` must be between .* got 1e[-+]300\."):
        two_sample_test(x, y, method=MMD(bandwidth=bandwidth), n_permutations=9, rng=0)


def test_bandwidth_far_from_the_data_scale_is_a_clear_error():
    # A user bandwidth of 1 on data at 1e-156: divided by the data's scale it is about 1e156,
    # whose square overflows; at 1e-100 the kernel is computed on unit-scale data and matches the
    # same test on the data and bandwidth both multiplied by 1e100.
    x, y = normal(15, 2, 11), normal(15, 2, 12, shift=1.0)
    with pytest.raises(ValueError, match=r"^`bandwidth` must be within a factor"):
        two_sample_test(x * 1e-156, y * 1e-156, method=MMD(bandwidth=1.0), n_permutations=9)
    small = two_sample_test(
        x * 1e-100, y * 1e-100, method=MMD(bandwidth=1e-100), n_permutations=49, rng=0
    )
    unit = two_sample_test(x, y, method=MMD(bandwidth=1.0), n_permutations=49, rng=0)
    assert small.pvalue == unit.pvalue
    assert small.statistic == pytest.approx(unit.statistic, rel=1e-10)


def test_too_many_permutations_are_refused_before_allocating():
    # Before: draw_labels allocated (n + m) x (B + 1) booleans, 18.6 GiB here: MemoryError.
    # 4 GiB / 200 rows = 21474836 columns, so B = 21474835 at most.
    x, y = normal(100, 2, 1), normal(100, 2, 2)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"^`n_permutations` must be at most 21474835 for n \+"):
        two_sample_test(x, y, n_permutations=10**8, rng=0)
    assert time.perf_counter() - start < 1.0
    # A learned critic tests on min(n, m) // 2 = 50 held-out points of each: 100 rows.
    with pytest.raises(ValueError, match=r"at most 42949671 for n \+ m = 100 rows"):
        two_sample_test(x, y, method="classifier", n_permutations=10**8, rng=0)
    # Few distinct labellings are enumerated, whatever B: C(6, 3) = 20 columns of 6 rows.
    res = two_sample_test(x[:3], y[:3], method="energy", n_permutations=10**12, rng=0)
    assert res.details["exact"] and res.n_permutations == 20


def test_mmdagg_warns_below_the_relabellings_its_kernels_need():
    # The derived rule (see MMDAgg): C = B + 1 >= 2 K / 0.05 = 40 K columns. K = 3 kernels
    # need 120 columns: B = 118 warns, B = 119 does not.
    x, y = normal(20, 1, 1), normal(20, 1, 2)
    method = MMDAgg(kernels="gaussian", bandwidths=[0.5, 1.0, 2.0])
    with pytest.warns(UserWarning, match=r"over 3 kernels had 119 .* at least 119,") as record:
        two_sample_test(x, y, method=method, n_permutations=118, rng=0)
    assert record[0].filename == __file__  # points at the user's call
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        two_sample_test(x, y, method=method, n_permutations=119, rng=0)
    # Exact enumeration: C(6, 3) = 20 < 40 columns for one kernel, whatever B.
    one = MMDAgg(kernels="gaussian", bandwidths=[1.0])
    with pytest.warns(UserWarning, match=r"over 1 kernel had 20 .* only 20 distinct relab"):
        two_sample_test(x[:3], y[:3], method=one, n_permutations=999, rng=0)


def test_rng_none_is_fresh_entropy_and_an_int_is_bit_identical():
    # SPEC 7 everywhere: None draws fresh entropy (it was seed 0 in five inner places).
    gen = np.random.default_rng(8)
    # 1200 pooled points: above the 1000 of the median's and the grids' subsamples.
    x = torch.tensor(gen.normal(size=(600, 2)))
    y = torch.tensor(gen.normal(size=(600, 2)))

    def draws(rng):
        rff = RandomFeatureMMD(n_features=8).fit_critic(x, y, rng=rng).frequencies_
        deep = DeepKernelMMD(hidden=(4,), n_features=2, max_steps=1)
        deep = deep.fit_critic(x[:40], y[:40], rng=rng).network_[0].weight.detach()
        grid = OptimizedMMD(n_bandwidths=3).fit_critic(x, y, rng=rng).candidates_
        median = Kernel().resolve(x, y, rng=rng).bandwidths
        agg = MMDAgg(n_bandwidths=2).fit_critic(x, y, rng=rng).collection_
        return [
            rff,
            deep,
            torch.tensor(grid),
            torch.tensor(median),
            torch.tensor(agg[0].bandwidths),
        ]

    fresh, again = draws(None), draws(None)
    assert all(not torch.equal(a, b) for a, b in zip(fresh, again, strict=True))
    seeded, same = draws(4), draws(4)
    assert all(torch.equal(a, b) for a, b in zip(seeded, same, strict=True))
    # forward takes no rng and stays a deterministic function of its inputs.
    assert torch.equal(MMD()(x, y), MMD()(x, y))


# --- per-feature standardisation (issue 19, item 4) -------------------------------------------


def _by_hand(x, y):
    """Pooled per-feature standardisation in NumPy (ddof 0; a constant feature is only
    centred): the independent reference of ``standardize=True``."""
    pooled = np.concatenate([x, y])
    std = pooled.std(axis=0)
    std[std == 0] = 1.0
    mean = pooled.mean(axis=0)
    return (x - mean) / std, (y - mean) / std


@pytest.mark.filterwarnings("ignore:MMDAgg over")  # 99 relabellings suffice for equality
@pytest.mark.parametrize("method", ["mmd", "energy", "mmdagg", "ulsif"])
def test_standardize_equals_standardising_the_pooled_sample_by_hand(method):
    x, y = normal(12, 3, 0) * [1.0, 300.0, 0.01], normal(10, 3, 1, shift=0.5) * [1, 300, 0.01]
    res = two_sample_test(x, y, method=method, n_permutations=99, rng=3, standardize=True)
    ref = two_sample_test(*_by_hand(x, y), method=method, n_permutations=99, rng=3)
    # The two compute the same standardised values up to rounding (~1e-16 relative).
    assert res.statistic == pytest.approx(ref.statistic, rel=1e-8)
    np.testing.assert_allclose(res.null_distribution, ref.null_distribution, rtol=1e-8)
    assert res.pvalue == ref.pvalue and res.details["standardized"]


@settings(deadline=None, max_examples=20)
@given(
    scales=st.lists(st.floats(-12, 12), min_size=3, max_size=3),
    offsets=st.lists(st.floats(-1e3, 1e3), min_size=3, max_size=3),
)
def test_standardized_p_value_does_not_depend_on_the_features_units(scales, offsets):
    # Per-feature x -> a_j (x + b_j) (a_j > 0) leaves the standardised data unchanged in exact
    # arithmetic, so the p-value is unchanged (a null value within 1e-9 of the observed one,
    # a tie, needs rounding far above the ~1e-16 |b_j| <= 1e-13 relative of the shift).
    a, b = 10.0 ** np.array(scales), np.array(offsets)
    x, y = normal(10, 3, 4), normal(9, 3, 5, shift=0.7)
    res = two_sample_test(x, y, n_permutations=49, rng=1, standardize=True)
    moved = two_sample_test(a * (x + b), a * (y + b), n_permutations=49, rng=1, standardize=True)
    assert moved.statistic == pytest.approx(res.statistic, rel=1e-8)
    assert moved.pvalue == res.pvalue


def test_standardisation_is_the_same_map_for_every_relabelling_bit_for_bit():
    # The pooled moments are summed in the rows' canonical order, so any relabelling (here a
    # random split of the pooled rows) is standardised by exactly the same map.
    from ratiokit.two_sample import _standardize

    gen = np.random.default_rng(3)
    z = torch.tensor(gen.normal(size=(30, 3)) * [1e-3, 1.0, 1e4] + [1e5, 0.0, -7.0])
    a, b = _standardize(z[:12], z[12:])
    order = torch.as_tensor(gen.permutation(30))
    a2, b2 = _standardize(z[order[:17]], z[order[17:]])
    assert torch.equal(torch.cat([a2, b2]), torch.cat([a, b])[order])


def test_standardize_leaves_a_constant_feature_without_effect():
    # A constant feature adds 0 to every distance: the test equals the test without it
    # (before, dividing by its standard deviation 0 would have made it NaN).
    x, y = normal(10, 2, 6), normal(10, 2, 7, shift=0.6)
    with_const = [np.column_stack([s, np.full(len(s), 5.0)]) for s in (x, y)]
    res = two_sample_test(*with_const, n_permutations=99, rng=2, standardize=True)
    ref = two_sample_test(x, y, n_permutations=99, rng=2, standardize=True)
    assert res.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert res.pvalue == ref.pvalue


def test_feature_scales_a_hundredfold_apart_warn_at_the_callers_line():
    # Sample standard deviations of 10 + 10 normal draws lie within a factor 2 of 1, so
    # units 1000 apart give a ratio far above 100 and units 10 apart far below.
    x, y = normal(10, 3, 8) * [1.0, 0.0, 1e3], normal(10, 3, 9) * [1.0, 0.0, 1e3]
    with pytest.warns(UserWarning, match=r"feature 2 over feature 0.*`standardize=True`") as rec:
        two_sample_test(x, y, n_permutations=9, rng=0)
    assert rec[0].filename == __file__
    # Below the factor of 100 (the constant middle feature does not count), with
    # standardize=True, and for Hotelling's T^2 (invariant to units) there is no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        two_sample_test(x * [10, 1, 1e-3], y * [10, 1, 1e-3], n_permutations=9, rng=0)
        two_sample_test(x, y, n_permutations=9, rng=0, standardize=True)
        two_sample_test(x, y, method="moments", n_permutations=9, rng=0)


def test_standardize_must_be_a_bool():
    with pytest.raises(TypeError, match=r"`standardize` must be True or False; got 'yes'\."):
        two_sample_test(X, Y, standardize="yes")


@pytest.mark.parametrize("method", ["mmd", "energy"])
def test_standardize_gains_power_on_wine_features_of_different_scales(method):
    # Wine (sklearn's copy of the UCI data), class 1 vs 2, 8 vs 8 points drawn without
    # replacement: the proline column's pooled sd is 151, nonflavanoid phenols' 0.13, so raw
    # distances see proline alone. Over 100 such draws (B = 199, 5% level) the power was
    # measured at 0.50 (MMD) and 0.49 (energy) raw and 1.00 for both standardised. Bars for
    # these 30 draws: a power >= 0.97 (the rule-of-three 95% lower bound after 100 of 100)
    # rejects at least 25 times except with probability 0.001, and a power of 0.5 at most 23
    # times.
    from sklearn.datasets import load_wine

    data, target = load_wine(return_X_y=True)
    classes = data[target == 1], data[target == 2]
    rejections = {False: 0, True: 0}
    for seed in range(30):
        gen = np.random.default_rng([seed, 19])
        x, y = (c[gen.choice(len(c), 8, replace=False)] for c in classes)
        for standardize in rejections:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # the raw scales warn
                res = two_sample_test(
                    x, y, method=method, n_permutations=199, rng=seed, standardize=standardize
                )
            rejections[standardize] += res.pvalue <= 0.05
    assert rejections[True] >= 25 and rejections[False] <= 23, rejections


# --- the public test hooks ----------------------------------------------------------------


class DoubledMMD(MMD):
    """An MMD subclass that redefines the statistic (forward) but not null_statistics."""

    name: ClassVar[str] = "doubled_mmd"

    def forward(self, x_p, x_q):
        return 2.0 * super().forward(x_p, x_q)


def test_subclass_overriding_forward_is_tested_on_its_own_forward():
    # Reference: the parent's test with the same rng draws the same relabellings and
    # bandwidth, so every statistic of the subclass is exactly twice the parent's (up to
    # float64 summation order: 1e-10 relative). Before the hooks, an MMD subclass silently got
    # MMD's batched null: the statistic and null were MMD's, not twice them.
    x, y = normal(15, 2, 30), normal(12, 2, 31) + 0.5
    parent = two_sample_test(x, y, method=MMD(bandwidth=1.0), n_permutations=49, rng=3)
    with pytest.warns(UserWarning, match="'doubled_mmd' cannot be vectorised") as record:
        child = two_sample_test(
            x, y, method=DoubledMMD(bandwidth=1.0), n_permutations=49, rng=3
        )  # the default null: forward on every relabelling (the median resolver blocks vmap)
    assert record[0].filename == __file__  # the warning points at the user's call
    assert child.statistic == pytest.approx(2.0 * parent.statistic, rel=RTOL)
    np.testing.assert_allclose(child.null_distribution, 2.0 * parent.null_distribution, rtol=RTOL)
    assert child.pvalue == parent.pvalue and child.details["statistic"] == "forward"


class FixedNull(Discrepancy):
    """Declares test_fit="none" and returns known statistics from null_statistics."""

    name: ClassVar[str] = "fixed_null"
    test_fit: ClassVar[str] = "none"

    def fit_critic(self, x_p, x_q, *, rng=None):
        raise AssertionError("test_fit='none': the test must not fit")

    def forward(self, x_p, x_q):
        return (x_p.mean() - x_q.mean()) ** 2

    def null_statistics(self, z, labels, progress):
        values = np.arange(labels.matrix.shape[1], 0, -1, dtype=float)  # observed largest
        return engine.Statistics(values, 1.0, {"hook": True})


def test_null_statistics_hook_is_what_the_test_ranks():
    # The observed statistic (C) exceeds all B = 9 null values (C - 1, ..., 1): p = 1 / 10.
    x, y = normal(20, 1, 32), normal(20, 1, 33)
    res = two_sample_test(x, y, method=FixedNull(), n_permutations=9, rng=0)
    assert res.statistic == 10.0 and res.pvalue == pytest.approx(0.1)
    assert res.details["hook"] and res.null_distribution.tolist() == list(range(9, 0, -1))


def test_unknown_test_fit_is_an_error():
    bad = FixedNull()
    bad.test_fit = "sometimes"
    with pytest.raises(ValueError, match=r"`test_fit` must be one of .*; got 'sometimes'\."):
        two_sample_test(X, Y, method=bad)


# --- issue 18: train once, test many (refit=False), fit_size --------------------------------

# Reference draws, independent of every tested sample below: the critics are fitted on them.
X_REF, Y_REF = normal(40, 2, 80), normal(40, 2, 81, shift=0.8)
FIXED_CRITICS = {
    "mmd_opt": lambda: OptimizedMMD(),
    "mmd_deep": lambda: DeepKernelMMD(hidden=(8,), n_features=3, max_steps=20, batch_size=32),
    "classifier": lambda: rk.methods.Classifier(critic=LogisticRegression()),
    "logistic": LogisticRatio,
}


def fitted_critic(name):
    method = FIXED_CRITICS[name]()
    fitted = method.fit_critic(torch.as_tensor(X_REF), torch.as_tensor(Y_REF), rng=0)
    assert fitted is method and method.is_fitted()  # fit_critic returns the fitted method
    return method


def direct_statistic(method, a, b):
    """The statistic from a direct call: held-out log-ratio difference, or forward (MMD^2)."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    with torch.no_grad():
        if method.has_log_ratio:
            return float(method.log_ratio(a).mean() - method.log_ratio(b).mean())
        return float(method(a, b))


@pytest.mark.parametrize("name", list(FIXED_CRITICS))
def test_fitted_critic_without_refit_equals_brute_force_on_all_the_data(name):
    method = fitted_critic(name)
    before = {k: v.clone() for k, v in method.state_dict().items()}
    x, y = normal(5, 2, 82), normal(4, 2, 83, shift=0.8)
    direct = direct_statistic(method, x, y)
    res = two_sample_test(x, y, method=method, refit=False, n_permutations=199, rng=0)
    # All 5 + 4 points are tested (no split, no fit): C(9, 5) = 126 <= 199 relabellings, all
    # enumerated; brute force recomputes the fitted method's statistic on each of them.
    values, p = brute_exact(lambda a, b: direct_statistic(method, a, b), x, y)
    assert res.details["exact"] and res.n_permutations == 126
    assert (res.details["n_x"], res.details["n_y"], res.details["refit"]) == (5, 4, False)
    assert "n_fit_x" not in res.details
    assert res.statistic == pytest.approx(direct, rel=RTOL)
    np.testing.assert_allclose(res.null_distribution, values, rtol=RTOL, atol=1e-15)
    assert res.pvalue == pytest.approx(p)
    # The user's fitted instance is left as it was: same state, same statistic.
    after = method.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert direct_statistic(method, x, y) == direct


def test_fixed_critic_tests_each_new_batch_as_fitted():
    # Drift monitoring: one fit on reference data, then batches; a batch like the reference's
    # P vs a shifted batch is rejected, two draws of P are not, and each p-value is the one of
    # the same fixed kernel given explicitly (MMD with the selected bandwidth, no selection).
    method = fitted_critic("mmd_opt")
    fixed = MMD(bandwidth=method.kernel_.bandwidths[0])
    for seed, shift, rejected in [(90, 0.0, False), (91, 1.0, True)]:
        x, y = normal(60, 2, seed), normal(60, 2, seed + 100, shift=shift)
        res = two_sample_test(x, y, method=method, refit=False, n_permutations=199, rng=seed)
        ref = two_sample_test(x, y, method=fixed, n_permutations=199, rng=seed)
        assert res.pvalue == ref.pvalue and res.reject(0.05) == rejected
        np.testing.assert_allclose(res.null_distribution, ref.null_distribution, rtol=RTOL)


@pytest.mark.parametrize(
    ("method", "kwargs", "error", "match"),
    [
        (OptimizedMMD(), {}, ValueError, r"`refit` must be True for an unfitted method; got Fa"),
        (DeepKernelMMD(), {}, ValueError, r"`refit` must be True for an unfitted method"),
        ("mmd_opt", {}, ValueError, r"`refit` must be True for an unfitted method"),
        ("mmd", {}, ValueError, r"`refit` must be True for method 'mmd', which has no learned"),
        (MMD(bandwidth=1.0), {}, ValueError, r"method 'mmd', which has no learned critic"),
        ("moments", {}, ValueError, r"method 'moments', which has no learned critic .*'none'"),
        ("fitted", {"standardize": True}, ValueError, r"`standardize` must be False with `ref"),
        ("fitted", {"fit_size": 0.3}, ValueError, r"`fit_size` must be None unless .*; got 0\.3"),
    ],
)
def test_refit_false_needs_a_fitted_learned_critic(method, kwargs, error, match):
    method = fitted_critic("mmd_opt") if method == "fitted" else method
    with pytest.raises(error, match=match):
        two_sample_test(X, Y, method=method, refit=False, **kwargs)


def test_refit_must_be_a_bool():
    with pytest.raises(TypeError, match=r"`refit` must be True or False; got 'no'\."):
        two_sample_test(X, Y, method=fitted_critic("mmd_opt"), refit="no")


def test_unfitted_methods_are_not_fitted_and_fitted_ones_are():
    # is_fitted: a fitted attribute (name ending in _) set where a fresh instance has None.
    assert not any(cls().is_fitted() for cls in METHODS.values())
    x = torch.as_tensor(X_REF)
    assert MMD().fit_critic(x, x + 1.0).is_fitted()
    assert DeepKernelMMD(hidden=(4,), n_features=2).init_critic(x, x, rng=0).is_fitted()


@pytest.mark.parametrize(
    ("fit_size", "error", "match"),
    [
        (0.0, ValueError, r"`fit_size` must be a real number in \(0, 1\); got 0\.0\."),
        (1.0, ValueError, r"`fit_size` must be a real number in \(0, 1\); got 1\.0\."),
        (float("nan"), ValueError, r"`fit_size` must be a real number in \(0, 1\); got nan\."),
        ("half", TypeError, r"`fit_size` must be a real number in \(0, 1\); got 'half'\."),
        (True, TypeError, r"`fit_size` must be a real number in \(0, 1\); got True\."),
        # 15 points in the smaller sample: 0.9 fits on ceil(13.5) = 14 and leaves 1 to test;
        # 0.05 fits on ceil(0.75) = 1; the method needs at least 2 (its min_samples) in each part.
        (0.9, ValueError, r"`fit_size` must leave at least 2 points .* into 14 to fit and 1 t"),
        (0.05, ValueError, r"`fit_size` must leave at least 2 points .* into 1 to fit and 14"),
    ],
)
def test_fit_size_is_validated(fit_size, error, match):
    with pytest.raises(error, match=match):
        two_sample_test(X, Y, method=OptimizedMMD(), fit_size=fit_size)


def test_fit_size_is_refused_where_nothing_is_fitted_on_a_split():
    with pytest.raises(ValueError, match=r"`fit_size` must be None unless .*; got 0\.5\."):
        two_sample_test(X, Y, method="mmd", fit_size=0.5)


def test_fit_size_sets_the_split_and_its_default_is_the_half():
    x, y = normal(50, 1, 84, shift=0.5), normal(40, 1, 85)
    method = OptimizedMMD(bandwidths=[0.5, 1.0, 2.0])
    default = two_sample_test(x, y, method=method, n_permutations=99, rng=0)
    half = two_sample_test(x, y, method=method, n_permutations=99, rng=0, fit_size=0.5)
    assert half.pvalue == default.pvalue and half.statistic == default.statistic
    np.testing.assert_array_equal(half.null_distribution, default.null_distribution)
    assert (default.details["n_x"], default.details["n_fit_x"]) == (20, 30)
    # fit_size 0.8: 40 - 0.8 * 40 = 8 points of each sample held out, the rest (42 and 32)
    # fitted on; recomputed from the split stream as two_sample_test documents it.
    res = two_sample_test(x, y, method=method, n_permutations=99, rng=0, fit_size=0.8)
    d = res.details
    assert (d["n_x"], d["n_y"], d["n_fit_x"], d["n_fit_y"]) == (8, 8, 42, 32)
    split = np.random.default_rng(0).spawn(3)[0]
    px, py = split.permutation(50), split.permutation(40)
    direct = OptimizedMMD(bandwidths=[0.5, 1.0, 2.0])
    direct.fit_critic(torch.as_tensor(x[px[8:]]), torch.as_tensor(y[py[8:]]))
    expected = direct_statistic(direct, x[px[:8]], y[py[:8]])
    assert res.statistic == pytest.approx(expected, rel=RTOL)


def test_cli_test_command_takes_the_fit_size(tmp_path, capsys):
    from ratiokit import cli

    x, y = normal(30, 2, 86), normal(30, 2, 87, shift=1.0)
    a, b = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(a, x), np.save(b, y)
    argv = ["test", str(a), str(b), "--method", "mmd_opt", "--seed", "0", "--json"]
    assert cli.main([*argv, "--permutations", "99", "--fit-size", "0.7"]) == 0
    out = json.loads(capsys.readouterr().out)
    res = two_sample_test(x, y, method="mmd_opt", n_permutations=99, rng=0, fit_size=0.7)
    assert out["pvalue"] == res.pvalue and out["details"]["n_x"] == 9  # 30 - 0.7 * 30
    assert cli.main([*argv, "--fit-size", "1.5"]) == 1
    assert "`fit_size` must be a real number in (0, 1)" in capsys.readouterr().err


def test_deep_kernel_criterion_gradient_equals_central_differences():
    # The power criterion MMD^2_u / sqrt(sigma^2 + reg) of the deep kernel, differentiated by
    # autograd in every parameter (network, log-scales, logit epsilon), against central
    # differences (f(t + h) - f(t - h)) / 2h in float64. With h = 1e-6 the truncation error,
    # O(h^2 f'''), is ~1e-12 and the rounding error ~eps |f| / h ~ 1e-10 relative, so 1e-6
    # (relative to the largest gradient) bounds both with a wide margin.
    x, y = torch.as_tensor(normal(12, 2, 88)), torch.as_tensor(normal(10, 2, 89, scale=1.5))
    method = DeepKernelMMD(hidden=(5,), n_features=3).init_critic(x, y, rng=0)
    with torch.no_grad():  # a non-trivial epsilon, so its gradient is exercised too
        method.logit_eps_.fill_(-0.5)
    params = dict(method.named_parameters())
    assert {"log_scales_", "logit_eps_"} <= params.keys() and len(params) == 6
    grads = torch.autograd.grad(method._criterion(x, y), list(params.values()))
    h = 1e-6
    numeric = []
    with torch.no_grad():
        for p in params.values():
            flat = p.view(-1)
            g = torch.empty_like(flat)
            for i in range(flat.numel()):
                saved = flat[i].item()
                flat[i] = saved + h
                up = float(method._criterion(x, y))
                flat[i] = saved - h
                down = float(method._criterion(x, y))
                flat[i] = saved
                g[i] = (up - down) / (2 * h)
            numeric.append(g.view_as(p))
    top = max(float(g.abs().max()) for g in grads)
    assert top > 0
    for name, g, n in zip(params, grads, numeric, strict=True):
        np.testing.assert_allclose(g.numpy(), n.numpy(), atol=1e-6 * top, err_msg=name)


# ----------------------------------------------------------------------------- deep kernel starts


def test_deep_kernel_starting_values_are_applied():
    x, y = (torch.as_tensor(normal(50, 2, s)) for s in (71, 72))
    set_ = DeepKernelMMD(
        hidden=(4,), n_features=2, bandwidth=0.3, feature_bandwidth=0.05, epsilon=0.5
    ).init_critic(x, y, rng=0)
    assert set_.log_scales_.exp().tolist() == pytest.approx([0.05, 0.3], rel=1e-12)
    assert float(torch.sigmoid(set_.logit_eps_.detach())) == pytest.approx(0.5, rel=1e-12)
    # "median/k": the median pairwise distance of the pooled sample (inputs, or the untrained
    # features phi), divided by k; recomputed here by brute force (torch's median of an even
    # count is the lower middle value).
    med = DeepKernelMMD(
        hidden=(4,), n_features=2, bandwidth="median/4", feature_bandwidth="median"
    ).init_critic(x, y, rng=0)
    pooled = torch.cat([x, y]).numpy()
    features = med.network_(torch.cat([x, y])).detach().numpy()

    def median_distance(z):
        d = np.sort(np.linalg.norm(z[:, None] - z[None], axis=-1)[np.triu_indices(len(z), 1)])
        return d[(len(d) - 1) // 2]

    scales = med.log_scales_.exp().tolist()
    assert scales[1] == pytest.approx(median_distance(pooled) / 4, rel=1e-12)
    assert scales[0] == pytest.approx(median_distance(features), rel=1e-12)


def test_deep_kernel_architecture_is_settable():
    x, y = (torch.as_tensor(normal(30, 3, s)) for s in (75, 76))
    method = DeepKernelMMD(hidden=(6, 5), n_features=4, activation="tanh")
    phi = method.init_critic(x, y, rng=0).network_
    # Linear(3, 6) -> tanh -> Linear(6, 5) -> tanh -> Linear(5, 4), checked layer by layer.
    assert [type(layer) for layer in phi] == [
        torch.nn.Linear,
        torch.nn.Tanh,
        torch.nn.Linear,
        torch.nn.Tanh,
        torch.nn.Linear,
    ]
    assert [(layer.in_features, layer.out_features) for layer in phi[::2]] == [
        (3, 6),
        (6, 5),
        (5, 4),
    ]
    with torch.no_grad():
        expected = torch.tanh(phi[2](torch.tanh(phi[0](x))))
        np.testing.assert_array_equal(phi(x).numpy(), phi[4](expected).numpy())
    # The default is Liu et al.'s softplus; no hidden layer gives linear features.
    assert isinstance(DeepKernelMMD().init_critic(x, y, rng=0).network_[1], torch.nn.Softplus)
    assert len(DeepKernelMMD(hidden=()).init_critic(x, y, rng=0).network_) == 1


def test_deep_kernel_full_batch_is_every_point():
    x, y = (torch.as_tensor(normal(40, 2, s)) for s in (73, 74))
    settings = dict(hidden=(4,), n_features=2, max_steps=5)
    full = DeepKernelMMD(batch_size=None, **settings).fit_critic(x, y, rng=3)
    # A batch at least the sample size takes all rows each step: the same training.
    big = DeepKernelMMD(batch_size=1000, **settings).fit_critic(x, y, rng=3)
    np.testing.assert_array_equal(full.history_.critic_loss, big.history_.critic_loss)
    # Step 1's loss is minus the criterion of the untrained kernel on all the points (the
    # same initialisation from the same seed; row order changes only the rounding).
    fresh = DeepKernelMMD(**settings).init_critic(x, y, rng=3)
    with torch.no_grad():
        first = -float(fresh._criterion(x, y))
    assert full.history_.critic_loss[0] == pytest.approx(first, rel=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bandwidth": "mean"}, "`bandwidth` must be a positive float, 'median' or 'median/k'"),
        ({"feature_bandwidth": "median/-2"}, "`feature_bandwidth` must be a positive float"),
        ({"bandwidth": 0.0}, "`bandwidth` must be a positive real number"),
        ({"epsilon": 1.0}, r"`epsilon` must be in \(0, 1\); got 1.0"),
        ({"epsilon": 0.0}, "`epsilon` must be a positive real number"),
        ({"batch_size": 1}, "`batch_size` must be an integer >= 2"),
        ({"activation": "swish"}, "`activation` must be one of"),
    ],
)
def test_deep_kernel_start_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DeepKernelMMD(**kwargs)
