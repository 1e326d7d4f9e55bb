"""Hotelling's T^2 of every relabelling, for methods whose test statistic it is."""

from __future__ import annotations

from typing import Any

import torch
from scipy import stats

from ratiokit._permutation import LabelMatrix, Statistics, linear_sums, vmap_statistics

__all__ = ["hotelling_statistics"]


def hotelling_statistics(
    estimator: Any,
    z: torch.Tensor,
    labels: LabelMatrix,
    progress: bool | None,
    *,
    batched: bool,
) -> Statistics:
    """Hotelling's T^2 of every relabelling of the pooled sample ``z`` (observed first), with
    the F-test p-value of the observed one: the null statistics of a method whose
    ``hotelling_t2(x_p, x_q)`` returns ``(t2, df1, df2)``.

    ``F = T^2 df2 / (df1 (df1 + df2 - 1))`` follows F(df1, df2) under H0 for Gaussian
    statistics with a common covariance (df1 = k statistics, df2 = n + m - k - 1). With
    ``batched``, the method's ``pooled_statistics`` and ``ridge``
    (:class:`~ratiokit.methods.moments.MomentMatching`) give every relabelling from one
    eigendecomposition (:func:`_batched_hotelling`); otherwise ``hotelling_t2`` is called on
    each.
    """
    t2, df1, df2 = estimator.hotelling_t2(z[: labels.n], z[labels.n :])
    if batched:
        with torch.no_grad():
            s = estimator.pooled_statistics(z).to(torch.float64)
        values = _batched_hotelling(s, float(estimator.ridge), labels)
    else:
        values = vmap_statistics(
            lambda p, q: torch.as_tensor(estimator.hotelling_t2(p, q)[0], dtype=torch.float64),
            z,
            labels,
            progress=progress,
            name=f"hotelling_t2 of {estimator.name!r}",
            # stacklevel 5: vmap_statistics, this, null_statistics, two_sample_test, the user.
            stacklevel=5,
        )
    f_stat = float(t2) * float(df2) / (float(df1) * (float(df1) + float(df2) - 1.0))
    details = {
        "statistic": "Hotelling T^2",
        "df1": int(df1),
        "df2": int(df2),
        "f_pvalue": float(stats.f.sf(f_stat, float(df1), float(df2))),
    }
    values = values.cpu().numpy()
    return Statistics(values, max(1.0, abs(float(t2))), details)


def _batched_hotelling(s: torch.Tensor, ridge: float, labels: LabelMatrix) -> torch.Tensor:
    r"""``T^2 = (n m / N) delta' (S + rho I)^-1 delta`` for every column, shape (C,).

    ``S = W / (N - 2)`` is the pooled within-group covariance of the statistics ``s`` (N, k)
    and ``rho = ridge tr(S) / k``. The total scatter ``T = W + (n m / N) delta delta'`` does
    not depend on the labels, so with ``T = U diag(lam) U'`` and
    ``a = sum_j (U' delta)_j^2 / (lam_j / (N - 2) + rho)``, Sherman-Morrison gives
    ``delta' (S + rho I)^-1 delta = a / (1 - g a)``, ``g = n m / (N (N - 2))``: one
    eigendecomposition and one (N, k) x (N, C) product for all columns.
    """
    big_n, k = s.shape
    n = labels.n
    m = big_n - n
    c = s - s.mean(0)
    lam, vecs = torch.linalg.eigh(c.T @ c)
    # delta = mean_x s - mean_y s = (1/n + 1/m) sum_x c, as the centred rows sum to 0.
    delta = linear_sums(c @ vecs, labels) * (1.0 / n + 1.0 / m)
    norm2 = (delta * delta).sum(0)
    level = (lam.sum() - n * m / big_n * norm2) / (k * (big_n - 2))
    level = torch.where(level > 0, level, torch.ones_like(level))
    a = (delta * delta / (lam[:, None] / (big_n - 2) + ridge * level[None, :])).sum(0)
    g = n * m / (big_n * (big_n - 2))
    return n * m / big_n * a / (1.0 - g * a)
