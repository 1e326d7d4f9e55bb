"""Gradient-based fits through the alternating loop of :mod:`ratiokit._train`.

Two kinds of model go through :func:`ratiokit._train.train`:

- ``"module"``: a generator network ``noise -> samples`` (a GAN and its relatives); its
  weights are trained, on a copy of the user's module;
- ``"torch"``: a differentiable simulator ``simulator(theta, n, generator)``; ``theta`` is
  held by a :class:`~ratiokit._transforms.ThetaModule` (bounds and positivity as
  transforms) and descends the method's loss through reparameterised samples.

Minibatch gradients make the iterates wander around the optimum, so the estimate of
``theta`` is the average of the second half of the iterates (Polyak-Ruppert tail
averaging). A run has *converged* when that second half is stationary, by a Geweke-type
check with batch means (the iterates are autocorrelated): split into 10 batches, the means
of the first five and of the last five batches differ by at most 3 standard errors,
``3 sqrt(2 v / 5)`` with ``v`` the variance of the batch means (per parameter, or of the
model's loss for a network).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ratiokit._train import train
from ratiokit._transforms import BoxTransform, ThetaModule
from ratiokit.config import TrainConfig
from ratiokit.methods import Discrepancy, get_method

__all__ = ["TorchOutcome", "fit_torch", "infer_latent_dim", "torch_replicate"]

#: Fraction of the last iterates averaged into the estimate and checked for stationarity.
_TAIL_FRACTION = 0.5
#: Batches of the stationarity check.
_N_BATCHES = 10


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


def _stationary(values: np.ndarray) -> bool:
    """Whether the tail of ``values`` (steps, p) shows no drift (see the module notes)."""
    tail = values[-int(values.shape[0] * _TAIL_FRACTION) :]
    size = tail.shape[0] // _N_BATCHES
    if size < 1 or not np.isfinite(tail).all():
        return False
    means = tail[-size * _N_BATCHES :].reshape(_N_BATCHES, size, -1).mean(1)
    half = _N_BATCHES // 2
    drift = np.abs(means[half:].mean(0) - means[:half].mean(0))
    se = np.sqrt(2.0 * means.var(0, ddof=1) / half)
    return bool(np.all(drift <= 3.0 * se + 1e-12 * np.abs(means).max(0)))


class _Trajectory:
    """theta after each step, saved in the training checkpoint (``extra_state`` of
    :func:`ratiokit._train.train`), so a resumed fit averages the same iterates as an
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
) -> TorchOutcome:
    """Train the model of ``kind`` (``"module"`` or ``"torch"``) on ``data``."""
    if kind == "torch":
        model: nn.Module = ThetaModule(theta0, transform)

        def sample(n: int, gen: torch.Generator) -> torch.Tensor:
            return simulator(model(), n, gen)

    else:
        model = copy.deepcopy(simulator)  # never train the user's module
        sample = _noise_sampler(model, latent_dim)
    trajectory = _Trajectory(model) if kind == "torch" else None
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
        callback=None if trajectory is None else trajectory.record,
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
        converged = _stationary(thetas) and not out.interrupted
        return TorchOutcome(
            theta, None, loss, history, n_steps, n_simulations, converged, out.interrupted
        )
    trained = out.ema_model if out.ema_model is not None else out.model
    converged = _stationary(history["loss"][:, None]) and not out.interrupted
    return TorchOutcome(
        None, trained.eval(), loss, history, n_steps, n_simulations, converged, out.interrupted
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
