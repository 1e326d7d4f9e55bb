"""Front door 1: plug-in divergences, RatioEstimator and estimate_ratio with an oracle ratio.

The oracle method's log-ratio is the exact one of a synthetic pair, so the plug-in formulas
are checked against closed forms independently of any estimator's error.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold

import ratiokit as rk
from ratiokit.methods import METHODS, Discrepancy
from ratiokit.synthetic import GaussianShift, ScaleChange


class Oracle(Discrepancy):
    """log r = the exact log-ratio of a synthetic pair, scaled by ``scale`` (1 = exact)."""

    name: ClassVar[str] = "oracle"
    has_log_ratio: ClassVar[bool] = True

    def __init__(self, pair: object = None, scale: float = 1.0) -> None:
        super().__init__()
        self.pair = GaussianShift(dim=2, shift=1.0) if pair is None else pair
        self.scale = scale

    def fit_critic(self, x_p, x_q, *, rng=None):
        self.fitted_on_ = (x_p.shape[0], x_q.shape[0])
        return self

    def log_ratio(self, x):
        return self.scale * self.pair.log_ratio(x)

    def forward(self, x_p, x_q):
        return self.log_ratio(x_p).mean() - self.log_ratio(x_q).mean()


@pytest.fixture(autouse=True)
def _register_oracle(monkeypatch):
    monkeypatch.setitem(METHODS, "oracle", Oracle)


N = 200_000


@pytest.mark.parametrize(
    ("pair", "kind", "exact"),
    [
        (GaussianShift(dim=2, shift=1.0), "kl", 0.5),  # |mu|^2 / 2
        (GaussianShift(dim=2, shift=1.0), "rkl", 0.5),
        (GaussianShift(dim=2, shift=0.5), "pearson", math.expm1(0.25)),  # exp(|mu|^2) - 1
        (GaussianShift(dim=2, shift=0.5), "pe", 0.5 * math.expm1(0.25)),
        (GaussianShift(dim=2, shift=1.0), "hellinger", 1 - math.exp(-1 / 8)),
        (ScaleChange(dim=1, scale=1.5), "kl", None),
        # TV and JS of a unit shift in 1-D: TV = 2 Phi(1/2) - 1; JS by quadrature below.
        (GaussianShift(dim=1, shift=1.0), "tv", 2 * 0.6914624612740131 - 1),
        (GaussianShift(dim=1, shift=1.0), "js", None),
    ],
)
def test_plugin_divergences_match_closed_forms(pair, kind, exact):
    if exact is None and kind == "kl":
        exact = pair.kl_pq()
    if exact is None:  # JS = int p log(2p/(p+q))/2 + q log(2q/(p+q))/2, by quadrature
        from scipy.integrate import quad

        def integrand(t):
            lp, lq = pair.log_p(np.array([[t]]))[0], pair.log_q(np.array([[t]]))[0]
            lm = np.logaddexp(lp, lq) - math.log(2)
            return 0.5 * (np.exp(lp) * (lp - lm) + np.exp(lq) * (lq - lm))

        exact = quad(integrand, -30, 30, limit=200)[0]
    gen = np.random.default_rng(0)
    x_p, x_q = pair.sample_p(N, rng=gen), pair.sample_q(N, rng=gen)
    res = rk.divergence(x_p, x_q, kind=kind, method=Oracle(pair), rng=0)
    # Monte Carlo error of a mean of N i.i.d. terms: the terms' sd / sqrt(N) is below
    # 3 / sqrt(N) = 0.0067 for these pairs (sd of log r, (r - 1)^2, sqrt r, |r - 1| at most
    # ~2.5 here), so 0.02 is at least 3 standard errors.
    assert res.value == pytest.approx(exact, abs=0.02)
    assert res.kind == kind and res.method == "oracle" and res.standard_error is None


def test_bootstrap_standard_error_matches_the_mc_standard_error():
    # With the exact ratio, KL = E_p[log r] has standard error sd(log r) / sqrt(n) =
    # |mu| / sqrt(n) (log r = mu.x - |mu|^2/2 is N(|mu|^2/2, |mu|^2) under P). 200 bootstrap
    # replicates estimate it to ~5% (sd of a sample sd: 1 / sqrt(2 * 199)); allow 25%.
    pair, n = GaussianShift(dim=2, shift=1.0), 2000
    gen = np.random.default_rng(1)
    res = rk.divergence(pair.sample_p(n, rng=gen), pair.sample_q(n, rng=gen), kind="kl",
                        method="oracle", n_bootstrap=200, rng=2)  # fmt: skip
    assert res.bootstrap.shape == (200,)
    assert res.standard_error == pytest.approx(1.0 / math.sqrt(n), rel=0.25)


def test_unsupported_pair_lists_the_methods_that_can():
    with pytest.raises(ValueError, match=r"`method` must be able to estimate 'kl', one of \["):
        rk.divergence(np.zeros((5, 1)), np.ones((5, 1)), kind="kl", method="mmd")
    with pytest.raises(ValueError, match="`kind` must be one of"):
        rk.divergence(np.zeros((5, 1)), np.ones((5, 1)), kind="kld", method="oracle")


def test_ratio_estimator_follows_sklearn_conventions():
    pair = GaussianShift(dim=2, shift=1.0)
    gen = np.random.default_rng(3)
    x_p, x_q = pair.sample_p(300, rng=gen), pair.sample_q(500, rng=gen)
    est = rk.estimate_ratio(x_p, x_q, method="oracle", rng=0)
    assert est.method_.fitted_on_ == (300, 500) and est.n_features_in_ == 2
    x_new = pair.sample_q(10, rng=gen)
    np.testing.assert_allclose(est.log_ratio(x_new), pair.log_ratio(x_new))
    np.testing.assert_allclose(est.ratio(x_new), np.exp(pair.log_ratio(x_new)))
    t = torch.tensor(x_new, dtype=torch.float32)
    assert est.log_ratio(t).dtype == torch.float32  # a tensor in, a tensor of its dtype out
    assert clone(est).get_params() == est.get_params()
    with pytest.raises(ValueError, match="X has 5 features, but RatioEstimator is expecting 2"):
        est.log_ratio(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="`X` must have 2 features, as in `fit`; got 5"):
        est.log_ratio(torch.zeros(3, 5))


def test_score_selects_the_true_ratio_in_grid_search():
    # The implied-classifier log-likelihood is a proper scoring rule: among scaled versions
    # c * log r of the true log-ratio, c = 1 scores best in expectation; with 2 x 4000 points
    # its margin over c = 0.5 and 2 is many standard errors.
    pair = GaussianShift(dim=2, shift=1.0)
    gen = np.random.default_rng(4)
    X = np.vstack([pair.sample_p(4000, rng=gen), pair.sample_q(4000, rng=gen)])
    y = np.r_[np.ones(4000, int), np.zeros(4000, int)]
    grid = [Oracle(pair, 0.5), Oracle(pair, 1.0), Oracle(pair, 2.0)]
    folds = KFold(3, shuffle=True, random_state=0)  # both samples in every fold
    search = GridSearchCV(rk.RatioEstimator(), {"method": grid}, cv=folds).fit(X, y)
    assert search.best_params_["method"].scale == 1.0


def test_fit_rejects_bad_labels_and_difference_methods():
    X = np.random.default_rng(5).normal(size=(10, 2))
    with pytest.raises(ValueError, match="`y` must mark the two samples"):
        rk.RatioEstimator("oracle").fit(X, np.r_[np.ones(5), 2 * np.ones(5)])
    with pytest.raises(ValueError, match="`method` must be a ratio method"):
        rk.RatioEstimator("mmd").fit(X, np.r_[np.ones(5), np.zeros(5)])
