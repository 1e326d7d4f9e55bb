"""The state of a training run of :mod:`ratiokit.training`, and the pieces of one step.

:class:`TrainState` holds everything the loop reads between steps (model, critic,
optimisers, EMA copy and its counter, RNG streams, history) and turns it into a
checkpoint and back. The step helpers keep the loop short: :func:`adam` builds every
optimiser of the package and :func:`finite_step` takes every one of its steps (the
alternating loop's and the critic-only loop's, :func:`ratiokit.critics.train_critic`),
refusing a non-finite loss or gradient before it reaches the parameters; :func:`run_mismatch` tells
whether a checkpoint belongs to this run (method, settings, data fingerprint),
:func:`r1_penalty` is the critic's gradient penalty, :func:`ema_update` the model average, and
:func:`spectral_normalise` wraps the critic's layers.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from ratiokit._rng import fork_torch_rng
from ratiokit.config import TrainConfig
from ratiokit.exceptions import NonFiniteLossError
from ratiokit.results import TrainHistory

__all__ = [
    "RESUMABLE",
    "TrainState",
    "adam",
    "check_resumable",
    "data_fingerprint",
    "ema_update",
    "finite_step",
    "r1_penalty",
    "run_mismatch",
    "spectral_normalise",
]

#: Settings that may differ between a checkpoint and the run resuming from it.
RESUMABLE = ("max_steps", "checkpoint_every", "progress")

#: Layers that :func:`spectral_normalise` wraps.
_WEIGHTED = (
    nn.Linear,
    nn.Bilinear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)


def adam(
    params: list[torch.Tensor],
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    *,
    weight_decay: float = 0.0,
    fused: bool = True,
) -> torch.optim.Adam:
    """Adam over ``params``: the optimiser of every training loop of the package.

    ``fused=True`` (the alternating loop): one kernel per step where torch has it
    (floating-point parameters on the CPU or a CUDA device), else the multi-tensor
    (foreach) update; on the CPU the fused update took 52 us a step against 149 us for the
    foreach one on the ring benchmark's 64-64 MLP. ``fused=False`` (the critic-only loop):
    torch's default implementation (per tensor on the CPU). The two round differently (by
    about 1e-17 on float64 weights), so each loop keeps its kind and its results bit for bit.
    """
    if not fused:
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay)
    kind = (
        {"fused": True}
        if all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
        else {"foreach": True}
    )
    return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay, **kind)


def _nonfinite_flags(params: list[torch.Tensor]) -> list[torch.Tensor]:
    """One 0-d tensor per device of ``params``, on that device: 1 where a gradient there holds
    a NaN or an infinity, else 0.

    One fused check per device (the kernel :class:`torch.amp.GradScaler` uses, with a scale
    of exactly 1, so the gradients are unchanged); a per-tensor norm costs twice as much on
    a small network's CPU step.
    """
    groups: dict[torch.device, list[torch.Tensor]] = {}
    for p in params:
        if p.grad is not None:
            groups.setdefault(p.grad.device, []).append(p.grad)
    flags = []
    for where, grads in groups.items():
        flag = torch.zeros((), device=where)
        torch._amp_foreach_non_finite_check_and_unscale_(grads, flag, _unit_scale(where))
        flags.append(flag)
    return flags


@functools.cache
def _unit_scale(device: torch.device) -> torch.Tensor:
    """The constant 1 on ``device`` (read only): the scale :func:`_nonfinite_flags` passes."""
    return torch.ones((), device=device)


def finite_step(
    optimiser: torch.optim.Optimizer,
    loss: torch.Tensor,
    params: list[torch.Tensor],
    which: str,
    step: int,
) -> float:
    """Back-propagate ``loss`` into ``params`` and step, unless the loss or a gradient is not
    finite; return the loss as a float (one device synchronisation for both checks).

    Raises
    ------
    NonFiniteLossError
        Before the update, so the parameters keep their last finite values.
    """
    optimiser.zero_grad(set_to_none=True)
    loss.backward(inputs=params)
    flags = _nonfinite_flags(params)
    # The checks were queued before this read, so it waits for them too (one synchronisation
    # on an accelerator); reading the flags after it costs no further wait.
    value = loss.item()
    if not math.isfinite(value) or any(flag.item() for flag in flags):
        what = f"loss became {value}" if not math.isfinite(value) else "gradient became non-finite"
        raise NonFiniteLossError(
            f"the {which} {what} at step {step}; training stopped before that update, so the "
            f"model keeps its parameters from step {step - 1} and the checkpoint on disk is "
            "the last one written. Lower `lr`/`critic_lr`, set a `gradient_penalty`, or check "
            "the model's samples for NaN.",
            step=step,
        )
    optimiser.step()
    return value


def r1_penalty(method: nn.Module, x_p: torch.Tensor) -> torch.Tensor:
    """``E_p |grad_x T(x)|^2`` of the critic's score ``T`` at the data rows (Mescheder et al.
    2018), differentiable in the critic's parameters."""
    x = x_p.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(method.critic_score(x).sum(), x, create_graph=True)
    return grad.square().sum(dim=1).mean()


def ema_update(average: nn.Module, model: nn.Module, decay: float, count: int) -> int:
    """Move ``average`` towards ``model`` with decay ``min(decay, (1 + t) / (10 + t))``, ``t``
    = ``count`` (a short warm-up); buffers are copied. Returns ``count + 1``."""
    weight = 1.0 - min(decay, (1.0 + count) / (10.0 + count))
    with torch.no_grad():
        for mine, theirs in zip(average.parameters(), model.parameters(), strict=True):
            mine.lerp_(theirs, weight)
        for mine, theirs in zip(average.buffers(), model.buffers(), strict=True):
            mine.copy_(theirs)
    return count + 1


def spectral_normalise(method: nn.Module, seed: int, device: torch.device) -> None:
    """Spectral normalisation of every linear and convolution layer of ``method``'s critic
    that has none yet (its power iteration starts from a vector drawn from ``seed``)."""
    with fork_torch_rng(seed, device):
        for module in list(method.modules()):
            if isinstance(module, _WEIGHTED) and not parametrize.is_parametrized(module, "weight"):
                nn.utils.parametrizations.spectral_norm(module)


def data_fingerprint(x: torch.Tensor) -> dict[str, Any]:
    """What identifies a run's data: the SHA-256 of its bytes, its shape and dtype."""
    raw = x.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
    return {
        "sha256": hashlib.sha256(raw).hexdigest(),
        "shape": list(x.shape),
        "dtype": str(x.dtype).removeprefix("torch."),
    }


def _describe(data: Any) -> str:
    if not isinstance(data, dict):
        return "no record of its data"
    return (
        f"SHA-256 {str(data.get('sha256'))[:12]}, shape {data.get('shape')}, {data.get('dtype')}"
    )


def run_mismatch(
    meta: dict[str, Any], method: str, config: TrainConfig, data: dict[str, Any]
) -> tuple[str, str] | None:
    """How the checkpoint ``meta`` belongs to another run, as ``(what, detail)`` with
    ``what`` in settings, method, data; None if it is this run's: the same method, the same
    settings (but those in :data:`RESUMABLE`) and the same data (``data``, a
    :func:`data_fingerprint`)."""
    saved = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    for key, value in config.to_dict().items():
        if key not in RESUMABLE and saved.get(key) != value:
            return "settings", f"{key}={value!r} where it has {saved.get(key)!r}"
    if meta.get("method") != method:
        return "method", f"{method!r} where it has {meta.get('method')!r}"
    if meta.get("data") != data:
        return "data", f"{_describe(data)} where it has {_describe(meta.get('data'))}"
    return None


def check_resumable(
    meta: dict[str, Any], method: str, config: TrainConfig, data: dict[str, Any], path: Path
) -> None:
    """Raise ValueError unless the checkpoint ``meta`` at ``path`` is of this run (see
    :func:`run_mismatch`), naming the argument that differs."""
    found = run_mismatch(meta, method, config, data)
    if found is None:
        return
    what, detail = found
    if what == "settings":
        raise ValueError(
            f"`config` must match the settings of checkpoint {str(path)!r} to resume "
            f"(all but {list(RESUMABLE)}); got {detail}."
        )
    if what == "method":
        raise ValueError(
            f"checkpoint {str(path)!r} must come from a run of method {method!r}; got "
            f"{meta.get('method')!r}."
        )
    raise ValueError(
        f"`data` must be the data of checkpoint {str(path)!r} to resume; got {detail}. Pass "
        "the data the run started with, or start afresh with `resume=False` and another "
        "path (or `overwrite=True`)."
    )


@dataclass(eq=False)
class TrainState:
    """Everything a training run reads between steps; the loop mutates it in place."""

    model: nn.Module
    #: The method (a :class:`~ratiokit.methods.Discrepancy`) whose critic is trained.
    method: nn.Module
    model_opt: torch.optim.Optimizer
    critic_opt: torch.optim.Optimizer | None
    ema_model: nn.Module | None
    generators: dict[str, torch.Generator]
    refit_rng: np.random.Generator
    device: torch.device
    #: What identifies the run (:func:`data_fingerprint` of its data), kept in checkpoints.
    data: dict[str, Any] = field(default_factory=dict)
    #: A caller's own state saved with the loop's (``state_dict``/``load_state_dict``).
    extra: Any = None
    step: int = 0
    ema_count: int = 0
    elapsed: float = 0.0
    #: True between steps (a checkpoint then captures a consistent state).
    at_boundary: bool = True
    _log: dict[str, list[float]] = field(
        default_factory=lambda: {"step": [], "model_loss": [], "critic_loss": [], "wall_time": []}
    )

    def record(self, step: int, model_loss: float, critic_loss: float, wall: float) -> None:
        """Log a finished step."""
        self.step = step
        for key, value in zip(self._log, (step, model_loss, critic_loss, wall), strict=True):
            self._log[key].append(value)

    def history(self) -> TrainHistory:
        """The frozen history so far."""
        return TrainHistory(
            step=np.asarray(self._log["step"], dtype=np.int64),
            model_loss=np.asarray(self._log["model_loss"], dtype=np.float64),
            critic_loss=np.asarray(self._log["critic_loss"], dtype=np.float64),
            wall_time=np.asarray(self._log["wall_time"], dtype=np.float64),
            val_step=np.empty(0, dtype=np.int64),
            val_loss=np.empty(0, dtype=np.float64),
            best_step=self.step,
            stopped_early=False,
        )

    def _rng_states(self) -> dict[str, torch.Tensor]:
        states = {name: gen.get_state() for name, gen in self.generators.items()}
        states["torch_cpu"] = torch.get_rng_state()
        if self.device.type == "cuda":
            states["torch_cuda"] = torch.cuda.get_rng_state(self.device)
        return states

    def snapshot(self, config: TrainConfig) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(tensors, meta)`` for :func:`ratiokit._checkpoint.save_checkpoint`."""
        tensors = {
            "model": self.model.state_dict(),
            "method": self.method.state_dict(),
            "model_optimizer": self.model_opt.state_dict(),
            "critic_optimizer": {} if self.critic_opt is None else self.critic_opt.state_dict(),
            "ema_model": {} if self.ema_model is None else self.ema_model.state_dict(),
            "rng": self._rng_states(),
            "history": {
                key: torch.tensor(values, dtype=torch.int64 if key == "step" else torch.float64)
                for key, values in self._log.items()
            },
            "extra": {} if self.extra is None else self.extra.state_dict(),
        }
        meta = {
            "step": self.step,
            "ema_count": self.ema_count,
            "elapsed": self.elapsed,
            "method": self.method.name,
            "config": config.to_dict(),
            "data": self.data,
            "numpy_rng": self.refit_rng.bit_generator.state,
        }
        return tensors, meta

    def restore(self, meta: dict[str, Any], tensors: dict[str, Any], path: Path) -> None:
        """Load a checkpoint's state into the live objects (built as for a fresh run).

        Raises
        ------
        ValueError
            If the checkpoint was written for another model or critic (the run's method,
            settings and data are checked by :func:`check_resumable`).
        """
        try:
            self.model.load_state_dict(tensors["model"])
            self.method.load_state_dict(tensors["method"])
            self.model_opt.load_state_dict(tensors["model_optimizer"])
            if self.critic_opt is not None:
                self.critic_opt.load_state_dict(tensors["critic_optimizer"])
            if self.ema_model is not None:
                self.ema_model.load_state_dict(tensors["ema_model"])
            rng = tensors["rng"]
            for name, gen in self.generators.items():
                gen.set_state(rng[name])
            torch.set_rng_state(rng["torch_cpu"])
            if self.device.type == "cuda":
                torch.cuda.set_rng_state(rng["torch_cuda"], self.device)
            self.refit_rng.bit_generator.state = meta["numpy_rng"]
            self.step, self.ema_count = int(meta["step"]), int(meta["ema_count"])
            self.elapsed = float(meta["elapsed"])
            self._log = {key: tensors["history"][key].tolist() for key in self._log}
            if self.extra is not None:
                self.extra.load_state_dict(tensors["extra"])
        except (KeyError, RuntimeError, TypeError, ValueError) as err:
            raise ValueError(
                f"checkpoint {str(path)!r} does not fit this model, method and settings: {err}"
            ) from err
