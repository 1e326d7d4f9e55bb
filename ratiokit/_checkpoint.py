"""Training checkpoints: tensors by ``torch.save``, metadata in a JSON sidecar, both verified.

A checkpoint at ``path`` is two files: ``path`` holds state dicts, RNG states and the
history (tensors, plain numbers and strings only), and ``path.json`` holds the step, the
settings, the NumPy RNG state, the SHA-256 of ``path`` and a format tag. The tensor file in
turn holds the SHA-256 of the metadata, so an edit to either file is detected. Each file is
written to a temporary name, flushed to disk and moved into place with :func:`os.replace`,
so a reader sees the old file or the new one, never a partial one. Loading checks the
hashes before anything is unpickled, then reads the tensors with
``torch.load(..., weights_only=True)``, which refuses arbitrary objects.

:func:`check_overwrite` decides whether a run may write its checkpoint at a path: a new
path, or a checkpoint of the same run (``same_run`` says which), or anything with
``overwrite=True``; never silently over a user's file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "FORMAT",
    "atomic_write",
    "check_overwrite",
    "digest",
    "load_checkpoint",
    "load_tensors",
    "save_checkpoint",
    "sidecar",
]

#: Format tag and version in every sidecar (version 2 records the run: data and settings).
FORMAT = {"format": "ratiokit-train-checkpoint", "version": 2}


def sidecar(path: Path) -> Path:
    """The JSON sidecar of the tensor file ``path``: ``path`` with ``.json`` appended."""
    return path.with_name(path.name + ".json")


def digest(data: bytes) -> str:
    """The SHA-256 of ``data``, in hexadecimal."""
    return hashlib.sha256(data).hexdigest()


def _canonical(meta: dict[str, Any]) -> bytes:
    """One byte string per metadata dict (sorted keys, no spaces): what is hashed."""
    return json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()


def atomic_write(path: Path, data: bytes) -> None:
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


def _tagged(path: Path) -> bool:
    """Whether the sidecar of ``path`` carries this format's tag (of any version)."""
    try:
        meta = json.loads(sidecar(path).read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT["format"]


def save_checkpoint(path: Path, tensors: dict[str, Any], meta: dict[str, Any]) -> None:
    """Write a checkpoint: ``tensors`` (state dicts etc.) to ``path``, ``meta`` beside it.

    ``meta`` must be JSON-serialisable; the format tag and the hashes are added here. The
    tensor file is replaced first, then the sidecar: a crash between the two leaves a pair
    whose hashes disagree, which :func:`load_checkpoint` reports.
    """
    meta = {**FORMAT, **meta}
    buffer = io.BytesIO()
    torch.save({**tensors, "meta_sha256": digest(_canonical(meta))}, buffer)
    data = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data)
    atomic_write(sidecar(path), _canonical({**meta, "sha256": digest(data)}))


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
        found = (
            f"version {meta.get('version')!r}, which this ratiokit cannot resume (start "
            "afresh with `resume=False` and `overwrite=True`)"
            if isinstance(meta, dict) and meta.get("format") == FORMAT["format"]
            else "another file"
        )
        raise ValueError(
            f"checkpoint sidecar {str(json_path)!r} must hold a {FORMAT['format']!r} version "
            f"{FORMAT['version']} record; got {found}."
        )
    data = path.read_bytes()
    expected = meta.pop("sha256", None)
    if digest(data) != expected:
        raise ValueError(
            f"checkpoint file {str(path)!r} does not match the SHA-256 recorded in "
            f"{str(json_path)!r}: it was truncated, modified or only partly written. "
            "Delete both files to start again, or restore them from a copy."
        )
    tensors = load_tensors(data, f"checkpoint file {str(path)!r}")
    if not isinstance(tensors, dict) or tensors.pop("meta_sha256", None) != digest(
        _canonical(meta)
    ):
        raise ValueError(
            f"checkpoint sidecar {str(json_path)!r} does not match its tensor file "
            f"{str(path)!r}: one of them was modified."
        )
    return meta, tensors


def load_tensors(data: bytes, what: str) -> Any:
    """``torch.load(data, weights_only=True)`` on the CPU, with one clear error on refusal.

    Raises
    ------
    ValueError
        If ``data`` holds anything but tensors and plain data, or is not a torch file; the
        message names ``what`` and the refused object, without torch's advice to retry
        with ``weights_only=False`` (which would run the file's code).
    """
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile) as err:
        found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\s+Please|\n\n|$)", str(err), re.S)
        why = found.group(1).strip() if found else f"{type(err).__name__}: {err}"
        # Not chained: torch's message advises weights_only=False, unsafe for this file.
        raise ValueError(
            f"{what} holds something other than tensors and plain data and was not loaded "
            f"(weights_only=True refused it: {why}); it was modified or is not a ratiokit file."
        ) from None


def check_overwrite(
    path: Path, overwrite: bool, same_run: Callable[[dict[str, Any]], tuple[str, str] | None]
) -> None:
    """Refuse to write a checkpoint over ``path`` (or its sidecar) unless it is ours.

    Writing is allowed where neither file exists, where ``overwrite`` is True, or where they
    hold an intact checkpoint for which ``same_run(meta)`` returns None (else it returns
    ``(what, detail)``: what differs, as :func:`ratiokit._train_state.run_mismatch` does).

    Raises
    ------
    ValueError
        Naming the path and what is there: another file, a damaged checkpoint or another
        run's.
    """
    if overwrite or not (path.exists() or sidecar(path).exists()):
        return
    try:
        loaded = load_checkpoint(path)
    except (OSError, ValueError) as err:
        why = f"is a damaged ratiokit checkpoint ({err})" if _tagged(path) else "is another file"
    else:
        mismatch = None if loaded is None else same_run(loaded[0])  # None: removed meanwhile
        if mismatch is None:
            return
        why = f"is the checkpoint of another run ({mismatch[0]}: {mismatch[1]})"
    raise ValueError(
        f"`checkpoint` must be a new path or a checkpoint of this run (same method, settings "
        f"and data); got {str(path)!r}, which {why}. Pass `overwrite=True` to replace it or "
        "choose another path."
    )
