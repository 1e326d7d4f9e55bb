"""
Estimating a density ratio
==========================

Front door 1: :func:`ratiokit.estimate_ratio` fits ``r(x) = p(x) / q(x)`` from a sample of P
and a sample of Q, and :func:`ratiokit.divergence` turns a fitted ratio into a divergence.
The pairs in :mod:`ratiokit.synthetic` know their exact log-ratio and divergences, so every
estimate below is drawn or printed beside the truth.
"""

# %%
# A bimodal ratio
# ---------------
# P is an equal mixture of N(-2, 1) and N(2, 1); Q is N(0, 2^2). The ratio is large near
# the two modes of P and small between them and in the tails. We draw 1,000 points from
# each and fit three estimators of different families: uLSIF (least-squares fit of a
# kernel model), KLIEP (maximum likelihood of the same model) and a classifier (a small
# neural network telling P's points from Q's, whose log-odds are the log-ratio).
import matplotlib.pyplot as plt
import numpy as np

import ratiokit as rk
from ratiokit.synthetic import GaussianMixture, GaussianShift

pair = GaussianMixture()
x_p = pair.sample_p(1000, rng=0)
x_q = pair.sample_q(1000, rng=1)

grid = np.linspace(-6, 6, 241)[:, None]
fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(grid[:, 0], pair.log_ratio(grid), "k", lw=3, label="exact")
for method in ["ulsif", "kliep", "classifier"]:
    est = rk.estimate_ratio(x_p, x_q, method=method, rng=0)
    ax.plot(grid[:, 0], est.log_ratio(grid), label=method)
    # Mean squared error of log r over Q's own points, where the ratio is used.
    mse = np.mean((est.log_ratio(x_q) - pair.log_ratio(x_q)) ** 2)
    print(f"{method:>10}: mean squared error of log r on the Q sample = {mse:.3f}")
ax.set(xlabel="x", ylabel="log r(x)", ylim=(-8, 3), title="log p/q from 1,000 + 1,000 points")
ax.legend()
plt.show()

# %%
# The kernel estimators model ``r`` itself, a sum of Gaussian bumps with non-negative
# weights, so where the true ratio is close to 0 (far tails, the gap between the modes)
# their *log*-ratio is poorly determined: their error is in ``r``, not in ``log r``. The
# classifier models ``log r`` directly.
#
# A fitted estimator is a scikit-learn estimator (:class:`ratiokit.RatioEstimator`):
# ``clone``, ``GridSearchCV`` and pipelines work, with ``y = 1`` marking P's rows.
est = rk.RatioEstimator(method="ulsif", rng=0)
X = np.vstack([x_p, x_q])
y = np.r_[np.ones(len(x_p)), np.zeros(len(x_q))]
est.fit(X, y)
print("bandwidth and ridge chosen by leave-one-out:", est.method_.bandwidth_, est.method_.lambda_)
print("mean log-likelihood of the implied classifier:", round(est.score(X, y), 4))

# %%
# Checking a fit on held-out data
# -------------------------------
# ``diagnostics`` checks a fitted ratio on fresh samples: the balancing identities
# ``E_q[r] = 1`` and ``E_p[1/r] = 1``, the calibration of the classifier the ratio implies,
# and a two-sample test of P's sample against Q's sample thinned by rejection sampling with
# acceptance ``r / max r`` (a sample from P when ``r`` is right).
new_p, new_q = pair.sample_p(1000, rng=10), pair.sample_q(1000, rng=11)
diag = rk.estimate_ratio(x_p, x_q, method="ulsif", rng=0).diagnostics(new_p, new_q, rng=0)
print(diag.checks)
print(f"E_q[r] = {diag.mean_ratio_q:.3f} +- {diag.se_ratio_q:.3f}")
print(f"E_p[1/r] = {diag.mean_inverse_ratio_p:.3f} +- {diag.se_inverse_ratio_p:.3f}")
fig = diag.plot()[0].figure  # plot returns the three Axes it drew on

# %%
# Divergences
# -----------
# A Gaussian mean shift in 2-D, ``|mu| = 1``: KL(P||Q) = 1/2 and chi^2(P||Q) = e - 1 exactly.
# ``divergence`` picks the estimator configured for each kind; ``n_bootstrap`` refits on
# resampled data for a standard error.
shift = GaussianShift(dim=2, shift=1.0)
a, b = shift.sample_p(1000, rng=2), shift.sample_q(1000, rng=3)
for kind, method in [("kl", "kliep"), ("kl", "fdiv"), ("pearson", "ulsif")]:
    res = rk.divergence(
        a, b, kind=kind, method=method, n_bootstrap=10 if method != "fdiv" else 0, rng=0
    )
    se = "" if res.standard_error is None else f" +- {res.standard_error:.3f}"
    print(f"{kind:>8} by {method:>5}: {res.value:.3f}{se}   exact {shift.divergence(kind):.3f}")

# %%
# KL is an average of ``log r`` over P and is estimated well from 1,000 points. The
# Pearson divergence ``E_q[(r - 1)^2]`` weighs the *square* of the ratio, which is
# dominated by rare points of Q's sample far out in P's direction; the kernel model and
# its ridge shrink those large ratios, so uLSIF underestimates chi^2 at this sample size
# (and its bootstrap standard error, which resamples the same points, does not show it).
