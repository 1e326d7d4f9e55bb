"""The training loop: critic steps up the discrepancy, model steps down it (``rk.train``).

Every registered method trains a model the same way. Per step, ``critic_steps`` Adam steps
move the method's critic parameters down :meth:`~ratiokit.methods.Discrepancy.critic_loss`
(up the discrepancy), on fresh data rows and detached model samples; then one Adam step
moves the model down :meth:`~ratiokit.methods.Discrepancy.generator_loss`. A GAN is this
loop with ``method="classifier"`` and the non-saturating loss; f-GANs, b-GANs (Bregman),
GMMNs (MMD), MMD-GANs (a learned kernel) and moment matching are other methods. Methods
without trainable critic parameters skip the critic steps, and closed-form critics that
:meth:`forward` reads (``refit_per_batch``: uLSIF, RuLSIF, KLIEP) are solved on every batch.

All randomness comes from ``rng``: the data batches and the model's samples use two
:class:`torch.Generator` streams, and torch's global RNG (dropout, say) is forked and
seeded for the run, so the caller's global state is untouched. A checkpoint saves every
state the loop reads (see :mod:`ratiokit._checkpoint`), so resuming continues bit for bit;
it records the run (method, settings, a SHA-256 of the data), so a resume refuses other data
and a fresh run never writes over a file that is not a checkpoint of the same run.

Ctrl-C (SIGINT) during a step does not cut it short: the step finishes, is saved, and the
run returns with ``interrupted=True`` (a second Ctrl-C stops at once, raising
KeyboardInterrupt). A KeyboardInterrupt raised between steps (by the callback) returns the
same way.

The critic-only mode, with a validation split and early stopping, is
:func:`ratiokit.critics.train_critic`: it trains the critics of the ratio methods'
``fit_critic`` and of the deep-kernel MMD. Both build their optimiser with
:func:`ratiokit._train_state.adam`, take every step through
:func:`ratiokit._train_state.finite_step` (which refuses a non-finite loss or gradient with
a :class:`~ratiokit.exceptions.NonFiniteLossError` before the update) and record a
:class:`~ratiokit.results.TrainHistory`.
"""

from __future__ import annotations

import copy
import inspect
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ratiokit._checkpoint import check_overwrite, load_checkpoint, save_checkpoint
from ratiokit._progress import progress_bar
from ratiokit._rng import check_rng, fork_torch_rng, torch_seed
from ratiokit._train_state import (
    TrainState,
    adam,
    check_resumable,
    data_fingerprint,
    ema_update,
    finite_step,
    r1_penalty,
    run_mismatch,
    spectral_normalise,
)
from ratiokit._validation import as_sample
from ratiokit.config import TrainConfig
from ratiokit.exceptions import NonFiniteLossError
from ratiokit.methods import Discrepancy, get_method
from ratiokit.results import TrainHistory

__all__ = ["RNG_STREAMS", "DataMap", "ExtraLoss", "TrainOutcome", "check_overwrite_flag", "train"]

#: The run's independent streams, each seeded by one draw from ``rng``, in this order:
#: torch's global RNG inside the run, data batches, model samples, closed-form refits,
#: critic initialisation, and spectral normalisation's power-iteration start.
RNG_STREAMS = ("global", "data", "model", "refit", "init", "spectral")

#: What to use in the loop instead of each critic-training setting of a method.
_INSTEAD = {
    "max_steps": "use TrainConfig(max_steps=..., critic_steps=...) instead",
    "lr": "use TrainConfig(critic_lr=...) instead",
    "batch_size": "use TrainConfig(batch_size=...) instead",
    "weight_decay": "the loop has no weight decay",
    "validation_fraction": "the loop has no validation split or early stopping",
    "patience": "the loop has no validation split or early stopping",
    "progress": "use TrainConfig(progress=...) instead",
}

#: ``sample(n, generator)``: n model samples (n, d), differentiable in the model's
#: parameters, with all randomness drawn from ``generator``.
Sampler = Callable[[int, torch.Generator], torch.Tensor]

#: ``data_map(x) -> rows``: the rows the critic sees for a batch ``x`` of data, e.g.
#: ``[x, E(x)]`` with an encoder ``E`` of the model (differentiable in its parameters).
DataMap = Callable[[torch.Tensor], torch.Tensor]

#: ``extra_loss(n, generator) -> scalar``: a term added to the model's loss at each model
#: step, on a batch of ``n`` it draws from ``generator`` (the model's stream).
ExtraLoss = Callable[[int, torch.Generator], torch.Tensor]


@dataclass(eq=False)
class TrainOutcome:
    """What :func:`train` returns: the live trained objects and a frozen history.

    Attributes
    ----------
    model : torch.nn.Module
        The trained model (the one passed in, trained in place).
    ema_model : torch.nn.Module or None
        The exponential moving average of the model (``config.ema``), else None.
    method : Discrepancy
        The method with its trained critic (trained in place).
    history : TrainHistory
    n_steps : int
        Model steps completed (including those before a resume).
    interrupted : bool
        Whether a KeyboardInterrupt ended the run early.
    """

    model: nn.Module
    ema_model: nn.Module | None
    method: Discrepancy
    history: TrainHistory
    n_steps: int
    interrupted: bool


def _train_iv(
    model: Any,
    sample: Any,
    data: Any,
    method: Any,
    config: Any,
    checkpoint: Any,
    resume: Any,
    overwrite: Any,
    callback: Any,
    data_map: Any,
    extra_loss: Any,
) -> tuple[Discrepancy, torch.Tensor, Path | None]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module; got {type(model).__name__}.")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("`model` must have trainable parameters; got none that require grad.")
    if not callable(sample):
        raise TypeError(f"`sample` must be callable as sample(n, generator); got {sample!r}.")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"`config` must be a TrainConfig; got {type(config).__name__}.")
    method = get_method(method) if isinstance(method, str) else method
    if not isinstance(method, Discrepancy):
        raise TypeError(
            f"`method` must be a method name or a Discrepancy; got {type(method).__name__}."
        )
    _check_critic_settings(method, config)
    x = as_sample(data, "data")
    if checkpoint is not None and not isinstance(checkpoint, str | os.PathLike):
        raise TypeError(f"`checkpoint` must be None or a path; got {type(checkpoint).__name__}.")
    if not isinstance(resume, bool):
        raise TypeError(f"`resume` must be True or False; got {resume!r}.")
    if resume and checkpoint is None:
        raise ValueError("`checkpoint` must be a path when `resume` is True; got None.")
    check_overwrite_flag(overwrite, checkpoint, resume)
    if callback is not None and not callable(callback):
        raise TypeError(f"`callback` must be None or callable; got {callback!r}.")
    if data_map is not None and not callable(data_map):
        raise TypeError(f"`data_map` must be None or callable as data_map(x); got {data_map!r}.")
    if extra_loss is not None and not callable(extra_loss):
        raise TypeError(
            f"`extra_loss` must be None or callable as extra_loss(n, generator); got "
            f"{extra_loss!r}."
        )
    return method, x, None if checkpoint is None else Path(checkpoint)


def _check_critic_settings(method: Discrepancy, config: TrainConfig) -> None:
    """Refuse a method whose own critic-training settings (its ``training_settings``) differ
    from their defaults: the loop trains the critic by its TrainConfig and would ignore them;
    and spectral normalisation asked for twice, by the method and by ``config``."""
    defaults = inspect.signature(type(method).__init__).parameters
    given = method.get_params(deep=False)
    for name in method.training_settings:
        default = defaults[name].default
        if given[name] != default:
            raise ValueError(
                f"`{name}` of {type(method).__name__} must keep its default {default!r} in the "
                "training loop, which trains the critic by its TrainConfig (the method's "
                f"settings train `fit_critic` only): {_INSTEAD[name]}; got {given[name]!r}."
            )
    if config.spectral_norm and given.get("spectral_norm") is True:
        raise ValueError(
            f"`spectral_norm` must be set in one place, on {type(method).__name__} or in "
            "TrainConfig (the config normalises the critic's layers that have no "
            "normalisation yet, so with both it does nothing); got True in both."
        )


def check_overwrite_flag(overwrite: Any, checkpoint: Any, resume: bool) -> None:
    """Validate ``overwrite`` against ``checkpoint`` and ``resume`` (it must not be ignored).

    Raises
    ------
    TypeError
        If ``overwrite`` is not a bool.
    ValueError
        If ``overwrite`` is True without a checkpoint or with ``resume`` (which never
        replaces a checkpoint).
    """
    if not isinstance(overwrite, bool):
        raise TypeError(f"`overwrite` must be True or False; got {overwrite!r}.")
    if overwrite and (checkpoint is None or resume):
        raise ValueError(
            "`overwrite` must be False without a `checkpoint` or with `resume`=True (a resume "
            "never replaces a checkpoint); got True."
        )


class _DeferredInterrupt:
    """Within ``with``: a first Ctrl-C sets :attr:`requested` (the loop stops after the step
    in progress), a second raises KeyboardInterrupt at once.

    Installed only in the main thread and over Python's default handler (as in a terminal or
    Jupyter), never over a handler of the caller's.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _DeferredInterrupt:
        main = threading.current_thread() is threading.main_thread()
        if main and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _device(model: nn.Module, config: TrainConfig) -> torch.device:
    if config.device is not None:
        return torch.device(config.device)
    first = next((t for t in (*model.parameters(), *model.buffers())), None)
    return torch.device("cpu") if first is None else first.device


def train(
    model: nn.Module,
    sample: Sampler,
    data: Any,
    method: Discrepancy | str,
    config: TrainConfig,
    *,
    rng: Any = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    extra_state: Any = None,
    data_map: DataMap | None = None,
    extra_loss: ExtraLoss | None = None,
) -> TrainOutcome:
    """Train ``model`` to make its samples indistinguishable from ``data`` under ``method``.

    ``min_model max_critic D(P_data, Q_model)``: per step, ``config.critic_steps`` critic
    steps on ``method.critic_loss``, then one model step on ``method.generator_loss``.

    Parameters
    ----------
    model : torch.nn.Module
        Holds the parameters to fit; trained in place (moved to ``config.device``).
    sample : callable
        ``sample(n, generator) -> Tensor (n, d)``: model samples, differentiable in
        ``model``'s parameters, with all randomness from ``generator`` (owned by the loop,
        so a resume is bit-identical); e.g. ``lambda n, g: G(torch.randn(n, k, generator=g))``.
        The generator lives on the training device: draw noise there
        (``torch.randn(n, k, generator=g, device=g.device)``).
    data : Tensor or array of shape (n, d)
        Samples from P; cast to the dtype of the model's samples.
    method : Discrepancy or str
        Trained in place (its critic is built by ``init_critic``). Its network settings
        (``hidden``, ``critic``...) are used; its critic-training settings
        (``training_settings``: ``lr``, ``max_steps``...) must keep their defaults, as
        ``config`` trains the critic.
    config : TrainConfig
    rng : None, int or numpy.random.Generator, default=None
        Seeds the critic's initialisation, the batches, the model's samples and torch's
        global RNG inside the run; an int gives bit-identical results on the CPU.
    checkpoint : str or path-like, default=None
        Tensor file of the checkpoint (``checkpoint + ".json"`` is its sidecar), written
        every ``config.checkpoint_every`` steps, at the end and on an interrupt (after the
        step in progress). It records the run: method, settings and a SHA-256 of ``data``.
        Without ``resume``, a file there (either of the two) is replaced only if it is a
        checkpoint of the same run, or with ``overwrite``.
    resume : bool, default=False
        Continue from ``checkpoint`` if it exists (else start afresh). The method, data and
        settings must match the checkpoint's, except ``max_steps``, ``checkpoint_every``
        and ``progress``.
    overwrite : bool, default=False
        Replace whatever is at ``checkpoint`` (a file of yours, another run's checkpoint).
    callback : callable, default=None
        ``callback(step, info)`` after each step (before that step's checkpoint), ``info``
        holding ``model_loss``, ``critic_loss`` and ``wall_time``; raising
        KeyboardInterrupt stops the run.
    extra_state : object, default=None
        The caller's own state, with ``state_dict()`` (tensors and plain data) and
        ``load_state_dict(d)``: saved in each checkpoint and restored on a resume.
    data_map : callable, default=None
        ``data_map(x) -> Tensor (n, k)``: the rows the critic sees for a data batch ``x``
        (the ``sample`` rows then have ``k`` columns too). A third player: for BiGAN/ALI,
        ``[x, E(x)]`` with an encoder ``E`` whose parameters are in ``model``. The critic
        steps see the rows without gradients; the model step differentiates both sides, and
        its loss is the critic's loss with the roles of the two samples swapped (for the
        classifier, the flipped labels of BiGAN), or ``method``'s minimax loss with
        ``generator_loss="minimax"`` or a method without a trainable critic: the model
        (generator and encoder) moves down what the critic moves up.
    extra_loss : callable, default=None
        ``extra_loss(n, generator) -> Tensor ()``: added to the model's loss at each model
        step, with ``n = batch_size`` and the model's stream (so a resume is bit-identical),
        e.g. InfoGAN's auxiliary cross-entropy (:class:`ratiokit.players.InfoGAN`). Its
        trainable parameters must be in ``model``.

    Returns
    -------
    TrainOutcome
        ``interrupted=True`` with the steps done when Ctrl-C or the callback stops the run.

    Raises
    ------
    NonFiniteLossError
        If a loss or gradient becomes NaN or infinite: names the step; the model and the
        checkpoint on disk keep the last good state, and ``err.outcome`` holds the run.
    TypeError, ValueError
        For bad arguments, a checkpoint that is truncated, modified or not plain data, one
        of another run (method, settings or data) to resume, a file at ``checkpoint`` that
        is not this run's checkpoint (without ``overwrite``), or settings that do not fit
        the method (a gradient penalty without a critic, a critic-training setting of the
        method other than its default, ``spectral_norm`` on both the method and ``config``).
    KeyboardInterrupt
        On a second Ctrl-C, or one raised in the middle of a step (by ``sample``, say): the
        model may then hold part of that step, and the checkpoint on disk is the last one
        written.

    Examples
    --------
    >>> import torch
    >>> from ratiokit import TrainConfig
    >>> data = 2.0 * torch.randn(1000, 1, generator=torch.Generator().manual_seed(0)) + 3.0
    >>> G = torch.nn.Linear(1, 1)  # the model x = w z + b, z ~ N(0, 1), from w = 1, b = 0
    >>> _ = torch.nn.init.ones_(G.weight), torch.nn.init.zeros_(G.bias)
    >>> out = train(G, lambda n, g: G(torch.randn(n, 1, generator=g)), data, "moments",
    ...             TrainConfig(max_steps=500, lr=0.05, progress=False), rng=0)
    >>> round(G.bias.item()), round(abs(G.weight.item())), out.n_steps  # mean 3, sd 2
    (3, 2, 500)
    """
    method, x_data, path = _train_iv(
        model, sample, data, method, config, checkpoint, resume, overwrite, callback, data_map,
        extra_loss,
    )  # fmt: skip
    device = _device(model, config)
    model.to(device)
    gen = check_rng(rng)
    seeds = [torch_seed(gen) for _ in RNG_STREAMS]
    with fork_torch_rng(seeds[0], device), _DeferredInterrupt() as ctrl_c:
        return _run(
            model, sample, x_data, method, config, seeds, device, path, resume, overwrite,
            callback, extra_state, _Hooks(data_map, extra_loss), ctrl_c,
        )  # fmt: skip


def _run(
    model: nn.Module,
    sample: Sampler,
    x_data: torch.Tensor,
    method: Discrepancy,
    config: TrainConfig,
    seeds: list[int],
    device: torch.device,
    path: Path | None,
    resume: bool,
    overwrite: bool,
    callback: Callable[[int, dict[str, float]], None] | None,
    extra_state: Any,
    hooks: _Hooks,
    ctrl_c: _DeferredInterrupt,
) -> TrainOutcome:
    data_gen = torch.Generator(device=device).manual_seed(seeds[1])
    model_gen = torch.Generator(device=device).manual_seed(seeds[2])
    refit_rng = np.random.default_rng(seeds[3])
    b = config.batch_size
    with torch.no_grad():
        probe = sample(b, model_gen)
    if not isinstance(probe, torch.Tensor) or probe.ndim != 2 or probe.shape[0] != b:
        shape = tuple(probe.shape) if isinstance(probe, torch.Tensor) else type(probe).__name__
        raise ValueError(
            f"`sample` must return a tensor of shape (n, n_features) for n = {b}; got {shape}."
        )
    x_data = x_data.to(device=probe.device, dtype=probe.dtype)
    n_data, data_device = x_data.shape[0], x_data.device

    def data_batch() -> torch.Tensor:
        return x_data[torch.randint(n_data, (b,), generator=data_gen, device=data_device)]

    first = hooks.critic_rows(data_batch())
    if probe.shape != first.shape:
        what = "`data_map`'s rows" if hooks.data_map is not None else "the data"
        raise ValueError(
            f"`sample` must return a tensor of shape (n, n_features) = ({b}, {first.shape[1]}) "
            f"for n = {b}, as {what}; got {tuple(probe.shape)}."
        )
    method.init_critic(first, probe, rng=seeds[4])
    if config.spectral_norm:
        spectral_normalise(method, seeds[5], device)
    critic_params = [p for p in method.parameters() if p.requires_grad]
    if not critic_params and (config.gradient_penalty > 0 or config.spectral_norm):
        raise ValueError(
            f"`gradient_penalty` must be 0 and `spectral_norm` False for method "
            f"{method.name!r}, which has no trainable critic; got {config.gradient_penalty} "
            f"and {config.spectral_norm}."
        )
    model_params = [p for p in model.parameters() if p.requires_grad]
    state = TrainState(
        model=model,
        method=method,
        model_opt=adam(model_params, config.lr, config.betas),
        critic_opt=adam(critic_params, config.critic_lr, config.betas) if critic_params else None,
        ema_model=copy.deepcopy(model).requires_grad_(False) if config.ema else None,
        generators={"data": data_gen, "model": model_gen},
        refit_rng=refit_rng,
        device=device,
        extra=extra_state,
    )
    if path is not None:
        state.data = data_fingerprint(x_data)
        loaded = load_checkpoint(path) if resume else None
        if loaded is not None:
            check_resumable(loaded[0], method.name, config, state.data, path)
            state.restore(*loaded, path)
        else:
            check_overwrite(
                path, overwrite, lambda meta: run_mismatch(meta, method.name, config, state.data)
            )
    saturating = config.generator_loss == "minimax"
    penalty = config.gradient_penalty
    was_training = model.training
    model.train()
    method.train()
    start = time.perf_counter() - state.elapsed
    saved_at, interrupted = -1, False

    def save() -> None:
        nonlocal saved_at
        if path is not None and saved_at != state.step:
            state.elapsed = time.perf_counter() - start
            save_checkpoint(path, *state.snapshot(config))
            saved_at = state.step

    bar = progress_bar(
        config.max_steps,
        f"train ({method.name})",
        config.progress,
        min(state.step, config.max_steps),
    )
    try:
        while state.step < config.max_steps:
            if ctrl_c.requested:  # Ctrl-C came during the last step (or the set-up)
                raise KeyboardInterrupt
            step = state.step + 1
            state.at_boundary = False
            critic_value = math.nan
            if critic_params:
                total = 0.0
                for _ in range(config.critic_steps):
                    x_p = hooks.critic_rows(data_batch())
                    with torch.no_grad():
                        x_q = sample(b, model_gen)
                    try:
                        loss = method.critic_loss(x_p, x_q)
                    except (ValueError, RuntimeError) as err:
                        _check_samples(x_q, step, err)
                        raise
                    if penalty > 0:
                        loss = loss + 0.5 * penalty * r1_penalty(method, x_p)
                    total += finite_step(state.critic_opt, loss, critic_params, "critic", step)
                critic_value = total / config.critic_steps
            x_p, x_q = hooks.model_rows(data_batch()), sample(b, model_gen)
            if not x_q.requires_grad:
                raise ValueError(
                    "`sample` must return samples differentiable in the model's parameters; "
                    "got a tensor that does not require grad."
                )
            try:
                if method.refit_per_batch:
                    method.fit_critic(x_p.detach(), x_q.detach(), rng=refit_rng)
                loss = hooks.model_loss(method, x_p, x_q, saturating, bool(critic_params))
            except (ValueError, RuntimeError) as err:
                _check_samples(x_q, step, err)
                raise
            if hooks.extra_loss is not None:
                loss = loss + hooks.extra_loss(b, model_gen)
            model_value = finite_step(state.model_opt, loss, model_params, "model", step)
            if state.ema_model is not None:
                state.ema_count = ema_update(state.ema_model, model, config.ema, state.ema_count)
            wall = time.perf_counter() - start
            state.record(step, model_value, critic_value, wall)
            state.at_boundary = True
            bar.update()
            if callback is not None:
                info = {"model_loss": model_value, "critic_loss": critic_value, "wall_time": wall}
                callback(step, info)
            if config.checkpoint_every and step % config.checkpoint_every == 0:
                save()
    except KeyboardInterrupt:
        if not state.at_boundary:
            raise  # the model may hold part of a step: nothing consistent to return or save
        interrupted = True
    except NonFiniteLossError as err:
        err.outcome = _outcome(state, interrupted=False)
        raise
    finally:
        bar.close()
        model.train(was_training)
        if state.ema_model is not None:
            state.ema_model.train(was_training)
        method.eval()
    save()  # at a step boundary: every other way out of the loop has raised
    return _outcome(state, interrupted=interrupted)


@dataclass(frozen=True)
class _Hooks:
    """The players and losses a configuration adds to the loop (see :func:`train`)."""

    data_map: DataMap | None
    extra_loss: ExtraLoss | None

    def critic_rows(self, x: torch.Tensor) -> torch.Tensor:
        """The rows the critic steps see for the data batch ``x``, without gradients."""
        if self.data_map is None:
            return x
        with torch.no_grad():
            return self.data_map(x)

    def model_rows(self, x: torch.Tensor) -> torch.Tensor:
        """The data side of the model step, differentiable in a data-side player."""
        if self.data_map is None:
            return x
        rows = self.data_map(x)
        if not rows.requires_grad:
            raise ValueError(
                "`data_map` must return rows differentiable in the model's parameters (its "
                "player's parameters belong in `model`); got a tensor that does not require "
                "grad."
            )
        return rows

    def model_loss(
        self,
        method: Discrepancy,
        x_p: torch.Tensor,
        x_q: torch.Tensor,
        saturating: bool,
        trained_critic: bool,
    ) -> torch.Tensor:
        """The model's loss: ``method.generator_loss``; with a data-side player, the critic's
        loss with the two samples swapped (non-saturating, for a trained critic) or the
        minimax loss ``forward(x_p, x_q)``."""
        if self.data_map is None:
            return method.generator_loss(x_p, x_q, saturating=saturating)
        if saturating or not trained_critic:
            return method.generator_loss(x_p, x_q, saturating=True)
        return method.critic_loss(x_q, x_p)


def _check_samples(x_q: torch.Tensor, step: int, err: Exception) -> None:
    """After a method failed: report non-finite model samples as a :class:`NonFiniteLossError`
    (checked only after an error, so the usual path costs nothing)."""
    if not isinstance(err, NonFiniteLossError) and not bool(torch.isfinite(x_q).all()):
        raise NonFiniteLossError(
            f"the model's samples became non-finite at step {step} (the method then failed: "
            f"{err}); training stopped before that update, so the model keeps its parameters "
            f"from step {step - 1} and the checkpoint on disk is the last one written. Lower "
            "`lr` or check the model for NaN.",
            step=step,
        ) from err


def _outcome(state: TrainState, *, interrupted: bool) -> TrainOutcome:
    return TrainOutcome(
        model=state.model,
        ema_model=state.ema_model,
        method=state.method,
        history=state.history(),
        n_steps=state.step,
        interrupted=interrupted,
    )
