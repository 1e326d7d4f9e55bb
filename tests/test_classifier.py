"""Class-probability estimation against exact ratios, with torch and scikit-learn critics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.svm import LinearSVC

from ratiokit.methods.classifier import Classifier
from ratiokit.synthetic import GaussianMixture, GaussianShift
from tests.test_fdiv import js_by_quadrature, log_ratio_mse, samples

N = 2000


_FITS: dict = {}


def fitted(pair, seed=0, **kwargs):
    """One torch-critic fit per configuration, shared by the tests of this module."""
    key = (repr(pair), seed, tuple(sorted(kwargs.items())))
    if key not in _FITS:
        x_p, x_q = samples(pair, N, 10 * seed + 1)
        _FITS[key] = (x_p, x_q, Classifier(**kwargs).fit_critic(x_p, x_q, rng=seed))
    return _FITS[key]


SHIFT_1D = GaussianShift(dim=1, shift=1.0)


# --------------------------------------------------------------------------- torch critic


@pytest.mark.parametrize(
    ("pair", "threshold"),
    [
        # Log-ratio MSE at fresh Q points. Observed over five other seeds (n = 2000): 1-D
        # 0.003-0.021, 5-D 0.013-0.058, mixture 0.024-0.065. The thresholds are 2-2.5 times
        # the worst and far below the best constant predictor's MSE, Var_q(log r): 1 for the
        # unit shifts, 0.57 for the mixture.
        (SHIFT_1D, 0.05),
        (GaussianShift(dim=5, shift=1.0), 0.15),
        (GaussianMixture(), 0.15),
    ],
    ids=["shift-1d", "shift-5d", "mixture"],
)
def test_log_ratio_is_close_to_the_exact_one(pair, threshold):
    _, _, clf = fitted(pair)
    assert log_ratio_mse(clf, pair) < threshold


def test_plug_in_kl_and_forward_js():
    # KL(P||Q) = 0.5 ~ E_p[log r] on 20,000 fresh P rows (Monte Carlo sd 1 / sqrt(20000) =
    # 0.007); observed 0.489-0.581 over five other seeds, so the tolerance is 0.15.
    # forward on the training rows is the JS bound: quadrature 0.1114; observed deviations
    # at most 0.015 over five seeds (sampling sd of the bound about 0.006 at n = 2000).
    x_p, x_q, clf = fitted(SHIFT_1D)
    fresh = torch.tensor(SHIFT_1D.sample_p(20_000, rng=77))
    with torch.no_grad():
        assert float(clf.log_ratio(fresh).mean()) == pytest.approx(0.5, abs=0.15)
        assert float(clf(x_p, x_q)) == pytest.approx(js_by_quadrature(SHIFT_1D), abs=0.03)
        assert float(clf.estimate_divergence("js", x_p, x_q)) == float(clf(x_p, x_q))


def test_forward_is_near_zero_for_one_distribution():
    # With P = Q the optimal critic is 0 and the bound is 0; an early-stopped critic stays
    # near 0 (the bound on the training rows is optimistic by O(1/n) per parameter used).
    pair = GaussianShift(dim=2, shift=0.0)
    x_p, x_q = samples(pair, 1000, 5)
    clf = Classifier().fit_critic(x_p, x_q, rng=0)
    with torch.no_grad():
        assert abs(float(clf(x_p, x_q))) < 0.01
        assert float(clf(x_p, x_q)) <= math.log(2.0)


def test_prior_correction_with_unequal_sample_sizes():
    # n_p = 2 n_q: the balanced loss targets log p/q itself, so the estimate has no log 2
    # offset (an uncorrected pooled classifier would be off by log(n_p / n_q) = 0.69). Over
    # nine fits with n_p / n_q in {1/2, 1, 2}, the mean error at Q's points was within +-0.1
    # and the MSE at most 0.036, with no trend in n_p / n_q.
    x_p = torch.tensor(SHIFT_1D.sample_p(2 * N, rng=21))
    x_q = torch.tensor(SHIFT_1D.sample_q(N, rng=22))
    clf = Classifier().fit_critic(x_p, x_q, rng=0)
    x = torch.tensor(SHIFT_1D.sample_q(20_000, rng=23))
    with torch.no_grad():
        err = clf.log_ratio(x) - SHIFT_1D.log_ratio(x)
    assert abs(float(err.mean())) < 0.25 and float((err**2).mean()) < 0.06


def test_linear_torch_critic_recovers_the_exact_logit():
    # log r(x) = x - 1/2 is linear, so a linear critic can be exact; the logistic MLE's
    # standard error is about 2 / sqrt(n) ~ 0.045 per coefficient: 0.15 is over 3 of them.
    x_p, x_q = samples(SHIFT_1D, N, 31)
    linear = torch.nn.Linear(1, 1, dtype=torch.float64)
    clf = Classifier(linear, lr=0.02, patience=300).fit_critic(x_p, x_q, rng=0)
    (critic,) = clf.critics_
    assert critic.weight.item() == pytest.approx(1.0, abs=0.15)
    assert critic.bias.item() == pytest.approx(-0.5, abs=0.15)
    # The template is copied: it is neither trained nor one of the method's parameters.
    assert critic is not linear
    assert {id(p) for p in clf.parameters()} == {id(p) for p in critic.parameters()}


def test_gradients_reach_inputs_and_every_critic_parameter():
    x_p, x_q = samples(GaussianShift(dim=2, shift=1.0), 100, 32)
    clf = Classifier(max_steps=20, cross_fit=2).fit_critic(x_p, x_q, rng=0)
    x_p, x_q = x_p.requires_grad_(True), x_q.requires_grad_(True)
    clf(x_p, x_q).backward()
    assert x_p.grad.abs().sum() > 0 and x_q.grad.abs().sum() > 0
    params = list(clf.parameters())
    assert len(params) == 2 * 6  # two folds, three linear layers each
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


def test_max_steps_zero_gives_an_untrained_critic():
    x_p, x_q = samples(SHIFT_1D, 50, 33)
    clf = Classifier(max_steps=0).fit_critic(x_p, x_q, rng=0)
    assert len(clf.history_[0]) == 0
    assert torch.isfinite(clf(x_p, x_q))


def test_error_shrinks_with_n():
    # Logistic regression is well specified here (log r is linear), so its log-ratio MSE is
    # O(1/n): averaged over five seeds it must drop well over 4x from n = 250 to n = 4000.
    mse = {}
    for n in (250, 4000):
        errors = []
        for seed in range(5):
            x_p, x_q = samples(SHIFT_1D, n, 40 + seed)
            clf = Classifier(LogisticRegression()).fit_critic(x_p, x_q, rng=seed)
            errors.append(log_ratio_mse(clf, SHIFT_1D))
        mse[n] = np.mean(errors)
    assert mse[4000] < mse[250] / 4


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # max_iter=50
def test_seeded_fit_is_bit_identical():
    x_p, x_q = samples(GaussianShift(dim=2, shift=1.0), 200, 50)
    fits = [Classifier(cross_fit=3).fit_critic(x_p, x_q, rng=r) for r in (4, 4, 5)]
    with torch.no_grad():
        a, b, c = (f.log_ratio(x_p) for f in fits)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(fits[0].oof_log_ratio_p_, fits[1].oof_log_ratio_p_)
    state = torch.random.get_rng_state()
    Classifier(max_steps=5).fit_critic(x_p, x_q, rng=0)
    assert torch.equal(torch.random.get_rng_state(), state)  # no global RNG is touched
    # scikit-learn critics: an unset random_state is drawn from rng.
    mlp = MLPClassifier((8,), max_iter=50)
    fits = [Classifier(mlp).fit_critic(x_p, x_q, rng=r) for r in (4, 4, 5)]
    a, b, c = (f.log_ratio(x_p.numpy()) for f in fits)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert mlp.get_params()["random_state"] is None  # the user's estimator is not modified


# --------------------------------------------------------------------------- cross-fitting


def test_cross_fitting_out_of_fold_values_follow_the_rows():
    x_p, x_q = samples(SHIFT_1D, 300, 60)
    clf = Classifier(cross_fit=3, max_steps=200).fit_critic(x_p, x_q, rng=0)
    assert clf.oof_log_ratio_p_.shape == (300,) and clf.oof_log_ratio_q_.shape == (300,)
    # The folds depend on the rows as a set: permuted input gives permuted out-of-fold values.
    perm = torch.as_tensor(np.random.default_rng(1).permutation(300))
    again = Classifier(cross_fit=3, max_steps=200).fit_critic(x_p[perm], x_q, rng=0)
    assert torch.equal(again.oof_log_ratio_p_, clf.oof_log_ratio_p_[perm])
    # Each out-of-fold value comes from exactly one of the fold critics: the one that did not
    # train on that row. At new points the estimate averages all of them.
    with torch.no_grad():
        per_fold = torch.stack([c(x_p) for c in clf.critics_])
        matches = ((per_fold - clf.oof_log_ratio_p_).abs() < 1e-12).sum(dim=0)
        assert bool((matches == 1).all())
        torch.testing.assert_close(clf.log_ratio(x_p), per_fold.mean(dim=0), rtol=0, atol=1e-14)
    assert Classifier().fit_critic(x_p, x_q, rng=0).oof_log_ratio_p_ is None


def test_cross_fitting_removes_the_optimism_of_in_sample_plug_ins():
    # Gradient boosting with many leaves overfits: at its own training rows it is too sure,
    # so the in-sample plug-in E_p[log r] overshoots KL = 0.5 (0.71-0.84 over three seeds);
    # the out-of-fold plug-in uses each row's unseen critic and is closer (0.59-0.70).
    hgb = HistGradientBoostingClassifier(max_iter=100, max_leaf_nodes=63, early_stopping=False)
    x_p, x_q = samples(SHIFT_1D, N, 61)
    clf = Classifier(hgb, cross_fit=5).fit_critic(x_p, x_q, rng=0)
    in_sample = float(clf.log_ratio(x_p).mean())
    out_of_fold = float(clf.oof_log_ratio_p_.mean())
    assert in_sample > out_of_fold + 0.05
    assert abs(out_of_fold - 0.5) < abs(in_sample - 0.5)


# --------------------------------------------------------------------------- scikit-learn critics


def test_logistic_regression_coefficients_with_unequal_sample_sizes():
    # log r(x) = mu' x - |mu|^2 / 2 with mu = (1, 1) / sqrt(2): a logistic model is exact.
    # Fitted on the pooled rows with n_p = 2 n_q, its intercept carries the prior
    # log(n_p / n_q); the method removes it. Standard errors are about 0.04 (Fisher
    # information of 3000 rows), so 0.15 is ~4 of them. C = 1e4: a negligible penalty.
    pair = GaussianShift(dim=2, shift=1.0)
    x_p = torch.tensor(pair.sample_p(2 * N, rng=70))
    x_q = torch.tensor(pair.sample_q(N, rng=71))
    clf = Classifier(LogisticRegression(C=1e4)).fit_critic(x_p, x_q, rng=0)
    (model,) = clf.critics_
    np.testing.assert_allclose(model.coef_[0], pair.mean_p, atol=0.15)
    assert clf.log_prior_ == [pytest.approx(-math.log(2.0))]
    assert model.intercept_[0] + clf.log_prior_[0] == pytest.approx(-0.5, abs=0.15)
    # log_ratio is that linear function (through predict_proba's log-odds).
    x = pair.sample_q(500, rng=72)
    linear = x @ model.coef_[0] + model.intercept_[0] - math.log(2.0)
    np.testing.assert_allclose(clf.log_ratio(x), linear, rtol=1e-9, atol=1e-9)


def test_calibration_turns_margins_into_log_odds():
    # A linear SVM's margin is not a log-odds: read as one, the ratio is badly off (MSE 0.42
    # over three seeds). Platt scaling of a linear margin is a linear logit, which is exact
    # here: MSE 1e-4 to 6e-4. The threshold 0.01 sits between the two regimes.
    x_p, x_q = samples(SHIFT_1D, N, 80)
    raw = Classifier(LinearSVC()).fit_critic(x_p, x_q, rng=0)
    platt = Classifier(LinearSVC(), calibration="sigmoid").fit_critic(x_p, x_q, rng=0)
    assert log_ratio_mse(raw, SHIFT_1D) > 0.1
    assert log_ratio_mse(platt, SHIFT_1D) < 0.01


def test_sklearn_forward_is_for_estimation_only():
    x_p, x_q = samples(SHIFT_1D, 500, 81)
    clf = Classifier(LogisticRegression()).fit_critic(x_p, x_q, rng=0)
    value = clf(x_p, x_q)
    assert not value.requires_grad and 0.05 < float(value) < 0.2  # JS = 0.111
    with pytest.raises(TypeError, match="`critic` must be a torch module for a differentiable"):
        clf(x_p.requires_grad_(True), x_q)
    with torch.no_grad():
        assert float(clf(x_p, x_q)) == float(value)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"critic": "mlp"}, TypeError, "`critic` must be None, a torch.nn.Module or a scikit"),
        ({"calibration": "sigmoid"}, ValueError, "`calibration` must be None for a torch"),
        (
            {"critic": LogisticRegression(), "calibration": "beta"},
            ValueError,
            r"`calibration` must be one of \['isotonic', 'sigmoid'\]",
        ),
        ({"cross_fit": 1}, ValueError, "`cross_fit` must be an integer >= 2"),
        ({"cross_fit": 2.0}, TypeError, "`cross_fit` must be an integer"),
        ({"batch_size": 0}, ValueError, "`batch_size` must be an integer >= 1"),
        ({"activation": "swish"}, ValueError, "`activation` must be one of"),
    ],
)
def test_bad_parameters_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        Classifier(**kwargs)


def test_bad_calls_are_named():
    x = torch.zeros(5, 2, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="Classifier is not fitted yet"):
        Classifier().log_ratio(x)
    with pytest.raises(ValueError, match=r"`x_p` must have at least 2 \* `cross_fit` = 6"):
        Classifier(cross_fit=3).fit_critic(x, torch.zeros(10, 2), rng=0)
    x_p, x_q, clf = fitted(SHIFT_1D)
    with pytest.raises(ValueError, match="`x` must have 1 features, as in `fit_critic`; got 2"):
        clf.log_ratio(x)
    with pytest.raises(ValueError, match=r"`kind` must be one of \['js'\]; got 'kl'"):
        clf.estimate_divergence("kl", x_p, x_q)
    with pytest.raises(ValueError, match="`x_p` must hold finite values"):
        Classifier().fit_critic(x_p * math.nan, x_q)
