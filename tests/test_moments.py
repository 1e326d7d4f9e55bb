"""Moment matching: brute-force references, the exponential tilt against closed-form Gaussian
ratios and KL, Hotelling's T^2 null law, properties, bad input and the method contract.

Statistical checks use fixed seeds; each tolerance is a multiple of a standard error derived in
a comment (5 standard errors: a two-sided normal tail of 6e-7 for a correct estimator).
"""

from __future__ import annotations

import copy
import itertools
import math
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

import ratiokit as rk
from ratiokit.methods import METHODS, moments
from ratiokit.methods.moments import HotellingT2, MomentMatching
from ratiokit.synthetic import GaussianShift, ScaleChange
from tests import test_common as common


def sin_and_product(x):
    """A user statistic (module level, so the method pickles): sin of each feature and the
    product of all features."""
    return torch.cat([torch.sin(x), x.prod(dim=1, keepdim=True)], dim=1)


def reference_features(x, statistics, degree=2):
    """s(x) in NumPy, independently of the torch code: monomials from exponent vectors.

    The order of the statistics differs from ratiokit's; both distances are invariant to a
    permutation of the statistics (and the ridge ``tr(S) / k`` too).
    """
    if statistics == "sin":
        return np.column_stack([np.sin(x), x.prod(axis=1)])
    top = {"mean": 1, "mean_cov": 2, "poly": degree}[statistics]
    d = x.shape[1]
    columns = [
        np.prod(x ** np.array(powers), axis=1)
        for powers in itertools.product(range(top + 1), repeat=d)
        if 1 <= sum(powers) <= top
    ]
    return np.column_stack(columns)


def reference_distance(x, y, statistics, weighting, degree=2, ridge=1e-8):
    """(mean_x s - mean_y s)' W (mean_x s - mean_y s) by its textbook definition."""
    s_x, s_y = reference_features(x, statistics, degree), reference_features(y, statistics, degree)
    delta = s_x.mean(0) - s_y.mean(0)
    if weighting == "identity":
        return float(delta @ delta)
    n, m, k = len(x), len(y), s_x.shape[1]
    pooled = ((n - 1) * np.cov(s_x.T, ddof=1) + (m - 1) * np.cov(s_y.T, ddof=1)) / (n + m - 2)
    pooled = np.atleast_2d(pooled) + ridge * np.trace(np.atleast_2d(pooled)) / k * np.eye(k)
    return float(delta @ np.linalg.solve(pooled, delta))


CASES = [("mean", 2), ("mean_cov", 2), ("poly", 3), ("sin", 2)]


def make(statistics, degree=2, **kwargs):
    return MomentMatching(
        sin_and_product if statistics == "sin" else statistics, degree=degree, **kwargs
    )


@pytest.mark.parametrize(("statistics", "degree"), CASES)
@pytest.mark.parametrize("weighting", ["identity", "hotelling"])
def test_forward_against_brute_force_reference(statistics, degree, weighting):
    gen = np.random.default_rng(20)
    x, y = gen.normal(size=(37, 3)), gen.normal(0.3, 1.2, size=(29, 3))
    expected = reference_distance(x, y, statistics, weighting, degree)
    got = make(statistics, degree, weighting=weighting)(torch.tensor(x), torch.tensor(y))
    assert got.shape == () and got.dtype == torch.float64
    assert float(got) == pytest.approx(expected, rel=1e-10)


def test_feature_counts_and_mean_cov_layout():
    x = torch.tensor([[2.0, 3.0, 5.0]], dtype=torch.float64)
    # x, then the upper triangle of x x' row by row: x1^2, x1 x2, x1 x3, x2^2, x2 x3, x3^2.
    expected = [2, 3, 5, 4, 6, 10, 9, 15, 25]
    assert MomentMatching("mean_cov").features(x)[0].tolist() == expected
    assert MomentMatching("poly", degree=2).features(x).tolist() == [expected]
    # C(d + D, d) - 1 monomials of total degree 1..D.
    assert MomentMatching("poly", degree=4).features(x).shape == (1, math.comb(3 + 4, 3) - 1)
    assert MomentMatching("poly", degree=1).features(x).tolist() == x.tolist()
    # Degree 3 block: products over itertools' combinations with replacement, in its order.
    cubes = [
        math.prod(x[0, list(c)].tolist())
        for c in itertools.combinations_with_replacement(range(3), 3)
    ]
    assert MomentMatching("poly", degree=3).features(x)[0, 9:].tolist() == cubes


def test_hotelling_t2_is_scaled_forward_and_f_transform():
    gen = np.random.default_rng(21)
    x, y = gen.normal(size=(30, 3)), gen.normal(0.4, 1.0, size=(25, 3))
    method = MomentMatching("mean", weighting="hotelling")
    result = method.hotelling_t2(x, y)
    assert isinstance(result, HotellingT2) and result[1:] == (3, 30 + 25 - 3 - 1)
    n, m = 30, 25
    assert result.t2 == pytest.approx(
        n * m / (n + m) * reference_distance(x, y, "mean", "hotelling"), rel=1e-10
    )
    assert result.t2 == pytest.approx(
        n * m / (n + m) * float(method(torch.tensor(x), torch.tensor(y))), rel=1e-12
    )
    f_value = (n + m - 3 - 1) / (3 * (n + m - 2)) * result.t2
    assert result.f_statistic == pytest.approx(f_value, rel=1e-14)
    assert result.pvalue == pytest.approx(stats.f.sf(f_value, 3, n + m - 4), rel=1e-12)


def test_hotelling_in_one_dimension_is_the_pooled_t_test():
    # With k = 1, T^2 is the square of Student's pooled two-sample t, and F(1, n + m - 2) is
    # t^2's law: the p-value is scipy's two-sided equal-variance t-test p-value. A ridge of
    # 1e-15 changes T^2 by that much relatively, below the tolerance.
    gen = np.random.default_rng(22)
    x, y = gen.normal(size=17), gen.normal(0.5, 1.0, size=23)
    result = MomentMatching("mean", ridge=1e-15).hotelling_t2(x, y)
    reference = stats.ttest_ind(x, y, equal_var=True)
    assert result.t2 == pytest.approx(reference.statistic**2, rel=1e-10)
    assert result.pvalue == pytest.approx(reference.pvalue, rel=1e-8)


def test_hotelling_pvalues_uniform_under_the_null():
    # R = 200 seeds of n = m = 8 Gaussian points in d = 4, so df2 = 8 + 8 - 4 - 1 = 11 is
    # small and the exact F law differs clearly from its chi^2(k) limit. Under H0 the p-values
    # are exactly uniform: rejections at 0.05 are Binomial(200, 0.05), and
    # binom.interval(0.998, 200, 0.05) = [2, 21] holds them with probability >= 0.998; the KS
    # test of uniformity fails at level 1e-3. The same T^2 read against chi^2(4) rejects
    # about 19% of the time (T^2 > 9.49 means F > 1.86, and P(F(4, 11) > 1.86) = 0.19), which
    # lies far above the interval: the check can tell the exact law from the asymptotic one.
    gen = np.random.default_rng(23)
    method = MomentMatching("mean")
    results = [
        method.hotelling_t2(gen.normal(size=(8, 4)), gen.normal(size=(8, 4))) for _ in range(200)
    ]
    pvalues = np.array([r.pvalue for r in results])
    low, high = stats.binom.interval(0.998, 200, 0.05)
    assert (low, high) == (2, 21)
    assert low <= (pvalues <= 0.05).sum() <= high
    assert stats.kstest(pvalues, "uniform").pvalue > 1e-3
    chi2_pvalues = stats.chi2.sf([r.t2 for r in results], 4)
    assert (chi2_pvalues <= 0.05).sum() > high


def test_hotelling_rejects_a_mean_shift():
    # Power: a shift of 1 sd per coordinate with n = m = 50 in d = 4 has noncentrality
    # n m / (n + m) |mu|^2 = 25 * 4 = 100, so the power of the level-1e-6 F test is ~1.
    gen = np.random.default_rng(24)
    result = MomentMatching("mean").hotelling_t2(
        gen.normal(1.0, 1.0, size=(50, 4)), gen.normal(size=(50, 4))
    )
    assert result.pvalue < 1e-6


def sandwich_se(method, x_p, x_q):
    """Standard errors of the tilt's lambda (the delta method for an M-estimator).

    lambda solves sum_j w_j s(y_j) = mean_p s with w_j ~ exp(lambda . s(y_j)). Linearised,
    lambda - lambda* = H^-1 [(mean_p s - E_p s) - (sum_j w_j s_j - E_tilt s)] with H the
    tilted covariance of s; the two averages are independent, with covariances Cov_p(s) / n
    and sum_j w_j^2 (s_j - s_w)(s_j - s_w)' (a ratio estimator), so
    Cov(lambda) = H^-1 [Cov_p(s) / n + sum_j w_j^2 (s_j - s_w)(s_j - s_w)'] H^-1.
    """
    s_p = method.features(torch.as_tensor(x_p)).numpy()
    s_q = method.features(torch.as_tensor(x_q)).numpy()
    w = np.exp(method.log_ratio(x_q)) / len(x_q)
    centred = s_q - w @ s_q
    hess = (centred * w[:, None]).T @ centred
    noise = np.cov(s_p.T, ddof=1) / len(s_p) + (centred * w[:, None] ** 2).T @ centred
    cov = np.linalg.solve(hess, np.linalg.solve(hess, noise).T)
    return np.sqrt(np.diag(cov))


# (pair, statistics, exact lambda in the method's coordinates). The mean shift has
# log r = mu . x - |mu|^2 / 2; the scale change P = N(0, s^2 I) has
# log r = a |x|^2 - d log s with a = (1 - 1 / s^2) / 2, i.e. a on x1^2 and x2^2 in the
# "mean_cov" layout (x1, x2, x1^2, x1 x2, x2^2). Scales are kept where r(y)^4 has a finite
# mean under Q (4 a < 1/2), so that the plug-in standard errors are themselves reliable; the
# default scale 2 (a = 3/8, infinite Var_q(r)) would not qualify.
def _scale_lambda(s):
    a = (1 - 1 / s**2) / 2
    return np.array([0.0, 0.0, a, 0.0, a])


TILT_CASES = [
    (GaussianShift(dim=2, shift=1.0), "mean", np.full(2, 1 / math.sqrt(2))),
    (ScaleChange(dim=2, scale=0.8), "mean_cov", _scale_lambda(0.8)),
    (ScaleChange(dim=2, scale=1.1), "mean_cov", _scale_lambda(1.1)),
]
N = 20_000


@pytest.mark.parametrize(("pair", "statistics", "exact"), TILT_CASES)
def test_tilt_recovers_the_exact_log_ratio(pair, statistics, exact):
    x_p, x_q = pair.sample_p(N, rng=30), pair.sample_q(N, rng=31)
    method = MomentMatching(statistics).fit_critic(x_p, x_q, rng=0)
    lam = method.lambda_.numpy()
    se = sandwich_se(method, x_p, x_q)
    if statistics == "mean":
        # Closed form of the same standard error for the mean shift: the linearisation in
        # sandwich_se gives Cov = I / n + e^{|mu|^2} (I + mu mu') / m, since r(y)^2 q(y) is
        # e^{|mu|^2} N(2 mu, I). It is used here, and checks the helper: the plug-in's
        # relative sd is about 10% (its main term, the Q part, averages r^2 (y - mu)_i^2,
        # whose relative sd is sqrt(e^{6 |mu|^2} 50.3 / m) / (e (1 + mu_i^2)) = 25%, and the
        # SE is a square root), so 5 of those allow 50%.
        closed = np.sqrt(1 / N + math.e * (1 + exact**2) / N)
        assert se == pytest.approx(closed, rel=0.5)
        se = closed
    assert np.all(np.abs(lam - exact) < 5 * se)
    # Held-out points from P: log r_hat - log r = dlam . (s - E_p s) - eps to first order,
    # with eps the noise of log Z (Var = chi^2(P||Q) / m), so the expected MSE is at most
    # about tr(Cov(lambda) Cov_p(s)) + chi^2 / m <= sum_ij se_i se_j |Cov_p(s)_ij| + chi^2 / m.
    # The MSE is a quadratic form in near-Gaussian errors with at most 6 terms: exceeding 10
    # times its mean is about as rare as chi^2_1 > 10 at worst, probability 0.0016.
    x_new = pair.sample_p(5_000, rng=32)
    mse = np.mean((method.log_ratio(x_new) - pair.log_ratio(x_new)) ** 2)
    s_new = method.features(torch.as_tensor(x_new)).numpy()
    cov_s = np.atleast_2d(np.cov(s_new.T))
    expected = np.sum(se[:, None] * se[None, :] * np.abs(cov_s)) + pair.pearson() / N
    assert mse < 10 * expected


@pytest.mark.parametrize(("pair", "statistics", "exact"), TILT_CASES)
def test_kl_estimate_is_the_dual_optimum_and_matches_kl(pair, statistics, exact):
    x_p, x_q = pair.sample_p(N, rng=33), pair.sample_q(N, rng=34)
    method = MomentMatching(statistics).fit_critic(x_p, x_q, rng=0)
    kl = float(method.estimate_divergence("kl", torch.as_tensor(x_p), torch.as_tensor(x_q)))
    assert kl == pytest.approx(method.dual_value_, rel=1e-12)
    assert kl == pytest.approx(float(np.mean(method.log_ratio(x_p))), rel=1e-10)
    # The estimate is mean_p log r_hat(x_i) with log r_hat normalised on the Q sample, i.e. two
    # independent averages: by the delta method its variance is
    # Var_p(log r) / n + Var_q(r) / m = Var_p(log r) / n + chi^2(P||Q) / m (closed forms:
    # |mu|^2 for the shift; a^2 2 d s^4 for the scale). The upward bias of a fitted supremum,
    # about tr(H^-1 Cov(gradient)) / 2 = O(k / n) ~ 1e-3 here, is added to the tolerance.
    if statistics == "mean":
        var_log_r = pair.shift**2
    else:
        var_log_r = exact[2] ** 2 * 2 * pair.dim * pair.scale**4
    sd = math.sqrt(var_log_r / N + pair.pearson() / N)
    assert abs(kl - pair.kl_pq()) < 5 * sd + 1e-3


def test_tilt_matches_the_moments_and_is_normalised_on_q():
    # KKT conditions of the dual (exact, not statistical): the tilted Q sample has P's mean
    # statistics, and exp(log_ratio) averages to 1 over the Q sample.
    gen = np.random.default_rng(35)
    x_p, x_q = gen.normal(0.3, 0.9, size=(300, 1)), gen.normal(size=(400, 1))
    method = MomentMatching("poly", degree=3).fit_critic(x_p, x_q)
    w = np.exp(method.log_ratio(x_q))
    assert np.mean(w) == pytest.approx(1.0, abs=1e-13)
    s_p = method.features(torch.as_tensor(x_p)).numpy()
    s_q = method.features(torch.as_tensor(x_q)).numpy()
    np.testing.assert_allclose(w @ s_q / len(x_q), s_p.mean(0), rtol=0, atol=1e-9)
    assert method.n_iter_ < 20  # Newton's quadratic convergence
    assert method.dual_value_ > 0.0  # the dual at lambda = 0 is 0, and this is its maximum


def test_unmatched_moments_give_infinite_kl_and_l2_gives_a_solution():
    # All P points lie beyond every Q point: no reweighting of Q matches P's mean.
    x_q = torch.linspace(-1.0, 1.0, 20, dtype=torch.float64)[:, None]
    x_p = x_q + 5.0
    method = MomentMatching("mean").fit_critic(x_p, x_q)
    assert method.dual_value_ == math.inf and method.lambda_ is None
    assert float(method.estimate_divergence("kl", x_p, x_q)) == math.inf
    with pytest.raises(RuntimeError, match="no exponential tilt"):
        method.log_ratio(x_q)
    assert float(method(x_p, x_q)) == pytest.approx(25.0, rel=1e-12)  # forward needs no tilt
    # With l2 > 0 the dual is strongly concave: a finite solution, shrunk more for larger l2.
    small = MomentMatching("mean", l2=0.01).fit_critic(x_p, x_q)
    large = MomentMatching("mean", l2=1.0).fit_critic(x_p, x_q)
    assert 0 < float(large.lambda_[0]) < float(small.lambda_[0])
    assert math.isfinite(small.dual_value_)


def test_newton_stopped_short_warns_with_the_remedy(monkeypatch):
    monkeypatch.setattr(moments, "MAX_ITER", 1)  # one step cannot reach a 1e-10 mismatch
    gen = np.random.default_rng(42)
    x_p, x_q = gen.normal(1.0, 1, (100, 2)), gen.normal(size=(100, 2))
    with pytest.warns(UserWarning, match=r"stopped after 1 Newton steps .* set `l2` > 0"):
        MomentMatching().fit_critic(x_p, x_q)


def test_tilt_is_bit_identical_for_an_int_rng_and_leaves_global_rngs_alone():
    gen = np.random.default_rng(36)
    x_p, x_q = torch.tensor(gen.normal(0.5, 1, (200, 2))), torch.tensor(gen.normal(size=(200, 2)))
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    first = MomentMatching().fit_critic(x_p, x_q, rng=0)
    second = MomentMatching().fit_critic(x_p, x_q, rng=0)
    assert torch.equal(first.lambda_, second.lambda_)
    assert first.dual_value_ == second.dual_value_
    assert torch.equal(first.log_ratio(x_p), second.log_ratio(x_p))
    assert torch.equal(first(x_p, x_q), second(x_p, x_q))
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state)


@pytest.mark.parametrize("weighting", ["identity", "hotelling"])
def test_gradients_match_finite_differences(weighting):
    gen = np.random.default_rng(37)
    x_p = torch.tensor(gen.normal(size=(9, 2)), requires_grad=True)
    x_q = torch.tensor(gen.normal(size=(7, 2)), requires_grad=True)
    method = MomentMatching("poly", degree=3, weighting=weighting)
    assert torch.autograd.gradcheck(method, (x_p, x_q))
    # The tilt is fitted on a larger sample: 7 Q points cannot match 5 moments of P's.
    fitted = MomentMatching().fit_critic(gen.normal(0.3, 1, (60, 2)), gen.normal(size=(60, 2)))
    assert torch.autograd.gradcheck(fitted.log_ratio, (x_p,))
    assert torch.autograd.gradcheck(
        lambda a, b: fitted.estimate_divergence("kl", a, b), (x_p, x_q)
    )


def test_float32_input_matches_float64():
    # Statistics are computed in float64 whatever the input; only the inputs' rounding to
    # float32 (relative 6e-8) differs, amplified here by at most the degree of the monomials.
    gen = np.random.default_rng(38)
    x, y = gen.normal(size=(500, 3)), gen.normal(0.2, 1.0, size=(400, 3))
    for weighting in ("identity", "hotelling"):
        method = MomentMatching(weighting=weighting)
        exact = float(method(torch.tensor(x), torch.tensor(y)))
        single = method(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32))
        assert single.dtype == torch.float32
        assert float(single) == pytest.approx(exact, rel=1e-5)


# Values on a grid of quarters: monomials up to degree 3 are then multiples of 1/64 and their
# sums are exact in float64, so the means do not depend on the row order at all, and a nonzero
# spread is at least 1/64 (rounding relative to the spread cannot blow up in the Hotelling
# form, whose value is scale-free).
finite = st.integers(-40, 40).map(lambda v: v / 4)
samples = st.integers(2, 12).flatmap(
    lambda n: st.tuples(
        arrays(np.float64, (n, 2), elements=finite),
        arrays(np.float64, (n + 1, 2), elements=finite),
    )
)


@settings(deadline=None, max_examples=25)
@given(
    samples,
    st.sampled_from(["mean", "mean_cov", "poly"]),
    st.sampled_from(["identity", "hotelling"]),
    st.randoms(use_true_random=False),
)
def test_properties_row_order_symmetry_nonnegative(xy, statistics, weighting, rnd):
    x, y = (torch.tensor(a) for a in xy)
    # ridge=1e-4 bounds the condition number of the pooled covariance by about 1e4 k even
    # with fewer points than statistics, so rounding stays near 1e-16 * 1e4 * k relatively.
    method = MomentMatching(statistics, degree=3, weighting=weighting, ridge=1e-4)
    perm_x = torch.tensor(rnd.sample(range(len(x)), len(x)))
    perm_y = torch.tensor(rnd.sample(range(len(y)), len(y)))
    base = float(method(x, y))
    tol = 1e-9 * (1.0 + abs(base))
    assert abs(float(method(x[perm_x], y[perm_y])) - base) <= tol  # invariance to row order
    assert abs(float(method(y, x)) - base) <= tol  # symmetry
    assert base >= 0.0  # a quadratic form with W = I or W positive definite
    assert float(method(x, x[perm_x])) == 0.0  # equal means, exact sums: delta is 0


def test_log_ratio_keeps_the_input_type_and_checks_features():
    gen = np.random.default_rng(39)
    x_p, x_q = gen.normal(0.5, 1, (100, 2)), gen.normal(size=(100, 2))
    method = MomentMatching().fit_critic(x_p, x_q)
    out = method.log_ratio(x_p)
    assert isinstance(out, np.ndarray) and out.shape == (100,) and out.dtype == np.float64
    single = method.log_ratio(torch.tensor(x_p, dtype=torch.float32))
    assert single.dtype == torch.float32
    np.testing.assert_allclose(single.numpy(), out, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="`x` must have 2 features"):
        method.log_ratio(gen.normal(size=(5, 3)))


def test_not_fitted_and_other_divergences_raise():
    x = torch.zeros(4, 1, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="not fitted"):
        MomentMatching().log_ratio(x)
    with pytest.raises(RuntimeError, match="not fitted"):
        MomentMatching().estimate_divergence("kl", x, x)
    with pytest.raises(NotImplementedError, match="'pearson'"):
        MomentMatching().estimate_divergence("pearson", x, x)


def wrong_rows(x):
    return x[:-1]


def one_dimensional(x):
    return x.sum(1)


def with_nan(x):
    return torch.where(x > 0, torch.nan, x)


def as_numpy(x):
    return x.numpy()


def by_sample_size(x):
    return x.repeat(1, x.shape[0])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"statistics": "median"}, ValueError, "`statistics` must be one of"),
        ({"statistics": 3}, TypeError, "`statistics` must be one of .* or a callable"),
        ({"degree": 0}, ValueError, "`degree` must be an integer >= 1; got 0"),
        ({"degree": 2.5}, TypeError, "`degree` must be an integer"),
        ({"weighting": "mahalanobis"}, ValueError, "`weighting` must be one of"),
        ({"ridge": 0.0}, ValueError, "`ridge` must be a positive real number"),
        ({"l2": -1.0}, ValueError, "`l2` must be a non-negative real number; got -1.0"),
        ({"l2": "0"}, TypeError, "`l2` must be a non-negative real number"),
    ],
)
def test_bad_parameters_raise_naming_them(kwargs, error, match):
    with pytest.raises(error, match=match):
        MomentMatching(**kwargs)


@pytest.mark.parametrize(
    ("fn", "error", "match"),
    [
        (
            wrong_rows,
            ValueError,
            r"`statistics` must return a tensor of shape .*got shape \(5, 2\)",
        ),
        (one_dimensional, ValueError, r"`statistics` must return a tensor of shape"),
        (with_nan, ValueError, "`statistics` must return finite values; got NaN or inf in"),
        (as_numpy, TypeError, "`statistics` must return a torch.Tensor; got ndarray"),
        (by_sample_size, ValueError, "`statistics` must return as many statistics"),
    ],
)
def test_bad_user_statistics_raise_naming_statistics(fn, error, match):
    gen = np.random.default_rng(40)
    x_p, x_q = torch.tensor(gen.normal(size=(6, 2))), torch.tensor(gen.normal(size=(7, 2)))
    method = MomentMatching(fn)
    for call in (lambda: method(x_p, x_q), lambda: method.fit_critic(x_p, x_q)):
        with pytest.raises(error, match=match):
            call()


def test_bad_samples_raise():
    with pytest.raises(ValueError, match="`x_p` and `x_q` must have the same number of features"):
        MomentMatching().fit_critic(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="`x_q` must hold finite values"):
        MomentMatching().hotelling_t2(np.zeros((5, 2)), np.full((5, 2), np.nan))
    # k = 5 "mean_cov" statistics in d = 2 need n + m - 5 - 1 >= 1.
    with pytest.raises(ValueError, match=r"more than k \+ 1 = 6 rows together .* got 3 \+ 3"):
        MomentMatching().hotelling_t2(np.ones((3, 2)), np.zeros((3, 2)))


def test_repr_and_pickle_with_a_user_statistic():
    method = MomentMatching(sin_and_product, weighting="hotelling", l2=0.5)
    assert repr(method) == (
        "MomentMatching(statistics=sin_and_product, weighting='hotelling', l2=0.5)"
    )
    assert repr(MomentMatching("poly", degree=3)) == (
        "MomentMatching(statistics='poly', degree=3, weighting='identity', l2=0.0)"
    )
    gen = np.random.default_rng(41)
    x_p, x_q = torch.tensor(gen.normal(0.5, 1, (50, 2))), torch.tensor(gen.normal(size=(50, 2)))
    method.fit_critic(x_p, x_q)
    clone = pickle.loads(pickle.dumps(method))
    assert torch.equal(clone.log_ratio(x_p), method.log_ratio(x_p))
    assert torch.equal(copy.deepcopy(method)(x_p, x_q), method(x_p, x_q))


# The contract of tests/test_common.py, run on this class before it is registered.
CONTRACT = [
    common.test_registry_entry,
    common.test_gradients_reach_both_samples,
    common.test_near_zero_for_one_distribution_and_large_for_two,
    common.test_invariant_to_row_order,
    common.test_deepcopy_pickle_and_repr,
    common.test_log_ratio_shape_and_dtype,
]


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(METHODS, "moments", MomentMatching)


@pytest.mark.parametrize("contract", CONTRACT, ids=lambda f: f.__name__)
def test_contract(contract, registered):
    contract("moments")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_contract_scalar_output(dtype, registered):
    common.test_scalar_output_keeps_dtype_and_device("moments", dtype, torch.device("cpu"))


# --- issue 13: Hotelling's T^2 does not depend on location and units ---------------------------


def numpy_hotelling(x, y, statistics, degree):
    """Textbook two-sample Hotelling T^2 (no ridge) of the reference statistics, in NumPy."""
    s_x = reference_features(x, statistics, degree)
    s_y = reference_features(y, statistics, degree)
    n, m = len(x), len(y)
    delta = s_x.mean(0) - s_y.mean(0)
    pooled = ((n - 1) * np.cov(s_x.T, ddof=1) + (m - 1) * np.cov(s_y.T, ddof=1)) / (n + m - 2)
    return n * m / (n + m) * float(delta @ np.linalg.solve(np.atleast_2d(pooled), delta))


@settings(deadline=None, max_examples=25)
@given(
    log_scale=st.floats(-150, 150),
    offset=st.floats(-1e3, 1e3),
    statistics=st.sampled_from(["mean", "mean_cov", "poly"]),
)
def test_hotelling_matches_numpy_at_any_offset_and_scale(log_scale, offset, statistics):
    # T^2 is invariant to x -> a x + b (the statistics of a x + b are an invertible affine map
    # of those of x), so the reference is computed once on the unit-scale data. Before, an
    # offset of 100 moved the p-value and 1e100 raised torch's _LinAlgError. Tolerance: the
    # inputs a x + b carry a relative rounding of 1e-16 |b| / a <= 1e-13, amplified by the
    # condition number of the pooled covariance (order 10-100 for these statistics); a ridge
    # of 1e-12 changes T^2 by about 1e-12 relatively; 1e-8 leaves room for both.
    gen = np.random.default_rng(31)
    x, y = gen.normal(size=(25, 2)), gen.normal(0.3, 1.0, size=(20, 2))
    a = 10.0**log_scale
    method = MomentMatching(statistics, degree=3, ridge=1e-12)
    got = method.hotelling_t2(a * x + a * offset, a * y + a * offset)
    expected = numpy_hotelling(x, y, statistics, degree=3)
    assert got.t2 == pytest.approx(expected, rel=1e-8)


def test_row_count_is_checked_before_the_statistics_are_built(monkeypatch):
    # d = 1000 with "mean_cov" has k = 1000 + 500500 statistics: with n + m = 2000 rows the
    # (2000, 501500) float64 matrix would take 8 GB before the check. The check comes first
    # now: building the statistics would fail this test.
    def no_features(self, x):
        raise AssertionError("the statistics were built before the row-count check")

    monkeypatch.setattr(MomentMatching, "features", no_features)
    x = np.zeros((1000, 1000))
    with pytest.raises(
        ValueError, match=r"more than k \+ 1 = 501501 rows together .* 1000 \+ 1000"
    ):
        MomentMatching().hotelling_t2(x, x)
    with pytest.raises(ValueError, match=r"k = 501500 statistics"):
        # An instance: the name "moments" tests the means alone (k = 1000 fits in 2000 rows).
        rk.two_sample_test(x, x, method=MomentMatching(), n_permutations=9, rng=0)
