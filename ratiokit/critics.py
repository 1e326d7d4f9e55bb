"""Default critic networks and the one minibatch trainer of the trained ratio methods.

:func:`mlp_critic` builds a multilayer perceptron with one output per row,
:func:`make_critic` puts it behind a :class:`Standardize` layer fitted to the pooled samples
(or copies a user's module), and :func:`train_critic` trains any critic module by
minimising a loss of the two samples with Adam on minibatches, stopping early on a held-out
split: the critic-only mode of :func:`ratiokit.train`, with the same optimiser factory and
step (:func:`ratiokit._train_state.finite_step`) and the same
:class:`~ratiokit.results.TrainHistory`.
"""

from __future__ import annotations

import copy
import math
import numbers
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ratiokit._progress import progress_bar
from ratiokit._rng import check_rng, fork_torch_rng, torch_generator
from ratiokit._train_state import adam, finite_step
from ratiokit._validation import check_choice, check_int, check_positive
from ratiokit.exceptions import NonFiniteLossError
from ratiokit.results import TrainHistory

__all__ = [
    "ACTIVATIONS",
    "TRAINING_SETTINGS",
    "Standardize",
    "canonical_order",
    "check_network",
    "check_training",
    "evaluate_critic",
    "make_critic",
    "mlp_critic",
    "train_critic",
    "training_kwargs",
]

#: Hidden-layer activations of :func:`mlp_critic`.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "tanh": nn.Tanh,
}

#: The settings of :func:`train_critic` that a trained ratio method holds as its own
#: (:attr:`~ratiokit.methods.Discrepancy.training_settings`): its ``fit_critic`` uses them,
#: while :func:`ratiokit.train` trains the critic by its :class:`~ratiokit.TrainConfig`.
TRAINING_SETTINGS = (
    "max_steps",
    "batch_size",
    "lr",
    "weight_decay",
    "validation_fraction",
    "patience",
    "progress",
)


def training_kwargs(method: Any) -> dict[str, Any]:
    """The :data:`TRAINING_SETTINGS` a trained method holds, as keyword arguments of
    :func:`train_critic` (the one place that lists them for its ``fit_critic``)."""
    return {name: getattr(method, name) for name in TRAINING_SETTINGS}


#: A loss of the critic on one minibatch of each sample: ``loss_fn(module, x_p, x_q)``.
CriticLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


class Standardize(nn.Module):
    """The fixed affine map ``(x - loc) / scale``, feature by feature (buffers, not parameters).

    Parameters
    ----------
    loc : Tensor of shape (d,)
    scale : Tensor of shape (d,)
        Positive.
    """

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("loc", loc.detach().clone())
        self.register_buffer("scale", scale.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised rows of ``x`` (n, d)."""
        return (x - self.loc) / self.scale


def mlp_critic(
    d_in: int,
    hidden: Sequence[int] = (64, 64),
    *,
    activation: str = "elu",
    spectral_norm: bool = False,
    d_out: int = 1,
    rng: Any = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> nn.Module:
    """A multilayer perceptron from (n, ``d_in``) to (n,): one scalar output per row.

    With ``d_out > 1`` it maps to (n, ``d_out``) instead (an embedding, e.g. for a separable
    critic ``g(x)^T h(y)``).

    ``x -> Linear -> activation -> ... -> Linear(·, 1)``, with PyTorch's default
    initialisation drawn under a torch RNG seeded from ``rng``.

    Parameters
    ----------
    d_in : int
        Number of input features.
    hidden : sequence of int, default=(64, 64)
        Widths of the hidden layers (may be empty: a linear critic).
    activation : {"elu", "gelu", "leaky_relu", "relu", "silu", "softplus", "tanh"}, default="elu"
        Hidden-layer nonlinearity. The smooth ones give smooth log-ratio estimates.
    spectral_norm : bool, default=False
        Wrap every linear layer in :func:`torch.nn.utils.parametrizations.spectral_norm`,
        which makes the critic 1-Lipschitz in each layer (a common GAN-critic regulariser).
    d_out : int, default=1
        Outputs per row; 1 gives the flattened shape (n,).
    rng : None, int or numpy.random.Generator, default=None
        Seeds the initial weights; an int gives the same network every time.
    dtype : torch.dtype, default=torch.float64
    device : str or torch.device, default=None
        Default: the CPU.

    Returns
    -------
    torch.nn.Sequential
        Ends in ``nn.Flatten(0)`` when ``d_out`` is 1, so the output has shape (n,).

    Raises
    ------
    TypeError
        If ``hidden`` is not a sequence of integers.
    ValueError
        If ``d_in``, ``d_out`` or a width is not a positive integer or ``activation`` is
        unknown.

    Examples
    --------
    >>> import torch
    >>> net = mlp_critic(3, (8,), rng=0)
    >>> net(torch.zeros(5, 3, dtype=torch.float64)).shape
    torch.Size([5])
    >>> bool(torch.equal(net[0].weight, mlp_critic(3, (8,), rng=0)[0].weight))
    True
    """
    d_in = check_int(d_in, "d_in", minimum=1)
    d_out = check_int(d_out, "d_out", minimum=1)
    widths = check_network(hidden, activation)
    act = ACTIVATIONS[activation]
    layers: list[nn.Module] = []
    with fork_torch_rng(rng, device):
        for w_in, w_out in zip([d_in, *widths], [*widths, d_out], strict=True):
            linear = nn.Linear(w_in, w_out, dtype=dtype, device=device)
            if spectral_norm:
                linear = nn.utils.parametrizations.spectral_norm(linear)
            layers += [linear, act()]
    return nn.Sequential(*layers[:-1], *([nn.Flatten(0)] if d_out == 1 else []))


def make_critic(
    template: nn.Module | None,
    x_p: torch.Tensor,
    x_q: torch.Tensor,
    *,
    hidden: Sequence[int],
    activation: str,
    spectral_norm: bool,
    rng: Any,
) -> nn.Module:
    """A fresh critic for the samples' dtype and device.

    With ``template=None``: :func:`mlp_critic` behind a :class:`Standardize` layer fitted to
    the pooled samples (features with zero spread are left unscaled). Otherwise a deep copy of
    ``template`` (raw inputs, its current weights), cast to the samples' dtype and device.

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor([[0.0, 10.0], [2.0, 30.0]], dtype=torch.float64)
    >>> critic = make_critic(None, x, x + 1.0, hidden=(4,), activation="elu",
    ...                      spectral_norm=False, rng=0)
    >>> critic[0].loc, critic(x).shape
    (tensor([ 1.5000, 20.5000], dtype=torch.float64), torch.Size([2]))
    """
    if template is not None:
        return copy.deepcopy(template).to(device=x_p.device, dtype=x_p.dtype)
    # Canonical order: the same rows in any order give bit-identical moments.
    pooled = torch.cat([x_p[canonical_order(x_p)], x_q[canonical_order(x_q)]]).detach()
    loc, scale = pooled.mean(dim=0), pooled.std(dim=0)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    net = mlp_critic(
        x_p.shape[1],
        hidden,
        activation=activation,
        spectral_norm=spectral_norm,
        rng=rng,
        dtype=x_p.dtype,
        device=x_p.device,
    )
    return nn.Sequential(Standardize(loc, scale), net)


def check_network(hidden: Any, activation: Any) -> tuple[int, ...]:
    """Validate the settings of :func:`mlp_critic`; return ``hidden`` as a tuple."""
    if isinstance(hidden, str | bytes) or not isinstance(hidden, Sequence):
        raise TypeError(f"`hidden` must be a sequence of positive integers; got {hidden!r}.")
    widths = tuple(check_int(w, "hidden", minimum=1) for w in hidden)
    check_choice(activation, "activation", list(ACTIVATIONS))
    return widths


def check_training(
    *,
    max_steps: Any,
    batch_size: Any,
    lr: Any,
    weight_decay: Any,
    validation_fraction: Any,
    patience: Any,
) -> None:
    """Validate the settings of :func:`train_critic` (raises TypeError or ValueError)."""
    check_int(max_steps, "max_steps", minimum=0)
    check_int(batch_size, "batch_size", minimum=1)
    check_positive(lr, "lr")
    check_int(patience, "patience", minimum=1)
    for value, name, upper, text in (
        (weight_decay, "weight_decay", math.inf, "a real number >= 0"),
        (validation_fraction, "validation_fraction", 1.0, "a real number in [0, 1)"),
    ):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"`{name}` must be {text}; got {value!r}.")
        if not 0.0 <= value < upper:
            raise ValueError(f"`{name}` must be {text}; got {value!r}.")


def _first_float_dtype(module: nn.Module, default: torch.dtype) -> torch.dtype:
    """The dtype of the first floating parameter of ``module`` (else buffer), in the order of
    ``module.parameters()``: a direct pre-order walk, as this runs on every training step
    (``itertools.chain(module.parameters(), module.buffers())`` costs several times more)."""
    for kind in ("_parameters", "_buffers"):
        stack = [module]
        while stack:
            mod = stack.pop()
            for t in getattr(mod, kind).values():
                if t is not None and t.is_floating_point():
                    return t.dtype
            stack.extend(m for m in reversed(mod._modules.values()) if m is not None)
    return default


def evaluate_critic(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` as a vector of shape (n,) in ``x``'s dtype.

    ``x`` is cast to the dtype of the module's first floating parameter or buffer (if any),
    and an output of shape (n, 1) is flattened.

    Raises
    ------
    ValueError
        If the output has another shape.
    """
    # Casts and reshapes only where needed: this runs on every training step, where each
    # no-op call would still cost a dispatch (and a view node in the backward pass).
    dtype = _first_float_dtype(module, x.dtype)
    out = module(x if x.dtype == dtype else x.to(dtype))
    n = x.shape[0]
    if out.shape != (n,):
        if out.shape != (n, 1):
            raise ValueError(
                f"`critic` must map (n, d) inputs to (n,) or (n, 1) outputs; got shape "
                f"{tuple(out.shape)} for {n} rows."
            )
        out = out.reshape(n)
    return out if out.dtype == x.dtype else out.to(x.dtype)


def canonical_order(x: torch.Tensor) -> torch.Tensor:
    """Row indices that sort ``x`` (n, d) lexicographically (first column first).

    Training on rows in this order makes a fit a function of the sample as a set: the same
    rows in any order give the same splits, minibatches and hence the same critic.

    Examples
    --------
    >>> import torch
    >>> canonical_order(torch.tensor([[1.0, 0.0], [0.0, 5.0], [0.0, 2.0]]))
    tensor([2, 1, 0])
    """
    order = torch.arange(x.shape[0], device=x.device)
    for j in reversed(range(x.shape[1])):
        order = order[torch.argsort(x[order, j], stable=True)]
    return order


def _split(
    x: torch.Tensor, fraction: float, gen: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, validation) rows of ``x``, after putting it in canonical order."""
    x = x[canonical_order(x)]
    n_val = math.floor(fraction * x.shape[0])
    perm = torch.as_tensor(gen.permutation(x.shape[0]), device=x.device)
    return x[perm[n_val:]], x[perm[:n_val]]


def train_critic(
    loss_fn: CriticLoss,
    module: nn.Module,
    x_p: torch.Tensor,
    x_q: torch.Tensor,
    *,
    max_steps: int,
    batch_size: int,
    lr: float,
    weight_decay: float = 0.0,
    validation_fraction: float = 0.2,
    patience: int = 100,
    replace: bool = True,
    rng: Any = None,
    progress: bool | None = None,
) -> TrainHistory:
    """Train ``module`` in place by minimising ``loss_fn(module, x_p_batch, x_q_batch)``.

    The critic-only mode of the package's training loop: ``min_T L(T; x_p, x_q)`` by Adam
    on minibatches of ``batch_size`` rows of each sample (drawn by a
    :class:`torch.Generator` seeded from ``rng``, with replacement unless ``replace=False``;
    the whole sample when it has fewer rows). A fraction of each sample is held out; the
    held-out loss is checked at the start and once per epoch (every step for full batches),
    training stops once ``patience`` steps have passed since the lowest held-out loss, and the
    state with the lowest held-out loss is restored. The rows of each sample are put in
    :func:`canonical_order` first, so the result does not depend on their order. The module
    is in training mode while it steps and is left in evaluation mode (so, e.g., spectral
    normalisation stops updating its power iteration). Each step goes through the one
    optimiser step of the package, which refuses a non-finite loss or gradient.

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(module, x_p, x_q) -> 0-d tensor``, the loss to minimise.
    module : torch.nn.Module
        The critic; its parameters that require a gradient are trained in place.
    x_p : Tensor of shape (n, d)
        Sample from P.
    x_q : Tensor of shape (m, d)
        Sample from Q.
    max_steps : int
        Most optimiser steps (0 leaves ``module`` as it is).
    batch_size : int
        Rows of each sample per step.
    lr : float
        Adam's learning rate.
    weight_decay : float, default=0.0
        Adam's L2 penalty (>= 0).
    validation_fraction : float, default=0.2
        Fraction of each sample held out for early stopping, in [0, 1); 0 (or too few rows
        to hold any out) trains for ``max_steps`` and keeps the last state.
    patience : int, default=100
        Steps without a lower held-out loss before stopping.
    replace : bool, default=True
        Draw each minibatch's rows with replacement; False draws distinct rows (for a loss
        that is a U-statistic, whose repeated rows would bias it).
    rng : None, int or numpy.random.Generator, default=None
        Draws the split and the minibatches.
    progress : bool or None, default=None
        A progress bar: None shows it only on a terminal (after 1 s), True always, False
        never (see :func:`ratiokit._progress.progress_bar`).

    Returns
    -------
    TrainHistory
        ``critic_loss`` holds the minibatch losses, ``model_loss`` NaN.

    Raises
    ------
    ValueError
        If a setting is out of range, or either sample has fewer than 2 training rows.
    NonFiniteLossError
        A RuntimeError: if the loss or a gradient becomes NaN or infinite (before that
        update); ``module`` is reset to its best state so far.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> x_p = torch.randn(200, 1, generator=g, dtype=torch.float64) + 1.0
    >>> x_q = torch.randn(200, 1, generator=g, dtype=torch.float64)
    >>> net = mlp_critic(1, (), rng=0)  # a linear critic T(x) = a x + b
    >>> def loss(m, a, b):  # balanced logistic loss: minimised by T = log p/q = x - 1/2
    ...     return -(torch.nn.functional.logsigmoid(m(a)).mean()
    ...              + torch.nn.functional.logsigmoid(-m(b)).mean())
    >>> hist = train_critic(loss, net, x_p, x_q, max_steps=500, batch_size=64, lr=0.05, rng=0)
    >>> bool(abs(net[0].weight.item() - 1.0) < 0.3), len(hist) <= 500
    (True, True)
    """
    check_training(
        max_steps=max_steps,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        validation_fraction=validation_fraction,
        patience=patience,
    )
    if not isinstance(replace, bool):
        raise TypeError(f"`replace` must be True or False; got {replace!r}.")
    gen = check_rng(rng)
    (p_fit, p_val), (q_fit, q_val) = (_split(x, validation_fraction, gen) for x in (x_p, x_q))
    for name, part in (("x_p", p_fit), ("x_q", q_fit)):
        if part.shape[0] < 2:
            raise ValueError(
                f"`{name}` must leave at least 2 training rows after the validation split; "
                f"got {part.shape[0]}."
            )
    validate = p_val.shape[0] > 0 and q_val.shape[0] > 0
    tgen = torch_generator(gen, x_p.device)
    b_p, b_q = min(batch_size, p_fit.shape[0]), min(batch_size, q_fit.shape[0])
    epoch = max(math.ceil(p_fit.shape[0] / b_p), math.ceil(q_fit.shape[0] / b_q))

    def batch(x: torch.Tensor, b: int) -> torch.Tensor:
        if b == x.shape[0]:
            return x
        if not replace:
            return x[torch.randperm(x.shape[0], generator=tgen, device=x.device)[:b]]
        return x[torch.randint(x.shape[0], (b,), generator=tgen, device=x.device)]

    def held_out_loss() -> float:
        module.eval()
        with torch.no_grad():
            value = float(loss_fn(module, p_val, q_val))
        module.train()
        return value

    params = [p for p in module.parameters() if p.requires_grad]
    optimiser = adam(params, lr, weight_decay=weight_decay, fused=False)
    train_loss: list[float] = []
    wall_time: list[float] = []
    val_steps: list[int] = []
    val_loss: list[float] = []
    best, best_step, stopped_early = math.inf, 0, False
    best_state = _snapshot(module)
    if validate:
        best = held_out_loss()
        val_steps.append(0)
        val_loss.append(best)
    bar = progress_bar(max_steps, "critic", progress)
    start = time.perf_counter()
    module.train()
    try:
        for step in range(1, max_steps + 1):
            with torch.enable_grad():  # also when called under torch.no_grad()
                loss = loss_fn(module, batch(p_fit, b_p), batch(q_fit, b_q))
                try:
                    value = finite_step(optimiser, loss, params, "critic", step)
                except NonFiniteLossError as err:
                    module.load_state_dict(best_state)
                    value = float(loss.detach())
                    what = "gradient" if math.isfinite(value) else f"loss ({value})"
                    raise NonFiniteLossError(
                        f"critic training reached a non-finite {what} at step {step}; the "
                        f"critic was reset to its best state (step {best_step}). Lower `lr` "
                        "or standardise the inputs.",
                        step=step,
                    ) from err
            train_loss.append(value)
            wall_time.append(time.perf_counter() - start)
            bar.update()
            if validate and (step % epoch == 0 or step == max_steps):
                current = held_out_loss()
                val_steps.append(step)
                val_loss.append(current)
                bar.set_postfix(val_loss=f"{current:.4g}")
                if current < best:
                    best, best_step = current, step
                    best_state = _snapshot(module)
                elif step - best_step >= patience:
                    stopped_early = step < max_steps
                    break
    finally:
        bar.close()
        module.eval()
    if validate:
        module.load_state_dict(best_state)
    else:
        best_step = len(train_loss)
    n = len(train_loss)
    return TrainHistory(
        step=np.arange(1, n + 1, dtype=np.int64),
        model_loss=np.full(n, np.nan),
        critic_loss=np.asarray(train_loss, dtype=np.float64),
        wall_time=np.asarray(wall_time, dtype=np.float64),
        val_step=np.asarray(val_steps, dtype=np.int64),
        val_loss=np.asarray(val_loss, dtype=np.float64),
        best_step=best_step,
        stopped_early=stopped_early,
    )


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of ``module``'s state."""
    return {key: value.detach().clone() for key, value in module.state_dict().items()}
