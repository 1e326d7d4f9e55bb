"""Front door 2, test: :func:`two_sample_test` of H0: P = Q.

As SciPy's ``permutation_test``: validate, fit the method as it asks, compute its statistic
for every relabelling, rank the observed one among them, and return a result. The method
says everything the test needs through the public :class:`~ratiokit.methods.Discrepancy`
interface:

- ``test_fit``: ``"split"`` (a learned critic: fitted on one part of each sample and tested
  on the held-out rest), ``"all"`` (label-free choices such as a median bandwidth, on all the
  data) or ``"none"``;
- ``null``: permutations, or pair swaps (the wild bootstrap);
- ``scale_invariant``: whether to skip the warning about features on very different scales;
- :meth:`~ratiokit.methods.Discrepancy.null_statistics`: the statistic of every relabelling,
  from the batched engine in :mod:`ratiokit._permutation` (kernel quadratic forms over tiles
  of the pooled Gram matrix for the kernel methods, ``torch.func.vmap`` over ``forward`` by
  default).
"""

from __future__ import annotations

import math
import numbers
import warnings
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from ratiokit._permutation import (
    check_label_memory,
    draw_labels,
    pvalue,
)
from ratiokit._rng import check_rng
from ratiokit._validation import as_sample_pair, check_choice, check_device, check_int
from ratiokit.config import N_PERMUTATIONS
from ratiokit.critics import canonical_order
from ratiokit.methods import TEST_FITS, Discrepancy, fits_on_split, get_method
from ratiokit.results import TwoSampleTestResult

__all__ = ["two_sample_test"]

ALTERNATIVES = ("greater", "less", "two-sided")

#: Default fraction of each sample a learned critic is fitted on (``fit_size``).
FIT_SIZE = 0.5

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
    refit: Any,
    fit_size: Any,
) -> tuple[Discrepancy, torch.Tensor, torch.Tensor, int, str, np.random.Generator, int]:
    estimator = get_method(method, test=True)
    check_choice(estimator.test_fit, "test_fit", TEST_FITS)
    if not isinstance(refit, (bool, np.bool_)):
        raise TypeError(f"`refit` must be True or False; got {refit!r}.")
    if not refit:
        _check_fixed_critic(estimator, standardize)
    split = fits_on_split(estimator) and bool(refit)
    fraction = _check_fit_size(fit_size, split)
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
    # Held out of each sample for the test: min(n, m) - ceil(fit_size min(n, m)), which is
    # min(n, m) // 2 at the default; the critic is fitted on the rest of each. fit_size is
    # read as the decimal it prints as (0.8 is 4/5, not its binary approximation), so that
    # 0.8 of 40 is 32 rather than 32.000000000000004.
    held = min(n, m) - math.ceil(Fraction(repr(fraction)) * min(n, m))
    ms = estimator.min_samples
    if split and min(held, min(n, m) - held) < ms:
        if fit_size is None:
            raise ValueError(
                f"`x` and `y` must each have at least {2 * ms} samples for method "
                f"{estimator.name!r}, which fits its critic on one part of each sample and "
                f"tests on the other; got {n} and {m}."
            )
        raise ValueError(
            f"`fit_size` must leave at least {ms} points of each sample to fit method "
            f"{estimator.name!r} and {ms} to test it; got {fit_size!r}, which splits the "
            f"smaller sample ({min(n, m)} points) into {min(n, m) - held} to fit and {held} "
            "to test."
        )
    if estimator.null == "wild" and n != m:
        raise ValueError(
            "`x` and `y` must have the same number of samples for `null`='wild' (the wild "
            f"bootstrap swaps the pairs (x_i, y_i)); got {n} and {m}."
        )
    if split:  # the test runs on the held-out points of each sample
        n = m = held
    check_label_memory(n, m, n_perm, _scheme(estimator))
    return estimator.to(a.device), a, b, n_perm, alt, gen, held


def _check_fixed_critic(estimator: Discrepancy, standardize: Any) -> None:
    """Refuse ``refit=False`` for a method without a fitted learned critic."""
    name = estimator.name
    if not fits_on_split(estimator):
        raise ValueError(
            f"`refit` must be True for method {name!r}, which has no learned critic to keep "
            f"(`test_fit`={estimator.test_fit!r}: it is fitted without labels on the tested "
            "data, or not at all, and the test stays exact); got False. To fix a kernel, "
            "give its settings (e.g. `MMD(bandwidth=1.0)`)."
        )
    if not estimator.is_fitted():
        raise ValueError(
            f"`refit` must be True for an unfitted method; got False with {estimator!r}. "
            "Fit it first on reference samples independent of `x` and `y`: "
            "`method.fit_critic(x_ref, y_ref, rng=0)`."
        )
    if standardize:
        raise ValueError(
            "`standardize` must be False with `refit`=False, since the fitted critic expects "
            "the units of the data it was fitted on; got True. Transform the reference and "
            "the tested samples alike yourself."
        )


def _check_fit_size(fit_size: Any, split: bool) -> float:
    """``fit_size`` as a float in (0, 1): :data:`FIT_SIZE` for None; refused without a split."""
    if fit_size is None:
        return FIT_SIZE
    if not split:
        raise ValueError(
            "`fit_size` must be None unless the method's critic is fitted on a split of the "
            f"samples (a learned critic with `refit`=True); got {fit_size!r}."
        )
    if isinstance(fit_size, bool) or not isinstance(fit_size, numbers.Real):
        raise TypeError(f"`fit_size` must be a real number in (0, 1); got {fit_size!r}.")
    if not 0.0 < fit_size < 1.0:
        raise ValueError(f"`fit_size` must be a real number in (0, 1); got {fit_size!r}.")
    return float(fit_size)


def two_sample_test(
    x: Any,
    y: Any,
    *,
    method: str | Discrepancy = "mmd",
    n_permutations: int = N_PERMUTATIONS,
    alternative: str = "greater",
    rng: Any = None,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    standardize: bool = False,
    refit: bool = True,
    fit_size: float | None = None,
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
      fitted on part of each sample (``fit_size``), tested on the held-out rest
      (``min(n, m) // 2`` points of each by default) by the mean held-out log-ratio
      difference ``mean_x log r - mean_y log r``; ``details`` also holds the held-out
      accuracy (a classifier two-sample test) with its permutation p-value and its exact
      binomial p-value.

    Train once, test many (``refit=False``): a learned method already fitted on reference
    samples (``method.fit_critic(x_ref, y_ref, rng=0)``) is tested as fitted, on all of ``x``
    and ``y``, with no split and no training; drift monitoring fits once on reference data
    and tests each new batch. The p-value stays exact when the critic never saw ``x`` and
    ``y``: fitted on a draw independent of them, it is a fixed function, so under H0 the
    pooled sample is exchangeable given it, as for a kernel chosen in advance. Fitted on any
    of the tested points, the critic depends on their labels and the test is not valid (it
    rejects too often).

    Parameters
    ----------
    x : array-like or Tensor of shape (n, d) or (n,)
        Sample from P (1-D means one feature).
    y : array-like or Tensor of shape (m, d) or (m,)
        Sample from Q.
    method : str or Discrepancy, default="mmd"
        A method name (see above) or an instance.
    n_permutations : int, default=N_PERMUTATIONS
        B, the number of random relabellings (at least 1); the default,
        :data:`ratiokit.config.N_PERMUTATIONS` (999), is every permutation test's.
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
        A tqdm progress bar on stderr. None shows it only when stderr is a terminal (not a
        log file or a pipe), once the computation has run for a second; True always shows
        it (in a notebook, say) and False never does.
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
    refit : bool, default=True
        Fit a learned critic on a split of ``x`` and ``y`` (True), or test the given method
        as it is already fitted, on all of both samples (False: see "Train once, test many"
        above; the method must have a learned critic, ``test_fit="split"``, be fitted, and
        ``standardize`` be False; nor does the test warn about the features' scales, which
        are the fitted critic's).
    fit_size : float in (0, 1) or None, default=None
        The fraction of the smaller sample a learned critic is fitted on: the test holds out
        ``min(n, m) - ceil(fit_size min(n, m))`` points of each sample and fits on the rest
        of each. None means :data:`FIT_SIZE` (0.5). Only for a learned critic with
        ``refit=True``; given otherwise, it is refused.

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
    estimator, a, b, n_perm, alt, gen, held = _two_sample_test_iv(
        x,
        y,
        method,
        n_permutations,
        alternative,
        rng,
        device,
        progress,
        standardize,
        refit,
        fit_size,
    )
    split_rng, fit_rng, label_rng = gen.spawn(3)
    details: dict[str, Any] = {"standardized": bool(standardize)}
    if standardize:
        a, b = _standardize(a, b)
    elif refit and not estimator.scale_invariant:
        _warn_feature_scales(a, b)
    if not refit:  # a learned critic fitted on independent data: tested as it is, on all
        details["refit"] = False
    elif fits_on_split(estimator):
        (a_fit, b_fit), (a, b) = _split(a, b, held, split_rng)
        estimator.fit_critic(a_fit, b_fit, rng=fit_rng)
        details.update(n_fit_x=a_fit.shape[0], n_fit_y=b_fit.shape[0])
    elif estimator.test_fit == "all":
        estimator.fit_critic(a, b, rng=fit_rng)
    n, m = a.shape[0], b.shape[0]
    scheme = _scheme(estimator)
    labels = draw_labels(n, m, n_perm, label_rng, scheme=scheme).to(a.device)
    result = estimator.null_statistics(torch.cat([a, b]).detach(), labels, progress)
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
    return "swap" if estimator.null == "wild" else "permutation"


def _split(
    a: torch.Tensor, b: torch.Tensor, held: int, rng: np.random.Generator
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Random fit/test split: ``held`` points of each sample are held out for the test."""
    pa = torch.as_tensor(rng.permutation(a.shape[0]), device=a.device)
    pb = torch.as_tensor(rng.permutation(b.shape[0]), device=b.device)
    return (a[pa[held:]], b[pb[held:]]), (a[pa[:held]], b[pb[:held]])
