"""MMD^2 and the energy distance against brute force, statistical properties and numerics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import ratiokit as rk
from ratiokit.methods import MMD, EnergyDistance
from tests.reference import mmd2

CASES = [
    ("gaussian", 0.9),
    ("laplace", (0.5, 1.5)),
    ("imq", 1.2),
    ("rq", (0.7, 2.0)),
    ("energy", 1.0),
]


@pytest.mark.parametrize(("name", "bw"), CASES)
@pytest.mark.parametrize("estimator", ["unbiased", "biased", "linear"])
@pytest.mark.parametrize("backend", ["dense", pytest.param("keops", marks=pytest.mark.keops)])
def test_against_brute_force_reference(name, bw, estimator, backend):
    gen = np.random.default_rng(10)
    x, y = gen.normal(size=(41, 3)), gen.normal(0.4, 1.3, size=(36, 3))
    expected = mmd2(name, x, y, bw, estimator, alpha=2.0)
    method = MMD(name, bw, estimator=estimator, alpha=2.0, backend=backend, tile_size=16)
    got = float(method(torch.tensor(x), torch.tensor(y)))
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-14)


def test_energy_distance_is_mmd_with_the_distance_kernel():
    gen = np.random.default_rng(11)
    x, y = torch.tensor(gen.normal(size=(30, 2))), torch.tensor(gen.normal(size=(25, 2)) + 1)
    # V-statistic energy distance: 2 E|x - y| - E|x - x'| - E|y - y'| (Szekely & Rizzo).
    dxy, dxx, dyy = torch.cdist(x, y).mean(), torch.cdist(x, x).mean(), torch.cdist(y, y).mean()
    expected = float(2 * dxy - dxx - dyy)
    assert float(EnergyDistance(estimator="biased")(x, y)) == pytest.approx(expected, rel=1e-10)


def test_gradients_flow_to_both_samples_through_tiles():
    gen = np.random.default_rng(12)
    x = torch.tensor(gen.normal(size=(50, 2)), requires_grad=True)
    y = torch.tensor(gen.normal(size=(40, 2)), requires_grad=True)
    MMD(bandwidth=1.0, backend="dense", tile_size=8)(x, y).backward()
    gx, gy = x.grad.clone(), y.grad.clone()
    # Central differences on one coordinate of each sample.
    for t, g in ((x, gx), (y, gy)):
        with torch.no_grad():
            t[3, 1] += 1e-6
            up = MMD(bandwidth=1.0)(x, y)
            t[3, 1] -= 2e-6
            down = MMD(bandwidth=1.0)(x, y)
            t[3, 1] += 1e-6
        assert float(g[3, 1]) == pytest.approx(float(up - down) / 2e-6, rel=1e-5)


finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False, width=64)
samples = st.integers(2, 12).flatmap(
    lambda n: st.tuples(
        arrays(np.float64, (n, 2), elements=finite),
        arrays(np.float64, (n + 1, 2), elements=finite),
    )
)


@settings(deadline=None, max_examples=25)
@given(samples, st.sampled_from([name for name, _ in CASES]), st.randoms(use_true_random=False))
def test_properties_row_order_symmetry_nonnegative_v_statistic(xy, name, rnd):
    x, y = (torch.tensor(a) for a in xy)
    u, v = MMD(name, 1.5), MMD(name, 1.5, estimator="biased")
    perm_x = torch.tensor(rnd.sample(range(len(x)), len(x)))
    perm_y = torch.tensor(rnd.sample(range(len(y)), len(y)))
    base = float(u(x, y))
    scale = 1e-12 * (1.0 + float(torch.cat([x, y]).abs().max()))  # rounding of the sums
    assert abs(float(u(x[perm_x], y[perm_y])) - base) <= scale  # invariance to row order
    assert abs(float(u(y, x)) - base) <= scale  # symmetry
    assert float(v(x, y)) >= -scale  # V-statistic: squared RKHS norm of a mean difference


def gaussian_mmd2(h, d, delta2):
    """Closed-form MMD^2 of N(0, I_d) vs N(mu, I_d), |mu|^2 = delta2, Gaussian kernel h.

    E k(x, x') = (h^2 / (h^2 + 2))^(d/2) and E k(x, y) = that * exp(-delta2 / (2 (h^2 + 2)))
    (Gaussian convolution identities), so MMD^2 = 2 E k(x, x') (1 - exp(-delta2 / (2 (h^2+2)))).
    """
    return 2 * (h**2 / (h**2 + 2)) ** (d / 2) * (1 - np.exp(-delta2 / (2 * (h**2 + 2))))


@pytest.mark.parametrize("shift", [0.0, 1.0])
def test_unbiased_statistic_mean_matches_closed_form(shift):
    # Over R = 200 seeds of n = m = 100 in d = 2 the U-statistic is unbiased for the closed
    # form; its seed-to-seed standard error is std / sqrt(R), so |mean - exact| < 4 SE fails
    # only with probability ~6e-5 (normal approximation); the seeds are fixed.
    gen = np.random.default_rng(13)
    mmd = MMD(bandwidth=1.0)
    values = []
    for _ in range(200):
        x, y = gen.normal(size=(100, 2)), gen.normal(shift, 1.0, size=(100, 2))
        values.append(float(mmd(torch.tensor(x), torch.tensor(y))))
    values = np.array(values)
    exact = gaussian_mmd2(1.0, 2, 2 * shift**2)  # 0 under the null, 0.1889 for shift 1
    assert abs(values.mean() - exact) < 4 * values.std(ddof=1) / np.sqrt(len(values))
    if shift == 0.0:
        assert (values < 0).any()  # negative values are legitimate and returned as they are


def test_negative_unbiased_mmd_is_returned_never_nan():
    gen = np.random.default_rng(14)
    values = [
        rk.discrepancy(gen.normal(size=(20, 1)), gen.normal(size=(20, 1)), rng=0)
        for _ in range(20)
    ]
    assert min(values) < 0 and np.isfinite(values).all()


def _float32_error_vs_null_spread(n, backend):
    # Data far from the origin (offset 100) is where float32 kernel sums usually go wrong.
    gen = np.random.default_rng(15)
    x, y = 100 + gen.normal(size=(n, 10)), 100 + gen.normal(size=(n, 10))
    method = MMD(bandwidth=4.0, backend=backend)
    exact = float(method(torch.tensor(x), torch.tensor(y)))
    single = float(
        method(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32))
    )
    # Null spread of the U-statistic: sqrt(2 / (n (n - 1))) * sd of k(x, x') (Gretton et al.
    # 2012, Thm. 12 scaling); sd of k <= 1, and for these data it is about 0.1.
    spread = np.sqrt(2.0 / (n * (n - 1))) * 0.1
    return abs(single - exact), spread


def test_float32_accumulation_error_well_under_null_spread():
    err, spread = _float32_error_vs_null_spread(5_000, "dense")
    assert err < 0.05 * spread


@pytest.mark.slow
@pytest.mark.keops
def test_float32_accumulation_error_at_n_1e5():
    err, spread = _float32_error_vs_null_spread(100_000, "keops")
    assert err < 0.05 * spread


def test_repr_is_compact():
    assert repr(MMD("imq", [0.5, 1.0])) == (
        "MMD(kernel='imq', bandwidth=(0.5, 1.0), estimator='unbiased', backend='auto')"
    )
