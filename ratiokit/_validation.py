"""The one input check and error template.

Every front door calls these before doing any work. Messages follow one template:
"`name` must be <constraint>; got <what was found>."
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "as_sample",
    "as_sample_pair",
    "check_choice",
    "check_device",
    "check_int",
    "check_positive",
    "is_tensor",
]


def is_tensor(x: Any) -> bool:
    """Return True when ``x`` is a torch tensor (outputs then stay tensors)."""
    return isinstance(x, torch.Tensor)


def check_unmasked(x: Any, name: str) -> None:
    """Raise if ``x`` is a masked array that hides entries (converting it would unmask them).

    A masked array with nothing masked is accepted as its data.

    Raises
    ------
    ValueError
        If some entry of ``x`` is masked.
    """
    if isinstance(x, np.ma.MaskedArray) and np.ma.is_masked(x):
        mask = np.ma.getmaskarray(x)
        rows = int(mask.reshape(mask.shape[0], -1).any(axis=1).sum()) if mask.ndim else 1
        raise ValueError(
            f"`{name}` must be a plain array without masked entries (a mask would be ignored); "
            f"got a masked array with {int(mask.sum())} masked entries in {rows} rows. "
            "Drop those rows or fill them first."
        )


def column_names(x: Any) -> list[Any] | None:
    """The column names of a data frame (anything with a ``columns`` of str or int), else None."""
    if isinstance(x, np.ndarray | torch.Tensor):
        return None
    columns = getattr(x, "columns", None)
    if columns is None:
        return None
    names = list(columns)
    return names if all(isinstance(c, str | numbers.Integral) for c in names) else None


def _to_tensor(x: Any, name: str, dtype: torch.dtype | None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        if x.is_complex() or x.dtype == torch.bool:
            raise TypeError(f"`{name}` must hold real numbers; got dtype {x.dtype}.")
        if not x.is_floating_point():
            x = x.to(torch.get_default_dtype() if dtype is None else dtype)
        elif x.dtype in (torch.float16, torch.bfloat16) and dtype is None:
            x = x.float()  # few kernels (cdist, linalg) take half precisions
        return x if dtype is None else x.to(dtype)
    check_unmasked(x, name)
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as err:  # ragged nested sequences
        raise ValueError(f"`{name}` must be a rectangular array of numbers; got {err}.") from err
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"`{name}` must be an array of real numbers; got an array of dtype {arr.dtype}."
        )
    if arr.dtype.kind != "f" or arr.dtype == np.float16:
        arr = arr.astype(np.float64)
    if any(stride < 0 for stride in arr.strides):  # e.g. x[:, ::-1]; torch takes none
        arr = arr.copy()
    return torch.as_tensor(arr, dtype=dtype)


def as_sample(
    x: Any,
    name: str,
    *,
    min_samples: int = 2,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Validate one sample and return it as a 2-D floating tensor of shape (n, d).

    A 1-D input is read as n samples of one feature. NumPy float32 stays float32; other
    numeric NumPy input becomes float64 (the default on the CPU); torch float16 and bfloat16
    become float32. A tensor keeps its autograd graph: callers that want no gradient detach.

    Raises
    ------
    TypeError
        If ``x`` is not numeric.
    ValueError
        If ``x`` is not 1-D or 2-D, has fewer than ``min_samples`` rows, no features, or
        holds NaN or infinite values; if it is a masked array with masked entries; if
        ``device`` is not an available device (see :func:`check_device`).
    """
    device = check_device(device)
    t = _to_tensor(x, name, dtype)
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2:
        raise ValueError(
            f"`{name}` must be a 2-D array of shape (n_samples, n_features); "
            f"got shape {tuple(t.shape)}."
        )
    if t.shape[1] == 0:
        raise ValueError(f"`{name}` must have at least one feature; got shape {tuple(t.shape)}.")
    if t.shape[0] < min_samples:
        raise ValueError(f"`{name}` must have at least {min_samples} samples; got {t.shape[0]}.")
    if not bool(torch.isfinite(t).all()):
        n_bad = int((~torch.isfinite(t)).any(dim=1).sum())
        raise ValueError(
            f"`{name}` must hold finite values; got NaN or inf in {n_bad} of {t.shape[0]} rows."
        )
    if device is not None:
        t = t.to(device)
    return t


def as_sample_pair(
    x_p: Any,
    x_q: Any,
    names: tuple[str, str] = ("x_p", "x_q"),
    *,
    min_samples: int = 2,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate two samples of one feature space; they are cast to their common dtype.

    Columns are matched by position. Two data frames (objects with ``columns``) must
    therefore have the same column names in the same order: a pair that differs is refused,
    never compared column by column under different names.

    Raises
    ------
    ValueError
        If either sample is invalid (see :func:`as_sample`), their feature counts differ, or
        they are data frames whose column names differ in name or order.
    """
    device = check_device(device)
    cols = column_names(x_p), column_names(x_q)
    if None not in cols and cols[0] != cols[1]:
        raise ValueError(
            f"`{names[0]}` and `{names[1]}` must have the same columns in the same order; "
            f"got {cols[0]} and {cols[1]}. Select the columns of one in the order of the "
            "other, e.g. x_q[list(x_p.columns)]."
        )
    a = as_sample(x_p, names[0], min_samples=min_samples, dtype=dtype, device=device)
    b = as_sample(x_q, names[1], min_samples=min_samples, dtype=dtype, device=device)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"`{names[0]}` and `{names[1]}` must have the same number of features; "
            f"got {a.shape[1]} and {b.shape[1]}."
        )
    if a.device != b.device:
        raise ValueError(
            f"`{names[0]}` and `{names[1]}` must be on the same device; "
            f"got {a.device} and {b.device}."
        )
    common = torch.promote_types(a.dtype, b.dtype)
    return a.to(common), b.to(common)


def check_device(device: Any, name: str = "device") -> torch.device | None:
    """Return ``device`` as a :class:`torch.device` after checking that it is available here.

    None stays None (compute where the inputs are).

    Raises
    ------
    TypeError
        If ``device`` is not None, a string, an int or a :class:`torch.device`.
    ValueError
        If it names no device type, or a CUDA or MPS device that this machine lacks.
    """
    if device is None:
        return None
    if isinstance(device, bool) or not isinstance(device, str | numbers.Integral | torch.device):
        raise TypeError(
            f"`{name}` must be a torch device such as 'cpu' or 'cuda'; got {device!r}."
        )
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"`{name}` must be a torch device such as 'cpu' or 'cuda'; got {device!r}."
        ) from err
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (dev.index or 0) >= count:
            raise ValueError(
                f"`{name}` must be an available device; got {str(dev)!r}, but this machine has "
                f"{count} CUDA device(s) (torch.cuda.is_available() is "
                f"{torch.cuda.is_available()}). Pass device=None or 'cpu'."
            )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"`{name}` must be an available device; got {str(dev)!r}, but "
            "torch.backends.mps.is_available() is False. Pass device=None or 'cpu'."
        )
    return dev


def check_int(value: Any, name: str, *, minimum: int | None = None) -> int:
    """Return ``value`` as an int after checking its type and lower bound."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer; got {value!r}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}; got {value!r}.")
    return int(value)


def check_positive(value: Any, name: str) -> float:
    """Return ``value`` as a float after checking it is a finite positive real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a positive real number; got {value!r}.")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"`{name}` must be a positive real number; got {value!r}.")
    return float(value)


def check_choice(value: Any, name: str, options: Sequence[str]) -> str:
    """Return ``value`` after checking it is one of ``options``."""
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"`{name}` must be one of {sorted(options)}; got {value!r}.")
    return value
