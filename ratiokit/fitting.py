"""Front door 3, fit: choose a simulator's parameters by driving a discrepancy to zero.

``theta_hat = argmin_theta D(P_data, Q_theta)``, with ``D`` any registered method estimated
from the data and simulations. :func:`fit` validates the arguments and converts the data
once, resolves the simulator's kind, then dispatches to one of two paths, each with its own
validated settings (``config=``):

- ``"numpy"``: a black box ``simulator(theta, n, rng) -> ndarray``; a gradient-free search
  (:class:`~ratiokit.config.SearchConfig`) minimises the method's statistic under common
  random numbers, with simulations batched and fanned out through ``executor=`` (see
  :mod:`ratiokit._search`, :mod:`ratiokit._simulation`);
- ``"torch"``: ``simulator(theta, n, generator) -> Tensor``, differentiable in ``theta``
  (reparameterised draws), and ``"module"``: a :class:`torch.nn.Module` generator, noise to
  samples; ``theta``, or the module's weights, descend the method's loss in the alternating
  critic/model loop (:class:`~ratiokit.config.TrainConfig`; a GAN with
  ``method="classifier"``; see :mod:`ratiokit._fit_torch`).

The kind is declared (``kind=``) or read from the simulator, which is never run to guess
it: an ``nn.Module`` is ``"module"``; an object with a bool ``differentiable`` attribute
(a :class:`~ratiokit.simulators.Simulator`) is ``"torch"`` when differentiable, else
``"numpy"``; any other callable is ``"numpy"``, the black-box contract. A torch callable
needs ``kind="torch"`` (a fit that fails at its first simulation says so).

Which methods suit which kind: a gradient-free search needs an objective that is a smooth
function of theta under common random numbers, as ``mmd``, ``energy`` and ``moments`` are
(their critic is closed-form, or fixed from the data). Methods that select a critic by
cross-validation at every theta (``ulsif``, ``rulsif``, ``kliep``) jump between selections
and strand a local search; the trained critics (``classifier``, ``fdiv``, ``bregman``)
belong in the alternating loop of the gradient-based kinds.
"""

from __future__ import annotations

import numbers
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ratiokit._fit_torch import fit_torch, infer_latent_dim, torch_replicate
from ratiokit._rng import check_rng
from ratiokit._search import (
    INTERVAL_METHOD,
    SearchSpec,
    bootstrap,
    bootstrap_correlation,
    bootstrap_interval,
    run_search,
)
from ratiokit._simulation import check_executor, run_tasks_keeping
from ratiokit._transforms import BoxTransform, check_parameters
from ratiokit._validation import as_sample, check_choice, check_int, check_positive
from ratiokit.config import THETA_LR, SearchConfig, TrainConfig
from ratiokit.exceptions import ConvergenceWarning, ExecutorError
from ratiokit.fitted import SIMULATOR_KINDS, FittedSimulator
from ratiokit.methods import Discrepancy, fits_on_split, get_method
from ratiokit.results import FitResult
from ratiokit.training import check_overwrite_flag

__all__ = ["KINDS", "fit"]

KINDS = ("auto", *SIMULATOR_KINDS)


def _resolve_kind(simulator: Any, kind: str) -> tuple[str, bool]:
    """The simulator's kind, and whether it was taken by default (a plain callable).

    Reads the simulator's type and ``differentiable`` attribute; never calls it.
    """
    if kind != "auto":
        return kind, False
    if isinstance(simulator, nn.Module):
        return "module", False
    declared = getattr(simulator, "differentiable", None)
    if isinstance(declared, bool):
        return ("torch" if declared else "numpy"), False
    return "numpy", True


@dataclass
class _Problem:
    """The validated arguments of one fit: what both paths share, and the chosen path's."""

    kind: str
    guessed: bool  # kind "numpy" by default for a plain callable
    method: Discrepancy
    data: torch.Tensor  # (n, d), detached, on the data's device
    data_np: np.ndarray  # the same rows, on the CPU
    config: SearchConfig | TrainConfig
    theta0: np.ndarray | None
    transform: BoxTransform | None
    names: tuple[str, ...]
    latent_dim: int | None
    executor: Any
    max_retries: int
    timeout: float | None
    n_bootstrap: int
    level: float
    checkpoint: Any
    resume: bool
    overwrite: bool


@dataclass
class _Outcome:
    """What a path returns: the estimate and its bookkeeping, in the result's terms."""

    theta: np.ndarray | None
    loss: float
    converged: bool
    history: dict[str, np.ndarray]
    n_steps: int
    n_simulations: int
    details: dict[str, Any]
    failures: list[tuple[tuple[float, ...], str]] = field(default_factory=list)
    replicates: np.ndarray | None = None
    model: nn.Module | None = None
    error: ExecutorError | None = None


def _check_level(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`confidence_level` must be a real number in (0, 1); got {value!r}.")
    if not 0.0 < value < 1.0:
        raise ValueError(f"`confidence_level` must be a real number in (0, 1); got {value!r}.")
    return float(value)


def _check_config(config: Any, kind: str, gradient_only: dict[str, Any]) -> Any:
    """The path's settings: ``config``, or its default, after checking it suits ``kind``."""
    if config is not None and not isinstance(config, SearchConfig | TrainConfig):
        raise TypeError(
            f"`config` must be None, a SearchConfig or a TrainConfig; got {type(config).__name__}."
        )
    if kind == "numpy":
        if isinstance(config, TrainConfig):
            raise ValueError(
                "`config` must be a SearchConfig or None for a black-box NumPy simulator "
                "(kind 'numpy'), fitted by a gradient-free search; got a TrainConfig. Pass "
                "`kind`='torch' to train a differentiable simulator."
            )
        given = [name for name, value in gradient_only.items() if value not in (None, False)]
        if given:
            raise ValueError(
                f"`{given[0]}` must be left unset for a black-box NumPy simulator (kind "
                f"'numpy'): it is a setting of the training loop; got {gradient_only[given[0]]!r}."
            )
        return SearchConfig() if config is None else config
    if isinstance(config, SearchConfig):
        raise ValueError(
            f"`config` must be a TrainConfig or None for kind {kind!r}, fitted by gradient "
            "descent; got a SearchConfig. Pass `kind`='numpy' for a gradient-free search."
        )
    if config is None:  # see THETA_LR: a network's default step is too short for a parameter
        return TrainConfig(lr=THETA_LR) if kind == "torch" else TrainConfig()
    return config


def _fit_iv(
    simulator: Any,
    data: Any,
    *,
    method: Any,
    theta0: Any,
    bounds: Any,
    kind: Any,
    config: Any,
    executor: Any,
    max_retries: Any,
    timeout: Any,
    n_bootstrap: Any,
    confidence_level: Any,
    param_names: Any,
    latent_dim: Any,
    checkpoint: Any,
    resume: Any,
    overwrite: Any,
) -> _Problem:
    """Validate every argument of :func:`fit` once; convert the data once."""
    if not callable(simulator):
        raise TypeError(
            "`simulator` must be a torch.nn.Module or a callable simulator(theta, n, rng); "
            f"got {type(simulator).__name__}."
        )
    estimator = get_method(method)
    kind, guessed = _resolve_kind(simulator, check_choice(kind, "kind", KINDS))
    x = as_sample(data, "data", min_samples=estimator.min_samples).detach()
    gradient_only = {
        "checkpoint": checkpoint,
        "resume": resume,
        "overwrite": overwrite,
        "latent_dim": latent_dim,
    }
    cfg = _check_config(config, kind, gradient_only)
    check_overwrite_flag(overwrite, checkpoint, resume)
    n_boot = check_int(n_bootstrap, "n_bootstrap", minimum=0)
    if kind == "module":
        if not isinstance(simulator, nn.Module):
            raise TypeError(
                "`simulator` must be a torch.nn.Module for `kind`='module'; got "
                f"{type(simulator).__name__}."
            )
        if theta0 is not None or bounds is not None:
            raise ValueError(
                "`theta0` and `bounds` must be None for a generator module, whose weights are "
                "fitted; got a value."
            )
        if param_names is not None:
            raise ValueError(
                "`param_names` must be None for a generator module (its weights are not "
                f"named parameters); got {param_names!r}."
            )
        if n_boot:
            raise ValueError(
                "`n_bootstrap` must be 0 for a generator module (its weights have no confidence "
                f"intervals); got {n_bootstrap}."
            )
        start, transform, names = None, None, ()
        latent = (
            infer_latent_dim(simulator)
            if latent_dim is None
            else check_int(latent_dim, "latent_dim", minimum=1)
        )
    else:
        if latent_dim is not None:
            raise ValueError(
                f"`latent_dim` must be None for kind {kind!r} (it is a generator module's "
                f"noise dimension); got {latent_dim!r}."
            )
        latent = None
        start, transform, names = check_parameters(simulator, theta0, bounds, param_names)
        if kind == "numpy":
            _check_search(cfg, transform, estimator)
    return _Problem(
        kind=kind,
        guessed=guessed,
        method=estimator,
        data=x,
        data_np=x.cpu().numpy(),
        config=cfg,
        theta0=start,
        transform=transform,
        names=names,
        latent_dim=latent,
        executor=check_executor(executor),
        max_retries=check_int(max_retries, "max_retries", minimum=0),
        timeout=None if timeout is None else check_positive(timeout, "timeout"),
        n_bootstrap=n_boot,
        level=_check_level(confidence_level),
        checkpoint=checkpoint,
        resume=resume,
        overwrite=overwrite,
    )


def _check_search(config: SearchConfig, transform: BoxTransform, method: Discrepancy) -> None:
    """The checks of a SearchConfig that depend on the parameters and the method."""
    if config.search == "global" and not transform.finite:
        raise ValueError(
            "`bounds` must be finite on both sides of every parameter for "
            f"`search`='global'; got {transform.bounds.tolist()}."
        )
    if config.n_sim is not None:
        check_int(config.n_sim, "n_sim", minimum=method.min_samples)
    if config.max_evaluations is not None:
        check_int(config.max_evaluations, "max_evaluations", minimum=transform.low.size + 2)


def _search_path(simulator: Any, p: _Problem, rngs: list[np.random.Generator]) -> _Outcome:
    """Kind ``"numpy"``: the gradient-free search of :mod:`ratiokit._search`, then its
    bootstrap."""
    fit_rng, boot_rng, _ = rngs
    cfg, x = p.config, p.data_np
    k = p.transform.low.size
    budget = 200 * k if cfg.search != "global" else 500 * k  # "auto" may add 500 k
    spec = SearchSpec(
        simulator=simulator,
        method=p.method,
        refit=fits_on_split(p.method),
        transform=p.transform,
        n_sim=x.shape[0] if cfg.n_sim is None else cfg.n_sim,
        sim_batch_size=cfg.sim_batch_size,
        n_features=x.shape[1],
        nan_policy=cfg.nan_policy,
        search=cfg.search,
        max_evaluations=budget if cfg.max_evaluations is None else cfg.max_evaluations,
        xtol=cfg.xtol,
    )
    try:
        out = run_search(spec, x, p.theta0, fit_rng, p.executor, p.max_retries, p.timeout)
    except ValueError as err:
        if p.guessed and ("torch" in str(err) or "Tensor" in str(err)):
            raise ValueError(
                f"{err} The simulator was called as a NumPy black box simulator(theta, n, "
                "rng), the default for a plain callable; for a differentiable torch "
                "simulator(theta, n, generator), pass `kind`='torch'."
            ) from err
        raise
    details = {
        "search": spec.search,
        "message": out.message,
        "n_sim": spec.n_sim,
        "n_dropped": out.n_dropped,
        "n_retries": out.n_retries,
        "interrupted": out.interrupted,
        "nan_policy": spec.nan_policy,
    }
    if out.roughness is not None:
        details["roughness"] = out.roughness
    result = _Outcome(
        theta=out.theta,
        loss=out.loss,
        converged=out.converged,
        history={"loss": out.losses, "theta": out.thetas},
        n_steps=out.losses.size,
        n_simulations=out.n_simulations,
        details=details,
        failures=out.failures,
        error=out.error,
    )
    if p.n_bootstrap and out.error is None:
        replicates, n_sims, n_retries, result.error = bootstrap(
            spec, x, out.theta, p.n_bootstrap, boot_rng, p.executor, p.max_retries, p.timeout
        )
        result.replicates = replicates
        result.n_simulations += n_sims
        details["n_retries"] += n_retries
    return result


def _gradient_path(simulator: Any, p: _Problem, rngs: list[np.random.Generator]) -> _Outcome:
    """Kinds ``"torch"`` and ``"module"``: the alternating loop of
    :mod:`ratiokit._fit_torch`, then (``"torch"``) its bootstrap."""
    fit_rng, boot_rng, critic_rng = rngs
    cfg, estimator = p.config, p.method
    if not fits_on_split(estimator):  # a label-free critic (MMD's bandwidth): fixed by the data
        estimator.fit_critic(p.data, p.data, rng=critic_rng)
    out = fit_torch(
        p.kind,
        simulator,
        p.data,
        estimator,
        cfg,
        p.theta0,
        p.transform,
        p.latent_dim,
        fit_rng,
        p.checkpoint,
        p.resume,
        p.overwrite,
        names=p.names,
    )
    details: dict[str, Any] = {"config": cfg.to_dict(), "interrupted": out.interrupted}
    if p.kind == "module":
        details = {"latent_dim": p.latent_dim, **details}
    if out.message is not None:
        details["message"] = out.message
    result = _Outcome(
        theta=out.theta,
        loss=out.loss,
        converged=out.converged,
        history=out.history,
        n_steps=out.n_steps,
        n_simulations=out.n_simulations,
        details=details,
        model=out.model,
    )
    if p.n_bootstrap:
        seeds = [g.bit_generator.seed_seq for g in boot_rng.spawn(p.n_bootstrap)]
        tasks = [(simulator, p.data_np, estimator, cfg, out.theta, p.transform, s) for s in seeds]
        thetas, _, result.error = run_tasks_keeping(
            p.executor,
            torch_replicate,
            tasks,
            max_retries=p.max_retries,
            describe=lambda i: f"bootstrap {i}",
            timeout=p.timeout,
            missing=np.full(out.theta.shape, np.nan),
        )
        result.replicates = np.vstack(thetas)
    return result


def fit(
    simulator: Any,
    data: Any,
    *,
    method: str | Discrepancy = "mmd",
    theta0: Any = None,
    bounds: Any = None,
    kind: str = "auto",
    config: SearchConfig | TrainConfig | None = None,
    executor: Any = None,
    max_retries: int = 2,
    timeout: float | None = 3600.0,
    n_bootstrap: int = 0,
    confidence_level: float = 0.95,
    param_names: Any = None,
    latent_dim: int | None = None,
    checkpoint: Any = None,
    resume: bool = False,
    overwrite: bool = False,
    rng: Any = None,
) -> FitResult:
    r"""Fit a simulator to data: ``theta_hat = argmin_theta D(P_data, Q_theta)``.

    Parameters
    ----------
    simulator : nn.Module or callable
        A generator network (noise to samples), a differentiable torch simulator
        ``simulator(theta, n, generator) -> Tensor (n, d)`` or a NumPy black box
        ``simulator(theta, n, rng) -> ndarray (n, d)`` (all randomness from ``rng``); see the
        module notes. A :class:`~ratiokit.simulators.Simulator` also supplies parameter
        names and bounds.
    data : array-like or Tensor of shape (n, d) or (n,)
        The observations.
    method : str or Discrepancy, default="mmd"
        The discrepancy minimised (a name or an instance, copied).
    theta0 : array-like of shape (k,), default=None
        Start of a local search or of gradient descent, strictly inside ``bounds``;
        default: the centre of the bounds (``u = 0`` in the transformed coordinates).
    bounds : sequence of (low, high), default=None
        One pair per parameter, ``None`` or infinite for an open side; enforced by
        transforms (``exp`` for a half-line, a scaled sigmoid for an interval); default:
        the simulator's ``bounds`` if it has them, else none.
    kind : {"auto", "module", "torch", "numpy"}, default="auto"
        How the simulator is called (see the module notes); ``"auto"`` reads it from the
        simulator without running it: a module, a Simulator's ``differentiable``, else
        ``"numpy"``. Pass ``"torch"`` for a differentiable torch callable, or ``"numpy"``
        for a gradient-free search of a differentiable Simulator.
    config : SearchConfig or TrainConfig, default=None
        Settings of the path: a :class:`~ratiokit.config.SearchConfig` for kind
        ``"numpy"`` (default ``SearchConfig()``), a :class:`~ratiokit.config.TrainConfig`
        for kinds ``"module"`` (default ``TrainConfig()``) and ``"torch"`` (default
        ``TrainConfig(lr=THETA_LR)``, 0.05). The other kind's config is a ValueError.
    executor : concurrent.futures.Executor or dask.distributed.Client, default=None
        Runs simulation batches and bootstrap replicates; default: in this process. Every
        path gives the same result bit for bit (for the bootstrap of a gradient-based fit,
        a process-based one: its replicates seed torch's global RNG, which threads share).
    max_retries : int, default=2
        Resubmissions of an executor task that failed (not a simulator error). A task that
        a broken executor cannot run (a process pool whose worker died) or that dask gave
        up on (``KilledWorker``: it killed ``allowed-failures`` + 1 workers) is not
        resubmitted: the fit stops with an :class:`ExecutorError`.
    timeout : float or None, default=3600.0
        Longest wait, in seconds, for the next executor task (a simulation batch or a
        bootstrap replicate) to finish before the fit stops with an :class:`ExecutorError`
        (a cluster that lost its workers never finishes its tasks); None waits forever.
    n_bootstrap : int, default=0
        Bootstrap replicates (data resampled, new random numbers, refitted from the
        estimate) for confidence intervals that contain the estimate (Student-t intervals
        on the search's unconstrained scale, see :func:`ratiokit._search.bootstrap_interval`)
        and the replicates' correlation matrix.
    confidence_level : float, default=0.95
    param_names : sequence of str, default=None
        One unique name per parameter, for the result's repr and plots; default: the
        simulator's ``param_names``, else ``theta[0]``, ``theta[1]``, ...
    latent_dim : int, default=None
        Noise dimension of a generator module (default: its ``latent_dim`` attribute or the
        width of its first linear layer); kind ``"module"`` only.
    checkpoint : str or path-like, default=None
        Checkpoint file of the training loop (kinds ``"module"`` and ``"torch"``).
    resume : bool, default=False
        Continue from ``checkpoint`` (the data and settings must be the checkpoint's).
    overwrite : bool, default=False
        Replace a file at ``checkpoint`` that is not a checkpoint of this run.
    rng : None, int, SeedSequence or Generator, default=None
        An int gives bit-identical results on the CPU.

    Returns
    -------
    FitResult
        The estimate and its bookkeeping, as data; ``result.fitted`` is the
        :class:`~ratiokit.fitted.FittedSimulator` that simulates at the estimate.

    Raises
    ------
    ValueError, TypeError
        For invalid arguments (named), a ``config`` of the other path's kind, or a simulator
        that fails at ``theta0`` or at every parameter value tried (the message names theta;
        a plain callable that failed as a NumPy black box on torch code is told to pass
        ``kind="torch"``).
    ExecutorError
        A :class:`RuntimeError` for executor tasks that cannot finish (see ``max_retries``
        and ``timeout``), naming them (a simulation by its theta) and chained from the
        executor's exception. Its ``result`` is the fit up to the failure (None if no
        evaluation finished): a stopped search has ``converged=False`` and every finished
        evaluation in its history; unfinished bootstrap replicates are NaN rows.

    Warns
    -----
    UserWarning
        If the simulator failed at some parameter values (the first is named; all are in
        ``FitResult.failures``).
    ConvergenceWarning
        If the fit ended unconverged (not when interrupted): the search did not meet its
        tolerance, or the iterates of gradient descent had not stopped moving over the
        second half of the steps (``details["message"]`` says which moved, and how).

    Examples
    --------
    >>> import numpy as np
    >>> from ratiokit.simulators import GaussianLocationScale
    >>> sim = GaussianLocationScale(theta_true=(1.0, 2.0))
    >>> data = sim.sample(300, rng=0)
    >>> res = fit(sim, data, theta0=[0.0, 1.0], kind="numpy", rng=0)
    >>> np.round(res.theta, 1).tolist(), res.converged  # truth (1, 2), standard errors ~0.16
    ([0.9, 2.0], True)
    >>> res.fitted.simulate(2, rng=0).shape
    (2, 1)
    """
    start_time = time.perf_counter()
    p = _fit_iv(
        simulator,
        data,
        method=method,
        theta0=theta0,
        bounds=bounds,
        kind=kind,
        config=config,
        executor=executor,
        max_retries=max_retries,
        timeout=timeout,
        n_bootstrap=n_bootstrap,
        confidence_level=confidence_level,
        param_names=param_names,
        latent_dim=latent_dim,
        checkpoint=checkpoint,
        resume=resume,
        overwrite=overwrite,
    )
    rngs = check_rng(rng).spawn(3)  # the fit's, the bootstrap's and a fixed critic's
    path = _search_path if p.kind == "numpy" else _gradient_path
    out = path(simulator, p, rngs)
    details: dict[str, Any] = {
        "kind": p.kind,
        "bounds": None if p.transform is None else p.transform.bounds.tolist(),
        **out.details,
    }
    if out.theta is not None:
        details["theta0"] = p.theta0.tolist()
    interval = correlation = None
    if out.replicates is not None:
        details["n_bootstrap_failed"] = int((~np.isfinite(out.replicates).all(1)).sum())
        interval = bootstrap_interval(out.theta, out.replicates, p.level, p.transform)
        correlation = bootstrap_correlation(out.replicates)
    if out.error is None:
        _warn(out.failures, out.converged, details, p.kind)
    theta = None if out.theta is None else np.asarray(out.theta, dtype=np.float64)
    fitted = FittedSimulator(
        simulator if out.model is None else out.model,
        p.kind,
        p.data_np.shape[1],
        theta=theta,
        latent_dim=p.latent_dim,
    )
    result = FitResult(
        theta=theta,
        param_names=p.names,
        loss=float(out.loss),
        converged=bool(out.converged),
        method=p.method.name,
        kind=p.kind,
        n_steps=int(out.n_steps),
        n_simulations=int(out.n_simulations),
        wall_time=time.perf_counter() - start_time,
        history=out.history,
        confidence_interval=interval,
        correlation=correlation,
        interval_method=INTERVAL_METHOD,
        confidence_level=p.level,
        bootstrap=out.replicates,
        failures=tuple(out.failures),
        details=details,
        data=p.data_np,
        fitted=fitted,
    )
    if out.error is not None:
        out.error.result = result
        out.error.args = (f"{out.error} The fit up to this failure is this error's `result`.",)
        raise out.error
    return result


def _warn(failures: list, converged: bool, details: dict[str, Any], kind: str) -> None:
    if failures:
        theta, why = failures[0]
        warnings.warn(
            f"the simulator or method failed at {len(failures)} parameter values, treated as "
            f"infeasible; the first: {why}. All are in `FitResult.failures`.",
            UserWarning,
            stacklevel=3,
        )
    if not converged and not details.get("interrupted"):
        message = details.get("message", "parameters still drifting")
        if kind == "numpy":
            advice = _search_advice(details["search"], message)
        elif "gradient is zero" in message:
            advice = "start nearer the data (`theta0`) or rescale the simulator's output"
        else:
            advice = f"raise `config.max_steps` (now {details['config']['max_steps']})"
            advice += " or `config.lr`" if kind == "torch" else ""
        warnings.warn(
            f"the fit did not converge ({message}); {advice}.",
            ConvergenceWarning,
            stacklevel=3,
        )
    if details.get("n_bootstrap_failed"):
        warnings.warn(
            f"{details['n_bootstrap_failed']} bootstrap replicates failed and were left out "
            "of the confidence intervals.",
            UserWarning,
            stacklevel=3,
        )


def _search_advice(search: str, message: str) -> str:
    if "seed-to-seed noise" in message:
        return (
            "draw with ratiokit.simulators.binomial/poisson/categorical, or give finite "
            "`bounds` and `search`='auto' or 'global'"
        )
    if search == "l-bfgs-b":
        return "use `search`='auto' (gradient-free), or raise `max_evaluations`"
    if search == "global":
        return "raise `max_evaluations`"
    return "raise `max_evaluations` or `xtol`, or try `search`='global'"
