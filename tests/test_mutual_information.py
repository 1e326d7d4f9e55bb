"""rk.mutual_information against closed forms, and the MI problems of ratiokit.synthetic.

The truth is I(x; y) = -(dim / 2) log(1 - rho^2) for GaussianMI (Gaussian entropies), checked
here against ratiokit.synthetic.CorrelatedGaussian's KL and by Monte Carlo. Statistical
tolerances are multiples of a standard error: the estimator's own (the spread of its
held-out blocks) or that of seeded repetitions; every run is seeded, so each outcome is fixed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import ratiokit as rk
from ratiokit.critics import mlp_critic
from ratiokit.synthetic import GaussianMI, TransformedGaussianMI

# A small separable critic: each run takes well under a second on one CPU thread.
FAST = {
    "critic": "separable",
    "hidden": (32,),
    "embedding_dim": 8,
    "max_steps": 200,
    "batch_size": 64,
    "lr": 0.005,
}
# I = -log(1 - 0.64) / 2 = 0.511 nats: far below every cap, where each bound is well posed.
TINY = GaussianMI(rho=0.8)


# --------------------------------------------------------------------------- synthetic problems


@pytest.mark.parametrize(("dim", "rho"), [(1, 0.5), (3, -0.9), (20, 0.3)])
def test_gaussian_mi_closed_form(dim, rho):
    problem = GaussianMI(dim=dim, rho=rho)
    # The same number as the KL between the joint and the product of its marginals.
    assert problem.mutual_information() == pytest.approx(problem.joint.kl_pq(), rel=1e-12)
    assert GaussianMI.from_mutual_information(
        problem.mutual_information(), dim=dim
    ).rho == pytest.approx(abs(rho), rel=1e-12)


def test_gaussian_mi_against_monte_carlo():
    # I = E_p[log r] estimated from the exact log-ratio of the joint over the product at
    # n = 100,000 joint draws; 5 standard errors (chance < 1e-6 for a correct formula).
    problem = GaussianMI.from_mutual_information(1.5, dim=3)
    x, y = problem.sample(100_000, rng=0)
    log_r = problem.joint.log_ratio(np.hstack([x, y]))
    assert abs(log_r.mean() - 1.5) < 5 * log_r.std(ddof=1) / math.sqrt(log_r.size)
    # Each coordinate pair has correlation rho: sample correlation within 5 / sqrt(n).
    corr = np.corrcoef(x[:, 0], y[:, 0])[0, 1]
    assert abs(corr - problem.rho) < 5 / math.sqrt(x.shape[0])


def test_transformed_gaussian_mi_maps_the_same_draws():
    problem = TransformedGaussianMI(dim=2, rho=0.6)
    x, y = problem.sample(50, rng=3)
    x0, y0 = GaussianMI(dim=2, rho=0.6).sample(50, rng=3)
    np.testing.assert_allclose(np.arcsinh(x), x0, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.cbrt(y), y0, rtol=1e-12, atol=1e-12)
    assert problem.mutual_information() == GaussianMI(dim=2, rho=0.6).mutual_information()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"rho": 1.0}, "`rho`"), ({"dim": 0}, "`dim`"), ({"rho": "a"}, "`rho`")],
)
def test_gaussian_mi_refuses_bad_parameters(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        GaussianMI(**kwargs)
    with pytest.raises(ValueError, match="`mi`"):
        GaussianMI.from_mutual_information(-1.0)


def test_gaussian_mi_refuses_an_mi_beyond_float64():
    # 40 nats in 2 dimensions: 1 - rho^2 = exp(-40) < 2^-53, so rho would round to 1.
    with pytest.raises(ValueError, match="`mi` must be at most about 18 nats per dimension"):
        GaussianMI.from_mutual_information(40.0, dim=2)
    # 40 nats in 80 dimensions (the high-MI benchmark) is fine and exact to 1e-9.
    high = GaussianMI.from_mutual_information(40.0, dim=80)
    assert high.mutual_information() == pytest.approx(40.0, rel=1e-9)


def test_mlp_critic_embedding_output():
    net = mlp_critic(3, (8,), d_out=5, rng=0)
    assert net(torch.zeros(4, 3, dtype=torch.float64)).shape == (4, 5)
    with pytest.raises(ValueError, match="`d_out`"):
        mlp_critic(3, (8,), d_out=0)


# --------------------------------------------------------------------------- estimates


@pytest.mark.parametrize("method", ["dv", "nwj", "infonce", "js"])
def test_bounds_lie_below_the_truth(method):
    x, y = TINY.sample(1000, rng=1)
    res = rk.mutual_information(x, y, method=method, rng=0, **FAST)
    assert res.bound == "lower bound"
    # A lower bound in expectation: above the truth by at most 3 of its standard errors.
    assert res.estimate <= TINY.mutual_information() + 3 * res.standard_error
    # ... and a useful one: the critic is trained, so the bound is not vacuous.
    assert res.estimate > 0.5 * TINY.mutual_information()


@pytest.mark.parametrize("method", ["smile", "classifier"])
def test_estimates_near_the_truth(method):
    x, y = TINY.sample(1000, rng=1)
    res = rk.mutual_information(x, y, method=method, rng=0, **FAST)
    assert res.bound == "estimate"
    # 4 standard errors of the held-out evaluation, plus 0.05 nats for the critic's error.
    assert abs(res.estimate - TINY.mutual_information()) < 4 * res.standard_error + 0.05


@pytest.mark.parametrize("batch_size", [8, 16])
def test_infonce_never_exceeds_log_batch_size(batch_size):
    # True MI of 4 nats is above log 16 = 2.77: InfoNCE saturates at the cap.
    x, y = GaussianMI.from_mutual_information(4.0, dim=2).sample(600, rng=2)
    settings = {**FAST, "batch_size": batch_size}
    res = rk.mutual_information(x, y, method="infonce", rng=0, **settings)
    cap = math.log(batch_size)
    assert res.details["log_batch_size"] <= cap
    assert (res.block_estimates <= res.details["log_batch_size"] + 1e-12).all()
    assert res.estimate <= cap < 4.0


@pytest.mark.parametrize("method", ["smile", "classifier"])
def test_invariance_under_invertible_marginal_maps(method):
    # The same Gaussian draws, with x -> sinh(x) and y -> y^3: the MI is unchanged, so the
    # estimates must agree within 4 standard errors of their difference (independent
    # evaluations: variances add), plus 0.05 nats for the critics' approximation error.
    plain = rk.mutual_information(*TINY.sample(1000, rng=1), method=method, rng=0, **FAST)
    mapped = TransformedGaussianMI(rho=TINY.rho).sample(1000, rng=1)
    warped = rk.mutual_information(*mapped, method=method, rng=0, **FAST)
    se = math.hypot(plain.standard_error, warped.standard_error)
    assert abs(warped.estimate - plain.estimate) < 4 * se + 0.05


@pytest.mark.parametrize("method", ["smile", "nwj"])
def test_independent_variables_near_zero(method):
    # R = 8 seeded repetitions at I = 0: their mean within 3 standard errors (std / sqrt(R))
    # of 0, and their spread of the size each run reports: the reported standard error
    # covers the held-out evaluation only (not the training), so the spread may exceed it,
    # but by less than a factor 3.
    estimates, reported = [], []
    for seed in range(8):
        x, y = GaussianMI(rho=0.0).sample(400, rng=seed)
        res = rk.mutual_information(x, y, method=method, rng=seed, **FAST)
        estimates.append(res.estimate)
        reported.append(res.standard_error)
    spread = np.std(estimates, ddof=1)
    assert abs(np.mean(estimates)) < 3 * spread / math.sqrt(len(estimates))
    assert spread < 3 * np.mean(reported)


def test_joint_critic_and_unequal_dimensions():
    problem = GaussianMI(dim=2, rho=0.8)
    x, y = problem.sample(400, rng=4)
    y = np.hstack([y, np.random.default_rng(5).normal(size=(400, 1))])  # an independent column
    settings = {**FAST, "critic": "joint", "batch_size": 32, "max_steps": 100}
    res = rk.mutual_information(x, y, method="smile", rng=0, **settings)
    assert res.critic == "joint"
    assert abs(res.estimate - problem.mutual_information()) < 4 * res.standard_error + 0.15


def test_determinism_and_torch_input():
    x, y = TINY.sample(300, rng=6)
    first = rk.mutual_information(x, y, method="dv", rng=7, **FAST)
    again = rk.mutual_information(x, y, method="dv", rng=7, **FAST)
    tensors = rk.mutual_information(torch.tensor(x), torch.tensor(y), method="dv", rng=7, **FAST)
    assert first.estimate == again.estimate == tensors.estimate
    np.testing.assert_array_equal(first.block_estimates, again.block_estimates)
    np.testing.assert_array_equal(first.history.critic_loss, again.history.critic_loss)


@pytest.mark.parametrize("n", [23, 24, 25])
def test_smallest_blocks_hold_two_pairs(n):
    # 11 to 12 held-out pairs in blocks of at most 3: every block has an off-diagonal pair,
    # so every block value is finite and InfoNCE stays below log 3.
    x, y = TINY.sample(n, rng=10)
    settings = {**FAST, "batch_size": 3, "max_steps": 20}
    res = rk.mutual_information(x, y, method="infonce", test_fraction=0.5, rng=0, **settings)
    assert np.isfinite(res.block_estimates).all()
    assert (res.block_estimates <= math.log(3) + 1e-12).all()


def test_one_dimensional_input_and_result_as_data():
    x, y = TINY.sample(300, rng=8)
    res = rk.mutual_information(x[:, 0], y[:, 0], method="nwj", rng=0, **FAST)
    assert res.details["n_test"] == 150 and res.details["n_train"] == 150
    assert res.block_estimates.shape == (3,)  # ceil(150 / 64) blocks of 50
    assert res.details["log_batch_size"] == math.log(50)
    row = res.to_dataframe()
    assert row.shape[0] == 1 and row["estimate"][0] == res.estimate
    assert res.to_dict()["history"]["best_step"] == res.history.best_step
    assert "MutualInformationResult(estimate=" in repr(res)


# --------------------------------------------------------------------------- telescoping

# Pointwise joint critics (an MLP on [x, y]): K critics cost K b network rows per step.
TELE = {"critic": "joint", "hidden": (32,), "max_steps": 400, "batch_size": 64, "lr": 0.01}


def _waymark_kl(rho: float, rho_k: float, dim: int) -> float:
    """KL(p_0 || p_k) between GaussianMI joints of correlations rho and rho_k (unit variances):
    (dim / 2) [2 (1 - rho rho_k) / (1 - rho_k^2) - 2 + log((1 - rho_k^2) / (1 - rho^2))]."""
    return (
        0.5
        * dim
        * (2 * (1 - rho * rho_k) / (1 - rho_k**2) - 2 + math.log((1 - rho_k**2) / (1 - rho**2)))
    )


def test_telescope_agrees_with_the_truth_at_moderate_mi():
    problem = GaussianMI.from_mutual_information(2.0, dim=2)
    x, y = problem.sample(1000, rng=1)
    res = rk.mutual_information(x, y, method="classifier", telescope=4, rng=0, **TELE)
    # 4 standard errors of the held-out evaluation, plus 0.05 nats for the critics' error
    # (seeded, shared body: 2.100 +- 0.053 against 2).
    assert abs(res.estimate - problem.mutual_information()) < 4 * res.standard_error + 0.05
    # Waymark k is y_k = sqrt(1 - a_k^2) y + a_k y' with y' independent of (x, y), so it is
    # GaussianMI with correlation rho sqrt(1 - a_k^2): the k-th term E_p0[log p_k / p_(k+1)]
    # is KL(p_0 || p_(k+1)) - KL(p_0 || p_k) = [0.055, 0.328, 0.518, 1.098] nats. Each
    # learned term within 0.15 nats (seeded: [0.03, 0.31, 0.57, 1.18]).
    weights = res.details["mixing_weights"]
    np.testing.assert_array_equal(weights, [0.0, 0.25, 0.5, 0.75, 1.0])
    rhos = problem.rho * np.sqrt(1 - weights**2)
    kls = [_waymark_kl(problem.rho, r, problem.dim) for r in rhos]
    assert kls[-1] == pytest.approx(problem.mutual_information(), rel=1e-12)
    np.testing.assert_allclose(res.details["waymark_terms"], np.diff(kls), atol=0.15)
    # The log-ratio is the sum of the K terms, so the estimate is the sum of their means.
    assert res.details["waymark_terms"].sum() == pytest.approx(res.estimate, rel=1e-12)
    assert res.details["telescope"] == 4 and res.method == "classifier"


def test_telescope_beats_the_single_ratio_at_high_mi():
    # 10 nats in 5 dimensions: the single classifier saturates far below the truth, the
    # telescoped one (4 waymark ratios of 0.9 to 3.3 nats each) gets most of the way.
    # Seeded: single 5.32, telescoped 9.74 against 10 (8.80 with separate critics).
    problem = GaussianMI.from_mutual_information(10.0, dim=5)
    x, y = problem.sample(1000, rng=1)
    single = rk.mutual_information(x, y, method="classifier", rng=0, **TELE)
    tele = rk.mutual_information(x, y, method="classifier", telescope=4, rng=0, **TELE)
    truth = problem.mutual_information()
    assert abs(tele.estimate - truth) < abs(single.estimate - truth)
    assert tele.estimate > single.estimate + 4 * math.hypot(
        single.standard_error, tele.standard_error
    )


def test_telescope_is_deterministic_and_takes_mixing_weights():
    x, y = TINY.sample(300, rng=6)
    settings = {**TELE, "max_steps": 50}
    first = rk.mutual_information(
        x, y, method="classifier", telescope=[0.3, 0.6], rng=7, **settings
    )
    again = rk.mutual_information(
        x, y, method="classifier", telescope=np.array([0.3, 0.6]), rng=7, **settings
    )
    assert first.estimate == again.estimate
    np.testing.assert_array_equal(first.details["waymark_terms"], again.details["waymark_terms"])
    np.testing.assert_array_equal(first.history.critic_loss, again.history.critic_loss)
    np.testing.assert_array_equal(first.details["mixing_weights"], [0.0, 0.3, 0.6, 1.0])
    assert first.details["telescope"] == 3 and first.details["waymark_terms"].shape == (3,)


@pytest.mark.parametrize(
    ("telescope", "error", "match"),
    [
        (0, ValueError, "`telescope` must be an integer >= 1"),
        ([0.6, 0.3], ValueError, "`telescope` must be strictly increasing"),
        ([0.0, 0.5], ValueError, "`telescope` must be strictly increasing"),
        ([0.5, 1.0], ValueError, "`telescope` must be strictly increasing"),
        ([float("nan")], ValueError, "`telescope` must be strictly increasing"),
        (2.5, TypeError, "`telescope` must be None, an integer"),
        (True, TypeError, "`telescope` must be None, an integer"),
        ("4", TypeError, "`telescope` must be None, an integer"),
        (["a"], TypeError, "`telescope` must hold real numbers"),
    ],
)
def test_bad_telescope_names_it(telescope, error, match):
    with pytest.raises(error, match=match):
        rk.mutual_information(X, Y, method="classifier", telescope=telescope)


def test_telescope_needs_the_classifier():
    with pytest.raises(ValueError, match="`telescope` needs method='classifier'"):
        rk.mutual_information(X, Y, method="smile", telescope=4)


@pytest.mark.gpu
def test_gpu_tensors(device):
    x, y = TINY.sample(400, rng=9)
    xt, yt = (torch.tensor(v, device=device) for v in (x, y))
    res = rk.mutual_information(xt, yt, method="smile", rng=0, **FAST)
    assert abs(res.estimate - TINY.mutual_information()) < 4 * res.standard_error + 0.05


X, Y = TINY.sample(40, rng=0)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((X, Y[:-1]), {}, ValueError, "`x` and `y` must have the same number of rows"),
        ((X, Y), {"method": "mine"}, ValueError, "`method` must be one of"),
        ((X, Y), {"critic": "bilinear"}, ValueError, "`critic` must be one of"),
        ((X[:, :, None], Y), {}, ValueError, "`x` must be a 2-D array"),
        ((X, np.full_like(Y, np.nan)), {}, ValueError, "`y` must hold finite values"),
        ((X, Y), {"clip": 0.0}, ValueError, "`clip` must be a positive"),
        ((X, Y), {"test_fraction": 1.0}, ValueError, "`test_fraction` must be"),
        ((X, Y), {"test_fraction": "half"}, TypeError, "`test_fraction` must be"),
        ((X, Y), {"batch_size": 2}, ValueError, "`batch_size` must be an integer >= 3"),
        ((X, Y), {"max_steps": -1}, ValueError, "`max_steps`"),
        ((X, Y), {"hidden": 64}, TypeError, "`hidden`"),
        ((X, Y), {"embedding_dim": 0}, ValueError, "`embedding_dim`"),
        ((X, Y), {"rng": "seed"}, TypeError, "`rng`"),
        ((X[:12], Y[:12]), {}, ValueError, "enough rows"),
        ((["a"] * 40, Y), {}, TypeError, "`x` must be an array of real numbers"),
    ],
)
def test_bad_input_names_the_argument(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        rk.mutual_information(*args, **kwargs)
