"""ratiokit.tasks: each reference posterior against an independent truth (closed forms,
quadrature, importance sampling on the likelihood), the simulators' contract and moments,
and rk.infer on every task."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats as st

import ratiokit as rk
from ratiokit.priors import Prior
from ratiokit.tasks import SLCP, TASKS, GaussianLinear, GaussianMixture, PoissonGamma, TwoMoons


def check_mean(draws: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> None:
    # The sample mean of n independent draws has standard error sd / sqrt(n); 4.5 standard
    # errors bound each coordinate's deviation with probability above 1 - 1e-5.
    np.testing.assert_array_less(
        np.abs(draws.mean(axis=0) - mean), 4.5 * sd / math.sqrt(len(draws))
    )


# --- reference posteriors ---------------------------------------------------------------------


def test_gaussian_linear_reference_against_conjugate() -> None:
    task = GaussianLinear()
    x = task.observations[0]
    # Precisions add: 1 / 0.1 + 1 / 0.1 = 20, so variance 0.05 and mean (x / 0.1) / 20 = x / 2.
    var = 1.0 / (1.0 / 0.1 + 1.0 / 0.1)
    n = 20_000
    draws = task.reference_posterior(n, x=x, rng=0)
    assert draws.shape == (n, 10) and draws.dtype == np.float64
    check_mean(draws, x / 2, np.full(10, math.sqrt(var)))
    # The sample variance of n Gaussian draws has standard error var sqrt(2 / n).
    np.testing.assert_array_less(np.abs(draws.var(axis=0) - var), 4.5 * var * math.sqrt(2 / n))


def test_two_moons_reference_against_quadrature() -> None:
    task = TwoMoons()
    x = task.observations[1]
    # The likelihood in closed form: x - g(theta) = p, whose density at q is, with
    # c = q - (0.25, 0) in polar coordinates (r, a), N(r; 0.1, 0.01^2) / (pi r) for
    # a in (-pi/2, pi/2) (c_0 > 0). Midpoint rule on a 0.001 grid over the prior's box: the
    # crescent's width 0.01 spans 10 grid steps, so the rule's error on these smooth
    # integrands is far below the Monte Carlo error below.
    h = 0.001
    t = np.arange(-1 + h / 2, 1, h)
    t1, t2 = np.meshgrid(t, t, indexing="ij")
    c0 = x[0] + np.abs(t1 + t2) / math.sqrt(2) - 0.25
    c1 = x[1] - (t2 - t1) / math.sqrt(2)
    r = np.hypot(c0, c1)
    density = np.where(c0 > 0, st.norm(0.1, 0.01).pdf(r) / (math.pi * r), 0.0)
    weights = density / density.sum()
    mean = np.array([(weights * t1).sum(), (weights * t2).sum()])
    sd = np.sqrt(np.array([(weights * t1**2).sum(), (weights * t2**2).sum()]) - mean**2)
    draws = task.reference_posterior(20_000, x=x, rng=0)
    check_mean(draws, mean, sd)
    # Both crescents: theta_1 + theta_2 takes both signs, each with mass 1/2 here (the
    # folded shift is symmetric, and this observation's crescents lie inside the box).
    below = (draws.sum(axis=1) < 0).sum()
    low, high = st.binom.interval(1 - 1e-5, 20_000, 0.5)
    mass_below = (weights * (t1 + t2 < 0)).sum()
    assert abs(mass_below - 0.5) < 0.01 and low <= below <= high


def slcp_log_likelihood(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """log p(x | theta) of SLCP, the 4 bivariate normal log densities written out."""
    points = x.reshape(4, 2)
    s1, s2, rho = theta[:, 2] ** 2, theta[:, 3] ** 2, np.tanh(theta[:, 4])
    z1 = (points[None, :, 0] - theta[:, None, 0]) / s1[:, None]
    z2 = (points[None, :, 1] - theta[:, None, 1]) / s2[:, None]
    quad = (z1**2 - 2 * rho[:, None] * z1 * z2 + z2**2) / (1 - rho[:, None] ** 2)
    log_norm = np.log(2 * math.pi * s1 * s2 * np.sqrt(1 - rho**2))
    return (-0.5 * quad - log_norm[:, None]).sum(axis=1)


def test_slcp_log_likelihood_helper_against_scipy() -> None:
    theta = np.array([[0.5, -1.0, 1.2, -0.8, 0.7], [-2.0, 1.0, 0.5, 1.5, -1.5]])
    x = SLCP().observations[4]
    for row, value in zip(theta, slcp_log_likelihood(theta, x), strict=True):
        s1, s2, rho = row[2] ** 2, row[3] ** 2, math.tanh(row[4])
        cov = [[s1**2, rho * s1 * s2], [rho * s1 * s2, s2**2]]
        expected = st.multivariate_normal(row[:2], cov).logpdf(x.reshape(4, 2)).sum()
        assert value == pytest.approx(expected, rel=1e-10)


def test_slcp_reference_against_importance_sampling() -> None:
    # An independent estimate of the posterior means: self-normalised importance sampling
    # with 10^6 prior draws weighted by the likelihood (ESS about 12,000 at this observation),
    # whose standard error is about sd / sqrt(ESS) (Kish). The four sign modes are folded by
    # taking |theta_3| and |theta_4|.
    task = SLCP()
    x = task.observations[4]
    gen = np.random.default_rng(1)
    proposals = gen.uniform(-3.0, 3.0, size=(1_000_000, 5))
    log_w = slcp_log_likelihood(proposals, x)
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    ess = 1.0 / (w**2).sum()
    assert ess > 5000

    def fold(theta: np.ndarray) -> np.ndarray:
        return np.column_stack([theta[:, :2], np.abs(theta[:, 2:4]), theta[:, 4]])

    n = 20_000
    draws = task.reference_posterior(n, x=x, rng=0)
    assert draws.shape == (n, 5) and (np.abs(draws) <= 3).all()
    sd = fold(draws).std(axis=0)
    se = np.sqrt(sd**2 / n + sd**2 / ess)
    np.testing.assert_array_less(np.abs(fold(draws).mean(axis=0) - w @ fold(proposals)), 4.5 * se)
    # The signs of theta_3 and theta_4 leave the likelihood unchanged: each is positive with
    # probability 1/2 (binomial interval).
    low, high = st.binom.interval(1 - 1e-5, n, 0.5)
    assert low <= (draws[:, 2] > 0).sum() <= high and low <= (draws[:, 3] > 0).sum() <= high


def test_gaussian_mixture_reference_against_closed_form() -> None:
    task = GaussianMixture()
    n = 20_000
    # At x = 0 the box's truncation is negligible (P(|N(0, 1)| > 10) < 1e-22): the posterior
    # is N(0, I) / 2 + N(0, 0.01 I) / 2, variance 0.505 and fourth moment
    # (3 + 3e-4) / 2 per coordinate.
    draws = task.reference_posterior(n, x=[0.0, 0.0], rng=0)
    var, fourth = 0.505, (3 + 3e-4) / 2
    check_mean(draws, np.zeros(2), np.full(2, math.sqrt(var)))
    # The sample variance's standard error: sqrt((E theta^4 - var^2) / n).
    np.testing.assert_array_less(
        np.abs(draws.var(axis=0) - var), 4.5 * math.sqrt((fourth - var**2) / n)
    )
    # Near the edge the truncation matters: each component is a normal truncated to
    # [-10, 10], weighted by its mass there.
    draws = task.reference_posterior(n, x=[9.5, 0.0], rng=1)
    parts = [st.truncnorm((-10 - 9.5) / s, (10 - 9.5) / s, loc=9.5, scale=s) for s in (1.0, 0.1)]
    mass = np.array([st.norm(9.5, s).cdf(10) - st.norm(9.5, s).cdf(-10) for s in (1.0, 0.1)])
    mean = (mass * [p.mean() for p in parts]).sum() / mass.sum()
    second = (mass * [p.var() + p.mean() ** 2 for p in parts]).sum() / mass.sum()
    assert (draws[:, 0] <= 10).all()
    check_mean(draws[:, :1], np.array([mean]), np.array([math.sqrt(second - mean**2)]))


def test_poisson_gamma_reference_against_conjugate() -> None:
    task = PoissonGamma()
    x = task.observations[2]
    # Gamma(2, rate 0.5) prior and 10 Poisson counts: Gamma(2 + sum x, rate 10.5).
    shape, rate = 2.0 + x.sum(), 10.5
    draws = task.reference_posterior(20_000, x=x, rng=0)
    assert draws.shape == (20_000, 1)
    check_mean(draws, np.array([shape / rate]), np.array([math.sqrt(shape) / rate]))
    # Kolmogorov-Smirnov against the exact posterior, at level 1e-4.
    assert st.kstest(draws[:, 0], st.gamma(shape, scale=1 / rate).cdf).pvalue > 1e-4


# --- simulators -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TASKS))
def test_simulator_contract(name: str) -> None:
    task = TASKS[name]()
    theta = Prior(task.prior).sample(7, np.random.default_rng(0))
    x = task.simulator(theta, rng=3)
    assert x.shape == (7, task.x_dim) and x.dtype == np.float64 and np.isfinite(x).all()
    np.testing.assert_array_equal(x, task.simulator(theta, np.random.default_rng(3)))
    assert not np.array_equal(x, task.simulator(theta, rng=4))
    assert task.simulator(theta[0], rng=0).shape == (1, task.x_dim)
    with pytest.raises(ValueError, match=r"`theta` must have shape \(m, "):
        task.simulator(np.zeros((3, task.theta_dim + 1)), rng=0)
    # Fixed observations: the same for every instance, at parameters inside the prior.
    assert task.observations.shape == (task.n_observations, task.x_dim)
    assert task.true_parameters.shape == (task.n_observations, task.theta_dim)
    np.testing.assert_array_equal(task.observations, TASKS[name]().observations)
    assert np.isfinite(Prior(task.prior).log_prob(task.true_parameters)).all()
    draws = task.reference_posterior(5, x=task.observations[0], rng=0)
    assert draws.shape == (5, task.theta_dim)
    np.testing.assert_array_equal(
        draws, task.reference_posterior(5, x=task.observations[0], rng=0)
    )
    assert np.isfinite(Prior(task.prior).log_prob(draws)).all()


def test_simulators_against_their_likelihoods() -> None:
    n = 20_000
    # Gaussian linear: x - theta ~ N(0, 0.1 I).
    noise = GaussianLinear().simulator(np.full((n, 10), 0.3), rng=0) - 0.3
    check_mean(noise, np.zeros(10), np.full(10, math.sqrt(0.1)))
    # Two moons: x - g(theta) - (0.25, 0) has radius ~ N(0.1, 0.01^2) and angle in
    # (-pi/2, pi/2).
    theta = np.array([0.3, -0.5])
    shift = np.array([-abs(theta.sum()), theta[1] - theta[0]]) / math.sqrt(2)
    c = TwoMoons().simulator(np.tile(theta, (n, 1)), rng=0) - shift - [0.25, 0.0]
    check_mean(np.hypot(c[:, :1], c[:, 1:]), np.array([0.1]), np.array([0.01]))
    assert (c[:, 0] > 0).all()
    # SLCP: 4 points from N(m, S), S = [[s1^2, rho s1 s2], [rho s1 s2, s2^2]].
    theta = np.array([0.5, -1.0, 1.2, -0.8, 0.7])
    points = SLCP().simulator(np.tile(theta, (n, 1)), rng=0).reshape(-1, 2)
    s1, s2, rho = 1.44, 0.64, math.tanh(0.7)
    check_mean(points, theta[:2], np.array([s1, s2]))
    corr = np.corrcoef(points.T)[0, 1]
    # The sample correlation's standard error is about (1 - rho^2) / sqrt(n points).
    assert abs(corr - rho) < 4.5 * (1 - rho**2) / math.sqrt(len(points))
    # A Gaussian sample sd has relative standard error 1 / sqrt(2 N).
    rtol = 4.5 / math.sqrt(2 * len(points))
    np.testing.assert_allclose(points.std(axis=0), [s1, s2], rtol=rtol)
    # Gaussian mixture: variance 0.505 per coordinate.
    noise = GaussianMixture().simulator(np.zeros((n, 2)), rng=0)
    check_mean(noise, np.zeros(2), np.full(2, math.sqrt(0.505)))
    assert abs(noise.var() - 0.505) < 4.5 * math.sqrt((1.50015 - 0.505**2) / (2 * n))
    # Poisson: counts with mean and variance theta.
    counts = PoissonGamma().simulator(np.full((n, 1), 3.0), rng=0)
    assert (counts == np.round(counts)).all() and (counts >= 0).all()
    check_mean(counts.reshape(-1, 1), np.array([3.0]), np.array([math.sqrt(3.0)]))


# --- rk.infer on every task -------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TASKS))
def test_infer_runs_on_each_task(name: str) -> None:
    task = TASKS[name]()
    post = rk.infer(
        task.simulator,
        task.prior,
        n_simulations=200,
        hidden=(8,),
        max_steps=20,
        rng=0,
        progress=False,
    )
    draws = post.sample(50, x=task.observations[0], n_proposals=500, rng=0)
    assert draws.theta.shape == (50, task.theta_dim)
    assert np.isfinite(Prior(task.prior).log_prob(draws.theta)).all()


# --- errors -----------------------------------------------------------------------------------


def test_reference_errors_name_the_argument() -> None:
    task = TwoMoons()
    with pytest.raises(ValueError, match="`n` must be an integer >= 1"):
        task.reference_posterior(0, x=[0.0, 0.0])
    with pytest.raises(ValueError, match="`x` must be one observation"):
        task.reference_posterior(3, x=np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"`x` must have shape \(m, 2\)"):
        task.reference_posterior(3, x=np.zeros(3))
    with pytest.raises(ValueError, match="non-negative integer counts"):
        PoissonGamma().reference_posterior(3, x=np.full(10, 0.5))
    with pytest.raises(ValueError, match="not on one line"):
        SLCP().reference_posterior(3, x=np.arange(8.0))
    # Two moons cannot produce x = (2, 0): no parameter in the box reaches it.
    with pytest.raises(ValueError, match="accepted 0 of"):
        task.reference_posterior(1, x=[2.0, 0.0])
