"""Brute-force NumPy references, written independently of ratiokit's torch code."""

from __future__ import annotations

import numpy as np


def gram(name: str, x: np.ndarray, y: np.ndarray, bandwidths, alpha: float = 1.0) -> np.ndarray:
    """Full Gram matrix from explicit pairwise differences (float64)."""
    dist = np.sqrt(((x[:, None, :] - y[None, :, :]) ** 2).sum(-1))
    if name == "energy":
        return -dist
    total = np.zeros_like(dist)
    for h in np.atleast_1d(bandwidths):
        if name == "gaussian":
            total += np.exp(-(dist**2) / (2 * h**2))
        elif name == "laplace":
            total += np.exp(-dist / h)
        elif name == "imq":
            total += 1.0 / np.sqrt(1.0 + dist**2 / h**2)
        elif name == "rq":
            total += (1.0 + dist**2 / (2 * alpha * h**2)) ** -alpha
    return total


def mmd2(name, x, y, bandwidths, estimator="unbiased", alpha=1.0) -> float:
    """MMD^2 by its textbook definition (Gretton et al. 2012, eqs. 3, 5 and Lemma 14)."""
    if estimator == "linear":
        half = min(len(x), len(y)) // 2
        x1, x2 = x[0 : 2 * half : 2], x[1 : 2 * half : 2]
        y1, y2 = y[0 : 2 * half : 2], y[1 : 2 * half : 2]

        def k(a, b):
            return np.array(
                [
                    gram(name, a[i : i + 1], b[i : i + 1], bandwidths, alpha)[0, 0]
                    for i in range(len(a))
                ]
            )

        return float(np.mean(k(x1, x2) + k(y1, y2) - k(x1, y2) - k(x2, y1)))
    kxx, kyy = gram(name, x, x, bandwidths, alpha), gram(name, y, y, bandwidths, alpha)
    kxy = gram(name, x, y, bandwidths, alpha)
    n, m = len(x), len(y)
    if estimator == "biased":
        return float(kxx.mean() + kyy.mean() - 2 * kxy.mean())
    off_x = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
    off_y = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(off_x + off_y - 2 * kxy.mean())
