"""The method registry: every method is a :class:`Discrepancy`, looked up by name.

Adding a method is one file in this package, one line in :data:`METHODS`, and its tests;
the contract test in ``tests/test_common.py`` runs over every entry.
"""

from __future__ import annotations

import copy

from ratiokit.methods._base import Discrepancy
from ratiokit.methods.bregman import NeuralBregman
from ratiokit.methods.classifier import Classifier
from ratiokit.methods.fdiv import FDivergence
from ratiokit.methods.kliep import KLIEP
from ratiokit.methods.kmm import KernelMeanMatching
from ratiokit.methods.mmd import MMD, EnergyDistance
from ratiokit.methods.moments import MomentMatching
from ratiokit.methods.ulsif import ULSIF, RuLSIF

__all__ = [
    "METHODS",
    "MMD",
    "Classifier",
    "Discrepancy",
    "EnergyDistance",
    "FDivergence",
    "KLIEP",
    "KernelMeanMatching",
    "MomentMatching",
    "NeuralBregman",
    "RuLSIF",
    "ULSIF",
    "get_method",
]

METHODS: dict[str, type[Discrepancy]] = {
    "bregman": NeuralBregman,
    "classifier": Classifier,
    "energy": EnergyDistance,
    "fdiv": FDivergence,
    "kliep": KLIEP,
    "kmm": KernelMeanMatching,
    "mmd": MMD,
    "moments": MomentMatching,
    "rulsif": RuLSIF,
    "ulsif": ULSIF,
}


def get_method(method: str | Discrepancy) -> Discrepancy:
    """Return a fresh method for a registry name, or a deep copy of a given instance.

    Front doors call this so a user's method object is never mutated.

    Raises
    ------
    ValueError
        If ``method`` is a name that is not registered.
    TypeError
        If ``method`` is neither a string nor a :class:`Discrepancy`.

    Examples
    --------
    >>> get_method("mmd")
    MMD(kernel='gaussian', bandwidth='median', estimator='unbiased', backend='auto')
    """
    if isinstance(method, Discrepancy):
        return copy.deepcopy(method)
    if isinstance(method, str):
        if method not in METHODS:
            raise ValueError(
                f"`method` must be one of {sorted(METHODS)} or a Discrepancy; got {method!r}."
            )
        return METHODS[method]()
    raise TypeError(
        f"`method` must be a method name or a Discrepancy instance; got {type(method).__name__}."
    )
