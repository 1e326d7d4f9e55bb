"""Kernel mean matching: accuracy against closed forms, the QP against SciPy, errors, seeding."""

import math
import pickle
import warnings

import numpy as np
import pytest
import torch
from scipy import optimize, stats

import ratiokit.methods.kmm as kmm_module
from ratiokit.methods import get_method
from ratiokit.methods.kmm import KernelMeanMatching
from ratiokit.methods.mmd import MMD
from ratiokit.synthetic import GaussianShift


def gaussian_shift(seed, n=400, m=400):
    """P = N(0.5, 1) and Q = N(0, 1) in 1-D: the true ratio is r(x) = exp(0.5 x - 0.125)."""
    rng = np.random.default_rng(seed)
    x_p = torch.as_tensor(rng.normal(0.5, 1.0, size=(n, 1)))
    x_q = torch.as_tensor(rng.normal(0.0, 1.0, size=(m, 1)))
    return x_p, x_q


def gaussian_gram(a, b, h):
    """Brute-force NumPy Gaussian kernel matrix exp(-|a_i - b_j|^2 / (2 h^2))."""
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2.0 * h**2))


# ---------------------------------------------------------------- against independent truth


def test_against_gaussian_shift_weighted_means():
    # KMM's guarantee is about expectations: sum_j beta_j f(y_j) / sum_j beta_j estimates
    # E_p f. Reference values are closed forms under P = N(0.5, 1), for smooth f:
    #   E_p[x] = 0.5 (sd_p 1),  E_p[sin x] = exp(-1/2) sin(0.5) (sd_p 0.616),
    # while Q = N(0, 1) gives E_q[x] = E_q[sin x] = 0.
    n = m = 400
    x_p, x_q = gaussian_shift(0, n, m)
    w = KernelMeanMatching().fit_critic(x_p, x_q, rng=0).weights_.numpy()
    y, y_p = x_q[:, 0].numpy(), x_p[:, 0].numpy()
    cases = [(lambda t: t, 0.5, 1.0), (np.sin, math.exp(-0.5) * math.sin(0.5), 0.616)]
    for f, truth, sd_p in cases:
        weighted, plain = np.average(f(y), weights=w), f(y).mean()
        # KMM matches the P *sample's* kernel mean, so the weighted mean carries the P
        # sample's error, standard error sd_p / sqrt(n): allow 4 of them. (Over seeds 0-19
        # the largest was 3.1; the unweighted means are 9 to 10 standard errors off.)
        assert abs(weighted - truth) < 4.0 * sd_p / math.sqrt(n)
        assert abs(weighted - truth) < abs(plain - truth)
        # Smooth functions lie (nearly) in the RKHS, whose mean embedding KMM matches: the
        # weighted Q mean equals the P sample mean far inside its standard error 1/sqrt(n)
        # (over seeds 0-19 the gap was at most 0.21 / sqrt(n)).
        assert abs(weighted - f(y_p).mean()) < 0.5 / math.sqrt(n)
    # The weights average to E_q[r] = 1 within 4 standard errors, sd_q(r) = sqrt(e^0.25 - 1).
    assert abs(w.mean() - 1.0) < 4.0 * math.sqrt(math.exp(0.25) - 1.0) / math.sqrt(m)


def test_against_gaussian_shift_true_ratio_with_ridge():
    # Pointwise, the unregularised weights chase the P sample's noise; a ridge of 1 (penalty
    # 0.5 k(0) ||beta||^2) makes them a smooth ratio estimate. Over seeds 0-19 at n = m = 400
    # the correlation with r(y) = exp(0.5 y - 0.125) was >= 0.93 (Spearman) and >= 0.83
    # (Pearson); this seed is the one with the lowest Pearson value. Unrelated weights would
    # give about 0 +- 0.05 (1 / sqrt(m)), so 0.9 and 0.75 are far from chance.
    x_p, x_q = gaussian_shift(1)
    w = KernelMeanMatching(ridge=1.0).fit_critic(x_p, x_q, rng=0).weights_.numpy()
    r = np.exp(0.5 * x_q[:, 0].numpy() - 0.125)
    assert stats.spearmanr(w, r).statistic > 0.9
    assert stats.pearsonr(w, r).statistic > 0.75


@pytest.mark.parametrize("seed", [0, 2, 4])
def test_default_ridge_weights_track_the_true_ratio(seed):
    # GaussianShift(shift=0.5): r(y) = exp(0.5 y - 0.125) on Q = N(0, 1). The true ratio's
    # effective sample size (sum r)^2 / sum r^2 is m / E_q[r^2] = exp(-0.25) m = 0.78 m.
    # Weights with half of it give weighted means twice its variance: below that they are
    # noise, and the paper's ridge 1e-8 gave 0.16, 0.013 and 0.062 m on these seeds. Weights
    # must also beat no weights at all: their root-mean-square error against r must be below
    # that of beta = 1, sqrt(mean (r - 1)^2) ~ sd_q(r) = sqrt(e^0.25 - 1) = 0.53 (the paper's
    # ridge: 2.2 to 8.7; the default over seeds 0-7: 0.29 to 0.69 of it).
    pair = GaussianShift(dim=1, shift=0.5)
    gen = np.random.default_rng(seed)
    x_p, x_q = pair.sample_p(400, rng=gen), pair.sample_q(400, rng=gen)
    w = KernelMeanMatching().fit_critic(torch.as_tensor(x_p), torch.as_tensor(x_q), rng=0)
    w = w.weights_.numpy()
    r = np.exp(pair.log_ratio(x_q))
    assert w.sum() ** 2 / (w**2).sum() > 0.5 * math.exp(-0.25) * 400
    assert np.sqrt(np.mean((w - r) ** 2)) < np.sqrt(np.mean((r - 1.0) ** 2))


# ---------------------------------------------------------------------- the QP itself


@pytest.mark.parametrize(
    ("shift", "weight_bound", "epsilon", "active"),
    [
        (1.0, 2.0, None, "upper"),  # P far to the right: weights on the right hit B = 2
        (3.0, 1000.0, 0.01, "sum"),  # P barely overlaps Q: the sum sits on m (1 - eps)
    ],
)
def test_qp_against_scipy(shift, weight_bound, epsilon, active):
    rng = np.random.default_rng(2)
    n, m, h = 50, 40, 0.8
    xp = rng.normal(shift, 1.0, size=(n, 2))
    xq = rng.normal(0.0, 1.0, size=(m, 2))
    kmm = KernelMeanMatching(bandwidth=h, weight_bound=weight_bound, epsilon=epsilon, ridge=1e-8)
    beta = kmm.fit_critic(torch.as_tensor(xp), torch.as_tensor(xq)).weights_.numpy()
    # The QP rebuilt by brute force in NumPy (K with the ridge 1e-8 k(0)).
    gram = gaussian_gram(xq, xq, h) + 1e-8 * np.eye(m)
    kappa = gaussian_gram(xq, xp, h).sum(1) * m / n
    eps = (math.sqrt(m) - 1) / math.sqrt(m) if epsilon is None else epsilon
    lo, hi = m * (1 - eps), m * (1 + eps)

    def objective(b):
        return 0.5 * b @ gram @ b - kappa @ b

    # Constraints hold: the interior-point iterates stay strictly feasible (the sum up to
    # rounding of a sum of m terms).
    assert beta.min() >= 0.0 and beta.max() <= weight_bound
    assert lo - 1e-9 <= beta.sum() <= hi + 1e-9
    # The case exercises the constraint it is meant to (active to solver tolerance 1e-6).
    if active == "upper":
        assert beta.max() > weight_bound - 1e-6
    else:
        assert beta.sum() < lo + 1e-6
    # KKT conditions, checked numerically: with g = K beta - kappa there is one multiplier nu
    # of the sum constraint (nu = lambda_hi - lambda_lo, 0 unless that constraint is active)
    # with g_j + nu = 0 on free weights, >= 0 at beta_j = 0 and <= 0 at beta_j = B. The
    # solver stops at a dual residual of 1e-8 (1 + max |kappa|); complementary slackness
    # leaves about mu / beta_j < 1e-6 (1 + max |kappa|) on weights above 1e-3, hence `tol`.
    g = gram @ beta - kappa
    tol = 1e-6 * (1.0 + np.abs(kappa).max())
    free = (beta > 1e-3) & (beta < weight_bound - 1e-3)
    nu = -np.median(g[free])
    assert np.abs(g[free] + nu).max() < tol
    assert (g[beta <= 1e-3] + nu).min() > -tol
    if active == "upper":
        assert (g[beta >= weight_bound - 1e-3] + nu).max() < tol
        assert abs(nu) < tol  # the sum constraint is slack
    else:
        assert nu < -tol  # the lower side of the sum constraint binds: lambda_lo > 0
    # An independent solver (SciPy's SLSQP from the uniform start) finds no better point, up
    # to our stopping rule (relative duality gap 1e-9).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SLSQP may warn about bound rounding
        res = optimize.minimize(
            objective,
            np.ones(m),
            jac=lambda b: gram @ b - kappa,
            method="SLSQP",
            bounds=optimize.Bounds(0.0, weight_bound),
            constraints=[optimize.LinearConstraint(np.ones((1, m)), lo, hi)],
            options={"maxiter": 1000, "ftol": 1e-14},
        )
    # (SLSQP may stop with "positive directional derivative" at its precision limit; its
    # point is still a valid comparison once it is feasible.)
    other = np.clip(res.x, 0.0, weight_bound)
    assert lo - 1e-9 <= other.sum() <= hi + 1e-9
    assert objective(beta) <= objective(other) + 1e-9 * (1.0 + abs(objective(other)))


# ------------------------------------------------------------------------- log_ratio


def test_log_ratio_before_fit_raises():
    with pytest.raises(RuntimeError, match=r"call `fit_critic\(x_p, x_q\)` first"):
        KernelMeanMatching().log_ratio(torch.zeros(3, 1))


def test_log_ratio_only_on_fitted_sample():
    x_p, x_q = gaussian_shift(3, n=60, m=50)
    kmm = KernelMeanMatching().fit_critic(x_p, x_q)
    out = kmm.log_ratio(x_q)
    assert out.shape == (50,)
    assert torch.equal(out, kmm.weights_.log())
    with pytest.raises(ValueError, match="`x` must be the Q sample passed to `fit_critic`"):
        kmm.log_ratio(x_p)  # another shape
    with pytest.raises(ValueError, match="`x` must be the Q sample passed to `fit_critic`"):
        kmm.log_ratio(x_q + 1e-12)  # same shape, other values


def test_log_ratio_keeps_dtype_and_type():
    x_p, x_q = gaussian_shift(4, n=60, m=50)
    p32, q32 = x_p.to(torch.float32), x_q.to(torch.float32)
    kmm = KernelMeanMatching().fit_critic(p32, q32)
    assert kmm.weights_.dtype == torch.float64  # the QP runs in float64 whatever the input
    out = kmm.log_ratio(q32)
    assert out.dtype == torch.float32
    assert torch.equal(out, kmm.weights_.log().to(torch.float32))
    # NumPy in, NumPy out, same dtype; a float64 copy of the float32 sample is the same sample.
    arr = kmm.log_ratio(q32.numpy())
    assert isinstance(arr, np.ndarray) and arr.dtype == np.float32
    assert kmm.log_ratio(q32.to(torch.float64)).dtype == torch.float64


# --------------------------------------------------------------------------- forward


def test_forward_against_numpy_v_statistic():
    rng = np.random.default_rng(5)
    xp, xq, h = rng.normal(size=(30, 3)), rng.normal(0.3, 1.2, size=(25, 3)), 0.8
    # Biased MMD^2 (V-statistic): mean K_pp + mean K_qq - 2 mean K_pq, brute force.
    expected = (
        gaussian_gram(xp, xp, h).mean()
        + gaussian_gram(xq, xq, h).mean()
        - 2.0 * gaussian_gram(xp, xq, h).mean()
    )
    x_p = torch.tensor(xp, requires_grad=True)
    x_q = torch.tensor(xq, requires_grad=True)
    value = KernelMeanMatching(bandwidth=h)(x_p, x_q)
    # float64 sums of ~2,000 terms of size <= 1: 1e-10 relative is far above rounding.
    assert float(value.detach()) == pytest.approx(expected, rel=1e-10)
    value.backward()
    for grad in (x_p.grad, x_q.grad):
        assert grad is not None
        assert bool(torch.isfinite(grad).all()) and float(grad.abs().max()) > 0


def test_forward_gradcheck_and_fitted_bandwidth():
    rng = np.random.default_rng(6)
    x_p = torch.tensor(rng.normal(size=(5, 2)), requires_grad=True)
    x_q = torch.tensor(rng.normal(size=(4, 2)), requires_grad=True)
    kmm = KernelMeanMatching(bandwidth=0.9)
    # Analytic gradients against central finite differences (float64, torch defaults).
    assert torch.autograd.gradcheck(kmm, (x_p, x_q))
    # After a fit, forward is MMD's V-statistic with the resolved median bandwidth.
    big_p, big_q = gaussian_shift(6, n=80, m=70)
    fitted = KernelMeanMatching().fit_critic(big_p, big_q)
    reference = MMD(bandwidth=fitted.kernel_.bandwidth, estimator="biased")(big_p, big_q)
    assert torch.equal(fitted(big_p, big_q), reference)
    # D(x, x) = 0 for the V-statistic (up to float64 rounding of the three sums).
    assert abs(float(fitted(big_q, big_q))) < 1e-12


# ------------------------------------------------------------------ seeding and errors


def test_same_int_rng_gives_bit_identical_weights():
    # 700 + 400 pooled points > 1000, so the median heuristic subsamples with `rng`.
    x_p, x_q = gaussian_shift(7, n=700, m=400)
    first = KernelMeanMatching().fit_critic(x_p, x_q, rng=11)
    second = KernelMeanMatching().fit_critic(x_p, x_q, rng=11)
    assert torch.equal(first.weights_, second.weights_)
    assert first.kernel_ == second.kernel_
    # The seed is used: another seed draws another subsample, hence another bandwidth.
    other = KernelMeanMatching().fit_critic(x_p, x_q, rng=12)
    assert other.kernel_ != first.kernel_


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"kernel": "energy"}, ValueError, "`kernel` must be one of"),
        ({"weight_bound": 0.0}, ValueError, "`weight_bound` must be a positive real number"),
        ({"weight_bound": "big"}, TypeError, "`weight_bound` must be a positive real number"),
        ({"epsilon": -0.1}, ValueError, "`epsilon` must be a positive real number"),
        ({"ridge": 0.0}, ValueError, "`ridge` must be a positive real number"),
        ({"backend": "gpu"}, ValueError, "`backend` must be one of"),
        ({"tile_size": 0}, ValueError, "`tile_size` must be an integer >= 1"),
    ],
)
def test_invalid_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        KernelMeanMatching(**kwargs)


def test_fit_errors():
    rng = np.random.default_rng(8)
    x_p = torch.as_tensor(rng.normal(size=(20, 1)))
    # B = 0.5 <= 1 - eps = 0.9: every feasible sum needs some weight above B.
    with pytest.raises(ValueError, match=r"`weight_bound` must be > 1 - `epsilon`"):
        KernelMeanMatching(weight_bound=0.5, epsilon=0.1).fit_critic(x_p, x_p)
    with pytest.raises(ValueError, match="`x_q` must have at most 10000 samples"):
        KernelMeanMatching().fit_critic(x_p, torch.zeros(10_001, 1))
    with pytest.raises(ValueError, match="must have the same number of features"):
        KernelMeanMatching().fit_critic(x_p, torch.zeros(20, 2))


def test_warns_when_solver_stops_early(monkeypatch):
    monkeypatch.setattr(kmm_module, "MAX_ITER", 2)
    x_p, x_q = gaussian_shift(9, n=40, m=30)
    with pytest.warns(UserWarning, match="did not converge") as record:
        KernelMeanMatching().fit_critic(x_p, x_q)
    assert record[0].filename == __file__  # stacklevel points at the caller's line


def test_registry_repr_and_pickle():
    kmm = get_method("kmm")
    assert isinstance(kmm, KernelMeanMatching)
    assert repr(kmm).startswith("KernelMeanMatching(kernel='gaussian', bandwidth='median'")
    x_p, x_q = gaussian_shift(10, n=40, m=30)
    kmm.fit_critic(x_p, x_q)
    clone = pickle.loads(pickle.dumps(kmm))
    assert torch.equal(clone.log_ratio(x_q), kmm.log_ratio(x_q))
