"""The method registry: every method is a :class:`Discrepancy`, looked up by name.

Adding a method is one file in this package, one line in :data:`METHODS`, and its tests;
the contract test in ``tests/test_common.py`` runs over every entry. Other names the
literature uses for a method are lines of :data:`ALIASES`.
"""

from __future__ import annotations

import copy
from typing import Any

from ratiokit._permutation import LabelMatrix, Statistics
from ratiokit.methods._base import TEST_FITS, Discrepancy, fits_on_split
from ratiokit.methods.bregman import NeuralBregman
from ratiokit.methods.classifier import Classifier
from ratiokit.methods.fdiv import FDivergence
from ratiokit.methods.kliep import KLIEP
from ratiokit.methods.kmm import KernelMeanMatching
from ratiokit.methods.mmd import MMD, EnergyDistance
from ratiokit.methods.mmd_tests import DeepKernelMMD, MMDAgg, OptimizedMMD, RandomFeatureMMD
from ratiokit.methods.moments import MomentMatching
from ratiokit.methods.ulsif import ULSIF, RuLSIF
from ratiokit.methods.wasserstein import Wasserstein

__all__ = [
    "ALIASES",
    "METHODS",
    "MMD",
    "TEST_FITS",
    "Classifier",
    "DeepKernelMMD",
    "Discrepancy",
    "EnergyDistance",
    "FDivergence",
    "KLIEP",
    "KernelMeanMatching",
    "LabelMatrix",
    "MMDAgg",
    "MomentMatching",
    "NeuralBregman",
    "OptimizedMMD",
    "RandomFeatureMMD",
    "RuLSIF",
    "Statistics",
    "ULSIF",
    "Wasserstein",
    "fits_on_split",
    "get_method",
]

#: The field's other names for registered methods, each resolved to its canonical name by
#: every lookup in :data:`METHODS` (hence by every front door) but never listed: iteration,
#: error messages and results name the canonical method. Only names that mean exactly the
#: method with its defaults: ``"lsif"`` is not ``"ulsif"`` (LSIF keeps the non-negativity
#: constraint that uLSIF drops), and ``"hotelling"`` would be ``MomentMatching`` with other
#: settings, so neither is here.
ALIASES: dict[str, str] = {
    "c2st": "classifier",  # classifier two-sample test (Lopez-Paz and Oquab 2017)
    "energy_distance": "energy",  # the energy distance of Szekely and Rizzo (2004)
}


class _Registry(dict):
    """Method classes by canonical name; a name of :data:`ALIASES` is looked up as its target.

    ``"c2st" in METHODS``, ``METHODS["c2st"]`` and ``METHODS.get("c2st")`` see the alias,
    while iteration (``sorted``, ``items``) and ``len`` see canonical names only.
    """

    def __missing__(self, name: str) -> type[Discrepancy]:
        if isinstance(name, str) and name in ALIASES:
            return self[ALIASES[name]]
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return super().__contains__(name) or (isinstance(name, str) and name in ALIASES)

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self else default


METHODS: dict[str, type[Discrepancy]] = _Registry(
    {
        "bregman": NeuralBregman,
        "classifier": Classifier,
        "energy": EnergyDistance,
        "fdiv": FDivergence,
        "kliep": KLIEP,
        "kmm": KernelMeanMatching,
        "mmd": MMD,
        "mmd_deep": DeepKernelMMD,
        "mmd_opt": OptimizedMMD,
        "mmd_rff": RandomFeatureMMD,
        "mmdagg": MMDAgg,
        "moments": MomentMatching,
        "rulsif": RuLSIF,
        "ulsif": ULSIF,
        "wasserstein": Wasserstein,
    }
)


def get_method(method: str | Discrepancy, *, test: bool = False) -> Discrepancy:
    """Return a fresh method for a registry name, or a deep copy of a given instance.

    Front doors call this so a user's method object is never mutated. A name of
    :data:`ALIASES` gives its canonical method (``"c2st"``: a :class:`Classifier`).

    Parameters
    ----------
    method : str or Discrepancy
        A name of :data:`METHODS` (or :data:`ALIASES`), or an instance.
    test : bool, default=False
        For a name, the instance :func:`ratiokit.two_sample_test` uses
        (:meth:`Discrepancy.for_two_sample_test`) instead of the default one.

    Raises
    ------
    ValueError
        If ``method`` is a name that is neither registered nor an alias (the message lists
        the canonical names).
    TypeError
        If ``method`` is neither a string nor a :class:`Discrepancy`.

    Examples
    --------
    >>> get_method("mmd")
    MMD(kernel='gaussian', bandwidth='median', estimator='unbiased', backend='auto')
    >>> type(get_method("c2st")).__name__
    'Classifier'
    """
    if isinstance(method, Discrepancy):
        return copy.deepcopy(method)
    if isinstance(method, str):
        if method not in METHODS:
            raise ValueError(
                f"`method` must be one of {sorted(METHODS)} or a Discrepancy; got {method!r}."
            )
        cls = METHODS[method]
        return cls.for_two_sample_test() if test else cls()
    raise TypeError(
        f"`method` must be a method name or a Discrepancy instance; got {type(method).__name__}."
    )
