"""Seeding: one int gives bit-identical results and no global RNG is touched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ratiokit as rk
from ratiokit._rng import check_rng, fork_torch_rng, torch_generator


def test_check_rng_accepts_spec7_inputs():
    gen = np.random.default_rng(3)
    assert check_rng(gen) is gen
    a = check_rng(7).random(4)
    b = check_rng(np.random.SeedSequence(7)).random(4)
    np.testing.assert_array_equal(a, b)
    assert isinstance(check_rng(None), np.random.Generator)
    assert check_rng(np.int64(7)).random() == check_rng(7).random()


def test_torch_generator_is_reproducible_and_independent_of_global_state():
    before = torch.random.get_rng_state()
    a = torch.randn(5, generator=torch_generator(11))
    torch.manual_seed(123)  # changing the global stream must not matter
    b = torch.randn(5, generator=torch_generator(11))
    assert torch.equal(a, b)
    assert not torch.equal(a, torch.randn(5, generator=torch_generator(12)))
    torch.random.set_rng_state(before)


def test_fork_torch_rng_restores_global_state():
    state = torch.random.get_rng_state()
    with fork_torch_rng(5):
        first = torch.randn(3)
    assert torch.equal(torch.random.get_rng_state(), state)
    with fork_torch_rng(5):
        assert torch.equal(torch.randn(3), first)


def test_fork_torch_rng_is_thread_safe():
    # Threads seeding torch's one global RNG at once drew from each other's seeds (17 of
    # 200 initialisations differed from the serial ones before the lock): each block must
    # see its own seed whatever the interleaving.
    from concurrent.futures import ThreadPoolExecutor

    def draw(seed):
        with fork_torch_rng(seed):
            return torch.randn(256, 256)

    serial = [draw(seed) for seed in range(200)]
    with ThreadPoolExecutor(8) as pool:
        threaded = list(pool.map(draw, range(200)))
    assert all(torch.equal(a, b) for a, b in zip(serial, threaded, strict=True))


@pytest.mark.parametrize("method", ["mmd", "energy"])
def test_same_int_rng_gives_bit_identical_results(method):
    # 1500 pooled points > 1000: the median bandwidth uses an rng-drawn subsample.
    gen = np.random.default_rng(0)
    x, y = gen.normal(size=(800, 2)), gen.normal(0.3, 1.0, size=(700, 2))
    assert rk.discrepancy(x, y, method=method, rng=5) == rk.discrepancy(x, y, method=method, rng=5)


def test_different_seeds_change_the_median_subsample():
    gen = np.random.default_rng(1)
    x, y = gen.normal(size=(800, 2)), gen.normal(0.3, 1.0, size=(700, 2))
    assert rk.discrepancy(x, y, rng=1) != rk.discrepancy(x, y, rng=2)
