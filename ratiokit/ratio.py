"""Front door 1, estimate: a discrepancy, a density ratio or a divergence from two samples."""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator
from sklearn.utils import ClassifierTags
from sklearn.utils.validation import check_is_fitted, validate_data

from ratiokit._rng import check_rng
from ratiokit._validation import (
    as_sample,
    as_sample_pair,
    check_choice,
    check_int,
    check_unmasked,
    column_names,
    is_tensor,
)
from ratiokit.config import N_PERMUTATIONS
from ratiokit.diagnostics import ratio_diagnostics
from ratiokit.exceptions import NonFiniteStatisticError
from ratiokit.methods import METHODS, Discrepancy, get_method
from ratiokit.results import ConfidenceInterval, DivergenceResult, RatioDiagnostics
from ratiokit.telescope import check_telescope, check_telescope_body, fit_ratios

__all__ = ["RatioEstimator", "discrepancy", "divergence", "estimate_ratio"]

#: Divergence kinds and how a log-ratio ``l = log p/q`` gives a plug-in estimate of each.
#: H^2 is the squared Hellinger distance 1 - int sqrt(pq); PE is the Pearson divergence
#: (1/2) chi^2 (alpha = 0); JS uses natural logarithms (at most log 2).
KINDS = ("kl", "rkl", "js", "pearson", "hellinger", "tv", "pe")
#: The default method of each kind: the most accurate (smallest mean relative error) in
#: ``benchmarks/results/divergence_defaults.md``; the numbers are in :func:`divergence`.
DEFAULT_METHODS = {
    "kl": "fdiv",
    "rkl": "kliep",
    "js": "fdiv",
    "pearson": "kliep",
    "hellinger": "fdiv",
    "tv": "kliep",
    "pe": "kliep",
}
LOG2 = math.log(2.0)
#: The kinds a telescoped log-ratio estimates (``divergence(telescope=...)``).
TELESCOPE_KINDS = ("kl", "rkl")


def _plugin(kind: str, l_p: torch.Tensor, l_q: torch.Tensor) -> torch.Tensor:
    """Plug-in estimate of ``kind`` from log-ratios at P's points (l_p) and Q's (l_q)."""
    if kind == "kl":
        return l_p.mean()
    if kind == "rkl":
        return -l_q.mean()
    if kind == "js":
        return 0.5 * (LOG2 + l_p - F.softplus(l_p)).mean() + 0.5 * (LOG2 - F.softplus(l_q)).mean()
    if kind == "pearson":
        return torch.expm1(l_q).pow(2).mean()
    if kind == "pe":
        return 0.5 * torch.expm1(l_q).pow(2).mean()
    if kind == "hellinger":
        return 1.0 - torch.exp(0.5 * l_q).mean()
    return 0.5 * torch.expm1(l_q).abs().mean()  # tv


def _can_estimate(cls: type[Discrepancy], kind: str) -> bool:
    return kind in cls.divergence_kinds or (cls.has_log_ratio and cls.ratio_anywhere)


def _divergence_value(
    method: Discrepancy, kind: str, x_p: torch.Tensor, x_q: torch.Tensor
) -> float:
    with torch.no_grad():
        if kind in method.kinds:
            return float(method.estimate_divergence(kind, x_p, x_q))
        return float(_plugin(kind, method.log_ratio(x_p), method.log_ratio(x_q)))


#: What to try when an estimate or a fitted log ratio is not finite.
NONFINITE_FIX = (
    "the method's fit failed or diverged on these samples: rescale the data, regularise the "
    "method (a ridge or `l2`, a smaller learning rate) or choose another method."
)


def _check_finite(values: torch.Tensor, what: str, fix: str, stacklevel: int) -> None:
    """Raise NonFiniteStatisticError if ``values`` hold NaN; warn if they hold +-inf.

    ``what`` names the values in the message, ``fix`` says what to change, and ``stacklevel``
    points the warning at the user's call.
    """
    nan, inf = torch.isnan(values), torch.isinf(values)
    if not bool(nan.any() | inf.any()):
        return
    where = "" if values.ndim == 0 else f" at {int((nan | inf).sum())} of {values.numel()} rows"
    if bool(nan.any()):
        raise NonFiniteStatisticError(f"{what} is NaN{where}; {fix}")
    warnings.warn(f"{what} is infinite{where}; {fix}", UserWarning, stacklevel=stacklevel)


def _training_log_ratio_check(
    method: Discrepancy, x_p: torch.Tensor, x_q: torch.Tensor, stacklevel: int
) -> None:
    """Check the fitted log ratio at the training rows (only Q's where it lives only there)."""
    with torch.no_grad():
        named = (("x_p", x_p), ("x_q", x_q)) if method.ratio_anywhere else (("x_q", x_q),)
        for name, x in named:
            _check_finite(
                method.log_ratio(x),
                f"the log ratio fitted by {method.name!r} on the training sample `{name}`",
                NONFINITE_FIX,
                stacklevel + 1,
            )


def _detached_pair(
    x_p: Any, x_q: Any, min_samples: int, device: str | torch.device | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The validated samples (:func:`as_sample_pair`), detached: no gradient is wanted."""
    a, b = as_sample_pair(x_p, x_q, min_samples=min_samples, device=device)
    return a.detach(), b.detach()


def discrepancy(
    x_p: Any,
    x_q: Any,
    *,
    method: str | Discrepancy = "mmd",
    rng: Any = None,
    device: str | torch.device | None = None,
) -> float:
    """Estimate a discrepancy D(P, Q) from samples ``x_p`` ~ P and ``x_q`` ~ Q.

    ``D`` is the method's own estimate (its ``forward``): MMD^2 for ``"mmd"``, the energy
    distance for ``"energy"``, a variational bound for ``"fdiv"``.

    Parameters
    ----------
    x_p : array-like or Tensor of shape (n, d) or (n,)
        Sample from P (1-D means one feature).
    x_q : array-like or Tensor of shape (m, d) or (m,)
        Sample from Q.
    method : str or Discrepancy, default="mmd"
        A registered method name or an instance; it is copied, never modified.
    rng : None, int or numpy.random.Generator, default=None
        Seed for data-dependent choices (the median-bandwidth subsample, critic training).
    device : str or torch.device, default=None
        Where to compute; default: where the inputs are (the CPU for NumPy input).

    Returns
    -------
    float
        The estimate. An unbiased MMD^2 can be slightly negative when P = Q.

    Raises
    ------
    ValueError, TypeError
        For invalid samples (NaN, inf, wrong shape, too few rows, mismatched features or
        data-frame columns, masked entries, non-numeric data), an unknown method, a wrong
        ``rng``, or an unavailable ``device``.
    NonFiniteStatisticError
        If the estimate is NaN.

    Warns
    -----
    UserWarning
        If the estimate is infinite.

    Notes
    -----
    Tensors are detached (no gradient flows through this function) and half precisions
    (float16, bfloat16) are computed in float32.

    Examples
    --------
    >>> import numpy as np
    >>> gen = np.random.default_rng(0)
    >>> x, y = gen.normal(size=(500, 2)), gen.normal(1.0, 1.0, size=(500, 2))
    >>> discrepancy(x, y, method="mmd", rng=0) > 0.1
    True
    """
    estimator = get_method(method)
    gen = check_rng(rng)
    a, b = _detached_pair(x_p, x_q, estimator.min_samples, device)
    estimator = estimator.to(a.device).fit_critic(a, b, rng=gen)
    with torch.no_grad():
        value = estimator(a, b)
    _check_finite(value, f"the {estimator.name!r} estimate of D(P, Q)", NONFINITE_FIX, 3)
    return float(value)


def _divergence_iv(
    kind: Any,
    method: str | Discrepancy | None,
    n_bootstrap: Any,
    confidence_level: Any,
    weights: tuple[float, ...] | None,
) -> Discrepancy:
    check_choice(kind, "kind", KINDS)
    if method is None and weights is not None:
        method = "classifier"
    method = DEFAULT_METHODS[kind] if method is None else method
    # A name gets the instance configured for `kind` (e.g. the matching f for "fdiv").
    named = isinstance(method, str) and method in METHODS
    estimator = METHODS[method].for_divergence(kind) if named else get_method(method)
    if not _can_estimate(type(estimator), kind):
        able = sorted(name for name, cls in METHODS.items() if _can_estimate(cls, kind))
        raise ValueError(
            f"`method` must be able to estimate {kind!r}, one of {able}; got {estimator.name!r}."
        )
    check_int(n_bootstrap, "n_bootstrap", minimum=0)
    level = confidence_level
    if isinstance(level, bool) or not isinstance(level, numbers.Real):
        raise TypeError(f"`confidence_level` must be a real number in (0, 1); got {level!r}.")
    if not 0.0 < level < 1.0:
        raise ValueError(f"`confidence_level` must be a real number in (0, 1); got {level!r}.")
    if weights is not None:
        _telescope_iv(kind, estimator)
    return estimator


def _telescope_iv(kind: str, estimator: Discrepancy) -> None:
    """Check that a telescoped divergence can be asked of ``kind`` and ``estimator``."""
    if kind not in TELESCOPE_KINDS:
        raise ValueError(
            f"`telescope` needs kind in {list(TELESCOPE_KINDS)} (the mean of the telescoped "
            f"log-ratio); got kind={kind!r}."
        )
    if estimator.name != "classifier" or not (
        estimator.critic is None and estimator.cross_fit is None
    ):
        raise ValueError(
            "`telescope` needs method='classifier' or a Classifier with its default MLP critic "
            f"and no cross_fit (the waymark critics are its MLPs); got method={estimator!r}."
        )


def _telescoped_terms(
    classifier: Discrepancy,
    kind: str,
    weights: tuple[float, ...],
    body: str,
    x_p: torch.Tensor,
    x_q: torch.Tensor,
    gen: np.random.Generator,
) -> np.ndarray:
    """The K terms of a telescoped KL (their means at P's rows) or reverse KL (minus their
    means at Q's rows), of critics trained on ``x_p``, ``x_q``."""
    ratios = fit_ratios(x_p, x_q, weights, body=body, classifier=classifier, rng=gen)
    with torch.no_grad():
        terms = ratios(x_p).mean(dim=0) if kind == "kl" else -ratios(x_q).mean(dim=0)
    return terms.cpu().numpy().astype(np.float64)


def divergence(
    x_p: Any,
    x_q: Any,
    *,
    kind: str = "kl",
    method: str | Discrepancy | None = None,
    n_bootstrap: int = 0,
    confidence_level: float = 0.95,
    telescope: int | Sequence[float] | None = None,
    telescope_body: str | None = None,
    rng: Any = None,
    device: str | torch.device | None = None,
) -> DivergenceResult:
    """Estimate the divergence ``kind`` between P and Q from samples.

    A method with an estimator of its own for ``kind`` (``divergence_kinds``, e.g. a
    variational bound) uses it; any other ratio method plugs its fitted ``log r = log p/q``
    into the definition: KL(P||Q) = E_p[log r], KL(Q||P) = -E_q[log r],
    chi^2 = E_q[(r - 1)^2], PE = chi^2 / 2, H^2 = 1 - E_q[sqrt r], TV = E_q|r - 1| / 2,
    JS = E_p[log(2r / (1 + r))] / 2 + E_q[log(2 / (1 + r))] / 2.

    Parameters
    ----------
    x_p, x_q : array-like or Tensor of shape (n, d) and (m, d)
        Samples from P and Q.
    kind : {"kl", "rkl", "js", "pearson", "hellinger", "tv", "pe"}, default="kl"
    method : str, Discrepancy or None, default=None
        A registered method name (configured for ``kind``, e.g. ``"fdiv"`` with the matching
        ``f``) or an instance. None picks the most accurate method for ``kind`` measured by
        ``benchmarks/divergence_defaults.py`` (see Notes): ``"fdiv"`` for KL, JS and
        Hellinger, ``"kliep"`` for reverse KL, chi^2, PE and TV.
    n_bootstrap : int, default=0
        Bootstrap replicates (both samples resampled, the method refitted) for a standard
        error and a confidence interval; 0 for none.
    confidence_level : float, default=0.95
        Level of the bootstrap percentile interval ``confidence_interval`` (see Notes).
    telescope : None, int or sequence of float (or 1-D array), default=None
        None: one ratio. An int K >= 1: the log-ratio telescoped through K waymark ratios
        with mixing weights ``a_k = k / K``; a sequence: the inner weights
        ``a_1 < ... < a_(K-1)`` in (0, 1). For ``kind`` "kl" or "rkl", with
        ``method="classifier"`` (the default then) or a Classifier with its default MLP
        critic and no ``cross_fit`` (see Notes).
    telescope_body : {"separate", "shared"} or None, default=None
        The telescope's critics: one MLP whose hidden layers are shared by K output heads
        (the default, which measured at least as accurate:
        ``benchmarks/results/mutual_information_bodies.md``), or K separate MLPs. Only with
        ``telescope``.
    rng : None, int or numpy.random.Generator, default=None
    device : str or torch.device, default=None

    Returns
    -------
    DivergenceResult
        ``value``; with a bootstrap also ``standard_error``, ``confidence_interval`` and the
        replicates. With ``telescope``, ``details`` holds ``telescope`` (K),
        ``telescope_body``, ``mixing_weights`` (the K + 1 weights) and ``waymark_terms`` (the
        K terms, which sum to ``value``).

    Raises
    ------
    ValueError, TypeError
        If ``kind`` is unknown or ``method`` cannot estimate it (the message lists those that
        can), ``method`` is neither a name nor a Discrepancy, ``confidence_level`` is not in
        (0, 1), the samples are invalid (as in :func:`discrepancy`), ``device`` is
        unavailable, ``telescope`` is below 1, its weights are not increasing in (0, 1), or
        it is asked of another kind than KL and reverse KL or another method than the
        classifier, or ``telescope_body`` is unknown or given without ``telescope``.
    NonFiniteStatisticError
        If the estimate is NaN (for a plug-in, the message says at how many training rows
        the fitted log ratio is NaN).

    Warns
    -----
    UserWarning
        If the estimate is infinite; if some bootstrap replicates are NaN or infinite (they
        are left out of ``bootstrap``, the standard error and the interval, and counted in
        ``n_nonfinite_bootstrap``); if fewer than 2 replicates are finite (``standard_error``
        and ``confidence_interval`` are then None, never NaN).

    Notes
    -----
    The confidence interval is the bootstrap percentile interval: the ``(1 - level) / 2``
    and ``(1 + level) / 2`` quantiles of the replicates, ``[q_lo(D*), q_hi(D*)]`` (Efron and
    Tibshirani 1993, ch. 13). It is not scipy's default BCa, whose acceleration needs a
    jackknife: ``n + m`` leave-one-out refits of the method (for a trained critic, ``n + m``
    trainings) on top of the bootstrap. The percentile interval needs only the replicates
    already drawn, respects monotone transformations (the interval of ``sqrt(H^2)`` is the
    square root of that of ``H^2``) and stays in the divergence's range; its two-sided
    coverage error is O(1/n), as BCa's (Hall 1992, ch. 3). It inherits the estimator's
    bias: an interval around a biased plug-in is shifted as much. Use a few hundred
    replicates for a 95% interval: its ends are tail quantiles of ``n_bootstrap`` draws.

    Telescoping (Rhodes, Xu and Gutmann 2020) estimates a large KL where a single classifier
    separates the samples and saturates: waymark k holds ``sqrt(1 - a_k^2) x_p + a_k x_q``
    (rows of P and Q paired at random in each minibatch), so waymark 0 is P and waymark K is
    Q; critic k is trained with the logistic loss to separate waymarks k and k + 1, so
    ``f_k ~ log p_k / p_(k+1)``, and ``log p / q = f_0 + ... + f_(K-1)``, whose mean at P's
    rows is KL(P||Q) (at Q's, minus KL(Q||P)). It costs K critics (a step costs K single
    ones), and has a bias of its own: critic k is evaluated at P's rows although trained on
    waymarks k and k + 1, so the far critics extrapolate; a critic class that extrapolates
    well (a linear critic, ``Classifier(hidden=())``, for a mean shift) keeps that small.
    Use it when the single estimate is many nats, not for small divergences, where it only
    adds cost and variance. On a Gaussian mean shift with KL = 20 in d = 5 (n = m = 1000,
    linear critics) the single classifier gives 13.2 and ``telescope=10`` 19.1
    (``tests/test_telescope.py``).

    The defaults come from ``python -m benchmarks.divergence_defaults``: every method that
    can estimate a kind, fitted on n = m = 1000 points of a Gaussian mean shift of norm 1 in
    2-D and of a 1-D Gaussian mixture against a wide Gaussian, 20 seeds each, scored by the
    relative error against the exact divergence. Mean relative error over both pairs (the
    default, then the runner-up, then uLSIF's plug-in; standard errors about 0.01 to 0.02):

    ===========  ===================  ====================  =============
    kind         default              runner-up             ulsif
    ===========  ===================  ====================  =============
    kl           fdiv 0.090           kliep 0.094           0.154
    rkl          kliep 0.123          classifier 0.135      0.258
    js           fdiv 0.079           classifier 0.084      0.154
    pearson      kliep 0.148          rulsif 0.215          0.237
    hellinger    fdiv 0.080           kliep 0.087           0.403
    tv           kliep 0.048          rulsif 0.056          0.057
    pe           kliep 0.148          rulsif 0.215          0.237
    ===========  ===================  ====================  =============

    On the unit shift alone, uLSIF's KL plug-in is off by 16% on average (KLIEP 7%, the KL
    bound of ``"fdiv"`` 8%). Close seconds are within noise; the full table, with biases and
    fit times, is ``benchmarks/results/divergence_defaults.md``.

    References
    ----------
    Efron and Tibshirani (1993), "An Introduction to the Bootstrap", Chapman & Hall.
    Hall (1992), "The Bootstrap and Edgeworth Expansion", Springer.
    Rhodes, Xu and Gutmann (2020), "Telescoping density-ratio estimation", NeurIPS.

    Examples
    --------
    >>> from ratiokit.methods import MomentMatching
    >>> from ratiokit.synthetic import GaussianShift
    >>> pair = GaussianShift(dim=1, shift=1.0)  # KL(P || Q) = 1/2
    >>> res = divergence(pair.sample_p(500, rng=0), pair.sample_q(500, rng=1),
    ...                  method=MomentMatching("mean"), n_bootstrap=200, rng=0)
    >>> low, high = res.confidence_interval
    >>> bool(low < 0.5 < high), res.confidence_level
    (True, 0.95)
    """
    weights = check_telescope(telescope)
    body = check_telescope_body(telescope_body, weights)
    estimator = _divergence_iv(kind, method, n_bootstrap, confidence_level, weights)
    gen = check_rng(rng)
    a, b = _detached_pair(x_p, x_q, estimator.min_samples, device)
    streams = gen.spawn(n_bootstrap + 1)
    details: dict[str, Any] = {}
    if weights is None:
        fitted = get_method(estimator).to(a.device).fit_critic(a, b, rng=streams[0])
        value = _divergence_value(fitted, kind, a, b)
    else:
        terms = _telescoped_terms(estimator, kind, weights, body, a, b, streams[0])
        value = float(terms.sum())
        details = {
            "telescope": len(weights) - 1,
            "telescope_body": body,
            "mixing_weights": np.asarray(weights),
            "waymark_terms": terms,
        }
    if not math.isfinite(value):
        what = f"the {estimator.name!r} estimate of {kind!r}"
        if weights is None and kind not in fitted.kinds:  # a plug-in: where log r fails
            _training_log_ratio_check(fitted, a, b, stacklevel=3)
        _check_finite(torch.tensor(value), what, NONFINITE_FIX, stacklevel=3)
    replicates = []
    for stream in streams[1:]:
        ia = torch.as_tensor(stream.integers(0, a.shape[0], a.shape[0]), device=a.device)
        ib = torch.as_tensor(stream.integers(0, b.shape[0], b.shape[0]), device=a.device)
        if weights is None:
            refit = get_method(estimator).to(a.device).fit_critic(a[ia], b[ib], rng=stream)
            replicates.append(_divergence_value(refit, kind, a[ia], b[ib]))
        else:
            replicates.append(
                float(
                    _telescoped_terms(estimator, kind, weights, body, a[ia], b[ib], stream).sum()
                )
            )
    boot, se, n_bad = _bootstrap_se(np.asarray(replicates), kind, estimator.name)
    interval = None
    if se is not None:
        tail = (1.0 - float(confidence_level)) / 2.0
        low, high = np.quantile(boot, [tail, 1.0 - tail])
        interval = ConfidenceInterval(float(low), float(high))
    return DivergenceResult(
        value,
        kind,
        estimator.name,
        standard_error=se,
        bootstrap=boot,
        details=details,
        n_nonfinite_bootstrap=n_bad,
        confidence_interval=interval,
        confidence_level=float(confidence_level),
    )


def _bootstrap_se(
    replicates: np.ndarray, kind: str, name: str
) -> tuple[np.ndarray | None, float | None, int]:
    """(finite replicates, their standard error, count left out) of a bootstrap.

    Non-finite replicates (a refit on a resample that failed, or an estimate that is infinite
    there) are left out with a warning; with fewer than 2 finite ones there is no standard
    error (None), with a warning. Warnings point at the caller of :func:`divergence`.
    """
    if replicates.size == 0:
        return None, None, 0
    finite = np.isfinite(replicates)
    n_bad = int((~finite).sum())
    if n_bad:
        warnings.warn(
            f"{n_bad} of {replicates.size} bootstrap replicates of the {name!r} estimate of "
            f"{kind!r} are not finite ({replicates[~finite][:3].tolist()}...); they are left "
            "out of `bootstrap` and `standard_error` and counted in `n_nonfinite_bootstrap`. "
            "A resample repeats points, which some fits cannot handle: use more data, "
            "another method, or settings that regularise the fit.",
            UserWarning,
            stacklevel=3,
        )
    boot = replicates[finite]
    if boot.size < 2:
        warnings.warn(
            f"`standard_error` is None: it needs at least 2 finite bootstrap replicates; got "
            f"{boot.size} of {replicates.size}. Increase `n_bootstrap`.",
            UserWarning,
            stacklevel=3,
        )
        return boot, None, n_bad
    return boot, float(np.std(boot, ddof=1)), n_bad


class RatioEstimator(BaseEstimator):
    """Density-ratio estimator ``r(x) = p(x) / q(x)`` with the scikit-learn interface.

    ``fit(X, y)`` takes the pooled sample with ``y = 1`` marking rows from P (the
    numerator) and ``y = 0`` rows from Q, so ``clone``, ``GridSearchCV`` and pipelines work.

    Parameters
    ----------
    method : str or Discrepancy, default="ulsif"
        A registered ratio method (``has_log_ratio``) or an instance, copied at ``fit``.
    rng : None, int or numpy.random.Generator, default=None
        Stored as given; an int makes ``fit`` reproducible bit for bit on the CPU.
    device : str or torch.device, default=None

    Attributes
    ----------
    method_ : Discrepancy
        The fitted method.
    n_features_in_ : int
    n_p_, n_q_ : int
        Sizes of the two samples seen in ``fit``.
    classes_ : ndarray of shape (2,)
        ``[0, 1]``: Q's label, then P's.

    Notes
    -----
    ``y`` must hold exactly the labels 0 and 1: which of two other labels marks the
    numerator would be a guess. It is a classifier of the two samples in scikit-learn's
    sense: :meth:`predict_proba` and :meth:`predict` give the sample each row is from, and
    an integer ``cv`` in ``GridSearchCV`` means stratified folds, each holding both samples.
    It passes scikit-learn's estimator checks except those that fit with other labels or
    expect scikit-learn's wording of an error (see ``tests/test_sklearn.py``). :meth:`score`
    is the mean log-likelihood of the implied classifier, so ``GridSearchCV`` compares ratio
    methods or their settings on held-out folds; a method's own settings are reached by
    nested names, ``{"method__n_centres": [50, 100]}`` for ``RatioEstimator(ULSIF())``. At
    the end of a :class:`~sklearn.pipeline.Pipeline`, :meth:`decision_function` gives the log
    ratio. :meth:`diagnostics` checks a fitted ratio on held-out samples.

    Examples
    --------
    >>> import numpy as np
    >>> from ratiokit.synthetic import GaussianShift
    >>> pair = GaussianShift(dim=2, shift=1.0)
    >>> X = np.vstack([pair.sample_p(400, rng=0), pair.sample_q(400, rng=1)])
    >>> y = np.r_[np.ones(400, dtype=int), np.zeros(400, dtype=int)]
    >>> est = RatioEstimator("kliep", rng=0).fit(X, y)
    >>> x = pair.sample_q(2000, rng=2)
    >>> err = est.log_ratio(x) - pair.log_ratio(x)  # exact: log r = mu . x - 1/2
    >>> bool(np.mean(err**2) < 0.3)  # Var_q(log r) = 1: the zero predictor's MSE
    True
    """

    def __init__(
        self,
        method: str | Discrepancy = "ulsif",
        *,
        rng: Any = None,
        device: str | torch.device | None = None,
    ) -> None:
        self.method = method
        self.rng = rng
        self.device = device

    def set_params(self, **params: Any) -> RatioEstimator:
        """Set parameters, the method's own by nested names (``method__n_centres=50``).

        With a method given by name, nested names apply to a fresh instance of that method
        (``"ulsif"`` becomes ``ULSIF(n_centres=50)``), as ``GridSearchCV`` needs for
        ``RatioEstimator()`` with ``{"method__n_centres": [50, 100]}``.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For an unknown parameter, nested or not, or an unknown method name.
        """
        method = params.get("method", self.method)
        if isinstance(method, str) and any(key.startswith("method__") for key in params):
            params = {**params, "method": get_method(method)}
        return super().set_params(**params)

    def fit(self, X: Any, y: Any) -> RatioEstimator:  # noqa: N803 - scikit-learn convention
        """Fit on the pooled sample ``X`` with ``y`` in {0, 1} (1 = sample from P).

        Raises
        ------
        ValueError, TypeError
            For invalid ``X`` (masked entries included) or labels, a method that is not a
            ratio method or that fits no log ratio on these samples (``"moments"`` when no
            exponential tilt of Q's rows matches P's mean statistics: its default
            ``"mean_cov"`` has ``d + d (d + 1) / 2`` of them), or an unavailable ``device``.
        NonFiniteStatisticError
            If the fitted log ratio is NaN at some training row.

        Warns
        -----
        UserWarning
            If the fitted log ratio is infinite at some training row.
        """
        return self._fit(X, y)

    def _fit(self, X: Any, y: Any) -> RatioEstimator:  # noqa: N803
        """:meth:`fit`; its warnings point two frames up (the user's call of a public door)."""
        check_unmasked(X, "X")
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])  # noqa: N806
        _check_labels(y)
        method = get_method(self.method)
        if not method.has_log_ratio:
            able = sorted(name for name, cls in METHODS.items() if cls.has_log_ratio)
            raise ValueError(
                f"`method` must be a ratio method, one of {able}; got {method.name!r}."
            )
        x_p, x_q = as_sample_pair(
            X[y == 1], X[y == 0], min_samples=method.min_samples, device=self.device
        )
        self.method_ = method.to(x_p.device).fit_critic(x_p, x_q, rng=check_rng(self.rng))
        self.n_p_, self.n_q_ = x_p.shape[0], x_q.shape[0]
        self.classes_ = np.array([0, 1])
        try:
            _training_log_ratio_check(self.method_, x_p, x_q, stacklevel=4)
        except RuntimeError as err:  # the method fitted no log ratio it can evaluate
            raise ValueError(
                f"`method` must fit a log ratio on these samples; got {method.name!r}, which "
                f"did not: {err}"
            ) from err
        return self

    def log_ratio(self, X: Any) -> Any:  # noqa: N803
        """``log r(x)`` at the rows of ``X``: NumPy in, NumPy out; a tensor in, a tensor out.

        ``X`` of shape (n, d), or (n,) for n points of one feature; a tensor's dtype is kept
        (half precisions are computed in float32) and no gradient flows.
        """
        check_is_fitted(self)
        tensor_in = is_tensor(X)
        if not tensor_in:
            check_unmasked(X, "X")
            if np.ndim(X) == 1:  # 1-D means one feature, as at every front door
                X = np.reshape(X, (-1, 1))  # noqa: N806
            X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])  # noqa: N806
        x = as_sample(X, "X", min_samples=1).detach()
        if x.shape[1] != self.n_features_in_:
            raise ValueError(
                f"`X` must have {self.n_features_in_} features, as in `fit`; got {x.shape[1]}."
            )
        param = next(iter(self.method_.parameters()), None)
        device = param.device if param is not None else x.device
        with torch.no_grad():
            out = self.method_.log_ratio(x.to(device))
        return out.to(X.dtype) if tensor_in else out.cpu().numpy()

    def ratio(self, X: Any) -> Any:  # noqa: N803
        """``r(x) = p(x) / q(x)`` at the rows of ``X``."""
        out = self.log_ratio(X)
        return out.exp() if is_tensor(out) else np.exp(out)

    def decision_function(self, X: Any) -> Any:  # noqa: N803
        """``log r(x)`` at the rows of ``X``, as :meth:`log_ratio`: the door a Pipeline opens.

        A pipeline forwards only scikit-learn's methods, so
        ``make_pipeline(StandardScaler(), RatioEstimator()).decision_function(X)`` is the log
        ratio of the scaled rows, which is the log ratio of the raw rows: an invertible map
        applied to both samples multiplies both densities by the same Jacobian. Unlike a
        classifier's logit it leaves out the class prior: it is positive where ``p > q``, and
        :meth:`predict` adds ``log(n_p_ / n_q_)`` before thresholding.
        """
        return self.log_ratio(X)

    def predict_proba(self, X: Any) -> np.ndarray:  # noqa: N803
        """Probability that each row of ``X`` is from P (column 1) or from Q (column 0).

        ``P(y = 1 | x) = r(x) n_p / (r(x) n_p + n_q) = sigmoid(log r(x) + log(n_p_ / n_q_))``:
        the class-probability a classifier would give for a row drawn from the training mix
        of the two samples (``n_p_`` rows from P, ``n_q_`` from Q).

        Returns
        -------
        ndarray of shape (n, 2)
            Columns in the order of ``classes_``, ``[0, 1]`` (Q, P); NumPy for any input.
        """
        logit = torch.as_tensor(self._membership_logit(X))
        return torch.stack([torch.sigmoid(-logit), torch.sigmoid(logit)], 1).numpy()

    def predict(self, X: Any) -> np.ndarray:  # noqa: N803
        """The more probable sample of each row of ``X`` (1 = P, 0 = Q), by :meth:`predict_proba`.

        Returns
        -------
        ndarray of shape (n,)
        """
        positive = self._membership_logit(X) > 0  # checks that the estimator is fitted
        return self.classes_[positive.astype(int)]

    def _membership_logit(self, X: Any) -> np.ndarray:  # noqa: N803
        """``log r(x) + log(n_p_ / n_q_)`` in float64 NumPy: the implied classifier's logit."""
        out = self.log_ratio(X)
        out = out.detach().cpu().numpy() if is_tensor(out) else out
        return np.asarray(out, dtype=np.float64) + math.log(self.n_p_ / self.n_q_)

    def score(self, X: Any, y: Any) -> float:  # noqa: N803
        """Mean log-likelihood of ``y`` under the classifier the ratio implies (higher is better).

        ``P(y = 1 | x) = sigmoid(log r(x) + log(n_p / n_q))`` with the class sizes of ``y``:
        a proper scoring rule, so ``GridSearchCV`` selects the best-calibrated ratio.
        """
        y = np.asarray(y)
        _check_labels(y)
        logit = torch.as_tensor(np.asarray(self.log_ratio(X), dtype=np.float64))
        n_p, n_q = int((y == 1).sum()), int((y == 0).sum())
        logit = logit + math.log(n_p / n_q)
        target = torch.as_tensor(y == 1, dtype=torch.float64)
        return float(-F.binary_cross_entropy_with_logits(logit, target))

    def diagnostics(
        self,
        x_p: Any,
        x_q: Any,
        *,
        n_bins: int = 10,
        test_method: str | Discrepancy = "mmd",
        n_permutations: int = N_PERMUTATIONS,
        alpha: float = 0.05,
        rng: Any = None,
    ) -> RatioDiagnostics:
        """Check the fitted ratio on held-out samples ``x_p`` ~ P and ``x_q`` ~ Q.

        The balancing identities ``E_q[r] = 1`` and ``E_p[1/r] = 1`` with standard errors,
        the reliability curve of the implied classifier ``D = r n_p / (r n_p + n_q)``, and a
        two-sample test of P's sample against Q's sample thinned by rejection sampling with
        acceptance ``r / max r``; see :func:`ratiokit.diagnostics.ratio_diagnostics` for the
        parameters (``n_permutations`` defaults to :data:`ratiokit.config.N_PERMUTATIONS`)
        and why each check is valid. ``.plot()`` draws the result.

        Returns
        -------
        RatioDiagnostics
        """
        check_is_fitted(self)
        return ratio_diagnostics(
            self, x_p, x_q, n_bins=n_bins, test_method=test_method,
            n_permutations=n_permutations, alpha=alpha, rng=rng,
        )  # fmt: skip

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        # A classifier of the two samples: integer `cv` in GridSearchCV and cross_val_score
        # then means stratified folds, so every fold holds rows of P and of Q.
        tags.estimator_type = "classifier"
        # y marks two samples: scikit-learn's estimator checks then pass binary targets.
        tags.classifier_tags = ClassifierTags(multi_class=False)
        tags.non_deterministic = self.rng is None
        return tags


def _check_labels(y: np.ndarray) -> None:
    """Raise unless ``y`` holds both labels 1 (P) and 0 (Q), and nothing else."""
    labels = np.unique(y)
    if not np.isin(labels, [0, 1]).all():
        raise ValueError(
            f"`y` must mark the two samples with 1 (P) and 0 (Q); got labels {labels[:5]}."
        )
    if labels.size != 2:
        raise ValueError(
            "`y` must mark the two samples with 1 (P) and 0 (Q); got one class, "
            f"{labels.tolist()}."
        )


def estimate_ratio(
    x_p: Any,
    x_q: Any,
    *,
    method: str | Discrepancy = "ulsif",
    rng: Any = None,
    device: str | torch.device | None = None,
) -> RatioEstimator:
    """Fit a density ratio ``r(x) = p(x) / q(x)`` from samples ``x_p`` ~ P and ``x_q`` ~ Q.

    The functional shortcut for ``RatioEstimator(method, rng=rng, device=device).fit(X, y)``
    on the pooled rows, ``y = 1`` for P's.

    Parameters
    ----------
    x_p : array-like or Tensor of shape (n, d) or (n,)
        Sample from P, the numerator.
    x_q : array-like or Tensor of shape (m, d) or (m,)
        Sample from Q, the denominator.
    method : str or Discrepancy, default="ulsif"
        A registered ratio method or an instance (copied, never modified).
    rng : None, int or numpy.random.Generator, default=None
        An int gives the same fit bit for bit on the CPU.
    device : str or torch.device, default=None

    Returns
    -------
    RatioEstimator
        Fitted: ``.log_ratio(x)`` and ``.ratio(x)`` evaluate it, ``.diagnostics(x_p, x_q)``
        checks it on held-out samples.

    Raises
    ------
    ValueError, TypeError
        For invalid samples (as in :func:`discrepancy`), a method that is not a ratio
        method, or an unavailable ``device``.
    NonFiniteStatisticError
        If the fitted log ratio is NaN at some point of ``x_p`` or ``x_q``.

    Warns
    -----
    UserWarning
        If the fitted log ratio is infinite at some point of ``x_p`` or ``x_q``.

    Notes
    -----
    Tensors are detached and half precisions computed in float32. Data frames must have the
    same columns in the same order (:func:`discrepancy`); their column names, where all
    are strings, become ``feature_names_in_``, which :meth:`RatioEstimator.log_ratio` checks
    as scikit-learn does.

    Examples
    --------
    >>> from ratiokit.synthetic import GaussianShift
    >>> pair = GaussianShift(dim=1, shift=1.0)  # log r(x) = x - 1/2
    >>> est = estimate_ratio(pair.sample_p(500, rng=0), pair.sample_q(500, rng=1), rng=0)
    >>> est.log_ratio([[-1.0], [0.5], [2.0]]).round(1)  # exact: -1.5, 0, 1.5
    array([-1.7,  0.2,  1.4])
    """
    a, b = _detached_pair(x_p, x_q, 1, device)
    X = torch.cat([a, b]).cpu().numpy()  # noqa: N806
    y = np.r_[np.ones(a.shape[0], dtype=int), np.zeros(b.shape[0], dtype=int)]
    est = RatioEstimator(method, rng=rng, device=device)._fit(X, y)
    names = column_names(x_p)
    if names is not None and all(isinstance(c, str) for c in names):
        est.feature_names_in_ = np.asarray(names, dtype=object)  # as fit on a data frame
    return est
