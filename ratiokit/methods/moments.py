"""Moment matching: a distance between mean statistics, and the exponential tilt matching them."""

from __future__ import annotations

import itertools
import math
import numbers
import warnings
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import torch
from scipy import stats

from ratiokit._permutation import LabelMatrix, Statistics
from ratiokit._validation import (
    as_sample,
    as_sample_pair,
    check_choice,
    check_int,
    check_positive,
    is_tensor,
)
from ratiokit.kernels import power_of_two_scale
from ratiokit.methods._base import Discrepancy
from ratiokit.methods._hotelling import hotelling_statistics

__all__ = ["HotellingT2", "MomentMatching"]

STATISTICS = ("mean", "mean_cov", "poly")
WEIGHTINGS = ("identity", "hotelling")
#: Newton's method on the tilt's dual: stop when every moment of the tilted Q sample matches
#: P's to this many standard deviations (of the statistic on the Q sample).
GRAD_TOL = 1e-10
MAX_ITER = 100

StatisticsFn = Callable[[torch.Tensor], torch.Tensor]


class HotellingT2(NamedTuple):
    """Two-sample Hotelling T^2 of the mean statistics, with its F-distribution degrees.

    ``F = df2 / (df1 (n + m - 2)) T^2 ~ F(df1, df2)`` under H0 for Gaussian statistics, with
    ``df1 = k`` statistics and ``df2 = n + m - k - 1``.
    """

    t2: float
    df1: int
    df2: int

    @property
    def f_statistic(self) -> float:
        """``(n + m - k - 1) / (k (n + m - 2)) T^2``, F(k, n + m - k - 1)-distributed under H0."""
        return self.df2 / (self.df1 * (self.df2 + self.df1 - 1)) * self.t2

    @property
    def pvalue(self) -> float:
        """Upper-tail F(df1, df2) probability of :attr:`f_statistic`, exact for Gaussian data."""
        return float(stats.f.sf(self.f_statistic, self.df1, self.df2))


class MomentMatching(Discrepancy):
    r"""Moment matching: the distance between the mean statistics of two samples.

    ``D = (mean_p s - mean_q s)' W (mean_p s - mean_q s)``, with ``W = I`` or ``W = S^-1``.

    ``s(x)`` is a vector of k statistics: ``"mean"`` (``x``, k = d), ``"mean_cov"`` (``x``
    and the upper triangle of ``x x'``, the first and second moments, k = d + d (d + 1) / 2),
    ``"poly"`` (every monomial of total degree 1 to ``degree``, k = C(d + degree, d) - 1) or a
    callable. With ``weighting="identity"`` the distance is the squared Euclidean norm of the
    difference of the mean statistics; with ``"hotelling"``, ``W`` is the inverse of the
    pooled covariance ``S`` of the statistics, so the distance is invariant to invertible
    linear maps of ``s`` (units included), and for ``"mean"`` it is the two-sample Hotelling
    T^2 divided by ``n m / (n + m)`` (see :meth:`hotelling_t2`). Both are plug-in (V-type)
    estimates of the population distance, biased upwards by the sampling noise of the means
    (under P = Q the identity-weighted one has expectation
    ``tr Cov(s) (1/n + 1/m)``). :meth:`forward` needs no fit.

    The density ratio is the *exponential tilt* of Q whose mean statistics match P's,
    ``r(x) = exp(lambda . s(x)) / Z`` with ``Z = mean_q exp(lambda . s(y_j))``, fitted by
    :meth:`fit_critic` through the convex dual
    ``max_lambda  lambda . mean_p s - log mean_q exp(lambda . s(y_j))``. Its optimum
    reweights the Q sample by ``w_j ~ exp(lambda . s(y_j))`` so that ``sum_j w_j s(y_j)`` is
    P's mean statistic, with the smallest ``KL(w || uniform)`` (the maximum-entropy,
    KL-projection tilt), and it is recovered exactly whenever ``log p/q`` lies in the span of
    ``1`` and ``s``: a Gaussian mean shift is linear in ``x`` (``"mean"``), a change of
    covariance is quadratic (``"mean_cov"``). The dual is solved by Newton's method with a
    backtracking line search, on statistics standardised by their Q-sample mean and standard
    deviation, in float64 (a k x k Hessian per step: O(m k^2)), to a moment mismatch of 1e-10
    standard deviations. If P's mean statistics lie outside the convex hull of the Q
    statistics, no reweighting of the Q sample matches them: the dual is unbounded, the KL
    estimate is ``inf`` and :meth:`log_ratio` raises; set ``l2 > 0`` (the dual then always
    has a maximiser), use fewer statistics, or more Q points.

    The KL estimate (``divergence_kinds = ("kl",)``) is the dual optimum,
    ``mean_p log r(x_i)``, which estimates ``KL(Q_tilt || Q)`` for the population tilt
    ``Q_tilt``. By the Pythagorean identity of the I-projection,
    ``KL(P || Q) = KL(P || Q_tilt) + KL(Q_tilt || Q)``, so it estimates a lower bound on
    ``KL(P || Q)``, exact when ``log p/q`` is in the span of the statistics. Evaluated on
    other samples than those fitted on, it is the Donsker-Varadhan lower bound at the fitted
    ``lambda``.

    Parameters
    ----------
    statistics : {"mean", "mean_cov", "poly"} or callable, default="mean_cov"
        The statistics ``s``. A callable maps a tensor of shape (n, d) to a tensor of shape
        (n, k) of finite values, differentiably for :meth:`forward` to have gradients (it must
        be a picklable, module-level function for the method to pickle).
    degree : int, default=2
        Highest total degree of the ``"poly"`` monomials (at least 1; ``"poly"`` with
        ``degree=2`` is ``"mean_cov"``, with ``degree=1`` it is ``"mean"``).
    weighting : {"identity", "hotelling"}, default="identity"
        ``W`` in the distance above.
    ridge : float, default=1e-8
        For ``"hotelling"`` and :meth:`hotelling_t2`: ``ridge * tr(S) / k`` is added to the
        diagonal of the pooled covariance ``S``, so that it is invertible with fewer points
        than statistics or with collinear statistics. At the default it changes ``T^2`` by
        about ``1e-8`` relatively for a well-conditioned ``S``.
    l2 : float, default=0.0
        Ridge on the tilt's dual, ``- (l2 / 2) ||lambda * sd_q(s)||^2`` (on the standardised
        statistics, so ``l2`` has no units). 0 gives the exact moment-matching tilt; a
        positive value always has a solution and shrinks the ratio towards 1.

    Attributes
    ----------
    lambda_ : Tensor of shape (k,), float64, or None
        The tilt's coefficients; None when no tilt matches (see above).
    log_normalizer_ : float or None
        ``log Z = log mean_q exp(lambda . s(y_j))`` on the fitted Q sample.
    dual_value_ : float
        The dual optimum on the fitted samples: the KL estimate (``inf`` when no tilt matches).
    n_iter_ : int
        Newton steps taken.
    n_features_in_ : int
        Number of features ``d`` of the fitted samples.

    References
    ----------
    Hotelling (1931), "The generalization of Student's ratio", Ann. Math. Statist. 2(3).
    Csiszár (1975), "I-divergence geometry of probability distributions and minimization
    problems", Ann. Probab. 3(1). Li, Swersky and Zemel (2015), "Generative moment matching
    networks", ICML.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> x_q = torch.randn(4000, 1, generator=g, dtype=torch.float64)  # Q = N(0, 1)
    >>> x_p = torch.randn(4000, 1, generator=g, dtype=torch.float64) + 0.5  # P = N(0.5, 1)
    >>> mm = MomentMatching("mean").fit_critic(x_p, x_q)
    >>> round(float(mm.lambda_[0]), 1)  # log p/q = 0.5 x - 0.125 exactly
    0.5
    >>> round(float(mm.estimate_divergence("kl", x_p, x_q)), 2)  # KL(P || Q) = 0.125
    0.12
    >>> round(float(mm(x_p, x_q)), 2)  # (mean_p x - mean_q x)^2
    0.24
    >>> test = MomentMatching("mean").hotelling_t2(x_p, x_q)
    >>> test.df1, test.df2, test.pvalue < 1e-10
    (1, 7998, True)
    """

    name: ClassVar[str] = "moments"
    has_log_ratio: ClassVar[bool] = True
    learned_critic: ClassVar[bool] = True
    divergence_kinds: ClassVar[tuple[str, ...]] = ("kl",)
    test_fit: ClassVar[str] = "none"  # the test's statistic is Hotelling's T^2: no critic
    scale_invariant: ClassVar[bool] = True

    def __init__(
        self,
        statistics: str | StatisticsFn = "mean_cov",
        *,
        degree: int = 2,
        weighting: str = "identity",
        ridge: float = 1e-8,
        l2: float = 0.0,
    ) -> None:
        super().__init__()
        if isinstance(statistics, str):
            check_choice(statistics, "statistics", STATISTICS)
        elif not callable(statistics):
            raise TypeError(
                f"`statistics` must be one of {sorted(STATISTICS)} or a callable; "
                f"got {statistics!r}."
            )
        self.statistics = statistics
        self.degree = check_int(degree, "degree", minimum=1)
        self.weighting = check_choice(weighting, "weighting", WEIGHTINGS)
        self.ridge = check_positive(ridge, "ridge")
        if isinstance(l2, bool) or not isinstance(l2, numbers.Real):
            raise TypeError(f"`l2` must be a non-negative real number; got {l2!r}.")
        if not (math.isfinite(l2) and l2 >= 0):
            raise ValueError(f"`l2` must be a non-negative real number; got {l2!r}.")
        self.l2 = float(l2)
        self.lambda_: torch.Tensor | None = None
        self.log_normalizer_: float | None = None
        self.dual_value_: float | None = None
        self.n_iter_ = 0
        self.n_features_in_: int | None = None

    @classmethod
    def for_two_sample_test(cls) -> MomentMatching:
        """Hotelling's test of the means (``"mean"``, k = d), the test ``method="moments"`` names.

        ``"mean_cov"`` would add ``d (d + 1) / 2`` second moments, needing more than
        ``d (d + 3) / 2 + 1`` rows in all; pass an instance to test other statistics.
        """
        return cls("mean")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The statistics ``s(x)`` at the rows of ``x`` (n, d), as a float64 tensor (n, k).

        Differentiable in ``x`` (for a callable, as far as the callable is).

        Raises
        ------
        TypeError, ValueError
            If a callable ``statistics`` returns something other than a finite tensor of
            shape (n, k).
        """
        if callable(self.statistics):
            return _checked_statistics(self.statistics, x)
        x64 = x.to(torch.float64)
        if self.statistics == "mean":
            return x64
        return _monomials(x64, 2 if self.statistics == "mean_cov" else self.degree)

    def n_statistics(self, n_features: int) -> int | None:
        """k, the number of statistics for data with ``n_features`` columns (None: a callable's
        count is known only once it runs).

        Examples
        --------
        >>> MomentMatching("mean_cov").n_statistics(3)  # 3 means + 6 second moments
        9
        """
        if callable(self.statistics):
            return None
        top = {"mean": 1, "mean_cov": 2, "poly": self.degree}[self.statistics]
        return math.comb(n_features + top, top) - 1

    def pooled_statistics(self, z: torch.Tensor) -> torch.Tensor:
        """The statistics behind Hotelling's T^2 at the rows of the pooled sample ``z``.

        For the built-in statistics, ``s((z - mean z) / c)`` with ``c`` the power of two
        nearest the RMS of the centred ``z`` (:func:`ratiokit.kernels.power_of_two_scale`):
        the monomials of degree 1 to D of ``a z + b`` are an invertible affine map of those of
        ``z``, and T^2 is invariant to such maps (to ``ridge`` precision), so this changes
        nothing in exact arithmetic, but keeps the statistics of order 1 at any location and
        units (no overflow, no loss of the second moments to the ridge or to rounding). A
        callable's statistics are taken on ``z`` as given.
        """
        if callable(self.statistics):
            return self.features(z)
        z64 = z.to(torch.float64)
        z64 = z64 - z64.mean(0)
        return self.features(z64 / power_of_two_scale(z64))

    def forward(self, x_p: torch.Tensor, x_q: torch.Tensor) -> torch.Tensor:
        """The moment distance as a 0-d tensor of ``x_p``'s dtype, differentiable in both."""
        s_p, s_q = self._feature_pair(x_p, x_q)
        delta = s_p.mean(0) - s_q.mean(0)
        if self.weighting == "identity":
            value = delta @ delta
        else:
            value = delta @ torch.linalg.solve(self._pooled_cov(s_p, s_q), delta)
        return value.to(x_p.dtype)

    def hotelling_t2(self, x_p: Any, x_q: Any) -> HotellingT2:
        r"""Two-sample Hotelling T^2 of the statistics, with the degrees of its F null.

        ``T^2 = (n m / (n + m)) delta' S^-1 delta`` with ``delta = mean_p s - mean_q s`` and
        ``S`` the pooled covariance of the statistics (with the ``ridge``). Under H0: P = Q
        with Gaussian statistics (``"mean"`` on Gaussian data),
        ``F = (n + m - k - 1) / (k (n + m - 2)) T^2`` follows F(k, n + m - k - 1) exactly;
        the returned tuple's ``pvalue`` is its upper tail. For other statistics the F law is
        an approximation (a permutation test is exact). ``weighting`` is ignored here.

        The statistics are taken on the pooled sample centred and rescaled by a power of two
        (:meth:`pooled_statistics`), so for the built-in statistics T^2 does not depend on the
        data's location or units, as in exact arithmetic.

        Parameters
        ----------
        x_p : array-like or Tensor of shape (n, d)
        x_q : array-like or Tensor of shape (m, d)

        Returns
        -------
        HotellingT2
            ``(t2, df1, df2)`` with ``df1 = k`` and ``df2 = n + m - k - 1``.

        Raises
        ------
        ValueError
            If a sample is invalid or ``n + m - k - 1 < 1`` (too few points for the F law;
            checked before the statistics are built for the built-in ones).
        """
        x_p, x_q = as_sample_pair(x_p, x_q, min_samples=self.min_samples)
        n, m = x_p.shape[0], x_q.shape[0]
        with torch.no_grad():
            z = torch.cat([x_p, x_q])
            k = self.n_statistics(z.shape[1])
            s = self.pooled_statistics(z) if k is None else None  # a callable's k: run it
            k = s.shape[1] if s is not None else k
            if n + m - k - 1 < 1:
                raise ValueError(
                    f"`x_p` and `x_q` must have more than k + 1 = {k + 1} rows together for "
                    f"Hotelling's T^2 with k = {k} statistics; got {n} + {m}."
                )
            s = self.pooled_statistics(z) if s is None else s
            s_p, s_q = s[:n], s[n:]
            delta = s_p.mean(0) - s_q.mean(0)
            quad = delta @ torch.linalg.solve(self._pooled_cov(s_p, s_q), delta)
        return HotellingT2(float(quad) * n * m / (n + m), k, n + m - k - 1)

    def null_statistics(
        self, z: torch.Tensor, labels: LabelMatrix, progress: bool | None
    ) -> Statistics:
        """Hotelling's T^2 (:meth:`hotelling_t2`) of every relabelling, from one
        eigendecomposition of the pooled statistics, with ``details["f_pvalue"]``."""
        return hotelling_statistics(self, z, labels, progress, batched=True)

    def fit_critic(
        self, x_p: torch.Tensor, x_q: torch.Tensor, *, rng: Any = None
    ) -> MomentMatching:
        """Fit the exponential tilt of ``x_q`` whose mean statistics match those of ``x_p``.

        Parameters
        ----------
        x_p : Tensor of shape (n, d)
            Sample from P (the numerator).
        x_q : Tensor of shape (m, d)
            Sample from Q (the denominator, the one tilted).
        rng : None, int or numpy.random.Generator, default=None
            Unused: the fit is deterministic.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            If a sample is invalid, or ``statistics`` returns a bad value.

        Warns
        -----
        UserWarning
            If Newton's method stops before its tolerance.
        """
        x_p, x_q = as_sample_pair(x_p, x_q, min_samples=self.min_samples)
        with torch.no_grad():
            s_p, s_q = self._feature_pair(x_p.detach(), x_q.detach())
            lam, mismatch, self.n_iter_ = _solve_tilt(s_p, s_q, self.l2)
            log_z = torch.logsumexp(s_q @ lam, 0) - math.log(s_q.shape[0])
            dual = float((s_p @ lam).mean() - log_z)
        self.n_features_in_ = x_p.shape[1]
        if self.l2 == 0.0 and dual > math.log(s_q.shape[0]):
            # Weak duality: the dual is <= KL(w || uniform) <= log m for any reweighting w
            # that matches, so exceeding log m proves that none exists.
            self.lambda_, self.log_normalizer_, self.dual_value_ = None, None, math.inf
            return self
        if mismatch > GRAD_TOL:
            warnings.warn(
                f"the exponential tilt stopped after {self.n_iter_} Newton steps short of "
                f"convergence (moment mismatch {mismatch:.1e} standard deviations); P's mean "
                "statistics are near the edge of the Q sample's: set `l2` > 0, use fewer "
                "statistics or more Q points.",
                stacklevel=2,
            )
        self.lambda_, self.log_normalizer_, self.dual_value_ = lam, float(log_z), dual
        return self

    def log_ratio(self, x: Any) -> Any:
        """``lambda . s(x) - log Z``, the tilt's log ratio at the rows of ``x``, shape (n,).

        Normalised on the fitted Q sample: the mean of ``exp(log_ratio)`` over it is 1.
        Differentiable in a tensor ``x``.

        Parameters
        ----------
        x : Tensor or array of shape (n, d)

        Returns
        -------
        Tensor or array of shape (n,), of ``x``'s type, dtype and device

        Raises
        ------
        RuntimeError
            Before :meth:`fit_critic`, or when no tilt matched the fitted samples.
        ValueError
            If ``x`` is not a finite sample with the fitted number of features.
        """
        lam = self._fitted_lambda()
        t = as_sample(x, "x", min_samples=1)
        if t.shape[1] != self.n_features_in_:
            raise ValueError(
                f"`x` must have {self.n_features_in_} features, as in `fit_critic`; "
                f"got shape {tuple(t.shape)}."
            )
        out = (self.features(t) @ lam.to(t.device) - self.log_normalizer_).to(t.dtype)
        return out if is_tensor(x) else out.detach().cpu().numpy()

    def estimate_divergence(self, kind: str, x_p: Any, x_q: Any) -> torch.Tensor:
        """``KL``: ``lambda . mean_p s - log mean_q exp(lambda . s)`` at the fitted ``lambda``.

        On the samples of :meth:`fit_critic` this is the dual optimum (see the class notes);
        on others, the Donsker-Varadhan lower bound on ``KL(P || Q)`` at the fitted tilt.
        ``inf`` when no tilt matched. A 0-d tensor of ``x_p``'s dtype, differentiable in both.

        Raises
        ------
        NotImplementedError
            For a ``kind`` other than ``"kl"``.
        RuntimeError
            Before :meth:`fit_critic`.
        """
        if kind not in self.divergence_kinds:
            return super().estimate_divergence(kind, x_p, x_q)
        self._check_fitted()
        x_p, x_q = as_sample_pair(x_p, x_q, min_samples=self.min_samples)
        if self.lambda_ is None:
            return torch.tensor(math.inf, dtype=x_p.dtype, device=x_p.device)
        s_p, s_q = self._feature_pair(x_p, x_q)
        lam = self.lambda_.to(s_p.device)
        value = (s_p @ lam).mean() - (torch.logsumexp(s_q @ lam, 0) - math.log(s_q.shape[0]))
        return value.to(x_p.dtype)

    def extra_repr(self) -> str:
        stat = self.statistics
        text = repr(stat) if isinstance(stat, str) else getattr(stat, "__name__", "callable")
        if stat == "poly":
            text += f", degree={self.degree!r}"
        return f"statistics={text}, weighting={self.weighting!r}, l2={self.l2!r}"

    def _check_fitted(self) -> None:
        if self.dual_value_ is None:
            raise RuntimeError(
                "MomentMatching is not fitted yet; call `fit_critic(x_p, x_q)` first."
            )

    def _fitted_lambda(self) -> torch.Tensor:
        self._check_fitted()
        if self.lambda_ is None:
            raise RuntimeError(
                "no exponential tilt of the fitted Q sample matches P's mean statistics (they "
                "lie outside the convex hull of Q's), so the ratio is undefined; refit with "
                "`l2` > 0, fewer statistics, or more Q points."
            )
        return self.lambda_

    def _feature_pair(
        self, x_p: torch.Tensor, x_q: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        s_p, s_q = self.features(x_p), self.features(x_q)
        if s_p.shape[1] != s_q.shape[1]:
            raise ValueError(
                "`statistics` must return as many statistics for `x_p` as for `x_q`; "
                f"got {s_p.shape[1]} and {s_q.shape[1]}."
            )
        return s_p, s_q

    def _pooled_cov(self, s_p: torch.Tensor, s_q: torch.Tensor) -> torch.Tensor:
        """``((n-1) S_p + (m-1) S_q) / (n+m-2) + ridge * tr / k * I`` (I if the trace is 0)."""
        c_p, c_q = s_p - s_p.mean(0), s_q - s_q.mean(0)
        cov = (c_p.T @ c_p + c_q.T @ c_q) / (s_p.shape[0] + s_q.shape[0] - 2)
        level = cov.diagonal().mean()
        level = torch.where(level > 0, level, torch.ones_like(level))
        eye = torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
        return cov + (self.ridge * level) * eye


def _checked_statistics(fn: StatisticsFn, x: torch.Tensor) -> torch.Tensor:
    """Call a user's statistics and check that it gives a finite (n, k) tensor."""
    out = fn(x)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"`statistics` must return a torch.Tensor; got {type(out).__name__}.")
    if out.ndim != 2 or out.shape[0] != x.shape[0] or out.shape[1] == 0:
        raise ValueError(
            f"`statistics` must return a tensor of shape (n_samples, n_statistics) = "
            f"({x.shape[0]}, k) with k >= 1; got shape {tuple(out.shape)}."
        )
    if not bool(torch.isfinite(out).all()):
        n_bad = int((~torch.isfinite(out)).any(dim=1).sum())
        raise ValueError(
            f"`statistics` must return finite values; got NaN or inf in {n_bad} of "
            f"{out.shape[0]} rows."
        )
    return out.to(torch.float64)


def _monomials(x: torch.Tensor, degree: int) -> torch.Tensor:
    """Every monomial of total degree 1 to ``degree`` in the columns of ``x``, shape (n, k).

    In lexicographic order of the index tuples ``i1 <= ... <= ij`` (that of
    :func:`itertools.combinations_with_replacement`; degree 2 is the upper triangle of
    ``x x'`` row by row). The degree-j monomials starting with ``x_i`` are ``x_i`` times the
    degree-(j - 1) ones whose indices are all >= i, a contiguous tail of their list, so each
    degree is d broadcast products of column slices.
    """
    d = x.shape[1]
    blocks, previous, starts = [x], x, list(range(d))
    for _ in range(2, degree + 1):
        parts = [x[:, i : i + 1] * previous[:, start:] for i, start in enumerate(starts)]
        starts = list(itertools.accumulate((p.shape[1] for p in parts[:-1]), initial=0))
        previous = torch.cat(parts, dim=1)
        blocks.append(previous)
    return torch.cat(blocks, dim=1)


def _solve_tilt(
    s_p: torch.Tensor, s_q: torch.Tensor, l2: float
) -> tuple[torch.Tensor, float, int]:
    """Maximise ``lambda . mean_p s - log mean_q exp(lambda . s) - l2/2 ||lambda sd||^2``.

    Newton's method with Armijo backtracking on the statistics standardised by their Q-sample
    mean and standard deviation (a constant statistic keeps scale 1). Returns ``lambda`` on
    the original scale, the final moment mismatch ``max |E_w z - mean_p z|`` (the gradient's
    largest entry, in standard deviations) and the number of steps. It stops early once the
    dual exceeds ``log m``, which proves, when ``l2 = 0``, that no tilt matches.
    """
    m, k = s_q.shape
    centre = s_q.mean(0)
    scale = s_q.std(0, correction=0)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    z_q = (s_q - centre) / scale
    target = (s_p.mean(0) - centre) / scale
    eye = torch.eye(k, dtype=z_q.dtype, device=z_q.device)
    log_m = math.log(m)

    def objective(beta: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(z_q @ beta, 0) - log_m - beta @ target + 0.5 * l2 * beta @ beta

    beta = torch.zeros(k, dtype=z_q.dtype, device=z_q.device)
    value = objective(beta)
    for n_iter in range(MAX_ITER + 1):
        w = torch.softmax(z_q @ beta, 0)
        mean_w = w @ z_q
        grad = mean_w - target + l2 * beta
        mismatch = float(grad.abs().max())
        done = mismatch <= GRAD_TOL or (l2 == 0.0 and -float(value) > log_m)
        if done or n_iter == MAX_ITER:
            break
        hess = (z_q.T * w) @ z_q - torch.outer(mean_w, mean_w) + l2 * eye
        jitter = 1e-12 * max(1.0, float(hess.diagonal().mean()))
        step = torch.linalg.solve(hess + jitter * eye, -grad)
        slope = float(grad @ step)
        # Near the optimum the decrease (~ slope) falls below the rounding of the objective:
        # allow that much, so that full Newton steps drive the mismatch to rounding level.
        slack = 1e-12 * (1.0 + abs(float(value)))
        t = 1.0
        for _ in range(60):
            trial = objective(beta + t * step)
            if float(trial) <= float(value) + 1e-4 * t * slope + slack:
                break
            t *= 0.5
        else:  # no decrease left at rounding level: this point is as good as it gets
            break
        beta, value = beta + t * step, trial
    return beta / scale, mismatch, n_iter
