"""The permutation engine behind :func:`ratiokit.two_sample_test`.

A permutation test relabels the pooled sample ``z = [x; y]`` (N = n + m rows): a labelling is
a 0/1 column ``e`` with n ones (the rows called "x"). All labellings of one test are drawn up
front, on the CPU, from the test's NumPy Generator, and stored as one boolean matrix of shape
(N, C) whose column 0 is the observed labelling; the statistics of every column are then
computed together as batched reductions:

- kernel statistics (MMD^2, energy distance) are functions of three numbers per column,
  ``q = e' K e``, ``r = e' K 1`` and ``t = e' diag(K)``. :func:`dense_forms` walks the upper
  triangle of the symmetric pooled Gram matrix ``K`` tile by tile, computes each tile once and
  multiplies it by the label block of *all* columns (float64 BLAS), so the cost is about
  ``N^2 C / 2`` multiply-adds and the memory one tile plus one block of columns;
  :func:`keops_forms` does the same with KeOps ``K @ E`` reductions in column batches, and
  :func:`feature_forms` with an explicit feature map (random Fourier features);
- linear statistics (a held-out score summed over each group) are one matrix product;
- any other statistic is evaluated with :func:`torch.func.vmap` over batches of columns.

Labellings never depend on the device, the tile size or the batch size, and the statistics
computed from them differ between those settings only by rounding, which the tie tolerance
of :func:`pvalue` absorbs: a seed gives the same p-value everywhere.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import stats

from ratiokit._progress import progress_bar
from ratiokit.exceptions import NonFiniteStatisticError
from ratiokit.kernels import (
    EXACT_MAX_FEATURES,
    Kernel,
    kernel_sum,
    power_of_two_scale,
    tile_sqdist,
)

__all__ = [
    "MAX_LABEL_BYTES",
    "LabelMatrix",
    "QuadraticForms",
    "Statistics",
    "bandwidth_detail",
    "check_finite_statistics",
    "check_label_memory",
    "dense_forms",
    "dense_products",
    "draw_labels",
    "feature_forms",
    "group_indices",
    "held_out_scores",
    "keops_forms",
    "kernel_tiles",
    "linear_mmd2",
    "linear_sums",
    "n_labellings",
    "pooled64",
    "pvalue",
    "rank_pvalues",
    "score_statistics",
    "unit_kernel",
    "vmap_statistics",
]

#: Null statistics within ``TIE_RTOL * max(|T|, scale)`` of the observed T count as ties. The
#: statistics are float64 sums whose rounding error is far below 1e-12 of the magnitude
#: ``scale`` of their terms, so values equal in exact arithmetic always tie, while two
#: statistics that differ by a billionth of that magnitude are equal for any practical purpose.
TIE_RTOL = 1e-9
#: Kernel values below ``exp(-_LOG_FLOOR)`` (about 1e-304) are evaluated as that value: see
#: :func:`kernel_tiles`.
_LOG_FLOOR = 700.0
#: Random labellings are drawn in chunks of this many columns (a constant, so the draws never
#: depend on a batch size).
_DRAW_CHUNK = 64
#: The boolean label matrix, (n + m) x (B + 1) bytes, may hold at most this many bytes (4 GiB):
#: :func:`check_label_memory` refuses larger requests before anything is allocated.
MAX_LABEL_BYTES = 4 * 2**30
#: A tile's product with a block of columns holds at most this many bytes.
_BATCH_BYTES = 64 * 2**20
#: :func:`dense_forms` converts the whole label matrix to float64 once up to this size
#: (n = m = 10,000 with 999 permutations: 160 MB), and one tile's block at a time above it.
_LABEL_BYTES = 256 * 2**20

TileFn = Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor]


# ---------------------------------------------------------------------------------------------
# labellings
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelMatrix:
    """Labellings of a pooled sample: ``matrix[i, c]`` is True when row i is called "x".

    Attributes
    ----------
    matrix : Tensor of shape (N, C), bool
        Column 0 is the observed labelling (the first n rows).
    n : int
        Rows labelled "x" in every column.
    exact : bool
        True when the columns are every distinct labelling of the scheme, each once (the
        observed one first): the null distribution is then all C columns. Otherwise columns
        1..C-1 are independent uniform draws.
    """

    matrix: torch.Tensor
    n: int
    exact: bool

    @property
    def null(self) -> slice:
        """Columns that make up the null distribution."""
        return slice(0, None) if self.exact else slice(1, None)

    def to(self, device: torch.device) -> LabelMatrix:
        return LabelMatrix(self.matrix.to(device), self.n, self.exact)


def n_labellings(n: int, m: int, scheme: str) -> int:
    """Number of distinct labellings: ``C(n + m, n)`` permutations or ``2^n`` pair swaps."""
    return math.comb(n + m, n) if scheme == "permutation" else 2**n


def check_label_memory(n: int, m: int, n_resamples: int, scheme: str) -> None:
    """Refuse, before allocating, a label matrix larger than :data:`MAX_LABEL_BYTES`.

    :func:`draw_labels` holds ``min(B, C) + 1`` columns (C distinct labellings, all of them
    when ``C <= B``) of ``n + m`` booleans, one byte each.

    Raises
    ------
    ValueError
        If ``(n + m) (min(B, C) + 1)`` bytes exceed :data:`MAX_LABEL_BYTES`.

    Examples
    --------
    >>> check_label_memory(100, 100, 10**8, "permutation")
    Traceback (most recent call last):
    ...
    ValueError: `n_permutations` must be at most 21474835 for n + m = 200 rows (the \
labellings are an (n + m) x (n_permutations + 1) boolean matrix, limited to 4 GiB); got \
100000000.
    """
    big_n = n + m
    columns = min(n_resamples, n_labellings(n, m, scheme)) + 1
    if big_n * columns > MAX_LABEL_BYTES:
        largest = MAX_LABEL_BYTES // big_n - 1
        raise ValueError(
            f"`n_permutations` must be at most {largest} for n + m = {big_n} rows (the "
            "labellings are an (n + m) x (n_permutations + 1) boolean matrix, limited to "
            f"{MAX_LABEL_BYTES / 2**30:.0f} GiB); got {n_resamples}."
        )


def draw_labels(
    n: int, m: int, n_resamples: int, rng: np.random.Generator, *, scheme: str = "permutation"
) -> LabelMatrix:
    """Observed labelling plus ``n_resamples`` random ones, or every labelling if that is fewer.

    Parameters
    ----------
    n, m : int
        Sizes of the two samples; the pooled sample is ``[x; y]``.
    n_resamples : int
        B, the number of random labellings. When the number of distinct labellings is at most
        B they are enumerated instead (an exact test).
    rng : numpy.random.Generator
        Source of the random labellings (consumed in fixed chunks, on the CPU).
    scheme : {"permutation", "swap"}, default="permutation"
        ``"permutation"``: a uniform random subset of n of the N rows is called "x".
        ``"swap"`` (n = m only): each pair ``(x_i, y_i)`` is swapped with probability 1/2,
        the relabelling form of the wild bootstrap with Rademacher weights.

    Returns
    -------
    LabelMatrix

    Examples
    --------
    >>> import numpy as np
    >>> labels = draw_labels(2, 2, 99, np.random.default_rng(0))  # C(4, 2) = 6 <= 99
    >>> labels.exact, labels.matrix.shape
    (True, torch.Size([4, 6]))
    """
    total = n_labellings(n, m, scheme)
    big_n = n + m
    if total <= n_resamples:
        cols = np.zeros((big_n, total), dtype=bool)
        if scheme == "permutation":  # lexicographic: (0, ..., n - 1), the observed, comes first
            for c, rows in enumerate(itertools.combinations(range(big_n), n)):
                cols[list(rows), c] = True
        else:  # bit i of c swaps pair i; c = 0 is the observed labelling
            swaps = (np.arange(total)[None, :] >> np.arange(n)[:, None]) & 1 == 1
            cols[:n], cols[n:] = ~swaps, swaps
        return LabelMatrix(torch.from_numpy(cols), n, True)
    cols = np.zeros((big_n, n_resamples + 1), dtype=bool)
    cols[:n, 0] = True
    base = np.arange(big_n)
    for start in range(1, n_resamples + 1, _DRAW_CHUNK):
        stop = min(start + _DRAW_CHUNK, n_resamples + 1)
        if scheme == "permutation":
            chosen = rng.permuted(np.tile(base, (stop - start, 1)), axis=1)[:, :n]
            cols[chosen, np.arange(start, stop)[:, None]] = True
        else:
            swaps = rng.random((stop - start, n)) < 0.5
            cols[:n, start:stop], cols[n:, start:stop] = ~swaps.T, swaps.T
    return LabelMatrix(torch.from_numpy(cols), n, False)


def group_indices(block: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices of each column's two groups, in increasing order: shapes (c, n), (c, m)."""
    # nonzero lists the True entries of each row of block' in increasing column order.
    cols = block.shape[1]
    ix = torch.nonzero(block.T)[:, 1].view(cols, n)
    iy = torch.nonzero(~block.T)[:, 1].view(cols, block.shape[0] - n)
    return ix, iy


# ---------------------------------------------------------------------------------------------
# kernel quadratic forms
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuadraticForms:
    """Per kernel l and labelling column c: ``q = e' K e``, ``r = e' K 1``, ``t = e' diag K``.

    With ``total = 1' K 1`` and ``trace = 1' diag K`` these give every two-sample kernel
    statistic: ``s_xx = q``, ``s_xy = r - q``, ``s_yy = total - 2 r + q``.

    Attributes
    ----------
    q, r, t : Tensor of shape (L, C), float64
    total, trace : Tensor of shape (L,), float64
    n_rows : int
        N, the size of the pooled sample.
    """

    q: torch.Tensor
    r: torch.Tensor
    t: torch.Tensor
    total: torch.Tensor
    trace: torch.Tensor
    n_rows: int

    def mmd2(self, n: int, m: int, estimator: str) -> torch.Tensor:
        """MMD^2 of every column, shape (L, C): ``"unbiased"`` (U) or ``"biased"`` (V).

        ``U = (s_xx - t) / (n (n - 1)) + (s_yy - (trace - t)) / (m (m - 1)) - 2 s_xy / (n m)``
        and ``V = s_xx / n^2 + s_yy / m^2 - 2 s_xy / (n m)``.
        """
        s_xx, s_xy = self.q, self.r - self.q
        s_yy = self.total[:, None] - 2.0 * self.r + self.q
        if estimator == "unbiased":
            diag_y = self.trace[:, None] - self.t
            within = (s_xx - self.t) / (n * (n - 1)) + (s_yy - diag_y) / (m * (m - 1))
        else:
            within = s_xx / n**2 + s_yy / m**2
        return within - 2.0 * s_xy / (n * m)

    def scale(self) -> np.ndarray:
        """Magnitude of the terms of each kernel's statistic, the mean of ``|K|``: shape (L,)."""
        return (self.total.abs() / float(self.n_rows) ** 2).cpu().numpy()


def _scaled_cap(kernel: Kernel) -> float:
    """Largest scaled squared distance ``u = d2 / h^2`` evaluated for a kernel family.

    Beyond it the unit-bandwidth kernel is below ``exp(-_LOG_FLOOR)``, about 1e-304:
    ``exp(-u / 2)`` (Gaussian), ``exp(-sqrt(u))`` (Laplace), ``(1 + u / (2 alpha))^-alpha``
    (rational quadratic). The inverse multiquadric decays as a power and the energy kernel
    has no exponential, so they are never capped.
    """
    if kernel.name == "gaussian":
        return 2.0 * _LOG_FLOOR
    if kernel.name == "laplace":
        return _LOG_FLOOR**2
    if kernel.name == "rq" and _LOG_FLOOR / kernel.alpha < 700.0:
        return 2.0 * kernel.alpha * math.expm1(_LOG_FLOOR / kernel.alpha)
    return math.inf


def kernel_tiles(kernels: Sequence[Kernel]) -> TileFn:
    """Tile function of one or more kernels: ``(z_i, z_j, diagonal) -> (L, t_i, t_j)``.

    The squared distances of a tile are computed once and shared by all L kernels, by the
    rule of :func:`ratiokit.kernels.kernel_sum`: from explicit differences up to
    ``EXACT_MAX_FEATURES`` features or for a kernel with a square root (tied points then give
    exactly equal values), else by the matmul identity.

    Every bandwidth kernel is its unit-bandwidth form at ``u = d2 / h^2``, so each kernel
    family (all its bandwidths, in every kernel of the list) is one vectorised evaluation on
    a stack of scaled distances: a few large tensor operations per tile instead of several per
    bandwidth (MMDAgg's 20 kernels). ``u`` is capped where the kernel falls below about
    1e-304 (:func:`_scaled_cap`): the CPU computes the subnormal results of ``exp`` there
    about 20 times slower, and the cap changes no value by more than 1e-304.
    """
    with_sqrt = any(k.name in ("laplace", "energy") for k in kernels)
    # One entry per family: the unit kernel, 1 / h^2 of each of its terms, and the index of
    # the kernel each term belongs to (a kernel with several bandwidths is their sum).
    families: dict[tuple[str, float], tuple[Kernel, list[float], list[int]]] = {}
    for index, kernel in enumerate(kernels):
        unit = Kernel(kernel.name, 1.0, kernel.alpha)
        entry = families.setdefault((kernel.name, kernel.alpha), (unit, [], []))
        for h in kernel.bandwidths:
            entry[1].append(1.0 / h**2)
            entry[2].append(index)
    owners = [i for _, _, members in families.values() for i in members]
    stacked = owners == list(range(len(kernels)))  # one term per kernel, in order

    def tile(zi: torch.Tensor, zj: torch.Tensor, diagonal: bool) -> torch.Tensor:
        exact = with_sqrt or zi.shape[1] <= EXACT_MAX_FEATURES
        d2 = tile_sqdist(zi, zj, diagonal=diagonal, exact=exact)
        parts = []
        for unit, inverse, _ in families.values():
            scale = torch.tensor(inverse, dtype=d2.dtype, device=d2.device)
            u = d2[None] * scale[:, None, None]
            cap = _scaled_cap(unit)
            parts.append(unit(u.clamp_max_(cap) if math.isfinite(cap) else u))
        if stacked:
            return parts[0] if len(parts) == 1 else torch.cat(parts)
        out = d2.new_zeros(len(kernels), *d2.shape)
        index = torch.tensor(owners, device=d2.device)
        return out.index_add_(0, index, torch.cat(parts))

    return tile


def _blocks(size: int, tile: int) -> list[tuple[int, int]]:
    return [(s, min(s + tile, size)) for s in range(0, size, tile)]


def dense_forms(
    z: torch.Tensor,
    tile_fn: TileFn,
    n_kernels: int,
    labels: LabelMatrix,
    *,
    tile_size: int,
    batch_size: int | None = None,
    progress: bool | None = None,
) -> QuadraticForms:
    """Quadratic forms of all label columns, by dense tiles of the symmetric Gram matrix.

    Each tile ``K_ab`` (b >= a) is computed once; its product with the label block of every
    column (in batches of ``batch_size`` columns) adds ``e_a' K_ab e_b`` to ``q``, twice for
    b > a. Memory: one tile per kernel, one batch of columns, and the boolean label matrix.

    Parameters
    ----------
    z : Tensor of shape (N, D)
        Pooled sample (float64).
    tile_fn : callable
        ``tile_fn(z_i, z_j, diagonal) -> (L, t_i, t_j)``, the kernels on a block pair.
    n_kernels : int
        L.
    labels : LabelMatrix
        On ``z``'s device.
    tile_size : int
        Side of a tile for one kernel; with L kernels it shrinks by ``sqrt(L)``.
    batch_size : int, default=None
        Columns per matrix product; default: as many as fit in 64 MiB per tile.
    progress : bool or None, default=None
        tqdm bar over tiles (:func:`ratiokit._progress.progress_bar`; None: only on a
        terminal, once the loop has run for a second).

    Returns
    -------
    QuadraticForms
    """
    big_n, n_cols = labels.matrix.shape
    tile = max(16, int(tile_size / math.sqrt(n_kernels)))
    if batch_size is None:
        batch_size = max(1, _BATCH_BYTES // (8 * n_kernels * tile))
    f64 = torch.float64
    dev = z.device
    q = torch.zeros(n_kernels, n_cols, dtype=f64, device=dev)
    rows = torch.zeros(n_kernels, big_n, dtype=f64, device=dev)
    diag = torch.zeros(n_kernels, big_n, dtype=f64, device=dev)
    blocks = _blocks(big_n, tile)
    pairs = [(a, b) for a in range(len(blocks)) for b in range(a, len(blocks))]
    mat = labels.matrix
    # The labels in float64: converted once when they fit in _LABEL_BYTES, else per tile.
    converted = mat.to(f64) if big_n * n_cols * 8 <= _LABEL_BYTES else None

    def label_block(r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
        if converted is not None:
            return converted[r0:r1, c0:c1]
        return mat[r0:r1, c0:c1].to(f64)

    with torch.no_grad(), progress_bar(len(pairs), "permutation null", progress) as bar:
        for a, b in pairs:
            (i0, i1), (j0, j1) = blocks[a], blocks[b]
            k = tile_fn(z[i0:i1], z[j0:j1], a == b).to(f64)
            rows[:, i0:i1] += k.sum(2)
            if a == b:
                diag[:, i0:i1] = k.diagonal(dim1=1, dim2=2)
            else:
                rows[:, j0:j1] += k.sum(1)
            flat = k.reshape(n_kernels * (i1 - i0), j1 - j0)
            weight = 1.0 if a == b else 2.0
            for c0 in range(0, n_cols, batch_size):
                c1 = min(c0 + batch_size, n_cols)
                prod = (flat @ label_block(j0, j1, c0, c1)).view(n_kernels, i1 - i0, c1 - c0)
                q[:, c0:c1].add_(prod.mul_(label_block(i0, i1, c0, c1)).sum(1), alpha=weight)
            bar.update(1)
        r = torch.zeros_like(q)
        t = torch.zeros_like(q)
        for j0, j1 in blocks:
            e_j = mat[j0:j1].to(f64)
            r += rows[:, j0:j1] @ e_j
            t += diag[:, j0:j1] @ e_j
    return QuadraticForms(q, r, t, rows.sum(1), diag.sum(1), big_n)


def dense_products(
    z: torch.Tensor, tile_fn: TileFn, n_kernels: int, w: torch.Tensor, *, tile_size: int
) -> torch.Tensor:
    """``K_l @ w`` for every kernel l, shape (L, N, c), walking the upper triangle of K once.

    Each tile ``K_ab`` (b >= a) adds ``K_ab w_b`` to rows a and, for b > a, ``K_ab' w_a`` to
    rows b. Used for a few weight columns (row sums of each group), without autograd.
    """
    big_n = z.shape[0]
    tile = max(16, int(tile_size / math.sqrt(n_kernels)))
    w = w.to(torch.float64)
    out = torch.zeros(n_kernels, big_n, w.shape[1], dtype=torch.float64, device=z.device)
    blocks = _blocks(big_n, tile)
    with torch.no_grad():
        for a, (i0, i1) in enumerate(blocks):
            for b in range(a, len(blocks)):
                j0, j1 = blocks[b]
                k = tile_fn(z[i0:i1], z[j0:j1], a == b).to(torch.float64)
                out[:, i0:i1] += k @ w[j0:j1]
                if a != b:
                    out[:, j0:j1] += k.transpose(1, 2) @ w[i0:i1]
    return out


def keops_forms(
    kernel: Kernel,
    z: torch.Tensor,
    labels: LabelMatrix,
    *,
    batch_size: int = 256,
    progress: bool | None = None,
) -> QuadraticForms:
    """Quadratic forms of all label columns by KeOps reductions ``K @ E`` in column batches.

    KeOps never forms a tile, but it does not use the symmetry of K and evaluates the kernel
    once per batch. Every batch is padded to ``batch_size`` columns so one compiled formula
    serves them all.
    """
    big_n, n_cols = labels.matrix.shape
    f64 = torch.float64
    batch_size = min(batch_size, n_cols)
    ones = torch.ones(big_n, 1, dtype=f64, device=z.device)
    q = torch.zeros(1, n_cols, dtype=f64, device=z.device)
    r = torch.zeros_like(q)
    starts = range(0, n_cols, batch_size)
    with torch.no_grad(), progress_bar(len(starts), "permutation null", progress) as bar:
        rows = kernel_sum(kernel, z, z, ones, backend="keops")[:, 0]
        for c0 in starts:
            c1 = min(c0 + batch_size, n_cols)
            e = torch.zeros(big_n, batch_size, dtype=f64, device=z.device)
            e[:, : c1 - c0] = labels.matrix[:, c0:c1].to(f64)
            k_e = kernel_sum(kernel, z, z, e, backend="keops")
            q[0, c0:c1] = (e * k_e).sum(0)[: c1 - c0]
            r[0, c0:c1] = (rows @ e)[: c1 - c0]
            bar.update(1)
    k0 = kernel.at_zero()
    t = k0 * labels.matrix.sum(0, dtype=torch.int64).to(f64)[None, :]
    trace = torch.full((1,), k0 * big_n, dtype=f64, device=z.device)
    return QuadraticForms(q, r, t, rows.sum()[None], trace, big_n)


def feature_forms(
    features: torch.Tensor,
    labels: LabelMatrix,
    *,
    batch_size: int = 4096,
    progress: bool | None = None,
) -> QuadraticForms:
    """Quadratic forms for the low-rank Gram matrix ``K = Phi Phi'`` of a feature map.

    ``q = ||Phi' e||^2``, ``r = (Phi' e)' (Phi' 1)``, ``t = e' rowsum(Phi * Phi)``: about
    ``N F C`` multiply-adds for F features, linear in N.
    """
    big_n, n_cols = labels.matrix.shape
    f64 = torch.float64
    phi = features.to(f64)
    col_sum = phi.sum(0)
    sq = (phi * phi).sum(1)
    q = torch.zeros(1, n_cols, dtype=f64, device=phi.device)
    r, t = torch.zeros_like(q), torch.zeros_like(q)
    batches = list(_column_batches(n_cols, batch_size))
    with torch.no_grad(), progress_bar(len(batches), "permutation null", progress) as bar:
        for c0, c1 in batches:
            e = labels.matrix[:, c0:c1].to(f64)
            g = phi.T @ e
            q[0, c0:c1] = (g * g).sum(0)
            r[0, c0:c1] = col_sum @ g
            t[0, c0:c1] = sq @ e
            bar.update(1)
    return QuadraticForms(q, r, t, (col_sum @ col_sum)[None], sq.sum()[None], big_n)


# ---------------------------------------------------------------------------------------------
# other batched statistics
# ---------------------------------------------------------------------------------------------


def _column_batches(n_cols: int, batch_size: int) -> Iterator[tuple[int, int]]:
    for c0 in range(0, n_cols, batch_size):
        yield c0, min(c0 + batch_size, n_cols)


def linear_mmd2(
    kernel: Kernel,
    z: torch.Tensor,
    labels: LabelMatrix,
    *,
    batch_size: int | None = None,
    progress: bool | None = None,
) -> torch.Tensor:
    """Linear-time MMD^2 of every column, shape (C,), float64.

    Each group is taken in increasing row order and paired consecutively, as
    :class:`~ratiokit.methods.mmd.MMD` does with ``estimator="linear"``: the mean over
    ``half = min(n, m) // 2`` pairs of ``k(x, x') + k(y, y') - k(x, y') - k(x', y)``.
    O(N) kernel evaluations per column; ``batch_size`` columns (default: about 2^22 gathered
    values) are gathered at once (each row once), and the four kernel terms of a batch are one
    kernel evaluation.
    """
    n = labels.n
    n_cols = labels.matrix.shape[1]
    half = min(n, z.shape[0] - n) // 2
    if batch_size is None:
        batch_size = max(1, 2**22 // (z.shape[0] * z.shape[1]))
    out = torch.zeros(n_cols, dtype=torch.float64, device=z.device)
    batches = list(_column_batches(n_cols, batch_size))
    with torch.no_grad(), progress_bar(len(batches), "permutation null", progress) as bar:
        for c0, c1 in batches:
            ix, iy = group_indices(labels.matrix[:, c0:c1], n)
            # Each group's first 2 half rows, gathered once: shape (c, 2 half, d).
            zx, zy = z[ix[:, : 2 * half]], z[iy[:, : 2 * half]]
            x1, x2, y1, y2 = zx[:, 0::2], zx[:, 1::2], zy[:, 0::2], zy[:, 1::2]
            # Differences of the pairs (x, x'), (y, y'), (x, y'), (x', y): (4, c, half, d).
            diff = torch.stack([x1 - x2, y1 - y2, x1 - y2, x2 - y1])
            k = kernel((diff * diff).sum(-1)).to(torch.float64)
            out[c0:c1] = (k[0] + k[1] - k[2] - k[3]).mean(1)
            bar.update(1)
    return out


def linear_sums(values: torch.Tensor, labels: LabelMatrix) -> torch.Tensor:
    """``values' e`` for every column: sums over the "x" group, shape (k, C) for (N, k) values."""
    mat = labels.matrix
    out = torch.zeros(values.shape[1], mat.shape[1], dtype=torch.float64, device=values.device)
    for c0, c1 in _column_batches(mat.shape[1], 4096):
        out[:, c0:c1] = values.to(torch.float64).T @ mat[:, c0:c1].to(torch.float64)
    return out


def vmap_statistics(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    z: torch.Tensor,
    labels: LabelMatrix,
    *,
    batch_size: int = 64,
    progress: bool | None = None,
    name: str = "",
    stacklevel: int = 2,
) -> torch.Tensor:
    """``fn(x, y)`` of every column, shape (C,), float64, vectorised with ``torch.func.vmap``.

    Each batch of columns is gathered into tensors of shape (c, n, d) and (c, m, d) and
    ``fn`` runs once per batch under ``vmap``. A statistic that vmap cannot trace (data-
    dependent Python control flow, conversions to NumPy or float) is evaluated one column at
    a time instead, which is correct but slow, with a warning that says so (``name`` names
    the statistic in it; ``stacklevel`` points it at the caller's caller).
    """
    n = labels.n
    n_cols = labels.matrix.shape[1]
    out = torch.zeros(n_cols, dtype=torch.float64, device=z.device)
    batched: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = torch.func.vmap(fn)
    batches = list(_column_batches(n_cols, batch_size))
    with torch.no_grad(), progress_bar(len(batches), "permutation null", progress) as bar:
        for c0, c1 in batches:
            ix, iy = group_indices(labels.matrix[:, c0:c1], n)
            xs, ys = z[ix], z[iy]
            if batched is not None:
                try:
                    out[c0:c1] = torch.as_tensor(batched(xs, ys), dtype=torch.float64)
                    bar.update(1)
                    continue
                except (RuntimeError, NotImplementedError) as err:
                    batched = None
                    warnings.warn(
                        f"the statistic {name} cannot be vectorised with torch.func.vmap "
                        f"({str(err).splitlines()[0]}); it is evaluated once per relabelling, "
                        "which is slow: keep `forward` in torch operations (no Python floats, "
                        "NumPy or data-dependent branches) or give the method a "
                        "`null_statistics(z, labels, progress)` of its own.",
                        UserWarning,
                        stacklevel=stacklevel,
                    )
            for c in range(c1 - c0):
                out[c0 + c] = float(fn(xs[c], ys[c]))
            bar.update(1)
    return out


# ---------------------------------------------------------------------------------------------
# p-values
# ---------------------------------------------------------------------------------------------


def check_finite_statistics(
    observed: float, null: np.ndarray, *, exact: bool, name: str = "statistic"
) -> None:
    """Raise :class:`NonFiniteStatisticError` if the observed or a permuted statistic is not
    finite, saying which, how many and the likely causes; ``name`` names the statistic."""
    bad = int(np.count_nonzero(~np.isfinite(null)))
    if exact and not math.isfinite(observed):  # the observed one is among the null columns
        bad -= 1
    what = []
    if not math.isfinite(observed):
        what.append(f"the observed {name} is {observed!r}")
    if bad:
        of = "" if what else f" of the {name}"  # the observed one named it already
        what.append(f"{bad} of {null.size - int(exact)} permuted values{of} are NaN or inf")
    if what:
        raise NonFiniteStatisticError(
            f"{' and '.join(what)}, so there is no p-value. Likely causes: data at an extreme "
            "scale (overflow or underflow; rescale the data), a bandwidth far from the data's "
            "scale, or a custom `forward` that returns NaN or inf."
        )


def pvalue(
    observed: float,
    null: np.ndarray,
    alternative: str,
    *,
    exact: bool,
    scale: float,
    name: str = "statistic",
) -> float:
    """Permutation p-value of ``observed`` against ``null``, never 0.

    ``p = (1 + #{T_b >= T}) / (1 + B)`` for B random draws (``"greater"``), or
    ``#{T_b >= T} / C`` when ``null`` enumerates all C labellings (the observed one among
    them). ``T_b >= T`` is tested as ``T_b >= T - TIE_RTOL * max(|T|, scale)``, so statistics
    equal in exact arithmetic tie. ``"two-sided"`` doubles the smaller one-sided p-value
    (capped at 1), as :func:`scipy.stats.permutation_test` does.

    A NaN or infinite statistic has no p-value (a comparison with NaN is always false, which
    would count it as more extreme than every relabelling): it raises instead.

    Raises
    ------
    NonFiniteStatisticError
        If ``observed`` or an entry of ``null`` is NaN or infinite; the message says which
        (``name`` names the statistic) and suggests causes.

    Examples
    --------
    >>> import numpy as np
    >>> pvalue(2.0, np.array([1.0, 2.0, 3.0]), "greater", exact=False, scale=1.0)  # (1 + 2) / 4
    0.75
    >>> pvalue(float("nan"), np.array([1.0, 2.0]), "greater", exact=False, scale=1.0)
    Traceback (most recent call last):
    ...
    ratiokit.exceptions.NonFiniteStatisticError: the observed statistic is nan, so there is \
no p-value. Likely causes: data at an extreme scale (overflow or underflow; rescale the data), a \
bandwidth far from the data's scale, or a custom `forward` that returns NaN or inf.
    """
    check_finite_statistics(observed, null, exact=exact, name=name)
    tol = TIE_RTOL * max(abs(observed), scale)
    counts = {
        "greater": np.count_nonzero(null >= observed - tol),
        "less": np.count_nonzero(null <= observed + tol),
    }

    def from_count(count: int) -> float:
        return float(count / null.size if exact else (1.0 + count) / (1.0 + null.size))

    if alternative == "two-sided":
        return min(1.0, 2.0 * min(from_count(counts["greater"]), from_count(counts["less"])))
    return from_count(counts[alternative])


def rank_pvalues(stats: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """For each row (a statistic) and column, the fraction of columns at least as large.

    ``p[l, c] = #{c' : T[l, c'] >= T[l, c] - tol_l} / C``: each column's p-value against the
    set of all columns, observed included, so the columns stay exchangeable under H0 (the
    reference set of the min-P aggregation of :class:`~ratiokit.methods.MMDAgg`).
    """
    n_cols = stats.shape[1]
    out = np.empty_like(stats, dtype=np.float64)
    for row, (values, s) in enumerate(zip(stats, scale, strict=True)):
        tol = TIE_RTOL * np.maximum(np.abs(values), s)
        ordered = np.sort(values)
        out[row] = (n_cols - np.searchsorted(ordered, values - tol, side="left")) / n_cols
    return out


@dataclass(frozen=True)
class Statistics:
    """Statistics of every label column (column 0 observed), their scale and extra details."""

    values: np.ndarray
    scale: float
    details: dict[str, Any] = field(default_factory=dict)


def pooled64(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The pooled sample in float64, centred and divided by ``c`` from
    :func:`~ratiokit.kernels.power_of_two_scale`, and ``c``.

    Kernels here are translation invariant, and a bandwidth kernel on ``z / c`` with
    bandwidths ``h / c`` (:func:`unit_kernel`) has exactly the values of the original, so
    the statistics are unchanged (``c`` is a power of two: the division is exact; ``c = 1``
    for data of unit spread) while squared distances neither overflow nor underflow at any
    scale of the data.
    """
    z = torch.cat([a, b]).detach().to(torch.float64)
    z = z - z.mean(0)
    scale = power_of_two_scale(z)
    return z / scale, scale


def unit_kernel(kernel: Kernel, scale: float) -> Kernel:
    """``kernel`` for data divided by ``scale``: bandwidths ``h / scale``.

    The energy kernel ``-|x - y|`` has no bandwidth and is returned as is: its values on the
    divided data, hence its statistics, are those of the original divided by ``scale``.
    """
    if kernel.name == "energy":
        return kernel
    try:
        return Kernel(kernel.name, tuple(h / scale for h in kernel.bandwidths), kernel.alpha)
    except ValueError as err:
        raise ValueError(
            f"`bandwidth` must be within a factor of about 1e150 of the data's spread "
            f"({scale:.3g}), or the kernel is constant or zero between distinct points; got "
            f"{bandwidth_detail(kernel)!r}."
        ) from err


def bandwidth_detail(kernel: Kernel) -> float | list[float] | None:
    if kernel.name == "energy":
        return None
    bws = kernel.bandwidths
    return float(bws[0]) if len(bws) == 1 else [float(h) for h in bws]


def held_out_scores(estimator: Any, z: torch.Tensor) -> torch.Tensor | None:
    """``log r`` at the held-out points, float64; None if the method's ratio is defined only at
    the points it was fitted on (kernel mean matching): its ``forward`` is tested instead."""
    try:
        with torch.no_grad():
            scores = estimator.log_ratio(z)
    except (ValueError, NotImplementedError):
        return None
    scores = torch.as_tensor(scores, dtype=torch.float64, device=z.device).reshape(-1)
    if not bool(torch.isfinite(scores).all()):
        raise ValueError(
            f"method {estimator.name!r} returned non-finite log-ratios on the held-out "
            "points; the test needs finite scores (check the method's fit)."
        )
    return scores


def score_statistics(name: str, scores: torch.Tensor, labels: LabelMatrix) -> Statistics:
    """Held-out statistics of a fitted ratio method: mean log-ratio difference and accuracy.

    With scores ``s = log r(z)`` on the pooled held-out sample, ``T = mean_x s - mean_y s``;
    a point is classified as "x" when ``s > log(m / n)`` (the Bayes rule for the held-out
    class sizes), and the accuracy is the fraction classified correctly. Both are linear in
    the labels, so all relabellings cost one matrix product.
    """
    n = labels.n
    m = scores.shape[0] - n
    predicted = (scores > math.log(m / n)).to(torch.float64)
    sums = linear_sums(torch.stack([scores, predicted], 1), labels)
    mean_diff = sums[0] / n - (scores.sum() - sums[0]) / m
    correct = 2.0 * sums[1] + m - predicted.sum()
    accuracy = (correct / (n + m)).cpu().numpy()
    acc_null = accuracy[labels.null]
    k = round(float(correct[0]))
    details: dict[str, Any] = {
        "statistic": "mean log-ratio difference",
        "accuracy": float(accuracy[0]),
        "accuracy_pvalue": pvalue(
            float(accuracy[0]), acc_null, "greater", exact=labels.exact, scale=1.0
        ),
        # Under H0 the predictions are independent of the (balanced) held-out labels, so the
        # number correct is a sum of Bernoullis with mean (n + m) / 2 and at most binomial
        # spread: the Binomial(n + m, 1/2) tail is exact or conservative.
        "binomial_pvalue": float(stats.binom.sf(k - 1, n + m, 0.5)),
    }
    scale = float(scores.abs().mean())
    return Statistics(mean_diff.cpu().numpy(), scale, details)
