"""ratiokit: likelihood-free density-ratio estimation.

Estimate how two samples differ, as a density ratio ``p/q`` or a difference ``p - q``,
test whether they come from one distribution, and fit simulators by driving that
difference to zero. Never imports pykeops or matplotlib at import time.
"""

from ratiokit import simulators
from ratiokit.benchmark import benchmark
from ratiokit.fitting import ConvergenceWarning, fit
from ratiokit.kernels import Kernel
from ratiokit.methods import (
    METHODS,
    MMD,
    Classifier,
    Discrepancy,
    EnergyDistance,
    FDivergence,
    KernelMeanMatching,
    MomentMatching,
    NeuralBregman,
    get_method,
)
from ratiokit.ratio import RatioEstimator, discrepancy, divergence, estimate_ratio
from ratiokit.results import DivergenceResult, FitResult, RatioDiagnostics, TwoSampleTestResult
from ratiokit.two_sample import two_sample_test

__version__ = "0.1.0.dev0"

__all__ = [
    "METHODS",
    "MMD",
    "Classifier",
    "ConvergenceWarning",
    "Discrepancy",
    "DivergenceResult",
    "EnergyDistance",
    "FDivergence",
    "FitResult",
    "Kernel",
    "KernelMeanMatching",
    "MomentMatching",
    "NeuralBregman",
    "RatioDiagnostics",
    "RatioEstimator",
    "TwoSampleTestResult",
    "__version__",
    "benchmark",
    "discrepancy",
    "divergence",
    "estimate_ratio",
    "fit",
    "get_method",
    "simulators",
    "two_sample_test",
]
