"""Tests for ratiokit.synthetic: exact densities, samplers and closed-form divergences.

Statistical checks compare a Monte Carlo mean over n = 200_000 seeded draws with the exact
value and allow 5 standard errors (se = sample std / sqrt(n)): for a correct formula the
two-sided chance of a larger deviation is below 1e-6 (and with a fixed seed the outcome is
deterministic anyway), while a wrong formula is off by many se. Each check is run only where
the Monte Carlo summand has a finite fourth moment, so that se itself is reliable.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import integrate, special, stats

from ratiokit.synthetic import (
    DIVERGENCES,
    PROBLEMS,
    CorrelatedBlobs,
    CorrelatedGaussian,
    GaussianBlobs,
    GaussianMixture,
    GaussianPair,
    GaussianShift,
    HighDimGaussianMixture,
    ScaleChange,
    StudentTGaussian,
    SyntheticPair,
    make_problem,
)

N_MC = 200_000
N_SE = 5  # tolerance in standard errors (see the module docstring)

# A 3-D pair with unequal means and full covariances. cov_p < (4/3) cov_q in the Loewner
# order, so E_q[(p/q)^4] is finite and the Pearson Monte Carlo estimate has finite variance.
PAIR_3D = GaussianPair(
    mean_p=[0.3, -0.2, 0.1],
    cov_p=[[0.8, 0.2, 0.0], [0.2, 0.6, 0.1], [0.0, 0.1, 0.7]],
    mean_q=[0.0, 0.0, 0.2],
    cov_q=[[1.0, 0.3, 0.0], [0.3, 1.0, 0.0], [0.0, 0.0, 1.2]],
)


def _mc(pair: SyntheticPair, kind: str, seed: int) -> tuple[float, float]:
    """Monte Carlo estimate of ``pair.divergence(kind)`` and its standard error."""
    rng = np.random.default_rng(seed)
    if kind in ("kl", "mi"):  # KL(P||Q) = E_p[log r]
        values = pair.log_ratio(pair.sample_p(N_MC, rng=rng))
    elif kind == "rkl":  # KL(Q||P) = E_q[-log r]
        values = -pair.log_ratio(pair.sample_q(N_MC, rng=rng))
    elif kind == "pearson":  # chi^2 = E_q[(r - 1)^2]
        values = np.expm1(pair.log_ratio(pair.sample_q(N_MC, rng=rng))) ** 2
    else:  # H^2 = 1 - E_p[sqrt(q/p)]; q/p is bounded for the t pair, unlike p/q under Q
        values = -np.expm1(-0.5 * pair.log_ratio(pair.sample_p(N_MC, rng=rng)))
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(N_MC))


# Each case has a finite fourth moment of its summand: GaussianShift has a log-normal ratio;
# ScaleChange(0.8) has p/q <= 0.8^-2 under Q; CorrelatedGaussian(rho=0.2) has
# E_q[r^m] < inf for m < (1 + rho) / rho = 6; PAIR_3D see above; StudentTGaussian(df=10)
# has E_p||X||^4 < inf (df > 4) and a bounded q/p (its Pearson divergence is inf: not checked).
MC_CASES = [
    *((GaussianShift(dim=3, shift=0.5), kind) for kind in DIVERGENCES),
    *((ScaleChange(dim=2, scale=0.8), kind) for kind in DIVERGENCES),
    *((CorrelatedGaussian(dim=4, rho=0.2), kind) for kind in (*DIVERGENCES, "mi")),
    *((PAIR_3D, kind) for kind in DIVERGENCES),
    *((StudentTGaussian(dim=3, df=10.0), kind) for kind in ("kl", "rkl", "hellinger")),
]


@pytest.mark.parametrize(("pair", "kind"), MC_CASES, ids=lambda v: getattr(v, "name", v))
def test_closed_form_against_monte_carlo(pair, kind):
    exact = pair.mutual_information() if kind == "mi" else pair.divergence(kind)
    estimate, se = _mc(pair, kind, seed=12345)
    assert math.isfinite(exact) and exact >= 0
    assert abs(estimate - exact) < N_SE * se, (estimate, exact, se)


@pytest.mark.parametrize(
    ("pair", "expected"),
    [
        # Textbook formulas for the special cases, written out independently of GaussianPair.
        (GaussianShift(dim=4, shift=1.3), (1.3**2 / 2, 1.3**2 / 2, math.expm1(1.3**2))),
        (
            ScaleChange(dim=3, scale=1.2),
            (
                1.5 * (1.44 - 1 - math.log(1.44)),
                1.5 * (1 / 1.44 - 1 + math.log(1.44)),
                (1.44 * (2 - 1.44)) ** -1.5 - 1,
            ),
        ),
        (CorrelatedGaussian(dim=6, rho=-0.6), (-1.5 * math.log(1 - 0.36), None, None)),
    ],
    ids=["shift", "scale", "correlated"],
)
def test_gaussian_special_cases(pair, expected):
    kl_pq, kl_qp, pearson = expected
    assert pair.kl_pq() == pytest.approx(kl_pq, rel=1e-12)
    if kl_qp is not None:
        assert pair.kl_qp() == pytest.approx(kl_qp, rel=1e-12)
        assert pair.pearson() == pytest.approx(pearson, rel=1e-12)


def test_hellinger_special_cases():
    # H^2 = 1 - exp(-||mu||^2 / 8) for a shift; 1 - (2 s / (1 + s^2))^(d / 2) for a scale.
    assert GaussianShift(dim=2, shift=2.0).hellinger2() == pytest.approx(-math.expm1(-0.5))
    expected = 1 - (2 * 1.5 / (1 + 1.5**2)) ** 1.5
    assert ScaleChange(dim=3, scale=1.5).hellinger2() == pytest.approx(expected, rel=1e-12)


def test_mutual_information_formula():
    pair = CorrelatedGaussian(dim=4, rho=0.5)  # two pairs: MI = -(2 / 2) log(1 - rho^2)
    assert pair.mutual_information() == pytest.approx(-math.log(0.75), rel=1e-12)
    assert pair.mutual_information() == pair.kl_pq()


@pytest.mark.parametrize(
    "pair",
    [
        ScaleChange(scale=2.0),  # s^2 = 4 >= 2
        ScaleChange(dim=2, scale=math.sqrt(2.0)),  # the boundary itself diverges
        GaussianPair(
            mean_p=[0.0, 0.0], cov_p=np.diag([3.0, 0.5]), mean_q=[1.0, 0.0], cov_q=np.eye(2)
        ),
        StudentTGaussian(dim=2, df=30.0),  # heavier tails than Q, whatever df
    ],
)
def test_pearson_diverges(pair):
    assert pair.pearson() == math.inf
    assert pair.divergence("pearson") == math.inf


def test_student_t_against_references():
    # Reference: 1-D integrals over the real line with scipy.stats densities, independent of
    # the radial reduction used by StudentTGaussian; quad's own error is about 1e-8.
    t, norm = stats.t(3.0), stats.norm()
    kl_pq = integrate.quad(lambda x: t.pdf(x) * (t.logpdf(x) - norm.logpdf(x)), -np.inf, np.inf)
    kl_qp = integrate.quad(lambda x: norm.pdf(x) * (norm.logpdf(x) - t.logpdf(x)), -np.inf, np.inf)
    bc = integrate.quad(lambda x: np.sqrt(t.pdf(x) * norm.pdf(x)), -np.inf, np.inf)
    pair = StudentTGaussian(dim=1, df=3.0)
    assert pair.kl_pq() == pytest.approx(kl_pq[0], abs=1e-7)
    assert pair.kl_qp() == pytest.approx(kl_qp[0], abs=1e-7)
    assert pair.hellinger2() == pytest.approx(1 - bc[0], abs=1e-7)
    assert StudentTGaussian(df=2.0).kl_pq() == math.inf  # no second moment under P
    # KL(P||Q) = -H(P) + (d / 2) log(2 pi) + E_p||X||^2 / 2 with SciPy's entropy of the t
    # and E_p||X||^2 = d df / (df - 2).
    entropy = stats.multivariate_t(np.zeros(3), np.eye(3), df=5.0).entropy()
    expected = -entropy + 1.5 * math.log(2 * math.pi) + 1.5 * 5.0 / 3.0
    assert StudentTGaussian(dim=3, df=5.0).kl_pq() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("cls", [GaussianMixture, GaussianBlobs])
@pytest.mark.parametrize("kind", DIVERGENCES)
def test_no_closed_form_raises(cls, kind):
    with pytest.raises(NotImplementedError, match="no closed form"):
        cls().divergence(kind)


def test_divergence_dispatch():
    pair = GaussianPair(mean_p=0.5, cov_p=2.0, mean_q=0.0, cov_q=1.5)
    assert pair.divergence("kl") == pair.kl_pq()
    assert pair.divergence("rkl") == pair.kl_qp()
    assert pair.divergence("pearson") == pair.pearson()
    assert pair.divergence("hellinger") == pair.hellinger2()
    assert 0 <= pair.hellinger2() <= 1
    with pytest.raises(ValueError, match="`kind` must be one of"):
        pair.divergence("js")


# ----------------------------------------------------------------------------- densities

ONE_D = [
    GaussianShift(),
    ScaleChange(scale=0.7),
    GaussianPair(mean_p=-1.0, cov_p=0.5, mean_q=2.0, cov_q=3.0),
    GaussianMixture(),
    GaussianMixture(weights_p=(0.2, 0.3, 0.5), means_p=(-5, 0, 4), covs_p=(0.3, 1, 2)),
    StudentTGaussian(df=1.5),
]


@pytest.mark.parametrize("pair", ONE_D, ids=lambda p: p.name)
@pytest.mark.parametrize("which", ["p", "q"])
def test_density_integrates_to_one(pair, which):
    log_density = getattr(pair, f"log_{which}")

    def density(x):
        return float(np.exp(log_density(np.array([x])))[0])

    # Split at 0 so quad sees each mode; quad's error estimate is far below the 1e-6 asked.
    total = sum(
        integrate.quad(density, a, b, limit=200)[0] for a, b in [(-np.inf, 0), (0, np.inf)]
    )
    assert total == pytest.approx(1.0, abs=1e-6)


def _mixture_reference(weights, means, covs):
    def log_pdf(x):
        pdfs = [
            stats.multivariate_normal(m, c).logpdf(x) for m, c in zip(means, covs, strict=True)
        ]
        return special.logsumexp(np.stack(pdfs) + np.log(weights)[:, None], axis=0)

    return log_pdf


BLOB_CENTRES = [(10.0 * i, 10.0 * j) for i in range(3) for j in range(3)]
R_BLOBS = 5.0 / 7.0  # (epsilon - 1) / (epsilon + 1) for epsilon = 6
DENSITY_REFERENCES = [
    (PAIR_3D, "p", stats.multivariate_normal(PAIR_3D.mean_p, PAIR_3D.cov_p).logpdf),
    (PAIR_3D, "q", stats.multivariate_normal(PAIR_3D.mean_q, PAIR_3D.cov_q).logpdf),
    (CorrelatedGaussian(dim=4, rho=0.3), "q", stats.multivariate_normal(np.zeros(4)).logpdf),
    (
        GaussianMixture(),
        "p",
        _mixture_reference([0.5, 0.5], [[-2.0], [2.0]], [np.eye(1), np.eye(1)]),
    ),
    (
        GaussianBlobs(),
        "q",
        _mixture_reference(np.full(9, 1 / 9), BLOB_CENTRES, [[[1, R_BLOBS], [R_BLOBS, 1]]] * 9),
    ),
    (GaussianBlobs(), "p", _mixture_reference(np.full(9, 1 / 9), BLOB_CENTRES, [np.eye(2)] * 9)),
    (
        StudentTGaussian(dim=3, df=4.0),
        "p",
        stats.multivariate_t(loc=np.zeros(3), shape=np.eye(3), df=4.0).logpdf,
    ),
    (StudentTGaussian(dim=3, df=4.0), "q", stats.multivariate_normal(np.zeros(3)).logpdf),
]


@pytest.mark.parametrize(("pair", "which", "reference"), DENSITY_REFERENCES)
def test_log_density_matches_scipy(pair, which, reference):
    rng = np.random.default_rng(3)
    x = np.concatenate([pair.sample_p(20, rng=rng), pair.sample_q(20, rng=rng)])
    np.testing.assert_allclose(getattr(pair, f"log_{which}")(x), reference(x), rtol=1e-10)


def test_log_ratio_is_difference_of_log_densities():
    for name in PROBLEMS:
        pair = make_problem(name)
        x = pair.sample_q(50, rng=0)
        np.testing.assert_array_equal(pair.log_ratio(x), pair.log_p(x) - pair.log_q(x))


# ----------------------------------------------------------------------------- sampling

# (pair, which, exact mean, exact covariance), computed by hand:
# mixture: mean sum w m, covariance sum w (S + m m') - mean mean';
# blobs: centre coordinates uniform on {0, 10, 20}, variance 100 * 2/3, plus the blob's own;
# Student t: covariance df / (df - 2) I.
V_GRID = 1 + 200 / 3
MOMENT_CASES = [
    (GaussianShift(dim=2, shift=1.5), "p", np.full(2, 1.5 / math.sqrt(2)), np.eye(2)),
    (ScaleChange(dim=2, scale=2.0), "p", np.zeros(2), 4 * np.eye(2)),
    (PAIR_3D, "p", PAIR_3D.mean_p, PAIR_3D.cov_p),
    (PAIR_3D, "q", PAIR_3D.mean_q, PAIR_3D.cov_q),
    (
        CorrelatedGaussian(dim=4, rho=0.5),
        "p",
        np.zeros(4),
        np.block([[np.eye(2), 0.5 * np.eye(2)], [0.5 * np.eye(2), np.eye(2)]]),
    ),
    (
        GaussianMixture(weights_p=(0.3, 0.7), means_p=(-2, 2), covs_p=(1.0, 0.25)),
        "p",
        np.array([0.8]),
        np.array([[0.3 * 5 + 0.7 * 4.25 - 0.64]]),
    ),
    (GaussianMixture(), "q", np.zeros(1), np.array([[4.0]])),
    (StudentTGaussian(dim=2, df=10.0), "p", np.zeros(2), 1.25 * np.eye(2)),
    (StudentTGaussian(dim=2, df=10.0), "q", np.zeros(2), np.eye(2)),
    (GaussianBlobs(), "p", np.full(2, 10.0), V_GRID * np.eye(2)),
    (GaussianBlobs(), "q", np.full(2, 10.0), [[V_GRID, R_BLOBS], [R_BLOBS, V_GRID]]),
]


@pytest.mark.parametrize(("pair", "which", "mean", "cov"), MOMENT_CASES)
def test_sample_moments(pair, which, mean, cov):
    x = getattr(pair, f"sample_{which}")(N_MC, rng=7)
    assert x.shape == (N_MC, pair.dim) and x.dtype == np.float64
    # Each sample mean within 5 se of the exact mean, se = std / sqrt(n).
    se_mean = x.std(axis=0, ddof=1) / math.sqrt(N_MC)
    assert np.all(np.abs(x.mean(axis=0) - mean) < N_SE * se_mean)
    # Each covariance entry is a mean of products of centred coordinates: same rule.
    centred = x - x.mean(axis=0)
    products = centred[:, :, None] * centred[:, None, :]
    se_cov = products.std(axis=0, ddof=1) / math.sqrt(N_MC)
    assert np.all(np.abs(products.mean(axis=0) - np.asarray(cov)) < N_SE * se_cov)


def test_blob_shapes():
    # Offsets from the nearest centre; with spacing 30 a point lands nearer another centre
    # with probability below 1e-15, so the offsets are draws from one blob.
    pair = GaussianBlobs(spacing=30.0, epsilon=3.0)
    r = (3.0 - 1) / (3.0 + 1)
    for which, cov in [("p", np.eye(2)), ("q", np.array([[1, r], [r, 1]]))]:
        x = getattr(pair, f"sample_{which}")(N_MC, rng=11)
        offsets = x - 30.0 * np.round(x / 30.0)
        products = offsets[:, :, None] * offsets[:, None, :]  # the blob mean is 0
        se = products.std(axis=0, ddof=1) / math.sqrt(N_MC)
        assert np.all(np.abs(products.mean(axis=0) - cov) < N_SE * se)
        assert set(np.round(x / 30.0).ravel().tolist()) == {0.0, 1.0, 2.0}


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_samples_reproducible(name):
    pair = make_problem(name)
    for sample in (pair.sample_p, pair.sample_q):
        np.testing.assert_array_equal(sample(100, rng=5), sample(100, rng=5))
        assert not np.array_equal(sample(100, rng=5), sample(100, rng=6))
        gen = np.random.default_rng(5)
        np.testing.assert_array_equal(sample(100, rng=gen), sample(100, rng=5))
        assert not np.array_equal(sample(100, rng=gen), sample(100, rng=5))  # gen advanced


# ----------------------------------------------------------------------------- inputs


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_registry_defaults(name):
    pair = make_problem(name)
    assert isinstance(pair, PROBLEMS[name]) and pair.name == name
    x = pair.sample_p(10, rng=0)
    assert x.shape == (10, pair.dim)
    for fn in (pair.log_p, pair.log_q, pair.log_ratio):
        out = fn(x)
        assert out.shape == (10,) and out.dtype == np.float64 and np.isfinite(out).all()


def test_make_problem_params_and_unknown_name():
    assert make_problem("student_t", dim=2, df=5.0) == StudentTGaussian(dim=2, df=5.0)
    with pytest.raises(ValueError, match=r"`problem` must be one of \['blobs', .*got 'nope'\."):
        make_problem("nope")
    with pytest.raises(TypeError):
        make_problem("gaussian_shift", shfit=1.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_ratio_torch_input(dtype):
    pair = PAIR_3D
    x = torch.as_tensor(pair.sample_q(30, rng=1), dtype=dtype)
    out = pair.log_ratio(x)
    assert isinstance(out, torch.Tensor) and out.dtype == dtype and out.shape == (30,)
    expected = pair.log_ratio(x.double().numpy())  # float64 evaluation of the same points
    np.testing.assert_allclose(
        out.double().numpy(), expected, rtol=1e-6 if dtype == torch.float32 else 0
    )
    assert isinstance(pair.log_p(x), torch.Tensor) and isinstance(pair.log_q(x), torch.Tensor)


def test_one_dimensional_input():
    pair = StudentTGaussian()
    x = pair.sample_p(20, rng=2)
    np.testing.assert_array_equal(pair.log_ratio(x[:, 0]), pair.log_ratio(x))
    np.testing.assert_array_equal(
        pair.log_ratio(torch.from_numpy(x[:, 0])).numpy(), pair.log_ratio(x)
    )
    with pytest.raises(ValueError, match=r"`x` must have 2 features"):
        GaussianBlobs().log_ratio(np.zeros(5))
    with pytest.raises(ValueError, match="`x` must hold finite values"):
        pair.log_ratio([np.nan])


@settings(deadline=None, max_examples=25)
@given(data=st.data(), name=st.sampled_from(sorted(PROBLEMS)))
def test_log_ratio_rowwise_and_order_invariant(data, name):
    pair = make_problem(name)
    n = data.draw(st.integers(1, 12))
    x = data.draw(hnp.arrays(np.float64, (n, pair.dim), elements=st.floats(-40, 40)))
    perm = data.draw(st.permutations(range(n)))
    batch = pair.log_ratio(x)
    assert np.isfinite(batch).all()
    rows = np.concatenate([pair.log_ratio(x[i : i + 1]) for i in range(n)])
    np.testing.assert_allclose(rows, batch, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        pair.log_ratio(x[list(perm)]), batch[list(perm)], rtol=1e-12, atol=1e-12
    )


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: GaussianShift(dim=0), "`dim` must be an integer >= 1"),
        (lambda: GaussianShift(shift=math.inf), "`shift` must be a finite real number"),
        (lambda: ScaleChange(scale=0.0), "`scale` must be a positive real number"),
        (lambda: ScaleChange(scale=-2.0), "`scale` must be a positive real number"),
        (lambda: CorrelatedGaussian(dim=3), "`dim` must be an even integer"),
        (lambda: CorrelatedGaussian(rho=1.0), r"`rho` must be a real number in \(-1, 1\)"),
        (lambda: StudentTGaussian(df=0.0), "`df` must be a positive real number"),
        (lambda: StudentTGaussian(dim=0), "`dim` must be an integer >= 1"),
        (lambda: GaussianBlobs(grid=0), "`grid` must be an integer >= 1"),
        (lambda: GaussianBlobs(spacing=-1.0), "`spacing` must be a positive real number"),
        (lambda: GaussianBlobs(epsilon=0.0), "`epsilon` must be a positive real number"),
        (lambda: GaussianPair(mean_p=[[0.0]]), r"`mean_p` must be a 1-D array"),
        (lambda: GaussianPair(mean_p=[0.0, np.nan]), "`mean_p` must hold finite values"),
        (lambda: GaussianPair(mean_p=[0.0, 0.0]), r"`cov_p` must have shape \(2, 2\)"),
        (lambda: GaussianPair(mean_q=[0.0, 0.0]), r"`mean_q` must have shape \(1,\)"),
        (lambda: GaussianPair(cov_q=-1.0), "`cov_q` must be symmetric positive definite"),
        (
            lambda: GaussianPair(
                mean_p=[0, 0], cov_p=[[1, 0.5], [0, 1]], mean_q=[0, 0], cov_q=np.eye(2)
            ),
            "`cov_p` must be symmetric positive definite",
        ),
        (
            lambda: GaussianPair(
                mean_p=[0, 0], cov_p=[[1, 2], [2, 1]], mean_q=[0, 0], cov_q=np.eye(2)
            ),
            "`cov_p` must be symmetric positive definite; got an eigenvalue -1",
        ),
        (lambda: GaussianMixture(weights_p=(0.5, 0.6)), "`weights_p` must be 1-D, positive"),
        (
            lambda: GaussianMixture(weights_q=(1.5, -0.5), means_q=(0, 1), covs_q=(1, 1)),
            "`weights_q`",
        ),
        (lambda: GaussianMixture(means_p=(0.0, 1.0, 2.0)), r"`means_p` must have shape \(2, d\)"),
        (
            lambda: GaussianMixture(covs_p=(1.0, 0.0)),
            "`covs_p` must be symmetric positive definite",
        ),
        (lambda: GaussianMixture(covs_q=(1.0, 2.0)), r"`covs_q` must have shape \(1, 1, 1\)"),
        (
            lambda: GaussianMixture(means_q=[[0.0, 0.0]], covs_q=(1.0,)),
            "`means_p` and `means_q` must have the same number of columns",
        ),
        (lambda: GaussianShift().sample_p(0), "`n` must be an integer >= 1"),
        (lambda: GaussianShift().sample_q(5, rng=-1), "`rng` must be a non-negative integer"),
    ],
)
def test_bad_parameters_raise(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_bad_types_raise():
    with pytest.raises(TypeError, match="`dim` must be an integer"):
        GaussianShift(dim=1.5)
    with pytest.raises(TypeError, match="`shift` must be a real number"):
        GaussianShift(shift="1")
    with pytest.raises(TypeError, match="`n` must be an integer"):
        ScaleChange().sample_p(2.0)


def test_pairs_are_frozen():
    pair = GaussianShift(dim=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        pair.shift = 3.0
    with pytest.raises(ValueError, match="read-only"):
        pair.mean_p[0] = 5.0
    mixture = GaussianMixture()
    with pytest.raises(ValueError, match="read-only"):
        mixture.weights_p[0] = 1.0


# ----------------------------------------------------------------------------- Liu et al.'s pairs


@pytest.mark.parametrize("covariance", ["code", "paper"])
def test_correlated_blobs_against_construction(covariance):
    # Blob variance 0.003 (the construction is scale-covariant: shear scaled with it), so a
    # point's offset from its centre exceeds 0.5 (nearer another centre) only beyond 7.6
    # standard deviations (probability < 1e-13): the offsets are draws from one blob.
    pair = CorrelatedBlobs(variance=0.003, shear=0.002, covariance=covariance)
    assert pair.shears()[[0, 3, 4, 5, 8]].tolist() == pytest.approx(
        [-0.002, -0.0026, 0.0, 0.002, 0.0026]
    )
    for which in "pq":
        x = getattr(pair, f"sample_{which}")(N_MC, rng=21)
        centre = np.round(x)
        blob = (3 * centre[:, 0] + centre[:, 1]).astype(int)
        # Equal weights: each blob's count is Binomial(N_MC, 1/9), within 5 sd of N_MC / 9.
        counts = np.bincount(blob, minlength=9)
        assert np.all(np.abs(counts - N_MC / 9) < N_SE * math.sqrt(N_MC * 8 / 81))
        for i in range(9):
            c = pair.shears()[i] if which == "q" else 0.0
            v = 0.003
            if covariance == "code":  # L^T L with L = chol([[v, c], [c, v]])
                cov = [[v + c * c / v, c * math.sqrt(1 - c * c / v**2)], [0, v - c * c / v]]
                cov[1][0] = cov[0][1]
            else:
                cov = [[v, c], [c, v]]
            offsets = x[blob == i] - centre[blob == i]
            products = offsets[:, :, None] * offsets[:, None, :]  # the blob mean is 0
            se = products.std(axis=0, ddof=1) / math.sqrt(len(offsets))
            assert np.all(np.abs(products.mean(axis=0) - np.asarray(cov)) < N_SE * se)


def test_hdgm_against_construction():
    # gap 30 in d = 3: the components' means are 52 apart, so a point belongs to the second
    # component exactly when its coordinate sum exceeds 45 (misassignment < 1e-50).
    pair = HighDimGaussianMixture(dim=3, gap=30.0, correlation=0.5)
    for which in "pq":
        x = getattr(pair, f"sample_{which}")(N_MC, rng=22)
        second = x.sum(axis=1) > 45.0
        assert abs(second.sum() - N_MC / 2) < N_SE * math.sqrt(N_MC / 4)  # Binomial(N, 1/2)
        for k, part in enumerate((x[~second], x[second])):
            cov = np.eye(3)
            if which == "q":
                cov[0, 1] = cov[1, 0] = 0.5 if k == 0 else -0.5
            centred = part - 30.0 * k
            assert np.all(
                np.abs(centred.mean(axis=0)) < N_SE * centred.std(axis=0) / math.sqrt(len(part))
            )
            products = centred[:, :, None] * centred[:, None, :]
            se = products.std(axis=0, ddof=1) / math.sqrt(len(part))
            assert np.all(np.abs(products.mean(axis=0) - cov) < N_SE * se)


def test_hdgm_log_density_matches_scipy():
    pair = HighDimGaussianMixture()
    x = np.concatenate([pair.sample_p(20, rng=0), pair.sample_q(20, rng=1)])
    s_plus, s_minus = np.eye(10), np.eye(10)
    s_plus[0, 1] = s_plus[1, 0] = 0.5
    s_minus[0, 1] = s_minus[1, 0] = -0.5
    shifted = np.full(10, 0.5)
    dens_q = 0.5 * stats.multivariate_normal(np.zeros(10), s_plus).pdf(x) + 0.5 * (
        stats.multivariate_normal(shifted, s_minus).pdf(x)
    )
    np.testing.assert_allclose(pair.log_q(x), np.log(dens_q), rtol=1e-10)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: CorrelatedBlobs(shear=0.024), r"`shear` must be in \[0, variance / 1.3\)"),
        (lambda: CorrelatedBlobs(shear=-0.01), r"`shear` must be in"),
        (lambda: CorrelatedBlobs(covariance="exact"), "`covariance` must be one of"),
        (lambda: HighDimGaussianMixture(dim=1), "`dim` must be an integer >= 2"),
        (lambda: HighDimGaussianMixture(correlation=1.0), r"`correlation` must be in \(-1, 1\)"),
    ],
)
def test_liu_pairs_bad_parameters(build, match):
    with pytest.raises(ValueError, match=match):
        build()
