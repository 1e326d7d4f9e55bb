"""RatioEstimator as a scikit-learn estimator: the estimator checks, clone, grid search, pipelines.

The checks run over RatioEstimator with five ratio methods in fast settings (small kernel grids,
few centres, a tiny network). Two checks are exempt, each for the reason in EXEMPT; the
behaviour they would have checked is tested directly below with labels in {0, 1}.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import ratiokit as rk
from ratiokit.methods import KLIEP, ULSIF, Classifier, RuLSIF
from ratiokit.synthetic import GaussianShift
from tests.test_fdiv import js_by_quadrature

GRID = {"bandwidth_factors": (0.5, 1.0), "lambdas": (0.1, 1.0)}
ESTIMATORS = [
    rk.RatioEstimator(ULSIF(n_centres=20, **GRID), rng=0),
    rk.RatioEstimator(RuLSIF(alpha=0.2, n_centres=20, **GRID), rng=0),
    rk.RatioEstimator(KLIEP(n_centres=10, bandwidth_factors=(0.5, 1.0), n_folds=2), rng=0),
    rk.RatioEstimator(Classifier(LogisticRegression()), rng=0),
    rk.RatioEstimator(Classifier(hidden=(8,), max_steps=20), rng=0),
]
# Both checks fit with labels {1, 2} (the smallest integer of a feature column and the next):
# RatioEstimator takes y in {0, 1} with 1 marking the numerator P, and refuses other labels
# with a ValueError naming `y` rather than guess which of two arbitrary labels is P (with
# "p"/"q" or {1, 2} any guess is a silent p/q versus q/p trap). What they check, fitting on
# every float and integer dtype and on a single feature, is tested below with labels {0, 1}.
EXEMPT = {
    "check_estimators_dtypes": "fits with labels {1, 2}; y must be in {0, 1} (1 = P)",
    "check_fit2d_1feature": "fits with labels {1, 2}; y must be in {0, 1} (1 = P)",
}


@pytest.fixture(autouse=True)
def _quiet_sklearn_convergence():
    # LogisticRegression on the checks' tiny random data can stop at max_iter; irrelevant here.
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=lambda est: EXEMPT)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def pooled(n_p, n_q, dim=2, seed=0):
    pair = GaussianShift(dim=dim, shift=1.0)
    gen = np.random.default_rng(seed)
    X = np.vstack([pair.sample_p(n_p, rng=gen), pair.sample_q(n_q, rng=gen)])
    return X, np.r_[np.ones(n_p, dtype=int), np.zeros(n_q, dtype=int)], pair


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
def test_fits_every_numeric_dtype_and_one_feature(dtype):
    # What the exempt checks test, with labels {0, 1}: every dtype fits and predicts finite
    # values (integers are cast to float64), and a single feature is a valid sample space.
    X, y, _ = pooled(60, 60, dim=3, seed=1)
    X = (3 * X).astype(dtype)
    for columns in (slice(None), slice(0, 1)):
        est = clone(ESTIMATORS[0]).fit(X[:, columns], y)
        out = est.log_ratio(X[:, columns])
        assert out.shape == (120,) and np.isfinite(out).all()
        assert out.dtype == (np.float32 if dtype == np.float32 else np.float64)
        assert est.n_features_in_ == X[:, columns].shape[1]


def test_labels_other_than_zero_and_one_are_refused_naming_y():
    X, y, _ = pooled(20, 20)
    with pytest.raises(ValueError, match=r"`y` must mark the two samples .*got labels \[1 2\]"):
        rk.RatioEstimator().fit(X, y + 1)
    with pytest.raises(ValueError, match=r"`y` must mark the two samples .*got one class, \[1\]"):
        rk.RatioEstimator().fit(X, np.ones(40, dtype=int))
    est = rk.RatioEstimator(rng=0).fit(X, y)
    with pytest.raises(ValueError, match="got one class"):
        est.score(X, np.zeros(40, dtype=int))
    with pytest.raises(NotFittedError):
        rk.RatioEstimator().log_ratio(X)


def test_clone_get_params_and_set_params():
    est = rk.RatioEstimator(ULSIF(n_centres=30), rng=3, device="cpu")
    params = est.get_params()
    assert set(params) == {"method", "rng", "device"}
    copy = clone(est)
    assert copy.method is not est.method and repr(copy.method) == repr(est.method)
    assert copy.get_params()["rng"] == 3
    est.set_params(method="kliep", rng=4)
    assert est.method == "kliep" and est.rng == 4
    # fit works on a copy of the method: the instance passed in stays unfitted.
    X, y, _ = pooled(50, 50)
    template = ULSIF(n_centres=10)
    fitted = rk.RatioEstimator(template, rng=0).fit(X, y)
    assert template.theta_ is None and fitted.method_.theta_ is not None


def test_grid_search_selects_a_method_with_the_implied_classifier_score():
    # The score is the implied classifier's mean log-likelihood (a proper scoring rule), so
    # it prefers a fitted ratio over the constant ratio of an unfittable setting: uLSIF with
    # a bandwidth 100 times the data's spread and a large ridge is nearly flat. Stratified
    # folds keep both samples in every fold.
    X, y, _ = pooled(300, 300, seed=2)
    flat = ULSIF(n_centres=20, bandwidth_factors=100.0, lambdas=10.0)
    good = ULSIF(n_centres=50)
    search = GridSearchCV(
        rk.RatioEstimator(rng=0), {"method": [flat, good]}, cv=StratifiedKFold(3)
    ).fit(X, y)
    assert search.best_params_["method"] is good
    scores = search.cv_results_["mean_test_score"]
    # A constant ratio c scores (log sigmoid(log c) + log sigmoid(-log c)) / 2 <= -log 2 on
    # balanced folds; the best possible score is the Bayes classifier's, -(log 2 - JS) with
    # JS = 0.1114 for a unit shift (quadrature, as in test_fdiv), i.e. -0.582. The fold means
    # of 200 log-likelihood terms (sd about 0.6) have sd 0.04, 0.025 over three folds: the
    # fitted ratio lies between the two, within 3 of those sds of the Bayes score.
    bayes = -(np.log(2) - js_by_quadrature(GaussianShift(dim=1, shift=1.0)))
    assert scores[0] < -np.log(2) + 0.005
    assert -np.log(2) < scores[1] < bayes + 0.075


def test_pipeline_with_a_scaler_and_seeded_refits():
    X, y, pair = pooled(400, 400, seed=3)
    pipe = make_pipeline(StandardScaler(), rk.RatioEstimator("ulsif", rng=5))
    pipe.fit(X, y)
    again = clone(pipe).fit(X, y)
    x_new = pair.sample_q(200, rng=9)
    est, est2 = pipe[-1], again[-1]
    z = pipe[0].transform(x_new)
    np.testing.assert_array_equal(est.log_ratio(z), est2.log_ratio(z))  # same int rng
    # Scaling the features does not change the density ratio (the Jacobians cancel), so
    # the fitted log-ratio tracks the exact one: Var_q(log r) = 1 for a unit shift, and
    # uLSIF at n = 400 leaves well under half of it.
    assert np.mean((est.log_ratio(z) - pair.log_ratio(x_new)) ** 2) < 0.5
    assert isinstance(pipe.score(X, y), float)
    t = torch.tensor(z, dtype=torch.float32)
    assert est.log_ratio(t).dtype == torch.float32
