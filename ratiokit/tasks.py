"""Benchmark tasks with known posteriors, for checking simulation-based inference.

A task is a prior, a vectorised simulator ``simulator(theta, rng)`` (a batch of thetas of
shape (n, theta_dim) in one call, returning (n, x_dim): the contract :func:`ratiokit.infer`
takes), a few fixed observations, and :meth:`Task.reference_posterior`, an exact sampler of
``p(theta | x)`` at any observation, against which an approximate posterior is compared
(:func:`ratiokit.c2st`). Four tasks follow the definitions of Lueckmann et al. (2021,
"sbibm"), tasks T.1, T.3, T.7 and T.8; the fifth has a count output:

- :class:`GaussianLinear`: ``theta ~ N(0, 0.1 I_10)``, ``x | theta ~ N(theta, 0.1 I_10)``;
  the posterior is Gaussian in closed form.
- :class:`TwoMoons`: a crescent-shaped likelihood folded by ``|theta_1 + theta_2|``, so the
  posterior is two crescents; sampled exactly by inverting the simulator's construction.
- :class:`SLCP`: a simple likelihood (4 Gaussian draws whose mean and covariance are
  functions of theta) with a complex posterior (four symmetric modes); sampled exactly by
  rejection with an analytic bound.
- :class:`GaussianMixture`: ``x | theta ~ N(theta, I) / 2 + N(theta, 0.01 I) / 2`` under a
  uniform prior; the posterior is the same mixture centred at x, truncated to the box.
- :class:`PoissonGamma`: 10 Poisson counts with a gamma prior on their rate; the posterior
  is a gamma distribution (conjugacy).

Module ``tasks`` rather than more classes in :mod:`ratiokit.simulators`: those simulators
follow :func:`ratiokit.fit`'s contract (one theta, n points, known true parameters); a task
simulates one x per theta for a whole batch and carries a prior and a reference posterior.
"""

from __future__ import annotations

import abc
import functools
import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import scipy.stats

from ratiokit._rng import check_rng
from ratiokit._validation import check_int
from ratiokit.inference import as_rows
from ratiokit.priors import BoxUniform, Prior

__all__ = [
    "SLCP",
    "TASKS",
    "GaussianLinear",
    "GaussianMixture",
    "PoissonGamma",
    "Task",
    "TwoMoons",
]

#: Proposals per batch of the rejection samplers.
BATCH = 100_000
#: Rejection samplers give up after this many proposals per requested draw.
MAX_PROPOSALS_PER_DRAW = 100_000


class Task(abc.ABC):
    """A prior, a vectorised simulator, fixed observations and an exact posterior sampler.

    Subclasses set the class attributes and implement :attr:`prior`, :meth:`_simulate` and
    :meth:`_reference`.

    Attributes
    ----------
    name : str
        Key in :data:`TASKS`.
    theta_dim, x_dim : int
        Dimensions of a parameter and of an observation.
    n_observations : int
        How many fixed observations :attr:`observations` holds.
    seed : int
        Seeds the fixed observations' parameters and simulations.
    """

    name: ClassVar[str]
    theta_dim: ClassVar[int]
    x_dim: ClassVar[int]
    n_observations: ClassVar[int] = 5
    seed: ClassVar[int]

    @property
    @abc.abstractmethod
    def prior(self) -> Any:
        """The prior, in a form :func:`ratiokit.infer` takes."""

    def simulator(self, theta: Any, rng: Any = None) -> np.ndarray:
        """One simulation at each row of ``theta``: ``x_i ~ p(x | theta_i)``.

        Parameters
        ----------
        theta : array-like of shape (n, theta_dim) or (theta_dim,)
        rng : None, int or numpy.random.Generator, default=None

        Returns
        -------
        ndarray of float64 of shape (n, x_dim)

        Raises
        ------
        ValueError
            If ``theta`` has the wrong shape or a value that is not finite.
        """
        return self._simulate(as_rows(theta, "theta", self.theta_dim), check_rng(rng))

    def reference_posterior(self, n: int, *, x: Any, rng: Any = None) -> np.ndarray:
        """``n`` independent draws from the exact posterior ``p(theta | x)``.

        Parameters
        ----------
        n : int
            Number of draws.
        x : array-like of shape (x_dim,) or (1, x_dim)
            One observation.
        rng : None, int or numpy.random.Generator, default=None

        Returns
        -------
        ndarray of float64 of shape (n, theta_dim)

        Raises
        ------
        ValueError
            If ``n`` < 1, ``x`` is not one finite observation of ``x_dim`` features, or ``x``
            is impossible under the model.
        """
        n = check_int(n, "n", minimum=1)
        x = as_rows(x, "x", self.x_dim)
        if x.shape[0] != 1:
            raise ValueError(
                f"`x` must be one observation of shape ({self.x_dim},); got {x.shape[0]} rows."
            )
        return self._reference(n, x[0], check_rng(rng))

    @functools.cached_property
    def true_parameters(self) -> np.ndarray:
        """The parameters of the fixed observations, prior draws: shape (n_observations,
        theta_dim)."""
        return Prior(self.prior).sample(self.n_observations, np.random.default_rng(self.seed))

    @functools.cached_property
    def observations(self) -> np.ndarray:
        """Fixed observations, one simulation at each of :attr:`true_parameters`: shape
        (n_observations, x_dim)."""
        return self.simulator(self.true_parameters, np.random.default_rng(self.seed + 1))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(theta_dim={self.theta_dim}, x_dim={self.x_dim})"

    @abc.abstractmethod
    def _simulate(self, theta: np.ndarray, gen: np.random.Generator) -> np.ndarray: ...

    @abc.abstractmethod
    def _reference(self, n: int, x: np.ndarray, gen: np.random.Generator) -> np.ndarray: ...


def _rejection(propose: Callable[[int], np.ndarray], n: int, what: str) -> np.ndarray:
    """``n`` rows from batches of :data:`BATCH` proposals, ``propose(m)`` returning the
    accepted rows of m; raise if fewer than n come from ``MAX_PROPOSALS_PER_DRAW n``."""
    kept: list[np.ndarray] = []
    n_kept, n_drawn = 0, 0
    while n_kept < n:
        if n_drawn >= MAX_PROPOSALS_PER_DRAW * n:
            raise ValueError(
                f"`x` must be an observation the model can produce; the {what} accepted "
                f"{n_kept} of {n_drawn} proposals."
            )
        rows = propose(BATCH)
        kept.append(rows)
        n_kept += rows.shape[0]
        n_drawn += BATCH
    return np.concatenate(kept)[:n]


class GaussianLinear(Task):
    """Task T.1 of sbibm: ``theta ~ N(0, 0.1 I_10)``, ``x | theta ~ N(theta, 0.1 I_10)``.

    The posterior is ``N(x / 2, 0.05 I_10)``: precisions add, ``1 / 0.1 + 1 / 0.1 = 20``, and
    the mean is ``(x / 0.1) / 20``.

    Examples
    --------
    >>> task = GaussianLinear()
    >>> task.simulator(task.true_parameters, rng=0).shape
    (5, 10)
    >>> draws = task.reference_posterior(4000, x=task.observations[0], rng=0)
    >>> bool(abs(draws.var(axis=0).mean() - 0.05) < 0.003)
    True
    """

    name: ClassVar[str] = "gaussian_linear"
    theta_dim: ClassVar[int] = 10
    x_dim: ClassVar[int] = 10
    seed: ClassVar[int] = 1001
    #: The prior's and the likelihood's variance per coordinate.
    prior_var: ClassVar[float] = 0.1
    noise_var: ClassVar[float] = 0.1

    @property
    def prior(self) -> Any:
        """``scipy.stats.multivariate_normal(0, 0.1 I_10)``."""
        return scipy.stats.multivariate_normal(
            np.zeros(self.theta_dim), self.prior_var * np.eye(self.theta_dim)
        )

    def _simulate(self, theta: np.ndarray, gen: np.random.Generator) -> np.ndarray:
        return theta + math.sqrt(self.noise_var) * gen.standard_normal(theta.shape)

    def _reference(self, n: int, x: np.ndarray, gen: np.random.Generator) -> np.ndarray:
        var = 1.0 / (1.0 / self.prior_var + 1.0 / self.noise_var)
        return var * x / self.noise_var + math.sqrt(var) * gen.standard_normal((n, x.size))


class TwoMoons(Task):
    """Task T.8 of sbibm, "two moons": a crescent shifted by a folded function of theta.

    ``theta ~ U([-1, 1]^2)``; ``a ~ U(-pi/2, pi/2)``, ``r ~ N(0.1, 0.01^2)``,
    ``p = (r cos a + 0.25, r sin a)`` and
    ``x = p + (-|theta_1 + theta_2| / sqrt 2, (theta_2 - theta_1) / sqrt 2)``.

    Reference posterior, exact: the shift ``g(theta)`` is a rotation folded along
    ``theta_1 + theta_2 = 0``, two-to-one with unit Jacobian on each side, so
    ``p(theta | x)`` is proportional to the density of ``p`` at ``x - g(theta)`` on the box.
    Draw ``p`` as the simulator does, solve ``g(theta) = x - p`` (none when the first
    coordinate of ``x - p`` is positive), take either preimage with probability 1/2 and keep
    it if it lies in the box.
    """

    name: ClassVar[str] = "two_moons"
    theta_dim: ClassVar[int] = 2
    x_dim: ClassVar[int] = 2
    seed: ClassVar[int] = 1008

    @property
    def prior(self) -> BoxUniform:
        """``BoxUniform([-1, -1], [1, 1])``."""
        return BoxUniform([-1.0, -1.0], [1.0, 1.0])

    @staticmethod
    def _crescent(m: int, gen: np.random.Generator) -> np.ndarray:
        a = gen.uniform(-math.pi / 2, math.pi / 2, size=m)
        r = gen.normal(0.1, 0.01, size=m)
        return np.stack([r * np.cos(a) + 0.25, r * np.sin(a)], axis=1)

    def _simulate(self, theta: np.ndarray, gen: np.random.Generator) -> np.ndarray:
        shift = np.stack(
            [-np.abs(theta[:, 0] + theta[:, 1]), theta[:, 1] - theta[:, 0]], axis=1
        ) / math.sqrt(2)
        return self._crescent(theta.shape[0], gen) + shift

    def _reference(self, n: int, x: np.ndarray, gen: np.random.Generator) -> np.ndarray:
        def propose(m: int) -> np.ndarray:
            u = x - self._crescent(m, gen)  # = g(theta)
            total = -math.sqrt(2) * u[:, 0] * gen.choice([-1.0, 1.0], size=m)  # theta_1 + theta_2
            diff = math.sqrt(2) * u[:, 1]  # theta_2 - theta_1
            theta = np.stack([(total - diff) / 2, (total + diff) / 2], axis=1)
            keep = (u[:, 0] <= 0) & (np.abs(theta) <= 1).all(axis=1)
            return theta[keep]

        return _rejection(propose, n, "two-moons reference sampler")


class SLCP(Task):
    """Task T.3 of sbibm, "simple likelihood, complex posterior".

    ``theta ~ U([-3, 3]^5)``; x is 4 independent draws from ``N(m, S)``, flattened to 8
    numbers, with ``m = (theta_1, theta_2)``, ``s_1 = theta_3^2``, ``s_2 = theta_4^2``,
    ``rho = tanh(theta_5)`` and ``S = [[s_1^2, rho s_1 s_2], [rho s_1 s_2, s_2^2]]``. The
    signs of theta_3 and theta_4 do not change S, so the posterior has four symmetric modes.

    Reference posterior, exact (rejection sampling, where sbibm ran MCMC): with ``xbar``
    the mean and ``A = sum_i (x_i - xbar)(x_i - xbar)^T`` the scatter of the 4 points, the
    likelihood is ``|S|^{-3/2} exp(-tr(S^-1 A) / 2) N(m; xbar, S / 4)`` up to a constant.
    Changing variables from ``(theta_3, theta_4, theta_5)`` to S (four sign preimages,
    Jacobian ``16 (S_11 S_22)^{1/4} |S|``), S has density proportional to
    ``|S|^{-5/2} (S_11 S_22)^{-1/4} exp(-tr(S^-1 A) / 2)`` on the reachable set
    (``S_11, S_22 <= 81``, ``|rho| <= tanh 3``). Since ``S_11 S_22 >= |S|`` (Hadamard), this
    is at most the inverse-Wishart density with 2.5 degrees of freedom and scale A, with
    ratio ``(1 - rho^2)^{1/4} <= 1``. So S is drawn from that inverse Wishart and accepted
    with probability ``(1 - rho^2)^{1/4}`` when reachable, the signs of theta_3 and theta_4
    are drawn fairly, ``m ~ N(xbar, S / 4)``, and the draw is kept if m lies in the box.
    Every step is exact, so there is no approximation and no mixing between modes to
    worry about.
    """

    name: ClassVar[str] = "slcp"
    theta_dim: ClassVar[int] = 5
    x_dim: ClassVar[int] = 8
    seed: ClassVar[int] = 1003
    #: Draws per simulation.
    n_points: ClassVar[int] = 4

    @property
    def prior(self) -> BoxUniform:
        """``BoxUniform(-3 * ones(5), 3 * ones(5))``."""
        return BoxUniform(np.full(5, -3.0), np.full(5, 3.0))

    @staticmethod
    def _cholesky(theta: np.ndarray) -> np.ndarray:
        """The lower Cholesky factor of S for each row: shape (n, 2, 2)."""
        s1, s2, rho = theta[:, 2] ** 2, theta[:, 3] ** 2, np.tanh(theta[:, 4])
        chol = np.zeros((theta.shape[0], 2, 2))
        chol[:, 0, 0] = s1
        chol[:, 1, 0] = rho * s2
        chol[:, 1, 1] = s2 * np.sqrt(1.0 - rho**2)
        return chol

    def _simulate(self, theta: np.ndarray, gen: np.random.Generator) -> np.ndarray:
        z = gen.standard_normal((theta.shape[0], self.n_points, 2))
        points = theta[:, None, :2] + np.einsum("nij,nkj->nki", self._cholesky(theta), z)
        return points.reshape(theta.shape[0], 2 * self.n_points)

    def _reference(self, n: int, x: np.ndarray, gen: np.random.Generator) -> np.ndarray:
        points = x.reshape(self.n_points, 2)
        xbar = points.mean(axis=0)
        scatter = (points - xbar).T @ (points - xbar)
        if np.linalg.det(scatter) <= 0:
            raise ValueError(
                "`x` must hold points that are not on one line (their scatter matrix is "
                "singular, which the model produces with probability 0)."
            )
        root = np.linalg.cholesky(np.linalg.inv(scatter))
        max_scale, max_rho = 3.0**4, math.tanh(3.0)

        def propose(m: int) -> np.ndarray:
            # S = W^-1 with W ~ Wishart(2.5, A^-1) by Bartlett's decomposition: W = G G^T with
            # G = R B, R = chol(A^-1), B lower triangular with B_11^2 ~ chi2(2.5),
            # B_22^2 ~ chi2(1.5) and B_21 ~ N(0, 1); 2 x 2 products and inverse written out.
            b_11 = np.sqrt(gen.chisquare(2.5, size=m))
            b_22 = np.sqrt(gen.chisquare(1.5, size=m))
            b_21 = gen.standard_normal(m)
            g_11, g_21, g_22 = (
                root[0, 0] * b_11,
                root[1, 0] * b_11 + root[1, 1] * b_21,
                root[1, 1] * b_22,
            )
            w_11, w_12, w_22 = g_11**2, g_11 * g_21, g_21**2 + g_22**2
            det = (g_11 * g_22) ** 2
            var_1, var_2, rho = w_22 / det, w_11 / det, -w_12 / np.sqrt(w_11 * w_22)
            accept = np.log(gen.uniform(size=m)) < 0.25 * np.log1p(-(rho**2))
            keep = accept & (var_1 <= max_scale) & (var_2 <= max_scale) & (np.abs(rho) <= max_rho)
            signs = gen.choice([-1.0, 1.0], size=(m, 2))[keep]
            theta = np.zeros((int(keep.sum()), 5))
            theta[:, 2:4] = signs * np.stack([var_1[keep], var_2[keep]], axis=1) ** 0.25
            theta[:, 4] = np.arctanh(rho[keep])
            chol = self._cholesky(theta) / math.sqrt(self.n_points)  # of S / 4
            z = gen.standard_normal((theta.shape[0], 2))
            theta[:, :2] = xbar + np.einsum("nij,nj->ni", chol, z)
            return theta[(np.abs(theta[:, :2]) <= 3.0).all(axis=1)]

        return _rejection(propose, n, "SLCP reference sampler")


class GaussianMixture(Task):
    """Task T.7 of sbibm: ``theta ~ U([-10, 10]^2)``,
    ``x | theta ~ N(theta, I) / 2 + N(theta, 0.01 I) / 2``.

    The likelihood is symmetric in theta and x, so the posterior is the mixture
    ``N(x, I) / 2 + N(x, 0.01 I) / 2`` truncated to the box: sampled exactly by drawing it
    and keeping the draws inside.
    """

    name: ClassVar[str] = "gaussian_mixture"
    theta_dim: ClassVar[int] = 2
    x_dim: ClassVar[int] = 2
    seed: ClassVar[int] = 1007
    #: The two components' standard deviations (equal weights).
    scales: ClassVar[tuple[float, float]] = (1.0, 0.1)

    @property
    def prior(self) -> BoxUniform:
        """``BoxUniform([-10, -10], [10, 10])``."""
        return BoxUniform([-10.0, -10.0], [10.0, 10.0])

    def _noise(self, m: int, gen: np.random.Generator) -> np.ndarray:
        scale = np.where(gen.uniform(size=m) < 0.5, *self.scales)
        return scale[:, None] * gen.standard_normal((m, 2))

    def _simulate(self, theta: np.ndarray, gen: np.random.Generator) -> np.ndarray:
        return theta + self._noise(theta.shape[0], gen)

    def _reference(self, n: int, x: np.ndarray, gen: np.random.Generator) -> np.ndarray:
        def propose(m: int) -> np.ndarray:
            theta = x + self._noise(m, gen)
            return theta[(np.abs(theta) <= 10.0).all(axis=1)]

        return _rejection(propose, n, "Gaussian-mixture reference sampler")


class PoissonGamma(Task):
    """Counts: 10 independent ``Poisson(theta)`` draws, with ``theta ~ Gamma(2, rate 0.5)``.

    By conjugacy the posterior is ``Gamma(2 + sum_i x_i, rate 0.5 + 10)``.
    """

    name: ClassVar[str] = "poisson_gamma"
    theta_dim: ClassVar[int] = 1
    x_dim: ClassVar[int] = 10
    seed: ClassVar[int] = 1010
    #: The gamma prior's shape and rate.
    shape: ClassVar[float] = 2.0
    rate: ClassVar[float] = 0.5

    @property
    def prior(self) -> Any:
        """``scipy.stats.gamma(2, scale=1 / 0.5)``."""
        return scipy.stats.gamma(self.shape, scale=1.0 / self.rate)

    def _simulate(self, theta: np.ndarray, gen: np.random.Generator) -> np.ndarray:
        return gen.poisson(theta, size=(theta.shape[0], self.x_dim)).astype(np.float64)

    def _reference(self, n: int, x: np.ndarray, gen: np.random.Generator) -> np.ndarray:
        if (x < 0).any() or (x != np.round(x)).any():
            raise ValueError(f"`x` must hold non-negative integer counts; got {x.tolist()}.")
        shape, rate = self.shape + x.sum(), self.rate + x.size
        return gen.gamma(shape, 1.0 / rate, size=(n, 1))


#: Task name -> class.
TASKS: dict[str, type[Task]] = {
    task.name: task for task in (GaussianLinear, TwoMoons, SLCP, GaussianMixture, PoissonGamma)
}
