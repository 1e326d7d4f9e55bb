"""Example simulators: exact quantiles, exact gradients, a brute-force queue, equivariances."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from ratiokit.simulators import SIMULATORS, GAndK, GaussianLocationScale, MG1Queue, Simulator


def gk_quantile(theta, z):
    """The g-and-k quantile function Q(z), written out independently of the module."""
    a, b, g, k = theta
    return a + b * (1 + 0.8 * (1 - np.exp(-g * z)) / (1 + np.exp(-g * z))) * (1 + z**2) ** k * z


def test_registry_and_metadata():
    assert set(SIMULATORS) == {"gaussian", "g-and-k", "mg1-queue"}
    for name, cls in SIMULATORS.items():
        sim = cls()
        assert isinstance(sim, Simulator) and sim.name == name
        assert len(sim.param_names) == len(sim.theta_true) == len(sim.bounds) == sim.n_params
        low, high = np.array(sim.bounds).T
        assert np.all(low <= sim.theta_true) and np.all(sim.theta_true <= high)
    assert GAndK().differentiable and GaussianLocationScale().differentiable
    assert not MG1Queue().differentiable


def test_gaussian_moments():
    sim = GaussianLocationScale(theta_true=(1.0, 2.0), dim=3)
    x = sim.sample(20_000, rng=0)
    assert x.shape == (20_000, 3) and x.dtype == np.float64
    # Standard errors: scale / sqrt(n) = 0.014 for the mean, scale / sqrt(2 n) = 0.010 for
    # the sd (per coordinate); 5 standard errors.
    np.testing.assert_allclose(x.mean(0), 1.0, atol=5 * 2 / math.sqrt(20_000))
    np.testing.assert_allclose(x.std(0), 2.0, atol=5 * 2 / math.sqrt(40_000))


def test_g_and_k_matches_its_quantile_function():
    theta = np.array([3.0, 1.0, 2.0, 0.5])
    n = 50_000
    x = GAndK(theta_true=tuple(theta)).sample(n, rng=1)[:, 0]
    probs = np.array([0.05, 0.25, 0.5, 0.75, 0.95])
    z = stats.norm.ppf(probs)
    exact = gk_quantile(theta, z)
    # Standard error of a sample quantile: sqrt(p (1 - p) / n) / f(Q(p)), with the density
    # f(Q(z)) = phi(z) / Q'(z) (Q' by central differences); 5 standard errors.
    dq = (gk_quantile(theta, z + 1e-6) - gk_quantile(theta, z - 1e-6)) / 2e-6
    se = np.sqrt(probs * (1 - probs) / n) * dq / stats.norm.pdf(z)
    np.testing.assert_array_less(np.abs(np.quantile(x, probs) - exact), 5 * se)


@pytest.mark.parametrize("cls", [GaussianLocationScale, GAndK])
def test_torch_form_gradients_are_exact(cls):
    sim = cls()
    theta = torch.tensor(sim.theta_true, dtype=torch.float64, requires_grad=True)
    x = sim(theta, 50, torch.Generator().manual_seed(3))
    assert isinstance(x, torch.Tensor) and x.shape == (50, sim.n_features)
    (grad,) = torch.autograd.grad(x.sum(), theta)
    # The same generator seed gives the same z, so central differences of the sum in each
    # parameter are the exact derivative up to O(h^2).
    base = theta.detach()
    for i in range(sim.n_params):
        step = torch.zeros_like(base)
        step[i] = 1e-6
        hi = sim(base + step, 50, torch.Generator().manual_seed(3)).sum()
        lo = sim(base - step, 50, torch.Generator().manual_seed(3)).sum()
        assert float(grad[i]) == pytest.approx(float((hi - lo) / 2e-6), rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("cls", [GaussianLocationScale, GAndK])
def test_torch_and_numpy_forms_agree_in_distribution(cls):
    sim = cls()
    x_np = sim(np.array(sim.theta_true), 4000, np.random.default_rng(0))
    with torch.no_grad():
        x_t = sim(torch.tensor(sim.theta_true, dtype=torch.float64), 4000, 0).numpy()
    # Two-sample Kolmogorov-Smirnov test of one law; seeded, so the p-value is fixed.
    assert stats.ks_2samp(x_np[:, 0], x_t[:, 0]).pvalue > 0.01


def test_queue_matches_a_brute_force_loop():
    sim = MG1Queue(theta_true=(1.0, 4.0, 0.2), burn_in=7)
    y = sim(np.array([1.0, 4.0, 0.2]), 300, np.random.default_rng(5))[:, 0]
    # The same draws, in the simulator's order (service times, then inter-arrival times),
    # through the textbook recursion d_i = max(a_i, d_{i-1}) + s_i.
    gen = np.random.default_rng(5)
    service = 1.0 + 4.0 * gen.random(307)
    arrivals = np.cumsum(gen.standard_exponential(307) / 0.2)
    departures, last = [], 0.0
    for a, s in zip(arrivals, service, strict=True):
        last = max(a, last) + s
        departures.append(last)
    gaps = np.diff(np.r_[0.0, departures])[7:]
    np.testing.assert_allclose(y, gaps, rtol=1e-12)


def test_queue_steady_state():
    y = MG1Queue().sample(40_000, rng=2)[:, 0]
    # Every departure takes at least the shortest service time; in steady state the mean
    # gap is 1 / rate = 5 (flow balance). The gaps are autocorrelated (utilisation 0.6),
    # so the tolerance is 10 naive standard errors sd / sqrt(n) = 0.02.
    assert y.min() >= 1.0
    assert abs(y.mean() - 5.0) < 10 * y.std() / math.sqrt(y.size)


def test_queue_with_no_arrivals_gives_nan_not_a_warning():
    y = MG1Queue()(np.array([1.0, 4.0, 0.0]), 10, 0)
    assert np.isnan(y).all()


@settings(deadline=None, max_examples=25)
@given(
    a=st.floats(0.0, 10.0),
    b=st.floats(0.1, 10.0),
    g=st.floats(0.0, 10.0),
    k=st.floats(0.0, 3.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_g_and_k_is_location_scale_equivariant(a, b, g, k, seed):
    sim = GAndK()
    x = sim(np.array([a, b, g, k]), 20, seed)
    unit = sim(np.array([0.0, 1.0, g, k]), 20, seed)
    np.testing.assert_allclose(x, a + b * unit, rtol=1e-10, atol=1e-10 * (1 + abs(a)))


@settings(deadline=None, max_examples=25)
@given(c=st.floats(0.31, 3.0), seed=st.integers(0, 2**32 - 1))
def test_queue_time_scale_equivariance(c, seed):
    # Service times scaled by c and the arrival rate by 1 / c scale every gap by c.
    sim = MG1Queue(theta_true=(0.5, 1.0, 0.1), burn_in=5)
    x = sim(np.array([0.5, 1.0, 0.1]), 30, seed)
    y = sim(np.array([0.5 * c, 1.0 * c, 0.1 / c]), 30, seed)
    np.testing.assert_allclose(y, c * x, rtol=1e-9)


def test_same_seed_same_sample_and_no_global_rng():
    state = np.random.get_state()[1].copy()
    sim = GAndK()
    np.testing.assert_array_equal(sim.sample(10, rng=4), sim.sample(10, rng=4))
    np.testing.assert_array_equal(np.random.get_state()[1], state)


@pytest.mark.parametrize(
    ("theta", "error", "match"),
    [
        ([1.0], ValueError, r"`theta` must hold 2 parameters \('loc', 'scale'\); got shape"),
        ([0.0, -1.0], ValueError, r"`theta` must be finite with loc in \[-inf, inf\], scale"),
        ([0.0, float("nan")], ValueError, "`theta` must be finite"),
        (["a", 1.0], ValueError, "`theta` must be an array of real numbers"),
    ],
)
def test_bad_theta(theta, error, match):
    with pytest.raises(error, match=match):
        GaussianLocationScale()(theta, 5, 0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="`n` must be an integer >= 1; got 0"):
        GAndK()(np.array([3.0, 1.0, 2.0, 0.5]), 0, 0)
    with pytest.raises(TypeError, match="`theta` must be a NumPy array for MG1Queue"):
        MG1Queue()(torch.tensor([1.0, 4.0, 0.2]), 5, 0)
    with pytest.raises(ValueError, match="`theta` must hold 4 parameters"):
        GAndK()(torch.zeros(3), 5, torch.Generator())
    with pytest.raises(ValueError, match="`theta_true` must be finite with A in"):
        GAndK(theta_true=(3.0, -1.0, 2.0, 0.5))
    with pytest.raises(ValueError, match="`dim` must be an integer >= 1"):
        GaussianLocationScale(dim=0)
    with pytest.raises(ValueError, match="`burn_in` must be an integer >= 0"):
        MG1Queue(burn_in=-1)
