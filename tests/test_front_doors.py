"""Every registered method at every front door: it works, or it says why not.

One row of :data:`SMALL` per name of :data:`ratiokit.methods.METHODS` (small settings, so the
whole file runs in seconds), crossed with the front doors: :func:`ratiokit.two_sample_test`,
:func:`ratiokit.discrepancy`, :func:`ratiokit.divergence` (every kind),
:func:`ratiokit.estimate_ratio` and :func:`ratiokit.fit` (a NumPy simulator, gradient-free
search). A door a method cannot use raises a ValueError that names the method and the reason.

The samples: P = N(mu, I) and Q = N(0, I) in 2-D with mu = (1, 1), so the true log ratio is
``log p/q (x) = mu.x - |mu|^2 / 2`` and KL(P||Q) = |mu|^2 / 2 = 1.
"""

import copy
import math

import numpy as np
import pytest
import torch
from scipy import stats

import ratiokit as rk
from ratiokit.methods import (
    KLIEP,
    METHODS,
    MMD,
    ULSIF,
    Classifier,
    DeepKernelMMD,
    EnergyDistance,
    FDivergence,
    KernelMeanMatching,
    MMDAgg,
    MomentMatching,
    NeuralBregman,
    OptimizedMMD,
    RandomFeatureMMD,
    RuLSIF,
    Wasserstein,
)
from ratiokit.ratio import KINDS

#: Small settings of every registered method: networks of 8 units trained for at most 100
#: steps (early stopping ends them sooner), kernel collections of 3 bandwidths, 20 basis
#: centres; moment matching with a small ridge ``l2``, so that its exponential tilt exists
#: when P's mean statistics lie outside the convex hull of Q's sample.
NET = {"hidden": (8,), "max_steps": 100, "batch_size": 64, "patience": 10}
SMALL = {
    "bregman": lambda: NeuralBregman(**NET),
    "classifier": lambda: Classifier(**NET),
    "energy": EnergyDistance,
    "fdiv": lambda: FDivergence(**NET),
    "kliep": lambda: KLIEP(n_centres=20, n_folds=2),
    "kmm": KernelMeanMatching,
    "mmd": MMD,
    "mmd_deep": lambda: DeepKernelMMD(hidden=(8,), n_features=4, max_steps=10),
    "mmd_opt": lambda: OptimizedMMD(n_bandwidths=3),
    "mmd_rff": lambda: RandomFeatureMMD(n_features=32),
    "mmdagg": lambda: MMDAgg(n_bandwidths=3),
    "moments": lambda: MomentMatching(l2=0.01),
    "rulsif": lambda: RuLSIF(n_centres=20),
    "ulsif": lambda: ULSIF(n_centres=20),
    "wasserstein": lambda: Wasserstein(**NET),
}
NAMES = sorted(METHODS)
MU = np.array([1.0, 1.0])
N = 100


def samples(seed):
    """(x_p, x_q, a second sample of Q) of N rows each."""
    gen = np.random.default_rng(seed)
    return gen.normal(MU, 1.0, size=(N, 2)), gen.normal(size=(N, 2)), gen.normal(size=(N, 2))


def true_log_ratio(x):
    return x @ MU - MU @ MU / 2


def test_every_registered_method_has_small_settings():
    # A new method gets a row here, so every front door is tried on it.
    assert sorted(SMALL) == NAMES
    for name in NAMES:
        assert type(SMALL[name]()) is METHODS[name]


@pytest.mark.filterwarnings("ignore:MMDAgg over:UserWarning")  # few relabellings on purpose
@pytest.mark.parametrize("name", NAMES)
def test_two_sample_test(name):
    # P vs Q: the smallest p-value 19 relabellings allow for a mean shift of 1.4 standard
    # deviations; Q vs Q: a smaller statistic (the same seed for the split and relabellings).
    x_p, x_q, x_q2 = samples(0)
    shifted = rk.two_sample_test(x_p, x_q, method=SMALL[name](), n_permutations=19, rng=0)
    same = rk.two_sample_test(x_q2, x_q, method=SMALL[name](), n_permutations=19, rng=0)
    assert shifted.method == name
    assert math.isfinite(shifted.statistic) and math.isfinite(same.statistic)
    assert shifted.pvalue == pytest.approx(1 / 20)
    assert shifted.statistic > same.statistic


@pytest.mark.parametrize("name", NAMES)
def test_discrepancy(name):
    x_p, x_q, x_q2 = samples(1)
    shifted = rk.discrepancy(x_p, x_q, method=SMALL[name](), rng=0)
    same = rk.discrepancy(x_q2, x_q, method=SMALL[name](), rng=0)
    assert math.isfinite(shifted) and math.isfinite(same)
    assert shifted > same


@pytest.mark.parametrize("name", NAMES)
def test_divergence_of_every_kind_or_why_not(name):
    # Every kind is finite; the KL (truth 1) lies within a factor of 5 of the truth even for a
    # small critic on 100 points. (Plug-ins of other kinds can be biased below 0 at this n:
    # uLSIF's squared Hellinger distance, truth 0.22, is -0.01 here.)
    x_p, x_q, _ = samples(2)
    cls = METHODS[name]
    for kind in KINDS:
        able = kind in cls.divergence_kinds or (cls.has_log_ratio and cls.ratio_anywhere)
        if not able:
            with pytest.raises(ValueError, match=rf"able to estimate '{kind}'.*got '{name}'"):
                rk.divergence(x_p, x_q, kind=kind, method=SMALL[name](), rng=0)
            continue
        value = rk.divergence(x_p, x_q, kind=kind, method=SMALL[name](), rng=0).value
        assert math.isfinite(value), (kind, value)
        if kind == "kl":
            assert 0.2 < value < 5.0


@pytest.mark.parametrize("name", NAMES)
def test_estimate_ratio_or_why_not(name):
    x_p, x_q, _ = samples(3)
    cls = METHODS[name]
    if not cls.has_log_ratio:
        with pytest.raises(ValueError, match=rf"must be a ratio method.*got '{name}'"):
            rk.estimate_ratio(x_p, x_q, method=SMALL[name](), rng=0)
        return
    est = rk.estimate_ratio(x_p, x_q, method=SMALL[name](), rng=0)
    if cls.ratio_anywhere:
        # The estimate follows the true log ratio: a rank correlation above 0.5 over the
        # pooled points (0.76 for KLIEP to 0.99 for the classifier here).
        points = np.concatenate([x_p, x_q])
        log_r = np.asarray(est.log_ratio(points))
        assert log_r.shape == (2 * N,) and np.isfinite(log_r).all()
        assert stats.spearmanr(log_r, true_log_ratio(points)).statistic > 0.5
        return
    # KMM's ratio exists only at the fitted Q sample: sparse weights (many exactly 0, so
    # log r = -20 there, tied) that correlate with the true ratio (0.77 here).
    log_r = np.asarray(est.log_ratio(x_q))
    assert log_r.shape == (N,) and np.isfinite(log_r).all()
    assert np.corrcoef(np.exp(log_r), np.exp(true_log_ratio(x_q)))[0, 1] > 0.5
    with pytest.raises(ValueError, match="kernel mean matching gives weights on that sample"):
        est.log_ratio(x_p)


def location_simulator(theta, n, rng):
    """N(theta, 1) in 1-D."""
    return np.random.default_rng(rng).normal(theta[0], 1.0, size=(n, 1))


@pytest.mark.filterwarnings("ignore::ratiokit.ConvergenceWarning")  # a tiny budget on purpose
@pytest.mark.parametrize("name", NAMES)
def test_fit_a_numpy_simulator_by_search(name):
    # Data from N(0.5, 1), n = 60: the sample mean's standard error is 0.13, and a search of
    # 12 evaluations of a noisy objective lands within 0.75 (6 standard errors) of 0.5.
    data = np.random.default_rng(4).normal(0.5, 1.0, size=(60, 1))
    res = rk.fit(
        location_simulator,
        data,
        method=SMALL[name](),
        theta0=[0.0],
        bounds=[(-3.0, 3.0)],
        kind="numpy",
        config=rk.SearchConfig(n_sim=60, max_evaluations=12),
        rng=0,
    )
    assert res.method == name
    assert abs(float(res.theta[0]) - 0.5) < 0.75


@pytest.mark.parametrize("name", ["classifier", "mmd_opt", "ulsif"])
def test_front_doors_never_modify_the_given_instance(name):
    # Every door fits a copy: the instance keeps its unfitted attributes (``name_``, None or
    # absent before a fit) and its parameters.
    x_p, x_q, _ = samples(5)
    method = SMALL[name]()
    fitted = copy.deepcopy(
        {k: v for k, v in vars(method).items() if k.endswith("_") and not k.startswith("_")}
    )
    state = {k: v.clone() for k, v in method.state_dict().items()}
    rk.discrepancy(x_p, x_q, method=method, rng=0)
    rk.two_sample_test(x_p, x_q, method=method, n_permutations=9, rng=0)
    if METHODS[name].has_log_ratio:
        rk.estimate_ratio(x_p, x_q, method=method, rng=0)
    after = {k: v for k, v in vars(method).items() if k.endswith("_") and not k.startswith("_")}
    assert after == fitted  # None and empty lists, as before
    assert method.state_dict().keys() == state.keys()
    assert all(torch.equal(v, state[k]) for k, v in method.state_dict().items())
