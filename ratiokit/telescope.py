"""Telescoping density-ratio estimation: many small ratios instead of one large one.

``log p_0 / p_K = sum_k log p_k / p_(k+1)`` over waymark distributions ``p_k`` from the
numerator ``p_0`` to the denominator ``p_K``. Waymark k holds rows
``sqrt(1 - a_k^2) u + a_k v`` mixed from a draw ``u`` of ``p_0`` and ``v`` of ``p_K`` with
``0 = a_0 < a_1 < ... < a_K = 1`` (linear mixing, Rhodes, Xu and Gutmann 2020), and critic k
is a classifier between waymarks k and k + 1 (logistic loss, so ``f_k ~ log p_k / p_(k+1)``).
Each ratio spans a fraction of the divergence, so each classifier sees overlap where a single
one separates the samples perfectly and saturates. Both doors use this module:
:func:`ratiokit.divergence` (all columns mixed) and :func:`ratiokit.mutual_information`
(only y mixed, x kept, so ``p_K`` is the product of the marginals).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ratiokit._validation import check_choice, check_int
from ratiokit.critics import Standardize, mlp_critic, train_critic, training_kwargs

__all__ = [
    "BODIES",
    "SeparateRatios",
    "SharedRatios",
    "check_telescope",
    "check_telescope_body",
    "fit_ratios",
    "telescope_loss",
    "waymarks",
]

#: The critics of a telescope: ``"separate"`` networks, one per consecutive pair of
#: waymarks, or one ``"shared"`` body with one output head per pair.
BODIES = ("separate", "shared")
#: The default body, the one that measured at least as accurate
#: (``benchmarks/results/mutual_information_bodies.md``).
DEFAULT_BODY = "shared"


def check_telescope(telescope: Any) -> tuple[float, ...] | None:
    """The mixing weights ``0 = a_0 < a_1 < ... < a_K = 1`` of ``telescope``, or None.

    An int K gives ``a_k = k / K``; a sequence gives the inner weights ``a_1, ..., a_(K-1)``.

    Raises
    ------
    TypeError
        If ``telescope`` is neither None, an int nor a sequence of real numbers.
    ValueError
        If K < 1 or the inner weights are not strictly increasing in (0, 1).
    """
    if telescope is None:
        return None
    if isinstance(telescope, numbers.Integral) and not isinstance(telescope, bool):
        k = check_int(telescope, "telescope", minimum=1)
        return tuple(i / k for i in range(k + 1))
    if isinstance(telescope, (str, bytes, bool)) or not isinstance(
        telescope, (Sequence, np.ndarray)
    ):
        raise TypeError(
            "`telescope` must be None, an integer or a sequence of mixing weights; "
            f"got {telescope!r}."
        )
    if not all(isinstance(a, numbers.Real) and not isinstance(a, bool) for a in telescope):
        raise TypeError(f"`telescope` must hold real numbers; got {telescope!r}.")
    inner = [float(a) for a in telescope]
    weights = (0.0, *inner, 1.0)
    if not all(lo < hi for lo, hi in zip(weights[:-1], weights[1:], strict=True)):
        raise ValueError(
            f"`telescope` must be strictly increasing mixing weights in (0, 1); got {telescope!r}."
        )
    return weights


def check_telescope_body(body: Any, weights: tuple[float, ...] | None) -> str | None:
    """``body`` resolved (None: :data:`DEFAULT_BODY`), or None without a telescope.

    Raises
    ------
    ValueError
        If ``body`` is not one of :data:`BODIES`, or is given without a telescope (it would be
        ignored).
    """
    if body is None:
        return None if weights is None else DEFAULT_BODY
    check_choice(body, "telescope_body", BODIES)
    if weights is None:
        raise ValueError(
            f"`telescope_body` needs a `telescope` (it would be ignored); got {body!r} with "
            "telescope=None."
        )
    return body


def waymarks(
    u: torch.Tensor, v: torch.Tensor, weights: Sequence[float], keep: int = 0
) -> list[torch.Tensor]:
    """The waymark rows ``sqrt(1 - a_k^2) u + a_k v``, one per weight ``a_k``.

    Parameters
    ----------
    u : Tensor of shape (n, d)
        Draws of the numerator ``p_0`` (weight 0).
    v : Tensor of shape (n, d)
        Draws of the denominator ``p_K`` (weight 1), row i mixed with row i of ``u``.
    weights : sequence of float
        The K + 1 mixing weights from :func:`check_telescope`.
    keep : int, default=0
        The first ``keep`` columns are those of ``u`` in every waymark (the x of a pair in
        mutual information, whose marginal the waymarks keep); the rest are mixed.

    Returns
    -------
    list of Tensor of shape (n, d)
    """
    if keep == 0:
        return [math.sqrt(1.0 - a * a) * u + a * v for a in weights]
    head, tail, other = u[:, :keep], u[:, keep:], v[:, keep:]
    return [torch.cat([head, math.sqrt(1.0 - a * a) * tail + a * other], dim=1) for a in weights]


def telescope_loss(ratios: nn.Module, rows: Sequence[torch.Tensor]) -> torch.Tensor:
    """The sum over k of critic k's balanced logistic loss, waymark k (label 1) against k + 1.

    ``rows`` are the K + 1 waymarks' rows (:func:`waymarks`); ``ratios`` is a
    :class:`SeparateRatios` or :class:`SharedRatios`. The sum separates: with separate
    critics each one's gradient is that of its own pair of waymarks.
    """
    return sum(
        0.5 * (F.softplus(-s_k).mean() + F.softplus(s_next).mean())
        for s_k, s_next in ratios.pair_scores(rows)
    )


class SeparateRatios(nn.Module):
    """K critics with networks of their own: critic k maps rows (n, d) to scores (n,).

    Parameters
    ----------
    critics : sequence of torch.nn.Module
        Critic k estimates ``log p_k / p_(k+1)``.
    """

    def __init__(self, critics: Sequence[nn.Module]) -> None:
        super().__init__()
        self.critics = nn.ModuleList(critics)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """The K log-ratio terms at the rows ``z`` (n, d): shape (n, K)."""
        return torch.stack([f(z) for f in self.critics], dim=1)

    def pair_scores(self, rows: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Critic k's scores on waymark k and on waymark k + 1, for each k."""
        return [(f(rows[k]), f(rows[k + 1])) for k, f in enumerate(self.critics)]


class SharedRatios(nn.Module):
    """One network from rows (n, d) to K scores (n, K): a body shared by K output heads.

    Parameters
    ----------
    net : torch.nn.Module
        Column k of its output estimates ``log p_k / p_(k+1)``.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """The K log-ratio terms at the rows ``z`` (n, d): shape (n, K)."""
        return self.net(z)

    def pair_scores(self, rows: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Head k's scores on waymark k and on waymark k + 1 (one body pass per waymark)."""
        scores = [self.net(z) for z in rows]
        return [(scores[k][:, k], scores[k + 1][:, k]) for k in range(len(rows) - 1)]


def _standardize_waymarks(
    moments: tuple[torch.Tensor, ...], weights: Sequence[float]
) -> Standardize:
    """The standardisation of the pooled waymarks of ``weights``, from the samples' moments.

    ``moments`` are the means and variances of P and Q; waymark ``sqrt(1 - a^2) u + a v``
    with independent rows has mean ``c m_p + a m_q`` and variance ``c^2 s_p^2 + a^2 s_q^2``
    (``c = sqrt(1 - a^2)``), so the pooled moments need no pairing of the rows and do not
    depend on their order.
    """
    m_p, v_p, m_q, v_q = moments
    means = [math.sqrt(1.0 - a * a) * m_p + a * m_q for a in weights]
    second = [
        (1.0 - a * a) * v_p + a * a * v_q + m * m for a, m in zip(weights, means, strict=True)
    ]
    loc = torch.stack(means).mean(dim=0)
    var = (torch.stack(second).mean(dim=0) - loc * loc).clamp(min=0.0)
    scale = var.sqrt()
    return Standardize(loc, torch.where(scale > 0, scale, torch.ones_like(scale)))


def fit_ratios(
    x_p: torch.Tensor,
    x_q: torch.Tensor,
    weights: Sequence[float],
    *,
    body: str,
    classifier: Any,
    rng: np.random.Generator,
) -> SeparateRatios | SharedRatios:
    """Train the K critics of a telescope from P (``x_p``) to Q (``x_q``).

    The networks are :func:`ratiokit.critics.mlp_critic` MLPs with the settings of
    ``classifier`` (a :class:`ratiokit.methods.Classifier`: ``hidden``, ``activation``,
    ``spectral_norm``) behind a standardisation of their waymarks, trained together by
    :func:`ratiokit.critics.train_critic` with the classifier's training settings on the sum
    of their logistic losses. In each minibatch row i of P's draws is mixed with row i of Q's
    (drawn independently), so the pairs are independent draws of P x Q.

    Returns
    -------
    SeparateRatios or SharedRatios
        Trained; ``ratios(x).sum(dim=1)`` is the estimated ``log p(x) / q(x)``.
    """
    like = {"dtype": x_p.dtype, "device": x_p.device}
    moments = (x_p.mean(dim=0), x_p.var(dim=0), x_q.mean(dim=0), x_q.var(dim=0))
    k = len(weights) - 1
    net = {
        "hidden": classifier.hidden,
        "activation": classifier.activation,
        "spectral_norm": classifier.spectral_norm,
    }
    ratios: SeparateRatios | SharedRatios
    if body == "separate":
        ratios = SeparateRatios(
            nn.Sequential(
                _standardize_waymarks(moments, weights[j : j + 2]),
                mlp_critic(x_p.shape[1], rng=rng, **net, **like),
            )
            for j in range(k)
        )
    else:
        ratios = SharedRatios(
            nn.Sequential(
                _standardize_waymarks(moments, weights),
                mlp_critic(x_p.shape[1], d_out=k, rng=rng, **net, **like),
            )
        )

    def loss(module: nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        n = min(a.shape[0], b.shape[0])
        return telescope_loss(module, waymarks(a[:n], b[:n], weights))

    train_critic(loss, ratios, x_p, x_q, rng=rng, **training_kwargs(classifier))
    return ratios
