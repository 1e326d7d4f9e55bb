"""Is a posterior calibrated? Simulation-based calibration, expected coverage, and the
classifier two-sample test :func:`c2st` that compares two posterior sample sets.

Both diagnostics draw ``theta_i ~ p(theta)`` and ``x_i ~ p(x | theta_i)``, i = 1..N, and ask
where the true ``theta_i`` falls among L draws from the posterior at ``x_i``. For a
posterior that equals ``p(theta | x)``, ``theta_i`` is exchangeable with those draws:

- :func:`sbc` (Talts et al. 2018): per coordinate j, the rank
  ``#{l : theta^(l)_j < theta_ij}`` is uniform on ``{0, ..., L}``; a chi-square test on
  binned ranks checks it, and a rank histogram shows how it fails (a U for an overconfident
  posterior, a hump for an underconfident one, a slope for a biased one).
- :func:`expected_coverage` (Hermans et al. 2022): the fraction of ``theta_i`` inside the
  posterior's highest-density region of credibility alpha is alpha; below the diagonal the
  posterior is overconfident, above it conservative.

The posterior is any object with ``sample(n, x=x, rng=rng)`` returning draws in ``.theta``
of shape (N, n, d) for N observations ``x`` of shape (N, x_dim), and ``log_prob(theta, x)``
(unnormalised is enough) on rows; a :class:`ratiokit.Posterior` is one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.stats

from ratiokit._progress import check_progress
from ratiokit._rng import check_rng
from ratiokit._validation import check_int
from ratiokit.config import N_PERMUTATIONS
from ratiokit.inference import simulate
from ratiokit.methods import Discrepancy, fits_on_split, get_method
from ratiokit.priors import Prior
from ratiokit.results import C2STResult, CoverageResult, SBCResult
from ratiokit.two_sample import two_sample_test

__all__ = ["c2st", "expected_coverage", "sbc"]

#: At least this many expected ranks per bin of the chi-square test (its usual validity rule).
MIN_EXPECTED = 5
#: At most this many bins of ranks.
MAX_BINS = 20


def _calibration_iv(
    posterior: Any,
    simulator: Callable[..., Any],
    vectorized: bool,
    n_sbc: int,
    n_samples: int,
    progress: bool | None,
) -> tuple[int, int, bool | None]:
    """Check the arguments :func:`sbc` and :func:`expected_coverage` share."""
    for name in ("sample", "log_prob"):
        if not callable(getattr(posterior, name, None)):
            raise TypeError(
                "`posterior` must have `sample(n, x=, rng=)` and `log_prob(theta, x)` methods "
                f"(a ratiokit.Posterior); got {type(posterior).__name__} without `{name}`."
            )
    if not callable(simulator):
        raise TypeError(f"`simulator` must be callable; got {type(simulator).__name__}.")
    if not isinstance(vectorized, bool):
        raise TypeError(f"`vectorized` must be True or False; got {vectorized!r}.")
    n_sbc = check_int(n_sbc, "n_sbc", minimum=2)
    n_samples = check_int(n_samples, "n_samples", minimum=1)
    return n_sbc, n_samples, check_progress(progress)


def _draw(
    posterior: Any,
    simulator: Callable[..., Any],
    prior: Any,
    vectorized: bool,
    n_sbc: int,
    n_samples: int,
    rng: Any,
    progress: bool | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``theta`` (N, d) from the prior, ``x`` (N, x_dim) simulated at them, and posterior
    draws (N, L, d) at each ``x``; prior and simulator from one stream, sampling another."""
    wrapped = Prior(prior)
    joint, sampling = check_rng(rng).spawn(2)
    theta = wrapped.sample(n_sbc, joint)
    x = simulate(simulator, theta, vectorized, joint)
    kwargs = {} if progress is None else {"progress": progress}
    draws = np.asarray(posterior.sample(n_samples, x=x, rng=sampling, **kwargs).theta)
    if draws.shape != (n_sbc, n_samples, wrapped.dim):
        raise ValueError(
            f"`posterior.sample` must return draws of shape ({n_sbc}, {n_samples}, "
            f"{wrapped.dim}) for {n_sbc} observations; got {draws.shape}."
        )
    return theta, x, draws


def sbc(
    posterior: Any,
    simulator: Callable[..., Any],
    prior: Any,
    *,
    vectorized: bool = True,
    n_sbc: int = 1000,
    n_samples: int = 100,
    rng: Any = None,
    progress: bool | None = None,
) -> SBCResult:
    r"""Simulation-based calibration: the ranks of true parameters among posterior draws.

    For i = 1..N: ``theta_i ~ p(theta)``, ``x_i ~ p(x | theta_i)``, L draws
    ``theta^(l) ~ q(theta | x_i)``, and per coordinate j the rank
    ``R_ij = #{l : theta^(l)_j < theta_ij}``; if q is the posterior, ``R_ij`` is uniform on
    {0, ..., L}. Each coordinate's ranks are tested for uniformity by Pearson's chi-square on
    B bins of consecutive rank values, the expected counts exact under the null
    (``N * (ranks in the bin) / (L + 1)``). Chi-square rather than Kolmogorov-Smirnov on
    ``R / L``: the ranks are discrete, and the KS null distribution assumes a continuous
    one, so its p-values would be conservative by an unknown amount.

    Parameters
    ----------
    posterior : Posterior or object
        ``sample(n, x=x, rng=rng)`` with ``.theta`` of shape (N, n, d) for x of shape
        (N, x_dim), and ``log_prob`` (not used here).
    simulator : callable
        As :func:`ratiokit.infer` takes it, per ``vectorized``.
    prior : object
        The prior the posterior was built under, as :func:`ratiokit.infer` takes it.
    vectorized : bool, default=True
        Which simulator contract ``simulator`` follows.
    n_sbc : int, default=1000
        N, the simulated (theta, x) pairs (at least 2).
    n_samples : int, default=100
        L, the posterior draws per pair.
    rng : None, int or numpy.random.Generator, default=None
    progress : bool or None, default=None
        Passed to ``posterior.sample`` (when not None).

    Returns
    -------
    SBCResult
        Ranks, bin counts and expectation, and the chi-square statistic and p-value per
        coordinate.

    Raises
    ------
    TypeError
        If ``posterior`` lacks ``sample`` or ``log_prob``, or an argument has the wrong type.
    ValueError
        If a count is out of range or a shape does not fit.

    References
    ----------
    Talts, Betancourt, Simpson, Vehtari and Gelman (2018), "Validating Bayesian inference
    algorithms with simulation-based calibration", arXiv:1804.06788.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> import ratiokit as rk
    >>> def simulator(theta, rng):
    ...     return theta + 0.5 * rng.standard_normal(theta.shape)
    >>> prior = rk.BoxUniform([-3.0], [3.0])
    >>> post = rk.infer(simulator, prior, n_simulations=1000, hidden=(16, 16), max_steps=300,
    ...                 rng=0)
    >>> res = rk.sbc(post, simulator, prior, n_sbc=100, n_samples=20, rng=0)
    >>> res.ranks.shape, res.n_bins
    ((100, 1), 20)
    """
    n_sbc, n_samples, progress = _calibration_iv(
        posterior, simulator, vectorized, n_sbc, n_samples, progress
    )
    theta, _, draws = _draw(
        posterior, simulator, prior, vectorized, n_sbc, n_samples, rng, progress
    )
    ranks = (draws < theta[:, None, :]).sum(axis=1)
    n_bins = max(2, min(MAX_BINS, n_samples + 1, n_sbc // MIN_EXPECTED))
    # Bin b holds the rank values [edges[b], edges[b + 1]); near-equal numbers of values.
    edges = np.linspace(0, n_samples + 1, n_bins + 1).round().astype(np.int64)
    expected = n_sbc * np.diff(edges) / (n_samples + 1)
    counts = np.stack([np.histogram(ranks[:, j], bins=edges)[0] for j in range(theta.shape[1])])
    statistic, pvalue = scipy.stats.chisquare(counts, expected, axis=1)
    return SBCResult(
        ranks=ranks,
        n_samples=n_samples,
        bin_edges=edges,
        bin_counts=counts,
        expected_counts=expected,
        statistic=np.asarray(statistic, dtype=np.float64),
        pvalue=np.asarray(pvalue, dtype=np.float64),
    )


def expected_coverage(
    posterior: Any,
    simulator: Callable[..., Any],
    prior: Any,
    *,
    levels: Any = None,
    vectorized: bool = True,
    n_sbc: int = 1000,
    n_samples: int = 100,
    rng: Any = None,
    progress: bool | None = None,
) -> CoverageResult:
    r"""Expected coverage of the posterior's highest-density regions, over credibility levels.

    For i = 1..N: ``theta_i ~ p(theta)``, ``x_i ~ p(x | theta_i)`` and L draws
    ``theta^(l) ~ q(theta | x_i)``. The highest-density region of credibility alpha holds the
    alpha-fraction of draws of highest ``log q``, so ``theta_i`` lies inside it when its
    credibility ``c_i = (#{l : log q(theta^(l) | x_i) > log q(theta_i | x_i)} + 1/2) / (L + 1)``
    (the mid-rank, exchangeable with the draws' own) is below alpha. The coverage is
    ``mean_i 1[c_i < alpha]``; it is alpha, within ``1 / (2 (L + 1))``, for a calibrated
    posterior, below alpha for an overconfident one.

    Parameters
    ----------
    posterior : Posterior or object
        ``sample(n, x=x, rng=rng)`` as :func:`sbc` takes it, and ``log_prob(theta, x)`` on
        rows (theta (m, d), x (m, x_dim)) to (m,); unnormalised is enough.
    simulator, prior, vectorized
        As :func:`sbc`.
    levels : array-like of float in (0, 1), default=None
        The credibility levels; default 0.05, 0.10, ..., 0.95.
    n_sbc : int, default=1000
        N, the simulated (theta, x) pairs (at least 2).
    n_samples : int, default=100
        L, the posterior draws per pair.
    rng : None, int or numpy.random.Generator, default=None
    progress : bool or None, default=None
        Passed to ``posterior.sample`` (when not None).

    Returns
    -------
    CoverageResult
        The coverage at each level, each ``c_i``, and a 99% binomial band around the diagonal.

    Raises
    ------
    TypeError
        If ``posterior`` lacks ``sample`` or ``log_prob``, or an argument has the wrong type.
    ValueError
        If a count or a level is out of range, or a shape does not fit.

    References
    ----------
    Hermans, Delaunoy, Rozet, Wehenkel, Begy and Louppe (2022), "A trust crisis in
    simulation-based inference? Your posterior approximations can be unfaithful", TMLR.

    Examples
    --------
    >>> import ratiokit as rk
    >>> def simulator(theta, rng):
    ...     return theta + 0.5 * rng.standard_normal(theta.shape)
    >>> prior = rk.BoxUniform([-3.0], [3.0])
    >>> post = rk.infer(simulator, prior, n_simulations=1000, hidden=(16, 16), max_steps=300,
    ...                 rng=0)
    >>> res = rk.expected_coverage(post, simulator, prior, n_sbc=100, n_samples=50, rng=0)
    >>> res.levels.shape, res.coverage.shape
    ((19,), (19,))
    """
    n_sbc, n_samples, progress = _calibration_iv(
        posterior, simulator, vectorized, n_sbc, n_samples, progress
    )
    if levels is None:
        levels = np.linspace(0.05, 0.95, 19)
    try:
        levels = np.atleast_1d(np.asarray(levels, dtype=np.float64))
    except (TypeError, ValueError) as err:
        raise TypeError(f"`levels` must be an array of floats in (0, 1); got {levels!r}.") from err
    if levels.ndim != 1 or levels.size == 0 or not ((levels > 0) & (levels < 1)).all():
        raise ValueError(f"`levels` must be a 1-D array of floats in (0, 1); got {levels!r}.")
    theta, x, draws = _draw(
        posterior, simulator, prior, vectorized, n_sbc, n_samples, rng, progress
    )
    d = theta.shape[1]
    log_q = np.asarray(
        posterior.log_prob(draws.reshape(-1, d), np.repeat(x, n_samples, axis=0)),
        dtype=np.float64,
    ).reshape(n_sbc, n_samples)
    log_q_true = np.asarray(posterior.log_prob(theta, x), dtype=np.float64).reshape(n_sbc)
    credibility = ((log_q > log_q_true[:, None]).sum(axis=1) + 0.5) / (n_samples + 1)
    coverage = (credibility[:, None] < levels[None, :]).mean(axis=0)
    low, high = scipy.stats.binom.interval(0.99, n_sbc, levels)
    return CoverageResult(
        levels=levels,
        coverage=coverage,
        credibility=credibility,
        band_low=low / n_sbc,
        band_high=high / n_sbc,
        n_samples=n_samples,
    )


def c2st(
    x: Any,
    y: Any,
    *,
    method: str | Discrepancy = "classifier",
    standardize: bool = True,
    fit_size: float | None = None,
    n_permutations: int = N_PERMUTATIONS,
    rng: Any = None,
    device: Any = None,
    progress: bool | None = None,
) -> C2STResult:
    r"""Classifier two-sample test: the held-out accuracy of a classifier of ``x`` against ``y``.

    ``accuracy = #{held-out points classified correctly} / (n_x + n_y)``, 0.5 when x and y
    come from one distribution and 1 when they are separated: the C2ST of Lopez-Paz and
    Oquab (2017), which Lueckmann et al. (2021) use to score approximate posterior samples
    against reference ones. It is :func:`ratiokit.two_sample_test` with a learned critic: the
    critic is fitted on ``fit_size`` of each sample (half by default) and classifies the
    held-out rest by ``log r > log(n_y / n_x)``; the p-values are the test's permutation
    p-value of that accuracy and its exact binomial tail.

    Parameters
    ----------
    x : array-like or Tensor of shape (n, d) or (n,)
        One sample, e.g. draws from an approximate posterior.
    y : array-like or Tensor of shape (m, d) or (m,)
        The other, e.g. reference posterior draws.
    method : str or Discrepancy, default="classifier"
        A method with a learned critic and log-ratios: ``"classifier"`` (an MLP), or an
        instance such as ``Classifier(hidden=(32, 32))`` or a scikit-learn critic.
    standardize : bool, default=True
        Scale each feature by the pooled sample's mean and standard deviation first (as
        sbibm's C2ST does); label-free, so the test stays exact.
    fit_size : float in (0, 1) or None, default=None
        The fraction of the smaller sample the critic is fitted on (None: 0.5).
    n_permutations : int, default=N_PERMUTATIONS
        B, the relabellings of the accuracy's permutation p-value.
    rng : None, int or numpy.random.Generator, default=None
        Seeds the split, the critic and the relabellings; an int gives the same result.
    device : str or torch.device, default=None
        Where to train and evaluate the critic.
    progress : bool or None, default=None
        A progress bar while the critic trains.

    Returns
    -------
    C2STResult
        ``accuracy``, its permutation ``pvalue`` and ``binomial_pvalue``, and the held-out
        sizes ``n_x`` and ``n_y``.

    Raises
    ------
    ValueError
        If ``method`` has no learned critic with log-ratios, or as
        :func:`ratiokit.two_sample_test` for invalid samples or settings.
    TypeError
        As :func:`ratiokit.two_sample_test`, for arguments of the wrong type.

    References
    ----------
    Lopez-Paz and Oquab (2017), "Revisiting classifier two-sample tests", ICLR. Lueckmann,
    Boelts, Greenberg, Goncalves and Macke (2021), "Benchmarking simulation-based
    inference", AISTATS.

    Examples
    --------
    >>> import numpy as np
    >>> import ratiokit as rk
    >>> gen = np.random.default_rng(0)
    >>> a, b = gen.normal(size=(400, 2)), gen.normal(3.0, 1.0, size=(400, 2))
    >>> res = rk.c2st(a, b, rng=0)
    >>> bool(res.accuracy > 0.9), res.n_x, res.pvalue  # (1 + 0) / (1 + 999)
    (True, 200, 0.001)
    """
    estimator = get_method(method, test=True)
    if not (fits_on_split(estimator) and estimator.has_log_ratio):
        raise ValueError(
            "`method` must be a ratio method with a learned critic (such as 'classifier'), "
            f"whose held-out log-ratios classify the points; got {estimator.name!r}."
        )
    res = two_sample_test(
        x,
        y,
        method=estimator,
        n_permutations=n_permutations,
        rng=rng,
        device=device,
        progress=progress,
        standardize=standardize,
        fit_size=fit_size,
    )
    details = dict(res.details)
    accuracy = details.pop("accuracy")
    pvalue = details.pop("accuracy_pvalue")
    binomial_pvalue = details.pop("binomial_pvalue")
    del details["statistic"]  # the test's name for its statistic, kept below by value
    details.update(log_ratio_difference=res.statistic, log_ratio_difference_pvalue=res.pvalue)
    return C2STResult(
        accuracy=accuracy,
        pvalue=pvalue,
        binomial_pvalue=binomial_pvalue,
        n_x=details["n_x"],
        n_y=details["n_y"],
        method=res.method,
        n_permutations=res.n_permutations,
        details=details,
    )
