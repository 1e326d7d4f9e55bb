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
  whose likelihood is intractable.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from ratiokit._rng import check_rng, torch_generator
from ratiokit._validation import check_int

__all__ = ["SIMULATORS", "GAndK", "GaussianLocationScale", "MG1Queue", "Simulator"]

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


#: Registry of the example simulators by name.
SIMULATORS: dict[str, type[Simulator]] = {
    cls.name: cls for cls in (GaussianLocationScale, GAndK, MG1Queue)
}
