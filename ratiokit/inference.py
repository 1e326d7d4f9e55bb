"""Amortised simulation-based inference by neural ratio estimation (NRE).

A critic ``f(theta, x)`` learns to tell joint pairs ``(theta, x) ~ p(theta) p(x | theta)``
from pairs whose thetas are shuffled, ``(theta', x) ~ p(theta) p(x)``; its optimum is
``f = log r`` with ``r(theta, x) = p(x | theta) / p(x)``, so the posterior is
``p(theta | x) = r(theta, x) p(theta)`` (Hermans et al. 2020). :func:`infer` simulates the
pairs, trains the critic with :func:`ratiokit.critics.train_critic` and returns a
:class:`Posterior`, which evaluates the ratio and samples the posterior at any ``x``.

(The module is not named after its function: a submodule ``ratiokit.infer`` would replace
the lazily imported ``rk.infer``.)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ratiokit._checkpoint import load_checkpoint, save_checkpoint, sidecar
from ratiokit._progress import check_progress, progress_bar
from ratiokit._rng import check_rng
from ratiokit._simulation import check_output
from ratiokit._validation import as_sample, check_choice, check_int, check_positive
from ratiokit.critics import (
    Standardize,
    check_network,
    check_training,
    make_critic,
    mlp_critic,
    train_critic,
)
from ratiokit.priors import Prior
from ratiokit.results import TrainHistory

__all__ = [
    "LOSSES",
    "SAMPLERS",
    "Posterior",
    "PosteriorSamples",
    "effective_sample_size",
    "infer",
    "nre_loss",
    "simulate",
    "slice_sample",
]

#: The training losses of :func:`infer`.
LOSSES = ("nre-a", "nre-b", "nre-c")
#: The samplers of :meth:`Posterior.sample`.
SAMPLERS = ("sir", "rejection", "slice")
#: Slice sampling's defaults: the fewest chains, and sweeps (every coordinate once) discarded
#: as warm-up (the chains start from SIR draws, already near the posterior).
N_CHAINS = 100
WARMUP = 20
#: Stepping out of slice sampling: at most this many widths in all, on both sides.
MAX_STEP_OUT = 10
#: Rows of ``[theta, x]`` per critic pass when :meth:`Posterior.sample` serves many
#: observations (proposals times observations, in chunks of whole observations).
CHUNK_ROWS = 2**18
#: Sequential rounds: the posterior mass at ``x_obs`` left outside the truncation box, and
#: the proposals (from the current truncated prior) that locate the box.
TRUNCATION_MASS = 1e-4
TRUNCATION_PROPOSALS = 20_000
#: Truncated prior draws: at most this many batches of rejection from the prior.
MAX_TRUNCATION_BATCHES = 1000
#: What :meth:`Posterior.save` records, beside the checkpoint format's own tag.
_CONTENTS = "ratiokit.Posterior"


def nre_loss(scores: torch.Tensor, loss: str, gamma: float = 1.0) -> torch.Tensor:
    r"""The NRE training loss on a score matrix: column 0 joint, columns 1..K contrastive.

    ``scores[i, 0] = f(theta_i, x_i)`` scores a joint pair and ``scores[i, k] = f(theta'_k, x_i)``,
    k = 1..K, pairs with independent thetas. With ``s_0`` the joint score and ``s_k`` the
    contrastive ones, means over rows i:

    - ``"nre-b"`` (Durkan et al. 2020): the (K+1)-class cross-entropy
      ``-E[s_0 - log sum_{k=0}^{K} exp s_k]``; its minimiser is ``log r`` plus a function of x.
    - ``"nre-c"`` (Miller et al. 2022), with ``p_0 = 1 / (1 + gamma)``:
      ``-E[p_0 log(K / (K + gamma sum_{k=1}^{K} e^{s_k})) + (1 - p_0) log(gamma e^{s_0} /
      (K + gamma sum_{k=0}^{K-1} e^{s_k}))]``, minimised by ``f = log r`` exactly.
    - ``"nre-a"`` (Hermans et al. 2020): NRE-C with K = 1 and gamma = 1, the balanced
      logistic loss ``E[softplus(-s_0)] / 2 + E[softplus(s_1)] / 2``.

    Parameters
    ----------
    scores : Tensor of shape (b, K + 1)
        K >= 1 (``"nre-a"`` reads columns 0 and 1 only).
    loss : {"nre-a", "nre-b", "nre-c"}
    gamma : float, default=1.0
        NRE-C's odds of a joint against an all-marginal set (positive).

    Returns
    -------
    Tensor
        The 0-d loss.

    Examples
    --------
    >>> import torch
    >>> s = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    >>> float(nre_loss(s, "nre-a")), float(nre_loss(s, "nre-b"))  # log 2 each
    (0.6931471805599453, 0.6931471805599453)
    """
    check_choice(loss, "loss", LOSSES)
    gamma = check_positive(gamma, "gamma")
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise ValueError(
            f"`scores` must have shape (b, K + 1) with K >= 1; got {tuple(scores.shape)}."
        )
    if loss == "nre-b":
        return -(scores[:, 0] - torch.logsumexp(scores, dim=1)).mean()
    if loss == "nre-a":
        scores, gamma = scores[:, :2], 1.0
    k = scores.shape[1] - 1
    log_gamma, log_k = math.log(gamma), math.log(k)
    pad = torch.full((scores.shape[0], 1), log_k, dtype=scores.dtype, device=scores.device)
    marginal = log_k - torch.logsumexp(torch.cat([log_gamma + scores[:, 1:], pad], 1), dim=1)
    joint = log_gamma + scores[:, 0]
    joint = joint - torch.logsumexp(torch.cat([log_gamma + scores[:, :k], pad], 1), dim=1)
    p_0 = 1.0 / (1.0 + gamma)
    return -(p_0 * marginal + (1.0 - p_0) * joint).mean()


def _scores(net: nn.Module, pairs: torch.Tensor, d_theta: int, k: int) -> torch.Tensor:
    """``f`` on each row's joint pair and on K pairs with the thetas of the next K rows.

    Row i of the result is ``[f(theta_i, x_i), f(theta_{i+1}, x_i), ..., f(theta_{i+K}, x_i)]``
    (indices mod b): the rows are independent joint draws, so ``theta_{i+k}`` is independent
    of ``x_i``. One network call on (K + 1) b rows.
    """
    theta, x = pairs[:, :d_theta], pairs[:, d_theta:]
    rows = torch.cat([torch.cat([theta.roll(-j, 0), x], dim=1) for j in range(k + 1)])
    return net(rows).reshape(k + 1, pairs.shape[0]).T


def _as_batch(theta: Any, x: Any, d_theta: int, d_x: int) -> tuple[np.ndarray, np.ndarray]:
    """``theta`` (m, d_theta) and ``x`` broadcast to (m, d_x) as float64 arrays."""
    theta = as_rows(theta, "theta", d_theta)
    x = as_rows(x, "x", d_x)
    if x.shape[0] == 1:
        x = np.broadcast_to(x, (theta.shape[0], d_x))
    elif theta.shape[0] == 1:
        theta = np.broadcast_to(theta, (x.shape[0], d_theta))
    elif x.shape[0] != theta.shape[0]:
        raise ValueError(
            "`theta` and `x` must have the same number of rows, or one of them one row; got "
            f"{theta.shape[0]} and {x.shape[0]}."
        )
    return theta, x


def as_rows(value: Any, name: str, d: int) -> np.ndarray:
    """``value`` as a finite float64 array of shape (m, d); a 1-D input of length d is one row."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`{name}` must be an array of real numbers; got {value!r}.") from err
    if arr.ndim <= 1 and arr.size == d:
        arr = arr.reshape(1, d)
    elif arr.ndim == 1 and d == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != d:
        raise ValueError(f"`{name}` must have shape (m, {d}) or ({d},); got shape {arr.shape}.")
    if not np.isfinite(arr).all():
        raise ValueError(f"`{name}` must hold finite values.")
    return arr


def as_observations(x: Any, d_x: int, iid: bool, name: str = "x") -> np.ndarray:
    """Observations as a finite float64 array of shape (n_obs, n_trials, d_x).

    Without ``iid``, ``x`` is one observation (d_x,) or (1, d_x), or n_obs rows (n_obs, d_x),
    each one trial. With ``iid=True``, ``x`` is one observation made of i.i.d. trials,
    (n_trials, d_x), or n_obs of them, (n_obs, n_trials, d_x).
    """
    if not isinstance(iid, bool):
        raise TypeError(f"`iid` must be True or False; got {iid!r}.")
    if not iid:
        return as_rows(x, name, d_x)[:, None, :]
    arr = np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x)
    if arr.ndim == 3:
        if arr.shape[2] != d_x or 0 in arr.shape:
            raise ValueError(
                f"`{name}` with iid=True must have shape (n_trials, {d_x}) or "
                f"(n_obs, n_trials, {d_x}); got shape {arr.shape}."
            )
        return as_rows(arr.reshape(-1, d_x), name, d_x).reshape(arr.shape)
    if arr.ndim == 2 and arr.shape[1] != d_x:
        raise ValueError(
            f"`{name}` with iid=True must have shape (n_trials, {d_x}) or "
            f"(n_obs, n_trials, {d_x}); got shape {arr.shape}."
        )
    return as_rows(x, name, d_x)[None]


def truncated_sample(
    prior: Prior, low: np.ndarray, high: np.ndarray, n: int, gen: np.random.Generator
) -> np.ndarray:
    """``n`` draws of ``prior`` restricted to the box ``[low, high]``, by rejection.

    Batches of n prior draws until n lie in the box; ValueError after
    :data:`MAX_TRUNCATION_BATCHES` batches (the box then holds almost no prior mass).
    """
    kept: list[np.ndarray] = []
    n_kept = 0
    for _ in range(MAX_TRUNCATION_BATCHES):
        theta = prior.sample(n, gen)
        inside = theta[((theta >= low) & (theta <= high)).all(axis=1)]
        kept.append(inside)
        n_kept += inside.shape[0]
        if n_kept >= n:
            return np.concatenate(kept)[:n]
    raise ValueError(
        f"`truncation` holds too little prior mass: {n_kept} of "
        f"{MAX_TRUNCATION_BATCHES * n} prior draws fell in it."
    )


class _EmbeddingCritic(nn.Module):
    """``f([theta, x]) = head([s(theta), e(s(x))])``: a critic that sees x through an embedding.

    ``s`` standardises every feature (as :func:`ratiokit.critics.make_critic` does), ``e`` is
    the user's embedding network (summary statistics of x) and ``head`` an MLP on the
    standardised theta and the summaries; all trained together.
    """

    def __init__(
        self, standardize: nn.Module, embedding: nn.Module, head: nn.Module, theta_dim: int
    ) -> None:
        super().__init__()
        self.standardize = standardize
        self.embedding = embedding
        self.head = head
        self.theta_dim = theta_dim

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """``log r`` of rows ``[theta, x]`` (m, theta_dim + x_dim), shape (m,)."""
        z = self.standardize(rows)
        summaries = self.embedding(z[:, self.theta_dim :])
        return self.head(torch.cat([z[:, : self.theta_dim], summaries], dim=1))


def embedding_critic(
    embedding: Any, loc: torch.Tensor, scale: torch.Tensor, theta_dim: int, hidden: Any, rng: Any
) -> nn.Module:
    """The critic of :func:`infer` with an ``embedding`` of x: a float64 copy of it (the
    user's module is left as it is) between a standardising layer and an MLP head."""
    if not isinstance(embedding, nn.Module):
        raise TypeError(
            f"`embedding` must be a torch.nn.Module or None; got {type(embedding).__name__}."
        )
    embedding = copy.deepcopy(embedding).to(dtype=torch.float64, device="cpu")
    probe = torch.zeros(2, loc.shape[0] - theta_dim, dtype=torch.float64)
    try:
        with torch.no_grad():
            d_out = embedding(probe).shape
    except (RuntimeError, TypeError, ValueError) as err:
        raise ValueError(
            f"`embedding` must map x of shape (m, {probe.shape[1]}) to (m, d_summary); it "
            f"raised {err!r}."
        ) from err
    if len(d_out) != 2 or d_out[0] != 2 or d_out[1] < 1:
        raise ValueError(
            f"`embedding` must map x of shape (m, {probe.shape[1]}) to (m, d_summary); got "
            f"shape {tuple(d_out)} for m = 2."
        )
    head = mlp_critic(theta_dim + d_out[1], hidden, rng=rng)
    return _EmbeddingCritic(Standardize(loc, scale), embedding, head, theta_dim)


def _resample(
    proposals: np.ndarray, log_r: np.ndarray, n: int, gen: np.random.Generator
) -> tuple[np.ndarray, float]:
    """SIR: ``n`` of the ``proposals`` drawn with replacement with weights ``w = exp(log_r)``,
    and the weights' effective sample size ``(sum w)^2 / sum w^2``."""
    w = np.exp(log_r - log_r.max())
    ess = float(w.sum() ** 2 / (w**2).sum())
    index = gen.choice(proposals.shape[0], size=n, replace=True, p=w / w.sum())
    return proposals[index], ess


def slice_sample(
    log_prob: Callable[[np.ndarray], np.ndarray],
    init: np.ndarray,
    n_sweeps: int,
    width: Any,
    *,
    rng: Any = None,
) -> tuple[np.ndarray, int]:
    """Coordinate-wise slice sampling (Neal 2003), vectorised over independent chains.

    Each sweep updates coordinate j = 1..d of every chain in turn: a level
    ``log y = log p(theta) - E`` with ``E ~ Exp(1)``, an interval of ``width[j]`` placed
    uniformly around ``theta_j`` and stepped out (at most :data:`MAX_STEP_OUT` widths, split
    at random between the sides, which keeps detailed balance), then shrunk towards
    ``theta_j`` until a uniform point of it lies above the level. Every chain moves at once:
    one ``log_prob`` call per stepping or shrinking round, on the chains still active.

    Parameters
    ----------
    log_prob : callable
        ``log p`` up to a constant, rows (m, d) to (m,); ``-inf`` outside the support.
    init : ndarray of shape (n_chains, d)
        Starting points, each with a finite ``log_prob``.
    n_sweeps : int
        Sweeps to run.
    width : array-like of shape (d,)
        The initial interval width per coordinate (positive).
    rng : None, int or numpy.random.Generator, default=None

    Returns
    -------
    ndarray of shape (n_sweeps, n_chains, d)
        The state of every chain after each sweep.
    int
        The rows ``log_prob`` was evaluated on.

    Raises
    ------
    ValueError
        If ``init`` is not a 2-D array whose rows have a finite ``log_prob``, ``width`` is not
        d positive numbers, or ``n_sweeps`` < 1.

    Examples
    --------
    >>> import numpy as np
    >>> def log_prob(theta):  # the standard normal
    ...     return -0.5 * (theta**2).sum(axis=1)
    >>> states, _ = slice_sample(log_prob, np.zeros((100, 1)), 200, [1.0], rng=0)
    >>> draws = states[50:].reshape(-1)  # 15,000 states, ESS about 8,500
    >>> bool(abs(draws.mean()) < 0.05), bool(abs(draws.std() - 1) < 0.05)
    (True, True)
    """
    n_sweeps = check_int(n_sweeps, "n_sweeps", minimum=1)
    theta = np.array(init, dtype=np.float64)
    if theta.ndim != 2:
        raise ValueError(f"`init` must have shape (n_chains, d); got shape {theta.shape}.")
    n_chains, d = theta.shape
    width = np.asarray(width, dtype=np.float64).reshape(-1)
    if width.shape != (d,) or not (np.isfinite(width) & (width > 0)).all():
        raise ValueError(f"`width` must be {d} positive numbers; got {width.tolist()}.")
    gen = check_rng(rng)
    current = np.asarray(log_prob(theta), dtype=np.float64)
    if not np.isfinite(current).all():
        raise ValueError("`init` must hold points with a finite `log_prob`.")
    n_evaluations = n_chains
    states = np.empty((n_sweeps, n_chains, d))

    def evaluate(rows: np.ndarray, j: int, values: np.ndarray) -> np.ndarray:
        nonlocal n_evaluations
        trial = theta[rows].copy()
        trial[:, j] = values
        n_evaluations += rows.size
        return log_prob(trial)

    for sweep in range(n_sweeps):
        for j in range(d):
            level = current - gen.exponential(size=n_chains)
            left = theta[:, j] - width[j] * gen.uniform(size=n_chains)
            right = left + width[j]
            steps_left = np.floor(MAX_STEP_OUT * gen.uniform(size=n_chains)).astype(np.int64)
            steps_right = MAX_STEP_OUT - 1 - steps_left
            # Step both ends out together: one log_prob call per round on both sides' rows.
            out_left, out_right = np.flatnonzero(steps_left > 0), np.flatnonzero(steps_right > 0)
            while out_left.size or out_right.size:
                rows = np.concatenate([out_left, out_right])
                inside = evaluate(rows, j, np.concatenate([left[out_left], right[out_right]]))
                inside = inside > level[rows]
                out_left, out_right = (
                    out_left[inside[: out_left.size]],
                    out_right[inside[out_left.size :]],
                )
                left[out_left] -= width[j]
                right[out_right] += width[j]
                steps_left[out_left] -= 1
                steps_right[out_right] -= 1
                out_left = out_left[steps_left[out_left] > 0]
                out_right = out_right[steps_right[out_right] > 0]
            rows = np.arange(n_chains)
            while rows.size:
                proposal = left[rows] + (right[rows] - left[rows]) * gen.uniform(size=rows.size)
                value = evaluate(rows, j, proposal)
                accept = value > level[rows]
                theta[rows[accept], j] = proposal[accept]
                current[rows[accept]] = value[accept]
                below = proposal < theta[rows, j]
                left[rows[~accept & below]] = proposal[~accept & below]
                right[rows[~accept & ~below]] = proposal[~accept & ~below]
                rows = rows[~accept]
        states[sweep] = theta
    return states, n_evaluations


def effective_sample_size(chains: np.ndarray) -> float:
    """The effective sample size of Markov chains, the smallest over coordinates.

    ``C L / tau`` with ``tau = -1 + 2 sum_m (rho_2m + rho_2m+1)``, the autocorrelations
    ``rho_k`` (about the pooled mean, averaged over the chains) summed in pairs while the
    pair sums are positive (Geyer's initial positive sequence); at most ``C L``.

    Parameters
    ----------
    chains : ndarray of shape (L, C, d)
        L states of C chains in d coordinates.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> gen = np.random.default_rng(0)
    >>> ess = effective_sample_size(gen.standard_normal((1000, 4, 2)))  # independent draws
    >>> bool(3000 < ess <= 4000)
    True
    """
    n_steps, n_chains = chains.shape[:2]
    if n_steps < 2:
        return float(n_chains)
    centred = chains - chains.mean(axis=(0, 1))
    size = 2 ** math.ceil(math.log2(2 * n_steps))
    spectrum = np.fft.rfft(centred, n=size, axis=0)
    acov = np.fft.irfft(spectrum * spectrum.conj(), n=size, axis=0)[:n_steps].mean(axis=1)
    n_pairs = n_steps // 2
    scale = np.where(acov[0] > 0, acov[0], 1.0)  # a constant coordinate has no correlations
    pairs = (acov[0 : 2 * n_pairs : 2] + acov[1 : 2 * n_pairs : 2]) / scale  # (n_pairs, d)
    taus = []
    for column in pairs.T:
        stop = np.flatnonzero(column <= 0)
        taus.append(2.0 * column[: stop[0] if stop.size else n_pairs].sum() - 1.0)
    return float(n_steps * n_chains / max(1.0, max(taus)))


@dataclass(frozen=True, repr=False, eq=False)
class PosteriorSamples:
    """Draws from a :class:`Posterior` at one or many observations, with the sampler's
    diagnostics.

    For one observation the diagnostics are numbers; for ``n_obs`` observations each is an
    array of shape (n_obs,), one entry per observation.

    Attributes
    ----------
    theta : ndarray of shape (n, d), or (n_obs, n, d) for many observations
        The draws.
    method : {"sir", "rejection", "slice"}
    n_proposals : int or ndarray of int
        Thetas whose ratio was evaluated: prior draws, and for slice sampling also the
        points its chains evaluated.
    ess : float, ndarray or None
        SIR: the effective sample size ``(sum w)^2 / sum w^2`` of the importance weights
        ``w = r(theta, x)``; at most ``n_proposals``, and the draws repeat proposals when it
        is not well above n. Slice: the chains' effective sample size (the smallest over
        coordinates, from their autocorrelations), at most the number of kept states.
    acceptance_rate : float, ndarray or None
        Rejection: accepted draws over proposals.
    log_bound : float, ndarray or None
        Rejection: the bound ``log M`` on ``log r`` (the largest over the first proposals).
    n_above_bound : int, ndarray or None
        Rejection: later proposals with ``log r > log M`` (each accepted with probability 1,
        so under-represented; 0 means the bound held).
    """

    theta: np.ndarray
    method: str
    n_proposals: int | np.ndarray
    ess: float | np.ndarray | None = None
    acceptance_rate: float | np.ndarray | None = None
    log_bound: float | np.ndarray | None = None
    n_above_bound: int | np.ndarray | None = None

    def __repr__(self) -> str:
        fields = [f"theta=<array {self.theta.shape}>", f"method={self.method!r}"]
        for name in ("n_proposals", "ess", "acceptance_rate", "log_bound", "n_above_bound"):
            value = getattr(self, name)
            if isinstance(value, np.ndarray):
                fields.append(f"{name}=<array {value.shape}>")
            elif value is not None:
                fields.append(
                    f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}"
                )
        return f"PosteriorSamples({', '.join(fields)})"

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """The draws ``theta``, so ``np.asarray(samples)`` and the front doors take them."""
        return np.array(self.theta, dtype=dtype, copy=copy)


class Posterior:
    """The posterior ``p(theta | x) = r(theta, x) p(theta)`` of a trained ratio critic.

    Built by :func:`infer` (or :meth:`load`); amortised: one critic serves every ``x``.

    Parameters
    ----------
    critic : torch.nn.Module
        Maps float64 rows ``[theta, x]`` of shape (m, d_theta + d_x) to ``log r``, shape (m,).
    prior : object
        As :func:`infer` takes it.
    x_dim : int
        Features of one observation.
    settings : dict
        How the critic was trained; :meth:`save` records it and :meth:`load` rebuilds the
        critic from its ``"hidden"`` widths.
    history : TrainHistory, default=None
    truncation : tuple of two array-likes of shape (theta_dim,), default=None
        A box ``(low, high)`` the posterior is restricted to (sequential rounds of
        :func:`infer`): ``p(theta | x) = r(theta, x) p(theta)`` for theta in the box, 0
        outside, and proposals are prior draws in the box.

    Attributes
    ----------
    critic : torch.nn.Module
        ``f([theta, x]) = log r(theta, x)``, rows of shape (m, d_theta + d_x) to (m,).
    prior : object
        The prior as given.
    theta_dim, x_dim : int
    settings : dict
        How it was trained (loss, gamma, num_contrastive, hidden, n_simulations).
    history : TrainHistory or None
        The training history (None after :meth:`load`).
    truncation : tuple of two ndarrays of shape (theta_dim,), or None
        The box ``(low, high)``, or None for the whole prior.
    """

    def __init__(
        self,
        critic: nn.Module,
        prior: Any,
        *,
        x_dim: int,
        settings: dict[str, Any],
        history: TrainHistory | None = None,
        truncation: tuple[Any, Any] | None = None,
    ) -> None:
        self._prior = Prior(prior)
        self.critic = critic
        self.prior = prior
        self.theta_dim = self._prior.dim
        self.x_dim = x_dim
        self.settings = dict(settings)
        self.history = history
        if truncation is not None:
            low = np.asarray(truncation[0], dtype=np.float64)
            high = np.asarray(truncation[1], dtype=np.float64)
            if low.shape != (self.theta_dim,) or high.shape != low.shape or not (low < high).all():
                raise ValueError(
                    f"`truncation` must be two arrays (low, high) of shape ({self.theta_dim},) "
                    f"with low < high; got {truncation!r}."
                )
            truncation = (low, high)
        self.truncation = truncation

    def __repr__(self) -> str:
        return (
            f"Posterior(theta_dim={self.theta_dim}, x_dim={self.x_dim}, "
            f"loss={self.settings['loss']!r}, n_simulations={self.settings['n_simulations']})"
        )

    def _log_ratio(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            rows = torch.as_tensor(np.concatenate([theta, x], axis=1))
            return self.critic(rows).double().numpy()

    def _log_r(self, theta: np.ndarray, trials: np.ndarray) -> np.ndarray:
        """``sum_i log r(theta, x_i)`` over the trials (n_trials, x_dim) of one observation,
        for each row of ``theta``; one critic pass per trial."""
        total = self._log_ratio(theta, np.broadcast_to(trials[0], (theta.shape[0], self.x_dim)))
        for trial in trials[1:]:
            total = total + self._log_ratio(
                theta, np.broadcast_to(trial, (theta.shape[0], self.x_dim))
            )
        return total

    def _propose(self, m: int, gen: np.random.Generator) -> np.ndarray:
        """``m`` draws of the prior, restricted to :attr:`truncation` when there is one."""
        if self.truncation is None:
            return self._prior.sample(m, gen)
        return truncated_sample(self._prior, *self.truncation, m, gen)

    def _log_prior(self, theta: np.ndarray) -> np.ndarray:
        """The prior's log density, ``-inf`` outside :attr:`truncation` (not renormalised)."""
        log_p = self._prior.log_prob(theta)
        if self.truncation is None:
            return log_p
        low, high = self.truncation
        return np.where(((theta >= low) & (theta <= high)).all(axis=1), log_p, -np.inf)

    def log_ratio(self, theta: Any, x: Any, *, iid: bool = False) -> np.ndarray:
        """The estimated ``log r(theta, x) = log p(x | theta) - log p(x)`` of each row.

        With ``iid=True``, ``x`` is one observation made of i.i.d. trials and the log-ratio
        sums over them: ``log r(theta, x_1..n) = sum_i log r(theta, x_i)``, the ratio
        ``p(x_1..n | theta) / prod_i p(x_i)`` (so that ``p(theta | x_1..n)`` is proportional
        to ``p(theta) prod_i r(theta, x_i)``).

        After ``loss="nre-b"`` the estimate is ``log r`` plus an unknown function of ``x``
        alone (that loss does not identify it); the posterior is unaffected.

        Parameters
        ----------
        theta : array-like of shape (m, theta_dim) or (theta_dim,)
        x : array-like of shape (m, x_dim) or (x_dim,), or (n_trials, x_dim) with iid=True
            One row is paired with every row of the other argument; with ``iid=True`` the
            trials of one observation are paired with every row of ``theta``.
        iid : bool, default=False
            Whether ``x`` is one observation of i.i.d. trials (rows) rather than rows of
            observations.

        Returns
        -------
        ndarray of shape (m,)

        Raises
        ------
        ValueError
            If a shape does not fit or a value is not finite.
        TypeError
            If ``iid`` is not a bool.
        """
        if not isinstance(iid, bool):
            raise TypeError(f"`iid` must be True or False; got {iid!r}.")
        if iid:
            return self._log_r(as_rows(theta, "theta", self.theta_dim), self._one(x, True))
        return self._log_ratio(*_as_batch(theta, x, self.theta_dim, self.x_dim))

    def log_prob(self, theta: Any, x: Any, *, iid: bool = False) -> np.ndarray:
        """The *unnormalised* log posterior ``log r(theta, x) + log p(theta)`` of each row.

        It differs from ``log p(theta | x)`` by the log of the critic's normalising constant
        ``log E_p(theta)[r(theta, x)]``, which is 0 for an exact ratio; ``-inf`` outside the
        prior's support and outside :attr:`truncation`. Arguments as :meth:`log_ratio`
        (with ``iid=True`` the ratios of the trials multiply).
        """
        if not isinstance(iid, bool):
            raise TypeError(f"`iid` must be True or False; got {iid!r}.")
        if iid:
            theta = as_rows(theta, "theta", self.theta_dim)
            return self._log_r(theta, self._one(x, True)) + self._log_prior(theta)
        theta, x = _as_batch(theta, x, self.theta_dim, self.x_dim)
        return self._log_ratio(theta, x) + self._log_prior(theta)

    def _one(self, x: Any, iid: bool) -> np.ndarray:
        """One observation as its trials (n_trials, x_dim); ValueError naming ``x`` if
        ``x`` holds several observations."""
        obs = as_observations(x, self.x_dim, iid)
        if obs.shape[0] != 1:
            shape = f"(n_trials, {self.x_dim})" if iid else f"({self.x_dim},)"
            raise ValueError(
                f"`x` must be one observation of shape {shape}; got {obs.shape[0]} of them."
            )
        return obs[0]

    def sample(
        self,
        n: int,
        *,
        x: Any,
        method: str = "sir",
        n_proposals: int | None = None,
        n_chains: int | None = None,
        warmup: int | None = None,
        iid: bool = False,
        rng: Any = None,
        progress: bool | None = None,
    ) -> PosteriorSamples:
        """Draw ``n`` thetas from the posterior at the observation ``x``, or at each of many.

        ``"sir"`` (sampling-importance-resampling): draw ``n_proposals`` thetas from the
        prior, weight each by ``r(theta, x)`` and draw n of them with replacement in
        proportion to the weights; exact as ``n_proposals`` grows, and the effective sample
        size says how many distinct draws the weights are worth. ``"rejection"``: the bound
        ``M = max r`` over ``n_proposals`` prior draws, then prior draws accepted with
        probability ``r / M`` until n are accepted (exact when M bounds r; later draws above
        M are counted in ``n_above_bound``). ``"slice"``: ``n_chains`` chains of
        coordinate-wise slice sampling (:func:`slice_sample`) on ``log_prob``, all moved
        at once, started from SIR draws (``n_proposals`` prior draws) with interval widths
        their standard deviations; ``warmup`` sweeps are discarded and the next
        ``ceil(n / n_chains)`` sweeps of every chain kept. It does not rely on the prior
        covering the posterior's mass with many proposals, so it suits posteriors much
        narrower than the prior; ``ess`` is then the chains' effective sample size.

        For ``n_obs`` observations, observation i is sampled with the i-th generator of
        ``numpy.random.default_rng(rng).spawn(n_obs)``, so its draws are those of
        ``sample(n, x=x[i], rng=child_i)`` (up to the critic's floating-point reductions
        over a larger batch). SIR evaluates the critic once on the proposals of many
        observations together (:data:`CHUNK_ROWS` rows a pass); rejection and slice
        sampling run observation by observation, and so does SIR for observations of
        several i.i.d. trials (``iid=True``), whose weights are ``prod_i r(theta, x_i)``.
        Proposals are prior draws, in :attr:`truncation` when there is one.

        Parameters
        ----------
        n : int
            Number of draws per observation.
        x : array-like of shape (x_dim,) or (n_obs, x_dim)
            One observation (also as one row), or ``n_obs`` > 1 of them. With ``iid=True``:
            one observation of i.i.d. trials, (n_trials, x_dim), or (n_obs, n_trials, x_dim).
        method : {"sir", "rejection", "slice"}, default="sir"
        n_proposals : int, default=None
            Prior draws for SIR's weights, the rejection bound or the slice chains' starts,
            per observation; default ``max(20 n, 10_000)``.
        n_chains : int, default=None
            Slice sampling's chains (only for ``"slice"``); default ``min(n, max(100, n // 20))``
            (at least 20 kept sweeps per chain when n allows).
        warmup : int, default=None
            Slice sampling's discarded sweeps (only for ``"slice"``); default 20.
        iid : bool, default=False
            Whether each observation is a set of i.i.d. trials (its rows); told explicitly,
            as a 2-D ``x`` is otherwise rows of observations.
        rng : None, int or numpy.random.Generator, default=None
        progress : bool or None, default=None
            A progress bar over the observations (for more than one).

        Returns
        -------
        PosteriorSamples
            ``theta`` of shape (n, theta_dim) for one observation, (n_obs, n, theta_dim) for
            many, and the sampler's diagnostics (arrays of shape (n_obs,) for many).

        Raises
        ------
        ValueError
            If a setting is out of range, ``x`` does not have ``x_dim`` features, or
            rejection sampling accepts fewer than n draws in ``1000 n_proposals`` proposals,
            or ``n_chains`` or ``warmup`` is given for a method other than ``"slice"``.
        TypeError
            If ``iid`` is not a bool.

        Examples
        --------
        >>> import ratiokit as rk
        >>> def simulator(theta, rng):
        ...     return theta + 0.5 * rng.standard_normal(theta.shape)
        >>> post = rk.infer(simulator, rk.BoxUniform([-3.0], [3.0]), n_simulations=500,
        ...                 hidden=(8,), max_steps=50, rng=0)
        >>> post.sample(100, x=[[-1.0], [0.0], [1.0]], rng=0).theta.shape
        (3, 100, 1)
        """
        n = check_int(n, "n", minimum=1)
        check_choice(method, "method", SAMPLERS)
        if method != "slice" and (n_chains is not None or warmup is not None):
            raise ValueError(
                "`n_chains` and `warmup` must be None unless `method`='slice'; got "
                f"{n_chains!r} and {warmup!r} with method={method!r}."
            )
        chains = (
            min(n, max(N_CHAINS, n // 20))
            if n_chains is None
            else check_int(n_chains, "n_chains", minimum=1)
        )
        warmup = WARMUP if warmup is None else check_int(warmup, "warmup", minimum=0)
        m = (
            max(20 * n, 10_000)
            if n_proposals is None
            else check_int(n_proposals, "n_proposals", minimum=1)
        )
        x = as_observations(x, self.x_dim, iid)
        progress = check_progress(progress)
        gen = check_rng(rng)
        slice_settings = (chains, warmup)
        if x.shape[0] == 1:
            return self._sample_one(n, x[0], method, m, gen, slice_settings)
        return self._sample_many(n, x, method, m, gen, progress, slice_settings)

    def _sample_one(
        self,
        n: int,
        x: np.ndarray,
        method: str,
        m: int,
        gen: np.random.Generator,
        slice_settings: tuple[int, int],
    ) -> PosteriorSamples:
        """:meth:`sample` at one observation ``x``, its trials (n_trials, x_dim)."""
        proposals = self._propose(m, gen)
        log_r = self._log_r(proposals, x)
        if method == "sir":
            theta, ess = _resample(proposals, log_r, n, gen)
            return PosteriorSamples(theta=theta, method="sir", n_proposals=m, ess=ess)
        if method == "slice":
            n_chains, warmup = slice_settings
            init, _ = _resample(proposals, log_r, n_chains, gen)
            spread = init.std(axis=0)
            width = np.where(spread > 0, spread, proposals.std(axis=0))

            def log_prob(theta: np.ndarray) -> np.ndarray:
                return self._log_r(theta, x) + self._log_prior(theta)

            sweeps = math.ceil(n / n_chains)
            states, n_evaluations = slice_sample(log_prob, init, warmup + sweeps, width, rng=gen)
            kept = states[warmup:]
            return PosteriorSamples(
                theta=kept.reshape(-1, self.theta_dim)[:n],
                method="slice",
                n_proposals=m + n_evaluations,
                ess=effective_sample_size(kept),
            )
        log_bound = float(log_r.max())
        accepted: list[np.ndarray] = []
        n_accepted, n_drawn, n_above = 0, 0, 0
        while n_accepted < n:
            if n_drawn >= 1000 * m:
                raise ValueError(
                    f"rejection sampling accepted {n_accepted} of {n_drawn} proposals, fewer "
                    f"than `n`={n}; use method='sir' or more `n_proposals`."
                )
            theta = self._propose(m, gen)
            log_r = self._log_r(theta, x)
            n_above += int((log_r > log_bound).sum())
            keep = np.log(gen.uniform(size=m)) < log_r - log_bound
            accepted.append(theta[keep])
            n_accepted += int(keep.sum())
            n_drawn += m
        return PosteriorSamples(
            theta=np.concatenate(accepted)[:n],
            method="rejection",
            n_proposals=m + n_drawn,
            acceptance_rate=n_accepted / n_drawn,
            log_bound=log_bound,
            n_above_bound=n_above,
        )

    def _sample_many(
        self,
        n: int,
        x: np.ndarray,
        method: str,
        m: int,
        gen: np.random.Generator,
        progress: bool | None,
        slice_settings: tuple[int, int],
    ) -> PosteriorSamples:
        """:meth:`sample` at each observation of ``x`` (n_obs > 1, n_trials, x_dim),
        observation i from child i."""
        n_obs = x.shape[0]
        children = gen.spawn(n_obs)
        one_by_one = method != "sir" or x.shape[1] > 1
        per_chunk = 1 if one_by_one else max(1, CHUNK_ROWS // m)
        draws: list[PosteriorSamples] = []
        with progress_bar(n_obs, "posterior samples", progress) as bar:
            for start in range(0, n_obs, per_chunk):
                chunk = children[start : start + per_chunk]
                if one_by_one:
                    draws.append(
                        self._sample_one(n, x[start], method, m, chunk[0], slice_settings)
                    )
                else:
                    proposals = np.stack([self._propose(m, child) for child in chunk])
                    rows = np.repeat(x[start : start + len(chunk), 0], m, axis=0)
                    log_r = self._log_ratio(proposals.reshape(-1, self.theta_dim), rows)
                    for child, theta, lr in zip(
                        chunk, proposals, log_r.reshape(len(chunk), m), strict=True
                    ):
                        theta, ess = _resample(theta, lr, n, child)
                        draws.append(
                            PosteriorSamples(theta=theta, method="sir", n_proposals=m, ess=ess)
                        )
                bar.update(len(chunk))
        names = ("n_proposals", "ess", "acceptance_rate", "log_bound", "n_above_bound")
        diagnostics = {
            name: np.array([getattr(d, name) for d in draws])
            for name in names
            if getattr(draws[0], name) is not None
        }
        return PosteriorSamples(
            theta=np.stack([d.theta for d in draws]), method=method, **diagnostics
        )

    def plot(
        self,
        x: Any,
        *,
        n: int = 1000,
        method: str = "sir",
        reference: Any = None,
        truth: Any = None,
        ax: Any = None,
        iid: bool = False,
        rng: Any = None,
    ) -> np.ndarray:
        """A pair plot of ``n`` posterior draws at the observation ``x``; returns the Axes.

        Draws with :meth:`sample` and plots them with :func:`ratiokit.plot.plot_pairs`:
        histograms on the diagonal, pairs below it, ``reference`` draws (an exact
        posterior's, say) overlaid and ``truth`` marked.

        Parameters
        ----------
        x : array-like of shape (x_dim,), or (n_trials, x_dim) with iid=True
            One observation.
        n : int, default=1000
            Draws to plot.
        method : {"sir", "rejection", "slice"}, default="sir"
        reference : array-like of shape (m, theta_dim), default=None
        truth : array-like of shape (theta_dim,), default=None
        ax : array of Axes of shape (theta_dim, theta_dim), default=None
            Where to draw; default: a new figure.
        iid : bool, default=False
            Whether ``x`` is one observation of i.i.d. trials, as in :meth:`sample`.
        rng : None, int or numpy.random.Generator, default=None

        Returns
        -------
        ndarray of Axes of shape (theta_dim, theta_dim)

        Raises
        ------
        ValueError
            If ``x`` is not one observation, or as :meth:`sample` and
            :func:`~ratiokit.plot.plot_pairs`.
        TypeError
            If ``ax`` is not ``theta_dim ** 2`` Axes or None.
        """
        x = self._one(x, iid)
        from ratiokit.plot import plot_pairs

        draws = self.sample(n, x=x if iid else x[0], method=method, iid=iid, rng=rng).theta
        return plot_pairs(draws, ax=ax, reference=reference, truth=truth)

    def map(
        self, x: Any, *, n_proposals: int = 10_000, iid: bool = False, rng: Any = None
    ) -> np.ndarray:
        """The maximum a posteriori theta at ``x``, approximately: the prior draw of highest
        ``log r + log p(theta)`` among ``n_proposals`` (no gradient refinement, so its error
        is the spacing of the draws near the mode).

        Parameters
        ----------
        x : array-like of shape (x_dim,), or (n_trials, x_dim) with iid=True
            One observation.
        n_proposals : int, default=10_000
            Prior draws (in :attr:`truncation` when there is one) to pick the best of.
        iid : bool, default=False
            Whether ``x`` is one observation of i.i.d. trials, as in :meth:`sample`.
        rng : None, int or numpy.random.Generator, default=None

        Returns
        -------
        ndarray of shape (theta_dim,)
        """
        n_proposals = check_int(n_proposals, "n_proposals", minimum=1)
        x = self._one(x, iid)
        theta = self._propose(n_proposals, check_rng(rng))
        return theta[int(np.argmax(self._log_r(theta, x) + self._log_prior(theta)))]

    def save(self, path: Any, *, overwrite: bool = False) -> Path:
        """Write the critic's weights to ``path`` and its settings to ``path.json``.

        Both files carry the SHA-256 of the other (:mod:`ratiokit._checkpoint`'s format), and
        the weights are read back with ``weights_only=True``: :meth:`load` executes nothing.
        The prior (code) is not saved: pass it to :meth:`load`; nor is an embedding network's
        architecture (code; its weights are saved): pass an instance of it to :meth:`load`.
        The truncation box is saved.

        Raises
        ------
        TypeError
            If ``overwrite`` is not a bool.
        ValueError
            If ``path`` or ``path.json`` exists and ``overwrite`` is False.
        """
        if not isinstance(overwrite, bool):
            raise TypeError(f"`overwrite` must be True or False; got {overwrite!r}.")
        path = Path(path)
        if not overwrite and (path.exists() or sidecar(path).exists()):
            raise ValueError(
                f"`path` must be a new file; got {str(path)!r}, which exists. Pass "
                "`overwrite=True` to replace it."
            )
        meta = {
            "contents": _CONTENTS,
            "theta_dim": self.theta_dim,
            "x_dim": self.x_dim,
            "settings": self.settings,
            "truncation": None
            if self.truncation is None
            else [self.truncation[0].tolist(), self.truncation[1].tolist()],
        }
        save_checkpoint(path, {"critic": self.critic.state_dict()}, meta)
        return path

    @classmethod
    def load(cls, path: Any, *, prior: Any, embedding: nn.Module | None = None) -> Posterior:
        """Read a posterior written by :meth:`save`, with its ``prior`` (not saved).

        Parameters
        ----------
        path : str or path-like
        prior : object
            The prior the posterior was trained with, as :func:`infer` takes it.
        embedding : torch.nn.Module, default=None
            For a posterior trained with an ``embedding``: a module of the same architecture
            (its weights are replaced by the saved ones; the module given is not modified).

        Returns
        -------
        Posterior

        Raises
        ------
        ValueError
            If the files are missing, modified (a SHA-256 differs), not a saved posterior,
            ``prior`` has another dimension than the saved one, or ``embedding`` is missing,
            superfluous or of another architecture than the saved weights.
        """
        path = Path(path)
        loaded = load_checkpoint(path)
        if loaded is None:
            raise ValueError(
                f"`path` must be a file written by Posterior.save; got {str(path)!r}."
            )
        meta, tensors = loaded
        try:
            if meta["contents"] != _CONTENTS:
                raise ValueError("'contents'")
            settings, d_theta, d_x = meta["settings"], meta["theta_dim"], meta["x_dim"]
            hidden = check_network(settings["hidden"], "elu")
            truncation = meta.get("truncation")
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"`path` must hold a Posterior saved by Posterior.save; got {str(path)!r}, "
                f"whose record lacks or malforms {err}."
            ) from err
        if Prior(prior).dim != d_theta:
            raise ValueError(
                f"`prior` must have the saved dimension {d_theta}; got {Prior(prior).dim}."
            )
        if (embedding is None) != (settings.get("embedding") is None):
            raise ValueError(
                "`embedding` must be given exactly when the posterior was trained with one; "
                f"the record at {str(path)!r} has embedding={settings.get('embedding')!r}, "
                f"got embedding={embedding!r}."
            )
        rows = torch.zeros(2, d_theta + d_x, dtype=torch.float64)
        if embedding is None:
            critic = make_critic(
                None, rows, rows, hidden=hidden, activation="elu", spectral_norm=False, rng=0
            )
        else:  # the standardising layer's buffers and all weights come from the file
            ones = torch.ones(d_theta + d_x, dtype=torch.float64)
            critic = embedding_critic(embedding, ones, ones, d_theta, hidden, 0)
        try:
            critic.load_state_dict(tensors["critic"])
        except (KeyError, RuntimeError) as err:
            raise ValueError(
                f"`path` must hold the critic its record describes; got {str(path)!r} ({err})."
            ) from err
        critic.eval()
        return cls(critic, prior, x_dim=d_x, settings=settings, truncation=truncation)


def simulate(
    simulator: Callable[..., Any], theta: np.ndarray, vectorized: bool, gen: np.random.Generator
) -> np.ndarray:
    """The simulations at each row of ``theta`` (n, theta_dim): an array of shape (n, x_dim).

    ``simulator`` follows :func:`infer`'s contract for ``vectorized``; a wrong shape or a
    NaN raises ValueError naming ``simulator``.
    """
    n = theta.shape[0]
    if vectorized:
        out = np.asarray(simulator(theta.copy(), gen))
        d_x = out.shape[1] if out.ndim == 2 else 1
        x, why, _ = check_output(out, n, d_x, "fail")
        if x is None:
            raise ValueError(f"`simulator` {why} for a batch of {n} thetas.")
        return x
    rows: list[np.ndarray] = []
    for i in range(n):
        out = np.asarray(simulator(theta[i].copy(), 1, gen))
        d_x = rows[0].shape[1] if rows else (out.shape[1] if out.ndim == 2 else 1)
        row, why, _ = check_output(out, 1, d_x, "fail")
        if row is None:
            raise ValueError(f"`simulator` {why} at theta = {theta[i].tolist()}.")
        rows.append(row)
    return np.concatenate(rows)


def infer(
    simulator: Callable[..., Any],
    prior: Any,
    *,
    method: str = "nre",
    vectorized: bool = True,
    n_simulations: int = 10_000,
    loss: str = "nre-a",
    num_contrastive: int = 5,
    gamma: float = 1.0,
    hidden: Sequence[int] = (64, 64),
    embedding: nn.Module | None = None,
    rounds: int = 1,
    x_obs: Any = None,
    iid: bool = False,
    max_steps: int = 2000,
    batch_size: int = 128,
    lr: float = 0.001,
    patience: int = 200,
    rng: Any = None,
    progress: bool | None = None,
) -> Posterior:
    r"""Learn the posterior ``p(theta | x) = r(theta, x) p(theta)`` from simulations.

    Draws ``n_simulations`` pairs ``theta ~ p(theta)``, ``x ~ p(x | theta)`` and trains a
    critic ``f([theta, x])`` (an MLP behind a standardising layer) to tell them from pairs
    with shuffled thetas, whose optimum is ``log r(theta, x) = log p(x | theta) - log p(x)``
    (for NRE-B up to a function of x, which cancels in the posterior). Training is
    :func:`ratiokit.critics.train_critic`: Adam on minibatches drawn without replacement,
    early stopping on a held-out fifth of the pairs.

    **Embedding.** With ``embedding=net``, the critic is ``head([theta, net(x)])``: the
    network's summaries of x (after standardising x feature by feature) feed an MLP head
    beside theta, and both are trained together, end to end, so the summaries are those
    that tell joint pairs from shuffled ones.

    **I.i.d. trials.** The critic is trained on single trials; an observation of n i.i.d.
    trials is then served by ``log r(theta, x_1..n) = sum_i log r(theta, x_i)``, which is
    exact for an exact ratio: ``p(x_1..n | theta) = prod_i p(x_i | theta)``, so
    ``p(theta | x_1..n)`` is proportional to ``p(theta) prod_i r(theta, x_i)`` (the
    ``prod_i p(x_i)`` is a constant in theta). See ``iid`` of :meth:`Posterior.sample`.

    **Sequential rounds** (``rounds > 1``, with ``x_obs``): truncated proposals, as TSNPE
    (Deistler et al. 2022) and TMNRE (Miller et al. 2021) do. Round 1 simulates from the
    prior; each later round simulates from the prior restricted to a box, the bounding box
    of the current posterior's highest-density region of mass ``1 - 1e-4``
    (:data:`TRUNCATION_MASS`) at ``x_obs``, located by :data:`TRUNCATION_PROPOSALS` SIR
    proposals from the current box, so the boxes are nested. After each round a fresh critic
    is trained on all pairs so far. Why this is correct: the pooled thetas come from the
    mixture ``q(theta) = sum_r w_r p(theta) 1_{B_r}(theta) / P(B_r)``, and the critic learns
    ``p(x | theta) / q(x)``; on the last box, inside all earlier ones, ``q(theta)`` is the
    prior times a constant, so ``p(theta | x_obs)`` is proportional to
    ``r(theta, x_obs) p(theta)`` on that box, which is where the returned posterior (its
    :attr:`Posterior.truncation`) samples, up to the mass ``1e-4`` cut off. The posterior
    is focused on ``x_obs``: it is not amortised over other observations (it is 0 outside
    the box, where another x's posterior may lie). The budget ``n_simulations`` is split
    evenly over the rounds (the remainder to round 1).

    Parameters
    ----------
    simulator : callable
        With ``vectorized=True``: ``simulator(theta, rng) -> x`` for a batch ``theta`` of
        shape (n, theta_dim), returning (n, x_dim) (or (n,) when x_dim = 1). With
        ``vectorized=False``: the black box of :func:`ratiokit.fit`,
        ``simulator(theta, n, rng)`` with ``theta`` of shape (theta_dim,), called with n = 1
        for each theta. ``rng`` is a :class:`numpy.random.Generator`.
    prior : torch distribution, scipy.stats frozen distribution, sequence or BoxUniform
        A torch distribution (its batch and event shapes flattened to theta_dim), a frozen
        scipy.stats distribution (multivariate, or univariate for theta_dim = 1), a sequence
        of frozen univariate ones (independent coordinates), or :class:`BoxUniform`.
    method : {"nre"}, default="nre"
        Neural ratio estimation (the only method so far).
    vectorized : bool, default=True
        Which simulator contract (above) ``simulator`` follows.
    n_simulations : int, default=10_000
        Simulated pairs.
    loss : {"nre-a", "nre-b", "nre-c"}, default="nre-a"
        The training loss (see :func:`nre_loss`): NRE-A (joint against shuffled, logistic),
        NRE-B (contrastive over ``num_contrastive`` + 1 thetas) or NRE-C (``gamma`` and
        ``num_contrastive``).
    num_contrastive : int, default=5
        K, the shuffled thetas per x for NRE-B and NRE-C (below ``batch_size``); NRE-A uses 1.
    gamma : float, default=1.0
        NRE-C's odds of a joint set against an all-marginal one (positive).
    hidden : sequence of int, default=(64, 64)
        Hidden widths of the critic MLP (ELU activations).
    embedding : torch.nn.Module, default=None
        A network from x (m, x_dim) to summaries (m, d_summary), trained with the critic; a
        float64 copy is trained (the module given is not modified). Its weights are saved
        with the posterior, its architecture is passed again to :meth:`Posterior.load`.
    rounds : int, default=1
        Rounds of simulation and training; above 1, later rounds simulate from the prior
        truncated to where the posterior at ``x_obs`` has its mass. The returned
        posterior's ``history`` is the last round's training.
    x_obs : array-like of shape (x_dim,), default=None
        The observation the rounds focus on (required exactly when ``rounds > 1``); with
        ``iid=True`` its trials, (n_trials, x_dim).
    iid : bool, default=False
        Whether ``x_obs`` is one observation of i.i.d. trials (the simulator still
        simulates one trial per theta).
    max_steps, batch_size, lr, patience
        As :func:`ratiokit.critics.train_critic`.
    rng : None, int or numpy.random.Generator, default=None
        Seeds the prior draws, the simulator, the critic and training; an int gives the same
        posterior bit for bit on the CPU (for a simulator that draws only from its ``rng``).
    progress : bool or None, default=None
        A progress bar while training.

    Returns
    -------
    Posterior

    Raises
    ------
    TypeError
        If an argument has the wrong type (the message names it).
    ValueError
        If a setting is out of range or the simulator returns a wrong shape or NaN.

    References
    ----------
    Hermans, Begy and Louppe (2020), "Likelihood-free MCMC with amortized approximate ratio
    estimators", ICML. Durkan, Murray and Papamakarios (2020), "On contrastive learning for
    likelihood-free inference", ICML. Miller, Weniger and Forré (2022), "Contrastive neural
    ratio estimation", NeurIPS. Miller, Cole, Forré, Louppe and Weniger (2021), "Truncated
    marginal neural ratio estimation", NeurIPS. Deistler, Goncalves and Macke (2022),
    "Truncated proposals for scalable and hassle-free simulation-based inference", NeurIPS.

    Examples
    --------
    >>> import numpy as np
    >>> import ratiokit as rk
    >>> def simulator(theta, rng):  # x | theta ~ N(theta, 0.5^2)
    ...     return theta + 0.5 * rng.standard_normal(theta.shape)
    >>> post = rk.infer(simulator, rk.BoxUniform([-3.0], [3.0]), n_simulations=1000,
    ...                 hidden=(16, 16), max_steps=300, rng=0)
    >>> draws = post.sample(1000, x=[1.0], rng=0)
    >>> draws.theta.shape, bool(abs(draws.theta.mean() - 1.0) < 0.25)
    ((1000, 1), True)
    """
    check_choice(method, "method", ["nre"])
    if not callable(simulator):
        raise TypeError(f"`simulator` must be callable; got {type(simulator).__name__}.")
    if not isinstance(vectorized, bool):
        raise TypeError(f"`vectorized` must be True or False; got {vectorized!r}.")
    n_simulations = check_int(n_simulations, "n_simulations", minimum=10)
    check_choice(loss, "loss", LOSSES)
    k = 1 if loss == "nre-a" else check_int(num_contrastive, "num_contrastive", minimum=1)
    gamma = check_positive(gamma, "gamma")
    widths = check_network(hidden, "elu")
    check_training(
        max_steps=max_steps,
        batch_size=batch_size,
        lr=lr,
        weight_decay=0.0,
        validation_fraction=0.2,
        patience=patience,
    )
    if k >= batch_size:
        raise ValueError(
            f"`num_contrastive` must be below `batch_size`={batch_size}; got {num_contrastive!r}."
        )
    rounds = check_int(rounds, "rounds", minimum=1)
    if (rounds > 1) != (x_obs is not None):
        raise ValueError(
            f"`x_obs` must be given exactly when `rounds` > 1; got rounds={rounds} and "
            f"x_obs={'None' if x_obs is None else 'an observation'}."
        )
    if not isinstance(iid, bool):
        raise TypeError(f"`iid` must be True or False; got {iid!r}.")
    if embedding is not None and not isinstance(embedding, nn.Module):
        raise TypeError(
            f"`embedding` must be a torch.nn.Module or None; got {type(embedding).__name__}."
        )
    sizes = [n_simulations // rounds] * rounds
    sizes[0] += n_simulations - sum(sizes)
    if math.floor(0.2 * sizes[0]) <= k:
        raise ValueError(
            f"`n_simulations` must leave more than `num_contrastive`={k} held-out pairs (a "
            f"fifth) in the first of `rounds`={rounds}; got {n_simulations}."
        )
    progress = check_progress(progress)
    wrapped = Prior(prior)
    gen = check_rng(rng)
    settings = {
        "loss": loss,
        "num_contrastive": k,
        "gamma": gamma,
        "hidden": list(widths),
        "n_simulations": n_simulations,
        "embedding": None if embedding is None else repr(embedding),
        "rounds": rounds,
    }
    d_theta = wrapped.dim

    def objective(module: nn.Module, a: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
        # ``a``: a minibatch of joint pairs (drawn without replacement), or the held-out part.
        return nre_loss(_scores(module, a, d_theta, k), loss, gamma)

    simulations: list[np.ndarray] = []
    truncation = None
    for size in sizes:
        if truncation is None:
            theta = wrapped.sample(size, gen)
        else:
            theta = truncated_sample(wrapped, *truncation, size, gen)
        x = simulate(simulator, theta, vectorized, gen)
        if rounds > 1 and not simulations:  # x_dim is known now: check x_obs before training
            trials = as_observations(x_obs, x.shape[1], iid, "x_obs")
            if trials.shape[0] != 1:
                raise ValueError(
                    f"`x_obs` must be one observation; got {trials.shape[0]} of them."
                )
        simulations.append(np.concatenate([theta, x], axis=1))
        pairs = as_sample(np.concatenate(simulations), "simulations")
        critic = make_critic(
            None, pairs, pairs, hidden=widths, activation="elu", spectral_norm=False, rng=gen
        )
        if embedding is not None:  # the same standardisation, then the embedding and a head
            critic = embedding_critic(
                embedding, critic[0].loc, critic[0].scale, d_theta, widths, gen
            )
        history = train_critic(
            objective,
            critic,
            pairs,
            pairs,
            max_steps=max_steps,
            batch_size=batch_size,
            lr=lr,
            patience=patience,
            replace=False,
            rng=gen,
            progress=progress,
        )
        post = Posterior(
            critic,
            prior,
            x_dim=x.shape[1],
            settings=settings,
            history=history,
            truncation=truncation,
        )
        if len(simulations) < rounds:
            truncation = _highest_density_box(post, trials[0], gen)
    return post


def _highest_density_box(
    post: Posterior, trials: np.ndarray, gen: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The bounding box of the posterior's highest-density region of mass
    ``1 - TRUNCATION_MASS`` at one observation (its trials), from SIR proposals.

    The :data:`TRUNCATION_PROPOSALS` proposals are drawn in the posterior's own truncation,
    so the box lies inside it (the boxes of successive rounds are nested).
    """
    proposals = post._propose(TRUNCATION_PROPOSALS, gen)
    log_w = post._log_r(proposals, trials)
    w = np.exp(log_w - log_w.max())
    order = np.argsort(-w, kind="stable")
    mass = np.cumsum(w[order]) / w.sum()
    kept = proposals[order[: int(np.searchsorted(mass, 1.0 - TRUNCATION_MASS)) + 1]]
    low, high = kept.min(axis=0), kept.max(axis=0)
    # A box of zero width in a coordinate (one kept draw) would hold no prior mass.
    return low, np.where(high > low, high, low + proposals.std(axis=0))
