"""rk.sbc and rk.expected_coverage on the linear Gaussian model with its exact posterior, and
Posterior.sample at many observations at once."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats as st
import torch

import ratiokit as rk

S = 0.5  # x | theta ~ N(theta, S^2 I), theta ~ N(0, I)
#: The conjugate posterior: theta | x ~ N(x / (1 + S^2), V I).
V = S**2 / (1 + S**2)
#: The uniformity test's level, per seed and coordinate.
ALPHA = 0.01


def simulator(theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return theta + S * rng.standard_normal(theta.shape)


def black_box(theta: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return theta + S * rng.standard_normal((n, theta.size))


def normal_prior(d: int = 1) -> torch.distributions.Distribution:
    return torch.distributions.Normal(
        torch.zeros(d, dtype=torch.float64), torch.ones(d, dtype=torch.float64)
    )


class ExactPosterior:
    """The conjugate posterior N(x / (1 + S^2), (shrink^2 V) I): exact for shrink = 1,
    overconfident (too narrow) for shrink < 1."""

    def __init__(self, shrink: float = 1.0) -> None:
        self.sd = shrink * math.sqrt(V)

    def sample(self, n: int, *, x: np.ndarray, rng: np.random.Generator) -> rk.PosteriorSamples:
        mean = np.asarray(x)[:, None, :] / (1 + S**2)
        theta = mean + self.sd * rng.standard_normal((mean.shape[0], n, mean.shape[2]))
        return rk.PosteriorSamples(theta=theta, method="exact", n_proposals=0)

    def log_prob(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        return st.norm(x / (1 + S**2), self.sd).logpdf(theta).sum(axis=1)


class ExactLogRatio(torch.nn.Module):
    """The exact critic of the model: log N(x; theta, S^2) - log N(x; 0, 1 + S^2), per row."""

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        theta, x = rows[:, :1], rows[:, 1:]
        log_lik = torch.distributions.Normal(theta, S).log_prob(x)
        log_evidence = torch.distributions.Normal(0.0, math.sqrt(1 + S**2)).log_prob(x)
        return (log_lik - log_evidence).sum(dim=1)


SETTINGS = {"loss": "nre-a", "num_contrastive": 1, "gamma": 1.0, "hidden": [], "n_simulations": 0}


def exact_nre_posterior() -> rk.Posterior:
    return rk.Posterior(ExactLogRatio(), normal_prior(), x_dim=1, settings=SETTINGS)


# --- sampling many observations at once -------------------------------------------------------


@pytest.mark.parametrize("method", ["sir", "rejection"])
def test_many_observations_equal_one_by_one(method: str) -> None:
    # Observation i is sampled with child i of default_rng(rng).spawn(n_obs); the exact critic
    # is elementwise, so batching cannot change a bit.
    post = exact_nre_posterior()
    x = np.array([[-1.0], [0.0], [0.5], [2.0]])
    many = post.sample(50, x=x, method=method, n_proposals=2000, rng=7, progress=False)
    assert many.theta.shape == (4, 50, 1)
    children = np.random.default_rng(7).spawn(4)
    for i, child in enumerate(children):
        one = post.sample(50, x=x[i], method=method, n_proposals=2000, rng=child)
        np.testing.assert_array_equal(many.theta[i], one.theta)
        name = "ess" if method == "sir" else "acceptance_rate"
        assert getattr(many, name)[i] == getattr(one, name)
    assert many.method == method and "theta=<array (4, 50, 1)>" in repr(many)


class CountingLogRatio(ExactLogRatio):
    """The exact critic, counting its passes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return super().forward(rows)


def test_many_observations_chunked_match_conjugate_moments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # n = 2000 draws: 40,000 proposals per observation, and CHUNK_ROWS set to 3 observations'
    # worth: 7 observations take 3 critic passes. Each observation's draws still follow its
    # own conjugate posterior N(x / 1.25, 0.2).
    monkeypatch.setattr(rk.inference, "CHUNK_ROWS", 3 * 40_000)
    critic = CountingLogRatio()
    post = rk.Posterior(critic, normal_prior(), x_dim=1, settings=SETTINGS)
    x = np.linspace(-1.5, 1.5, 7)
    draws = post.sample(2000, x=x, rng=0, progress=False)
    assert critic.calls == 3
    assert draws.theta.shape == (7, 2000, 1) and draws.ess.shape == (7,)
    mean, sd = draws.theta[:, :, 0].mean(axis=1), draws.theta[:, :, 0].std(axis=1)
    # SIR draws are worth about min(n, ess) independent ones (ess > 4000 here); 5 standard
    # errors of the mean with n_eff = 1000 is 5 sqrt(0.2 / 1000) = 0.071, and of the sd
    # (relative, sqrt(1 / (2 n_eff))) 0.11.
    assert (draws.ess > 4000).all()
    np.testing.assert_allclose(mean, x / (1 + S**2), atol=0.071)
    np.testing.assert_allclose(sd / math.sqrt(V), 1.0, atol=0.11)


def test_single_observation_unchanged() -> None:
    # One row, 1-D or 2-D, is one observation: theta of shape (n, d), diagnostics numbers.
    post = exact_nre_posterior()
    a = post.sample(20, x=[0.3], rng=1)
    b = post.sample(20, x=[[0.3]], rng=1)
    assert a.theta.shape == (20, 1) and isinstance(a.ess, float)
    np.testing.assert_array_equal(a.theta, b.theta)


# --- SBC and coverage against the exact posterior ---------------------------------------------


def coverage_band(n: int, level: float, k: int) -> tuple[float, float]:
    """Coverage band at credibility ``level``: a calibrated coverage is Binomial(n, p) / n
    with p within 1 / (2 (L + 1)) of ``level`` (the mid-rank); Bonferroni over k levels at
    0.01 in all."""
    low, high = st.binom.interval(1 - 0.01 / k, n, level)
    return low / n, high / n


@pytest.mark.parametrize("seed", range(3))
def test_sbc_exact_posterior_is_uniform(seed: int) -> None:
    # theta in 2 dimensions: each coordinate's ranks pass the chi-square test at ALPHA. The
    # seeds are fixed, so this either always passes or always fails; each run of a calibrated
    # posterior passes with probability 1 - ALPHA per coordinate.
    res = rk.sbc(ExactPosterior(), simulator, normal_prior(2), n_sbc=500, n_samples=50, rng=seed)
    assert res.ranks.shape == (500, 2) and res.ranks.min() >= 0 and res.ranks.max() <= 50
    assert res.n_bins == 20 and res.bin_counts.sum() == 1000
    assert res.expected_counts.sum() == pytest.approx(500)
    assert (res.pvalue > ALPHA).all()


def test_sbc_overconfident_posterior_fails() -> None:
    # The exact posterior with its sd halved: theta_i falls outside the too-narrow draws, so
    # the ranks pile up at 0 and L (a U): P(rank in the end bins) is far above their share.
    res = rk.sbc(ExactPosterior(0.5), simulator, normal_prior(2), n_sbc=500, n_samples=50, rng=0)
    assert (res.pvalue < 1e-6).all()
    ends = res.bin_counts[:, [0, -1]].sum(axis=1)
    assert (ends > 3 * res.expected_counts[[0, -1]].sum()).all()


def test_sbc_with_an_exact_ratio_posterior_and_black_box_simulator() -> None:
    # The whole path: a Posterior whose critic is the exact log ratio, sampled by SIR at all
    # 300 observations at once, and a simulator called one theta at a time.
    res = rk.sbc(
        exact_nre_posterior(),
        black_box,
        normal_prior(),
        vectorized=False,
        n_sbc=300,
        n_samples=30,
        rng=0,
        progress=False,
    )
    assert res.pvalue[0] > ALPHA


def test_coverage_exact_within_band_overconfident_below() -> None:
    n, levels = 1000, np.array([0.2, 0.5, 0.8, 0.95])
    good = rk.expected_coverage(
        ExactPosterior(), simulator, normal_prior(), levels=levels, n_sbc=n, n_samples=100, rng=0
    )
    slack = 1 / (2 * 101)  # the mid-rank's discretisation
    for level, coverage in zip(levels, good.coverage, strict=True):
        low, high = coverage_band(n, level, len(levels))
        assert low - slack <= coverage <= high + slack
    bad = rk.expected_coverage(
        ExactPosterior(0.5),
        simulator,
        normal_prior(),
        levels=levels,
        n_sbc=n,
        n_samples=100,
        rng=0,
    )
    # The alpha-HDR of N(m, V / 4) is |theta - m| <= z sqrt(V) / 2, z = Phi^-1((1 + alpha) / 2),
    # and theta | x ~ N(m, V): it holds the truth with probability 2 Phi(z / 2) - 1.
    truth = 2 * st.norm.cdf(st.norm.ppf((1 + levels) / 2) / 2) - 1
    for level, coverage, expected in zip(levels, bad.coverage, truth, strict=True):
        low, high = coverage_band(n, expected, len(levels))
        assert low - slack <= coverage <= high + slack
        assert coverage < coverage_band(n, level, len(levels))[0] - slack
    # The result's own band is the 99% binomial interval at each level.
    np.testing.assert_allclose(good.band_low, st.binom.interval(0.99, n, levels)[0] / n)
    assert (
        good.credibility.shape == (n,) and ((good.credibility > 0) & (good.credibility < 1)).all()
    )


def test_results_tables_and_plots() -> None:
    pytest.importorskip("matplotlib")
    res = rk.sbc(ExactPosterior(), simulator, normal_prior(2), n_sbc=60, n_samples=9, rng=0)
    axes = res.plot()
    assert axes.shape == (2,) and axes[0].get_title().startswith("theta[0]: chi-square p =")
    cov = rk.expected_coverage(ExactPosterior(), simulator, normal_prior(), n_sbc=60, rng=0)
    ax = cov.plot()
    assert ax.get_xlabel() == "credibility level" and len(ax.get_lines()) == 2
    assert "ranks=array(shape=(60, 2))" in repr(res)
    pytest.importorskip("pandas")
    assert list(res.to_dataframe().columns) == ["coordinate", "statistic", "pvalue"]
    assert cov.to_dataframe().shape == (19, 4)
    assert res.to_dict()["n_samples"] == 9


def test_calibration_errors_name_the_argument() -> None:
    exact, prior = ExactPosterior(), normal_prior()
    with pytest.raises(TypeError, match="`posterior` must have `sample"):
        rk.sbc(object(), simulator, prior)
    with pytest.raises(TypeError, match="`simulator` must be callable"):
        rk.sbc(exact, 3, prior)
    with pytest.raises(TypeError, match="`vectorized` must be True or False"):
        rk.sbc(exact, simulator, prior, vectorized=1)
    with pytest.raises(ValueError, match="`n_sbc` must be"):
        rk.sbc(exact, simulator, prior, n_sbc=1)
    with pytest.raises(ValueError, match="`n_samples` must be"):
        rk.expected_coverage(exact, simulator, prior, n_samples=0)
    with pytest.raises(ValueError, match="`levels` must be a 1-D array of floats in"):
        rk.expected_coverage(exact, simulator, prior, levels=[0.5, 1.0], n_sbc=10)
    with pytest.raises(TypeError, match="`levels` must be an array of floats"):
        rk.expected_coverage(exact, simulator, prior, levels="high", n_sbc=10)
    with pytest.raises(TypeError, match="`prior` must be"):
        rk.sbc(exact, simulator, "normal", n_sbc=10)
    with pytest.raises(TypeError, match="`progress` must be None, True or False"):
        rk.sbc(exact, simulator, prior, n_sbc=10, progress="yes")

    class OneObservation(ExactPosterior):
        def sample(self, n: int, *, x: np.ndarray, rng: np.random.Generator) -> object:
            return super().sample(n, x=x[:1], rng=rng)

    with pytest.raises(ValueError, match=r"`posterior.sample` must return draws of shape"):
        rk.sbc(OneObservation(), simulator, prior, n_sbc=10, n_samples=5)
