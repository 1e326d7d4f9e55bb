"""Bounds and positivity as transforms: searches run on unconstrained ``u``, simulators get
``theta`` inside its box.

Per coordinate, by which bounds are finite:

- none: ``theta = u``;
- lower only: ``theta = low + exp(u)`` (positivity when ``low = 0``);
- upper only: ``theta = high - exp(u)``;
- both: ``theta = low + (high - low) sigmoid(u)``.

The same maps exist in NumPy (gradient-free search) and torch (:class:`ThetaModule`, the
parameter module trained by gradient descent), so both kinds of fit share one definition.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy import special
from torch import nn

__all__ = ["BoxTransform", "ThetaModule", "check_bounds", "check_parameters"]

#: Codes of the four transforms.
_FREE, _LOWER, _UPPER, _BOTH = 0, 1, 2, 3


def _bound(value: Any, name: str, default: float) -> float:
    if value is None:
        return default
    try:
        out = float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`{name}` must hold real numbers or None; got {value!r}.") from err
    if math.isnan(out):
        raise ValueError(f"`{name}` must hold real numbers or None; got {value!r}.")
    return out


def check_bounds(bounds: Any, n_params: int, name: str = "bounds") -> np.ndarray:
    """Validate ``bounds`` and return them as a float64 array of shape (n_params, 2).

    ``None`` means no bounds; otherwise one ``(low, high)`` pair per parameter, where a
    ``None`` or infinite entry means unbounded on that side and ``low < high``.

    Raises
    ------
    ValueError
        If the number of pairs is wrong or a pair has ``low >= high``.
    TypeError
        If an entry is not a real number or None.

    Examples
    --------
    >>> check_bounds([(0, None), (None, None)], 2).tolist()
    [[0.0, inf], [-inf, inf]]
    """
    if bounds is None:
        return np.tile([-np.inf, np.inf], (n_params, 1))
    if not isinstance(bounds, Sequence | np.ndarray) or len(bounds) != n_params:
        got = f"{len(bounds)} pairs" if isinstance(bounds, Sequence | np.ndarray) else repr(bounds)
        raise ValueError(
            f"`{name}` must be a sequence of {n_params} (low, high) pairs, one per parameter; "
            f"got {got}."
        )
    out = np.empty((n_params, 2))
    for i, pair in enumerate(bounds):
        if not isinstance(pair, Sequence | np.ndarray) or len(pair) != 2:
            raise ValueError(f"`{name}[{i}]` must be a (low, high) pair; got {pair!r}.")
        low = _bound(pair[0], f"{name}[{i}]", -np.inf)
        high = _bound(pair[1], f"{name}[{i}]", np.inf)
        if not low < high:
            raise ValueError(f"`{name}[{i}]` must have low < high; got {pair!r}.")
        out[i] = low, high
    return out


class BoxTransform:
    """The map ``u -> theta`` from R^k onto the box of ``bounds`` (see the module notes).

    Parameters
    ----------
    bounds : ndarray of shape (k, 2)
        Validated bounds (:func:`check_bounds`).

    Examples
    --------
    >>> t = BoxTransform(np.array([[0.0, np.inf], [0.0, 10.0], [-np.inf, np.inf]]))
    >>> t.to_theta(np.zeros(3)).tolist()  # the centre: exp(0), a midpoint, 0
    [1.0, 5.0, 0.0]
    >>> np.allclose(t.to_theta(t.to_u(np.array([2.0, 7.5, -3.0]))), [2.0, 7.5, -3.0])
    True
    """

    def __init__(self, bounds: np.ndarray) -> None:
        self.bounds = np.asarray(bounds, dtype=np.float64)
        self.low, self.high = self.bounds[:, 0].copy(), self.bounds[:, 1].copy()
        lo_ok, hi_ok = np.isfinite(self.low), np.isfinite(self.high)
        self.codes = np.where(
            lo_ok & hi_ok, _BOTH, np.where(lo_ok, _LOWER, np.where(hi_ok, _UPPER, _FREE))
        )
        # Placeholders where a side is infinite, so the unused branches stay finite.
        self._low = np.where(lo_ok, self.low, 0.0)
        self._high = np.where(hi_ok, self.high, 0.0)

    @property
    def free(self) -> np.ndarray:
        """Boolean mask of the coordinates without bounds (``theta = u``)."""
        return self.codes == _FREE

    @property
    def finite(self) -> bool:
        """Whether every bound is finite (a global search needs a box)."""
        return bool((self.codes == _BOTH).all())

    def to_theta(self, u: np.ndarray) -> np.ndarray:
        """``theta`` (k,) for an unconstrained ``u`` (k,)."""
        u = np.asarray(u, dtype=np.float64)
        with np.errstate(over="ignore"):
            e = np.exp(u)
        width = self._high - self._low
        theta = np.select(
            [self.codes == _LOWER, self.codes == _UPPER, self.codes == _BOTH],
            [self._low + e, self._high - e, self._low + width * special.expit(u)],
            default=u,
        )
        # Rounding can step past a bound (e.g. low + width * 1.0); keep theta in the box.
        return np.clip(theta, self.low, self.high)

    def to_u(self, theta: np.ndarray) -> np.ndarray:
        """``u`` for a ``theta`` strictly inside the box (clipped off the edges by 1e-12)."""
        theta = np.asarray(theta, dtype=np.float64)
        tiny = np.finfo(np.float64).tiny
        width = np.where(self.codes == _BOTH, self._high - self._low, 1.0)
        frac = np.clip((theta - self._low) / width, 1e-12, 1 - 1e-12)
        return np.select(
            [self.codes == _LOWER, self.codes == _UPPER, self.codes == _BOTH],
            [
                np.log(np.maximum(theta - self._low, tiny)),
                np.log(np.maximum(self._high - theta, tiny)),
                special.logit(frac),
            ],
            default=theta,
        )

    def inside(self, theta: np.ndarray) -> bool:
        """Whether ``theta`` lies strictly inside the box (where ``u`` is finite)."""
        return bool(((theta > self.low) & (theta < self.high)).all())

    def to_theta_torch(self, u: torch.Tensor) -> torch.Tensor:
        """The same map in torch, differentiable in ``u``."""
        codes = torch.as_tensor(self.codes, device=u.device)
        low = torch.as_tensor(self._low, dtype=u.dtype, device=u.device)
        high = torch.as_tensor(self._high, dtype=u.dtype, device=u.device)
        # exp only where used: an unused exp(u) may overflow and poison gradients with NaN.
        e = torch.exp(torch.where((codes == _LOWER) | (codes == _UPPER), u, torch.zeros_like(u)))
        return torch.where(
            codes == _LOWER,
            low + e,
            torch.where(
                codes == _UPPER,
                high - e,
                torch.where(codes == _BOTH, low + (high - low) * torch.sigmoid(u), u),
            ),
        )


class ThetaModule(nn.Module):
    """Parameters ``theta`` in a box, held as unconstrained ``u`` for gradient descent.

    Parameters
    ----------
    theta0 : ndarray of shape (k,)
        Starting value, strictly inside the box.
    transform : BoxTransform
        The box.
    dtype : torch.dtype, default=torch.float64

    Examples
    --------
    >>> t = BoxTransform(np.array([[0.0, np.inf]]))
    >>> module = ThetaModule(np.array([2.0]), t)
    >>> module().tolist(), [p.shape for p in module.parameters()]
    ([2.0], [torch.Size([1])])
    """

    def __init__(
        self, theta0: np.ndarray, transform: BoxTransform, dtype: torch.dtype = torch.float64
    ) -> None:
        super().__init__()
        self.transform = transform
        self.u = nn.Parameter(torch.as_tensor(transform.to_u(theta0), dtype=dtype))

    def forward(self) -> torch.Tensor:
        """``theta`` as a tensor of shape (k,), differentiable in ``u``."""
        return self.transform.to_theta_torch(self.u)

    def theta(self) -> np.ndarray:
        """The current ``theta`` as a float64 array (k,)."""
        with torch.no_grad():
            return self().detach().cpu().numpy().astype(np.float64)


def _check_theta0(theta0: Any, k: int | None) -> np.ndarray:
    try:
        arr = np.array(theta0, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`theta0` must be an array of real numbers; got {theta0!r}.") from err
    if k is not None and arr.size != k:
        raise ValueError(f"`theta0` must hold {k} parameters; got {arr.size}.")
    if arr.size == 0 or not np.isfinite(arr).all():
        raise ValueError(f"`theta0` must be a non-empty array of finite numbers; got {theta0!r}.")
    return arr


def _check_names(value: Any) -> tuple[str, ...]:
    try:
        names = tuple(value)
    except TypeError as err:
        raise TypeError(f"`param_names` must be a sequence of str; got {value!r}.") from err
    if isinstance(value, str) or not all(isinstance(name, str) for name in names):
        raise TypeError(f"`param_names` must be a sequence of str; got {value!r}.")
    if len(set(names)) < len(names):
        raise ValueError(f"`param_names` must be a sequence of unique str; got {value!r}.")
    return names


def check_parameters(
    simulator: Any, theta0: Any, bounds: Any, param_names: Any
) -> tuple[np.ndarray, BoxTransform, tuple[str, ...]]:
    """A simulator's parameters: ``(theta0, transform, names)``, each checked.

    The number ``k`` of parameters comes from the simulator's ``param_names``, else
    ``theta0``, else ``bounds`` (the simulator's own ``bounds`` when none are given).
    ``theta0`` defaults to the centre of the box (``u = 0``) and must lie strictly inside
    it; the names are ``param_names``, else the simulator's, else ``theta[i]``.

    Raises
    ------
    TypeError, ValueError
        If ``theta0``, ``bounds`` or ``param_names`` is malformed, they disagree on ``k``,
        or none of them gives ``k`` (the message names the argument).
    """
    given = None if param_names is None else _check_names(param_names)
    names = tuple(getattr(simulator, "param_names", ()) or ())
    known = getattr(simulator, "bounds", None) if bounds is None else bounds
    k = len(names) or None
    k = k if theta0 is None else _check_theta0(theta0, k).size
    k = k or (len(known) if known is not None else None)
    if k is None:
        raise ValueError(
            "`theta0` must be given (or `bounds`) to know how many parameters the simulator "
            "takes; got None."
        )
    transform = BoxTransform(check_bounds(known, k))
    if theta0 is None:
        start = transform.to_theta(np.zeros(k))  # the centre of the box
    else:
        start = _check_theta0(theta0, k)
        if not transform.inside(start):
            raise ValueError(
                f"`theta0` must lie strictly inside `bounds` {transform.bounds.tolist()}; "
                f"got {start.tolist()}."
            )
    if given is not None and len(given) != k:
        raise ValueError(
            f"`param_names` must hold one name per parameter ({k}); got {len(given)}."
        )
    names = names if len(names) == k else tuple(f"theta[{i}]" for i in range(k))
    return start, transform, names if given is None else given
