"""Random number handling: one seed drives NumPy and torch, and no global RNG is touched.

Front doors accept ``rng`` as None, an int, a :class:`numpy.random.SeedSequence` or a
:class:`numpy.random.Generator` (SciPy SPEC 7) and call :func:`check_rng` once. Torch
randomness comes from a :class:`torch.Generator` seeded from that Generator.
"""

from __future__ import annotations

import contextlib
import numbers
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

__all__ = ["check_rng", "fork_torch_rng", "torch_generator", "torch_seed"]

RngLike = None | int | np.integer | np.random.SeedSequence | np.random.Generator
#: Held while a block runs on torch's seeded global RNG: two threads inside such blocks at
#: once would draw from each other's seeds (e.g. critics initialised in a thread pool).
_GLOBAL_RNG_LOCK = threading.RLock()


def check_rng(rng: Any) -> np.random.Generator:
    """Return a NumPy Generator from ``rng`` (None, int, SeedSequence or Generator).

    Raises
    ------
    TypeError
        If ``rng`` is of another type (``np.random.RandomState`` included: it shares
        global state patterns that results here must not depend on).
    ValueError
        If ``rng`` is a negative integer.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, np.random.SeedSequence):
        return np.random.default_rng(rng)
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        if rng < 0:
            raise ValueError(f"`rng` must be a non-negative integer seed; got {rng!r}.")
        return np.random.default_rng(int(rng))
    raise TypeError(
        "`rng` must be None, an int, a numpy.random.SeedSequence or a numpy.random.Generator; "
        f"got {type(rng).__name__}."
    )


def torch_seed(rng: np.random.Generator) -> int:
    """Draw a 63-bit seed for torch from ``rng`` (advances ``rng``)."""
    return int(rng.integers(0, 2**63 - 1))


def torch_generator(rng: Any, device: torch.device | str | None = None) -> torch.Generator:
    """Return a :class:`torch.Generator` on ``device`` seeded from ``rng``."""
    gen = torch.Generator(device=torch.device("cpu") if device is None else torch.device(device))
    gen.manual_seed(torch_seed(check_rng(rng)))
    return gen


@contextlib.contextmanager
def fork_torch_rng(rng: Any, device: torch.device | str | None = None) -> Iterator[None]:
    """Run a block (e.g. network initialisation) under torch's RNG seeded from ``rng``.

    The global torch RNG state is saved and restored, so callers' streams are unchanged.
    Threads run these blocks one at a time, so each draws from its own seed only.
    """
    devices = []
    if device is not None and torch.device(device).type == "cuda":
        devices = [torch.device(device)]
    with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=devices):
        torch.manual_seed(torch_seed(check_rng(rng)))
        yield
