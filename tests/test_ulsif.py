"""uLSIF and RuLSIF against exact ratios and divergences, a brute-force leave-one-out, contract.

Accuracy checks fit at n = m = 2000 and score the log-ratio on 4000 fresh points from P and
from Q against ``ratiokit.synthetic``'s exact answers. Thresholds are fractions of the MSE of
the zero predictor (``log r = 0``, "P = Q"), i.e. of ``E[(log r)^2]``; each fraction is the
value observed over six seeds during development, with a margin (listed by the thresholds).
A single seed's MSE is heavy-tailed (a few far-tail Q points, where no centre lies, get
``log r`` of -20 or less, and the leave-one-out score is itself noisy, so one seed in six
can select a poor model), so each check uses the median over seeds.
"""

from __future__ import annotations

import copy
import functools
import math
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import integrate

import ratiokit as rk
import tests.test_common as common
from ratiokit.methods import METHODS
from ratiokit.methods.ulsif import ULSIF, RuLSIF, loo_scores
from ratiokit.synthetic import GaussianMixture, GaussianShift, SyntheticPair

ALPHA = 0.1
N = 2000
N_EVAL = 4000
SEEDS = (0, 1, 2)
# Problems of the accuracy checks. A shift of 0.5 in 1-D keeps uLSIF's squared loss well posed:
# the variance of its leave-one-out score grows with E_q[r^4] = exp(6 shift^2), 4.5 here and
# 403 at shift 1 (where one seed in six picked the smallest bandwidth and ridge on the grid).
PROBLEMS = {
    "shift_d1": GaussianShift(dim=1, shift=0.5),
    "shift_d5": GaussianShift(dim=5, shift=1.0),
    "mixture": GaussianMixture(),
}


def log_relative(log_r: np.ndarray, alpha: float) -> np.ndarray:
    """log r_alpha = log r - log(alpha r + 1 - alpha), from the exact log r."""
    if alpha == 0:
        return log_r
    return log_r - np.logaddexp(math.log(alpha) + log_r, math.log1p(-alpha))


@functools.cache
def fitted(cls: type, problem: str, n: int, seed: int) -> RuLSIF:
    pair = PROBLEMS[problem]
    x_p, x_q = pair.sample_p(n, rng=100 + seed), pair.sample_q(n, rng=200 + seed)
    return cls().fit_critic(x_p, x_q, rng=seed)


@functools.cache
def evaluation(problem: str) -> tuple[np.ndarray, np.ndarray]:
    pair = PROBLEMS[problem]
    return pair.sample_p(N_EVAL, rng=10**6), pair.sample_q(N_EVAL, rng=10**6 + 1)


def log_mse(est: RuLSIF, problem: str) -> tuple[float, float]:
    """Log-ratio MSE at fresh P and Q points; RuLSIF is scored on its target, log r_alpha."""
    pair = PROBLEMS[problem]
    out = []
    for x in evaluation(problem):
        exact = pair.log_ratio(x)
        if est.alpha > 0:
            got, exact = np.log(est.relative_ratio(x)), log_relative(exact, est.alpha)
        else:
            got = est.log_ratio(x)
        out.append(float(np.mean((got - exact) ** 2)))
    return out[0], out[1]


def zero_mse(problem: str, alpha: float) -> tuple[float, float]:
    pair = PROBLEMS[problem]
    out = []
    for x in evaluation(problem):
        exact = pair.log_ratio(x)
        exact = log_relative(exact, alpha)
        out.append(float(np.mean(exact**2)))
    return out[0], out[1]


# (class, problem) -> largest allowed (P-side, Q-side) median MSE as a fraction of the zero
# predictor's. Each is about 1.3x the second-largest fraction over six development seeds (the
# largest value a median of three of them can take), listed per entry. uLSIF in 5-D is no
# better than the zero predictor at P points: 100 Gaussian bumps fit a linear log-ratio
# poorly there (even the best (sigma, lambda) on the grid does little better), so that side
# only checks it is not worse.
THRESHOLDS = {
    (ULSIF, "shift_d1"): (0.35, 0.6),  # observed 0.21 / 0.44
    (ULSIF, "shift_d5"): (1.0, 0.5),  # observed 0.87 / 0.38
    (ULSIF, "mixture"): (0.1, 0.15),  # observed 0.044 / 0.077
    (RuLSIF, "shift_d1"): (0.35, 0.65),  # observed 0.24 / 0.50
    (RuLSIF, "shift_d5"): (0.85, 0.5),  # observed 0.67 / 0.38
    (RuLSIF, "mixture"): (0.1, 0.15),  # observed 0.045 / 0.052
}


@pytest.mark.parametrize(("cls", "problem"), list(THRESHOLDS))
def test_log_ratio_mse_against_exact_ratio(cls, problem):
    mses = np.array([log_mse(fitted(cls, problem, N, s), problem) for s in SEEDS])
    median = np.median(mses, axis=0)
    zero = np.array(zero_mse(problem, ALPHA if cls is RuLSIF else 0.0))
    assert np.all(median < np.array(THRESHOLDS[cls, problem]) * zero), (median, zero)


@pytest.mark.parametrize("problem", ["shift_d1", "mixture"])
def test_relative_ratio_against_exact_r_alpha(problem):
    # E_q[(r_hat_alpha - r_alpha)^2] / Var_q(r_alpha): the fraction of r_alpha's variance under Q
    # left unexplained. Observed at most 0.23 (shift_d1) and 0.09 (mixture) over six seeds.
    pair = PROBLEMS[problem]
    x_q = evaluation(problem)[1]
    exact = np.exp(log_relative(pair.log_ratio(x_q), ALPHA))
    for seed in SEEDS:
        est = fitted(RuLSIF, problem, N, seed)
        assert np.mean((est.relative_ratio(x_q) - exact) ** 2) / np.var(exact) < 0.3


def pe_alpha_exact(pair: SyntheticPair, alpha: float) -> float:
    """PE_alpha = (E_p[r_alpha] - 1) / 2 = (int p^2 / (alpha p + (1-alpha) q) - 1) / 2 (quad)."""

    def integrand(x: float) -> float:
        lp, lq = pair.log_p([[x]])[0], pair.log_q([[x]])[0]
        return math.exp(2 * lp - np.logaddexp(math.log(alpha) + lp, math.log1p(-alpha) + lq))

    return (integrate.quad(integrand, -np.inf, np.inf, epsabs=1e-12)[0] - 1.0) / 2.0


def pe_standard_error(pair: SyntheticPair, x_p, x_q, alpha: float) -> float:
    """Sampling s.e. of PE_hat = mean_p(r - alpha r^2/2) - mean_q((1-alpha) r^2/2) at the exact
    relative ratio r: the estimator's spread if it knew r_alpha (its first-order variance)."""
    r_p = np.exp(log_relative(pair.log_ratio(x_p), alpha))
    r_q = np.exp(log_relative(pair.log_ratio(x_q), alpha))
    var_p = np.var(r_p - 0.5 * alpha * r_p**2) / len(r_p)
    var_q = np.var(0.5 * (1 - alpha) * r_q**2) / len(r_q)
    return math.sqrt(var_p + var_q)


@pytest.mark.parametrize(
    ("cls", "problem"), [(ULSIF, "shift_d1"), (RuLSIF, "shift_d1"), (RuLSIF, "mixture")]
)
def test_divergence_estimates_near_closed_form(cls, problem):
    # uLSIF: chi^2 = 2 PE = exp(shift^2) - 1 in closed form; RuLSIF: PE_alpha by quadrature.
    # Tolerance: 5 first-order standard errors (computed from the exact ratio on the fitted
    # samples); observed errors stayed below 1.8 of them over six seeds.
    pair = PROBLEMS[problem]
    for seed in SEEDS:
        x_p, x_q = pair.sample_p(N, rng=100 + seed), pair.sample_q(N, rng=200 + seed)
        est = fitted(cls, problem, N, seed)
        se = pe_standard_error(pair, x_p, x_q, est.alpha)
        pe = float(est.estimate_divergence("pe", torch.tensor(x_p), torch.tensor(x_q)))
        if cls is ULSIF:
            chi2 = float(est.estimate_divergence("pearson", torch.tensor(x_p), torch.tensor(x_q)))
            assert chi2 == pytest.approx(2 * pe, rel=1e-12)
            assert abs(chi2 - pair.pearson()) < 5 * 2 * se
        else:
            assert abs(pe - pe_alpha_exact(pair, ALPHA)) < 5 * se


def test_front_door_pe_is_half_the_pearson_divergence():
    # ratiokit.divergence's "pe" is chi^2 / 2 (alpha = 0). uLSIF answers it with its own
    # estimator; RuLSIF with alpha = 0.1 declares no front-door kinds (its own PE_alpha is a
    # different divergence), so the front door uses plug-ins of its inverted log_ratio.
    # Tolerance: 5 first-order standard errors, as above.
    assert ULSIF().kinds == ("pe", "pearson") and RuLSIF().kinds == ()
    assert RuLSIF(alpha=0.0).kinds == ("pe",)
    pair = PROBLEMS["shift_d1"]
    x_p, x_q = pair.sample_p(N, rng=100), pair.sample_q(N, rng=200)
    se = pe_standard_error(pair, x_p, x_q, 0.0)
    for method in (ULSIF(), RuLSIF()):
        value = rk.divergence(x_p, x_q, kind="pe", method=method, rng=0).value
        assert abs(value - pair.pearson() / 2) < 5 * se
    chi2 = rk.divergence(x_p, x_q, kind="pearson", method=ULSIF(), rng=0).value
    pe = rk.divergence(x_p, x_q, kind="pe", method=ULSIF(), rng=0).value
    assert chi2 == pytest.approx(2 * pe, rel=1e-12)


@pytest.mark.parametrize("cls", [ULSIF, RuLSIF])
def test_error_shrinks_as_n_grows(cls):
    # Median over five seeds of the (P + Q)/2 log-ratio MSE on the mixture (the median, not the
    # mean: one seed in six selects a poor model, whose MSE can be 50 times the others). A
    # nonparametric estimator's error falls more slowly than 1/n, but over a tenfold increase
    # of n even a rate of n^-(1/2) divides it by 3.2; we ask for at least 2 (observed: 5).
    def median_mse(n):
        return np.median(
            [np.mean(log_mse(fitted(cls, "mixture", n, s), "mixture")) for s in range(5)]
        )

    assert median_mse(2000) < 0.5 * median_mse(200)


# --------------------------------------------------------------------------- leave-one-out


def brute_force_loo(phi_x, phi_y, alpha, lam, centre_rows):
    """Refit RuLSIF without each pair (x_i, y_i) (and without centre i when x_i is centre i,
    i < centre_rows), clip, and score the refit on the pair."""
    n, m, b = phi_x.shape[0], phi_y.shape[0], phi_x.shape[1]
    total, clipped = 0.0, 0
    for i in range(min(n, m)):
        kx, ky = np.delete(phi_x, i, 0), np.delete(phi_y, i, 0)
        keep = np.arange(b) != i if i < centre_rows else np.ones(b, dtype=bool)
        kx, ky = kx[:, keep], ky[:, keep]
        hess = alpha * kx.T @ kx / (n - 1) + (1 - alpha) * ky.T @ ky / (m - 1)
        solved = np.linalg.solve(hess + lam * np.eye(keep.sum()), kx.mean(0))
        clipped += int((solved < 0).sum())
        theta = np.zeros(b)
        theta[keep] = np.maximum(solved, 0.0)
        r_x, r_y = phi_x[i] @ theta, phi_y[i] @ theta
        total += 0.5 * alpha * r_x**2 + 0.5 * (1 - alpha) * r_y**2 - r_x
    return total / min(n, m), clipped


@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.6])
@pytest.mark.parametrize(("n", "m", "centre_rows"), [(14, 11, 5), (11, 14, 5), (12, 12, 0)])
def test_vectorised_loo_equals_brute_force_refits(alpha, n, m, centre_rows):
    gen = np.random.default_rng(3)
    x, y = gen.normal(0.7, 1.0, (n, 2)), gen.normal(0.0, 1.0, (m, 2))
    centres = x[:5]

    def basis(a):
        return np.exp(-((a[:, None, :] - centres[None]) ** 2).sum(-1) / (2 * 0.9**2))

    phi_x, phi_y = basis(x), basis(y)
    lambdas = [1e-3, 0.05, 1.0]
    fast = loo_scores(
        torch.tensor(phi_x),
        torch.tensor(phi_y),
        alpha,
        torch.tensor(lambdas, dtype=torch.float64),
        centre_rows,
    ).numpy()
    results = [brute_force_loo(phi_x, phi_y, alpha, lam, centre_rows) for lam in lambdas]
    brute = np.array([score for score, _ in results])
    assert sum(clipped for _, clipped in results) > 0  # the clipping path is exercised
    np.testing.assert_allclose(fast, brute, rtol=1e-8)


def test_fitted_solution_and_selection():
    est = fitted(ULSIF, "mixture", 200, 0)
    pair = PROBLEMS["mixture"]
    x_p, x_q = pair.sample_p(200, rng=100), pair.sample_q(200, rng=200)
    # The selected cell is the leave-one-out minimum ...
    row, col = np.unravel_index(np.argmin(est.loo_scores_), est.loo_scores_.shape)
    assert est.bandwidth_ == est.bandwidth_grid_[row] and est.lambda_ == est.lambdas[col]
    assert est.loo_scores_.shape == (len(est.bandwidth_factors), len(est.lambdas))
    # ... and theta_ = max((H + lambda I)^-1 h, 0) on all data, recomputed in NumPy.
    c, h = est.centres_.numpy(), est.bandwidth_
    phi_x = np.exp(-((x_p[:, None] - c[None]) ** 2).sum(-1) / (2 * h * h))
    phi_y = np.exp(-((x_q[:, None] - c[None]) ** 2).sum(-1) / (2 * h * h))
    hess = phi_y.T @ phi_y / len(x_q) + est.lambda_ * np.eye(len(c))
    theta = np.maximum(np.linalg.solve(hess, phi_x.mean(0)), 0.0)
    np.testing.assert_allclose(est.theta_.numpy(), theta, rtol=1e-9, atol=1e-12)
    assert est.centres_.shape == (100, 1)  # min(n_centres, n) rows of x_p
    assert all(any(np.array_equal(ci, xi) for xi in x_p) for ci in c)


# --------------------------------------------------------------------------- behaviour


def small_pair(seed=0, n=150):
    gen = np.random.default_rng(seed)
    return gen.normal(0.5, 1.0, (n, 2)), gen.normal(0.0, 1.0, (n + 10, 2))


@pytest.mark.parametrize("cls", [ULSIF, RuLSIF])
def test_int_rng_is_bit_identical_and_row_order_does_not_matter(cls):
    x_p, x_q = small_pair()
    a, b = cls().fit_critic(x_p, x_q, rng=7), cls().fit_critic(x_p, x_q, rng=7)
    gen = np.random.default_rng(1)
    c = cls().fit_critic(x_p[gen.permutation(150)], x_q[gen.permutation(160)], rng=7)
    for other in (b, c):
        assert torch.equal(a.theta_, other.theta_) and torch.equal(a.centres_, other.centres_)
        assert np.array_equal(a.loo_scores_, other.loo_scores_)
        assert np.array_equal(a.log_ratio(x_q), other.log_ratio(x_q))
    assert not torch.equal(a.theta_, cls().fit_critic(x_p, x_q, rng=8).theta_)


def test_ulsif_is_rulsif_with_alpha_zero():
    x_p, x_q = small_pair()
    u, r = ULSIF().fit_critic(x_p, x_q, rng=0), RuLSIF(alpha=0.0).fit_critic(x_p, x_q, rng=0)
    assert torch.equal(u.theta_, r.theta_)
    np.testing.assert_allclose(u.log_ratio(x_p), np.log(u.relative_ratio(x_p)), rtol=1e-14)


def test_log_ratio_inverts_the_relative_ratio():
    x_p, x_q = small_pair()
    est = RuLSIF(alpha=0.3).fit_critic(x_p, x_q, rng=0)
    rel, log_r = est.relative_ratio(x_q), est.log_ratio(x_q)
    r = np.exp(log_r)
    np.testing.assert_allclose(r / (0.3 * r + 0.7), rel, rtol=1e-10)


def test_forward_before_fit_equals_fit_with_rng_zero_and_stores_nothing():
    x_p, x_q = (torch.tensor(a) for a in small_pair())
    est = RuLSIF()
    value = est(x_p, x_q)
    assert est.theta_ is None
    assert float(value) == float(RuLSIF().fit_critic(x_p, x_q, rng=0)(x_p, x_q))


@pytest.mark.parametrize("cls", [ULSIF, RuLSIF])
def test_forward_gradient_matches_finite_differences(cls):
    x_p, x_q = (torch.tensor(a) for a in small_pair(n=40))
    est = cls().fit_critic(x_p, x_q, rng=0)
    x_p.requires_grad_(True)
    x_q.requires_grad_(True)
    est(x_p, x_q).backward()
    for t in (x_p, x_q):
        with torch.no_grad():
            t[3, 1] += 1e-6
            up = float(est(x_p, x_q))
            t[3, 1] -= 2e-6
            down = float(est(x_p, x_q))
            t[3, 1] += 1e-6
        assert float(t.grad[3, 1]) == pytest.approx((up - down) / 2e-6, rel=1e-5, abs=1e-9)


def test_float32_agrees_with_float64():
    x_p, x_q = small_pair()
    est = ULSIF().fit_critic(x_p, x_q, rng=0)
    lr64 = est.log_ratio(torch.tensor(x_q))
    lr32 = est.log_ratio(torch.tensor(x_q, dtype=torch.float32))
    assert lr32.dtype == torch.float32
    # float32 kernels: relative error ~1e-6 in each of ~100 terms.
    np.testing.assert_allclose(lr32.numpy(), lr64.numpy(), rtol=1e-4, atol=1e-4)
    a64 = est(torch.tensor(x_p), torch.tensor(x_q))
    a32 = est(torch.tensor(x_p, dtype=torch.float32), torch.tensor(x_q, dtype=torch.float32))
    assert a32.dtype == torch.float32 and float(a32) == pytest.approx(float(a64), rel=1e-4)


@functools.cache
def property_model(alpha):
    return RuLSIF(alpha=alpha).fit_critic(*small_pair(), rng=0)


@settings(deadline=None, max_examples=25)
@given(
    arrays(np.float64, st.tuples(st.integers(1, 30), st.just(2)), elements=st.floats(-30, 30)),
    st.sampled_from([0.0, 0.1, 0.5]),
    st.randoms(use_true_random=False),
)
def test_properties_nonnegative_finite_and_row_order(x, alpha, rnd):
    est = property_model(alpha)
    rel, log_r = est.relative_ratio(x), est.log_ratio(x)
    assert np.all(rel >= 0) and np.all(np.isfinite(log_r))
    if alpha > 0:
        assert np.all(log_r <= math.log((1 - alpha) / alpha) + 14.0)  # cap of log_ratio
    perm = rnd.sample(range(len(x)), len(x))
    np.testing.assert_allclose(est.log_ratio(x[perm]), log_r[perm], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"alpha": 1.0}, ValueError, "`alpha` must be a real number in"),
        ({"alpha": -0.1}, ValueError, "`alpha`"),
        ({"alpha": "0.1"}, TypeError, "`alpha`"),
        ({"n_centres": 0}, ValueError, "`n_centres` must be an integer >= 1"),
        ({"n_centres": 2.5}, TypeError, "`n_centres`"),
        ({"bandwidth_factors": []}, ValueError, "`bandwidth_factors` must hold at least one"),
        ({"bandwidth_factors": [1.0, -2.0]}, ValueError, "`bandwidth_factors` must hold positive"),
        ({"bandwidth_factors": "median"}, TypeError, "`bandwidth_factors`"),
        ({"lambdas": [0.0]}, ValueError, "`lambdas` must hold positive"),
        ({"lambdas": [float("nan")]}, ValueError, "`lambdas`"),
        ({"backend": "gpu"}, ValueError, "`backend` must be one of"),
        ({"tile_size": 0}, ValueError, "`tile_size`"),
    ],
)
def test_bad_parameters_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        RuLSIF(**kwargs)


def test_bad_inputs_are_named():
    x_p, x_q = small_pair()
    est = ULSIF()
    with pytest.raises(RuntimeError, match="not fitted"):
        est.log_ratio(x_p)
    with pytest.raises(ValueError, match="`x_p` and `x_q` must have the same number of features"):
        est.fit_critic(x_p, x_q[:, :1])
    bad = x_p.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="`x_p` must hold finite values"):
        est.fit_critic(bad, x_q)
    est.fit_critic(x_p, x_q, rng=0)
    with pytest.raises(ValueError, match="`x` must have 2 features"):
        est.log_ratio(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="`kind` must be one of"):
        est.estimate_divergence("kl", torch.tensor(x_p), torch.tensor(x_q))
    with pytest.raises(ValueError, match="`kind`"):
        RuLSIF().estimate_divergence("pearson", torch.tensor(x_p), torch.tensor(x_q))


def test_pickle_keeps_fitted_state():
    est = property_model(0.1)
    x = np.linspace(-2, 2, 10).reshape(5, 2)
    for clone in (copy.deepcopy(est), pickle.loads(pickle.dumps(est))):
        np.testing.assert_array_equal(clone.log_ratio(x), est.log_ratio(x))


# --------------------------------------------------------------------------- contract

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
    monkeypatch.setitem(METHODS, "ulsif", ULSIF)
    monkeypatch.setitem(METHODS, "rulsif", RuLSIF)


@pytest.mark.parametrize("name", ["ulsif", "rulsif"])
@pytest.mark.parametrize("check", CONTRACT, ids=lambda f: f.__name__)
def test_contract(registered, name, check):
    check(name)


@pytest.mark.parametrize("name", ["ulsif", "rulsif"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_contract_dtype_and_device(registered, name, dtype, device):
    common.test_scalar_output_keeps_dtype_and_device(name, dtype, device)
