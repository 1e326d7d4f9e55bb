"""Kernels, bandwidth rules and kernel sums: dense tiles and KeOps against brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ratiokit import kernels
from ratiokit.kernels import (
    KERNELS,
    Kernel,
    kernel_sum,
    median_bandwidth,
    power_of_two_scale,
    select_backend,
)
from tests.reference import gram

SETTINGS = [("gaussian", (0.7,)), ("laplace", (0.5, 2.0)), ("imq", 1.3), ("rq", (0.8, 3.0)),
            ("energy", 1.0)]  # fmt: skip


def data(n, m, d, c, seed, dtype=torch.float64):
    gen = np.random.default_rng(seed)
    x, y = gen.normal(size=(n, d)), gen.normal(0.5, 1.2, size=(m, d))
    w = gen.normal(size=(m, c))
    return x, y, w, [torch.tensor(a, dtype=dtype) for a in (x, y, w)]


@pytest.mark.parametrize(("name", "bw"), SETTINGS)
@pytest.mark.parametrize("tile", [7, 1024])
def test_dense_kernel_sum_matches_brute_force(name, bw, tile):
    x, y, w, (tx, ty, tw) = data(40, 33, 3, 4, seed=1)
    k = Kernel(name, bw, alpha=2.0)
    ref = gram(name, x, y, bw, alpha=2.0) @ w  # explicit pairwise differences in NumPy
    out = kernel_sum(k, tx, ty, tw, backend="dense", tile_size=tile).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["gaussian", "imq"])
def test_wide_data_take_the_matmul_identity_path(name):
    # d = 100 > EXACT_MAX_FEATURES: smooth kernels use |x|^2 + |y|^2 - 2 x.y on centred data.
    x, y, w, (tx, ty, tw) = data(30, 20, 100, 2, seed=6)
    ref = gram(name, x, y, 12.0) @ w
    out = kernel_sum(Kernel(name, 12.0), tx, ty, tw, backend="dense").numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-10)


def test_tile_size_does_not_change_the_sum():
    _, _, _, (tx, ty, tw) = data(300, 250, 5, 3, seed=2)
    k = Kernel("gaussian", 1.0)
    a = kernel_sum(k, tx, ty, tw, backend="dense", tile_size=16)
    b = kernel_sum(k, tx, ty, tw, backend="dense", tile_size=4096)
    torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)


# KeOps compiles one module per formula signature (kernel, d, columns of w, dtype, which
# gradients), so the KeOps tests share d = 3 and one weight column where they can.
@pytest.mark.keops
@pytest.mark.parametrize(("name", "bw"), SETTINGS)
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_keops_matches_dense_values(name, bw, dtype, tol):
    _, _, _, (tx, ty, tw) = data(60, 45, 3, 1, seed=3, dtype=dtype)
    k = Kernel(name, bw, alpha=2.0)
    dense = kernel_sum(k, tx, ty, tw[:, 0], backend="dense")
    keops = kernel_sum(k, tx, ty, tw[:, 0], backend="keops")
    assert float((dense - keops).abs().max() / dense.abs().max()) < tol


@pytest.mark.keops
@pytest.mark.parametrize(("name", "bw"), [("gaussian", (0.7,)), ("laplace", (0.5, 2.0))])
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_keops_matches_dense_gradients(name, bw, dtype, tol):
    _, _, _, (tx, ty, tw) = data(60, 45, 3, 1, seed=4, dtype=dtype)
    k = Kernel(name, bw)
    grads = {}
    for backend in ("dense", "keops"):
        x, y = tx.clone().requires_grad_(True), ty.clone().requires_grad_(True)
        out = kernel_sum(k, x, y, tw[:, 0], backend=backend)
        (out * torch.linspace(-1, 1, out.numel(), dtype=dtype)).sum().backward()
        grads[backend] = (x.grad, y.grad)
    for dense, keops in zip(grads["dense"], grads["keops"], strict=True):
        assert float((dense - keops).abs().max() / dense.abs().max()) < tol


@pytest.mark.keops
def test_keops_many_weight_columns_and_weight_gradient():
    x, y, w, (tx, ty, tw) = data(50, 40, 3, 6, seed=5)
    tw.requires_grad_(True)
    out = kernel_sum(Kernel("gaussian", 0.9), tx, ty, tw, backend="keops")
    np.testing.assert_allclose(out.detach().numpy(), gram("gaussian", x, y, 0.9) @ w, rtol=1e-10)
    out.sum().backward()  # d/dw_jc of sum_ic (K w)_ic = sum_i k(x_i, y_j)
    expected = np.repeat(gram("gaussian", x, y, 0.9).sum(0)[:, None], 6, axis=1)
    np.testing.assert_allclose(tw.grad.numpy(), expected, rtol=1e-10)


def test_squared_distances_are_clamped_for_offset_float32_data():
    # Far from the origin the matmul identity |x|^2 + |y|^2 - 2 x.y cancels catastrophically
    # in float32; centring and clamping keep k(x, x) = 1 and every Gaussian value in [0, 1].
    gen = np.random.default_rng(4)
    x = torch.tensor(1e4 + gen.normal(size=(200, 3)), dtype=torch.float32)
    d2 = kernels.tile_sqdist(x, x, diagonal=False, exact=False)  # the matmul identity's path
    assert float(d2.min()) >= 0.0
    assert float(kernels.tile_sqdist(x, x, diagonal=True, exact=False).diagonal().abs().max()) == 0
    k = Kernel("gaussian", 1.0)
    out = kernel_sum(k, x, x, torch.ones(200), backend="dense")
    ref = gram("gaussian", x.double().numpy(), x.double().numpy(), 1.0).sum(1)
    np.testing.assert_allclose(out.numpy(), ref, rtol=2e-5)


@pytest.mark.parametrize("backend", ["dense", pytest.param("keops", marks=pytest.mark.keops)])
@pytest.mark.parametrize("name", ["laplace", "energy"])
def test_no_nan_gradient_at_zero_distance(name, backend):
    # Duplicated rows give zero distances, where d sqrt(d2) is singular.
    x = torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [2.0, 0.0, 1.0]], dtype=torch.float64)
    x.requires_grad_(True)
    kernel_sum(
        Kernel(name, 1.0), x, x, torch.ones(3, dtype=torch.float64), backend=backend
    ).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_median_bandwidth_matches_definition_and_ignores_ties():
    gen = np.random.default_rng(5)
    x = gen.normal(size=(50, 2))
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))[np.triu_indices(50, 1)]
    assert median_bandwidth(torch.tensor(x)) == pytest.approx(np.median(d), rel=1e-12)
    # Discrete data with most pairs tied: the median of the positive distances, never 0.
    z = torch.tensor([[0.0]] * 40 + [[1.0]] * 2 + [[3.0]])
    assert median_bandwidth(z) == pytest.approx(1.0)


def test_median_bandwidth_subsamples_large_n():
    # 1-D N(0, 1): |X - X'| ~ |N(0, 2)|, median sqrt(2) * 0.6745 = 0.9539. From 1000 points
    # (499,500 dependent pairs) the sample median's standard error is about 0.02; 0.08 is 4 SE.
    x = torch.tensor(np.random.default_rng(6).normal(size=(200_000, 1)))
    h = median_bandwidth(x, rng=0)
    assert abs(h - np.sqrt(2) * 0.6744897501960817) < 0.08
    assert median_bandwidth(x, rng=0) == h  # reproducible for a seed


def test_kernel_values_and_repr():
    d2 = torch.tensor([0.0, 1.0, 4.0], dtype=torch.float64)
    torch.testing.assert_close(Kernel("gaussian", 2.0)(d2), torch.exp(-d2 / 8))
    torch.testing.assert_close(Kernel("laplace", 2.0)(d2), torch.exp(-d2.sqrt() / 2))
    torch.testing.assert_close(Kernel("imq", (1.0, 2.0))(d2),
                               (1 + d2) ** -0.5 + (1 + d2 / 4) ** -0.5)  # fmt: skip
    assert Kernel("gaussian", (1.0, 2.0)).at_zero() == 2.0
    assert Kernel("energy").at_zero() == 0.0
    assert set(KERNELS) == {"gaussian", "laplace", "imq", "rq", "energy"}
    with pytest.raises(ValueError, match="must be resolved from data"):
        _ = Kernel("gaussian").bandwidths


def test_keops_request_without_pykeops_raises(monkeypatch):
    monkeypatch.setattr(kernels, "keops_available", lambda: False)
    with pytest.raises(ImportError, match="`backend`='keops' needs pykeops"):
        select_backend("keops", 10, 10, torch.device("cpu"))
    # "auto" is defined as dense when KeOps is absent, even for large problems.
    assert select_backend("auto", 10**6, 10**6, torch.device("cpu")) == "dense"


def test_auto_backend_by_size(monkeypatch):
    monkeypatch.setattr(kernels, "keops_available", lambda: True)
    cpu = torch.device("cpu")
    assert select_backend("auto", 1000, 1000, cpu) == "dense"
    assert select_backend("auto", 20_000, 20_000, cpu) == "keops"
    assert select_backend("dense", 20_000, 20_000, cpu) == "dense"


# --- issue 13: scales and bandwidths at the ends of the float range ---------------------------


@pytest.mark.parametrize("bandwidth", [1e-300, 1e-155, 1e155, 1e300])
def test_bandwidth_whose_square_is_not_a_normal_float_is_refused(bandwidth):
    # Before: h = 1e-300 raised ZeroDivisionError (h^2 = 0) and 1e300 OverflowError.
    with pytest.raises(ValueError, match=r"^`bandwidth` must be between 1.5e-154 and 6.7e\+153"):
        Kernel("gaussian", bandwidth)
    for h in (1.5e-154, 6.7e153):  # the ends are usable: finite kernel values
        d2 = torch.tensor([0.0, h * h], dtype=torch.float64)
        assert torch.isfinite(Kernel("gaussian", h)(d2)).all()


@pytest.mark.parametrize("scale", [1e-150, 1e-20, 3.0, 1e150])
def test_median_bandwidth_scales_with_the_data(scale):
    # The median distance of a x is a times that of x. Before, squared distances of the raw
    # data lost digits below about 1e-154 (subnormal squares) and the median was inf at 1e160;
    # now it is exact down to 2^-510 and a clear error beyond the kernels' range.
    x = torch.tensor(np.random.default_rng(0).normal(size=(30, 2)))
    assert median_bandwidth(x * scale) == pytest.approx(median_bandwidth(x) * scale, rel=1e-14)
    # A power of two changes only exponents: bit-identical.
    assert median_bandwidth(x * 2.0**-510) == median_bandwidth(x) * 2.0**-510
    with pytest.raises(ValueError, match=r"^`bandwidth`='median' must resolve to a value betw"):
        median_bandwidth(x * 1e160)


def test_power_of_two_scale_is_the_power_of_two_nearest_the_rms():
    # RMS of [3, 4] = sqrt(12.5) = 3.54: log2 = 1.82, so 4; unit-spread data get exactly 1.
    assert power_of_two_scale(
        torch.tensor([3.0, -4.0], dtype=torch.float64) * 1e300
    ) == 2.0 ** round(math.log2(math.sqrt(12.5) * 1e300))
    assert power_of_two_scale(torch.tensor([1.2, -0.9], dtype=torch.float64)) == 1.0
    assert power_of_two_scale(torch.zeros(3)) == 1.0
