"""RatioEstimator as a scikit-learn estimator: the estimator checks, clone, grid search, pipelines.

The checks run over RatioEstimator with five ratio methods in fast settings (small kernel grids,
few centres, a tiny network). Some checks are exempt, each for the reason in EXEMPT; the
behaviour the first two would have checked is tested directly below with labels in {0, 1}.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import ratiokit as rk
from ratiokit.methods import (
    KLIEP,
    METHODS,
    ULSIF,
    Classifier,
    Discrepancy,
    MomentMatching,
    RuLSIF,
)
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
# RatioEstimator takes y in {0, 1} with 1 marking the numerator P, and refuses other labels
# with a ValueError naming `y` rather than guess which of two arbitrary labels is P (with
# "p"/"q" or {1, 2} any guess is a silent p/q versus q/p trap). Checks that fit with other
# labels are exempt; what the first two check, fitting on every float and integer dtype and on
# a single feature, is tested below with labels {0, 1}. As a classifier of the two samples
# (so that an integer `cv` means stratified folds), it meets scikit-learn's classifier checks,
# except where they ask for other labels or for scikit-learn's own wording of an error that
# RatioEstimator raises in the project's template.
LABELS = "fits with labels other than {0, 1}; y must be in {0, 1} (1 = P)"
EXEMPT = {
    "check_estimators_dtypes": "fits with labels {1, 2}; y must be in {0, 1} (1 = P)",
    "check_fit2d_1feature": "fits with labels {1, 2}; y must be in {0, 1} (1 = P)",
    "check_classifier_data_not_an_array": LABELS,
    "check_classifiers_classes": LABELS,
    "check_classifier_not_supporting_multiclass": (
        "wants 'Only binary classification is supported.'; labels {0, 1, 2} are refused with "
        "the project's error template naming `y`"
    ),
    "check_classifiers_regression_target": (
        "wants 'Unknown label type'; a continuous y is refused with the template naming `y`"
    ),
    "check_fit2d_predict1d": (
        "wants 'Reshape your data' for a 1-D X; at every ratiokit door 1-D means one feature, "
        "so a 1-D X after a fit on 3 features is refused naming the feature count"
    ),
}
# uLSIF with the fast 2 x 2 grid and 20 centres classifies the training rows of two separated
# blobs with accuracy 0.815 (the check asks for 0.83; 0.87 with uLSIF's default grid): it fits
# r in L2(q), which leaves log r loose where r is near 0. The other four methods pass.
EXEMPT_ULSIF = {
    "check_classifiers_train": "training accuracy 0.815 < 0.83 on separated blobs (see above)"
}


def expected_failed(estimator):
    fast_ulsif = type(estimator.method) is ULSIF
    return {**EXEMPT, **EXEMPT_ULSIF} if fast_ulsif else EXEMPT


@pytest.fixture(autouse=True)
def _quiet_sklearn_convergence():
    # LogisticRegression on the checks' tiny random data can stop at max_iter; irrelevant here.
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed)
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
    params = est.get_params(deep=False)
    assert set(params) == {"method", "rng", "device"}
    # deep: the method's own settings too, as scikit-learn's meta-estimators give them
    assert est.get_params()["method__n_centres"] == 30
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


# One non-default setting per registered method: set_params must give what the constructor
# gives for it (for "mmd" and "kmm" the bandwidth lives in a Kernel built by the constructor).
SETTINGS = {
    "bregman": {"max_steps": 7},
    "classifier": {"max_steps": 7},
    "energy": {"estimator": "biased"},
    "fdiv": {"f": "js"},
    "kliep": {"n_centres": 7},
    "kmm": {"bandwidth": 2.0},
    "mmd": {"bandwidth": 2.0},
    "mmd_deep": {"max_steps": 7},
    "mmd_opt": {"kernel": "laplace"},
    "mmd_rff": {"n_features": 7},
    "mmdagg": {"null": "wild"},
    "moments": {"statistics": "mean"},
    "rulsif": {"alpha": 0.3},
    "ulsif": {"n_centres": 7},
    "wasserstein": {"one_sided": True},
}


def test_settings_cover_the_registry():
    assert set(SETTINGS) == set(METHODS)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_round_trips_get_params_through_its_constructor(name):
    cls = METHODS[name]
    method = cls()
    params = method.get_params(deep=False)
    assert set(params) == set(inspect.signature(cls.__init__).parameters) - {"self"}
    rebuilt = cls(**params)
    assert rebuilt.get_params(deep=False) == params and repr(rebuilt) == repr(method)
    copy = clone(method)  # scikit-learn's clone: get_params(deep=False) and the constructor
    assert type(copy) is cls and copy is not method and repr(copy) == repr(method)
    # set_params is the constructor with the new value, not an attribute written beside it
    wanted = cls(**SETTINGS[name])
    assert method.set_params(**SETTINGS[name]) is method
    assert repr(method) == repr(wanted) != repr(rebuilt)
    assert method.get_params(deep=False) == wanted.get_params(deep=False)


class NoSettings(Discrepancy):
    """A method without an ``__init__`` of its own: nn.Module's ``*args, **kwargs`` only."""

    name = "no_settings"


def test_a_method_without_settings_has_no_params_and_clones():
    method = NoSettings()
    assert method.get_params() == {}
    assert type(clone(method)) is NoSettings and clone(method) is not method
    with pytest.raises(ValueError, match=r"`x` must be a parameter of NoSettings, one of \[\]"):
        method.set_params(x=1)


def test_set_params_validates_and_leaves_a_refused_method_unchanged():
    X, y, _ = pooled(50, 50)
    method = rk.RatioEstimator(ULSIF(n_centres=10), rng=0).fit(X, y).method_
    with pytest.raises(ValueError, match=r"`n_centres` must be .*got 0"):
        method.set_params(n_centres=0)
    assert method.n_centres == 10 and method.theta_ is not None  # unchanged, still fitted
    with pytest.raises(ValueError, match=r"`n_centers` must be a parameter of ULSIF, one of"):
        method.set_params(n_centers=5)
    with pytest.raises(ValueError, match=r"`n_centres` must have parameters of its own"):
        method.set_params(n_centres__x=5)
    assert method.set_params(n_centres=12).theta_ is None  # rebuilt: the fit is dropped
    # a scikit-learn critic's own settings are nested one level further
    est = rk.RatioEstimator(Classifier(LogisticRegression(C=1.0)))
    assert est.get_params()["method__critic__C"] == 1.0
    est.set_params(method__critic__C=0.5)
    assert est.method.critic.C == 0.5


def test_nested_grid_search_selects_the_setting_closest_to_the_true_ratio():
    # The issue's call: GridSearchCV(RatioEstimator(ULSIF()), {"method__n_centres": ...}).
    # An integer cv means stratified folds (RatioEstimator is a classifier of the two
    # samples), so the P-then-Q row order below needs no shuffling. The selection must also
    # be right: refit on all rows, the chosen setting has the smallest mean squared error of
    # the log ratio against the exact one (log r = mu . x - 1/2) on 2000 new points of Q.
    # Measured over seeds 0-3: the chosen (bandwidth factor 1, 5 centres) errs by 0.30-0.58,
    # every other setting by at least 1.16, so the margin is wide.
    X, y, pair = pooled(300, 300, seed=0)
    grid = {"method__n_centres": [5, 100], "method__bandwidth_factors": [0.1, 1.0, 10.0]}
    search = GridSearchCV(rk.RatioEstimator(ULSIF(lambdas=0.1), rng=0), grid, cv=3).fit(X, y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    x_new = pair.sample_q(2000, rng=11)
    errors = [
        np.mean((clone(search.estimator).set_params(**p).fit(X, y).log_ratio(x_new)
                 - pair.log_ratio(x_new)) ** 2)
        for p in search.cv_results_["params"]
    ]  # fmt: skip
    assert search.best_index_ == int(np.argmin(errors))
    assert search.best_estimator_.method_.n_centres == search.best_params_["method__n_centres"]


def test_nested_names_reach_a_method_given_by_name():
    # The default method is the name "ulsif": nested settings apply to a fresh ULSIF().
    X, y, _ = pooled(60, 60, seed=7)
    grid = {"method__n_centres": [5, 10]}
    search = GridSearchCV(rk.RatioEstimator(rng=0), grid, cv=2).fit(X, y)
    assert type(search.best_estimator_.method) is ULSIF
    assert search.best_estimator_.method.n_centres == search.best_params_["method__n_centres"]
    est = rk.RatioEstimator("kliep").set_params(method__n_folds=3)
    assert type(est.method) is KLIEP and est.method.n_folds == 3
    est = rk.RatioEstimator("kliep").set_params(method="ulsif", method__n_centres=4)
    assert type(est.method) is ULSIF and est.method.n_centres == 4
    with pytest.raises(ValueError, match=r"`n_folds` must be a parameter of ULSIF"):
        rk.RatioEstimator().set_params(method__n_folds=3)
    with pytest.raises(ValueError, match=r"`method` must be one of .*got 'ulsiff'"):
        rk.RatioEstimator("ulsiff").set_params(method__n_centres=3)


def test_pipeline_gives_log_ratios_and_membership_probabilities_of_the_raw_rows():
    # A pipeline forwards decision_function / predict_proba / predict. Its log ratio is that of
    # the raw rows: standardising both samples by the same invertible affine map multiplies
    # p and q by one Jacobian, which cancels in p/q. The raw features are on scales 1 and 50
    # (the second shifted by 1000), so without the scaler the Gaussian kernel would see one
    # feature. n_p = 300, n_q = 600: the prior ratio 1/2 must enter the probabilities.
    gen = np.random.default_rng(4)
    pair = GaussianShift(dim=2, shift=1.0)
    scale, offset = np.array([1.0, 50.0]), np.array([0.0, 1000.0])
    X = np.vstack([pair.sample_p(300, rng=gen), pair.sample_q(600, rng=gen)]) * scale + offset
    y = np.r_[np.ones(300, dtype=int), np.zeros(600, dtype=int)]
    pipe = make_pipeline(StandardScaler(), rk.RatioEstimator(KLIEP(n_centres=50), rng=0))
    pipe.fit(X, y)
    x_new = pair.sample_q(2000, rng=gen)
    truth = pair.log_ratio(x_new)  # exact: mu . x - 1/2
    raw = x_new * scale + offset
    log_r = pipe.decision_function(raw)
    np.testing.assert_array_equal(log_r, pipe[-1].log_ratio(pipe[0].transform(raw)))
    # The zero predictor's MSE is Var_q(log r) = |mu|^2 = 1; KLIEP at these sizes leaves
    # 0.06-0.10 (seeds 0-4), so a quarter of the variance is a generous bound.
    assert np.mean((log_r - truth) ** 2) < 0.25
    proba = pipe.predict_proba(raw)
    assert proba.shape == (2000, 2) and list(pipe.classes_) == [0, 1]
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + 2 * np.exp(-log_r)), rtol=1e-12)
    # Against the Bayes probability r n_p / (r n_p + n_q) of the exact ratio: the fitted one
    # is off by a mean square of 0.001-0.003 (seeds 0-4); leaving out the prior would be off
    # by 0.018 (the exact ratio's sigmoid(log r) against sigmoid(log r - log 2)).
    bayes = 1 / (1 + 2 * np.exp(-truth))
    assert np.mean((proba[:, 1] - bayes) ** 2) < 0.006
    np.testing.assert_array_equal(pipe.predict(raw), (proba[:, 1] > 0.5).astype(int))


def test_moments_cross_validates_with_an_integer_cv():
    # The issue's run: cross-validated moments scored NaN on five folds, each with a traceback,
    # because an integer cv split the P-then-Q rows into unstratified folds holding one sample.
    # Now an integer cv is stratified. Each fold's score is a mean of 80 log-likelihood terms
    # (sd about 0.6), so the mean over 5 folds has sd about 0.03; the Bayes score for a unit
    # shift is -(log 2 - JS) = -0.582 (JS by quadrature, as in test_fdiv), and the exact tilt
    # ("mean_cov" spans log r) adds only a fitting error, so 0.1 holds 3 sd and that error.
    X, y, _ = pooled(200, 200, seed=5)
    scores = cross_val_score(rk.RatioEstimator("moments", rng=0), X, y, cv=5)
    assert np.isfinite(scores).all()
    bayes = -(np.log(2) - js_by_quadrature(GaussianShift(dim=1, shift=1.0)))
    assert abs(scores.mean() - bayes) < 0.1


def test_moments_without_a_tilt_fails_at_fit_naming_the_method():
    # 13 features: the default "mean_cov" has 13 + 13 * 14 / 2 = 104 statistics, more than
    # the 36 rows of Q, whose reweightings then cannot match P's 104 means.
    X, y, _ = pooled(35, 36, dim=13, seed=6)
    with pytest.raises(ValueError, match=r"`method` must fit a log ratio on these samples; "
                       r"got 'moments', which did not: no exponential tilt"):  # fmt: skip
        rk.RatioEstimator("moments", rng=0).fit(X, y)
    # what the message suggests works: a ridge on the tilt's dual always has a maximiser
    est = rk.RatioEstimator(MomentMatching(l2=0.1), rng=0).fit(X, y)
    assert np.isfinite(est.score(X, y))
