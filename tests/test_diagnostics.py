"""Ratio diagnostics against exact ratios: balancing, calibration, the reweighting test.

An exact ratio (``ratiokit.synthetic``) must pass every check up to its stated error rate, and
ratios that are wrong in known ways must fail the checks that can see them: a ratio off by a
constant factor fails balancing and calibration but not the reweighting test (which only sees
the shape of r), and the constant ratio r = 1 passes balancing and calibration-in-the-large but
fails the reweighting test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.axes import Axes
from scipy import special, stats
from sklearn.exceptions import NotFittedError

import ratiokit as rk
from ratiokit.diagnostics import _max_power, _rejection_keep, ratio_diagnostics
from ratiokit.results import MIN_BALANCE_ESS, MIN_REWEIGHTED_POWER, RatioDiagnostics
from ratiokit.synthetic import GaussianMixture, GaussianShift

N = 2000  # held-out points per sample
SHIFT = GaussianShift(dim=2, shift=1.0)


class Exact:
    """log r_hat = scale * log r + offset, with log r the exact log-ratio of a synthetic pair."""

    name = "exact"

    def __init__(self, pair: object, scale: float = 1.0, offset: float = 0.0) -> None:
        self.pair, self.scale, self.offset = pair, scale, offset

    def log_ratio(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.pair.log_ratio(x) + self.offset


def held_out(pair, seed, n=N, m=N):
    gen = np.random.default_rng(seed)
    return pair.sample_p(n, rng=gen), pair.sample_q(m, rng=gen)


def test_exact_ratio_passes_every_check_with_the_closed_form_standard_errors():
    x_p, x_q = held_out(SHIFT, 0)
    diag = ratio_diagnostics(Exact(SHIFT), x_p, x_q, n_permutations=499, rng=0)
    # For a unit mean shift, Var_q(r) = chi^2(P||Q) = e - 1 and Var_p(1/r) = chi^2(Q||P) =
    # e - 1, so each mean has standard error sqrt((e - 1) / N) = 0.029. The sample sd of r
    # has relative error about sqrt((kurtosis - 1) / (4 N)), ~15% here (r is lognormal with
    # sigma = 1: kurtosis ~ 111), so 40% is over 2.5 of those.
    se = math.sqrt(math.e - 1.0) / math.sqrt(N)
    assert diag.se_ratio_q == pytest.approx(se, rel=0.4)
    assert diag.se_inverse_ratio_p == pytest.approx(se, rel=0.4)
    # Means within 4 of their standard errors (a normal tail of 6e-5 each).
    assert abs(diag.mean_ratio_q - 1.0) < 4 * se and abs(diag.mean_inverse_ratio_p - 1.0) < 4 * se
    # The Bayes posterior is calibrated. In each of the 10 bins of 400 points the observed
    # fraction has sd sqrt(D (1 - D) / 400) <= 0.025, and E|O/N - D| ~ 0.8 sd, so the
    # calibration error is about 0.02 or less; 0.04 is twice that.
    assert diag.calibration_error < 0.04
    assert diag.counts.sum() == 2 * N and diag.counts.shape == (10,)
    # Under exactness the p-values are (close to) uniform: each is above 0.001 with
    # probability 0.999.
    assert diag.calibration_pvalue > 1e-3 and diag.reweighted_pvalue > 1e-3
    # Points kept by rejection: a sum of independent Bernoulli(r_j / max r) draws given the
    # sample, so within 5 binomial sds of its mean.
    r = np.exp(SHIFT.log_ratio(x_q))
    accept = r / r.max()
    assert abs(diag.n_kept - accept.sum()) < 5 * math.sqrt(np.sum(accept * (1 - accept)))
    assert diag.reweighted_test.details["n_y"] == diag.n_kept
    assert diag.passed and diag.verdict == "all checks passed at level 0.05"


def test_constant_factor_fails_balancing_and_calibration_but_not_the_reweighting_test():
    # r_hat = 2 r: E_q[r_hat] = 2 and E_p[1/r_hat] = 1/2, tens of standard errors (0.06 and
    # 0.015) from 1; the implied classifier's log-odds are off by log 2, which the
    # Hosmer-Lemeshow statistic sees at 2 x 2000 points. Rejection sampling uses r_hat /
    # max r_hat = r / max r, so the kept points are the exact ratio's: the test passes (this
    # seed's p-value is the exact ratio's, as the same rng draws the same uniforms).
    x_p, x_q = held_out(SHIFT, 1)
    exact = ratio_diagnostics(Exact(SHIFT), x_p, x_q, n_permutations=199, rng=3)
    diag = ratio_diagnostics(
        Exact(SHIFT, offset=math.log(2.0)), x_p, x_q, n_permutations=199, rng=3
    )
    assert diag.mean_ratio_q == pytest.approx(2 * exact.mean_ratio_q, rel=1e-12)
    assert diag.mean_inverse_ratio_p == pytest.approx(exact.mean_inverse_ratio_p / 2, rel=1e-12)
    assert diag.checks == {
        "E_q[r] = 1": False,
        "E_p[1/r] = 1": False,
        "calibrated": False,
        "reweighted Q ~ P": True,
    }
    assert diag.n_kept == exact.n_kept and diag.reweighted_pvalue == exact.reweighted_pvalue
    assert (
        diag.verdict.startswith("failed at level 0.05: E_q[r] = ")
        and "reweighted" not in diag.verdict
    )


def test_uniform_ratio_is_caught_only_by_the_reweighting_test():
    # r_hat = 1 balances exactly (both means are 1 with standard error 0) and its implied
    # classifier is the constant n_p / (n_p + n_q), exactly the observed fraction: one bin,
    # calibration p-value 1. The reweighting test then compares P with Q itself: MMD with a
    # median bandwidth detects a unit shift at 1000 + 500 points with power ~1 (this seed:
    # no permutation reaches the observed statistic, p = 1 / 100).
    x_p, x_q = held_out(SHIFT, 2, n=1000, m=500)
    diag = ratio_diagnostics(Exact(SHIFT, scale=0.0), x_p, x_q, n_permutations=99, rng=0)
    assert (diag.mean_ratio_q, diag.se_ratio_q) == (1.0, 0.0)
    assert diag.balance_pvalues == (1.0, 1.0)
    assert diag.counts.tolist() == [1500] and diag.predicted[0] == pytest.approx(2 / 3)
    assert diag.calibration_pvalue == pytest.approx(1.0) and diag.calibration_error < 1e-12
    assert diag.n_kept == 500 and diag.reweighted_pvalue == pytest.approx(0.01)
    assert diag.checks["reweighted Q ~ P"] is False and not diag.passed


def test_a_ratio_near_zero_at_a_point_of_p_fails_on_the_effective_sample_size():
    # One P point with r_hat = 1e-12 makes 1/r_hat = 1e12 carry the whole mean: its standard
    # error is as large as the mean, so a z-test would "pass"; the check fails on the
    # effective number of terms (about 1 < MIN_BALANCE_ESS).
    class Dent(Exact):
        def log_ratio(self, x):
            out = self.pair.log_ratio(x)
            out[0] = -12 * math.log(10.0)
            return out

    x_p, x_q = held_out(SHIFT, 4)
    diag = ratio_diagnostics(Dent(SHIFT), x_p, x_q, n_permutations=99, rng=0)
    assert diag.balance_pvalues[1] > 0.05  # the wide interval alone would pass
    assert diag.ess_inverse_ratio_p < 1.01 < MIN_BALANCE_ESS <= diag.ess_ratio_q
    assert diag.checks["E_p[1/r] = 1"] is False and diag.checks["E_q[r] = 1"] is True
    assert "ESS 1" in diag.verdict


class Spike:
    """log r_hat = 30 at the given rows and 0 elsewhere: rejection keeps exactly those rows
    (every other row with probability e^-30 ~ 1e-13)."""

    name = "spike"

    def __init__(self, rows: np.ndarray) -> None:
        self.rows = torch.as_tensor(rows)

    def log_ratio(self, x: torch.Tensor) -> torch.Tensor:
        hit = (x[:, None, :] == self.rows[None].to(x)).all(-1).any(-1)
        return 30.0 * hit.to(x.dtype)


def test_two_kept_points_make_the_reweighting_check_inconclusive():
    # The case: 2 of 153 points of Q kept. The test of 153 P points against 2 did not
    # reject, which the old code reported as a pass. Against a 0.5-sd mean shift even the
    # most powerful 5% test of these sizes has power Phi(0.5 / sqrt(1/153 + 1/2) - 1.645) =
    # Phi(-0.94) = 0.17, so the check is inconclusive and the diagnostics do not pass.
    x_p, x_q = held_out(SHIFT, 10, n=153, m=153)
    diag = ratio_diagnostics(Spike(x_q[:2]), x_p, x_q, n_permutations=99, rng=0)
    assert diag.n_kept == 2 and diag.reweighted_pvalue > 0.05
    bound = stats.norm.cdf(0.5 / math.sqrt(1 / 153 + 1 / 2) - stats.norm.ppf(0.95))
    assert diag.reweighted_power == pytest.approx(bound, rel=1e-12)
    assert diag.checks["reweighted Q ~ P"] is None and not diag.passed
    assert "reweighted Q ~ P inconclusive: 2 of 153 points of Q kept" in diag.verdict
    assert "power at most 0.17" in diag.verdict and "reweighted_power=0.17" in repr(diag)
    assert diag.plot()[2].get_title().endswith("(inconclusive: power <= 0.17)")


def test_reweighting_check_is_judged_from_the_stated_minimum_power():
    # P = Q, so the kept rows (the first k of Q's sample) are a sample from P and the test
    # does not reject (this seed). With n_p = 2000 the power bound first reaches 0.8 at
    # k = 26: 0.5 / sqrt(1/2000 + 1/k) - 1.645 >= 0.842 needs 1/k <= 0.0404 - 0.0005.
    same = GaussianShift(dim=2, shift=0.0)
    x_p, x_q = held_out(same, 11, n=2000, m=100)
    below = ratio_diagnostics(Spike(x_q[:25]), x_p, x_q, n_permutations=99, rng=0)
    above = ratio_diagnostics(Spike(x_q[:26]), x_p, x_q, n_permutations=99, rng=0)
    assert (below.n_kept, above.n_kept) == (25, 26)
    assert below.reweighted_power < MIN_REWEIGHTED_POWER <= above.reweighted_power
    assert below.reweighted_pvalue > 0.05 and above.reweighted_pvalue > 0.05
    assert below.checks["reweighted Q ~ P"] is None and above.checks["reweighted Q ~ P"]
    # A rejection is evidence whatever the power: a 4-sd shift, 3 points kept, p = 1/100.
    far = Spike(x_q[:3] + 4.0)
    shifted = np.r_[x_q[:3] + 4.0, x_q[3:]]
    diag = ratio_diagnostics(far, x_p, shifted, n_permutations=99, rng=0)
    assert diag.n_kept == 3 and diag.reweighted_power < MIN_REWEIGHTED_POWER
    assert diag.reweighted_pvalue == pytest.approx(0.01)
    assert diag.checks["reweighted Q ~ P"] is False and diag.verdict.startswith("failed")


@pytest.mark.parametrize(
    ("n_p", "n_kept", "alpha"), [(153, 2, 0.05), (2000, 26, 0.05), (50, 40, 0.1)]
)
def test_power_bound_against_a_simulated_most_powerful_test(n_p, n_kept, alpha):
    # The Neyman-Pearson test of a mean shift delta = 0.5 between unit-variance Gaussians
    # (known variance) rejects when the difference of the sample means exceeds z_{1-alpha}
    # times its sd sqrt(1/n_p + 1/n_kept); simulated here from raw draws of the kept points
    # (P's mean drawn from its exact law N(0, 1/n_p)). With R = 20,000 replications the
    # rejection rate has sd <= 0.0036, so 0.015 is over 4 of them.
    gen = np.random.default_rng(12)
    reps = 20_000
    p_mean = gen.normal(0.0, 1.0 / math.sqrt(n_p), size=reps)
    kept_mean = gen.normal(0.5, 1.0, size=(reps, n_kept)).mean(axis=1)
    z = (kept_mean - p_mean) / math.sqrt(1 / n_p + 1 / n_kept)
    rate = float(np.mean(z > stats.norm.ppf(1 - alpha)))
    assert _max_power(n_p, n_kept, alpha) == pytest.approx(rate, abs=0.015)
    assert _max_power(n_p, 1, alpha) == 0.0  # no test runs


def test_reliability_curve_against_a_brute_force_reference():
    # Logits and labels chosen by hand, binned by quantiles of D = sigmoid(logit + log(n_p /
    # n_q)); each bin's numbers are recomputed here with explicit loops.
    gen = np.random.default_rng(5)
    pair = GaussianMixture()
    x_p, x_q = pair.sample_p(300, rng=gen), pair.sample_q(500, rng=gen)
    est = Exact(pair, scale=0.7)
    diag = ratio_diagnostics(est, x_p, x_q, n_bins=4, n_permutations=499, rng=0)
    logit = np.r_[0.7 * pair.log_ratio(x_p), 0.7 * pair.log_ratio(x_q)] + math.log(300 / 500)
    d = special.expit(logit)
    label = np.r_[np.ones(300), np.zeros(500)]
    edges = np.quantile(d, [0.0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(diag.bin_edges, edges, rtol=1e-12)
    hl, ece = 0.0, 0.0
    for b in range(4):
        upper = d <= edges[b + 1] if b == 3 else d < edges[b + 1]
        inside = (d >= edges[b]) & upper
        assert diag.counts[b] == inside.sum()
        assert diag.predicted[b] == pytest.approx(d[inside].mean(), rel=1e-12)
        assert diag.observed[b] == pytest.approx(label[inside].mean(), rel=1e-12)
        hl += (label[inside].sum() - d[inside].sum()) ** 2 / np.sum(d[inside] * (1 - d[inside]))
        ece += abs(label[inside].sum() - d[inside].sum()) / 800
    assert diag.calibration_error == pytest.approx(ece, rel=1e-12)
    assert diag.calibration_pvalue == pytest.approx(stats.chi2.sf(hl, 4), rel=1e-10)


def test_rejection_keeps_each_point_with_probability_r_over_max_r():
    # 20,000 draws per entry; the kept frequency of a probability-p entry has sd
    # sqrt(p (1 - p) / 20000) <= 0.0036, so 0.02 is over 5 sds. -inf and NaN are never kept;
    # the largest ratio always is.
    log_r = np.array([0.0, math.log(0.5), math.log(0.1), -math.inf, math.nan])
    gen = np.random.default_rng(6)
    freq = _rejection_keep(np.tile(log_r, 20_000), gen).reshape(20_000, 5).mean(axis=0)
    np.testing.assert_allclose(freq, [1.0, 0.5, 0.1, 0.0, 0.0], atol=0.02)
    assert _rejection_keep(np.array([1.0, math.inf]), gen).tolist() == [False, True]
    assert not _rejection_keep(np.full(3, -math.inf), gen).any()


def test_front_door_method_seeding_repr_and_plot():
    gen = np.random.default_rng(7)
    x_p, x_q = SHIFT.sample_p(300, rng=gen), SHIFT.sample_q(300, rng=gen)
    est = rk.estimate_ratio(x_p, x_q, method="ulsif", rng=0)
    h_p, h_q = SHIFT.sample_p(300, rng=gen), SHIFT.sample_q(300, rng=gen)
    a = est.diagnostics(h_p, h_q, n_permutations=99, rng=11)
    b = est.diagnostics(torch.tensor(h_p), torch.tensor(h_q), n_permutations=99, rng=11)
    assert isinstance(a, RatioDiagnostics) and a.method == "ulsif"
    assert a.n_kept == b.n_kept and a.reweighted_pvalue == b.reweighted_pvalue
    np.testing.assert_array_equal(a.observed, b.observed)
    text = repr(a)
    assert text.startswith("RatioDiagnostics(mean_ratio_q=") and "array(shape=(10,))" in text
    assert "reweighted_test" not in text and len(text) < 600
    axes = a.plot()  # the three panels it drew on, in a new figure
    assert axes.shape == (3,) and all(isinstance(ax, Axes) for ax in axes)
    assert axes[0].figure.axes == list(axes)
    assert axes[1].get_xlabel().startswith("predicted D")
    with pytest.raises(AttributeError):
        a.alpha = 0.1  # frozen


def test_plot_shows_far_means_on_a_symlog_scale_and_notes_a_missing_test():
    from ratiokit.plot import new_figure, plot_ratio_diagnostics

    x_p, x_q = held_out(SHIFT, 8, n=200, m=200)
    far = ratio_diagnostics(Exact(SHIFT, offset=5.0), x_p, x_q, n_permutations=9, rng=0)
    axes = plot_ratio_diagnostics(far)
    assert axes[0].get_yscale() == "symlog" and axes.shape == (3,)
    # Nothing kept: r = 0 everywhere (log r = -inf): no test, a note instead of a histogram.
    none = ratio_diagnostics(Exact(SHIFT, offset=-math.inf), x_p, x_q, rng=0)
    assert none.n_kept == 0 and none.reweighted_test is None
    # No test ran: the check is inconclusive (it used to pass vacuously).
    assert math.isnan(none.reweighted_pvalue) and none.checks["reweighted Q ~ P"] is None
    assert none.reweighted_power == 0.0
    _, mine = new_figure(3)
    drawn = none.plot(ax=mine)
    assert drawn[2] is mine[2] and not drawn[2].axison
    with pytest.raises(TypeError, match="`ax` must be 3 matplotlib Axes"):
        plot_ratio_diagnostics(none, ax=mine[:2])


def test_bad_input_is_named():
    x = np.random.default_rng(9).normal(size=(50, 2))
    est = rk.estimate_ratio(x + 1.0, x, method="ulsif", rng=0)
    with pytest.raises(ValueError, match="`test_method` must be one of"):
        est.diagnostics(x, x, test_method="mdm")
    with pytest.raises(ValueError, match="`n_bins` must be an integer >= 1; got 0"):
        est.diagnostics(x, x, n_bins=0)
    with pytest.raises(TypeError, match="`n_permutations` must be an integer"):
        est.diagnostics(x, x, n_permutations=1.5)
    with pytest.raises(ValueError, match=r"`alpha` must be a real number in \(0, 1\); got 1"):
        est.diagnostics(x, x, alpha=1)
    with pytest.raises(ValueError, match="`x_p` and `x_q` must have the same number of features"):
        est.diagnostics(x, x[:, :1])
    with pytest.raises(ValueError, match="`x_q` must .* at least 2"):
        est.diagnostics(x, x[:1])
    with pytest.raises(NotFittedError):
        rk.RatioEstimator().diagnostics(x, x)


@pytest.mark.slow
def test_exact_ratio_reweighting_test_keeps_its_level():
    # Type-I error of the reweighting check with the exact ratio (rejection sampling makes
    # the kept points an exact sample from P): with R = 200 replications at alpha = 0.05 the
    # rejections must lie in binom.interval(0.998, 200, 0.05) = [2, 21]. The same for the
    # calibration check (Hosmer-Lemeshow's chi^2 is asymptotic: 10 bins of 200 points).
    rejections = np.zeros(2, dtype=int)
    for rep in range(200):
        x_p, x_q = held_out(SHIFT, 1000 + rep, n=1000, m=1000)
        diag = ratio_diagnostics(Exact(SHIFT), x_p, x_q, n_permutations=199, rng=rep)
        rejections += [diag.reweighted_pvalue <= 0.05, diag.calibration_pvalue <= 0.05]
    low, high = stats.binom.interval(0.998, 200, 0.05)
    assert np.all((low <= rejections) & (rejections <= high)), rejections
