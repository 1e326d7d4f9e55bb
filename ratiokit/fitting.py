"""Front door 3, fit: choose a simulator's parameters by driving a discrepancy to zero.

``theta_hat = argmin_theta D(P_data, Q_theta)``, with ``D`` any registered method estimated
from the data and simulations. Three kinds of simulator (``kind="auto"`` tells them apart):

- ``"module"``: a :class:`torch.nn.Module` generator, noise to samples; its weights are
  trained by the alternating critic/model loop (a GAN with ``method="classifier"``);
- ``"torch"``: ``simulator(theta, n, generator) -> Tensor``, differentiable in ``theta``
  (reparameterised draws); ``theta`` descends the method's loss in the same loop;
- ``"numpy"``: a black box ``simulator(theta, n, rng) -> ndarray``; a gradient-free search
  minimises the method's statistic under common random numbers, with simulations batched and
  fanned out through ``executor=`` (see :mod:`ratiokit._search`, :mod:`ratiokit._simulation`).

Auto-detection: a module is ``"module"``; a :class:`~ratiokit.simulators.Simulator` is
``"torch"`` when differentiable; any other callable is probed once with a tensor ``theta``
that requires grad and a :class:`torch.Generator`, and is ``"torch"`` if it returns a tensor
that requires grad, else ``"numpy"``. The probe runs in this process: pass ``kind=`` for a
simulator with side effects.

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
from typing import Any

import numpy as np
import torch
from torch import nn

from ratiokit._fit_torch import fit_torch, infer_latent_dim, torch_replicate
from ratiokit._rng import check_rng, torch_generator
from ratiokit._search import (
    INTERVAL_METHOD,
    SEARCHES,
    SearchSpec,
    bootstrap,
    bootstrap_correlation,
    bootstrap_interval,
    run_search,
)
from ratiokit._simulation import (
    NAN_POLICIES,
    check_executor,
    check_output,
    format_theta,
    run_tasks_keeping,
)
from ratiokit._transforms import BoxTransform, check_bounds
from ratiokit._validation import as_sample, check_choice, check_int, check_positive
from ratiokit.config import THETA_LR, TrainConfig
from ratiokit.exceptions import ConvergenceWarning
from ratiokit.methods import Discrepancy, get_method
from ratiokit.methods import fits_on_split as _splits
from ratiokit.results import FitResult
from ratiokit.training import check_overwrite_flag

__all__ = ["KINDS", "fit", "simulate_at"]

KINDS = ("auto", "module", "torch", "numpy")


def _detect_kind(simulator: Any, theta: np.ndarray | None) -> str:
    if isinstance(simulator, nn.Module):
        return "module"
    if isinstance(getattr(simulator, "differentiable", None), bool):
        return "torch" if simulator.differentiable else "numpy"
    probe = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
    try:
        with warnings.catch_warnings(), torch.random.fork_rng():
            warnings.simplefilter("ignore")
            out = simulator(probe, 2, torch.Generator().manual_seed(0))
    except Exception:  # noqa: BLE001 - a NumPy simulator fails on torch arguments
        return "numpy"
    return "torch" if isinstance(out, torch.Tensor) and out.requires_grad else "numpy"


def _check_theta0(theta0: Any, k: int | None) -> np.ndarray:
    try:
        arr = np.array(theta0, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`theta0` must be an array of real numbers; got {theta0!r}.") from err
    if k is not None and arr.size != k:
        raise ValueError(f"`theta0` must hold {k} parameters; got {arr.size}.")
    if arr.size == 0 or not np.isfinite(arr).all():
        raise ValueError(f"`theta0` must be a non-empty array of finite numbers; got {theta0!r}.")
    return arr


def _fit_iv(
    simulator: Any,
    data: Any,
    method: Any,
    theta0: Any,
    bounds: Any,
    kind: Any,
    search: Any,
    config: Any,
    checkpoint: Any,
    n_bootstrap: Any,
    param_names: Any,
) -> dict[str, Any]:
    if not callable(simulator):
        raise TypeError(
            "`simulator` must be a torch.nn.Module or a callable simulator(theta, n, rng); "
            f"got {type(simulator).__name__}."
        )
    estimator = get_method(method)
    kind = check_choice(kind, "kind", KINDS)
    search = check_choice(search, "search", SEARCHES)
    x = as_sample(data, "data", min_samples=estimator.min_samples)
    out: dict[str, Any] = {"method": estimator, "data": x, "search": search}
    if kind == "module" or (kind == "auto" and isinstance(simulator, nn.Module)):
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
        if n_bootstrap:
            raise ValueError(
                "`n_bootstrap` must be 0 for a generator module (its weights have no confidence "
                f"intervals); got {n_bootstrap}."
            )
        out.update(kind="module", theta0=None, transform=None, names=())
    else:
        given = None if param_names is None else _check_names(param_names)
        names = tuple(getattr(simulator, "param_names", ()) or ())
        known = getattr(simulator, "bounds", None) if bounds is None else bounds
        k = len(names) or None
        k = k if theta0 is None else _check_theta0(theta0, k).size
        k = k or (len(known) if known is not None else None)
        if k is None:
            raise ValueError(
                "`theta0` must be given (or `bounds`) to know how many parameters the simulator "
                "takes; got None."
            )
        transform = BoxTransform(check_bounds(known, k))
        if theta0 is None:
            start = transform.to_theta(np.zeros(k))  # the centre of the box
        else:
            start = _check_theta0(theta0, k)
            if not transform.inside(start):
                raise ValueError(
                    f"`theta0` must lie strictly inside `bounds` {transform.bounds.tolist()}; "
                    f"got {start.tolist()}."
                )
        if search == "global" and not transform.finite:
            raise ValueError(
                "`bounds` must be finite on both sides of every parameter for "
                f"`search`='global'; got {transform.bounds.tolist()}."
            )
        if given is not None and len(given) != k:
            raise ValueError(
                f"`param_names` must hold one name per parameter ({k}); got {len(given)}."
            )
        kind = _detect_kind(simulator, start) if kind == "auto" else kind
        names = names if len(names) == k else tuple(f"theta[{i}]" for i in range(k))
        names = names if given is None else given
        out.update(kind=kind, theta0=start, transform=transform, names=names)
    if out["kind"] == "numpy":
        if config is not None or checkpoint is not None:
            raise ValueError(
                "`config` and `checkpoint` must be None for a black-box NumPy simulator (kind "
                "'numpy'), fitted by `search`; got a value."
            )
    elif config is not None and not isinstance(config, TrainConfig):
        raise TypeError(f"`config` must be None or a TrainConfig; got {type(config).__name__}.")
    return out


def _check_names(value: Any) -> tuple[str, ...]:
    try:
        names = tuple(value)
    except TypeError as err:
        raise TypeError(f"`param_names` must be a sequence of str; got {value!r}.") from err
    if isinstance(value, str) or not all(isinstance(name, str) for name in names):
        raise TypeError(f"`param_names` must be a sequence of str; got {value!r}.")
    if len(set(names)) < len(names):
        raise ValueError(f"`param_names` must be a sequence of unique str; got {value!r}.")
    return names


def _check_level(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`confidence_level` must be a real number in (0, 1); got {value!r}.")
    if not 0.0 < value < 1.0:
        raise ValueError(f"`confidence_level` must be a real number in (0, 1); got {value!r}.")
    return float(value)


def fit(
    simulator: Any,
    data: Any,
    *,
    method: str | Discrepancy = "mmd",
    theta0: Any = None,
    bounds: Any = None,
    n_sim: int | None = None,
    executor: Any = None,
    n_bootstrap: int = 0,
    rng: Any = None,
    kind: str = "auto",
    search: str = "auto",
    max_evaluations: int | None = None,
    xtol: float = 1e-3,
    sim_batch_size: int = 1000,
    nan_policy: str = "fail",
    max_retries: int = 2,
    timeout: float | None = 3600.0,
    confidence_level: float = 0.95,
    param_names: Any = None,
    config: TrainConfig | None = None,
    latent_dim: int | None = None,
    checkpoint: Any = None,
    resume: bool = False,
    overwrite: bool = False,
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
    n_sim : int, default=None
        Simulated points per evaluation (kind ``"numpy"``); default: as many as the data.
    executor : concurrent.futures.Executor or dask.distributed.Client, default=None
        Runs simulation batches and bootstrap replicates; default: in this process. Every
        path gives the same result bit for bit (for the bootstrap of a gradient-based fit,
        a process-based one: its replicates seed torch's global RNG, which threads share).
    n_bootstrap : int, default=0
        Bootstrap replicates (data resampled, new random numbers, refitted from the
        estimate) for confidence intervals that contain the estimate (Student-t intervals
        on the search's unconstrained scale, see :func:`ratiokit._search.bootstrap_interval`)
        and the replicates' correlation matrix.
    rng : None, int, SeedSequence or Generator, default=None
        An int gives bit-identical results on the CPU.
    kind : {"auto", "module", "torch", "numpy"}, default="auto"
        Force a kind (e.g. ``"numpy"`` for gradient-free search of a torch simulator).
    search : {"auto", "nelder-mead", "l-bfgs-b", "global"}, default="auto"
        Gradient-free search of kind ``"numpy"`` (see :mod:`ratiokit._search`).
        ``"auto"`` is Nelder-Mead from ``theta0``; if the simulations were whole numbers and
        the loss near its solution jumps by more than a twentieth of its seed-to-seed noise
        (``details["roughness"]``: integer draws that break the common random numbers), it
        then searches globally within ``bounds`` (differential evolution, then a polish) or,
        with an infinite bound, ends unconverged. ``"nelder-mead"`` and ``"l-bfgs-b"`` end
        unconverged on such a loss.
    max_evaluations : int, default=None
        Parameter values simulated in the search (default: 200 k locally, 500 k globally).
    xtol : float, default=1e-3
        Nelder-Mead stops when the simplex is smaller than this in the transformed ``u``.
    sim_batch_size : int, default=1000
        Simulations per task; each batch has its own fixed seed.
    nan_policy : {"fail", "drop"}, default="fail"
        NaN or infinite simulated rows make that simulation fail (the search treats its theta
        as infeasible); ``"drop"`` removes them instead (counted in ``details``), which
        biases the fit if NaNs depend on theta.
    max_retries : int, default=2
        Resubmissions of an executor task that failed (not a simulator error). A task that
        a broken executor cannot run (a process pool whose worker died) or that dask gave
        up on (``KilledWorker``: it killed ``allowed-failures`` + 1 workers) is not
        resubmitted: the fit stops with an :class:`ExecutorError`.
    timeout : float or None, default=3600.0
        Longest wait, in seconds, for the next executor task (a simulation batch or a
        bootstrap replicate) to finish before the fit stops with an :class:`ExecutorError`
        (a cluster that lost its workers never finishes its tasks); None waits forever.
    confidence_level : float, default=0.95
    param_names : sequence of str, default=None
        One unique name per parameter, for the result's repr and plots; default: the
        simulator's ``param_names``, else ``theta[0]``, ``theta[1]``, ...
    config : TrainConfig, default=None
        Settings of the training loop for kinds ``"module"`` and ``"torch"``; default:
        ``TrainConfig()`` for a module, ``TrainConfig(lr=THETA_LR)`` (0.05) for theta.
    latent_dim : int, default=None
        Noise dimension of a generator module (default: its ``latent_dim`` attribute or the
        width of its first linear layer).
    checkpoint : str or path-like, default=None
        Checkpoint file of the training loop (kinds ``"module"`` and ``"torch"``).
    resume : bool, default=False
        Continue from ``checkpoint`` (the data and settings must be the checkpoint's).
    overwrite : bool, default=False
        Replace a file at ``checkpoint`` that is not a checkpoint of this run.

    Returns
    -------
    FitResult

    Raises
    ------
    ValueError, TypeError
        For invalid arguments (named), or a simulator that fails at ``theta0`` or at every
        parameter value tried (the message names theta).
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
    """
    start_time = time.perf_counter()
    p = _fit_iv(
        simulator,
        data,
        method,
        theta0,
        bounds,
        kind,
        search,
        config,
        checkpoint,
        n_bootstrap,
        param_names,
    )
    check_overwrite_flag(overwrite, checkpoint, resume)
    estimator, x, transform = p["method"], p["data"], p["transform"]
    n_boot = check_int(n_bootstrap, "n_bootstrap", minimum=0)
    retries = check_int(max_retries, "max_retries", minimum=0)
    level = _check_level(confidence_level)
    executor = check_executor(executor)
    wait = None if timeout is None else check_positive(timeout, "timeout")
    fit_rng, boot_rng, critic_rng = check_rng(rng).spawn(3)
    details: dict[str, Any] = {
        "kind": p["kind"],
        "bounds": None if transform is None else transform.bounds.tolist(),
    }
    failures: list[tuple[tuple[float, ...], str]] = []
    model = None
    error = None  # an ExecutorError that stopped the fit
    if p["kind"] == "numpy":
        k = transform.low.size
        budget = 200 * k if p["search"] != "global" else 500 * k  # "auto" may add 500 k
        spec = SearchSpec(
            simulator=simulator,
            method=estimator,
            refit=_splits(estimator),
            transform=transform,
            n_sim=x.shape[0]
            if n_sim is None
            else check_int(n_sim, "n_sim", minimum=estimator.min_samples),
            sim_batch_size=check_int(sim_batch_size, "sim_batch_size", minimum=1),
            n_features=x.shape[1],
            nan_policy=check_choice(nan_policy, "nan_policy", NAN_POLICIES),
            search=p["search"],
            max_evaluations=budget
            if max_evaluations is None
            else check_int(max_evaluations, "max_evaluations", minimum=k + 2),
            xtol=check_positive(xtol, "xtol"),
        )
        data_np = x.detach().cpu().numpy().astype(np.float64)
        out = run_search(spec, data_np, p["theta0"], fit_rng, executor, retries, wait)
        theta, loss, converged, error = out.theta, out.loss, out.converged, out.error
        history = {"loss": out.losses, "theta": out.thetas}
        n_steps, n_simulations, failures = out.losses.size, out.n_simulations, out.failures
        details.update(
            search=spec.search,
            message=out.message,
            n_sim=spec.n_sim,
            n_dropped=out.n_dropped,
            n_retries=out.n_retries,
            interrupted=out.interrupted,
            nan_policy=spec.nan_policy,
        )
        if out.roughness is not None:
            details["roughness"] = out.roughness
        replicates = None
        if n_boot and error is None:
            replicates, n_boot_sims, n_boot_retries, error = bootstrap(
                spec, data_np, theta, n_boot, boot_rng, executor, retries, wait
            )
            n_simulations += n_boot_sims
            details["n_retries"] += n_boot_retries
    else:
        if config is not None:
            cfg = config
        else:  # see THETA_LR: a network's default step is too short for a parameter
            cfg = TrainConfig(lr=THETA_LR) if p["kind"] == "torch" else TrainConfig()
        if p["kind"] == "module":
            latent = (
                infer_latent_dim(simulator)
                if latent_dim is None
                else check_int(latent_dim, "latent_dim", minimum=1)
            )
            details["latent_dim"] = latent
        else:
            latent = None
        if not _splits(estimator):  # a label-free critic (MMD's bandwidth): fixed by the data
            estimator.fit_critic(x, x, rng=critic_rng)
        tout = fit_torch(
            p["kind"],
            simulator,
            x,
            estimator,
            cfg,
            p["theta0"],
            transform,
            latent,
            fit_rng,
            checkpoint,
            resume,
            overwrite,
            names=p["names"],
        )
        theta, loss, converged, model = tout.theta, tout.loss, tout.converged, tout.model
        history, n_steps, n_simulations = tout.history, tout.n_steps, tout.n_simulations
        details.update(config=cfg.to_dict(), interrupted=tout.interrupted)
        if tout.message is not None:
            details["message"] = tout.message
        replicates = None
        if n_boot:
            seeds = [g.bit_generator.seed_seq for g in boot_rng.spawn(n_boot)]
            data_np = x.detach().cpu().numpy()
            tasks = [(simulator, data_np, estimator, cfg, theta, transform, s) for s in seeds]
            thetas, _, error = run_tasks_keeping(
                executor,
                torch_replicate,
                tasks,
                max_retries=retries,
                describe=lambda i: f"bootstrap {i}",
                timeout=wait,
                missing=np.full(theta.shape, np.nan),
            )
            replicates = np.vstack(thetas)
    if theta is not None:
        details["theta0"] = p["theta0"].tolist()
    interval = correlation = None
    if replicates is not None:
        details["n_bootstrap_failed"] = int((~np.isfinite(replicates).all(1)).sum())
        interval = bootstrap_interval(theta, replicates, level, transform)
        correlation = bootstrap_correlation(replicates)
    if error is None:
        _warn(failures, converged, details, p["kind"])
    result = FitResult(
        theta=None if theta is None else np.asarray(theta, dtype=np.float64),
        param_names=p["names"],
        loss=float(loss),
        converged=bool(converged),
        method=estimator.name,
        kind=p["kind"],
        n_steps=int(n_steps),
        n_simulations=int(n_simulations),
        wall_time=time.perf_counter() - start_time,
        history=history,
        confidence_interval=interval,
        correlation=correlation,
        interval_method=INTERVAL_METHOD,
        confidence_level=level,
        bootstrap=replicates,
        failures=tuple(failures),
        details=details,
        data=x.detach().cpu().numpy(),
        simulator=simulator,
        model=model,
    )
    if error is not None:
        error.result = result
        error.args = (f"{error} The fit up to this failure is this error's `result`.",)
        raise error
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


def simulate_at(result: FitResult, n: int, rng: Any = None) -> np.ndarray:
    """Draw ``n`` points from the fitted model of ``result`` (see :meth:`FitResult.simulate`)."""
    n = check_int(n, "n", minimum=1)
    gen = check_rng(rng)
    if result.kind == "module":
        if result.model is None:
            raise ValueError(
                "`simulator` must be passed to FitResult.load to simulate from a loaded "
                "generator module; got None."
            )
        param = next(iter(result.model.parameters()))
        z = torch.randn(
            n,
            result.details["latent_dim"],
            generator=torch_generator(gen, param.device),
            dtype=param.dtype,
            device=param.device,
        )
        with torch.no_grad():
            return result.model(z).detach().cpu().numpy().astype(np.float64)
    if result.simulator is None:
        raise ValueError(
            "`simulator` must be passed to FitResult.load to simulate from a loaded fit; got None."
        )
    d = result.data.shape[1]
    if result.kind == "torch":
        theta = torch.as_tensor(result.theta, dtype=torch.float64)
        with torch.no_grad():
            raw = result.simulator(theta, n, torch_generator(gen)).detach().cpu().numpy()
    else:
        raw = result.simulator(result.theta.copy(), n, gen)
    arr, why, _ = check_output(raw, n, d, "fail")
    if why is not None:
        raise ValueError(f"the simulator {why} at the fitted theta={format_theta(result.theta)}.")
    return arr
