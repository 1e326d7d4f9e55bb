"""MMD methods made for two-sample testing: aggregated, optimised, random-feature, deep kernel.

Each provides the statistics of every relabelling itself
(:meth:`~ratiokit.methods.Discrepancy.null_statistics`), so :func:`ratiokit.two_sample_test`
computes them in one pass over the pooled Gram tiles (or the random features).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ratiokit._permutation import (
    LabelMatrix,
    Statistics,
    bandwidth_detail,
    dense_forms,
    dense_products,
    feature_forms,
    kernel_tiles,
    pooled64,
    rank_pvalues,
    unit_kernel,
)
from ratiokit._rng import check_rng, fork_torch_rng
from ratiokit._validation import as_sample_pair, check_choice, check_int, check_positive
from ratiokit.critics import ACTIVATIONS, canonical_order, check_network, train_critic
from ratiokit.kernels import DEFAULT_TILE, Kernel, tile_sqdist
from ratiokit.methods._base import Discrepancy
from ratiokit.methods.mmd import MMD
from ratiokit.results import TrainHistory

__all__ = ["DeepKernelMMD", "MMDAgg", "OptimizedMMD", "RandomFeatureMMD"]

#: Kernels with a bandwidth (the energy distance's kernel has none to select or aggregate).
BANDWIDTH_KERNELS = ("gaussian", "laplace", "imq", "rq")
#: Pairwise distances behind the automatic bandwidth grids come from at most this many points.
_GRID_SAMPLES = 1000
#: MMDAgg warns when its C = B + 1 relabellings number fewer than this many per kernel: then
#: its p-value cannot fall below half of a 5% level (see :class:`MMDAgg`, ``2 K / 0.05``).
AGG_COLUMNS_PER_KERNEL = 40


def _check_bandwidths(bandwidths: Any) -> str | tuple[float, ...]:
    if isinstance(bandwidths, str):
        return check_choice(bandwidths, "bandwidths", ("auto",))
    if not isinstance(bandwidths, Sequence | np.ndarray):
        raise TypeError(
            f"`bandwidths` must be 'auto' or a sequence of floats; got {bandwidths!r}."
        )
    values = tuple(check_positive(v, "bandwidths") for v in bandwidths)
    if not values:
        raise ValueError("`bandwidths` must hold at least one value; got an empty sequence.")
    return values


def _bandwidth_grid(x: torch.Tensor, y: torch.Tensor, count: int, rng: Any) -> tuple[float, ...]:
    """``count`` bandwidths, geometric from half the 1% quantile of the pooled pairwise distances
    to twice their 95% quantile (at most 1000 points, drawn with ``rng``).

    The range reaches well below the median heuristic, where differences at a small scale
    (the shape of clusters, say) are visible, and above it, for broad changes. ``rng=None``
    draws the subsample from fresh entropy. The distances are taken on the centred points
    divided by a power of two (:func:`pooled64`) and multiplied back, so no scale of the data
    overflows or underflows.
    """
    z = torch.cat([x.detach(), y.detach().to(x.dtype)]).to(torch.float64)
    if z.shape[0] > _GRID_SAMPLES:
        idx = check_rng(rng).choice(z.shape[0], _GRID_SAMPLES, replace=False)
        z = z[torch.as_tensor(np.sort(idx), device=z.device)]
    z, data_scale = pooled64(z, z[:0])
    dist = torch.pdist(z)
    dist = dist[dist > 0]
    if dist.numel() == 0:
        raise ValueError(
            "`bandwidths`='auto' is undefined for constant data (all pairwise distances are "
            "0); pass a sequence of positive `bandwidths`."
        )
    quantiles = torch.tensor([0.01, 0.95], dtype=dist.dtype, device=z.device)
    # Back in the data's units before the (logarithmic) grid, so it is the grid of the data.
    lo, hi = (float(q) * data_scale for q in torch.quantile(dist, quantiles))
    if count == 1:
        return (float(dist.median()) * data_scale,)
    return tuple(float(h) for h in np.geomspace(lo / 2.0, 2.0 * hi, count))


def _power_ratio(a: torch.Tensor, b: torch.Tensor, reg: float) -> torch.Tensor:
    """``MMD^2_u / sqrt(sigma^2 + reg)`` from the per-point terms of the U-statistic.

    ``a_i = mean_{i' != i} k(x_i, x_i') - mean_j k(x_i, y_j)`` and likewise ``b_j`` for y, so
    ``MMD^2_u = mean(a) + mean(b)`` and its variance under H1 is, to first order (the Hoeffding
    projection), ``sigma^2 = 4 var(a) / n + 4 var(b) / m``. Works along the last dimension.
    """
    n, m = a.shape[-1], b.shape[-1]
    mmd2 = a.mean(-1) + b.mean(-1)
    var = 4.0 * a.var(-1) / n + 4.0 * b.var(-1) / m
    return mmd2 / torch.sqrt(var + reg)


def _power_criterion(
    kernels: Sequence[Kernel], x: torch.Tensor, y: torch.Tensor, reg: float, tile_size: int
) -> np.ndarray:
    """Power criterion of each kernel on (x, y), from one tiled pass over the pooled sample."""
    n, m = x.shape[0], y.shape[0]
    z, data_scale = pooled64(x, y)
    units = [unit_kernel(k, data_scale) for k in kernels]
    groups = torch.zeros(n + m, 2, dtype=torch.float64, device=z.device)
    groups[:n, 0], groups[n:, 1] = 1.0, 1.0
    rows = dense_products(z, kernel_tiles(units), len(units), groups, tile_size=tile_size)
    k0 = torch.tensor([k.at_zero() for k in kernels], dtype=torch.float64, device=z.device)
    a = (rows[:, :n, 0] - k0[:, None]) / (n - 1) - rows[:, :n, 1] / m
    b = (rows[:, n:, 1] - k0[:, None]) / (m - 1) - rows[:, n:, 0] / n
    return _power_ratio(a, b, reg).cpu().numpy()


# ---------------------------------------------------------------------------------------------
# test-specific MMD methods
# ---------------------------------------------------------------------------------------------


def _warn_few_permutations(n_kernels: int, labels: LabelMatrix) -> None:
    """Warn when MMDAgg's relabellings are too few for its kernels (see :class:`MMDAgg`)."""
    n_cols = labels.matrix.shape[1]
    needed = AGG_COLUMNS_PER_KERNEL * n_kernels
    if n_cols >= needed:
        return
    kernels = f"{n_kernels} kernel{'s' if n_kernels > 1 else ''}"
    remedy = (
        f"the samples have only {n_cols} distinct relabellings: aggregate fewer kernels"
        if labels.exact
        else f"increase `n_permutations` to at least {needed - 1}, or aggregate fewer kernels"
    )
    # stacklevel 4: this function, null_statistics, two_sample_test, the user's call.
    warnings.warn(
        f"MMDAgg over {kernels} had {n_cols} relabellings (observed included); with fewer "
        f"than {needed} (= 2 x {kernels} / 0.05) its p-value can stay above 0.025 however "
        f"strong the evidence, and the test can lose most of its power at the 5% level: "
        f"{remedy}.",
        UserWarning,
        stacklevel=4,
    )


class MMDAgg(Discrepancy):
    r"""MMDAgg: MMD tests over a collection of kernels, aggregated with a corrected level.

    ``A = min_l p_l / w_l`` over the kernels l (uniform weights ``w_l = 1 / L``), where
    ``p_l`` is the permutation p-value of the unbiased MMD^2 with kernel l; the test rejects
    when ``A`` is below its own permutation alpha-quantile.

    This is the aggregation of Schrab et al. (2023): their test rejects when some
    ``MMD^2_l`` exceeds its ``(1 - u w_l)``-quantile, with ``u`` the largest value that keeps
    the level, which is the same as ``min_l p_l / w_l <= u``; here ``u`` is set by ranking
    ``A`` among the relabellings themselves (the single-step min-P procedure of Westfall and
    Young), so every ``p_l`` and the final p-value come from one set of relabellings, and the
    test is exact at every level: no separate quantile and bisection samples are needed. The
    reported statistic is ``-log A`` (larger is stronger evidence). One pass over the pooled
    Gram tiles serves every kernel (the squared distances of a tile are shared).

    **Number of relabellings.** Each ``p_l`` is a rank among the C = B + 1 columns (observed
    included), so its smallest value is ``1 / C``, taken by the column where kernel l's
    statistic is largest. When only some of the K kernels see the difference, the others'
    largest statistics fall on up to K - 1 relabellings, whose ``A`` then ties with the
    observed one at its smallest possible value ``K / C``: however strong the evidence, the
    final p-value can be as large as ``K / C`` (one kernel sees it, the K - 1 others' maxima
    fall on distinct relabellings). Keeping that floor at most half the level alpha,
    ``K / C <= alpha / 2``, needs ``B + 1 >= 2 K / alpha``: at alpha = 0.05, 40 relabellings
    per kernel (``B >= 799`` for the default 20 kernels). With fewer,
    :func:`~ratiokit.two_sample.two_sample_test` warns.

    Parameters
    ----------
    kernels : str or sequence of str, default=("gaussian", "laplace")
        Kernel families, each combined with every bandwidth.
    bandwidths : "auto" or sequence of float, default="auto"
        ``"auto"``: ``n_bandwidths`` values spaced geometrically from half the 1% quantile
        of the pooled pairwise distances to twice their 95% quantile.
    n_bandwidths : int, default=10
    null : {"permutation", "wild"}, default="permutation"
        ``"wild"`` (n = m only): the wild bootstrap with Rademacher weights in its relabelling
        form, which swaps each pair ``(x_i, y_i)`` with probability 1/2 and recomputes the
        statistics. Schrab et al. apply it to the U-statistic over the pairs; here it
        relabels the complete U-statistic. Swaps leave the joint law of the pairs unchanged
        under H0, so, like the permutations, it gives an exact test.
    tile_size : int, default=1024
        Side of a Gram tile for one kernel (it shrinks with the number of kernels).

    Attributes
    ----------
    collection_ : tuple of Kernel
        The kernels, with resolved bandwidths, set by :meth:`fit_critic`.

    References
    ----------
    Schrab, Kim, Albert, Laurent, Guedj and Gretton (2023), "MMD aggregated two-sample test",
    JMLR 24(194). Westfall and Young (1993), "Resampling-based multiple testing", Wiley.

    Examples
    --------
    >>> import numpy as np
    >>> from ratiokit.two_sample import two_sample_test
    >>> gen = np.random.default_rng(0)
    >>> x, y = gen.normal(size=(60, 1)), gen.standard_t(3, size=(60, 1))
    >>> res = two_sample_test(x, y, method=MMDAgg(null="wild"), n_permutations=799, rng=0)
    >>> len(res.details["bandwidths"]), 0.0 < res.pvalue <= 1.0
    (20, True)
    """

    name: ClassVar[str] = "mmdagg"

    def __init__(
        self,
        kernels: str | Sequence[str] = ("gaussian", "laplace"),
        bandwidths: str | Sequence[float] = "auto",
        *,
        n_bandwidths: int = 10,
        null: str = "permutation",
        tile_size: int = DEFAULT_TILE,
    ) -> None:
        super().__init__()
        names = (kernels,) if isinstance(kernels, str) else tuple(kernels)
        if not names:
            raise ValueError("`kernels` must name at least one kernel; got an empty sequence.")
        self.kernels = tuple(check_choice(k, "kernels", BANDWIDTH_KERNELS) for k in names)
        self.bandwidths = _check_bandwidths(bandwidths)
        self.n_bandwidths = check_int(n_bandwidths, "n_bandwidths", minimum=1)
        self.null = check_choice(null, "null", ("permutation", "wild"))
        self.tile_size = check_int(tile_size, "tile_size", minimum=1)
        self.collection_: tuple[Kernel, ...] | None = None

    def _resolve(self, x_p: torch.Tensor, x_q: torch.Tensor, rng: Any) -> tuple[Kernel, ...]:
        bws = self.bandwidths
        if isinstance(bws, str):
            bws = _bandwidth_grid(x_p, x_q, self.n_bandwidths, rng)
        return tuple(Kernel(name, h) for name in self.kernels for h in bws)

    def fit_critic(self, x_p: torch.Tensor, x_q: torch.Tensor, *, rng: Any = None) -> MMDAgg:
        """Resolve the bandwidth collection on the pooled sample (label-free).

        ``rng`` draws the subsample of the automatic grid above 1000 pooled points: None from
        fresh entropy (SPEC 7), an int reproducibly.
        """
        self.collection_ = self._resolve(x_p, x_q, rng)
        return self

    def forward(self, x_p: torch.Tensor, x_q: torch.Tensor) -> torch.Tensor:
        """Mean of the unbiased MMD^2 over the collection: MMD^2 of the averaged kernel."""
        # No rng in forward: a fixed subsample (seed 0) for the grid keeps it deterministic.
        collection = self.collection_ or self._resolve(x_p, x_q, 0)
        total = sum(MMD(k.name, k.bandwidths)(x_p, x_q) for k in collection)
        return total / len(collection)

    def null_statistics(
        self, z: torch.Tensor, labels: LabelMatrix, progress: bool | None
    ) -> Statistics:
        """``-log(min_l p_l / w_l)`` of every relabelling: one pass over the Gram tiles
        serves every kernel, and each kernel's p-values rank its MMD^2 among the columns."""
        collection = self.collection_ or self._resolve(z[: labels.n], z[labels.n :], 0)
        n = labels.n
        m = z.shape[0] - n
        _warn_few_permutations(len(collection), labels)
        zc, data_scale = pooled64(z[:n], z[n:])
        forms = dense_forms(
            zc,
            kernel_tiles([unit_kernel(k, data_scale) for k in collection]),
            len(collection),
            labels,
            tile_size=self.tile_size,
            progress=progress,
        )
        mmd2 = forms.mmd2(n, m, "unbiased").cpu().numpy()
        per_kernel = rank_pvalues(mmd2, forms.scale())
        aggregated = -np.log(len(collection) * per_kernel.min(0))
        details = {
            "statistic": "-log(min_l p_l / w_l)",
            "kernels": [k.name for k in collection],
            "bandwidths": [k.bandwidths[0] for k in collection],
            "mmd2": mmd2[:, 0].tolist(),
            "kernel_pvalues": per_kernel[:, 0].tolist(),
        }
        return Statistics(aggregated, 1.0, details)

    def extra_repr(self) -> str:
        return (
            f"kernels={self.kernels!r}, bandwidths={self.bandwidths!r}, "
            f"n_bandwidths={self.n_bandwidths}, null={self.null!r}"
        )


class OptimizedMMD(MMD):
    r"""MMD whose bandwidth maximises the test-power criterion on a training split.

    ``J(h) = MMD^2_u(h) / sqrt(sigma^2_H1(h) + reg)``, the ratio that governs the asymptotic
    power of the MMD test (Sutherland et al. 2017; Liu et al. 2020). Its critic is learned
    (``learned_critic = True``): :func:`~ratiokit.two_sample.two_sample_test` selects the
    bandwidth on one part of each sample and tests on the held-out rest, which keeps the test
    exact. Use it when the median heuristic fails: that heuristic sets the bandwidth to the
    data's overall spread and has almost no power when the distributions differ at a much
    smaller scale. Selected once on reference data (:meth:`fit_critic` returns the fitted
    method), it tests new samples on all their points with
    ``two_sample_test(x, y, method=fitted, refit=False)``.

    ``sigma^2_H1 = 4 var(a) / n + 4 var(b) / m`` with the per-point terms
    ``a_i = mean_{i' != i} k(x_i, x_i') - mean_j k(x_i, y_j)`` (likewise ``b_j``): the
    variance of the Hoeffding projection of the two-sample U-statistic, valid for n != m.

    Parameters
    ----------
    kernel : {"gaussian", "laplace", "imq", "rq"}, default="gaussian"
    bandwidths : "auto" or sequence of float, default="auto"
        Candidates; ``"auto"`` spans half the 1% quantile to twice the 95% quantile of the
        pooled pairwise distances, geometrically.
    n_bandwidths : int, default=15
    estimator : {"unbiased", "biased", "linear"}, default="unbiased"
        Statistic tested with the selected kernel.
    alpha : float, default=1.0
    reg : float, default=1e-8
        Added to the variance, so a degenerate (H0-like) kernel does not divide by 0.
    backend : {"auto", "dense", "keops"}, default="auto"
    tile_size : int, default=1024

    Attributes
    ----------
    kernel_ : Kernel
        The selected kernel.
    candidates_ : tuple of float
        The candidate bandwidths.
    criterion_ : ndarray
        ``J`` of each candidate on the training data.

    References
    ----------
    Sutherland, Tung, Strathmann, De, Ramdas, Smola and Gretton (2017), "Generative models
    and model criticism via optimized maximum mean discrepancy", ICLR. Liu, Xu, Lu, Zhang,
    Gretton and Sutherland (2020), "Learning deep kernels for non-parametric two-sample
    tests", ICML.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(200, 1, generator=g, dtype=torch.float64)
    >>> y = torch.randn(200, 1, generator=g, dtype=torch.float64) * 1.5
    >>> mmd = OptimizedMMD(bandwidths=[0.1, 1.0, 10.0]).fit_critic(x, y)
    >>> mmd.kernel_.bandwidths
    (1.0,)
    """

    name: ClassVar[str] = "mmd_opt"
    learned_critic: ClassVar[bool] = True

    def __init__(
        self,
        kernel: str = "gaussian",
        bandwidths: str | Sequence[float] = "auto",
        *,
        n_bandwidths: int = 15,
        estimator: str = "unbiased",
        alpha: float = 1.0,
        reg: float = 1e-8,
        backend: str = "auto",
        tile_size: int = DEFAULT_TILE,
    ) -> None:
        check_choice(kernel, "kernel", BANDWIDTH_KERNELS)
        super().__init__(
            kernel,
            "median",
            estimator=estimator,
            alpha=alpha,
            backend=backend,
            tile_size=tile_size,
        )
        self.bandwidths = _check_bandwidths(bandwidths)
        self.n_bandwidths = check_int(n_bandwidths, "n_bandwidths", minimum=1)
        self.reg = check_positive(reg, "reg")
        self.candidates_: tuple[float, ...] | None = None
        self.criterion_: np.ndarray | None = None

    def fit_critic(self, x_p: torch.Tensor, x_q: torch.Tensor, *, rng: Any = None) -> OptimizedMMD:
        """Select the bandwidth with the largest power criterion on (x_p, x_q).

        ``rng`` draws the subsample of the automatic grid above 1000 pooled points: None from
        fresh entropy (SPEC 7), an int reproducibly.
        """
        x_p, x_q = as_sample_pair(x_p, x_q, min_samples=2)
        bws = self.bandwidths
        if isinstance(bws, str):
            bws = _bandwidth_grid(x_p, x_q, self.n_bandwidths, rng)
        kernels = [Kernel(self.kernel.name, h, self.kernel.alpha) for h in bws]
        criterion = _power_criterion(kernels, x_p, x_q, self.reg, self.tile_size)
        self.kernel_ = kernels[int(np.argmax(criterion))]
        self.candidates_, self.criterion_ = tuple(bws), criterion
        return self

    def extra_repr(self) -> str:
        return (
            f"kernel={self.kernel.name!r}, bandwidths={self.bandwidths!r}, "
            f"estimator={self.estimator!r}, backend={self.backend!r}"
        )


def _spectral_frequencies(
    kernel: Kernel, dim: int, count: int, rng: np.random.Generator
) -> torch.Tensor:
    """Frequencies ``w`` with ``E cos(w'(a - b)) = k(a, b)`` (Bochner), ``count`` per bandwidth.

    Each kernel is a scale mixture of Gaussians in the frequency domain, ``w = g sqrt(s) / h``
    with ``g ~ N(0, I)``: ``s = 1`` (Gaussian), ``s ~ chi^2_1`` (inverse multiquadric),
    ``s ~ Gamma(alpha, 1 / alpha)`` (rational quadratic); the Laplace kernel
    ``exp(-|a - b| / h)`` has the multivariate Cauchy spectrum ``w = g / (h |u|)``,
    ``u ~ N(0, 1)``.
    """
    g = rng.standard_normal((count, dim))
    if kernel.name == "gaussian":
        mix = np.ones(count)
    elif kernel.name == "laplace":
        mix = 1.0 / np.abs(rng.standard_normal(count))
    elif kernel.name == "imq":
        mix = np.sqrt(rng.chisquare(1.0, count))
    else:
        mix = np.sqrt(rng.gamma(kernel.alpha, 1.0 / kernel.alpha, count))
    base = g * mix[:, None]
    return torch.as_tensor(np.concatenate([base / h for h in kernel.bandwidths]))


class RandomFeatureMMD(MMD):
    r"""MMD^2 with random Fourier features: ``k(a, b) ~ phi(a)' phi(b)``, linear in n.

    ``phi(z) = [cos(W z), sin(W z)] / sqrt(F)`` with F frequencies per bandwidth drawn from
    the kernel's spectral density, so ``phi(a)' phi(b) = (1/F) sum_f cos(w_f'(a - b))`` is an
    unbiased estimate of ``k(a, b)`` with error O(1/sqrt(F)). The statistic is the MMD^2 of
    this approximate kernel (U or V), computed from the mean features in O((n + m) F); a
    permutation test costs O((n + m) F B), linear in the sample size. The frequencies are
    drawn in :meth:`fit_critic` independently of the labels, so the test stays exact.

    Parameters
    ----------
    kernel : {"gaussian", "laplace", "imq", "rq"}, default="gaussian"
    bandwidth : float, sequence of float or "median", default="median"
    n_features : int, default=256
        F, frequencies per bandwidth (2 F features each).
    estimator : {"unbiased", "biased"}, default="unbiased"
    alpha : float, default=1.0

    Attributes
    ----------
    kernel_ : Kernel
        The kernel with resolved bandwidths.
    frequencies_ : Tensor of shape (F * n_bandwidths, d), float64

    References
    ----------
    Rahimi and Recht (2007), "Random features for large-scale kernel machines", NIPS.
    Zhao and Meng (2015), "FastMMD: ensemble of circular discrepancy for efficient two-sample
    test", Neural Computation 27(6).

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(500, 2, generator=g, dtype=torch.float64)
    >>> y = torch.randn(500, 2, generator=g, dtype=torch.float64) + 1.0
    >>> rff = RandomFeatureMMD(bandwidth=1.0, n_features=1000).fit_critic(x, y, rng=0)
    >>> exact = MMD(bandwidth=1.0)(x, y)
    >>> bool(abs(rff(x, y) - exact) < 0.05 * exact)
    True
    """

    name: ClassVar[str] = "mmd_rff"

    def __init__(
        self,
        kernel: str = "gaussian",
        bandwidth: float | Sequence[float] | str = "median",
        *,
        n_features: int = 256,
        estimator: str = "unbiased",
        alpha: float = 1.0,
    ) -> None:
        check_choice(kernel, "kernel", BANDWIDTH_KERNELS)
        check_choice(estimator, "estimator", ("unbiased", "biased"))
        super().__init__(kernel, bandwidth, estimator=estimator, alpha=alpha)
        self.n_features = check_int(n_features, "n_features", minimum=1)
        self.frequencies_: torch.Tensor | None = None

    def fit_critic(
        self, x_p: torch.Tensor, x_q: torch.Tensor, *, rng: Any = None
    ) -> RandomFeatureMMD:
        """Resolve the bandwidth (median heuristic) and draw the frequencies from ``rng``.

        ``rng`` (None, int, SeedSequence or Generator) follows SPEC 7: None draws from fresh
        entropy, an int reproduces the frequencies bit for bit.
        """
        gen = check_rng(rng)
        self.kernel_ = self.kernel.resolve(x_p, x_q, rng=gen)
        freqs = _spectral_frequencies(self.kernel_, x_p.shape[1], self.n_features, gen)
        self.frequencies_ = freqs.to(x_p.device)
        return self

    def init_critic(
        self, x_p: torch.Tensor, x_q: torch.Tensor, *, rng: Any = None
    ) -> RandomFeatureMMD:
        """For a training loop: draw the frequencies once (:meth:`fit_critic`), label-free."""
        return self.fit_critic(x_p, x_q, rng=rng)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``phi(x)``, shape (n, 2 F L) for L bandwidths, in ``x``'s dtype."""
        if self.frequencies_ is None:
            raise RuntimeError(
                "RandomFeatureMMD has no frequencies yet; call `fit_critic(x_p, x_q)` first."
            )
        proj = x @ self.frequencies_.to(device=x.device, dtype=x.dtype).T
        return torch.cat([proj.cos(), proj.sin()], 1) / math.sqrt(self.n_features)

    def forward(self, x_p: torch.Tensor, x_q: torch.Tensor) -> torch.Tensor:
        """MMD^2 of the random-feature kernel, differentiable in both samples."""
        fx, fy = self.features(x_p), self.features(x_q)
        n, m = fx.shape[0], fy.shape[0]
        sx, sy = fx.sum(0), fy.sum(0)
        if self.estimator == "biased":
            diff = sx / n - sy / m
            return (diff * diff).sum()
        xx = (sx @ sx - (fx * fx).sum()) / (n * (n - 1))
        yy = (sy @ sy - (fy * fy).sum()) / (m * (m - 1))
        return xx + yy - 2.0 * (sx @ sy) / (n * m)

    def null_statistics(
        self, z: torch.Tensor, labels: LabelMatrix, progress: bool | None
    ) -> Statistics:
        """The random-feature MMD^2 (:meth:`forward`) of every relabelling, from the mean
        features of each group: O((n + m) F) per relabelling."""
        forms = feature_forms(self.features(z.to(torch.float64)), labels, progress=progress)
        values = forms.mmd2(labels.n, z.shape[0] - labels.n, self.estimator)[0]
        kernel = self.resolved_kernel(z[: labels.n], z[labels.n :])
        details = {
            "kernel": kernel.name,
            "bandwidth": bandwidth_detail(kernel),
            "estimator": self.estimator,
            "n_features": self.n_features,
        }
        return Statistics(values.cpu().numpy(), float(forms.scale()[0]), details)

    def extra_repr(self) -> str:
        return (
            f"kernel={self.kernel.name!r}, bandwidth={self.kernel.bandwidth!r}, "
            f"n_features={self.n_features}, estimator={self.estimator!r}"
        )


#: DeepKernelMMD's starting ``eps``, ``sigmoid(-5)``.
_EPSILON_START = 1.0 / (1.0 + math.exp(5.0))


def _check_start(value: Any, name: str) -> float | str:
    """A starting bandwidth: a positive float, ``"median"`` or ``"median/k"`` (k > 0)."""
    if not isinstance(value, str):
        return check_positive(value, name)
    if value != "median":
        try:
            divisor = float(value.removeprefix("median/")) if value.startswith("median/") else 0
        except ValueError:
            divisor = 0.0
        if not (divisor > 0 and math.isfinite(divisor)):
            raise ValueError(
                f"`{name}` must be a positive float, 'median' or 'median/k' with k a positive "
                f"number; got {value!r}."
            )
    return value


def _start_value(start: float | str, z: torch.Tensor) -> float:
    """A starting bandwidth for points ``z``: the float itself, or the median pairwise
    distance of the first 1000 rows (divided by k for ``"median/k"``)."""
    if not isinstance(start, str):
        return start
    median = float(torch.pdist(z[:_GRID_SAMPLES]).median())
    return median / float(start.removeprefix("median").removeprefix("/") or 1.0)


def _feature_network(
    dim: int, hidden: Sequence[int], n_features: int, activation: str
) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = dim
    for h in hidden:
        layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
        width = h
    layers.append(nn.Linear(width, n_features))
    return nn.Sequential(*layers)


class DeepKernelMMD(Discrepancy):
    r"""MMD with a learned deep kernel (Liu et al. 2020), trained for test power.

    ``k(a, b) = [(1 - eps) exp(-|phi(a) - phi(b)|^2 / (2 s^2)) + eps] exp(-|a - b|^2 / (2 h^2))``
    with ``phi`` a small network; ``phi``, ``s``, ``h`` and ``eps`` maximise the power
    criterion ``MMD^2_u / sqrt(sigma^2_H1 + reg)`` (see :class:`OptimizedMMD`) by Adam on
    minibatches of distinct rows of the training split, in the critic-only training loop
    (:func:`ratiokit.critics.train_critic`, without a validation split). The Gaussian
    factor on the inputs keeps the kernel characteristic. The critic is learned
    (``learned_critic = True``), so :func:`~ratiokit.two_sample.two_sample_test` trains on
    one part of each sample and permutation-tests the unbiased MMD^2 on the held-out rest;
    trained once on reference data (:meth:`fit_critic` returns the fitted method), it tests
    new samples on all their points with ``two_sample_test(x, y, method=fitted,
    refit=False)``.

    ``max_steps``, ``lr`` and ``batch_size`` train the kernel in :meth:`fit_critic`. In
    :func:`ratiokit.train` (an MMD-GAN) the :class:`~ratiokit.TrainConfig` trains it, so a
    value other than the default there is refused (ValueError) rather than ignored.

    Parameters
    ----------
    hidden : sequence of int, default=(50, 50)
        Widths of the hidden layers of ``phi`` (may be empty: linear features).
    n_features : int, default=20
        Output dimension of ``phi``.
    activation : str, default="softplus"
        Hidden-layer nonlinearity of ``phi``, a key of
        :data:`ratiokit.critics.ACTIVATIONS` (Liu et al. use softplus).
    bandwidth : float or str, default="median/4"
        Starting ``h`` (inputs): a positive float, ``"median"`` (the median distance between
        points of the pooled training sample, at most 1000 of them) or ``"median/k"`` (that
        median divided by k > 0).
    feature_bandwidth : float or str, default="median"
        Starting ``s`` (features), likewise, on the untrained features ``phi``.
    epsilon : float, default=0.0067
        Starting ``eps``, in (0, 1); the default is ``sigmoid(-5)``.
    max_steps : int, default=300
        Adam steps.
    lr : float, default=1e-3
    batch_size : int or None, default=256
        Points of each sample per step (all of them when fewer); None trains on all of
        them at every step (full batch).
    reg : float, default=1e-8
    tile_size : int, default=1024

    Attributes
    ----------
    network_ : torch.nn.Sequential
        ``phi``, float64.
    log_scales_ : torch.nn.Parameter of shape (2,)
        ``log s`` (features) and ``log h`` (inputs).
    logit_eps_ : torch.nn.Parameter
        ``logit(eps)``.
    history_ : TrainHistory
        The training record; ``critic_loss`` is minus the power criterion on each
        training minibatch.

    Notes
    -----
    The defaults were chosen by measurement (``benchmarks/two_sample_power.py --sections
    sweep``, results in ``benchmarks/results/two_sample_learned.md``): trained on one draw
    of Liu et al.'s Blob (:class:`~ratiokit.synthetic.CorrelatedBlobs`, 270 points per
    sample) and tested with ``refit=False`` on 20 fresh draws, over two training draws,
    starting ``h`` at a quarter of the median distance raised the power from 0.70 / 0.95 to
    0.90 / 1.00 (the median start left ``h`` near the data's spread, 1.5-2.2, where the
    blobs need about 0.1-0.3), and on HDGM (d = 10, 500 points) from 0.05 / 0.00 to
    0.15 / 0.15. Starting ``eps`` at 0.5, the paper's three hidden layers of 50 with 50
    features, or full-batch steps at lr 2e-3 did no better on Blob (mean power 0.60 to
    0.90). The paper's 1000 full-batch epochs at lr 5e-4 cost about three times as much
    and were not measured to the end.

    References
    ----------
    Liu, Xu, Lu, Zhang, Gretton and Sutherland (2020), "Learning deep kernels for
    non-parametric two-sample tests", ICML.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(60, 2, generator=g, dtype=torch.float64)
    >>> y = torch.randn(60, 2, generator=g, dtype=torch.float64) * 2.0
    >>> mmd = DeepKernelMMD(hidden=(16,), max_steps=30).fit_critic(x, y, rng=0)
    >>> loss = mmd.history_.critic_loss  # minus the power criterion: it falls
    >>> bool(loss[-5:].mean() < loss[:5].mean())
    True
    """

    name: ClassVar[str] = "mmd_deep"
    learned_critic: ClassVar[bool] = True
    training_settings: ClassVar[tuple[str, ...]] = ("max_steps", "lr", "batch_size")

    def __init__(
        self,
        hidden: Sequence[int] = (50, 50),
        n_features: int = 20,
        *,
        activation: str = "softplus",
        bandwidth: float | str = "median/4",
        feature_bandwidth: float | str = "median",
        epsilon: float = _EPSILON_START,
        max_steps: int = 300,
        lr: float = 1e-3,
        batch_size: int | None = 256,
        reg: float = 1e-8,
        tile_size: int = DEFAULT_TILE,
    ) -> None:
        super().__init__()
        self.hidden = check_network(hidden, activation)
        self.activation = activation
        self.n_features = check_int(n_features, "n_features", minimum=1)
        self.bandwidth = _check_start(bandwidth, "bandwidth")
        self.feature_bandwidth = _check_start(feature_bandwidth, "feature_bandwidth")
        self.epsilon = check_positive(epsilon, "epsilon")
        if self.epsilon >= 1.0:
            raise ValueError(f"`epsilon` must be in (0, 1); got {epsilon!r}.")
        self.max_steps = check_int(max_steps, "max_steps", minimum=1)
        self.lr = check_positive(lr, "lr")
        self.batch_size = (
            None if batch_size is None else check_int(batch_size, "batch_size", minimum=2)
        )
        self.reg = check_positive(reg, "reg")
        self.tile_size = check_int(tile_size, "tile_size", minimum=1)
        self.network_: nn.Sequential | None = None
        self.log_scales_: nn.Parameter | None = None
        self.logit_eps_: nn.Parameter | None = None
        self.history_: TrainHistory | None = None

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        """Rows ``[x, phi(x)]`` in float64: one tile function reads both parts."""
        if self.network_ is None:
            raise RuntimeError(
                "DeepKernelMMD has no kernel yet; call `fit_critic(x_p, x_q)` first."
            )
        x = x.to(torch.float64)
        return torch.cat([x, self.network_(x)], 1)

    def _tile(self, u: torch.Tensor, v: torch.Tensor, diagonal: bool) -> torch.Tensor:
        d = u.shape[1] - self.n_features
        scales = self.log_scales_.exp()
        eps = torch.sigmoid(self.logit_eps_)
        feat = tile_sqdist(u[:, d:], v[:, d:], diagonal=diagonal, exact=False) / (
            -2.0 * scales[0] ** 2
        )
        raw = tile_sqdist(u[:, :d], v[:, :d], diagonal=diagonal, exact=False) / (
            -2.0 * scales[1] ** 2
        )
        return ((1.0 - eps) * feat.exp() + eps) * raw.exp()

    def _criterion(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Power criterion on one minibatch, from its dense Gram matrix (differentiable)."""
        n, m = x.shape[0], y.shape[0]
        w = self._augment(torch.cat([x, y]))
        k = self._tile(w, w, True)
        a = (k[:n, :n].sum(1) - 1.0) / (n - 1) - k[:n, n:].sum(1) / m
        b = (k[n:, n:].sum(1) - 1.0) / (m - 1) - k[n:, :n].sum(1) / n
        return _power_ratio(a, b, self.reg)

    def fit_critic(
        self, x_p: torch.Tensor, x_q: torch.Tensor, *, rng: Any = None
    ) -> DeepKernelMMD:
        """Train ``phi`` and the kernel's scales on (x_p, x_q) for the power criterion.

        ``rng`` seeds the initialisation and the minibatches: None draws from fresh entropy
        (SPEC 7), an int gives the same kernel bit for bit.
        """
        x_p, x_q = as_sample_pair(x_p, x_q, min_samples=2, dtype=torch.float64)
        # Rows in their canonical order: the same samples in any order give the same kernel;
        # detached, so training never sends gradients into the caller's samples.
        x_p, x_q = (x.detach()[canonical_order(x)] for x in (x_p, x_q))
        gen = check_rng(rng)
        self.init_critic(x_p, x_q, rng=gen)
        self.history_ = train_critic(
            lambda _, a, b: -self._criterion(a, b),
            self,
            x_p,
            x_q,
            max_steps=self.max_steps,
            batch_size=self.batch_size or max(x_p.shape[0], x_q.shape[0]),
            lr=self.lr,
            validation_fraction=0.0,
            replace=False,
            rng=gen,
        )
        return self

    def init_critic(
        self, x_p: torch.Tensor, x_q: torch.Tensor, *, rng: Any = None
    ) -> DeepKernelMMD:
        """Build ``phi`` and the kernel's scales for samples like (x_p, x_q), untrained.

        ``rng`` seeds the initialisation: None draws from fresh entropy (SPEC 7).

        For a training loop (an MMD-GAN with learned kernel features): the critic's
        parameters ascend the unbiased MMD^2 (:meth:`critic_loss` is ``-forward``).
        """
        x_p, x_q = as_sample_pair(x_p, x_q, min_samples=2, dtype=torch.float64)
        gen = check_rng(rng)
        with fork_torch_rng(gen, x_p.device):
            net = _feature_network(x_p.shape[1], self.hidden, self.n_features, self.activation)
        self.network_ = net.to(device=x_p.device, dtype=torch.float64)
        with torch.no_grad():
            pooled = torch.cat([x_p, x_q])
            spread = [self.network_(pooled), pooled]
            starts = (self.feature_bandwidth, self.bandwidth)
            init = [_start_value(start, z) for z, start in zip(spread, starts, strict=True)]
        self.log_scales_ = nn.Parameter(torch.tensor(init, dtype=torch.float64).log())
        logit = math.log(self.epsilon) - math.log1p(-self.epsilon)
        self.logit_eps_ = nn.Parameter(torch.tensor(logit, dtype=torch.float64))
        self.to(x_p.device)
        return self

    def _total(self, u: torch.Tensor, v: torch.Tensor, same: bool) -> torch.Tensor:
        """``sum_ij k(u_i, v_j)`` over tiles, checkpointed under autograd (memory O(tile))."""
        t = self.tile_size
        grad = torch.is_grad_enabled()
        total = u.new_zeros(())
        for i in range(0, u.shape[0], t):
            for j in range(0, v.shape[0], t):
                diagonal = same and i == j

                def part(
                    a: torch.Tensor, b: torch.Tensor, diagonal: bool = diagonal
                ) -> torch.Tensor:
                    return self._tile(a, b, diagonal).sum()

                ui, vj = u[i : i + t], v[j : j + t]
                total = total + (
                    torch.utils.checkpoint.checkpoint(part, ui, vj, use_reentrant=False)
                    if grad
                    else part(ui, vj)
                )
        return total

    def forward(self, x_p: torch.Tensor, x_q: torch.Tensor) -> torch.Tensor:
        """Unbiased MMD^2 with the learned kernel (``k(z, z) = 1``), differentiable."""
        u, v = self._augment(x_p), self._augment(x_q)
        n, m = u.shape[0], v.shape[0]
        s_xx, s_yy, s_xy = (
            self._total(u, u, True),
            self._total(v, v, True),
            self._total(u, v, False),
        )
        value = (s_xx - n) / (n * (n - 1)) + (s_yy - m) / (m * (m - 1)) - 2.0 * s_xy / (n * m)
        return value.to(x_p.dtype)

    def null_statistics(
        self, z: torch.Tensor, labels: LabelMatrix, progress: bool | None
    ) -> Statistics:
        """The unbiased MMD^2 with the learned kernel (:meth:`forward`) of every relabelling,
        from one pass over tiles of its Gram matrix."""
        with torch.no_grad():
            w = self._augment(z)
            forms = dense_forms(
                w,
                lambda a, b, diagonal: self._tile(a, b, diagonal)[None],
                1,
                labels,
                tile_size=self.tile_size,
                progress=progress,
            )
        values = forms.mmd2(labels.n, z.shape[0] - labels.n, "unbiased")[0]
        scales = self.log_scales_.detach().exp().tolist()
        details = {
            "kernel": "deep",
            "feature_bandwidth": scales[0],
            "bandwidth": scales[1],
            "epsilon": float(torch.sigmoid(self.logit_eps_.detach())),
        }
        if self.history_ is not None:  # None after init_critic alone (untrained)
            details["criterion"] = -float(self.history_.critic_loss[-1])
        return Statistics(values.cpu().numpy(), float(forms.scale()[0]), details)

    def extra_repr(self) -> str:
        return (
            f"hidden={self.hidden!r}, n_features={self.n_features}, "
            f"activation={self.activation!r}, bandwidth={self.bandwidth!r}, "
            f"feature_bandwidth={self.feature_bandwidth!r}, "
            f"epsilon={self.epsilon!r}, max_steps={self.max_steps}, lr={self.lr!r}"
        )
