"""ratiokit: likelihood-free density-ratio estimation.

Estimate how two samples differ, as a density ratio ``p/q`` or a difference ``p - q``,
test whether they come from one distribution, and fit simulators by driving that
difference to zero. Never imports pykeops or matplotlib at import time, and imports torch
only when a name below is first used (PEP 562), so ``ratiokit --version`` answers at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ratiokit import simulators, tasks
    from ratiokit.benchmarking import benchmark
    from ratiokit.calibration import c2st, expected_coverage, sbc
    from ratiokit.config import SearchConfig, TrainConfig
    from ratiokit.exceptions import (
        ConvergenceWarning,
        ExecutorError,
        NonFiniteLossError,
        NonFiniteStatisticError,
    )
    from ratiokit.fitted import FittedSimulator
    from ratiokit.fitting import fit
    from ratiokit.inference import Posterior, PosteriorSamples, infer
    from ratiokit.information import mutual_information
    from ratiokit.kernels import Kernel
    from ratiokit.methods import (
        KLIEP,
        METHODS,
        MMD,
        ULSIF,
        Classifier,
        DeepKernelMMD,
        Discrepancy,
        EnergyDistance,
        FDivergence,
        KernelMeanMatching,
        MMDAgg,
        MomentMatching,
        NeuralBregman,
        OptimizedMMD,
        RandomFeatureMMD,
        RuLSIF,
        Wasserstein,
        get_method,
    )
    from ratiokit.priors import BoxUniform
    from ratiokit.ratio import RatioEstimator, discrepancy, divergence, estimate_ratio
    from ratiokit.results import (
        C2STResult,
        ConfidenceInterval,
        DivergenceResult,
        FitResult,
        MutualInformationResult,
        RatioDiagnostics,
        TrainHistory,
        TwoSampleTestResult,
    )
    from ratiokit.training import TrainOutcome, train
    from ratiokit.two_sample import two_sample_test

__version__ = "0.1.0.dev0"

#: Public name -> the module that defines it, imported on first use.
_SOURCES = {
    "benchmark": "ratiokit.benchmarking",
    **dict.fromkeys(["SearchConfig", "TrainConfig"], "ratiokit.config"),
    **dict.fromkeys(
        ["ConvergenceWarning", "ExecutorError", "NonFiniteLossError", "NonFiniteStatisticError"],
        "ratiokit.exceptions",
    ),
    "fit": "ratiokit.fitting",
    "FittedSimulator": "ratiokit.fitted",
    "Kernel": "ratiokit.kernels",
    **dict.fromkeys(
        [
            "METHODS",
            "MMD",
            "Classifier",
            "Discrepancy",
            "EnergyDistance",
            "FDivergence",
            "KernelMeanMatching",
            "MomentMatching",
            "NeuralBregman",
            "get_method",
        ],
        "ratiokit.methods",
    ),
    **dict.fromkeys(
        ["RatioEstimator", "discrepancy", "divergence", "estimate_ratio"], "ratiokit.ratio"
    ),
    **dict.fromkeys(
        [
            "ConfidenceInterval",
            "DivergenceResult",
            "FitResult",
            "RatioDiagnostics",
            "TrainHistory",
            "TwoSampleTestResult",
        ],
        "ratiokit.results",
    ),
    **dict.fromkeys(["TrainOutcome", "train"], "ratiokit.training"),
    "two_sample_test": "ratiokit.two_sample",
    # The other registered method classes (every class of METHODS is public).
    **dict.fromkeys(
        [
            "DeepKernelMMD",
            "KLIEP",
            "MMDAgg",
            "OptimizedMMD",
            "RandomFeatureMMD",
            "RuLSIF",
            "ULSIF",
        ],
        "ratiokit.methods",
    ),
    # Mutual information.
    "mutual_information": "ratiokit.information",
    "MutualInformationResult": "ratiokit.results",
    # Simulation-based inference.
    **dict.fromkeys(["Posterior", "PosteriorSamples", "infer"], "ratiokit.inference"),
    "BoxUniform": "ratiokit.priors",
    # The Wasserstein-1 distance.
    "Wasserstein": "ratiokit.methods",
    # Calibration of posteriors.
    **dict.fromkeys(["expected_coverage", "sbc"], "ratiokit.calibration"),
    **dict.fromkeys(["CoverageResult", "SBCResult"], "ratiokit.results"),
    # The classifier two-sample test of posterior samples.
    "c2st": "ratiokit.calibration",
    "C2STResult": "ratiokit.results",
}

__all__ = [
    "METHODS",
    "MMD",
    "Classifier",
    "ConfidenceInterval",
    "ConvergenceWarning",
    "Discrepancy",
    "DivergenceResult",
    "EnergyDistance",
    "ExecutorError",
    "FDivergence",
    "FitResult",
    "FittedSimulator",
    "Kernel",
    "KernelMeanMatching",
    "MomentMatching",
    "NeuralBregman",
    "NonFiniteLossError",
    "NonFiniteStatisticError",
    "RatioDiagnostics",
    "RatioEstimator",
    "SearchConfig",
    "TrainConfig",
    "TrainHistory",
    "TrainOutcome",
    "TwoSampleTestResult",
    "__version__",
    "benchmark",
    "discrepancy",
    "divergence",
    "estimate_ratio",
    "fit",
    "get_method",
    "simulators",
    "train",
    "two_sample_test",
    # the other registered method classes
    "DeepKernelMMD",
    "KLIEP",
    "MMDAgg",
    "OptimizedMMD",
    "RandomFeatureMMD",
    "RuLSIF",
    "ULSIF",
    # mutual information
    "MutualInformationResult",
    "mutual_information",
    # simulation-based inference
    "BoxUniform",
    "Posterior",
    "PosteriorSamples",
    "infer",
    # The Wasserstein-1 distance.
    "Wasserstein",
    # Calibration of posteriors.
    "CoverageResult",
    "SBCResult",
    "expected_coverage",
    "sbc",
    # Benchmark tasks with known posteriors, and the classifier two-sample test.
    "tasks",
    "C2STResult",
    "c2st",
]


def __getattr__(name: str) -> Any:
    """Import a public name, or a submodule (``ratiokit.kernels``), on first use."""
    if name in _SOURCES:
        value = getattr(importlib.import_module(_SOURCES[name]), name)
    elif name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    else:
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
