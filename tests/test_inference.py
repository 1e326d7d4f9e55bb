"""rk.infer and Posterior: NRE losses by hand, the linear Gaussian model, priors, errors, saves."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats as st
import torch

import ratiokit as rk
from ratiokit.inference import nre_loss

S = 0.5  # x | theta ~ N(theta, S^2), theta ~ N(0, 1)
#: Posterior variance and mean factor of the conjugate model: theta | x ~ N(x / (1 + S^2), V).
V = S**2 / (1 + S**2)


def simulator(theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return theta + S * rng.standard_normal(theta.shape)


def black_box(theta: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return theta + S * rng.standard_normal((n, theta.size))


def normal_prior() -> torch.distributions.Distribution:
    return torch.distributions.Normal(
        torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    )


@pytest.fixture(scope="module")
def posterior() -> rk.Posterior:
    return rk.infer(
        simulator,
        normal_prior(),
        n_simulations=3000,
        hidden=(32, 32),
        max_steps=1000,
        rng=0,
        progress=False,
    )


def zero_critic(d: int) -> torch.nn.Module:
    """f = 0: the posterior is the prior."""
    net = torch.nn.Sequential(torch.nn.Linear(d, 1, dtype=torch.float64), torch.nn.Flatten(0))
    torch.nn.init.zeros_(net[0].weight)
    torch.nn.init.zeros_(net[0].bias)
    return net


SETTINGS = {"loss": "nre-a", "num_contrastive": 1, "gamma": 1.0, "hidden": [], "n_simulations": 0}


# --- the losses against their definitions, computed by hand ---------------------------------

SCORES = torch.tensor([[0.3, -1.2, 0.5], [2.0, 0.1, -0.4], [-0.7, 0.9, 1.5]], dtype=torch.float64)


def softplus(v: float) -> float:
    return math.log1p(math.exp(v))


def test_nre_a_loss_by_hand() -> None:
    # Balanced logistic loss on 3 joint scores (column 0) and 3 shuffled ones (column 1).
    joint, shuffled = [0.3, 2.0, -0.7], [-1.2, 0.1, 0.9]
    expected = 0.5 * np.mean([softplus(-s) for s in joint]) + 0.5 * np.mean(
        [softplus(s) for s in shuffled]
    )
    assert float(nre_loss(SCORES, "nre-a")) == pytest.approx(expected, rel=1e-12)
    # NRE-A is NRE-C with K = 1 and gamma = 1 (Miller et al. 2022).
    assert float(nre_loss(SCORES[:, :2], "nre-c", 1.0)) == pytest.approx(expected, rel=1e-12)


def test_nre_b_loss_by_hand() -> None:
    # Cross-entropy of class 0 among the three candidates of each row.
    rows = SCORES.tolist()
    expected = -np.mean([r[0] - math.log(sum(math.exp(v) for v in r)) for r in rows])
    assert float(nre_loss(SCORES, "nre-b")) == pytest.approx(expected, rel=1e-12)


def test_nre_c_loss_by_hand() -> None:
    # K = 2 candidates, gamma = 2: class 0 (all marginal) has prior 1 / (1 + gamma) and
    # q(y = 0 | set) = K / (K + gamma sum_k r_k); the joint class has prior gamma / (1 + gamma)
    # and q(y = joint | set) = gamma r_joint / (K + gamma sum_k r_k), r = exp(score).
    gamma, k = 2.0, 2
    total = 0.0
    for r in SCORES.tolist():
        marginal = [math.exp(v) for v in r[1:]]  # the K contrastive pairs
        joint_set = [math.exp(v) for v in r[:k]]  # the joint pair and K - 1 contrastive ones
        q0 = k / (k + gamma * sum(marginal))
        q_joint = gamma * joint_set[0] / (k + gamma * sum(joint_set))
        total += math.log(q0) / (1 + gamma) + gamma / (1 + gamma) * math.log(q_joint)
    expected = -total / 3
    assert float(nre_loss(SCORES, "nre-c", gamma)) == pytest.approx(expected, rel=1e-12)


# --- the linear Gaussian model ----------------------------------------------------------------


def test_log_ratio_against_exact(posterior: rk.Posterior) -> None:
    # Held-out joint pairs; exact log r = log N(x; theta, S^2) - log N(x; 0, 1 + S^2).
    gen = np.random.default_rng(123)
    theta = gen.normal(size=(2000, 1))
    x = theta + S * gen.normal(size=(2000, 1))
    exact = st.norm(theta[:, 0], S).logpdf(x[:, 0]) - st.norm(0, math.sqrt(1 + S**2)).logpdf(
        x[:, 0]
    )
    rmse = float(np.sqrt(np.mean((posterior.log_ratio(theta, x) - exact) ** 2)))
    # The trivial critic f = 0 has RMSE sqrt(E[log r^2]) = 1.21 here. Seeds 0-4 of this
    # setting gave 0.21-0.26 (the critic's approximation and estimation error at 3000
    # simulations; the Monte Carlo error of the 2000-pair mean is below 0.01): bar 1.5 x max.
    assert rmse < 0.4


@pytest.mark.parametrize("x_obs", [0.0, 1.0])
def test_sir_moments_against_conjugate(posterior: rk.Posterior, x_obs: float) -> None:
    draws = posterior.sample(4000, x=[x_obs], rng=1)
    mean, sd = x_obs / (1 + S**2), math.sqrt(V)
    # Monte Carlo error of the mean of 4000 draws: 4 sd / sqrt(4000) = 0.03 (the ESS is above
    # 29,000 of the 80,000 proposals); the critic's error moved the mean by at most 0.065 and
    # the sd by at most 9.4 % on seeds 0-4: bars 0.03 + 2 x 0.065 and 20 %.
    assert abs(draws.theta.mean() - mean) < 0.03 + 0.13
    assert abs(draws.theta.std() / sd - 1) < 0.2
    assert draws.method == "sir" and draws.n_proposals == 80_000
    assert 0 < draws.ess <= draws.n_proposals
    assert draws.acceptance_rate is None


def test_samples_are_an_array_of_their_draws(posterior: rk.Posterior) -> None:
    draws = posterior.sample(50, x=[1.0], rng=1)
    np.testing.assert_array_equal(np.asarray(draws), draws.theta)
    assert np.asarray(draws, dtype=np.float32).dtype == np.float32
    # A front door takes them as they are: c2st on the draws equals c2st on `theta`.
    a = rk.c2st(draws, draws.theta[::-1], rng=0)
    b = rk.c2st(draws.theta, draws.theta[::-1], rng=0)
    assert a.accuracy == b.accuracy and a.pvalue == b.pvalue


def test_rejection_moments_against_conjugate(posterior: rk.Posterior) -> None:
    draws = posterior.sample(2000, x=[1.0], method="rejection", n_proposals=5000, rng=2)
    assert draws.theta.shape == (2000, 1)
    # Bars as for SIR, with 2000 draws: 4 sd / sqrt(2000) = 0.04.
    assert abs(draws.theta.mean() - 1 / (1 + S**2)) < 0.04 + 0.13
    assert abs(draws.theta.std() / math.sqrt(V) - 1) < 0.2
    # An exact bound M = max r accepts at rate 1 / M: log M is near the largest log r.
    assert 0 < draws.acceptance_rate <= 1
    assert draws.acceptance_rate == pytest.approx(math.exp(-draws.log_bound), rel=0.3)
    assert draws.n_above_bound >= 0 and draws.ess is None


def test_map_near_posterior_mode(posterior: rk.Posterior) -> None:
    # The mode is x / (1 + S^2) = 0.8; seeds 0-4 of the critic gave 0.81-0.92.
    theta = posterior.map([1.0], rng=0)
    assert theta.shape == (1,) and abs(theta[0] - 0.8) < 0.2


def test_log_prob_is_log_ratio_plus_log_prior(posterior: rk.Posterior) -> None:
    theta = np.array([[-1.0], [0.0], [2.0]])
    expected = posterior.log_ratio(theta, [0.5]) + st.norm().logpdf(theta[:, 0])
    np.testing.assert_allclose(posterior.log_prob(theta, [0.5]), expected, rtol=1e-12)


@pytest.mark.parametrize("loss", ["nre-b", "nre-c"])
def test_contrastive_losses_give_the_posterior(loss: str) -> None:
    post = rk.infer(
        simulator,
        normal_prior(),
        n_simulations=2000,
        loss=loss,
        num_contrastive=4,
        hidden=(32, 32),
        max_steps=400,
        rng=0,
        progress=False,
    )
    draws = post.sample(2000, x=[1.0], rng=0)
    # Bars as in test_sir_moments_against_conjugate with 2000 draws, the critic's bar doubled
    # for the shorter training.
    assert abs(draws.theta.mean() - 1 / (1 + S**2)) < 0.04 + 0.26
    assert abs(draws.theta.std() / math.sqrt(V) - 1) < 0.4


# --- contracts, priors, reproducibility -------------------------------------------------------


def small(**kwargs: object) -> rk.Posterior:
    settings = {"n_simulations": 200, "hidden": (8,), "max_steps": 20, "rng": 0, "progress": False}
    return rk.infer(**{"simulator": simulator, "prior": normal_prior(), **settings, **kwargs})


def state(post: rk.Posterior) -> dict[str, torch.Tensor]:
    return post.critic.state_dict()


def test_int_rng_gives_identical_posteriors() -> None:
    a, b = small(), small()
    assert all(
        torch.equal(a_v, b_v)
        for a_v, b_v in zip(state(a).values(), state(b).values(), strict=True)
    )
    assert not torch.equal(state(small(rng=1))["1.0.weight"], state(a)["1.0.weight"])
    np.testing.assert_array_equal(
        a.sample(5, x=[0.0], rng=3).theta, b.sample(5, x=[0.0], rng=3).theta
    )


def test_black_box_contract_matches_vectorised() -> None:
    # simulator(theta, 1, rng) per theta draws the same normals from the shared rng, in the
    # same order, as the vectorised simulator on the batch: the same critic bit for bit.
    a, b = small(), small(simulator=black_box, vectorized=False)
    assert all(
        torch.equal(a_v, b_v)
        for a_v, b_v in zip(state(a).values(), state(b).values(), strict=True)
    )


def test_box_uniform() -> None:
    prior = rk.BoxUniform([0.0, -1.0], [2.0, 3.0])
    draws = prior.sample(20_000, rng=0)
    assert draws.shape == (20_000, 2)
    assert ((draws >= [0.0, -1.0]) & (draws <= [2.0, 3.0])).all()
    # Mean (low + high) / 2 and sd (high - low) / sqrt(12); standard errors sd / sqrt(n) < 0.01.
    np.testing.assert_allclose(draws.mean(axis=0), [1.0, 1.0], atol=0.04)
    np.testing.assert_allclose(
        draws.std(axis=0), [2 / math.sqrt(12), 4 / math.sqrt(12)], atol=0.04
    )
    np.testing.assert_allclose(prior.log_prob([[1.0, 0.0], [3.0, 0.0]]), [-math.log(8), -np.inf])
    with pytest.raises(ValueError, match="`low` must be below `high`"):
        rk.BoxUniform([0.0], [0.0])
    with pytest.raises(ValueError, match="`low` and `high` must be 1-D arrays of one length"):
        rk.BoxUniform([0.0, 1.0], [2.0])


@pytest.mark.parametrize(
    ("prior", "reference"),
    [
        (st.multivariate_normal([0.0, 1.0], [[1.0, 0.3], [0.3, 2.0]]), None),
        ([st.norm(0.0, 1.0), st.gamma(2.0)], None),
        (
            torch.distributions.Normal(
                torch.tensor([0.0, 1.0], dtype=torch.float64),
                torch.tensor([1.0, 2.0], dtype=torch.float64),
            ),
            lambda t: st.norm([0.0, 1.0], [1.0, 2.0]).logpdf(t).sum(axis=1),
        ),
        (rk.BoxUniform([0.0, 0.0], [1.0, 2.0]), None),
    ],
)
def test_priors_with_a_zero_critic(prior: object, reference: object) -> None:
    # With f = 0 the posterior is the prior: log_prob is the prior's log density.
    post = rk.Posterior(zero_critic(3), prior, x_dim=1, settings=SETTINGS)
    theta = np.array([[0.5, 0.5], [0.2, 1.5]])
    if reference is None:
        if isinstance(prior, list):
            expected = sum(f.logpdf(theta[:, j]) for j, f in enumerate(prior))
        elif isinstance(prior, rk.BoxUniform):
            expected = np.full(2, -math.log(2.0))
        else:
            expected = prior.logpdf(theta)
    else:
        expected = reference(theta)
    np.testing.assert_allclose(post.log_prob(theta, [0.0]), expected, rtol=1e-12)
    assert post.sample(7, x=[0.0], rng=0).theta.shape == (7, 2)


def test_torch_prior_outside_support_is_minus_inf() -> None:
    prior = torch.distributions.Uniform(torch.zeros(1), torch.ones(1))
    post = rk.Posterior(zero_critic(2), prior, x_dim=1, settings=SETTINGS)
    np.testing.assert_allclose(post.log_prob([[0.5], [2.0]], [0.0]), [0.0, -np.inf])
    np.testing.assert_array_equal(post.log_prob([[-1.0], [2.0]], [0.0]), [-np.inf, -np.inf])
    mvn = torch.distributions.MultivariateNormal(torch.zeros(2), torch.eye(2))
    post = rk.Posterior(zero_critic(3), mvn, x_dim=1, settings=SETTINGS)
    # The standard normal's log density at (1, 0): -log(2 pi) - 1/2.
    np.testing.assert_allclose(post.log_prob([1.0, 0.0], [0.0]), [-math.log(2 * math.pi) - 0.5])


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"loss": "nre-z"}, ValueError, "`loss` must be one of"),
        ({"method": "npe"}, ValueError, "`method` must be one of"),
        ({"prior": "normal"}, TypeError, "`prior` must be a torch distribution"),
        ({"prior": [st.norm(), 3]}, TypeError, "`prior` must be .* element 1"),
        ({"vectorized": 1}, TypeError, "`vectorized` must be True or False"),
        ({"simulator": 3}, TypeError, "`simulator` must be callable"),
        ({"n_simulations": 5}, ValueError, "`n_simulations` must be an integer >= 10"),
        ({"gamma": -1.0}, ValueError, "`gamma` must be a positive real number"),
        (
            {"loss": "nre-b", "num_contrastive": 8, "batch_size": 8},
            ValueError,
            "`num_contrastive` must be below `batch_size`",
        ),
        (
            {"loss": "nre-b", "num_contrastive": 50, "n_simulations": 100},
            ValueError,
            "`n_simulations` must leave more than `num_contrastive`",
        ),
        (
            {"simulator": lambda theta, rng: theta[:5]},
            ValueError,
            r"`simulator` returned shape \(5, 1\) for n = 200",
        ),
        (
            {"simulator": lambda theta, rng: theta * np.nan},
            ValueError,
            "`simulator` returned NaN",
        ),
    ],
)
def test_infer_errors_name_the_argument(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        small(**kwargs)


def test_posterior_errors_name_the_argument() -> None:
    post = rk.Posterior(zero_critic(2), normal_prior(), x_dim=1, settings=SETTINGS)
    with pytest.raises(ValueError, match=r"`theta` must have shape \(m, 1\)"):
        post.log_ratio(np.zeros((3, 2)), [0.0])
    with pytest.raises(ValueError, match="`theta` and `x` must have the same number of rows"):
        post.log_ratio(np.zeros((3, 1)), np.zeros((2, 1)))
    with pytest.raises(ValueError, match=r"`x` must have shape \(m, 1\)"):
        post.sample(3, x=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="`x` must be one observation"):
        post.map(np.zeros((2, 1)))
    with pytest.raises(TypeError, match="`progress` must be None, True or False"):
        post.sample(3, x=np.zeros((2, 1)), progress=1)
    with pytest.raises(ValueError, match="`method` must be one of"):
        post.sample(3, x=[0.0], method="mcmc")
    with pytest.raises(ValueError, match="`x` must hold finite values"):
        post.map([np.nan])


# --- saving -----------------------------------------------------------------------------------


def test_save_load_round_trip_and_refusals(posterior: rk.Posterior, tmp_path: object) -> None:
    path = posterior.save(tmp_path / "post.pt")
    loaded = rk.Posterior.load(path, prior=normal_prior())
    theta = np.linspace(-2, 2, 9)[:, None]
    np.testing.assert_array_equal(
        loaded.log_ratio(theta, [0.3]), posterior.log_ratio(theta, [0.3])
    )
    assert loaded.settings == posterior.settings
    with pytest.raises(ValueError, match="`path` must be a new file"):
        posterior.save(path)
    with pytest.raises(ValueError, match="`prior` must have the saved dimension 1"):
        rk.Posterior.load(path, prior=rk.BoxUniform([0.0, 0.0], [1.0, 1.0]))
    sidecar = tmp_path / "post.pt.json"
    original = sidecar.read_bytes()
    sidecar.write_bytes(original.replace(b'"gamma":1.0', b'"gamma":2.0'))
    with pytest.raises(ValueError, match="does not match"):
        rk.Posterior.load(path, prior=normal_prior())
    sidecar.write_bytes(original)
    data = bytearray(path.read_bytes())
    data[-10] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256"):
        rk.Posterior.load(path, prior=normal_prior())


def test_nre_loss_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="`loss` must be one of"):
        nre_loss(SCORES, "nre-d")
    with pytest.raises(ValueError, match="`gamma` must be a positive real number"):
        nre_loss(SCORES, "nre-c", 0.0)
    with pytest.raises(ValueError, match=r"`scores` must have shape \(b, K \+ 1\)"):
        nre_loss(SCORES[:, :1], "nre-b")


def test_load_refuses_a_missing_file(tmp_path: object) -> None:
    with pytest.raises(ValueError, match="`path` must be a file written by Posterior.save"):
        rk.Posterior.load(tmp_path / "none.pt", prior=normal_prior())


# --- rk.c2st ----------------------------------------------------------------------------------


def test_c2st_equal_distributions_near_half() -> None:
    gen = np.random.default_rng(0)
    a, b = gen.normal(size=(1000, 2)), gen.normal(size=(1000, 2))
    res = rk.c2st(a, b, n_permutations=199, rng=0)
    # 500 held-out points of each sample; under H0 the critic's predictions are independent
    # of the held-out labels, so the number correct is at most as spread as
    # Binomial(1000, 1/2): inside its central 1 - 1e-4 interval.
    assert (res.n_x, res.n_y) == (500, 500)
    low, high = st.binom.interval(1 - 1e-4, 1000, 0.5)
    assert low / 1000 <= res.accuracy <= high / 1000
    assert res.pvalue > 1e-3 and res.binomial_pvalue > 1e-3
    assert res.method == "classifier" and res.n_permutations == 199
    # The binomial tail P(Binomial(1000, 1/2) >= correct), recomputed.
    correct = round(res.accuracy * 1000)
    assert res.binomial_pvalue == pytest.approx(st.binom.sf(correct - 1, 1000, 0.5), rel=1e-9)
    # An int rng gives the same result.
    again = rk.c2st(a, b, n_permutations=199, rng=0)
    assert again.accuracy == res.accuracy and again.pvalue == res.pvalue


def test_c2st_separated_distributions_near_bayes_accuracy() -> None:
    gen = np.random.default_rng(1)
    a, b = gen.normal(size=(1000, 2)), gen.normal(3.0, 1.0, size=(1000, 2))
    res = rk.c2st(a, b, n_permutations=199, rng=0)
    # Two unit Gaussians at Mahalanobis distance 3 sqrt 2: the Bayes accuracy is
    # Phi(3 sqrt 2 / 2) = 0.983, no classifier's expected accuracy exceeds it, and the
    # held-out accuracy of 1000 points has standard error sqrt(0.983 0.017 / 1000) = 0.004:
    # above it by at most 4 standard errors, and below by at most 0.02 for a trained MLP
    # (a 0.004 margin of estimation on 1000 training points, with room to spare).
    bayes = st.norm.cdf(3 * math.sqrt(2) / 2)
    se = math.sqrt(bayes * (1 - bayes) / 1000)
    assert bayes - 0.02 - 4 * se < res.accuracy < bayes + 4 * se
    assert res.pvalue == pytest.approx(1 / 200) and res.binomial_pvalue < 1e-100


def test_c2st_scores_reference_posteriors() -> None:
    # Two reference samples at one observation are one distribution; at two different
    # observations of the Gaussian linear task (posteriors N(x / 2, 0.05 I), whose means
    # differ by many posterior sds), they are separated.
    task = rk.tasks.GaussianLinear()
    x = task.observations
    same = rk.c2st(
        task.reference_posterior(600, x=x[0], rng=0),
        task.reference_posterior(600, x=x[0], rng=1),
        n_permutations=99,
        rng=0,
    )
    low, high = st.binom.interval(1 - 1e-4, 600, 0.5)
    assert low / 600 <= same.accuracy <= high / 600
    apart = rk.c2st(
        task.reference_posterior(600, x=x[0], rng=0),
        task.reference_posterior(600, x=x[1], rng=1),
        n_permutations=99,
        rng=0,
    )
    assert np.linalg.norm(x[0] - x[1]) / 2 / math.sqrt(0.05) > 4
    assert apart.accuracy > 0.95


def test_c2st_errors_name_the_argument() -> None:
    gen = np.random.default_rng(0)
    a, b = gen.normal(size=(50, 2)), gen.normal(size=(50, 2))
    with pytest.raises(ValueError, match="`method` must be a ratio method with a learned critic"):
        rk.c2st(a, b, method="mmd")
    with pytest.raises(ValueError, match="`x` and `y` must have the same number of features"):
        rk.c2st(a, gen.normal(size=(50, 3)))
    with pytest.raises(ValueError, match="`n_permutations` must be an integer >= 1"):
        rk.c2st(a, b, n_permutations=0)
    with pytest.raises(TypeError, match="`standardize` must be True or False"):
        rk.c2st(a, b, standardize="yes")
    with pytest.raises(ValueError, match="`x` must hold finite values"):
        rk.c2st(np.full((50, 2), np.nan), b)


@pytest.mark.slow
def test_c2st_type_one_error() -> None:
    # R = 100 tests of two samples from one distribution at level 0.05: the rejections are
    # Binomial(100, <= 0.05) for a valid test, inside binom.interval(0.998, 100, 0.05) =
    # [0, 13].
    gen = np.random.default_rng(5)
    rejections = sum(
        rk.c2st(
            gen.normal(size=(200, 2)), gen.normal(size=(200, 2)), n_permutations=99, rng=seed
        ).pvalue
        <= 0.05
        for seed in range(100)
    )
    assert rejections <= 13


# --- slice sampling ---------------------------------------------------------------------------


class ExactGaussianLinearCritic(torch.nn.Module):
    """The exact log r of rk.tasks.GaussianLinear: log N(x; theta, 0.1 I) - log N(x; 0, 0.2 I)
    (the evidence of x is N(0, (0.1 + 0.1) I)), so the posterior is exactly N(x / 2, 0.05 I)."""

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        theta, x = rows[:, :10], rows[:, 10:]
        return -((x - theta) ** 2).sum(1) / 0.2 + (x**2).sum(1) / 0.4 + 5 * math.log(2.0)


def exact_linear_gaussian() -> rk.Posterior:
    task = rk.tasks.GaussianLinear()
    return rk.Posterior(ExactGaussianLinearCritic(), task.prior, x_dim=10, settings=SETTINGS)


def test_slice_against_the_analytic_posterior() -> None:
    post = exact_linear_gaussian()
    x = rk.tasks.GaussianLinear().observations[0]
    draws = post.sample(2000, x=x, method="slice", rng=0)
    assert draws.theta.shape == (2000, 10) and draws.method == "slice"
    assert 500 < draws.ess <= 2000 and draws.n_proposals > 40_000
    # With the exact critic only the Monte Carlo error remains: the mean's standard error is
    # sd / sqrt(ESS) and the variance's var sqrt(2 / ESS) (Gaussian target), with the ESS the
    # smallest over coordinates (so conservative for the others); 4.5 standard errors.
    var, ess = 0.05, draws.ess
    np.testing.assert_array_less(np.abs(draws.theta.mean(0) - x / 2), 4.5 * math.sqrt(var / ess))
    np.testing.assert_array_less(np.abs(draws.theta.var(0) - var), 4.5 * var * math.sqrt(2 / ess))


def test_slice_many_observations_match_one_at_a_time() -> None:
    post = exact_linear_gaussian()
    x = rk.tasks.GaussianLinear().observations[:3]
    many = post.sample(40, x=x, method="slice", n_chains=10, warmup=5, rng=7)
    assert many.theta.shape == (3, 40, 10) and many.ess.shape == (3,)
    children = np.random.default_rng(7).spawn(3)
    one = post.sample(40, x=x[2], method="slice", n_chains=10, warmup=5, rng=children[2])
    np.testing.assert_array_equal(many.theta[2], one.theta)
    again = post.sample(40, x=x, method="slice", n_chains=10, warmup=5, rng=7)
    np.testing.assert_array_equal(many.theta, again.theta)


def test_slice_on_a_trained_posterior(posterior: rk.Posterior) -> None:
    draws = posterior.sample(2000, x=[1.0], method="slice", rng=3)
    # Bars of test_sir_moments_against_conjugate, with 4 sd / sqrt(ESS) for the Monte Carlo
    # error of the chains' mean.
    assert abs(draws.theta.mean() - 1 / (1 + S**2)) < 4 * math.sqrt(V / draws.ess) + 0.13
    assert abs(draws.theta.std() / math.sqrt(V) - 1) < 0.2


@pytest.mark.parametrize("phi", [0.5, 0.9])
def test_effective_sample_size_of_ar1_chains(phi: float) -> None:
    # x_t = phi x_{t-1} + sqrt(1 - phi^2) e_t, stationary: tau = (1 + phi) / (1 - phi), so
    # ESS = C L (1 - phi) / (1 + phi). The estimator (autocorrelations summed up to the first
    # non-positive pair) has a relative spread of a few percent at this size: seeds 0-4 gave
    # 0.92-1.02 of the truth at both phi; bars 0.8 and 1.1.
    gen = np.random.default_rng(1)
    steps, chains = 2000, 50
    x = np.empty((steps, chains, 1))
    x[0] = gen.standard_normal((chains, 1))
    for t in range(1, steps):
        x[t] = phi * x[t - 1] + math.sqrt(1 - phi**2) * gen.standard_normal((chains, 1))
    truth = steps * chains * (1 - phi) / (1 + phi)
    assert 0.8 < rk.inference.effective_sample_size(x) / truth < 1.1


def test_slice_errors_name_the_argument() -> None:
    post = rk.Posterior(zero_critic(2), normal_prior(), x_dim=1, settings=SETTINGS)
    with pytest.raises(ValueError, match="`n_chains` and `warmup` must be None unless"):
        post.sample(3, x=[0.0], n_chains=4)
    with pytest.raises(ValueError, match="`warmup` must be an integer >= 0"):
        post.sample(3, x=[0.0], method="slice", warmup=-1)
    with pytest.raises(ValueError, match="`n_chains` must be an integer >= 1"):
        post.sample(3, x=[0.0], method="slice", n_chains=0)


# --- the pair plot ----------------------------------------------------------------------------


def test_plot_is_a_pair_plot_of_the_draws() -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.axes import Axes

    from ratiokit.plot import new_figure

    post = exact_linear_gaussian()
    task = rk.tasks.GaussianLinear()
    x = task.observations[0]
    reference = task.reference_posterior(300, x=x, rng=0)
    grid = post.plot(x, n=300, reference=reference, truth=task.true_parameters[0], rng=0)
    assert grid.shape == (10, 10) and all(isinstance(a, Axes) for a in grid.ravel())
    # Below the diagonal: the draws' and the reference's points of coordinates (j, i).
    draws = post.sample(300, x=x, rng=0).theta
    points = grid[3, 1].collections[0].get_offsets()
    np.testing.assert_array_equal(np.asarray(points), draws[:, [1, 3]])
    assert len(grid[3, 1].collections) == 2 and not grid[1, 3].axison
    assert grid[9, 0].get_xlabel() == "theta[0]" and grid[4, 0].get_ylabel() == "theta[4]"
    # Given axes are drawn on and returned as the grid.
    _, axes = new_figure(2, 2)
    two = rk.Posterior(
        zero_critic(3), rk.BoxUniform([0.0, 0.0], [1.0, 1.0]), x_dim=1, settings=SETTINGS
    )
    assert (two.plot([0.0], n=50, ax=axes, rng=0).ravel() == axes).all()
    with pytest.raises(TypeError, match="`ax` must be 4 matplotlib Axes"):
        two.plot([0.0], n=50, ax=axes[:3])
    with pytest.raises(ValueError, match="`x` must be one observation"):
        two.plot(np.zeros((2, 1)))
    with pytest.raises(ValueError, match="`truth` must have 2 coordinates"):
        two.plot([0.0], n=50, truth=[0.0])
    with pytest.raises(ValueError, match="`theta` and `reference` must have the same number"):
        two.plot([0.0], n=50, reference=np.zeros((5, 3)))


def test_slice_sample_errors_name_the_argument() -> None:
    def log_prob(theta: np.ndarray) -> np.ndarray:
        return np.where(theta[:, 0] > 0, -theta[:, 0], -np.inf)  # Exp(1)

    from ratiokit.inference import slice_sample

    with pytest.raises(ValueError, match=r"`init` must have shape \(n_chains, d\)"):
        slice_sample(log_prob, np.ones(3), 5, [1.0])
    with pytest.raises(ValueError, match="`width` must be 1 positive numbers"):
        slice_sample(log_prob, np.ones((3, 1)), 5, [0.0])
    with pytest.raises(ValueError, match="`init` must hold points with a finite `log_prob`"):
        slice_sample(log_prob, -np.ones((3, 1)), 5, [1.0])
    with pytest.raises(ValueError, match="`n_sweeps` must be an integer >= 1"):
        slice_sample(log_prob, np.ones((3, 1)), 0, [1.0])
    # On the exponential distribution (a support boundary at 0): mean 1, and the states
    # never leave the support. 200 chains x 100 kept sweeps; the mean's standard error is
    # 1 / sqrt(ESS), ESS estimated from the chains.
    states, _ = slice_sample(log_prob, np.ones((200, 1)), 120, [1.0], rng=0)
    kept = states[20:]
    assert (kept > 0).all()
    ess = rk.inference.effective_sample_size(kept)
    assert abs(kept.mean() - 1.0) < 4.5 / math.sqrt(ess)


# --- i.i.d. trials ----------------------------------------------------------------------------


def test_iid_log_ratio_sums_over_trials(posterior: rk.Posterior) -> None:
    # The identity log r(theta, x_1..n) = sum_i log r(theta, x_i), checked against the
    # single-trial ratios; one trial with iid=True is the plain ratio, bit for bit.
    theta = np.linspace(-2, 2, 7)[:, None]
    trials = np.array([[0.3], [-0.5], [1.2]])
    expected = sum(posterior.log_ratio(theta, t) for t in trials)
    np.testing.assert_allclose(posterior.log_ratio(theta, trials, iid=True), expected, rtol=1e-12)
    np.testing.assert_array_equal(
        posterior.log_ratio(theta, trials[:1], iid=True), posterior.log_ratio(theta, [0.3])
    )
    np.testing.assert_allclose(
        posterior.log_prob(theta, trials, iid=True),
        expected + st.norm().logpdf(theta[:, 0]),
        rtol=1e-12,
    )
    # Many observations of trials: observation i as sample(..., rng=child i) alone.
    many = posterior.sample(50, x=np.stack([trials, trials + 1.0]), iid=True, rng=4)
    children = np.random.default_rng(4).spawn(2)
    alone = posterior.sample(50, x=trials + 1.0, iid=True, rng=children[1])
    assert many.theta.shape == (2, 50, 1) and many.ess.shape == (2,)
    np.testing.assert_array_equal(many.theta[1], alone.theta)


@pytest.mark.parametrize("n_trials", [5, 20])
def test_iid_trials_posterior_against_conjugate(posterior: rk.Posterior, n_trials: int) -> None:
    # theta ~ N(0, 1), x_i | theta ~ N(theta, S^2) i.i.d.: the posterior is normal with
    # precision 1 + n / S^2 and mean (sum x_i / S^2) / (1 + n / S^2).
    trials = 0.7 + S * np.random.default_rng(100 + n_trials).standard_normal((n_trials, 1))
    precision = 1 + n_trials / S**2
    mean, sd = trials.sum() / S**2 / precision, precision**-0.5
    draws = posterior.sample(4000, x=trials, iid=True, rng=1)
    # The learned single-trial log-ratio's error enters n times (summed over trials), so the
    # bars come from measured seeds: critics of seeds 0-4 of this fixture's setting moved the
    # mean by at most 0.21 posterior sds and the sd by at most 19 % (n = 5 and 20; the SIR
    # ESS was above 8,000, a Monte Carlo error of the mean below 0.02 sd): bars 1.5 x max.
    assert abs(draws.theta.mean() - mean) < 0.35 * sd
    assert abs(draws.theta.std() / sd - 1) < 0.3
    theta_map = posterior.map(trials, iid=True, rng=0)
    assert abs(theta_map[0] - mean) < 0.5 * sd  # 10,000 prior draws: spacing << sd here


def test_iid_errors_name_the_argument(posterior: rk.Posterior) -> None:
    with pytest.raises(TypeError, match="`iid` must be True or False"):
        posterior.sample(3, x=[0.0], iid=1)
    with pytest.raises(TypeError, match="`iid` must be True or False"):
        posterior.log_prob([0.0], [0.0], iid="yes")
    with pytest.raises(ValueError, match=r"`x` with iid=True must have shape \(n_trials, 1\)"):
        posterior.sample(3, x=np.zeros((2, 3, 2)), iid=True)
    with pytest.raises(ValueError, match="`x` must be one observation"):
        posterior.map(np.zeros((2, 3, 1)), iid=True)


# --- embedding networks -----------------------------------------------------------------------

N_NOISE = 50


def noisy_simulator(theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """x = [theta + S eps, 50 features of pure noise]: the signal is 2 of 52 features."""
    signal = theta + S * rng.standard_normal(theta.shape)
    return np.concatenate([signal, rng.standard_normal((theta.shape[0], N_NOISE))], axis=1)


def embedding_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(2 + N_NOISE, 16), torch.nn.ELU(), torch.nn.Linear(16, 2)
    )


def test_embedding_posterior_at_least_as_good(tmp_path: object) -> None:
    prior = torch.distributions.Normal(
        torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    )
    net = embedding_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    settings = {"n_simulations": 2000, "hidden": (32, 32), "max_steps": 500, "progress": False}
    plain = rk.infer(noisy_simulator, prior, rng=0, **settings)
    embedded = rk.infer(noisy_simulator, prior, embedding=net, rng=0, **settings)
    # Held-out joint pairs; exact log r: the two signal features' Gaussian ratios (the noise
    # features have the same law under p(x | theta) and p(x), and cancel).
    gen = np.random.default_rng(123)
    theta = gen.normal(size=(2000, 2))
    x = noisy_simulator(theta, gen)
    exact = (
        st.norm(theta, S).logpdf(x[:, :2]) - st.norm(0, math.sqrt(1 + S**2)).logpdf(x[:, :2])
    ).sum(axis=1)

    def rmse(post: rk.Posterior) -> float:
        return float(np.sqrt(np.mean((post.log_ratio(theta, x) - exact) ** 2)))

    # The trivial critic f = 0 has RMSE 2.05 here. Seeds 0-4 of this setting gave 0.60-0.68
    # with the embedding and 0.62-1.03 without, the ratio embedded / plain 0.66-1.04: bars
    # 1.2 x max of each.
    assert rmse(embedded) < 0.8
    assert rmse(embedded) < 1.2 * rmse(plain)
    # The user's module is not trained in place; the posterior holds a trained copy.
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert embedded.settings["embedding"] == repr(net)
    # Saved weights, the architecture given again to load: the same ratio bit for bit.
    path = embedded.save(tmp_path / "embedded.pt")
    loaded = rk.Posterior.load(path, prior=prior, embedding=embedding_net())
    np.testing.assert_array_equal(
        loaded.log_ratio(theta[:50], x[:50]), embedded.log_ratio(theta[:50], x[:50])
    )
    with pytest.raises(ValueError, match="`embedding` must be given exactly when"):
        rk.Posterior.load(path, prior=prior)
    with pytest.raises(ValueError, match="must hold the critic its record describes"):
        wrong = torch.nn.Sequential(
            torch.nn.Linear(2 + N_NOISE, 8), torch.nn.ELU(), torch.nn.Linear(8, 2)
        )
        rk.Posterior.load(path, prior=prior, embedding=wrong)


def test_embedding_errors_name_the_argument() -> None:
    with pytest.raises(TypeError, match="`embedding` must be a torch.nn.Module or None"):
        small(embedding="mlp")
    with pytest.raises(ValueError, match=r"`embedding` must map x of shape \(m, 1\)"):
        small(embedding=torch.nn.Linear(3, 2))
    with pytest.raises(ValueError, match=r"`embedding` must map x of shape \(m, 1\)"):
        small(embedding=torch.nn.Flatten(0))


# --- sequential rounds ------------------------------------------------------------------------

S_NARROW = 0.1  # x | theta ~ N(theta, 0.1^2), theta ~ N(0, 1): a posterior 10 x narrower


def narrow_simulator(theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return theta + S_NARROW * rng.standard_normal(theta.shape)


def test_rounds_focus_on_x_obs(tmp_path: object) -> None:
    x_obs = 1.5
    precision = 1 + 1 / S_NARROW**2
    mean, sd = x_obs / S_NARROW**2 / precision, precision**-0.5
    settings = {"n_simulations": 1000, "hidden": (32, 32), "max_steps": 500, "progress": False}

    def error(post: rk.Posterior) -> tuple[float, float]:
        draws = post.sample(4000, x=[x_obs], rng=1).theta
        return abs(draws.mean() - mean) / sd, abs(draws.std() / sd - 1)

    one = rk.infer(narrow_simulator, normal_prior(), rng=0, **settings)
    three = rk.infer(narrow_simulator, normal_prior(), rounds=3, x_obs=[x_obs], rng=0, **settings)
    # Same budget of 1000 simulations. Seeds 0-4: one round gave a mean error of 0.10-0.49
    # posterior sds and an sd 36-52 % too wide (error sum 0.46-1.00); three rounds 0.01-0.06
    # sds and 14-32 % (sum 0.16-0.33), below one round on every seed by at least 0.23.
    (m1, s1), (m3, s3) = error(one), error(three)
    assert m3 + s3 <= m1 + s1
    # Against the exact posterior: bars 2 x and 1.5 x the largest errors of seeds 0-4
    # (0.06 sd, 32 %); 4000 SIR draws add a Monte Carlo error of the mean of about
    # 1 / sqrt(4000) = 0.016 sd.
    assert m3 < 0.12 and s3 < 0.5
    # The box is nested in the prior's bulk, holds the posterior (mean +- 4 sd) and is
    # much narrower than the prior; it is saved and loaded with the posterior.
    low, high = three.truncation
    assert low[0] < mean - 4 * sd and high[0] > mean + 4 * sd and high[0] - low[0] < 3.0
    assert one.truncation is None and three.settings["rounds"] == 3
    loaded = rk.Posterior.load(three.save(tmp_path / "three.pt"), prior=normal_prior())
    np.testing.assert_array_equal(loaded.truncation[0], low)
    assert loaded.log_prob([[high[0] + 0.01]], [x_obs])[0] == -np.inf
    # Proposals, and so draws and the MAP, lie in the box.
    inside = np.concatenate([three.sample(500, x=[x_obs], rng=0).theta, [three.map([x_obs])]])
    assert ((inside >= low) & (inside <= high)).all()


def test_rounds_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="`x_obs` must be given exactly when `rounds` > 1"):
        small(rounds=2)
    with pytest.raises(ValueError, match="`x_obs` must be given exactly when `rounds` > 1"):
        small(x_obs=[0.0])
    with pytest.raises(ValueError, match="`rounds` must be an integer >= 1"):
        small(rounds=0)
    with pytest.raises(ValueError, match="`x_obs` must be one observation; got 2"):
        small(rounds=2, x_obs=[[0.0], [1.0]])
    with pytest.raises(ValueError, match=r"`x_obs` with iid=True must have shape"):
        small(rounds=2, x_obs=np.zeros((3, 2)), iid=True)
    # An observation of trials focuses the rounds too: a box around it.
    focused = small(rounds=2, x_obs=np.zeros((3, 1)), iid=True)
    assert focused.truncation[0][0] < 0.0 < focused.truncation[1][0]
    with pytest.raises(ValueError, match="`truncation` must be two arrays"):
        rk.Posterior(
            zero_critic(2), normal_prior(), x_dim=1, settings=SETTINGS, truncation=([1.0], [0.0])
        )


@pytest.mark.slow
def test_rounds_on_two_moons_no_worse_than_one() -> None:
    # The larger check (about a minute): two moons, 3000 simulations, C2ST of 1000 draws
    # against 1000 reference draws at the first observation (0.5 is ideal). Seeds 0-2 gave
    # 0.855-0.884 with one round and 0.858-0.876 with three (differences -0.017, -0.010,
    # +0.021: truncation to the crescents' bounding box, a third of the prior's, did not
    # improve it measurably at this budget); bar: three rounds within 0.05 of one round (over
    # 2 x the largest difference), and three rounds below 0.92 (the largest measured plus
    # 0.05; the prior's own draws score 0.98).
    task = rk.tasks.TwoMoons()
    x = task.observations[0]
    reference = task.reference_posterior(1000, x=x, rng=0)
    accuracy = []
    for rounds in (1, 3):
        post = rk.infer(
            task.simulator,
            task.prior,
            n_simulations=3000,
            rounds=rounds,
            x_obs=None if rounds == 1 else x,
            rng=0,
            progress=False,
        )
        draws = post.sample(1000, x=x, rng=1).theta
        accuracy.append(rk.c2st(draws, reference, n_permutations=9, rng=3).accuracy)
    assert accuracy[1] <= accuracy[0] + 0.05
    assert accuracy[1] < 0.92
