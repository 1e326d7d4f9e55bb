"""Gradient-based fits through the alternating loop of :mod:`ratiokit.training`.

Two kinds of model go through :func:`ratiokit.training.train`:

- ``"module"``: a generator network ``noise -> samples`` (a GAN and its relatives); its
  weights are trained, on a copy of the user's module;
- ``"torch"``: a differentiable simulator ``simulator(theta, n, generator)``; ``theta`` is
  held by a :class:`~ratiokit._transforms.ThetaModule` (bounds and positivity as
  transforms) and descends the method's loss through reparameterised samples.

Minibatch gradients make the iterates wander around the optimum, so the estimate of
``theta`` is the average of the second half of the iterates (Polyak-Ruppert tail
averaging). A run has *converged* when the iterates have stopped moving over that second
half: per series, the least-squares slope over the tail is within ``c`` standard errors of
zero, the standard error corrected for autocorrelation by an AR(1) fit to the detrended
residuals (long-run variance ``gamma_0 (1 + phi) / (1 - phi)``), and ``c`` the two-sided
Bonferroni bound of a 1% family-wise false-alarm rate over the series judged, from Student's
t with the effective sample size less 2 degrees of freedom (the AR(1) fit's error makes the
normal bound too narrow when the series wanders slowly). The series are
theta's coordinates for a simulator and, for a generator network, the mean and standard
deviation of each output feature on a fixed batch of probe noise (its samples, which a
reparameterisation of its weights leaves alone; its losses and weights can drift while its
samples do not, and the reverse). A tail too short to judge (under 10 effective samples: it
wanders as slowly as it is long), a theta coordinate that never moved (a zero gradient: the
loss is flat there) or a non-finite iterate is not converged either.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import stats
from torch import nn

from ratiokit._transforms import BoxTransform, ThetaModule
from ratiokit.config import TrainConfig
from ratiokit.methods import Discrepancy, get_method
from ratiokit.training import train

__all__ = ["TorchOutcome", "fit_torch", "infer_latent_dim", "torch_replicate"]

#: Fraction of the last iterates averaged into the estimate and checked for stationarity.
_TAIL_FRACTION = 0.5
#: Family-wise false-alarm rate of the trend test over the series judged.
_ALPHA = 0.01
#: Fewest effective samples (tail length over the integrated autocorrelation time) for the
#: trend test to judge a series: below it, the AR(1) fit underestimates the standard error.
_MIN_EFFECTIVE = 10
#: Rows of probe noise whose generated samples stand for a generator network's iterates.
_N_PROBE = 256


@dataclass
class TorchOutcome:
    """A finished gradient-based fit."""

    theta: np.ndarray | None
    model: nn.Module | None
    loss: float
    history: dict[str, np.ndarray]
    n_steps: int
    n_simulations: int
    converged: bool
    interrupted: bool
    message: str | None = None


def infer_latent_dim(module: nn.Module) -> int:
    """The noise dimension of a generator: ``module.latent_dim`` or its first layer's width.

    Raises
    ------
    ValueError
        If neither is there (pass ``latent_dim=``).
    """
    value = getattr(module, "latent_dim", None)
    if isinstance(value, int) and value >= 1:
        return value
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            return layer.in_features
    raise ValueError(
        "`latent_dim` must be given for a generator module without a `latent_dim` attribute "
        f"or a first nn.Linear layer; got None for {type(module).__name__}."
    )


def _noise_sampler(model: nn.Module, latent_dim: int) -> Any:
    param = next(iter(model.parameters()))

    def sample(n: int, gen: torch.Generator) -> torch.Tensor:
        z = torch.randn(n, latent_dim, generator=gen, dtype=param.dtype, device=gen.device)
        return model(z)

    return sample


def _probe_summary(model: nn.Module, noise: torch.Tensor) -> np.ndarray:
    """Each output feature's mean and standard deviation on ``noise``, in eval mode."""
    param = next(iter(model.parameters()))
    training = model.training
    model.eval()
    with torch.no_grad():
        x = model(noise.to(param.device, param.dtype))
    model.train(training)
    x = x.reshape(x.shape[0], -1).double()
    return torch.cat([x.mean(0), x.std(0)]).cpu().numpy()


def trend_statistics(tail: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column of ``tail`` (n, p): the slope in standard errors, and the effective size.

    The slope is the least-squares fit on the step index; its standard error uses the
    long-run variance of an AR(1) fitted to the residuals, ``gamma_0 tau`` with
    ``tau = (1 + phi) / (1 - phi)`` (at least 1, so an oscillation never narrows it), and the
    effective sample size is ``n / tau``. A column without residual noise has a slope of
    infinitely many standard errors unless it is flat (0).
    """
    n = tail.shape[0]
    t = np.arange(n) - (n - 1) / 2.0
    sxx = t @ t
    centred = tail - tail.mean(0)
    slope = t @ centred / sxx
    resid = centred - np.outer(t, slope)
    ss = (resid**2).sum(0)
    noisy = ss > 0
    lag1 = (resid[1:] * resid[:-1]).sum(0)
    phi = np.divide(lag1, ss, out=np.zeros_like(ss), where=noisy)
    tau = np.maximum((1.0 + phi) / np.maximum(1.0 - phi, 1e-12), 1.0)
    se = np.sqrt(ss / n * tau / sxx)
    z = np.divide(slope, se, out=np.where(slope == 0, 0.0, np.inf), where=noisy)
    return z, n / tau


def convergence_failure(values: np.ndarray, names: list[str], *, frozen_ok: bool) -> str | None:
    """Why the tail of ``values`` (steps, p) has not stopped moving, or None if it has.

    See the module notes. ``frozen_ok``: a column that does not change over the tail
    is stationary (generator samples); otherwise it means a zero gradient (theta).
    """
    n = int(values.shape[0] * _TAIL_FRACTION)
    if n < _MIN_EFFECTIVE:
        return f"{values.shape[0]} steps are too few to judge"
    tail = values[-n:]
    if not np.isfinite(tail).all():
        return "an iterate is not finite"
    frozen = np.ptp(tail, axis=0) == 0
    if frozen.all() or (frozen.any() and not frozen_ok):
        name = names[int(np.argmax(frozen))]
        return (
            f"{name} did not move over the last {n} steps: the loss's gradient is zero there "
            "(a flat or saturated loss, e.g. simulations far from the data)"
        )
    keep = ~frozen
    z, n_eff = trend_statistics(tail[:, keep])
    kept = [name for name, k in zip(names, keep, strict=True) if k]
    # Drift first: a series that wanders slowly (few effective samples) but still exceeds
    # its wide bound is drifting; one that does not cannot be judged.
    excess = np.abs(z) / stats.t.isf(_ALPHA / (2 * z.size), np.maximum(n_eff - 2, 1))
    worst = int(np.argmax(excess))
    if excess[worst] > 1:
        return (
            f"{kept[worst]} is still drifting: its trend over the last {n} steps is "
            f"{abs(z[worst]):.3g} standard errors"
        )
    slow = int(np.argmin(n_eff))
    if n_eff[slow] < _MIN_EFFECTIVE:
        return (
            f"{kept[slow]} wanders too slowly to judge over the last {n} steps "
            f"({n_eff[slow]:.0f} effective samples)"
        )
    return None


class _Trajectory:
    """theta after each step, saved in the training checkpoint (``extra_state`` of
    :func:`ratiokit.training.train`), so a resumed fit averages the same iterates as an
    uninterrupted one and an edit of them is caught by the checkpoint's hashes."""

    def __init__(self, model: ThetaModule) -> None:
        self.model = model
        self.rows: list[np.ndarray] = []

    def record(self, step: int, info: dict[str, float]) -> None:
        self.rows.append(self.model.theta())

    def state_dict(self) -> dict[str, torch.Tensor]:
        k = self.model.theta().size
        return {"theta": torch.as_tensor(np.asarray(self.rows).reshape(-1, k))}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.rows = list(state["theta"].numpy())


def fit_torch(
    kind: str,
    simulator: Any,
    data: torch.Tensor,
    method: Discrepancy,
    config: TrainConfig,
    theta0: np.ndarray | None,
    transform: BoxTransform | None,
    latent_dim: int | None,
    rng: np.random.Generator,
    checkpoint: Any,
    resume: bool,
    overwrite: bool = False,
    names: tuple[str, ...] = (),
) -> TorchOutcome:
    """Train the model of ``kind`` (``"module"`` or ``"torch"``) on ``data``.

    ``names`` name theta's coordinates in the reason a fit has not converged.
    """
    if kind == "torch":
        model: nn.Module = ThetaModule(theta0, transform)

        def sample(n: int, gen: torch.Generator) -> torch.Tensor:
            return simulator(model(), n, gen)

    else:
        model = copy.deepcopy(simulator)  # never train the user's module
        sample = _noise_sampler(model, latent_dim)
        # Fixed probe noise from its own generator: the training streams are left alone.
        probe = torch.randn(_N_PROBE, latent_dim, generator=torch.Generator().manual_seed(0))
    trajectory = _Trajectory(model) if kind == "torch" else None
    summaries: list[np.ndarray] = []

    def record(step: int, info: dict[str, float]) -> None:
        if trajectory is not None:
            trajectory.record(step, info)
        else:
            summaries.append(_probe_summary(model, probe))

    out = train(
        model,
        sample,
        data,
        method,
        config,
        rng=rng,
        checkpoint=checkpoint,
        resume=resume,
        overwrite=overwrite,
        callback=record,
        extra_state=trajectory,
    )
    hist = out.history
    history = {
        "step": np.asarray(hist.step),
        "loss": np.asarray(hist.model_loss, dtype=np.float64),
        "critic_loss": np.asarray(hist.critic_loss, dtype=np.float64),
        "wall_time": np.asarray(hist.wall_time, dtype=np.float64),
    }
    n_steps = out.n_steps
    tail = max(1, int(_TAIL_FRACTION * len(hist)))
    loss = float(np.nanmean(history["loss"][-tail:])) if len(hist) else float("nan")
    trained_critic = any(p.requires_grad for p in out.method.parameters())
    critic_rounds = config.critic_steps if trained_critic else 0
    n_simulations = config.batch_size * (1 + n_steps * (1 + critic_rounds))
    if trajectory is not None:
        thetas = np.asarray(trajectory.rows).reshape(-1, theta0.size)
        history["theta"] = thetas
        recent = thetas[-tail:]
        finite = recent[np.isfinite(recent).all(1)]
        theta = finite.mean(0) if finite.shape[0] else model.theta()
        labels = (
            list(names)
            if len(names) == theta0.size
            else [f"theta[{i}]" for i in range(theta0.size)]
        )
        why = convergence_failure(thetas, labels, frozen_ok=False)
        trained = None
    else:
        trained = out.ema_model if out.ema_model is not None else out.model
        trained.eval()
        # Steps before a resume have no probe summaries: the tail of this run's steps is
        # judged.
        values = np.asarray(summaries).reshape(len(summaries), -1)
        d = values.shape[1] // 2
        labels = [
            f"the samples' {stat} of feature {j}" for stat in ("mean", "sd") for j in range(d)
        ]
        why = convergence_failure(values, labels, frozen_ok=True)
        theta = None
    converged = why is None and not out.interrupted
    return TorchOutcome(
        theta, trained, loss, history, n_steps, n_simulations, converged, out.interrupted, why
    )


def torch_replicate(
    simulator: Any,
    data: np.ndarray,
    method: Discrepancy,
    config: TrainConfig,
    theta_hat: np.ndarray,
    transform: BoxTransform,
    seed: np.random.SeedSequence,
) -> np.ndarray:
    """One bootstrap replicate of a ``"torch"`` fit: resampled data, trained from theta_hat."""
    gen = np.random.default_rng(seed)
    rows = gen.integers(0, data.shape[0], data.shape[0])
    quiet = TrainConfig.from_dict({**config.to_dict(), "progress": False})
    out = fit_torch(
        "torch",
        simulator,
        torch.as_tensor(data[rows]),
        get_method(method),
        quiet,
        theta_hat,
        transform,
        None,
        gen,
        None,
        False,
    )
    return out.theta
