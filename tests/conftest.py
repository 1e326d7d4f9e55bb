"""Shared fixtures: a seeded torch RNG per test, --device, and markers for optional backends."""

from __future__ import annotations

import pytest
import torch

from ratiokit.kernels import keops_available


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default="cpu", help="torch device for device-aware tests")


def pytest_configure(config: pytest.Config) -> None:
    # Small networks and kernel tiles: on a shared 2-core machine one thread is both faster
    # and deterministic in timing (two threads made critic training up to 20x slower).
    torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    no_keops = pytest.mark.skip(reason="pykeops is not installed")
    no_gpu = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "keops" in item.keywords and not keops_available():
            item.add_marker(no_keops)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(no_gpu)


@pytest.fixture(autouse=True)
def _seeded_torch() -> None:
    """Tests never depend on or leak global torch RNG state."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        yield


@pytest.fixture
def device(request: pytest.FixtureRequest) -> torch.device:
    dev = torch.device(request.config.getoption("--device"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return dev
