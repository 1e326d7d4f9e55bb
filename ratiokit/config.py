"""Validated settings: :class:`SearchConfig` for a gradient-free search and
:class:`TrainConfig` for the alternating training loop, the two paths of :func:`ratiokit.fit`.

Settings are frozen dataclasses checked once, in ``__post_init__``, with the project's
error template, so a bad value fails where it is written rather than steps into a run.
"""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ratiokit._simulation import NAN_POLICIES
from ratiokit._validation import check_choice, check_int, check_positive

__all__ = [
    "GENERATOR_LOSSES",
    "N_PERMUTATIONS",
    "SEARCHES",
    "THETA_LR",
    "SearchConfig",
    "TrainConfig",
]

#: Forms of the model's loss: ``"non-saturating"`` (Goodfellow et al. 2014, sec. 3; for
#: f-GANs Nowozin et al. 2016, sec. 3.2) or ``"minimax"`` (the method's ``forward``).
GENERATOR_LOSSES = ("non-saturating", "minimax")
#: Adam's learning rate for a simulator's parameters when :func:`ratiokit.fit` is given no
#: config (``TrainConfig(lr=THETA_LR)``). Adam moves each coordinate of the unconstrained
#: ``u`` by at most about ``lr`` a step, so the first half of the default 2000 steps can
#: travel about 50: the default ``lr`` of 1e-3, suited to a network's weights, stopped a
#: 1-D location fit half-way to a minimiser 3 away. Larger steps jitter more, which the
#: average of the second half of the iterates smooths out.
THETA_LR = 0.05
#: Permutations (or wild-bootstrap draws) of every permutation test when none is given: the
#: two-sample test, a fit's goodness of fit, a ratio's diagnostics and the benchmark's power.
#: With B + 1 = 1000 the p-value's resolution is 0.001, and the Monte Carlo standard error
#: of a p-value near 0.05 is sqrt(0.05 * 0.95 / 1000) = 0.007.
N_PERMUTATIONS = 999
#: Optimisers of a gradient-free search (see :mod:`ratiokit._search`).
SEARCHES = ("auto", "nelder-mead", "l-bfgs-b", "global")


def _check_unit_interval(value: Any, name: str, *, closed_low: bool) -> float:
    """``value`` as a float in [0, 1) (``closed_low``) or (0, 1)."""
    text = "a real number in [0, 1)" if closed_low else "a real number in (0, 1)"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be {text}; got {value!r}.")
    low_ok = value >= 0.0 if closed_low else value > 0.0
    if not (low_ok and value < 1.0):
        raise ValueError(f"`{name}` must be {text}; got {value!r}.")
    return float(value)


@dataclass(frozen=True)
class SearchConfig:
    """Settings of the gradient-free search that fits a black-box NumPy simulator.

    The search minimises ``theta -> D(data, simulations at theta)`` under common random
    numbers, on the unconstrained ``u`` of the bounds' transforms (see
    :mod:`ratiokit._search`); :func:`ratiokit.fit` takes it as ``config=`` for kind
    ``"numpy"``.

    Parameters
    ----------
    search : {"auto", "nelder-mead", "l-bfgs-b", "global"}, default="auto"
        ``"auto"`` is Nelder-Mead from ``theta0``; if the simulations were whole numbers and
        the loss near its solution jumps by more than a twentieth of its seed-to-seed noise
        (``details["roughness"]``: integer draws that break the common random numbers), it
        then searches globally within ``bounds`` (differential evolution, then a polish) or,
        with an infinite bound, ends unconverged. ``"nelder-mead"`` and ``"l-bfgs-b"`` end
        unconverged on such a loss; ``"global"`` needs finite bounds.
    n_sim : int or None, default=None
        Simulated points per evaluation (>= 2); None: as many as the data.
    max_evaluations : int or None, default=None
        Parameter values simulated in the search (at least ``k + 2`` for ``k`` parameters);
        None: ``200 k`` locally, ``500 k`` globally.
    xtol : float, default=1e-3
        Nelder-Mead stops when the simplex is smaller than this in every coordinate of ``u``.
    sim_batch_size : int, default=1000
        Simulations per task (>= 1); each batch has its own fixed seed.
    nan_policy : {"fail", "drop"}, default="fail"
        NaN or infinite simulated rows make that simulation fail (the search treats its theta
        as infeasible); ``"drop"`` removes them instead (counted in ``details``), which
        biases the fit if NaNs depend on theta.

    Raises
    ------
    TypeError, ValueError
        If a setting has the wrong type or is out of range.

    Examples
    --------
    >>> SearchConfig(search="global", max_evaluations=300).search
    'global'
    >>> SearchConfig(xtol=0)
    Traceback (most recent call last):
    ...
    ValueError: `xtol` must be a positive real number; got 0.
    """

    search: str = "auto"
    n_sim: int | None = None
    max_evaluations: int | None = None
    xtol: float = 1e-3
    sim_batch_size: int = 1000
    nan_policy: str = "fail"

    def __post_init__(self) -> None:
        check_choice(self.search, "search", SEARCHES)
        n_sim = self.n_sim if self.n_sim is None else check_int(self.n_sim, "n_sim", minimum=2)
        budget = self.max_evaluations
        if budget is not None:
            budget = check_int(budget, "max_evaluations", minimum=3)  # k + 2 for k = 1
        xtol = check_positive(self.xtol, "xtol")
        batch = check_int(self.sim_batch_size, "sim_batch_size", minimum=1)
        check_choice(self.nan_policy, "nan_policy", NAN_POLICIES)
        # Canonical types, so equal settings compare (and serialise) equal.
        for name, value in (
            ("n_sim", n_sim),
            ("max_evaluations", budget),
            ("xtol", xtol),
            ("sim_batch_size", batch),
        ):
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-serialisable dict."""
        return asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    """Settings of the alternating critic/model loop (:func:`ratiokit.train`).

    Each step takes ``critic_steps`` Adam steps of the critic on the method's ratio loss
    (its parameters ascend the discrepancy), then one Adam step of the model on the
    generative loss (it descends the discrepancy).

    Parameters
    ----------
    max_steps : int, default=2000
        Model steps (>= 0).
    critic_steps : int, default=1
        Critic steps per model step (>= 1); skipped for methods without trainable critic
        parameters.
    batch_size : int, default=256
        Rows of data and of model samples per step (>= 2).
    lr : float, default=1e-3
        Adam's learning rate for the model (a network's weights). Without a config,
        :func:`ratiokit.fit` trains a simulator's parameters with ``lr=THETA_LR`` (0.05).
    critic_lr : float, default=1e-3
        Adam's learning rate for the critic.
    betas : tuple of two floats, default=(0.5, 0.999)
        Adam's ``(beta1, beta2)`` for both, each in [0, 1).
    generator_loss : {"non-saturating", "minimax"}, default="non-saturating"
        The model's loss: the method's non-saturating form where it has one (e.g.
        ``-E_q[log sigmoid T]`` for the classifier), or its ``forward`` (minimax).
    gradient_penalty : float, default=0.0
        Weight ``gamma >= 0`` of the zero-centred penalty ``gamma / 2 E_p |grad_x T(x)|^2``
        on the critic's score at data rows (R1, Mescheder, Geiger and Nowozin 2018).
    spectral_norm : bool, default=False
        Spectrally normalise every linear and convolution layer of the critic.
    ema : float or None, default=None
        Decay in (0, 1) of an exponential moving average of the model's parameters
        (``min(ema, (1 + t) / (10 + t))`` after t updates), kept as a separate copy.
    device : str or None, default=None
        Where to train; ``None``: the device of the model's parameters.
    checkpoint_every : int or None, default=None
        Write a checkpoint every this many steps (and at the end) when a path is given.
    progress : bool or None, default=None
        A progress bar: ``None`` shows one only when stderr is a terminal, once a run has
        lasted 1 s (quiet in logs and pipes); True always; False never.

    Raises
    ------
    TypeError, ValueError
        If a setting has the wrong type or is out of range.

    Examples
    --------
    >>> TrainConfig(max_steps=100, critic_steps=5).critic_steps
    5
    >>> TrainConfig(batch_size=1)
    Traceback (most recent call last):
    ...
    ValueError: `batch_size` must be an integer >= 2; got 1.
    """

    max_steps: int = 2000
    critic_steps: int = 1
    batch_size: int = 256
    lr: float = 1e-3
    critic_lr: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.999)
    generator_loss: str = "non-saturating"
    gradient_penalty: float = 0.0
    spectral_norm: bool = False
    ema: float | None = None
    device: str | None = None
    checkpoint_every: int | None = None
    progress: bool | None = None

    def __post_init__(self) -> None:
        check_int(self.max_steps, "max_steps", minimum=0)
        check_int(self.critic_steps, "critic_steps", minimum=1)
        check_int(self.batch_size, "batch_size", minimum=2)
        lr, critic_lr = check_positive(self.lr, "lr"), check_positive(self.critic_lr, "critic_lr")
        if isinstance(self.betas, str) or not hasattr(self.betas, "__len__"):
            raise TypeError(
                f"`betas` must be a pair of real numbers in [0, 1); got {self.betas!r}."
            )
        if len(self.betas) != 2:
            raise ValueError(
                f"`betas` must be a pair of real numbers in [0, 1); got {self.betas!r}."
            )
        betas = tuple(_check_unit_interval(b, "betas", closed_low=True) for b in self.betas)
        check_choice(self.generator_loss, "generator_loss", GENERATOR_LOSSES)
        penalty = self.gradient_penalty
        if isinstance(penalty, bool) or not isinstance(penalty, numbers.Real):
            raise TypeError(f"`gradient_penalty` must be a real number >= 0; got {penalty!r}.")
        if not (penalty >= 0.0 and penalty < float("inf")):
            raise ValueError(f"`gradient_penalty` must be a real number >= 0; got {penalty!r}.")
        if not isinstance(self.spectral_norm, bool):
            raise TypeError(f"`spectral_norm` must be True or False; got {self.spectral_norm!r}.")
        ema = self.ema
        if ema is not None:
            ema = _check_unit_interval(ema, "ema", closed_low=False)
        device = self.device
        if device is not None:
            if not isinstance(device, str | torch.device):
                raise TypeError(f"`device` must be None or a device string; got {device!r}.")
            try:
                device = str(torch.device(device))
            except RuntimeError as err:
                raise ValueError(
                    f"`device` must be None or a device such as 'cpu' or 'cuda'; got {device!r}."
                ) from err
        if self.checkpoint_every is not None:
            check_int(self.checkpoint_every, "checkpoint_every", minimum=1)
        if self.progress is not None and not isinstance(self.progress, bool):
            raise TypeError(f"`progress` must be None, True or False; got {self.progress!r}.")
        # Canonical types, so equal settings compare (and serialise) equal.
        for name, value in (
            ("max_steps", int(self.max_steps)),
            ("critic_steps", int(self.critic_steps)),
            ("batch_size", int(self.batch_size)),
            ("lr", lr),
            ("critic_lr", critic_lr),
            ("betas", betas),
            ("gradient_penalty", float(penalty)),
            ("ema", ema),
            ("device", device),
        ):
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-serialisable dict (``betas`` as a list)."""
        out = asdict(self)
        out["betas"] = list(self.betas)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The inverse of :meth:`to_dict` (validated).

        Raises
        ------
        TypeError, ValueError
            If ``values`` names an unknown setting or holds a bad value.
        """
        if not isinstance(values, dict):
            raise TypeError(f"`values` must be a dict of settings; got {type(values).__name__}.")
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"`values` must name settings of TrainConfig; got unknown {unknown}.")
        values = dict(values)
        if "betas" in values and isinstance(values["betas"], list):
            values["betas"] = tuple(values["betas"])
        return cls(**values)
