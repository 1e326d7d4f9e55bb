"""Example simulators with known parameters, for fitting with :func:`ratiokit.fit`.

Each simulator is a callable ``simulator(theta, n, rng)`` that draws ``n`` points at the
parameter vector ``theta`` and knows its parameter names, its true parameters (which
:meth:`Simulator.sample` uses to make synthetic observations) and the box of parameters it
accepts. Called with a NumPy ``theta`` and a NumPy ``rng`` it returns a float64 array of
shape (n, n_features): a black box for gradient-free fitting. The differentiable ones
(``differentiable = True``) also take a torch ``theta`` and a :class:`torch.Generator` and
return a tensor differentiable in ``theta`` through reparameterised draws, for fitting by
gradient descent:

- :class:`GaussianLocationScale`: ``x = loc + scale z`` with ``z ~ N(0, I)``;
- :class:`GAndK`: the g-and-k distribution, defined by its quantile function at a standard
  normal draw (no closed-form density: a standard likelihood-free benchmark);
- :class:`MG1Queue`: inter-departure times of an M/G/1 queue (NumPy only), a time series
  whose likelihood is intractable;
- :class:`ChainBinomialSIR`: weekly new infections of a chain-binomial SIR epidemic in
  villages (NumPy only), a simulator of integer draws.

A gradient-free fit compares simulations under *common random numbers* (the same seed at
every ``theta``), which makes its objective smooth only when each draw moves smoothly, or
at least monotonically, with ``theta``. Integer draws from ``rng.binomial`` or
``rng.poisson`` do not: their algorithms use a number of uniforms that depends on the
parameters. :func:`binomial`, :func:`poisson` and :func:`categorical` draw by inversion of
uniforms the simulator takes from its ``rng`` once, in a fixed order, instead.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from scipy import stats

from ratiokit._rng import check_rng, torch_generator
from ratiokit._validation import check_int

__all__ = [
    "SIMULATORS",
    "ChainBinomialSIR",
    "GAndK",
    "GaussianLocationScale",
    "MG1Queue",
    "Simulator",
    "binomial",
    "categorical",
    "poisson",
]

Bounds = tuple[tuple[float, float], ...]


class Simulator(abc.ABC):
    """A parametric simulator ``theta -> n`` points, with known parameters and bounds.

    Subclasses are frozen dataclasses with a ``theta_true`` field and implement
    :meth:`_numpy` (and :meth:`_torch` when ``differentiable``).

    Attributes
    ----------
    name : str
        Registry key in :data:`SIMULATORS`.
    param_names : tuple of str
        Names of the entries of ``theta``.
    differentiable : bool
        Whether a torch ``theta`` gives samples differentiable in it.
    theta_true : tuple of float
        The parameters :meth:`sample` draws observations at.
    """

    name: ClassVar[str]
    param_names: ClassVar[tuple[str, ...]]
    differentiable: ClassVar[bool] = False
    theta_true: tuple[float, ...]

    @property
    def bounds(self) -> Bounds:
        """``(low, high)`` per parameter (``-inf``/``inf`` where unbounded); both included."""
        return self._bounds()

    @property
    def n_features(self) -> int:
        """Number of features (columns) of a sample."""
        return 1

    @property
    def n_params(self) -> int:
        """Number of parameters."""
        return len(self.param_names)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "theta_true", tuple(self.check_theta(self.theta_true, "theta_true"))
        )

    def check_theta(self, theta: Any, name: str = "theta") -> np.ndarray:
        """Return ``theta`` as a float64 array of shape (n_params,) inside :attr:`bounds`.

        Raises
        ------
        ValueError
            If ``theta`` has the wrong length, is not finite or leaves the bounds.
        """
        try:
            arr = np.array(theta, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as err:
            raise ValueError(f"`{name}` must be an array of real numbers; got {theta!r}.") from err
        if arr.shape != (self.n_params,):
            raise ValueError(
                f"`{name}` must hold {self.n_params} parameters {self.param_names}; "
                f"got shape {arr.shape}."
            )
        low, high = np.array(self.bounds).T
        if not np.isfinite(arr).all() or (arr < low).any() or (arr > high).any():
            box = ", ".join(
                f"{p} in [{a:g}, {b:g}]"
                for p, (a, b) in zip(self.param_names, self.bounds, strict=True)
            )
            raise ValueError(f"`{name}` must be finite with {box}; got {arr.tolist()}.")
        return arr

    def __call__(self, theta: Any, n: int, rng: Any = None) -> Any:
        """Draw ``n`` points at ``theta``.

        Parameters
        ----------
        theta : array-like of shape (n_params,) or Tensor
            Parameters. A tensor (differentiable simulators only) gives a tensor of its dtype
            and device, differentiable in ``theta``.
        n : int
            Number of points (at least 1).
        rng : None, int, Generator or torch.Generator, default=None
            Source of randomness: a NumPy seed or Generator for NumPy ``theta``; a
            :class:`torch.Generator` (or a NumPy seed to make one) for a tensor ``theta``.

        Returns
        -------
        ndarray or Tensor of shape (n, n_features)

        Raises
        ------
        ValueError
            If ``theta`` is invalid (see :meth:`check_theta`) or ``n`` < 1.
        TypeError
            If ``theta`` is a tensor and the simulator is not differentiable.
        """
        n = check_int(n, "n", minimum=1)
        if isinstance(theta, torch.Tensor):
            if not self.differentiable:
                raise TypeError(
                    f"`theta` must be a NumPy array for {type(self).__name__}, which has no "
                    "differentiable torch form; got a Tensor."
                )
            if theta.shape != (self.n_params,):
                raise ValueError(
                    f"`theta` must hold {self.n_params} parameters {self.param_names}; "
                    f"got shape {tuple(theta.shape)}."
                )
            gen = rng if isinstance(rng, torch.Generator) else torch_generator(rng, theta.device)
            return self._torch(theta, n, gen)
        return self._numpy(self.check_theta(theta), n, check_rng(rng))

    def sample(self, n: int, *, rng: Any = None) -> np.ndarray:
        """Draw ``n`` observations at :attr:`theta_true` (a float64 array (n, n_features))."""
        return self(np.asarray(self.theta_true), n, check_rng(rng))

    @abc.abstractmethod
    def _bounds(self) -> Bounds: ...

    @abc.abstractmethod
    def _numpy(self, theta: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray: ...

    def _torch(self, theta: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - guarded by `differentiable`


@dataclass(frozen=True)
class GaussianLocationScale(Simulator):
    """``x = loc + scale z`` with ``z ~ N(0, I_dim)``: parameters ``(loc, scale)``.

    Parameters
    ----------
    theta_true : tuple of float, default=(1.0, 2.0)
        ``(loc, scale)`` of the observations; ``scale > 0``.
    dim : int, default=1
        Number of features; every coordinate shares ``loc`` and ``scale``.

    Examples
    --------
    >>> sim = GaussianLocationScale()
    >>> x = sim([1.0, 2.0], 10_000, rng=0)
    >>> x.shape, round(float(x.mean()), 1), round(float(x.std()), 1)
    ((10000, 1), 1.0, 2.0)
    """

    name: ClassVar[str] = "gaussian"
    param_names: ClassVar[tuple[str, ...]] = ("loc", "scale")
    differentiable: ClassVar[bool] = True
    theta_true: tuple[float, ...] = (1.0, 2.0)
    dim: int = 1

    def __post_init__(self) -> None:
        check_int(self.dim, "dim", minimum=1)
        super().__post_init__()

    @property
    def n_features(self) -> int:
        """Number of features: ``dim``."""
        return self.dim

    def _bounds(self) -> Bounds:
        return ((-math.inf, math.inf), (0.0, math.inf))

    def _numpy(self, theta: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        return theta[0] + theta[1] * rng.standard_normal((n, self.dim))

    def _torch(self, theta: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
        z = torch.randn(n, self.dim, generator=gen, dtype=theta.dtype, device=theta.device)
        return theta[0] + theta[1] * z


@dataclass(frozen=True)
class GAndK(Simulator):
    r"""The g-and-k distribution: ``x = Q(z)`` at a standard normal ``z``.

    ``Q(z) = A + B (1 + c tanh(g z / 2)) (1 + z^2)^k z`` with ``c = 0.8``: location ``A``,
    scale ``B > 0``, skewness ``g`` and tail weight ``k`` (kurtosis rises with ``k``). The
    density has no closed form, but the quantile function makes sampling exact and
    differentiable in the parameters.

    Parameters
    ----------
    theta_true : tuple of float, default=(3.0, 1.0, 2.0, 0.5)
        ``(A, B, g, k)``, the values of the ABC literature (Allingham, King and Mengersen,
        2009).

    Notes
    -----
    Bounds are the prior box ``[0, 10]^4`` of that literature (``B = 0`` is a point mass).

    References
    ----------
    Rayner and MacGillivray (2002), "Numerical maximum likelihood estimation for the g-and-k
    and generalized g-and-h distributions", Stat. Comput. 12. Allingham, King and Mengersen
    (2009), "Bayesian estimation of quantile distributions", Stat. Comput. 19.

    Examples
    --------
    >>> sim = GAndK()
    >>> x = sim.sample(100_000, rng=0)
    >>> round(float(np.median(x)), 1)  # Q(0) = A
    3.0
    """

    name: ClassVar[str] = "g-and-k"
    param_names: ClassVar[tuple[str, ...]] = ("A", "B", "g", "k")
    differentiable: ClassVar[bool] = True
    theta_true: tuple[float, ...] = (3.0, 1.0, 2.0, 0.5)
    #: The overall asymmetry constant c, fixed at its conventional value.
    c: ClassVar[float] = 0.8

    def _bounds(self) -> Bounds:
        return ((0.0, 10.0),) * 4

    def _numpy(self, theta: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        a, b, g, k = theta
        z = rng.standard_normal((n, 1))
        return a + b * (1.0 + self.c * np.tanh(0.5 * g * z)) * (1.0 + z**2) ** k * z

    def _torch(self, theta: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
        a, b, g, k = theta
        z = torch.randn(n, 1, generator=gen, dtype=theta.dtype, device=theta.device)
        return a + b * (1.0 + self.c * torch.tanh(0.5 * g * z)) * (1.0 + z**2) ** k * z


@dataclass(frozen=True)
class MG1Queue(Simulator):
    r"""Inter-departure times of a first-come-first-served M/G/1 queue.

    Customers arrive as a Poisson process of rate ``rate``; service times are uniform on
    ``[service_min, service_min + service_width]``. Departures follow
    ``d_i = max(a_i, d_{i-1}) + s_i``; the observation is ``d_i - d_{i-1}`` for ``n``
    consecutive customers after ``burn_in`` customers (so the queue has forgotten that it
    started empty). The recursion is computed without a loop, as
    ``d_i = S_i + max_{j <= i} (a_j - S_{j-1})`` with ``S_i`` the cumulative service time.

    Parameters
    ----------
    theta_true : tuple of float, default=(1.0, 4.0, 0.2)
        ``(service_min, service_width, rate)``: service on [1, 5], utilisation
        ``rate * (service_min + service_width / 2) = 0.6``.
    burn_in : int, default=100
        Customers simulated and discarded before the ``n`` observed ones.

    Notes
    -----
    Bounds are the prior box of the ABC literature: ``[0, 10]`` for both service parameters
    and ``[0, 1/3]`` for the arrival rate. Only a NumPy form: fit it gradient-free.

    References
    ----------
    Heggland and Frigessi (2004), "Estimating functions in indirect inference", J. R. Stat.
    Soc. B 66. Fearnhead and Prangle (2012), "Constructing summary statistics for approximate
    Bayesian computation", J. R. Stat. Soc. B 74.

    Examples
    --------
    >>> sim = MG1Queue()
    >>> y = sim.sample(20_000, rng=0)
    >>> bool(y.min() >= 1.0), round(float(y.mean()), 1)  # mean 1 / rate in steady state
    (True, 5.0)
    """

    name: ClassVar[str] = "mg1-queue"
    param_names: ClassVar[tuple[str, ...]] = ("service_min", "service_width", "rate")
    theta_true: tuple[float, ...] = (1.0, 4.0, 0.2)
    burn_in: int = 100

    def __post_init__(self) -> None:
        check_int(self.burn_in, "burn_in", minimum=0)
        super().__post_init__()

    def _bounds(self) -> Bounds:
        return ((0.0, 10.0), (0.0, 10.0), (0.0, 1.0 / 3.0))

    def _numpy(self, theta: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        s_min, width, rate = theta
        total = n + self.burn_in
        service = s_min + width * rng.random(total)
        cum = np.cumsum(service)
        # rate 0 means no arrival ever: infinite times and NaN gaps, which a fit reports.
        with np.errstate(divide="ignore", invalid="ignore"):
            arrivals = np.cumsum(rng.standard_exponential(total) / rate)
            start = np.maximum.accumulate(arrivals - np.concatenate(([0.0], cum[:-1])))
            gaps = np.diff(cum + start, prepend=0.0)
        return gaps[self.burn_in :, None]


@dataclass(frozen=True)
class ChainBinomialSIR(Simulator):
    r"""Weekly new infections of a chain-binomial SIR epidemic in ``n`` villages.

    Every village has ``population`` people, ``initial_infected`` of them infectious at week
    0 and the rest susceptible. Each week, with ``S`` susceptible and ``I`` infectious,

    ``new ~ Binomial(S, 1 - exp(-beta I / population))``, ``recovered ~ Binomial(I, gamma)``,

    then ``S -= new`` and ``I += new - recovered``. An observation (one row) is the
    ``n_weeks`` counts of new infections, as floats. Parameters ``(beta, gamma)``: the
    transmission rate and the weekly probability of recovery.

    Parameters
    ----------
    theta_true : tuple of float, default=(1.5, 0.4)
        ``(beta, gamma)`` of the observations.
    population : int, default=1000
        People per village.
    initial_infected : int, default=10
        Infectious people per village at week 0 (at most ``population``).
    n_weeks : int, default=10
        Weeks observed: the number of features.
    crn : bool, default=True
        Draw by inversion of uniforms fixed by ``rng`` (:func:`binomial`): each draw is
        then monotone and piecewise constant in its probability, so for a fixed seed the
        output moves little as ``theta`` does, and a gradient-free fit finds the minimum.
        ``False`` draws with ``rng.binomial`` instead: the naive form, whose objective
        zigzags under common random numbers (for comparison).

    Notes
    -----
    Bounds: ``beta`` in [0, 5], ``gamma`` in [0, 1]. Only a NumPy form: fit it
    gradient-free.

    References
    ----------
    Bailey (1975), "The mathematical theory of infectious diseases and its applications",
    Griffin. Andersson and Britton (2000), "Stochastic epidemic models and their
    statistical analysis", Springer.

    Examples
    --------
    >>> sim = ChainBinomialSIR()
    >>> x = sim.sample(2000, rng=0)
    >>> x.shape, bool(x.sum(axis=1).max() <= 990)  # at most the 990 susceptibles fall ill
    ((2000, 10), True)
    >>> # Week 1: 990 susceptibles, each infected with probability 1 - exp(-1.5 * 10 / 1000).
    >>> round(float(x[:, 0].mean()), 1), round(990 * (1 - math.exp(-0.015)), 1)
    (14.7, 14.7)
    """

    name: ClassVar[str] = "sir"
    param_names: ClassVar[tuple[str, ...]] = ("beta", "gamma")
    theta_true: tuple[float, ...] = (1.5, 0.4)
    population: int = 1000
    initial_infected: int = 10
    n_weeks: int = 10
    crn: bool = True

    def __post_init__(self) -> None:
        check_int(self.population, "population", minimum=1)
        check_int(self.initial_infected, "initial_infected", minimum=0)
        if self.initial_infected > self.population:
            raise ValueError(
                f"`initial_infected` must be at most `population`={self.population}; "
                f"got {self.initial_infected}."
            )
        check_int(self.n_weeks, "n_weeks", minimum=1)
        if not isinstance(self.crn, bool):
            raise TypeError(f"`crn` must be a bool; got {self.crn!r}.")
        super().__post_init__()

    @property
    def n_features(self) -> int:
        """Number of features: ``n_weeks``."""
        return self.n_weeks

    def _bounds(self) -> Bounds:
        return ((0.0, 5.0), (0.0, 1.0))

    def _numpy(self, theta: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        beta, gamma = theta
        # One uniform per draw, in an order that does not depend on theta (unused if naive).
        u = rng.random((self.n_weeks, 2, n)) if self.crn else None
        susceptible = np.full(n, self.population - self.initial_infected, dtype=np.int64)
        infectious = np.full(n, self.initial_infected, dtype=np.int64)
        counts = np.empty((n, self.n_weeks))
        for week in range(self.n_weeks):
            p_infect = -np.expm1(-beta * infectious / self.population)
            if u is None:
                new = rng.binomial(susceptible, p_infect)
                recovered = rng.binomial(infectious, gamma)
            else:
                new = binomial(susceptible, p_infect, u[week, 0])
                recovered = binomial(infectious, gamma, u[week, 1])
            susceptible = susceptible - new
            infectious = infectious + new - recovered
            counts[:, week] = new
        return counts


# ----------------------------------------------------------------------------------------
# Discrete draws by inversion, for common random numbers


def _real_array(
    value: Any, name: str, constraint: str, valid: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Return ``value`` as a float64 array after checking ``valid(array)`` holds everywhere."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        found = repr(value) if arr.ndim == 0 else f"an array of dtype {arr.dtype}"
        raise TypeError(f"`{name}` must be an array of real numbers; got {found}.")
    arr = arr.astype(np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~valid(arr)
    if bad.any():
        raise ValueError(f"`{name}` must {constraint}; got {float(arr[bad][0])!r}.")
    return arr


def _broadcast(**arrays: np.ndarray) -> list[np.ndarray]:
    """Broadcast named arrays to one shape, naming them all in the error."""
    try:
        return list(np.broadcast_arrays(*arrays.values()))
    except ValueError as err:
        names = ", ".join(f"`{name}`" for name in arrays)
        shapes = ", ".join(str(a.shape) for a in arrays.values())
        raise ValueError(f"{names} must broadcast to one shape; got shapes {shapes}.") from err


def _uniforms(u: Any) -> np.ndarray:
    """Return ``u`` as a float64 array of uniforms in [0, 1]."""
    return _real_array(u, "u", "hold uniforms in [0, 1]", lambda a: (a >= 0) & (a <= 1))


def binomial(n: Any, p: Any, u: Any) -> np.ndarray:
    r"""Binomial(``n``, ``p``) draws by inversion of the uniforms ``u``.

    The draw is the generalised inverse of the distribution function,
    ``min{k in support : F(k; n, p) >= u}``: a monotone, piecewise-constant function of
    ``n``, ``p`` and ``u``. Drawing ``u`` once from a simulator's ``rng`` and reusing it at
    every parameter value keeps the random numbers common to all of them, as a gradient-free
    :func:`ratiokit.fit` needs; ``rng.binomial(n, p)`` does not (how many uniforms it uses,
    and how, depends on ``n`` and ``p``), so its draws jump at random as ``p`` moves.

    Parameters
    ----------
    n : array-like of int
        Numbers of trials (>= 0).
    p : array-like of float
        Success probabilities, in [0, 1].
    u : array-like of float
        Uniforms in [0, 1], e.g. ``rng.random(shape)``; ``n``, ``p`` and ``u`` broadcast.

    Returns
    -------
    ndarray of int64, of the broadcast shape
        Always inside the support: ``0`` where ``p = 0``, ``n`` where ``p = 1``.

    Raises
    ------
    TypeError
        If an argument is not real-valued.
    ValueError
        If ``n`` is not a non-negative integer, ``p`` or ``u`` leaves [0, 1], or the shapes do
        not broadcast.

    Notes
    -----
    The quantile is :func:`scipy.stats.binom.ppf`: a few microseconds a draw, about six times
    as long as ``rng.binomial`` takes.

    See Also
    --------
    poisson, categorical, ChainBinomialSIR

    Examples
    --------
    >>> u = np.random.default_rng(0).random(5)
    >>> binomial(10, 0.3, u).tolist(), binomial(10, 0.6, u).tolist()  # larger p, never fewer
    ([3, 2, 1, 0, 4], [7, 5, 3, 3, 7])
    """
    n_arr = _real_array(
        n, "n", "hold integers >= 0", lambda a: (a >= 0) & (a == np.floor(a)) & (a < np.inf)
    )
    p_arr = _real_array(p, "p", "hold probabilities in [0, 1]", lambda a: (a >= 0) & (a <= 1))
    n_arr, p_arr, u_arr = _broadcast(n=n_arr, p=p_arr, u=_uniforms(u))
    k = stats.binom.ppf(u_arr, n_arr, p_arr)
    # SciPy's quantile of 0 is -1 and of 1 is n whatever p is: clip to the support.
    low = np.where(p_arr == 1.0, n_arr, 0.0)
    high = np.where(p_arr == 0.0, 0.0, n_arr)
    return np.clip(k, low, high).astype(np.int64)


def poisson(rate: Any, u: Any) -> np.ndarray:
    r"""Poisson(``rate``) draws by inversion of the uniforms ``u``.

    The draw is ``min{k in support : F(k; rate) >= u}``, monotone and piecewise constant in
    ``rate`` and ``u``: reuse one ``u`` at every parameter value for common random numbers
    (see :func:`binomial`).

    Parameters
    ----------
    rate : array-like of float
        Means (finite, >= 0).
    u : array-like of float
        Uniforms in [0, 1), e.g. ``rng.random(shape)``; 1 only where ``rate`` is 0 (the
        quantile of 1 is infinite otherwise). ``rate`` and ``u`` broadcast.

    Returns
    -------
    ndarray of int64, of the broadcast shape
        0 where ``rate`` is 0.

    Raises
    ------
    TypeError
        If an argument is not real-valued.
    ValueError
        If ``rate`` is negative or not finite, ``u`` leaves [0, 1] or is 1 where
        ``rate`` > 0, or the shapes do not broadcast.

    Notes
    -----
    The quantile is :func:`scipy.stats.poisson.ppf`: a few microseconds a draw.

    Examples
    --------
    >>> u = np.random.default_rng(0).random(5)
    >>> poisson(2.0, u).tolist(), poisson(4.0, u).tolist()
    ([2, 1, 0, 0, 3], [5, 3, 1, 0, 6])
    """
    rate_arr = _real_array(
        rate, "rate", "hold finite rates >= 0", lambda a: (a >= 0) & (a < np.inf)
    )
    rate_arr, u_arr = _broadcast(rate=rate_arr, u=_uniforms(u))
    if ((u_arr == 1.0) & (rate_arr > 0)).any():
        raise ValueError("`u` must be < 1 where `rate` > 0 (its quantile is infinite); got 1.0.")
    # SciPy's quantile of 0 is -1 and, at rate 0, of 1 is inf: ask for u = 0 there and clip.
    k = stats.poisson.ppf(np.where(rate_arr > 0, u_arr, 0.0), rate_arr)
    return np.maximum(k, 0.0).astype(np.int64)


def categorical(probs: Any, u: Any) -> np.ndarray:
    r"""Categorical draws (indices into the last axis of ``probs``) by inversion of ``u``.

    The draw is ``min{j : p_0 + ... + p_j >= u}`` among the categories of positive
    probability: monotone in ``u`` and piecewise constant in ``probs``, so reusing one ``u``
    at every parameter value keeps the random numbers common (see :func:`binomial`).

    Parameters
    ----------
    probs : array-like of shape (..., k)
        Probabilities of the ``k`` categories (>= 0, summing to 1 within 1.5e-8 along the
        last axis, then normalised).
    u : array-like of float
        Uniforms in [0, 1], e.g. ``rng.random(shape)``; it broadcasts with
        ``probs[..., 0]``.

    Returns
    -------
    ndarray of int64, of the broadcast shape
        Indices in ``range(k)`` of categories with positive probability.

    Raises
    ------
    TypeError
        If an argument is not real-valued.
    ValueError
        If ``probs`` has no category axis, a negative or non-finite entry, or rows that do
        not sum to 1; if ``u`` leaves [0, 1]; or if the shapes do not broadcast.

    Examples
    --------
    >>> u = np.random.default_rng(0).random(5)
    >>> categorical([0.2, 0.5, 0.3], u).tolist()
    [1, 1, 0, 0, 2]
    """
    p_arr = _real_array(
        probs, "probs", "hold probabilities >= 0", lambda a: (a >= 0) & (a < np.inf)
    )
    if p_arr.ndim == 0 or p_arr.shape[-1] == 0:
        raise ValueError(
            f"`probs` must have a last axis of at least 1 category; got shape {p_arr.shape}."
        )
    total = p_arr.sum(axis=-1)
    off = np.abs(total - 1.0) > 1.5e-8
    if off.any():
        raise ValueError(
            "`probs` must sum to 1 along the last axis (within 1.5e-8); "
            f"got a sum of {float(total[off].flat[0])!r}."
        )
    _, u_arr = _broadcast(probs=p_arr[..., 0], u=_uniforms(u))
    bounds = np.cumsum(p_arr, axis=-1)[..., :-1] / total[..., None]
    index = (bounds < u_arr[..., None]).sum(axis=-1)
    # u = 0 or 1 (or rounding) could pick a category of probability 0: keep to the support.
    positive = p_arr > 0
    k = p_arr.shape[-1]
    first = np.argmax(positive, axis=-1)
    last = k - 1 - np.argmax(positive[..., ::-1], axis=-1)
    return np.clip(index, first, last).astype(np.int64)


#: Registry of the example simulators by name.
SIMULATORS: dict[str, type[Simulator]] = {
    cls.name: cls for cls in (GaussianLocationScale, GAndK, MG1Queue, ChainBinomialSIR)
}
