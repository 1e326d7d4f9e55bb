"""``two_sample_test(method="moments")`` is Hotelling's T^2 on the means, as the docs present it.

Issue 19, item 5: the name used to build the default ``MomentMatching()``, whose ``"mean_cov"``
statistics number d + d (d + 1) / 2 = 104 for 13 features, so 35 + 36 rows were refused (the
F law needs more than k + 1 rows). (A new file rather than a hunk in test_two_sample.py, which
another part of the work was editing at the same time.)
"""

from __future__ import annotations

import numpy as np
from scipy import stats

import ratiokit as rk
from ratiokit.methods import METHODS, MMD, MomentMatching


def hotelling_numpy(x, y):
    """Two-sample Hotelling T^2 and its F-test p-value, straight from the textbook formula.

    ``T^2 = (n m / (n + m)) d' S^-1 d`` with ``d`` the difference of the means and ``S`` the
    pooled covariance ``((n - 1) S_x + (m - 1) S_y) / (n + m - 2)``;
    ``F = (n + m - k - 1) / (k (n + m - 2)) T^2 ~ F(k, n + m - k - 1)`` under H0.
    """
    n, m, k = len(x), len(y), x.shape[1]
    d = x.mean(0) - y.mean(0)
    s = ((n - 1) * np.cov(x, rowvar=False) + (m - 1) * np.cov(y, rowvar=False)) / (n + m - 2)
    t2 = n * m / (n + m) * d @ np.linalg.solve(s, d)
    f = (n + m - k - 1) / (k * (n + m - 2)) * t2
    return t2, stats.f.sf(f, k, n + m - k - 1)


def test_moments_test_is_hotelling_on_the_means_and_runs_on_35_plus_36_rows():
    gen = np.random.default_rng(0)
    x = gen.normal(size=(35, 13))
    y = gen.normal(0.3, 1.0, size=(36, 13)) @ gen.normal(size=(13, 13))  # correlated features
    res = rk.two_sample_test(x, y, method="moments", n_permutations=199, rng=0)
    t2, f_pvalue = hotelling_numpy(x, y)
    # The method adds ridge * tr(S) / k = 1e-8 tr(S) / k to S's diagonal, which changes T^2
    # relatively by about 1e-8 times the condition number of S (96 here), and the F tail
    # by that times F |d log sf / dF| (a few units here): rtol 1e-4 leaves a wide margin.
    np.testing.assert_allclose(res.statistic, t2, rtol=1e-4)
    np.testing.assert_allclose(res.details["f_pvalue"], f_pvalue, rtol=1e-4)
    assert (res.details["df1"], res.details["df2"]) == (13, 35 + 36 - 13 - 1)
    assert res.null_distribution.shape == (199,)


def test_only_moments_changes_its_instance_for_the_test():
    assert MomentMatching.for_two_sample_test().get_params(deep=False) == (
        MomentMatching("mean").get_params(deep=False)
    )
    for name, cls in METHODS.items():
        if name != "moments":
            assert repr(cls.for_two_sample_test()) == repr(cls())
    # an instance is used as given: "mean_cov" still tests first and second moments
    gen = np.random.default_rng(1)
    x, y = gen.normal(size=(60, 2)), gen.normal(size=(60, 2))
    res = rk.two_sample_test(x, y, method=MomentMatching(), n_permutations=99, rng=0)
    assert res.details["df1"] == 5  # 2 means + 3 second moments
    assert isinstance(MMD.for_two_sample_test(), MMD)
