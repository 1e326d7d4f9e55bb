"""Front door 2, test: :func:`two_sample_test` of H0: P = Q.

The test dispatches on the :class:`~ratiokit.methods.Discrepancy` interface only:

- a method whose critic is learned (``learned_critic = True``) is fitted on one part of each
  sample and tested on the held-out parts; a ratio method is scored by the mean log-ratio
  difference of the held-out points (its accuracy as a classifier is reported too);
- any other method is fitted on all the data (label-free choices only, such as a median
  bandwidth) and permutation-tested on all of it.

Statistics of every relabelling come from the batched engine in :mod:`ratiokit._permutation`:
kernel methods (:class:`~ratiokit.methods.mmd.MMD`, the energy distance and the MMD methods
made for testing) as kernel quadratic forms over tiles of the pooled Gram matrix, everything
else with ``torch.func.vmap``. A method can provide its own batched statistics by defining
``_permutation_statistics(z, labels, progress)``, as the kernel methods do.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch
from scipy import stats

from ratiokit._permutation import (
    LabelMatrix,
    Statistics,
    check_label_memory,
    draw_labels,
    linear_sums,
    pvalue,
    vmap_statistics,
)
from ratiokit._rng import check_rng
from ratiokit._validation import as_sample_pair, check_choice, check_device, check_int
from ratiokit.critics import canonical_order
from ratiokit.methods import Discrepancy, get_method
from ratiokit.results import TwoSampleTestResult

__all__ = ["two_sample_test"]

ALTERNATIVES = ("greater", "less", "two-sided")

#: Without ``standardize``, the test warns when the pooled per-feature standard deviations of
#: the non-constant features span more than this factor (largest / smallest).
SCALE_RATIO_WARN = 100.0


# ---------------------------------------------------------------------------------------------
# the front door
# ---------------------------------------------------------------------------------------------


def _two_sample_test_iv(
    x: Any,
    y: Any,
    method: str | Discrepancy,
    n_permutations: Any,
    alternative: Any,
    rng: Any,
    device: Any,
    progress: Any,
    standardize: Any,
) -> tuple[Discrepancy, torch.Tensor, torch.Tensor, int, str, np.random.Generator]:
    estimator = get_method(method, test=True)
    n_perm = check_int(n_permutations, "n_permutations", minimum=1)
    alt = check_choice(alternative, "alternative", ALTERNATIVES)
    if not isinstance(standardize, (bool, np.bool_)):
        raise TypeError(f"`standardize` must be True or False; got {standardize!r}.")
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"`progress` must be None, True or False; got {progress!r}.")
    gen = check_rng(rng)
    device = check_device(device)
    a, b = as_sample_pair(x, y, ("x", "y"), min_samples=estimator.min_samples, device=device)
    n, m = a.shape[0], b.shape[0]
    if _splits(estimator) and min(n, m) < 2 * estimator.min_samples:
        raise ValueError(
            f"`x` and `y` must each have at least {2 * estimator.min_samples} samples for "
            f"method {estimator.name!r}, which fits its critic on one part of each sample and "
            f"tests on the other; got {n} and {m}."
        )
    if getattr(estimator, "null", "permutation") == "wild" and n != m:
        raise ValueError(
            "`x` and `y` must have the same number of samples for `null`='wild' (the wild "
            f"bootstrap swaps the pairs (x_i, y_i)); got {n} and {m}."
        )
    if _splits(estimator):  # the test runs on the held-out min(n, m) // 2 points of each
        n = m = min(n, m) // 2
    check_label_memory(n, m, n_perm, _scheme(estimator))
    return estimator.to(a.device), a, b, n_perm, alt, gen


def two_sample_test(
    x: Any,
    y: Any,
    *,
    method: str | Discrepancy = "mmd",
    n_permutations: int = 999,
    alternative: str = "greater",
    rng: Any = None,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    standardize: bool = False,
) -> TwoSampleTestResult:
    r"""Test H0: P = Q from samples ``x`` ~ P and ``y`` ~ Q by permutations.

    ``p = (1 + #{T_b >= T}) / (1 + B)`` over B random relabellings of the pooled sample, or
    the exact fraction over all ``C(n + m, n)`` relabellings when there are at most B of them.

    Every relabelling is drawn on the CPU from ``rng``, so a seed gives the same p-value on
    any device, tile size or batch size, and the statistics of all relabellings are computed
    as batched reductions: for kernel methods, each tile of the pooled Gram matrix is computed
    once and multiplied by the labels of every relabelling (``n = m = 5000``, ``d = 10``,
    999 permutations: a few seconds on 2 CPU cores). Null statistics within a relative
    ``1e-9`` of the observed one count as ties (values equal in exact arithmetic), so the
    p-value is never 0.

    Methods (a name or an instance; it is copied, never modified):

    - ``"mmd"``: :class:`~ratiokit.methods.mmd.MMD`, unbiased (U) or biased (V) MMD^2, any
      kernel and bandwidth; ``MMD(estimator="linear")`` is the linear-time statistic
      (O(n) per relabelling) and :class:`~ratiokit.methods.RandomFeatureMMD` a
      random-Fourier-feature one (O(n F)), both for sizes where a quadratic statistic is too
      slow. The default bandwidth is the median heuristic, which has almost no power when the
      two distributions differ at a much smaller scale than the data's spread (e.g. the
      shape of small clusters far apart): choose it on a held-out split with
      :class:`~ratiokit.methods.OptimizedMMD` (the power criterion MMD^2 / sigma), learn a
      deep kernel with :class:`~ratiokit.methods.DeepKernelMMD`, or aggregate many
      bandwidths with ``"mmdagg"``.
    - ``"mmdagg"``: :class:`~ratiokit.methods.MMDAgg`, MMD over a collection of kernels and
      bandwidths with a level-corrected aggregation (permutations or the wild bootstrap).
    - ``"energy"``: the energy distance (MMD with ``k = -|x - y|``).
    - ``"moments"``: Hotelling's T^2 (with ``details["f_pvalue"]``, exact for Gaussians).
    - ``"classifier"``, ``"fdiv"``, ``"ulsif"``, ... (any method with a learned critic):
      fitted on part of each sample, tested on the held-out rest (``min(n, m) // 2`` points of
      each) by the mean held-out log-ratio difference ``mean_x log r - mean_y log r``;
      ``details`` also holds the held-out accuracy (a classifier two-sample test) with its
      permutation p-value and its exact binomial p-value.

    Parameters
    ----------
    x : array-like or Tensor of shape (n, d) or (n,)
        Sample from P (1-D means one feature).
    y : array-like or Tensor of shape (m, d) or (m,)
        Sample from Q.
    method : str or Discrepancy, default="mmd"
        A method name (see above) or an instance.
    n_permutations : int, default=999
        B, the number of random relabellings (at least 1).
    alternative : {"greater", "less", "two-sided"}, default="greater"
        ``"greater"`` rejects for large statistics (P and Q differ); ``"two-sided"`` doubles
        the smaller one-sided p-value, capped at 1.
    rng : None, int, SeedSequence or Generator, default=None
        Seed of the relabellings, the split of a learned critic, its training and data-
        dependent choices (a subsample for the median bandwidth). None draws from fresh
        entropy (SPEC 7), and every inner step receives a Generator spawned from it; an int
        gives identical results on every run.
    device : str or torch.device, default=None
        Where to compute; default: where the inputs are (the CPU for NumPy input).
    progress : bool or None, default=None
        A tqdm progress bar on stderr: None shows it when the computation takes over a second.
    standardize : bool, default=False
        Centre each feature by the pooled sample's mean and divide it by the pooled
        sample's standard deviation (ddof 0; a constant feature is only centred) before
        testing, so that no feature dominates the distances by its units alone (wine
        classes 1 and 2 at 8 vs 8 points, whose pooled standard deviations range from 0.13
        to 151: the power of MMD at the 5% level goes from 0.50 to 1.00, over 100 draws).
        The transform uses the pooled sample, never the labels: it is a fixed function of
        the unordered pooled sample, so every relabelling sees the same points and the
        permutation p-value stays exact; a learned critic is then fitted and tested on the
        standardised split. The default, False, tests the data in the units given (as
        SciPy's tests do), which is right when features share meaningful units; when the
        non-constant features' pooled standard deviations differ by more than a factor of
        100 (:data:`SCALE_RATIO_WARN`) the test warns and suggests True. Hotelling's T^2
        (``"moments"``) does not depend on the features' units either way.

    Returns
    -------
    TwoSampleTestResult
        ``statistic``, ``pvalue``, ``null_distribution`` (all C statistics when enumerated
        exactly, the observed one included; else the B random ones), ``method``,
        ``alternative``, ``n_permutations`` (the size of the null distribution) and
        ``details`` (kernel, bandwidths, sizes, ``standardized``, and method-specific
        values).

    Raises
    ------
    ValueError, TypeError
        For invalid samples (NaN or inf, wrong shape, too few rows, mismatched features,
        non-numeric data), an unknown method, or invalid settings (``n_permutations`` whose
        label matrix, ``(n + m) (B + 1)`` bytes, would exceed 4 GiB; a bandwidth whose
        square, relative to the data's spread, is not a finite normal float).
    NonFiniteStatisticError
        A ValueError: the observed statistic or some permuted ones are NaN or infinite (a
        custom ``forward`` that returns them, say), which have no p-value.

    Notes
    -----
    Scale: kernel statistics are computed on the pooled sample centred and divided by the
    power of two nearest its RMS (bandwidths divided alike), and Hotelling's T^2 on
    statistics of the pooled sample so standardised: exact in floating point, so results at
    ordinary scales are unchanged, and the p-values of MMD^2 with the median bandwidth, the
    energy distance and Hotelling's T^2, which do not depend on the data's location and units
    in exact arithmetic, stay the same from scale 1e-150 to 1e150. ``statistic`` keeps the
    data's units where it has them (the energy distance scales with the data; MMD^2 with a
    bounded kernel and T^2 have none). That internal division by one power of two is exact
    and changes no result; ``standardize=True`` is a statistical choice that changes the
    test (each feature gets unit variance), after which the internal factor is 1.

    References
    ----------
    Gretton et al. (2012), "A kernel two-sample test", JMLR 13. Phipson and Smyth (2010),
    "Permutation p-values should never be zero", Stat. Appl. Genet. Mol. Biol. 9(1).
    Lopez-Paz and Oquab (2017), "Revisiting classifier two-sample tests", ICLR.

    Examples
    --------
    >>> import numpy as np
    >>> gen = np.random.default_rng(0)
    >>> x, y = gen.normal(size=(100, 2)), gen.normal(0.8, 1.0, size=(100, 2))
    >>> res = two_sample_test(x, y, n_permutations=199, rng=0)
    >>> res.pvalue  # (1 + 0) / (1 + 199): no relabelling reached the observed MMD^2
    0.005
    >>> bool(two_sample_test(x, gen.normal(size=(100, 2)), rng=0).pvalue > 0.05)
    True
    """
    estimator, a, b, n_perm, alt, gen = _two_sample_test_iv(
        x, y, method, n_permutations, alternative, rng, device, progress, standardize
    )
    split_rng, fit_rng, label_rng = gen.spawn(3)
    details: dict[str, Any] = {"standardized": bool(standardize)}
    if standardize:
        a, b = _standardize(a, b)
    elif not hasattr(estimator, "hotelling_t2"):  # Hotelling's T^2 is invariant to units
        _warn_feature_scales(a, b)
    if _splits(estimator):
        (a_fit, b_fit), (a, b) = _split(a, b, split_rng)
        estimator.fit_critic(a_fit, b_fit, rng=fit_rng)
        details.update(n_fit_x=a_fit.shape[0], n_fit_y=b_fit.shape[0])
    elif not hasattr(estimator, "hotelling_t2"):
        estimator.fit_critic(a, b, rng=fit_rng)
    n, m = a.shape[0], b.shape[0]
    scheme = _scheme(estimator)
    labels = draw_labels(n, m, n_perm, label_rng, scheme=scheme).to(a.device)
    result = _statistics(estimator, a, b, labels, progress)
    null = result.values[labels.null]
    observed = float(result.values[0])
    name = getattr(estimator, "name", type(estimator).__name__)
    details.update(
        n_x=n, n_y=m, exact=labels.exact, null="wild bootstrap" if scheme == "swap" else scheme
    )
    details.update(result.details)
    return TwoSampleTestResult(
        statistic=observed,
        pvalue=pvalue(
            observed,
            null,
            alt,
            exact=labels.exact,
            scale=result.scale,
            name=f"statistic of method {name!r}",
        ),
        null_distribution=null,
        method=name,
        alternative=alt,
        n_permutations=int(null.size),
        details=details,
    )


def _pooled_std(
    a: torch.Tensor, b: torch.Tensor, *, ordered: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and standard deviation (ddof 0) of the pooled sample, in float64.

    ``ordered=True`` sums the pooled rows in their canonical order, so the moments are
    bit-identical for every split of the same rows into two samples (a function of the
    unordered pooled sample even in floating point; the sort costs about ten times the sums,
    around a second for 100,000 points in 10-D, so the warning's check skips it). The
    deviations are divided by each feature's largest one before squaring, so the standard
    deviation neither overflows nor underflows at any scale of the data (0 for a constant
    feature).
    """
    z = torch.cat([a, b]).detach().to(torch.float64)
    if ordered:
        z = z[canonical_order(z)]
    mean = z.mean(0)
    dev = z - mean
    top = dev.abs().amax(0)
    unit = torch.where(top > 0, top, torch.ones_like(top))
    return mean, top * (dev / unit).square().mean(0).sqrt()


def _standardize(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both samples centred by the pooled per-feature mean and divided by the pooled per-feature
    standard deviation (1 for a constant feature, which is left centred), in their dtype.

    The transform is a function of the unordered pooled sample, not of the labels, so every
    relabelling sees the same transformed points and the permutation test stays exact.
    """
    mean, std = _pooled_std(a, b, ordered=True)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return tuple(((s.to(torch.float64) - mean) / std).to(s.dtype) for s in (a, b))


def _warn_feature_scales(a: torch.Tensor, b: torch.Tensor) -> None:
    """Warn when the pooled per-feature standard deviations of the non-constant features span
    more than :data:`SCALE_RATIO_WARN`: the widest features then dominate the distances."""
    _, std = _pooled_std(a, b)
    varying = torch.nonzero(std > 0).flatten()
    if varying.numel() < 2:
        return
    ratio = float(std[varying].max() / std[varying].min())
    if ratio > SCALE_RATIO_WARN:
        widest = int(varying[std[varying].argmax()])
        narrowest = int(varying[std[varying].argmin()])
        warnings.warn(
            f"the features' scales differ by a factor of {ratio:.3g} (pooled standard "
            f"deviation of feature {widest} over feature {narrowest}), so the widest features "
            "dominate the test; pass `standardize=True` (`ratiokit test --standardize`) to "
            "give every feature unit variance (label-free: the test stays exact), or rescale "
            "the features yourself",
            UserWarning,
            stacklevel=3,
        )


def _scheme(estimator: Discrepancy) -> str:
    """Relabelling scheme: pair swaps for a wild bootstrap, else permutations."""
    return "swap" if getattr(estimator, "null", "permutation") == "wild" else "permutation"


def _splits(estimator: Discrepancy) -> bool:
    """Whether the test fits on one part and tests on the other: a learned critic, unless the
    method has a label-free statistic of its own (Hotelling's T^2 of its moment statistics)."""
    return estimator.learned_critic and not hasattr(estimator, "hotelling_t2")


def _split(
    a: torch.Tensor, b: torch.Tensor, rng: np.random.Generator
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Random fit/test split: ``min(n, m) // 2`` points of each sample are held out."""
    held = min(a.shape[0], b.shape[0]) // 2
    pa = torch.as_tensor(rng.permutation(a.shape[0]), device=a.device)
    pb = torch.as_tensor(rng.permutation(b.shape[0]), device=b.device)
    return (a[pa[held:]], b[pb[held:]]), (a[pa[:held]], b[pb[:held]])


def _statistics(
    estimator: Discrepancy,
    a: torch.Tensor,
    b: torch.Tensor,
    labels: LabelMatrix,
    progress: bool | None,
) -> Statistics:
    """Dispatch on the Discrepancy interface: every column's statistic, observed first."""
    if hasattr(estimator, "hotelling_t2"):
        return _hotelling_statistics(estimator, a, b, labels, progress)
    z = torch.cat([a, b]).detach()
    if estimator.learned_critic and estimator.has_log_ratio:
        scores = _held_out_scores(estimator, z)
        if scores is not None:
            return _score_statistics(estimator.name, scores, labels)
    own = getattr(estimator, "_permutation_statistics", None)
    if own is not None:
        return own(z, labels, progress)
    # stacklevel 4: a warning points at the user's call of two_sample_test.
    values = vmap_statistics(
        estimator, z, labels, progress=progress, name=f"of {estimator.name!r}", stacklevel=4
    )
    values = values.cpu().numpy()
    return Statistics(values, float(np.abs(values).max()), {"statistic": "forward"})


def _held_out_scores(estimator: Discrepancy, z: torch.Tensor) -> torch.Tensor | None:
    """``log r`` at the held-out points, float64; None if the method's ratio is defined only at
    the points it was fitted on (kernel mean matching): its ``forward`` is tested instead."""
    try:
        with torch.no_grad():
            scores = estimator.log_ratio(z)
    except (ValueError, NotImplementedError):
        return None
    scores = torch.as_tensor(scores, dtype=torch.float64, device=z.device).reshape(-1)
    if not bool(torch.isfinite(scores).all()):
        raise ValueError(
            f"method {estimator.name!r} returned non-finite log-ratios on the held-out "
            "points; the test needs finite scores (check the method's fit)."
        )
    return scores


def _score_statistics(name: str, scores: torch.Tensor, labels: LabelMatrix) -> Statistics:
    """Held-out statistics of a fitted ratio method: mean log-ratio difference and accuracy.

    With scores ``s = log r(z)`` on the pooled held-out sample, ``T = mean_x s - mean_y s``;
    a point is classified as "x" when ``s > log(m / n)`` (the Bayes rule for the held-out
    class sizes), and the accuracy is the fraction classified correctly. Both are linear in
    the labels, so all relabellings cost one matrix product.
    """
    n = labels.n
    m = scores.shape[0] - n
    predicted = (scores > math.log(m / n)).to(torch.float64)
    sums = linear_sums(torch.stack([scores, predicted], 1), labels)
    mean_diff = sums[0] / n - (scores.sum() - sums[0]) / m
    correct = 2.0 * sums[1] + m - predicted.sum()
    accuracy = (correct / (n + m)).cpu().numpy()
    acc_null = accuracy[labels.null]
    k = round(float(correct[0]))
    details: dict[str, Any] = {
        "statistic": "mean log-ratio difference",
        "accuracy": float(accuracy[0]),
        "accuracy_pvalue": pvalue(
            float(accuracy[0]), acc_null, "greater", exact=labels.exact, scale=1.0
        ),
        # Under H0 the predictions are independent of the (balanced) held-out labels, so the
        # number correct is a sum of Bernoullis with mean (n + m) / 2 and at most binomial
        # spread: the Binomial(n + m, 1/2) tail is exact or conservative.
        "binomial_pvalue": float(stats.binom.sf(k - 1, n + m, 0.5)),
    }
    scale = float(scores.abs().mean())
    return Statistics(mean_diff.cpu().numpy(), scale, details)


def _hotelling_statistics(
    estimator: Discrepancy,
    a: torch.Tensor,
    b: torch.Tensor,
    labels: LabelMatrix,
    progress: bool | None,
) -> Statistics:
    """Hotelling's T^2 of every relabelling, with the F-test p-value of the observed one.

    ``F = T^2 df2 / (df1 (df1 + df2 - 1))`` follows F(df1, df2) under H0 for Gaussian
    statistics with a common covariance (df1 = k statistics, df2 = n + m - k - 1). With the
    method's ``pooled_statistics`` and ``ridge``
    (:class:`~ratiokit.methods.moments.MomentMatching`) every relabelling comes from one
    eigendecomposition (:func:`_batched_hotelling`); otherwise ``hotelling_t2`` is called on
    each.
    """
    t2, df1, df2 = estimator.hotelling_t2(a, b)
    z = torch.cat([a, b]).detach()
    if hasattr(estimator, "pooled_statistics") and hasattr(estimator, "ridge"):
        with torch.no_grad():
            s = estimator.pooled_statistics(z).to(torch.float64)
        values = _batched_hotelling(s, float(estimator.ridge), labels)
    else:
        values = vmap_statistics(
            lambda p, q: torch.as_tensor(estimator.hotelling_t2(p, q)[0], dtype=torch.float64),
            z,
            labels,
            progress=progress,
            name=f"hotelling_t2 of {estimator.name!r}",
            stacklevel=5,
        )
    f_stat = float(t2) * float(df2) / (float(df1) * (float(df1) + float(df2) - 1.0))
    details = {
        "statistic": "Hotelling T^2",
        "df1": int(df1),
        "df2": int(df2),
        "f_pvalue": float(stats.f.sf(f_stat, float(df1), float(df2))),
    }
    values = values.cpu().numpy()
    return Statistics(values, max(1.0, abs(float(t2))), details)


def _batched_hotelling(s: torch.Tensor, ridge: float, labels: LabelMatrix) -> torch.Tensor:
    r"""``T^2 = (n m / N) delta' (S + rho I)^-1 delta`` for every column, shape (C,).

    ``S = W / (N - 2)`` is the pooled within-group covariance of the statistics ``s`` (N, k)
    and ``rho = ridge tr(S) / k``. The total scatter ``T = W + (n m / N) delta delta'`` does
    not depend on the labels, so with ``T = U diag(lam) U'`` and
    ``a = sum_j (U' delta)_j^2 / (lam_j / (N - 2) + rho)``, Sherman-Morrison gives
    ``delta' (S + rho I)^-1 delta = a / (1 - g a)``, ``g = n m / (N (N - 2))``: one
    eigendecomposition and one (N, k) x (N, C) product for all columns.
    """
    big_n, k = s.shape
    n = labels.n
    m = big_n - n
    c = s - s.mean(0)
    lam, vecs = torch.linalg.eigh(c.T @ c)
    # delta = mean_x s - mean_y s = (1/n + 1/m) sum_x c, as the centred rows sum to 0.
    delta = linear_sums(c @ vecs, labels) * (1.0 / n + 1.0 / m)
    norm2 = (delta * delta).sum(0)
    level = (lam.sum() - n * m / big_n * norm2) / (k * (big_n - 2))
    level = torch.where(level > 0, level, torch.ones_like(level))
    a = (delta * delta / (lam[:, None] / (big_n - 2) + ridge * level[None, :])).sum(0)
    g = n * m / (big_n * (big_n - 2))
    return n * m / big_n * a / (1.0 - g * a)
