"""The contract every registered method must pass (one parametrized test over METHODS)."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch

from ratiokit._permutation import draw_labels
from ratiokit.methods import METHODS, TEST_FITS, Discrepancy, get_method

NAMES = sorted(METHODS)
#: Smaller settings for methods whose default training takes seconds per fit (the near-zero
#: test fits 31 times); the contract is the same.
SMALL = {
    "mmd_deep": {"hidden": (16,), "max_steps": 30},
    "wasserstein": {"hidden": (16,), "max_steps": 100},
}


def make(name: str) -> Discrepancy:
    """The registry's method for ``name``, with its :data:`SMALL` settings."""
    return get_method(name).set_params(**SMALL.get(name, {}))


def sample(n, d, shift, seed, dtype=torch.float64, device="cpu"):
    gen = np.random.default_rng(seed)
    return torch.tensor(gen.normal(shift, 1.0, size=(n, d)), dtype=dtype, device=device)


def evaluate(method: Discrepancy, x_p, x_q) -> torch.Tensor:
    method = copy.deepcopy(method).fit_critic(x_p, x_q, rng=0)
    return method(x_p, x_q)


def value(method: Discrepancy, x_p, x_q) -> float:
    with torch.no_grad():
        return float(evaluate(method, x_p, x_q))


@pytest.mark.parametrize("name", NAMES)
def test_registry_entry(name):
    method = make(name)
    assert isinstance(method, Discrepancy)
    assert type(method).name == name
    assert get_method(method) is not method  # front doors work on a copy


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_scalar_output_keeps_dtype_and_device(name, dtype, device):
    x_p, x_q = sample(60, 3, 0.5, 1, dtype, device), sample(50, 3, 0.0, 2, dtype, device)
    out = evaluate(make(name), x_p, x_q)
    assert out.shape == ()
    assert out.dtype == dtype and out.device == x_p.device
    assert torch.isfinite(out)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_both_samples(name):
    x_p = sample(40, 2, 0.5, 3).requires_grad_(True)
    x_q = sample(30, 2, 0.0, 4).requires_grad_(True)
    evaluate(make(name), x_p, x_q).backward()
    for x in (x_p, x_q):
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_near_zero_for_one_distribution_and_large_for_two(name):
    # Reference spread: the estimate over 30 random re-splits of one pooled null sample. Under
    # P = Q the observed value is one draw from (about) that distribution, so it lies within
    # 5 spreads of its centre (a ~1e-6 event otherwise, by a normal approximation); a unit
    # mean shift in every coordinate must lie beyond that band.
    method = make(name)
    x_p, x_q = sample(150, 2, 0.0, 5), sample(150, 2, 0.0, 6)
    pooled, gen = torch.cat([x_p, x_q]), np.random.default_rng(7)
    null = []
    for _ in range(30):
        idx = torch.as_tensor(gen.permutation(300))
        null.append(value(method, pooled[idx[:150]], pooled[idx[150:]]))
    centre, spread = np.mean(null), np.std(null, ddof=1)
    assert abs(value(method, x_p, x_q) - centre) < 5 * spread
    assert value(method, x_p, sample(150, 2, 1.0, 8)) > centre + 5 * spread


@pytest.mark.parametrize("name", NAMES)
def test_invariant_to_row_order(name):
    x_p, x_q = sample(70, 2, 0.3, 9), sample(60, 2, 0.0, 10)
    gen = np.random.default_rng(11)
    base = value(make(name), x_p, x_q)
    shuffled = value(
        make(name),
        x_p[torch.as_tensor(gen.permutation(70))],
        x_q[torch.as_tensor(gen.permutation(60))],
    )
    assert shuffled == pytest.approx(base, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_deepcopy_pickle_and_repr(name):
    x_p, x_q = sample(40, 2, 0.5, 12), sample(40, 2, 0.0, 13)
    method = make(name).fit_critic(x_p, x_q, rng=0)
    with torch.no_grad():
        expected = float(method(x_p, x_q))
        for clone in (copy.deepcopy(method), pickle.loads(pickle.dumps(method))):
            assert float(clone(x_p, x_q)) == expected
    text = repr(method)
    assert text.startswith(type(method).__name__ + "(") and "\n" not in text and len(text) < 200


@pytest.mark.parametrize("name", [n for n in NAMES if METHODS[n].has_log_ratio])
def test_log_ratio_shape_and_dtype(name):
    x_p, x_q = sample(40, 2, 0.5, 14), sample(40, 2, 0.0, 15, dtype=torch.float32)
    method = make(name).fit_critic(x_p, x_q.double(), rng=0)
    out = method.log_ratio(x_q.double())
    assert out.shape == (40,) and out.dtype == torch.float64


@pytest.mark.parametrize("name", [n for n in NAMES if not METHODS[n].has_log_ratio])
def test_density_difference_methods_say_they_have_no_ratio(name):
    with pytest.raises(NotImplementedError, match="not a ratio"):
        make(name).log_ratio(sample(5, 2, 0.0, 16))


#: Methods whose null_statistics is a batched form of their own forward (kernel quadratic
#: forms or random features), rather than the default vmap over forward.
BATCHED = ["energy", "kmm", "mmd", "mmd_deep", "mmd_opt", "mmd_rff"]


@pytest.mark.parametrize("name", NAMES)
def test_test_hooks_are_declared(name):
    cls = METHODS[name]
    assert cls.test_fit in TEST_FITS and cls.null in ("permutation", "wild")
    assert isinstance(cls.scale_invariant, bool)
    assert (cls.test_fit == "split") == (cls.learned_critic and name != "moments")


@pytest.mark.parametrize("name", BATCHED)
def test_batched_null_statistics_are_forward_on_every_relabelling(name):
    # Reference: forward on each relabelled split, one call per column (float64 sums in
    # another order: equal to ~1e-13 relative).
    x_p, x_q = sample(12, 2, 0.5, 17), sample(10, 2, 0.0, 18)
    method = make(name).fit_critic(x_p, x_q, rng=0)
    assert type(method).null_statistics is not Discrepancy.null_statistics
    z = torch.cat([x_p, x_q])
    labels = draw_labels(12, 10, 6, np.random.default_rng(19))
    got = method.null_statistics(z, labels, False).values
    with torch.no_grad():
        want = [float(method(z[col], z[~col])) for col in labels.matrix.T]
    assert got == pytest.approx(want, rel=1e-9, abs=1e-12)
