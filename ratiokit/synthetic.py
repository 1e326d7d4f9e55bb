"""Distribution pairs (P, Q) with exact samplers, log densities and divergences.

Each pair draws samples from P and Q and evaluates ``log p``, ``log q`` and the log ratio
``log p(x) - log q(x)`` exactly, so density-ratio estimators can be scored against the
truth. Where a closed form exists a pair also gives KL(P||Q), KL(Q||P), the Pearson
divergence chi^2(P||Q) and the squared Hellinger distance; elsewhere these raise
``NotImplementedError`` (estimate them by Monte Carlo from ``log_ratio`` and samples).
:func:`make_problem` builds a pair by its registry name (see :data:`PROBLEMS`).
"""

from __future__ import annotations

import abc
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
from scipy import integrate, linalg, special

from ratiokit._rng import RngLike, check_rng
from ratiokit._validation import as_sample, check_choice, check_int, check_positive, is_tensor

__all__ = [
    "DIVERGENCES",
    "PROBLEMS",
    "CorrelatedBlobs",
    "CorrelatedGaussian",
    "GaussianBlobs",
    "GaussianMI",
    "GaussianMixture",
    "GaussianPair",
    "GaussianShift",
    "HighDimGaussianMixture",
    "ScaleChange",
    "StudentTGaussian",
    "SyntheticPair",
    "TransformedGaussianMI",
    "make_problem",
]

#: Kinds accepted by :meth:`SyntheticPair.divergence`.
DIVERGENCES = ("kl", "rkl", "pearson", "hellinger")
_LOG_2PI = math.log(2.0 * math.pi)


class SyntheticPair(abc.ABC):
    """Two distributions P and Q on R^d with exact samplers and log densities.

    Subclasses are frozen dataclasses whose parameters are validated on construction.
    Divergences are in nats; the squared Hellinger distance is H^2 = 1 - integral sqrt(p q)
    in [0, 1], half the f-divergence with f(t) = (sqrt(t) - 1)^2.

    Attributes
    ----------
    name : str
        Registry key of the pair in :data:`PROBLEMS`.
    dim : int
        Dimension d of the sample space.
    """

    name: ClassVar[str]
    dim: int

    @abc.abstractmethod
    def _sample(self, which: str, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw n points of P (``which="p"``) or Q (``"q"``) as a float64 (n, d) array."""

    @abc.abstractmethod
    def _log_density(self, which: str, x: np.ndarray) -> np.ndarray:
        """Log density of P or Q at the rows of a float64 (n, d) array."""

    def sample_p(self, n: int, *, rng: RngLike = None) -> np.ndarray:
        """Draw ``n`` independent points from P.

        Parameters
        ----------
        n : int
            Number of points (at least 1).
        rng : None, int, SeedSequence or Generator, default=None
            Source of randomness; an int gives the same points on every call.

        Returns
        -------
        ndarray of shape (n, dim)
            Float64 samples.
        """
        return self._sample("p", check_int(n, "n", minimum=1), check_rng(rng))

    def sample_q(self, n: int, *, rng: RngLike = None) -> np.ndarray:
        """Draw ``n`` independent points from Q (see :meth:`sample_p`)."""
        return self._sample("q", check_int(n, "n", minimum=1), check_rng(rng))

    def log_p(self, x: Any) -> Any:
        """Exact log density of P at each row of ``x`` (see :meth:`log_ratio`)."""
        return self._evaluate(x, lambda a: self._log_density("p", a))

    def log_q(self, x: Any) -> Any:
        """Exact log density of Q at each row of ``x`` (see :meth:`log_ratio`)."""
        return self._evaluate(x, lambda a: self._log_density("q", a))

    def log_ratio(self, x: Any) -> Any:
        """Exact log density ratio log r(x) = log p(x) - log q(x).

        Parameters
        ----------
        x : array-like or Tensor of shape (n, dim), or (n,) when dim is 1
            Points at which to evaluate.

        Returns
        -------
        ndarray or Tensor of shape (n,)
            A float64 array for array input; for a tensor, a tensor of its floating dtype on
            its device (computed in float64 NumPy, so not differentiable).

        Raises
        ------
        ValueError
            If ``x`` is not a finite (n, dim) sample.
        """
        return self._evaluate(x, lambda a: self._log_density("p", a) - self._log_density("q", a))

    def _evaluate(self, x: Any, fn: Callable[[np.ndarray], np.ndarray]) -> Any:
        t = as_sample(x, "x", min_samples=1)
        if t.shape[1] != self.dim:
            raise ValueError(
                f"`x` must have {self.dim} features (columns); got shape {tuple(np.shape(x))}."
            )
        out = fn(t.detach().cpu().numpy().astype(np.float64))
        return t.new_tensor(out) if is_tensor(x) else out

    def kl_pq(self) -> float:
        """KL(P||Q) = E_p[log p(X) - log q(X)].

        Raises
        ------
        NotImplementedError
            If the pair has no closed form for it.
        """
        raise self._no_closed_form("KL(P||Q)")

    def kl_qp(self) -> float:
        """KL(Q||P) = E_q[log q(X) - log p(X)]; NotImplementedError without a closed form."""
        raise self._no_closed_form("KL(Q||P)")

    def pearson(self) -> float:
        """chi^2(P||Q) = E_q[(p(X)/q(X) - 1)^2], ``math.inf`` where the integral diverges.

        Raises NotImplementedError without a closed form.
        """
        raise self._no_closed_form("the Pearson divergence")

    def hellinger2(self) -> float:
        """H^2 = 1 - integral sqrt(p(x) q(x)) dx in [0, 1]; NotImplementedError without one."""
        raise self._no_closed_form("the squared Hellinger distance")

    def divergence(self, kind: str) -> float:
        """Divergence by name: "kl" KL(P||Q), "rkl" KL(Q||P), "pearson" chi^2, "hellinger" H^2.

        Raises
        ------
        ValueError
            If ``kind`` is not one of :data:`DIVERGENCES`.
        NotImplementedError
            If the pair has no closed form for it.
        """
        methods = {
            "kl": self.kl_pq,
            "rkl": self.kl_qp,
            "pearson": self.pearson,
            "hellinger": self.hellinger2,
        }
        return methods[check_choice(kind, "kind", DIVERGENCES)]()

    def _no_closed_form(self, what: str) -> NotImplementedError:
        return NotImplementedError(
            f"{type(self).__name__} has no closed form for {what}; estimate it by Monte Carlo "
            "from `log_ratio` at samples of P and Q."
        )


# --------------------------------------------------------------------------- validation


def _as_array(value: Any, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Return a finite float64 copy of ``value``, checking its shape when one is given."""
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"`{name}` must be an array of real numbers; got {value!r}.") from err
    if arr.ndim == 0 and shape is not None and math.prod(shape) == 1:
        arr = arr.reshape(shape)  # a scalar where one value is expected, e.g. a 1 x 1 covariance
    if shape is not None and arr.shape != shape:
        raise ValueError(f"`{name}` must have shape {shape}; got shape {arr.shape}.")
    if not np.isfinite(arr).all():
        raise ValueError(f"`{name}` must hold finite values; got {value!r}.")
    return arr


def _as_spd(value: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Return symmetric positive-definite matrices of ``shape`` (..., d, d)."""
    arr = _as_array(value, name, shape)
    if not np.allclose(arr, np.swapaxes(arr, -1, -2)):
        raise ValueError(f"`{name}` must be symmetric positive definite; got {value!r}.")
    arr = 0.5 * (arr + np.swapaxes(arr, -1, -2))
    smallest = np.linalg.eigvalsh(arr).min()
    if smallest <= 0:
        raise ValueError(
            f"`{name}` must be symmetric positive definite; got an eigenvalue {smallest:.3g}."
        )
    return arr


def _check_real(value: Any, name: str) -> float:
    """Return ``value`` as a float after checking it is a finite real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number; got {value!r}.")
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite real number; got {value!r}.")
    return float(value)


def _logdet(a: np.ndarray) -> float:
    return float(np.linalg.slogdet(a)[1])


def _quad_form(a: np.ndarray, v: np.ndarray) -> float:
    """v' a^-1 v."""
    return float(v @ np.linalg.solve(a, v))


# --------------------------------------------------------------------------- Gaussian mixtures


class _Mixture:
    """sum_k w_k N(m_k, S_k) from weights (k,), means (k, d) and covariances (k, d, d)."""

    def __init__(self, weights: np.ndarray, means: np.ndarray, covs: np.ndarray) -> None:
        self.weights, self.means = weights, means
        self.chols = np.linalg.cholesky(covs)
        log_diag = np.log(np.diagonal(self.chols, axis1=1, axis2=2))
        # log w_k - log det(S_k) / 2 - d log(2 pi) / 2
        self.log_consts = np.log(weights) - log_diag.sum(axis=1) - 0.5 * means.shape[1] * _LOG_2PI

    def log_pdf(self, x: np.ndarray) -> np.ndarray:
        terms = [
            c - 0.5 * np.sum(linalg.solve_triangular(chol, (x - m).T, lower=True) ** 2, axis=0)
            for c, m, chol in zip(self.log_consts, self.means, self.chols, strict=True)
        ]
        return special.logsumexp(np.stack(terms), axis=0)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        labels = rng.choice(len(self.weights), size=n, p=self.weights)
        x = rng.standard_normal((n, self.means.shape[1]))
        for k, (m, chol) in enumerate(zip(self.means, self.chols, strict=True)):
            rows = labels == k
            x[rows] = m + x[rows] @ chol.T
        return x


class _MixturePair(SyntheticPair):
    """A pair whose P and Q are Gaussian mixtures, given by :meth:`_components`."""

    @abc.abstractmethod
    def _components(self, which: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Weights (k,), means (k, d) and covariances (k, d, d) of P or Q."""

    @cached_property
    def _mixtures(self) -> dict[str, _Mixture]:
        return {which: _Mixture(*self._components(which)) for which in "pq"}

    def _sample(self, which: str, n: int, rng: np.random.Generator) -> np.ndarray:
        return self._mixtures[which].sample(n, rng)

    def _log_density(self, which: str, x: np.ndarray) -> np.ndarray:
        return self._mixtures[which].log_pdf(x)


class _Gaussian(_MixturePair):
    """P = N(mean_p, cov_p), Q = N(mean_q, cov_q): every divergence in closed form.

    Subclasses call :meth:`_set_gaussians` from ``__post_init__``.
    """

    mean_p: np.ndarray
    cov_p: np.ndarray
    mean_q: np.ndarray
    cov_q: np.ndarray

    def _set_gaussians(self, mean_p: Any, cov_p: Any, mean_q: Any, cov_q: Any) -> None:
        """Validate the parameters and store them as read-only float64 arrays."""
        mean_p = np.atleast_1d(_as_array(mean_p, "mean_p"))
        if mean_p.ndim != 1 or mean_p.size == 0:
            raise ValueError(
                f"`mean_p` must be a 1-D array of shape (d,); got shape {mean_p.shape}."
            )
        d = mean_p.size
        params = {
            "mean_p": mean_p,
            "cov_p": _as_spd(cov_p, "cov_p", (d, d)),
            "mean_q": _as_array(mean_q, "mean_q", (d,)),
            "cov_q": _as_spd(cov_q, "cov_q", (d, d)),
        }
        for key, value in params.items():
            value.flags.writeable = False
            object.__setattr__(self, key, value)

    def _components(self, which: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mean, cov = (self.mean_p, self.cov_p) if which == "p" else (self.mean_q, self.cov_q)
        return np.ones(1), mean[None], cov[None]

    @staticmethod
    def _kl(m0: np.ndarray, s0: np.ndarray, m1: np.ndarray, s1: np.ndarray) -> float:
        """KL(N0||N1) = (tr(s1^-1 s0) + (m1 - m0)' s1^-1 (m1 - m0) - d + log|s1| - log|s0|) / 2."""
        trace = np.trace(np.linalg.solve(s1, s0))
        return 0.5 * float(trace + _quad_form(s1, m1 - m0) - m0.size + _logdet(s1) - _logdet(s0))

    def kl_pq(self) -> float:
        """KL(P||Q) in closed form (see :meth:`_kl`)."""
        return self._kl(self.mean_p, self.cov_p, self.mean_q, self.cov_q)

    def kl_qp(self) -> float:
        """KL(Q||P) in closed form (see :meth:`_kl`)."""
        return self._kl(self.mean_q, self.cov_q, self.mean_p, self.cov_p)

    def pearson(self) -> float:
        """chi^2 + 1 = |S_q| / sqrt(|S_p| |2 S_q - S_p|) exp(d' (2 S_q - S_p)^-1 d), d = m_p - m_q.

        The integral of p^2 / q converges iff 2 S_q - S_p is positive definite; else inf.
        """
        m = 2.0 * self.cov_q - self.cov_p
        if np.linalg.eigvalsh(m)[0] <= 0:
            return math.inf
        delta = self.mean_p - self.mean_q
        log_ratio = _logdet(self.cov_q) - 0.5 * (_logdet(self.cov_p) + _logdet(m))
        try:
            return math.expm1(log_ratio + _quad_form(m, delta))
        except OverflowError:  # finite, but beyond float range
            return math.inf

    def hellinger2(self) -> float:
        """H^2 = 1 - exp(-D_B), D_B = d' S^-1 d / 8 + log(|S| / sqrt(|S_p| |S_q|)) / 2.

        D_B is the Bhattacharyya distance, with S = (S_p + S_q) / 2 and d = m_p - m_q.
        """
        s = 0.5 * (self.cov_p + self.cov_q)
        log_dets = _logdet(s) - 0.5 * (_logdet(self.cov_p) + _logdet(self.cov_q))
        return -math.expm1(-(_quad_form(s, self.mean_p - self.mean_q) / 8.0 + 0.5 * log_dets))


@dataclass(frozen=True, kw_only=True, eq=False)
class GaussianPair(_Gaussian):
    """Two full-covariance Gaussians: P = N(mean_p, cov_p), Q = N(mean_q, cov_q).

    Every divergence has a closed form; chi^2(P||Q) is inf unless 2 cov_q - cov_p is
    positive definite.

    Parameters
    ----------
    mean_p : array-like of shape (d,), default=(1.0,)
        Mean of P; its length sets ``dim``.
    cov_p : array-like of shape (d, d), default=((1.0,),)
        Symmetric positive-definite covariance of P (a scalar when d is 1).
    mean_q : array-like of shape (d,), default=(0.0,)
        Mean of Q.
    cov_q : array-like of shape (d, d), default=((1.0,),)
        Symmetric positive-definite covariance of Q (a scalar when d is 1).

    Raises
    ------
    ValueError
        If a parameter has the wrong shape or non-finite entries, or a covariance is not
        symmetric positive definite.

    Examples
    --------
    >>> from ratiokit.synthetic import GaussianPair
    >>> pair = GaussianPair(mean_p=[1.0, 0.0], cov_p=[[1.0, 0.5], [0.5, 1.0]],
    ...                     mean_q=[0.0, 0.0], cov_q=[[2.0, 0.0], [0.0, 2.0]])
    >>> round(pair.kl_pq(), 4), round(pair.pearson(), 4), round(pair.hellinger2(), 4)
    (0.587, 1.2, 0.1833)
    >>> pair.log_ratio(pair.sample_p(3, rng=0)).round(3)
    array([1.036, 0.814, 1.093])
    """

    name: ClassVar[str] = "gaussian_pair"
    mean_p: Any = (1.0,)
    cov_p: Any = ((1.0,),)
    mean_q: Any = (0.0,)
    cov_q: Any = ((1.0,),)

    def __post_init__(self) -> None:
        self._set_gaussians(self.mean_p, self.cov_p, self.mean_q, self.cov_q)

    @property
    def dim(self) -> int:
        """Dimension d, the length of ``mean_p``."""
        return self.mean_p.size


@dataclass(frozen=True, kw_only=True)
class GaussianShift(_Gaussian):
    """A mean shift: P = N(mu, I) with mu = (shift / sqrt(dim)) (1, ..., 1), and Q = N(0, I).

    ``||mu|| = |shift|`` in every dimension, so KL(P||Q) = KL(Q||P) = shift^2 / 2,
    chi^2 = exp(shift^2) - 1 and H^2 = 1 - exp(-shift^2 / 8).

    Parameters
    ----------
    dim : int, default=1
        Dimension d (at least 1).
    shift : float, default=1.0
        Distance ||mu|| between the means (any finite real; 0 gives P = Q).

    Examples
    --------
    >>> from ratiokit.synthetic import GaussianShift
    >>> pair = GaussianShift(dim=2, shift=1.0)
    >>> round(pair.kl_pq(), 6), round(pair.divergence("hellinger"), 6)
    (0.5, 0.117503)
    >>> pair.sample_p(2, rng=0).round(3)
    array([[1.348, 0.812],
           [0.171, 1.069]])
    """

    name: ClassVar[str] = "gaussian_shift"
    dim: int = 1
    shift: float = 1.0

    def __post_init__(self) -> None:
        d = check_int(self.dim, "dim", minimum=1)
        mean_p = np.full(d, _check_real(self.shift, "shift") / math.sqrt(d))
        self._set_gaussians(mean_p, np.eye(d), np.zeros(d), np.eye(d))


@dataclass(frozen=True, kw_only=True)
class ScaleChange(_Gaussian):
    """A change of scale: P = N(0, scale^2 I) and Q = N(0, I).

    KL(P||Q) = dim (s^2 - 1 - log s^2) / 2 and KL(Q||P) = dim (1 / s^2 - 1 + log s^2) / 2 with
    s = scale; chi^2 = (s^2 (2 - s^2))^(-dim / 2) - 1 if s^2 < 2, else inf;
    H^2 = 1 - (2 s / (1 + s^2))^(dim / 2).

    Parameters
    ----------
    dim : int, default=1
        Dimension d (at least 1).
    scale : float, default=2.0
        Standard deviation of P per coordinate (positive).

    Examples
    --------
    >>> from ratiokit.synthetic import ScaleChange
    >>> ScaleChange(scale=2.0).pearson()
    inf
    >>> round(ScaleChange(scale=0.5).kl_pq(), 4)
    0.3181
    """

    name: ClassVar[str] = "scale_change"
    dim: int = 1
    scale: float = 2.0

    def __post_init__(self) -> None:
        d = check_int(self.dim, "dim", minimum=1)
        var = check_positive(self.scale, "scale") ** 2
        self._set_gaussians(np.zeros(d), var * np.eye(d), np.zeros(d), np.eye(d))


@dataclass(frozen=True, kw_only=True)
class CorrelatedGaussian(_Gaussian):
    """Dependence: P = N(0, [[I, rho I], [rho I, I]]) over (x, y), Q = N(0, I), their product.

    x and y each have dim / 2 coordinates and Q is the product of P's marginals, so
    KL(P||Q) is the mutual information I(x; y) = -(dim / 4) log(1 - rho^2).

    Parameters
    ----------
    dim : int, default=2
        Dimension d of (x, y): an even integer, at least 2.
    rho : float, default=0.5
        Correlation of each pair (x_i, y_i), in (-1, 1).

    Examples
    --------
    >>> from ratiokit.synthetic import CorrelatedGaussian
    >>> round(CorrelatedGaussian(dim=4, rho=0.5).mutual_information(), 4)
    0.2877
    """

    name: ClassVar[str] = "correlated_gaussian"
    dim: int = 2
    rho: float = 0.5

    def __post_init__(self) -> None:
        d = check_int(self.dim, "dim", minimum=2)
        if d % 2:
            raise ValueError(f"`dim` must be an even integer >= 2; got {self.dim!r}.")
        rho = _check_real(self.rho, "rho")
        if not -1.0 < rho < 1.0:
            raise ValueError(f"`rho` must be a real number in (-1, 1); got {self.rho!r}.")
        eye = np.eye(d // 2)
        cov_p = np.block([[eye, rho * eye], [rho * eye, eye]])
        self._set_gaussians(np.zeros(d), cov_p, np.zeros(d), np.eye(d))

    def mutual_information(self) -> float:
        """I(x; y) = KL(P || P_x P_y) = -(dim / 4) log(1 - rho^2), in nats (= :meth:`kl_pq`)."""
        return self.kl_pq()


def _as_mixture(weights: Any, means: Any, covs: Any, which: str) -> tuple[np.ndarray, ...]:
    """Validate one mixture; return weights (k,), means (k, d) and covariances (k, d, d)."""
    w = _as_array(weights, f"weights_{which}")
    if w.ndim != 1 or w.size == 0 or (w <= 0).any() or abs(w.sum() - 1.0) > 1e-8:
        raise ValueError(f"`weights_{which}` must be 1-D, positive and sum to 1; got {weights!r}.")
    m = _as_array(means, f"means_{which}")
    m = m[:, None] if m.ndim == 1 else m
    if m.ndim != 2 or m.shape[0] != w.size:
        raise ValueError(
            f"`means_{which}` must have shape ({w.size}, d), one per weight; got shape {m.shape}."
        )
    k, d = m.shape
    c = _as_array(covs, f"covs_{which}")
    if c.shape == (k,):  # one variance per component: isotropic covariances
        c = c[:, None, None] * np.eye(d)
    return w, m, _as_spd(c, f"covs_{which}", (k, d, d))


@dataclass(frozen=True, kw_only=True, eq=False)
class GaussianMixture(_MixturePair):
    """Gaussian mixtures P and Q; by default P = N(-2, 1) / 2 + N(2, 1) / 2 and Q = N(0, 2^2).

    The log densities are exact (log-sum-exp over components); no divergence has a closed
    form here.

    Parameters
    ----------
    weights_p : array-like of shape (k_p,), default=(0.5, 0.5)
        Positive component weights of P, summing to 1.
    means_p : array-like of shape (k_p, d), default=(-2.0, 2.0)
        Component means of P; a 1-D array holds k_p means in one dimension.
    covs_p : array-like of shape (k_p,) or (k_p, d, d), default=(1.0, 1.0)
        Component covariances of P: one variance per component (isotropic) or full
        symmetric positive-definite matrices.
    weights_q : array-like of shape (k_q,), default=(1.0,)
        Component weights of Q.
    means_q : array-like of shape (k_q, d), default=(0.0,)
        Component means of Q.
    covs_q : array-like of shape (k_q,) or (k_q, d, d), default=(4.0,)
        Component covariances of Q.

    Examples
    --------
    >>> from ratiokit.synthetic import GaussianMixture
    >>> pair = GaussianMixture()
    >>> pair.log_ratio([[-2.0], [0.0], [2.0]]).round(4)
    array([ 0.5003, -1.3069,  0.5003])
    """

    name: ClassVar[str] = "gaussian_mixture"
    weights_p: Any = (0.5, 0.5)
    means_p: Any = (-2.0, 2.0)
    covs_p: Any = (1.0, 1.0)
    weights_q: Any = (1.0,)
    means_q: Any = (0.0,)
    covs_q: Any = (4.0,)

    def __post_init__(self) -> None:
        for which in "pq":
            names = (f"weights_{which}", f"means_{which}", f"covs_{which}")
            arrays = _as_mixture(*(getattr(self, key) for key in names), which)
            for key, value in zip(names, arrays, strict=True):
                value.flags.writeable = False
                object.__setattr__(self, key, value)
        if self.means_p.shape[1] != self.means_q.shape[1]:
            raise ValueError(
                "`means_p` and `means_q` must have the same number of columns (dimension); "
                f"got {self.means_p.shape[1]} and {self.means_q.shape[1]}."
            )

    @property
    def dim(self) -> int:
        """Dimension d, the number of columns of ``means_p``."""
        return self.means_p.shape[1]

    def _components(self, which: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tuple(getattr(self, f"{key}_{which}") for key in ("weights", "means", "covs"))


@dataclass(frozen=True, kw_only=True)
class GaussianBlobs(_MixturePair):
    """The "blobs" two-sample problem: a grid of round 2-D Gaussians (P) or stretched ones (Q).

    P and Q are equal-weight mixtures over the centres spacing (i, j), i, j = 0, ..., grid - 1.
    P's blobs are N(c, I); Q's are N(c, [[1, r], [r, 1]]) with r = (epsilon - 1) / (epsilon + 1),
    whose eigenvalues 2 epsilon / (epsilon + 1) and 2 / (epsilon + 1) (ratio epsilon) lie
    along the diagonals. The defaults (a 3 x 3 grid, spacing 10, epsilon 6) follow Sutherland
    et al. [2]_, after Gretton et al. [1]_; Liu et al. [3]_ use a variant. No divergence has
    a closed form here.

    Parameters
    ----------
    grid : int, default=3
        Blobs per side (at least 1).
    spacing : float, default=10.0
        Distance between neighbouring centres (positive).
    epsilon : float, default=6.0
        Ratio of the eigenvalues of Q's blob covariance (positive; 1 gives P = Q).

    References
    ----------
    .. [1] A. Gretton et al., "Optimal kernel choice for large-scale two-sample tests",
       NeurIPS 2012.
    .. [2] D. J. Sutherland et al., "Generative models and model criticism via optimized
       maximum mean discrepancy", ICLR 2017.
    .. [3] F. Liu et al., "Learning deep kernels for non-parametric two-sample tests", ICML 2020.

    Examples
    --------
    >>> from ratiokit.synthetic import GaussianBlobs
    >>> pair = GaussianBlobs()
    >>> pair.sample_q(2, rng=0).round(2)
    array([[10.64, 20.53],
           [-0.54, 19.87]])
    """

    name: ClassVar[str] = "blobs"
    dim: ClassVar[int] = 2
    grid: int = 3
    spacing: float = 10.0
    epsilon: float = 6.0

    def __post_init__(self) -> None:
        check_int(self.grid, "grid", minimum=1)
        check_positive(self.spacing, "spacing")
        check_positive(self.epsilon, "epsilon")

    def _components(self, which: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ticks = self.spacing * np.arange(self.grid)
        centres = np.stack(np.meshgrid(ticks, ticks, indexing="ij"), axis=-1).reshape(-1, 2)
        r = 0.0 if which == "p" else (self.epsilon - 1.0) / (self.epsilon + 1.0)
        k = len(centres)
        return np.full(k, 1.0 / k), centres, np.broadcast_to([[1.0, r], [r, 1.0]], (k, 2, 2))


@dataclass(frozen=True, kw_only=True)
class CorrelatedBlobs(_MixturePair):
    """Liu et al.'s "Blob" problem: 9 small round Gaussians (P) against 9 sheared ones (Q).

    P and Q are equal-weight mixtures over the centres (r, c), r, c = 0, 1, 2 (spacing 1).
    P's blobs are N(centre, variance I); Q's blob i = 3 r + c is N(centre, S_i) with
    ``S_i = [[variance, c_i], [c_i, variance]]`` and ``c_i = -0.02 - 0.002 i`` (i < 4),
    ``0`` (i = 4), ``0.02 + 0.002 (i - 5)`` (i > 4), each ``c_i`` times ``shear / 0.02``.
    The differences are at the scale of one blob (standard deviation 0.17), far below the
    data's spread, unlike :class:`GaussianBlobs` (Sutherland et al.'s variant).

    ``covariance="code"`` (default) draws Q's blobs as the authors' released sampler does,
    ``z L`` with ``z ~ N(0, I)`` a row and ``L`` the lower Cholesky factor of ``S_i``: the
    covariance is ``L^T L`` (diagonal ``variance + c_i^2 / variance`` and
    ``variance - c_i^2 / variance``, off-diagonal ``c_i sqrt(1 - c_i^2 / variance^2)``), not
    ``S_i``; the published powers were measured on this law. ``covariance="paper"`` draws
    ``N(centre, S_i)`` as the paper writes it. No divergence has a closed form here.

    Parameters
    ----------
    variance : float, default=0.03
        Variance of each coordinate of a blob (positive).
    shear : float, default=0.02
        Scale of Q's covariances ``c_i`` (``|c_i| <= 1.3 shear``; it must stay below
        ``variance / 1.3`` so every ``S_i`` is positive definite; 0 gives P = Q).
    covariance : {"code", "paper"}, default="code"
        Q's blob covariance: ``L^T L`` as in the released code, or ``S_i``.

    References
    ----------
    F. Liu, W. Xu, J. Lu, G. Zhang, A. Gretton and D. J. Sutherland, "Learning deep kernels
    for non-parametric two-sample tests", ICML 2020 (the "Blob" data; code at
    github.com/fengliu90/DK-for-TST).

    Examples
    --------
    >>> from ratiokit.synthetic import CorrelatedBlobs
    >>> pair = CorrelatedBlobs(covariance="paper")
    >>> pair.sample_q(900, rng=0).shape
    (900, 2)
    """

    name: ClassVar[str] = "correlated_blobs"
    dim: ClassVar[int] = 2
    variance: float = 0.03
    shear: float = 0.02
    covariance: str = "code"

    def __post_init__(self) -> None:
        check_positive(self.variance, "variance")
        shear = _check_real(self.shear, "shear")
        if not 0.0 <= 1.3 * shear < self.variance:
            raise ValueError(
                f"`shear` must be in [0, variance / 1.3) so Q's covariances stay positive "
                f"definite; got {self.shear!r} with variance {self.variance!r}."
            )
        check_choice(self.covariance, "covariance", ("code", "paper"))

    def shears(self) -> np.ndarray:
        """Off-diagonal entries ``c_i`` of the nine ``S_i`` (blob i at centre (i // 3, i % 3))."""
        i = np.arange(9)
        base = np.where(i < 4, -0.02 - 0.002 * i, np.where(i == 4, 0.0, 0.02 + 0.002 * (i - 5)))
        return base * (self.shear / 0.02)

    def _components(self, which: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        centres = np.stack(np.meshgrid(np.arange(3.0), np.arange(3.0), indexing="ij"), -1)
        covs = np.broadcast_to(self.variance * np.eye(2), (9, 2, 2)).copy()
        if which == "q":
            covs[:, 0, 1] = covs[:, 1, 0] = self.shears()
            if self.covariance == "code":
                chol = np.linalg.cholesky(covs)
                covs = np.swapaxes(chol, 1, 2) @ chol
        return np.full(9, 1.0 / 9.0), centres.reshape(9, 2), covs


@dataclass(frozen=True, kw_only=True)
class HighDimGaussianMixture(_MixturePair):
    """Liu et al.'s "HDGM": two Gaussians in R^d, Q with opposite correlations in each.

    ``P = N(0, I) / 2 + N(gap 1, I) / 2`` and ``Q = N(0, S_+) / 2 + N(gap 1, S_-) / 2``,
    where ``S_+-`` is the identity with ``+-correlation`` at entries (0, 1) and (1, 0): the
    marginals of every coordinate agree, only the joint law of the first two differs, and
    with opposite signs in the two components (so the pooled correlation is about 0). The
    paper draws exactly half of each sample from each component; here the component of each
    point is drawn (a mixture), which is the same law for the pooled sample.

    Parameters
    ----------
    dim : int, default=10
        Dimension d (at least 2).
    gap : float, default=0.5
        Each coordinate of the second component's mean.
    correlation : float, default=0.5
        Q's correlation between the first two coordinates, in (-1, 1) (0 gives P = Q).

    References
    ----------
    F. Liu, W. Xu, J. Lu, G. Zhang, A. Gretton and D. J. Sutherland, "Learning deep kernels
    for non-parametric two-sample tests", ICML 2020 (the "HDGM" data).

    Examples
    --------
    >>> from ratiokit.synthetic import HighDimGaussianMixture
    >>> HighDimGaussianMixture().sample_p(5, rng=0).shape
    (5, 10)
    """

    name: ClassVar[str] = "hdgm"
    dim: int = 10
    gap: float = 0.5
    correlation: float = 0.5

    def __post_init__(self) -> None:
        check_int(self.dim, "dim", minimum=2)
        _check_real(self.gap, "gap")
        rho = _check_real(self.correlation, "correlation")
        if not -1.0 < rho < 1.0:
            raise ValueError(f"`correlation` must be in (-1, 1); got {self.correlation!r}.")

    def _components(self, which: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d = self.dim
        means = np.stack([np.zeros(d), np.full(d, float(self.gap))])
        covs = np.stack([np.eye(d), np.eye(d)])
        if which == "q":
            for k, sign in enumerate((1.0, -1.0)):
                covs[k, 0, 1] = covs[k, 1, 0] = sign * self.correlation
        return np.full(2, 0.5), means, covs


@dataclass(frozen=True, kw_only=True)
class StudentTGaussian(SyntheticPair):
    """Heavy tails: P = multivariate Student t (df, location 0, scale I), Q = N(0, I).

    KL(P||Q) has a closed form (inf when df <= 2: P has no second moment) and chi^2(P||Q)
    is inf (P's tails are heavier). KL(Q||P) and H^2 have no elementary closed form: both
    densities depend on x only through r = ||x||, so they are 1-D integrals over r, computed
    by adaptive quadrature (``scipy.integrate.quad``, absolute error about 1e-8) in any
    dimension.

    Parameters
    ----------
    dim : int, default=1
        Dimension d (at least 1).
    df : float, default=3.0
        Degrees of freedom of P (positive).

    Examples
    --------
    >>> from ratiokit.synthetic import StudentTGaussian
    >>> pair = StudentTGaussian(df=3.0)
    >>> round(pair.kl_pq(), 4), round(pair.kl_qp(), 4), pair.pearson()
    (0.6455, 0.0692, inf)
    """

    name: ClassVar[str] = "student_t"
    dim: int = 1
    df: float = 3.0

    def __post_init__(self) -> None:
        check_int(self.dim, "dim", minimum=1)
        check_positive(self.df, "df")

    def _log_radial(self, which: str, s: Any) -> Any:
        """log p or log q at any x with ||x||^2 = s."""
        d, nu = self.dim, self.df
        if which == "q":
            return -0.5 * s - 0.5 * d * _LOG_2PI
        log_norm = special.gammaln(0.5 * (nu + d)) - special.gammaln(0.5 * nu)
        return log_norm - 0.5 * d * math.log(nu * math.pi) - 0.5 * (nu + d) * np.log1p(s / nu)

    def _log_density(self, which: str, x: np.ndarray) -> np.ndarray:
        return self._log_radial(which, np.sum(x * x, axis=1))

    def _sample(self, which: str, n: int, rng: np.random.Generator) -> np.ndarray:
        z = rng.standard_normal((n, self.dim))
        return (
            z if which == "q" else z / np.sqrt(rng.chisquare(self.df, size=n) / self.df)[:, None]
        )

    def _radial_integral(self, term: Callable[[float, float], tuple[float, float]]) -> float:
        """Integral over R^d of exp(a) b, where (a, b) = term(log p(x), log q(x)).

        In polar coordinates it is the integral over r >= 0 of |S^(d-1)| r^(d-1) exp(a) b,
        with |S^(d-1)| = 2 pi^(d/2) / Gamma(d/2) the area of the unit sphere.
        """
        d = self.dim
        log_sphere = math.log(2.0) + 0.5 * d * math.log(math.pi) - special.gammaln(0.5 * d)

        def integrand(r: float) -> float:
            log_w, factor = term(self._log_radial("p", r * r), self._log_radial("q", r * r))
            return math.exp(log_sphere + special.xlogy(d - 1, r) + log_w) * factor

        return float(integrate.quad(integrand, 0.0, math.inf, limit=200)[0])

    def kl_pq(self) -> float:
        """KL(P||Q) = -H(P) + d log(2 pi) / 2 + d df / (2 (df - 2)), inf when df <= 2.

        The last term is E_p||X||^2 / 2. The entropy of P is H(P) = log Gamma(df / 2)
        - log Gamma(a) + d log(df pi) / 2 + a (psi(a) - psi(df / 2)), a = (df + d) / 2.
        """
        d, nu = self.dim, self.df
        if nu <= 2:
            return math.inf
        a = 0.5 * (nu + d)
        entropy = (
            special.gammaln(0.5 * nu)
            - special.gammaln(a)
            + 0.5 * d * math.log(nu * math.pi)
            + a * (special.digamma(a) - special.digamma(0.5 * nu))
        )
        return float(-entropy + 0.5 * d * (_LOG_2PI + nu / (nu - 2)))

    def kl_qp(self) -> float:
        """KL(Q||P) by quadrature."""
        return self._radial_integral(lambda lp, lq: (lq, lq - lp))

    def pearson(self) -> float:
        """chi^2(P||Q) = inf: p^2 / q grows like exp(||x||^2 / 2) times a power of ||x||."""
        return math.inf

    def hellinger2(self) -> float:
        """H^2 = 1 - integral sqrt(p q), by quadrature."""
        return 1.0 - self._radial_integral(lambda lp, lq: (0.5 * (lp + lq), 1.0))


#: Registry of the pairs by :attr:`SyntheticPair.name`.
PROBLEMS: dict[str, type[SyntheticPair]] = {
    cls.name: cls
    for cls in (
        GaussianShift,
        ScaleChange,
        GaussianPair,
        CorrelatedGaussian,
        GaussianMixture,
        StudentTGaussian,
        GaussianBlobs,
        CorrelatedBlobs,
        HighDimGaussianMixture,
    )
}


def make_problem(name: str, **params: Any) -> SyntheticPair:
    """Build the pair registered as ``name`` with keyword parameters ``params``.

    Parameters
    ----------
    name : str
        A key of :data:`PROBLEMS`: "blobs", "correlated_blobs", "correlated_gaussian",
        "gaussian_mixture", "gaussian_pair", "gaussian_shift", "hdgm", "scale_change" or
        "student_t".
    **params
        Constructor parameters of that pair (unknown ones raise TypeError).

    Returns
    -------
    SyntheticPair
        The pair.

    Raises
    ------
    ValueError
        If ``name`` is not registered, or a parameter is invalid.

    Examples
    --------
    >>> from ratiokit.synthetic import make_problem
    >>> pair = make_problem("gaussian_shift", dim=3, shift=2.0)
    >>> pair.dim, round(pair.divergence("kl"), 6)
    (3, 2.0)
    """
    return PROBLEMS[check_choice(name, "problem", list(PROBLEMS))](**params)


# --------------------------------------------------------------------------- dependent pairs


@dataclass(frozen=True, kw_only=True)
class GaussianMI:
    """Paired samples (x, y) with known mutual information: x, y in R^dim, jointly Gaussian.

    Each x_i ~ N(0, 1) and y_i = rho x_i + sqrt(1 - rho^2) e_i with e_i ~ N(0, 1), all
    coordinates independent otherwise, so I(x; y) = -(dim / 2) log(1 - rho^2) nats. The
    joint law of the concatenated rows (x, y) is :class:`CorrelatedGaussian` with
    ``dim = 2 dim``, whose P is the joint and Q the product of the marginals.

    Parameters
    ----------
    dim : int, default=1
        Dimension of x and of y (at least 1).
    rho : float, default=0.5
        Correlation of each pair (x_i, y_i), in (-1, 1); 0 makes x and y independent.

    Examples
    --------
    >>> from ratiokit.synthetic import GaussianMI
    >>> problem = GaussianMI.from_mutual_information(2.0, dim=4)
    >>> round(problem.rho, 4), round(problem.mutual_information(), 6)
    (0.7951, 2.0)
    >>> x, y = problem.sample(3, rng=0)
    >>> x.shape, y.shape
    ((3, 4), (3, 4))
    """

    dim: int = 1
    rho: float = 0.5

    def __post_init__(self) -> None:
        check_int(self.dim, "dim", minimum=1)
        rho = _check_real(self.rho, "rho")
        if not -1.0 < rho < 1.0:
            raise ValueError(f"`rho` must be a real number in (-1, 1); got {self.rho!r}.")

    @classmethod
    def from_mutual_information(cls, mi: float, *, dim: int = 1) -> GaussianMI:
        """The problem with I(x; y) = ``mi`` nats: rho = sqrt(1 - exp(-2 mi / dim)).

        Raises
        ------
        TypeError
            If ``mi`` is not a real number.
        ValueError
            If ``mi`` is negative, not finite or so large per dimension that rho rounds to 1,
            or ``dim`` is not a positive integer.
        """
        mi = _check_real(mi, "mi")
        if mi < 0:
            raise ValueError(f"`mi` must be a real number >= 0; got {mi!r}.")
        d = check_int(dim, "dim", minimum=1)
        rho = math.sqrt(-math.expm1(-2.0 * mi / d))
        if rho >= 1.0:  # 1 - rho^2 = exp(-2 mi / dim) is below float64's resolution near 1
            raise ValueError(
                f"`mi` must be at most about 18 nats per dimension (rho rounds to 1 beyond); "
                f"got {mi!r} for dim={d}. Raise `dim`."
            )
        return cls(dim=d, rho=rho)

    def mutual_information(self) -> float:
        """I(x; y) = -(dim / 2) log(1 - rho^2), in nats."""
        return -0.5 * self.dim * math.log1p(-self.rho * self.rho)

    @property
    def joint(self) -> CorrelatedGaussian:
        """The pair (joint, product of marginals) over the concatenated rows (x, y)."""
        return CorrelatedGaussian(dim=2 * self.dim, rho=self.rho)

    def _transform(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The marginal maps applied to the Gaussian draws (the identity here)."""
        return x, y

    def sample(self, n: int, *, rng: RngLike = None) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` independent pairs (x_i, y_i).

        Parameters
        ----------
        n : int
            Number of pairs (at least 1).
        rng : None, int, SeedSequence or Generator, default=None
            Source of randomness; an int gives the same pairs on every call.

        Returns
        -------
        x, y : ndarray of shape (n, dim)
            Float64 samples; row i of ``x`` is paired with row i of ``y``.
        """
        n = check_int(n, "n", minimum=1)
        z = check_rng(rng).standard_normal((2, n, self.dim))
        x = z[0]
        y = self.rho * x + math.sqrt(1.0 - self.rho * self.rho) * z[1]
        return self._transform(x, y)


@dataclass(frozen=True, kw_only=True)
class TransformedGaussianMI(GaussianMI):
    """:class:`GaussianMI` through invertible marginal maps: x -> sinh(x), y -> y^3.

    Mutual information is invariant under invertible maps of x and of y separately, so
    I(sinh(x); y^3) = I(x; y) = -(dim / 2) log(1 - rho^2), while the marginals are no longer
    Gaussian (y^3 is heavy-tailed): a check that an estimator measures dependence, not shape.

    Examples
    --------
    >>> import numpy as np
    >>> from ratiokit.synthetic import GaussianMI, TransformedGaussianMI
    >>> x, y = TransformedGaussianMI(rho=0.5).sample(2, rng=0)
    >>> x0, y0 = GaussianMI(rho=0.5).sample(2, rng=0)
    >>> bool(np.allclose(x, np.sinh(x0)) and np.allclose(y, y0**3))
    True
    """

    def _transform(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.sinh(x), y**3
