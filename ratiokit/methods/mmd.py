"""Maximum mean discrepancy: MMD^2 unbiased, biased and linear-time, with one or more kernels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from ratiokit._permutation import (
    LabelMatrix,
    Statistics,
    bandwidth_detail,
    dense_forms,
    keops_forms,
    kernel_tiles,
    linear_mmd2,
    pooled64,
    unit_kernel,
)
from ratiokit._validation import check_choice, check_int
from ratiokit.kernels import (
    BACKENDS,
    DEFAULT_TILE,
    Kernel,
    kernel_pointwise,
    kernel_sum,
    select_backend,
)
from ratiokit.methods._base import Discrepancy

__all__ = ["MMD", "EnergyDistance"]

ESTIMATORS = ("unbiased", "biased", "linear")


class MMD(Discrepancy):
    r"""Squared maximum mean discrepancy between two samples.

    ``MMD^2 = E k(x, x') + E k(y, y') - 2 E k(x, y)`` with x, x' ~ P and y, y' ~ Q.

    The ``"unbiased"`` U-statistic leaves out the diagonal of the within-sample Gram
    matrices. Its expectation is MMD^2 exactly, so under P = Q it is centred on 0 and a
    *negative value is legitimate*: it is never square-rooted here. The ``"biased"``
    V-statistic keeps the diagonal and is >= 0 for a positive-definite kernel. The
    ``"linear"`` estimator averages ``h = k(x, x') + k(y, y') - k(x, y') - k(x', y)`` over
    disjoint consecutive pairs: O(n) time, more variance.

    Parameters
    ----------
    kernel : {"gaussian", "laplace", "imq", "rq", "energy"}, default="gaussian"
    bandwidth : float, sequence of float or "median", default="median"
        A sequence sums one kernel per bandwidth. ``"median"`` takes the median pooled
        pairwise distance, from :meth:`fit_critic` if it was called (above 1000 pooled points
        on a subsample drawn from its ``rng``: None is fresh entropy) and otherwise from the
        samples given to each :meth:`forward` call (detached: no gradient through it; a fixed
        subsample, so ``forward`` is deterministic). It
        sets the kernel's scale to the data's spread, so a test with it has almost no power
        when P and Q differ at a much smaller scale (see ``docs/two_sample.md``).
    estimator : {"unbiased", "biased", "linear"}, default="unbiased"
    alpha : float, default=1.0
        Shape of the rational quadratic kernel.
    backend : {"auto", "dense", "keops"}, default="auto"
        Where kernel sums run; see :func:`ratiokit.kernels.kernel_sum`.
    tile_size : int, default=2048
        Side of a dense tile.

    Attributes
    ----------
    kernel_ : Kernel
        The kernel with resolved bandwidths, set by :meth:`fit_critic`.

    References
    ----------
    Gretton, Borgwardt, Rasch, Schölkopf and Smola (2012), "A kernel two-sample test", JMLR 13.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(500, 2, generator=g, dtype=torch.float64)
    >>> y = torch.randn(500, 2, generator=g, dtype=torch.float64) + 1.0
    >>> 0.12 < float(MMD(bandwidth=1.0)(x, y)) < 0.26  # exact 2/3 (1 - exp(-1/3)) = 0.189
    True
    >>> v = MMD(bandwidth=1.0, estimator="biased")  # the V-statistic of a sample with itself is 0
    >>> abs(float(v(x, x[torch.randperm(500, generator=g)]))) < 1e-12
    True
    """

    name: ClassVar[str] = "mmd"

    def __init__(
        self,
        kernel: str = "gaussian",
        bandwidth: float | Sequence[float] | str = "median",
        *,
        estimator: str = "unbiased",
        alpha: float = 1.0,
        backend: str = "auto",
        tile_size: int = DEFAULT_TILE,
    ) -> None:
        super().__init__()
        self.kernel = Kernel(kernel, bandwidth, alpha)
        self.estimator = check_choice(estimator, "estimator", ESTIMATORS)
        self.backend = check_choice(backend, "backend", BACKENDS)
        self.tile_size = check_int(tile_size, "tile_size", minimum=1)
        self.kernel_: Kernel | None = None

    def fit_critic(self, x_p: torch.Tensor, x_q: torch.Tensor, *, rng: Any = None) -> MMD:
        """Resolve the median bandwidth on the pooled sample (a subsample above 1000 points).

        ``rng`` draws that subsample: None from fresh entropy (SPEC 7), an int reproducibly.
        """
        self.kernel_ = self.kernel.resolve(x_p, x_q, rng=rng)
        return self

    def resolved_kernel(self, x_p: torch.Tensor, x_q: torch.Tensor) -> Kernel:
        """The kernel used on (x_p, x_q): fitted bandwidths, or the median on these samples."""
        # No rng here: a fixed subsample (seed 0) for the median keeps forward a deterministic
        # function of its inputs; fit_critic(rng=...) chooses the subsample instead.
        return self.kernel_ if self.kernel_ is not None else self.kernel.resolve(x_p, x_q, rng=0)

    def forward(self, x_p: torch.Tensor, x_q: torch.Tensor) -> torch.Tensor:
        """MMD^2 estimate as a 0-d tensor of ``x_p``'s dtype, differentiable in both samples."""
        kernel = self.resolved_kernel(x_p, x_q)
        if self.estimator == "linear":
            return _linear_mmd2(kernel, x_p, x_q)
        n, m = x_p.shape[0], x_q.shape[0]

        def total(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            ones = torch.ones(b.shape[0], dtype=b.dtype, device=b.device)
            return kernel_sum(
                kernel, a, b, ones, backend=self.backend, tile_size=self.tile_size
            ).sum()

        s_pp, s_qq, s_pq = total(x_p, x_p), total(x_q, x_q), total(x_p, x_q)
        if self.estimator == "unbiased":
            k0 = kernel.at_zero()
            value = (s_pp - n * k0) / (n * (n - 1)) + (s_qq - m * k0) / (m * (m - 1))
        else:
            value = s_pp / n**2 + s_qq / m**2
        return (value - 2.0 * s_pq / (n * m)).to(x_p.dtype)

    def null_statistics(
        self, z: torch.Tensor, labels: LabelMatrix, progress: bool | None
    ) -> Statistics:
        """MMD^2 of every column on the pooled sample divided by a power of two
        (:func:`~ratiokit._permutation.pooled64`): exactly the values on the original data;
        the energy distance's are multiplied back."""
        n = labels.n
        m = z.shape[0] - n
        kernel = self.resolved_kernel(z[:n], z[n:])
        z, data_scale = pooled64(z[:n], z[n:])
        unit = unit_kernel(kernel, data_scale)
        # The energy kernel's values scale with the data: report them in the data's units.
        units = data_scale if kernel.name == "energy" else 1.0
        details: dict[str, Any] = {
            "kernel": kernel.name,
            "bandwidth": bandwidth_detail(kernel),
            "estimator": self.estimator,
        }
        if self.estimator == "linear":
            values = linear_mmd2(unit, z, labels, progress=progress) * units
            scale = float(kernel_pointwise(unit, z[:-1], z[1:]).abs().mean()) * units
            return Statistics(values.cpu().numpy(), scale, details)
        backend = _engine_backend(self.backend, n + m, z.device)
        details["backend"] = backend
        if backend == "keops":
            forms = keops_forms(unit, z, labels, progress=progress)
        else:
            forms = dense_forms(
                z, kernel_tiles([unit]), 1, labels, tile_size=self.tile_size, progress=progress
            )
        values = forms.mmd2(n, m, self.estimator)[0] * units
        return Statistics(values.cpu().numpy(), float(forms.scale()[0]) * units, details)

    def extra_repr(self) -> str:
        bw = self.kernel.bandwidth
        return (
            f"kernel={self.kernel.name!r}, bandwidth={bw!r}, estimator={self.estimator!r}, "
            f"backend={self.backend!r}"
        )


def _engine_backend(backend: str, n_rows: int, device: torch.device) -> str:
    """Backend of the permutation engine: dense tiles unless KeOps is asked for by name.

    With many label columns the dense path reuses each kernel tile for all of them through
    one BLAS product and halves the work by symmetry, which measured several times faster
    than KeOps reductions on the CPU (``benchmarks/two_sample.py``).
    """
    return select_backend(backend, n_rows, n_rows, device) if backend == "keops" else "dense"


def _linear_mmd2(kernel: Kernel, x_p: torch.Tensor, x_q: torch.Tensor) -> torch.Tensor:
    """Linear-time MMD^2: the mean of h over disjoint pairs (Gretton et al. 2012, Lemma 14)."""
    half = min(x_p.shape[0], x_q.shape[0]) // 2
    x, x2 = x_p[0 : 2 * half : 2], x_p[1 : 2 * half : 2]
    y, y2 = x_q[0 : 2 * half : 2], x_q[1 : 2 * half : 2]
    h = (
        kernel_pointwise(kernel, x, x2)
        + kernel_pointwise(kernel, y, y2)
        - kernel_pointwise(kernel, x, y2)
        - kernel_pointwise(kernel, x2, y)
    )
    return h.to(torch.float64).mean().to(x_p.dtype)


class EnergyDistance(MMD):
    """Energy distance ``2 E|x - y| - E|x - x'| - E|y - y'|``: MMD^2 with ``k = -|x - y|``.

    Parameters
    ----------
    estimator : {"unbiased", "biased", "linear"}, default="unbiased"
        The biased (V-statistic) estimate is the classic energy statistic and is >= 0.
    backend : {"auto", "dense", "keops"}, default="auto"
    tile_size : int, default=2048

    References
    ----------
    Székely and Rizzo (2004), "Testing for equal distributions in high dimension", InterStat.

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    >>> round(float(EnergyDistance(estimator="biased")(x, x + 1.0)), 12)  # 2 * 1 - 0.5 - 0.5
    1.0
    """

    name: ClassVar[str] = "energy"

    def __init__(
        self, *, estimator: str = "unbiased", backend: str = "auto", tile_size: int = DEFAULT_TILE
    ) -> None:
        super().__init__("energy", 1.0, estimator=estimator, backend=backend, tile_size=tile_size)

    def extra_repr(self) -> str:
        return f"estimator={self.estimator!r}, backend={self.backend!r}"
