"""Training checkpoints: tensors by ``torch.save``, metadata in a JSON sidecar, both verified.

A checkpoint at ``path`` is two files: ``path`` holds state dicts, RNG states and the
history (tensors, plain numbers and strings only), and ``path.json`` holds the step, the
settings, the NumPy RNG state, the SHA-256 of ``path`` and a format tag. The tensor file in
turn holds the SHA-256 of the metadata, so an edit to either file is detected. Each file is
written to a temporary name, flushed to disk and moved into place with :func:`os.replace`,
so a reader sees the old file or the new one, never a partial one. Loading checks the
hashes before anything is unpickled, then reads the tensors with
``torch.load(..., weights_only=True)``, which refuses arbitrary objects.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["FORMAT", "load_checkpoint", "save_checkpoint", "sidecar"]

#: Format tag and version in every sidecar.
FORMAT = {"format": "ratiokit-train-checkpoint", "version": 1}


def sidecar(path: Path) -> Path:
    """The JSON sidecar of the tensor file ``path``: ``path`` with ``.json`` appended."""
    return path.with_name(path.name + ".json")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(meta: dict[str, Any]) -> bytes:
    """One byte string per metadata dict (sorted keys, no spaces): what is hashed."""
    return json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a flushed temporary file and :func:`os.replace`."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_checkpoint(path: Path, tensors: dict[str, Any], meta: dict[str, Any]) -> None:
    """Write a checkpoint: ``tensors`` (state dicts etc.) to ``path``, ``meta`` beside it.

    ``meta`` must be JSON-serialisable; the format tag and the hashes are added here. The
    tensor file is replaced first, then the sidecar: a crash between the two leaves a pair
    whose hashes disagree, which :func:`load_checkpoint` reports.
    """
    meta = {**FORMAT, **meta}
    buffer = io.BytesIO()
    torch.save({**tensors, "meta_sha256": _digest(_canonical(meta))}, buffer)
    data = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, data)
    _atomic_write(sidecar(path), _canonical({**meta, "sha256": _digest(data)}))


def load_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Read and verify the checkpoint at ``path``: ``(meta, tensors)``, or None if absent.

    Tensors are loaded on the CPU.

    Raises
    ------
    ValueError
        If only one of the two files exists, the sidecar is not this format's JSON, the
        tensor file does not match the hash in the sidecar (truncated, modified or partly
        written) or the sidecar does not match the hash in the tensor file, or the tensor
        file holds anything but tensors and plain data (it is never executed).
    """
    json_path = sidecar(path)
    if not path.exists() and not json_path.exists():
        return None
    for missing, other in ((path, json_path), (json_path, path)):
        if not missing.exists():
            raise ValueError(
                f"checkpoint {str(path)!r} is incomplete: {str(other)!r} exists but "
                f"{str(missing)!r} does not; delete the checkpoint to start again."
            )
    try:
        meta = json.loads(json_path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"checkpoint sidecar {str(json_path)!r} is not valid JSON ({err}); it was "
            "truncated or modified."
        ) from err
    if not isinstance(meta, dict) or any(meta.get(k) != v for k, v in FORMAT.items()):
        raise ValueError(
            f"checkpoint sidecar {str(json_path)!r} must hold a {FORMAT['format']!r} version "
            f"{FORMAT['version']} record; got another file."
        )
    data = path.read_bytes()
    expected = meta.pop("sha256", None)
    if _digest(data) != expected:
        raise ValueError(
            f"checkpoint file {str(path)!r} does not match the SHA-256 recorded in "
            f"{str(json_path)!r}: it was truncated, modified or only partly written. "
            "Delete both files to start again, or restore them from a copy."
        )
    try:
        tensors = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(
            f"checkpoint file {str(path)!r} holds something other than tensors and plain "
            f"data and was not loaded (weights_only=True refused it): {err}"
        ) from err
    if not isinstance(tensors, dict) or tensors.pop("meta_sha256", None) != _digest(
        _canonical(meta)
    ):
        raise ValueError(
            f"checkpoint sidecar {str(json_path)!r} does not match its tensor file "
            f"{str(path)!r}: one of them was modified."
        )
    return meta, tensors
