"""What a fit acts with: a simulator at its fitted parameters, or a trained generator.

:func:`ratiokit.fit` returns a :class:`~ratiokit.results.FitResult`, plain data (numbers,
arrays, settings); its ``fitted`` attribute is a :class:`FittedSimulator`, which holds the
live objects (the simulator's code, or the trained copy of a generator network) and acts:
``simulate(n)`` draws ``x ~ Q_theta_hat``, and ``goodness_of_fit(data)`` tests the data
against fresh simulations. A saved fit is data too: :meth:`FittedSimulator.load` joins the
numbers read from the folder with the simulator's code, which is never saved.
"""

from __future__ import annotations

import copy
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ratiokit._rng import check_rng, torch_generator
from ratiokit._simulation import check_output, format_theta
from ratiokit._validation import as_sample, check_choice, check_int
from ratiokit.config import N_PERMUTATIONS
from ratiokit.results import FitResult, TwoSampleTestResult
from ratiokit.two_sample import two_sample_test

__all__ = ["GOF_WARN_LEVEL", "SIMULATOR_KINDS", "FittedSimulator"]

#: Kinds of simulator: a generator network, a differentiable torch simulator, a NumPy black box.
SIMULATOR_KINDS = ("module", "torch", "numpy")
#: Level at which :meth:`FittedSimulator.goodness_of_fit` warns that the data reject the model.
GOF_WARN_LEVEL = 0.01
#: This package's folder: warnings point at the first caller outside it.
_PACKAGE = str(Path(__file__).resolve().parent)


def _caller_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside ratiokit, seen from the function that
    calls this one (a forwarding method must not move the warning off the user's line)."""
    frame, level = sys._getframe(2), 2
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


@dataclass(frozen=True, eq=False, repr=False)
class FittedSimulator:
    """A simulator at its fitted parameters ``theta_hat``, or a trained generator network.

    It draws ``x ~ Q_theta_hat``: ``simulator(theta_hat, n, rng)`` for a NumPy black box,
    ``simulator(theta_hat, n, generator)`` for a differentiable torch simulator, and
    ``G(z)`` with ``z ~ N(0, I_latent_dim)`` for a generator module ``G``.

    Parameters
    ----------
    simulator : callable or torch.nn.Module
        The simulator (kinds ``"numpy"`` and ``"torch"``), or the trained generator (kind
        ``"module"``; it is used as given, in its current mode).
    kind : {"numpy", "torch", "module"}
        How ``simulator`` is called (see :func:`ratiokit.fit`).
    n_features : int
        ``d``: every simulation must be an array of shape (n, d), or (n,) when d = 1.
    theta : array-like of shape (k,), default=None
        The fitted parameters (kinds ``"numpy"`` and ``"torch"``; None for a module).
    latent_dim : int, default=None
        The generator's noise dimension (kind ``"module"`` only).

    Raises
    ------
    TypeError, ValueError
        If an argument has the wrong type or value for ``kind`` (named).

    Examples
    --------
    >>> from ratiokit.simulators import GaussianLocationScale
    >>> model = FittedSimulator(GaussianLocationScale(), "numpy", 1, theta=[1.0, 2.0])
    >>> model.simulate(3, rng=0).shape
    (3, 1)
    """

    simulator: Any
    kind: str
    n_features: int
    theta: np.ndarray | None = None
    latent_dim: int | None = None

    def __post_init__(self) -> None:
        kind = check_choice(self.kind, "kind", SIMULATOR_KINDS)
        check_int(self.n_features, "n_features", minimum=1)
        if kind == "module":
            if not isinstance(self.simulator, nn.Module):
                raise TypeError(
                    "`simulator` must be a torch.nn.Module for `kind`='module'; got "
                    f"{type(self.simulator).__name__}."
                )
            if self.theta is not None:
                raise ValueError(
                    "`theta` must be None for a generator module (its weights are fitted); "
                    f"got {self.theta!r}."
                )
            check_int(self.latent_dim, "latent_dim", minimum=1)
            return
        if not callable(self.simulator):
            raise TypeError(
                f"`simulator` must be a callable simulator(theta, n, rng); got "
                f"{type(self.simulator).__name__}."
            )
        if self.latent_dim is not None:
            raise ValueError(
                f"`latent_dim` must be None for `kind`={kind!r}; got {self.latent_dim!r}."
            )
        try:
            theta = np.array(self.theta, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"`theta` must be an array of real numbers; got {self.theta!r}."
            ) from err
        if theta.ndim != 1 or theta.size == 0 or not np.isfinite(theta).all():
            raise ValueError(
                f"`theta` must be a non-empty 1-D array of finite numbers; got {self.theta!r}."
            )
        object.__setattr__(self, "theta", theta)

    def __repr__(self) -> str:
        what = (
            f"theta={format_theta(self.theta)}"
            if self.theta is not None
            else f"latent_dim={self.latent_dim}"
        )
        return (
            f"FittedSimulator({type(self.simulator).__name__}, kind={self.kind!r}, "
            f"n_features={self.n_features}, {what})"
        )

    def simulate(self, n: int, *, rng: Any = None) -> np.ndarray:
        """Draw ``n`` points ``x ~ Q_theta_hat``, a float64 array of shape (n, d).

        Parameters
        ----------
        n : int
            Points to draw (>= 1).
        rng : None, int, SeedSequence or Generator, default=None
            An int gives the same points bit for bit on the CPU.

        Returns
        -------
        ndarray of shape (n, n_features)

        Raises
        ------
        ValueError
            If the simulation is not a real array of shape (n, d) or holds NaN or inf (the
            message names the fitted theta).
        """
        n = check_int(n, "n", minimum=1)
        gen = check_rng(rng)
        if self.kind == "module":
            param = next(iter(self.simulator.parameters()))
            z = torch.randn(
                n,
                self.latent_dim,
                generator=torch_generator(gen, param.device),
                dtype=param.dtype,
                device=param.device,
            )
            with torch.no_grad():
                raw = self.simulator(z).detach().cpu().numpy()
            where = "the trained generator"
        elif self.kind == "torch":
            theta = torch.tensor(self.theta, dtype=torch.float64)
            with torch.no_grad():
                raw = self.simulator(theta, n, torch_generator(gen)).detach().cpu().numpy()
            where = f"the fitted theta={format_theta(self.theta)}"
        else:
            raw = self.simulator(self.theta.copy(), n, gen)
            where = f"the fitted theta={format_theta(self.theta)}"
        arr, why, _ = check_output(raw, n, self.n_features, "fail")
        if why is not None:
            raise ValueError(f"the simulator {why} at {where}.")
        return arr

    def goodness_of_fit(
        self,
        data: Any,
        *,
        method: Any = "mmd",
        n_sim: int | None = None,
        n_permutations: int = N_PERMUTATIONS,
        rng: Any = None,
        progress: bool | None = None,
    ) -> TwoSampleTestResult:
        """Two-sample test of H0: P_data = Q_theta_hat, against fresh simulations.

        ``theta_hat`` was chosen to match the data it was fitted to, so under a correct
        model the p-value tends to be larger than a uniform one (the test is conservative);
        a small p-value is evidence that no parameter value reproduces the data.

        Parameters
        ----------
        data : array-like or Tensor of shape (n, d) or (n,)
            The observations.
        method : str or Discrepancy, default="mmd"
            Any method of :func:`ratiokit.two_sample_test`.
        n_sim : int, default=None
            Simulated points (default: as many as the data).
        n_permutations : int, default=N_PERMUTATIONS
            See :data:`ratiokit.config.N_PERMUTATIONS` (999).
        rng : None, int or Generator, default=None
            Seeds the simulations (new random numbers, not the fit's) and the test.
        progress : bool or None, default=None
            The test's progress bar (see :func:`ratiokit.two_sample_test`).

        Returns
        -------
        TwoSampleTestResult

        Warns
        -----
        UserWarning
            If the test rejects the fitted model at the 1% level: the fit may be a local
            minimum, or no parameter value of the simulator reproduces the data.
        """
        n_data = as_sample(data, "data").shape[0]
        sim_rng, test_rng = check_rng(rng).spawn(2)
        y = self.simulate(n_data if n_sim is None else n_sim, rng=sim_rng)
        test = two_sample_test(
            data,
            y,
            method=method,
            n_permutations=n_permutations,
            rng=test_rng,
            progress=progress,
        )
        if test.pvalue <= GOF_WARN_LEVEL:
            warnings.warn(
                f"the goodness-of-fit test rejects the fitted model at the 1% level (p = "
                f"{test.pvalue:.3g}): the search may have stopped at a local minimum (try "
                "`search='global'`), or no parameter value of this simulator reproduces the "
                "data.",
                UserWarning,
                stacklevel=_caller_stacklevel(),
            )
        return test

    @classmethod
    def load(cls, path: Any, *, simulator: Any) -> FittedSimulator:
        """The fitted simulator of a result saved by :meth:`FitResult.save`.

        The folder holds numbers only: ``simulator`` supplies the code. Nothing in the files
        is executed (see :meth:`FitResult.load`).

        Parameters
        ----------
        path : str or path-like
            The folder.
        simulator : callable or torch.nn.Module
            The simulator that was fitted; for a generator module, a module of the same
            architecture, which receives the saved weights (on a copy, in eval mode).

        Returns
        -------
        FittedSimulator

        Raises
        ------
        ValueError
            As :meth:`FitResult.load` and :meth:`FitResult.load_weights`, if the folder
            holds no data, or if ``simulator`` does not have the saved module's architecture.
        """
        result = FitResult.load(path)
        if result.data is None:
            raise ValueError(
                f"`path` must hold the fitted data, whose width the simulations must have; "
                f"got none in {str(path)!r}."
            )
        n_features = result.data.shape[1]
        if result.kind != "module":
            return cls(simulator, result.kind, n_features, theta=result.theta)
        state = FitResult.load_weights(path)
        model = copy.deepcopy(simulator)
        try:
            model.load_state_dict(state)
        except (AttributeError, RuntimeError, TypeError) as err:
            raise ValueError(
                "`simulator` must be a module of the saved model's architecture; got "
                f"{type(simulator).__name__}, which does not take the weights in "
                f"{str(Path(path) / 'model.pt')!r}: {err}"
            ) from err
        model.eval()
        return cls(model, "module", n_features, latent_dim=result.details["latent_dim"])
