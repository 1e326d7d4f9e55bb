"""Priors for simulation-based inference: :class:`BoxUniform`, and :class:`Prior`, one
interface over the priors :func:`ratiokit.infer` accepts (torch distributions, frozen
scipy.stats distributions, sequences of univariate ones, a BoxUniform).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ratiokit._rng import check_rng, fork_torch_rng
from ratiokit._validation import check_int

__all__ = ["BoxUniform", "Prior"]


class BoxUniform:
    """The uniform prior on a box: independent uniforms on ``[low_j, high_j]``, j = 1..d.

    ``log p(theta) = -sum_j log(high_j - low_j)`` inside the box, ``-inf`` outside.

    Parameters
    ----------
    low, high : array-like of shape (d,)
        The box's corners; ``low < high`` in every coordinate (scalars give d = 1).

    Raises
    ------
    ValueError
        If the corners are not finite 1-D arrays of one length with ``low < high``.

    Examples
    --------
    >>> prior = BoxUniform([0.0, -1.0], [1.0, 1.0])
    >>> prior.sample(3, rng=0).shape, float(prior.log_prob([[0.5, 0.0]])[0])
    ((3, 2), -0.6931471805599453)
    """

    def __init__(self, low: Any, high: Any) -> None:
        self.low = np.atleast_1d(np.asarray(low, dtype=np.float64))
        self.high = np.atleast_1d(np.asarray(high, dtype=np.float64))
        if self.low.ndim != 1 or self.low.shape != self.high.shape:
            raise ValueError(
                "`low` and `high` must be 1-D arrays of one length; got shapes "
                f"{self.low.shape} and {self.high.shape}."
            )
        if not (np.isfinite(self.low).all() and np.isfinite(self.high).all()):
            raise ValueError("`low` and `high` must be finite.")
        if not (self.low < self.high).all():
            raise ValueError(
                f"`low` must be below `high` in every coordinate; got {low!r}, {high!r}."
            )

    @property
    def dim(self) -> int:
        """The number of parameters d."""
        return self.low.size

    def sample(self, n: int, *, rng: Any = None) -> np.ndarray:
        """``n`` independent draws, an array of shape (n, d)."""
        n = check_int(n, "n", minimum=1)
        return check_rng(rng).uniform(self.low, self.high, size=(n, self.dim))

    def log_prob(self, theta: Any) -> np.ndarray:
        """``log p(theta)`` of each row of ``theta`` (m, d): an array of shape (m,)."""
        theta = np.asarray(theta, dtype=np.float64).reshape(-1, self.dim)
        inside = ((theta >= self.low) & (theta <= self.high)).all(axis=1)
        return np.where(inside, -np.log(self.high - self.low).sum(), -np.inf)

    def __repr__(self) -> str:
        return f"BoxUniform(low={self.low.tolist()}, high={self.high.tolist()})"


class Prior:
    """One interface over the accepted priors: ``sample(n, gen)`` and ``log_prob(theta)``,
    both on NumPy float64 arrays of shape (n, d) and (n,)."""

    def __init__(self, prior: Any) -> None:
        self.prior = prior
        if isinstance(prior, BoxUniform):
            self.dim = prior.dim
        elif isinstance(prior, torch.distributions.Distribution):
            self.shape = (*prior.batch_shape, *prior.event_shape)
            self.dim = math.prod(self.shape)
        elif isinstance(prior, Sequence) and not isinstance(prior, str | bytes) and prior:
            for i, factor in enumerate(prior):
                if not (hasattr(factor, "rvs") and hasattr(factor, "logpdf")):
                    raise TypeError(
                        "`prior` must be a torch distribution, a frozen scipy.stats "
                        "distribution, a sequence of univariate ones or a BoxUniform; got "
                        f"element {i} of type {type(factor).__name__}."
                    )
            self.dim = len(prior)
        elif hasattr(prior, "rvs") and hasattr(prior, "logpdf"):
            self.dim = int(np.size(prior.rvs(random_state=np.random.default_rng(0))))
        else:
            raise TypeError(
                "`prior` must be a torch distribution, a frozen scipy.stats distribution, a "
                f"sequence of univariate ones or a BoxUniform; got {type(prior).__name__}."
            )

    def sample(self, n: int, gen: np.random.Generator) -> np.ndarray:
        prior = self.prior
        if isinstance(prior, BoxUniform):
            return prior.sample(n, rng=gen)
        if isinstance(prior, torch.distributions.Distribution):
            with fork_torch_rng(gen), torch.no_grad():
                draws = prior.sample((n,))
            return draws.reshape(n, self.dim).double().cpu().numpy()
        if isinstance(prior, Sequence):
            return np.stack([f.rvs(size=n, random_state=gen) for f in prior], axis=1)
        return np.asarray(prior.rvs(size=n, random_state=gen), dtype=np.float64).reshape(n, -1)

    def log_prob(self, theta: np.ndarray) -> np.ndarray:
        prior = self.prior
        if isinstance(prior, BoxUniform):
            return prior.log_prob(theta)
        if isinstance(prior, torch.distributions.Distribution):
            t = torch.as_tensor(theta).reshape(-1, *self.shape)
            # Only rows inside the support are evaluated (torch's validation would raise).
            inside = prior.support.check(t).reshape(t.shape[0], -1).all(dim=1)
            lp = torch.full((t.shape[0],), -math.inf, dtype=torch.float64)
            with torch.no_grad():
                inner = prior.log_prob(t[inside])  # shape (k, *batch_shape)
                lp[inside] = (inner.flatten(1).sum(1) if inner.ndim > 1 else inner).double()
            return lp.numpy()
        if isinstance(prior, Sequence):
            return sum(f.logpdf(theta[:, j]) for j, f in enumerate(prior))
        log_p = prior.logpdf(theta.squeeze(-1) if self.dim == 1 else theta)
        return np.asarray(log_p, dtype=np.float64).reshape(len(theta))
