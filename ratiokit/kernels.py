"""Kernels, bandwidth rules and kernel sums ``K(x, y) @ W`` on dense tiles or KeOps.

A kernel is a function of the squared distance ``d2 = ||x - y||^2``, written once with
operations that dense tensors and KeOps ``LazyTensor`` share, so both backends evaluate the
same formula. Several bandwidths give a sum of kernels.

======================  =====================================================
name                    k(x, y) with ``d2 = ||x - y||^2``, bandwidth ``h``
======================  =====================================================
``"gaussian"``          ``exp(-d2 / (2 h^2))``
``"laplace"``           ``exp(-sqrt(d2) / h)``
``"imq"``               ``(1 + d2 / h^2) ** -0.5`` (inverse multiquadric)
``"rq"``                ``(1 + d2 / (2 alpha h^2)) ** -alpha`` (rational quadratic)
``"energy"``            ``-sqrt(d2)`` (its MMD^2 is the energy distance; no bandwidth)
======================  =====================================================

Kernel sums never hold more than one tile of the Gram matrix: the dense backend walks
``tile_size`` x ``tile_size`` blocks (checkpointed under autograd, so gradients keep memory
O(tile) too); the KeOps backend reduces a ``LazyTensor`` and never forms the matrix at all.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint

from ratiokit._keops import cache_lock, keops_available
from ratiokit._rng import check_rng
from ratiokit._validation import check_choice, check_positive

__all__ = [
    "BACKENDS",
    "KERNELS",
    "Kernel",
    "keops_available",
    "kernel_pointwise",
    "kernel_sum",
    "median_bandwidth",
    "power_of_two_scale",
    "select_backend",
]

KERNELS = ("gaussian", "laplace", "imq", "rq", "energy")
BACKENDS = ("auto", "dense", "keops")

#: Squared distances are floored here before a square root, so its gradient at a zero
#: distance is 0 instead of NaN; the value changes by at most 1e-15.
_SQRT_FLOOR = 1e-30
#: Side of a dense tile: 1024 x 1024 float64 values are 8 MiB (fastest here, see benchmarks).
DEFAULT_TILE = 1024
#: Up to this many features, dense tiles take squared distances from explicit differences
#: (as fast as the matmul identity there, and exact); above it, from the clamped identity.
EXACT_MAX_FEATURES = 64
#: ``backend="auto"`` picks KeOps on the CPU from this many kernel evaluations n * m: there it
#: runs 1.5-4x faster than dense tiles (benchmarks/kernels_scaling.py), while below it the
#: dense path takes under a second and saves KeOps' one-off compilation of each formula.
KEOPS_CPU_MIN_PAIRS = 1e8
#: Bandwidths lie where ``h^2`` and ``1 / h^2`` are finite normal floats, with a factor 2 to
#: spare (about 1.5e-154 to 6.7e153): the kernels divide squared distances by ``h^2``.
MIN_BANDWIDTH = math.sqrt(sys.float_info.min)
MAX_BANDWIDTH = math.sqrt(sys.float_info.max) / 2.0


def _sqrt(d2: Any) -> Any:
    """Square root that is differentiable at 0 (works on tensors and LazyTensors)."""
    return (d2.relu() + _SQRT_FLOOR).sqrt()


@dataclass(frozen=True)
class Kernel:
    """A translation-invariant kernel, or a sum of them over several bandwidths.

    Parameters
    ----------
    name : {"gaussian", "laplace", "imq", "rq", "energy"}, default="gaussian"
        The kernel family (see the module docstring for each formula).
    bandwidth : float, sequence of float or "median", default="median"
        Bandwidth ``h``; a sequence sums one kernel per value; ``"median"`` is resolved from
        the data by :meth:`resolve` with the median heuristic.
    alpha : float, default=1.0
        Shape of the rational quadratic kernel (ignored by the others).

    Examples
    --------
    >>> import torch
    >>> k = Kernel("gaussian", bandwidth=1.0)
    >>> float(k(torch.tensor([0.0, 2.0], dtype=torch.float64)).sum())  # exp(0) + exp(-1)
    1.3678794411714423
    """

    name: str = "gaussian"
    bandwidth: float | tuple[float, ...] | str = "median"
    alpha: float = 1.0

    def __post_init__(self) -> None:
        check_choice(self.name, "kernel", KERNELS)
        check_positive(self.alpha, "alpha")
        bw = self.bandwidth
        if isinstance(bw, str):
            check_choice(bw, "bandwidth", ("median",))
        else:
            values = tuple(bw) if isinstance(bw, Sequence | np.ndarray) else (bw,)
            if len(values) == 0:
                raise ValueError("`bandwidth` must hold at least one value; got an empty list.")
            values = tuple(check_positive(v, "bandwidth") for v in values)
            for h in values:
                if not MIN_BANDWIDTH <= h <= MAX_BANDWIDTH:
                    raise ValueError(
                        f"`bandwidth` must be between {MIN_BANDWIDTH:.2g} and "
                        f"{MAX_BANDWIDTH:.2g} (its square must be a finite normal float); got "
                        f"{h!r}. Rescale the data and the bandwidth together."
                    )
            object.__setattr__(self, "bandwidth", values)

    @property
    def is_resolved(self) -> bool:
        """True when the bandwidths are numbers (or the kernel needs none)."""
        return self.name == "energy" or not isinstance(self.bandwidth, str)

    @property
    def bandwidths(self) -> tuple[float, ...]:
        """The numeric bandwidths; raises if the median rule has not been resolved."""
        if self.name == "energy":
            return (1.0,)
        if isinstance(self.bandwidth, str):
            raise ValueError(
                "`bandwidth`='median' must be resolved from data first; call `resolve(x, y)`."
            )
        return self.bandwidth

    def resolve(
        self, x: torch.Tensor, y: torch.Tensor | None = None, *, rng: Any = None
    ) -> Kernel:
        """Return this kernel with ``"median"`` replaced by the median heuristic on x and y."""
        if self.is_resolved:
            return self
        return replace(self, bandwidth=median_bandwidth(x, y, rng=rng))

    def __call__(self, d2: Any) -> Any:
        """Kernel value from squared distances (a tensor or a KeOps LazyTensor)."""
        if self.name == "energy":
            return -_sqrt(d2)
        out = None
        for h in self.bandwidths:
            if self.name == "gaussian":
                k = (d2 * (-0.5 / h**2)).exp()
            elif self.name == "laplace":
                k = (_sqrt(d2) * (-1.0 / h)).exp()
            elif self.name == "imq":
                k = (d2 * (1.0 / h**2) + 1.0) ** -0.5
            else:  # rq; exp(-alpha log(.)): KeOps' Powf is less accurate than exp and log
                k = ((d2 * (0.5 / (self.alpha * h**2)) + 1.0).log() * -self.alpha).exp()
            out = k if out is None else out + k
        return out

    def at_zero(self) -> float:
        """k(x, x): the value on the diagonal of the Gram matrix."""
        return 0.0 if self.name == "energy" else float(len(self.bandwidths))


def power_of_two_scale(z: torch.Tensor) -> float:
    """The power of two nearest the root mean square of ``z``'s entries (1.0 if all are 0).

    Dividing data by it is exact in floating point (only the exponents change), so
    computations on ``z / c`` differ from those on ``z`` by the factor alone, while squared
    distances of ``z / c`` neither overflow nor underflow whatever the units of ``z``. Data
    with an RMS between about 0.71 and 1.41 get ``c = 1``. The RMS is taken as
    ``M sqrt(mean((z / M)^2))`` with ``M = max |z|``, which cannot overflow.

    Examples
    --------
    >>> import torch
    >>> power_of_two_scale(torch.tensor([3e-20, -3e-20], dtype=torch.float64)) == 2.0**-65
    True
    """
    top = float(z.detach().abs().max()) if z.numel() else 0.0
    if top == 0.0 or not math.isfinite(top):
        return 1.0
    rms = top * math.sqrt(float((z.detach().to(torch.float64) / top).square().mean()))
    return math.ldexp(1.0, round(math.log2(rms)))


def median_bandwidth(
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    max_samples: int = 1000,
    rng: Any = None,
) -> float:
    """Median heuristic: the median of the positive pairwise distances of the pooled sample.

    Above ``max_samples`` pooled points a random subsample of that size is used, so memory
    stays O(max_samples^2) whatever n is; ``rng=None`` draws it from fresh entropy (SPEC 7),
    an int or Generator reproducibly. Zero distances (ties, discrete data) are left out so
    the bandwidth is never 0. The distances are taken on the centred sample divided by
    :func:`power_of_two_scale`, and multiplied back: exact in floating point, and free of
    overflow and underflow at any scale.

    Raises
    ------
    ValueError
        If all points coincide (constant data): there is no scale to take; pass a fixed
        ``bandwidth`` instead. If the median is outside the range of :class:`Kernel`
        bandwidths (data at a scale beyond about 1e-154 to 1e153).

    Examples
    --------
    >>> import torch
    >>> median_bandwidth(torch.tensor([[0.0], [1.0], [3.0]]))  # distances 1, 2, 3
    2.0
    """
    z = x.detach() if y is None else torch.cat([x.detach(), y.detach().to(x.dtype)])
    if z.shape[0] > max_samples:
        idx = check_rng(rng).choice(z.shape[0], max_samples, replace=False)
        z = z[torch.as_tensor(np.sort(idx), device=z.device)]
    z = z.to(torch.float64)
    z = z - z.mean(0)
    scale = power_of_two_scale(z)
    dist = torch.pdist(z / scale)
    dist = dist[dist > 0]
    if dist.numel() == 0:
        raise ValueError(
            "`bandwidth`='median' is undefined for constant data (all pairwise distances are "
            "0); pass a fixed positive `bandwidth`."
        )
    median = float(dist.median()) * scale
    if not MIN_BANDWIDTH <= median <= MAX_BANDWIDTH:
        raise ValueError(
            f"`bandwidth`='median' must resolve to a value between {MIN_BANDWIDTH:.2g} and "
            f"{MAX_BANDWIDTH:.2g} (its square must be a finite normal float); got {median!r}, "
            "the median distance of the data: rescale the data."
        )
    return median


def select_backend(backend: str, n: int, m: int, device: torch.device) -> str:
    """Resolve ``backend="auto"``: KeOps on a GPU or for large CPU problems, else dense.

    Raises
    ------
    ImportError
        If ``backend="keops"`` is asked for and pykeops is not installed (never a silent
        fallback).
    """
    check_choice(backend, "backend", BACKENDS)
    if backend == "keops":
        if not keops_available():
            raise ImportError(
                "`backend`='keops' needs pykeops; install it (`pip install pykeops`) or pass "
                "`backend`='dense'."
            )
        return "keops"
    if backend == "dense":
        return "dense"
    big = device.type == "cuda" or n * m >= KEOPS_CPU_MIN_PAIRS
    return "keops" if big and keops_available() else "dense"


def tile_sqdist(x: torch.Tensor, y: torch.Tensor, *, diagonal: bool, exact: bool) -> torch.Tensor:
    """Squared distances of a tile.

    ``exact``: from explicit differences (``torch.cdist`` without the matmul identity), exact
    for tied points and with a zero gradient at zero distance. Otherwise by the matmul identity
    ``|x|^2 + |y|^2 - 2 x.y``, clamped at 0 (float32 rounding can go below), with the diagonal
    of a block paired with itself (``diagonal``) set to exactly 0.
    """
    if exact:
        return torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist").square()
    d2 = (x * x).sum(1, keepdim=True) + (y * y).sum(1)[None, :] - 2.0 * (x @ y.T)
    d2 = d2.clamp_min(0.0)
    if diagonal:
        eye = torch.eye(d2.shape[0], dtype=torch.bool, device=d2.device)
        d2 = d2.masked_fill(eye, 0.0)
    return d2


def _dense_tile(
    kernel: Kernel, acc: torch.dtype, diagonal: bool
) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    def tile(xb: torch.Tensor, yb: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
        # The square root in the Laplace and energy kernels turns the identity's rounding at
        # tied points (~1e-16 |x|^2) into ~1e-8 errors, so they always take exact differences.
        exact = xb.shape[1] <= EXACT_MAX_FEATURES or kernel.name in ("laplace", "energy")
        d2 = tile_sqdist(xb, yb, diagonal=diagonal, exact=exact)
        return (kernel(d2) @ wb).to(acc)

    return tile


def _dense_sum(
    kernel: Kernel,
    x: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor,
    same: bool,
    acc: torch.dtype,
    tile_size: int,
) -> torch.Tensor:
    grad = torch.is_grad_enabled() and (x.requires_grad or y.requires_grad or w.requires_grad)
    blocks = [
        (i, j, _dense_tile(kernel, acc, diagonal=same and i == j))
        for i in range(0, x.shape[0], tile_size)
        for j in range(0, y.shape[0], tile_size)
    ]
    if not grad:  # tiles add into one preallocated output
        out = torch.zeros(x.shape[0], w.shape[1], dtype=acc, device=x.device)
        for i, j, fn in blocks:
            out[i : i + tile_size] += fn(
                x[i : i + tile_size], y[j : j + tile_size], w[j : j + tile_size]
            )
        return out
    # Under autograd each tile is checkpointed: only its inputs are kept for backward, so
    # memory stays O(tile) with gradients too.
    rows: dict[int, torch.Tensor] = {}
    for i, j, fn in blocks:
        xb, yb, wb = x[i : i + tile_size], y[j : j + tile_size], w[j : j + tile_size]
        part = checkpoint(fn, xb, yb, wb, use_reentrant=False)
        rows[i] = part if i not in rows else rows[i] + part
    return torch.cat([rows[i] for i in sorted(rows)])


def _keops_reduce(
    kernel: Kernel, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, acc: torch.dtype
) -> torch.Tensor:
    from pykeops.torch import LazyTensor

    x_i = LazyTensor(x[:, None, :].contiguous())
    y_j = LazyTensor(y[None, :, :].contiguous())
    w_j = LazyTensor(w[None, :, :].contiguous())
    options = {"dtype_acc": "float64"} if acc == torch.float64 else {}
    return (kernel(x_i.sqdist(y_j)) * w_j).sum(dim=1, **options)


#: Formula signatures this process has already compiled or loaded under the cache lock.
_KEOPS_READY: set[tuple] = set()


def _keops_prepare(
    kernel: Kernel, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, acc: torch.dtype
) -> None:
    """Compile (or load) this formula, and its gradients if needed, on two rows under the lock.

    Two rows, not one: a LazyTensor with one row on both of its leading axes is read as a
    parameter, not an i- or j-variable, which is another formula (with another gradient); a
    single row is warmed up as the single row it is.
    """
    grads = tuple(t.requires_grad and torch.is_grad_enabled() for t in (x, y, w))
    # Bandwidths are run-time parameters of the compiled formula, so only its shape matters;
    # a single row makes x (or y and w) a parameter of the formula.
    shape = (kernel.name, len(kernel.bandwidths))
    rows = (len(x) == 1, len(y) == 1)
    key = (shape, rows, x.shape[1], w.shape[1], x.dtype, x.device.type, acc, grads)
    if key in _KEOPS_READY:
        return
    with cache_lock():
        pairs = zip((x, y, w), grads, strict=True)
        tiny = [t[:2].detach().clone().requires_grad_(g) for t, g in pairs]
        with torch.enable_grad() if any(grads) else contextlib.nullcontext():
            out = _keops_reduce(kernel, *tiny, acc)
            if any(grads):
                out.sum().backward()
    _KEOPS_READY.add(key)


def _keops_sum(
    kernel: Kernel, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, acc: torch.dtype
) -> torch.Tensor:
    _keops_prepare(kernel, x, y, w, acc)
    return _keops_reduce(kernel, x, y, w, acc).to(acc)


def kernel_sum(
    kernel: Kernel,
    x: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor,
    *,
    backend: str = "auto",
    tile_size: int = DEFAULT_TILE,
    accumulate: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Kernel sum ``K(x, y) @ w`` for a weight matrix ``w`` with one or many columns.

    ``(K w)_{i c} = sum_j k(x_i, y_j) w_{j c}``, computed without forming K.

    Parameters
    ----------
    kernel : Kernel
        A kernel with numeric bandwidths (see :meth:`Kernel.resolve`).
    x : Tensor of shape (n, d)
    y : Tensor of shape (m, d)
    w : Tensor of shape (m,) or (m, c)
    backend : {"auto", "dense", "keops"}, default="auto"
    tile_size : int, default=2048
        Side of a dense tile (memory O(tile_size^2 + n c)).
    accumulate : torch.dtype, default=torch.float64
        Dtype in which tile sums are accumulated and returned (float32 inputs keep their
        precision in long sums).

    Returns
    -------
    Tensor of shape (n,) or (n, c), dtype ``accumulate``

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    >>> out = kernel_sum(Kernel("gaussian", 1.0), x, x, torch.ones(2, dtype=torch.float64))
    >>> [round(v, 6) for v in out.tolist()]  # 1 + exp(-1/2) for each row
    [1.606531, 1.606531]
    """
    if not kernel.is_resolved:
        raise ValueError("`kernel` must have numeric bandwidths; call `kernel.resolve(x, y)`.")
    vector = w.ndim == 1
    w2 = w[:, None] if vector else w
    same = x is y
    # Translation invariance: centre on a common point so the matmul identity does not
    # cancel large offsets (float32 data far from the origin).
    shift = y.detach().mean(0)
    xc, yc = x - shift, y - shift
    yc = xc if same else yc
    name = select_backend(backend, x.shape[0], y.shape[0], x.device)
    w2 = w2.to(x.dtype)
    if name == "keops":
        out = _keops_sum(kernel, xc, yc, w2, accumulate)
    else:
        out = _dense_sum(kernel, xc, yc, w2, same, accumulate, tile_size)
    return out[:, 0] if vector else out


def kernel_pointwise(kernel: Kernel, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Kernel on paired rows: ``k(x_i, y_i)`` for i = 1..n (used by linear-time MMD)."""
    return kernel(((x - y) ** 2).sum(1))
