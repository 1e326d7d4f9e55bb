"""Importing and compiling KeOps safely when several processes share one cache folder.

pykeops keeps two kinds of shared state in its cache folder, and guards neither:

- each formula's C++ source and compiled module, written and compiled in place;
- pickled indexes of known formulas (``get_keops_dll_cache.pkl``,
  ``LoadKeOps_cpp_cache.pkl``), read when ``pykeops.torch`` is imported and rewritten in
  place (truncate, then write) by an ``atexit`` hook of every process that used KeOps.

So a process that imports pykeops while another exits can read a half-written index, and two
processes compiling one formula can load each other's half-written files. ratiokit takes one
exclusive file lock (``.ratiokit.lock`` in the KeOps cache folder) around the import, around
each first use of a formula (:func:`ratiokit.kernels.kernel_sum` warms it up under the lock),
and around the exit-time index writes, which it also makes atomic (temporary file, then
``os.replace``).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.metadata
import os
import sys
from collections.abc import Iterator
from typing import Any

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["cache_lock", "keops_available"]

#: Whether this process has imported pykeops under the lock (None: not tried yet).
_IMPORTED: bool | None = None


def _cache_folder() -> str:
    """KeOps' cache folder, found as keopscore finds it, without importing it."""
    folder = os.environ.get("KEOPS_CACHE_FOLDER")
    if folder is None:
        version = importlib.metadata.version("keopscore")
        folder = os.path.join(os.path.expanduser("~"), ".cache", f"keops{version}")
    return folder


@contextlib.contextmanager
def cache_lock() -> Iterator[None]:
    """Hold the exclusive inter-process lock on the KeOps cache folder."""
    folder = _cache_folder()
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, ".ratiokit.lock"), "a") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _save_atomically(cache: Any) -> None:
    """Run a pykeops index's own ``save_cache`` under the lock, into a file then renamed."""
    final = cache.cache_file
    cache.cache_file = f"{final}.{os.getpid()}.tmp"
    try:
        with cache_lock():
            cache.save_cache()
            os.replace(cache.cache_file, final)
    finally:
        cache.cache_file = final


def _guard_index_writes() -> None:
    """Replace pykeops' exit-time index writes by locked, atomic ones."""
    indexes = (
        ("keopscore.get_keops_dll", "get_keops_dll"),
        ("pykeops.common.keops_io.LoadKeOps_cpp", "LoadKeOps_cpp"),
        ("pykeops.common.keops_io.LoadKeOps_nvrtc", "LoadKeOps_nvrtc"),  # GPU builds only
    )
    for module, name in indexes:
        cache = getattr(sys.modules.get(module), name, None)
        if getattr(cache, "use_cache_file", False):
            atexit.unregister(cache.save_cache)
            atexit.register(_save_atomically, cache)


def keops_available() -> bool:
    """True when pykeops imports (it is imported lazily, never at ratiokit import).

    The first call imports it under :func:`cache_lock`, so its on-disk indexes are never
    read while another process writes them.
    """
    global _IMPORTED
    if _IMPORTED is None:
        try:
            with cache_lock():
                import pykeops.torch  # noqa: F401

                _guard_index_writes()
        except (ImportError, importlib.metadata.PackageNotFoundError):
            _IMPORTED = False
        else:
            _IMPORTED = True
    return _IMPORTED
