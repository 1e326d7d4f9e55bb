"""Gradient-free fitting of a black-box simulator: minimise the method's statistic in theta.

The objective at ``theta`` is the method's estimate ``D(data, simulations at theta)``. Its
simulations use common random numbers (:class:`~ratiokit._simulation.SimulationEngine`), and
a method that learns a critic from the two samples refits it with the same seed at every
theta, so the objective is a deterministic function of theta. A method with a label-free
critic (MMD's bandwidth) fixes it once, from the data. Searches run on the unconstrained
``u`` of :class:`~ratiokit._transforms.BoxTransform`:

- ``"nelder-mead"``: the simplex method, truly gradient-free and indifferent to infeasible
  points (their loss is ``inf``); it stops when the simplex is smaller than ``xtol`` in
  every coordinate of ``u``;
- ``"l-bfgs-b"``: quasi-Newton with forward-difference gradients, whose ``k + 1`` points are
  simulated together (in parallel through an executor); best on smooth objectives, and a
  simulator with discrete outputs gives it zero gradients;
- ``"global"``: differential evolution over the (finite) box in theta, a whole generation
  simulated at once, then a Nelder-Mead polish from the best member;
- ``"auto"``: Nelder-Mead, then, where the simulations were whole numbers, the roughness
  check of :func:`run_search`; a rough objective (integer draws that consume the random
  stream unevenly break the common random numbers) sends it to ``"global"``.

A bootstrap replicate resamples the data, draws new common random numbers and repeats the
local search from the estimate; replicates are tasks of the executor.
:func:`bootstrap_interval` turns them into intervals that contain the estimate, and
:func:`bootstrap_correlation` into their correlation matrix.

An :class:`~ratiokit.exceptions.ExecutorError` (the executor broke, a task killed its
workers, or none finished within ``timeout``) ends a search like an interrupt: the
evaluations that finished, those of the failing round included, are kept in the outcome.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import optimize, stats

from ratiokit._simulation import SimulationEngine, run_tasks_keeping
from ratiokit._transforms import BoxTransform
from ratiokit.exceptions import ExecutorError
from ratiokit.methods import Discrepancy, get_method

__all__ = [
    "INTERVAL_METHOD",
    "SearchOutcome",
    "SearchSpec",
    "bootstrap",
    "bootstrap_correlation",
    "bootstrap_interval",
    "run_search",
]

#: Members per parameter of a differential-evolution generation.
_POPSIZE = 10
#: Fresh sets of random numbers that measure the loss's seed-to-seed noise at a solution.
_N_FRESH = 4
#: Roughness (see :func:`_roughness`) above which a local solution is noise, not a minimum.
ROUGH = 0.05


@dataclass(frozen=True)
class SearchSpec:
    """Everything a search needs besides the data and seeds (picklable: replicates ship it)."""

    simulator: Any
    method: Discrepancy
    refit: bool
    transform: BoxTransform
    n_sim: int
    sim_batch_size: int
    n_features: int
    nan_policy: str
    search: str
    max_evaluations: int
    xtol: float


@dataclass
class SearchOutcome:
    """A finished search: the estimate, its trajectory and its bookkeeping."""

    theta: np.ndarray
    loss: float
    converged: bool
    message: str
    thetas: np.ndarray
    losses: np.ndarray
    failures: list[tuple[tuple[float, ...], str]] = field(default_factory=list)
    n_simulations: int = 0
    n_dropped: int = 0
    n_retries: int = 0
    interrupted: bool = False
    error: ExecutorError | None = None
    roughness: float | None = None


class _Objective:
    """``theta -> D(data, simulations at theta)``, recording every evaluation."""

    def __init__(
        self,
        spec: SearchSpec,
        data: torch.Tensor,
        engine: SimulationEngine,
        critic_seed: np.random.SeedSequence,
    ) -> None:
        self.spec, self.data, self.engine = spec, data, engine
        self.critic_seed = critic_seed
        self.method = spec.method
        if not spec.refit:  # a label-free critic (a median bandwidth): fixed by the data
            self.method = get_method(spec.method).fit_critic(
                data, data, rng=np.random.default_rng(critic_seed)
            )
        self.thetas: list[np.ndarray] = []
        self.losses: list[float] = []
        self.failures: list[tuple[tuple[float, ...], str]] = []
        self._seen: dict[bytes, float] = {}
        self.integer = True  # every simulated value so far was a whole number

    def evaluate(self, thetas: list[np.ndarray]) -> np.ndarray:
        """Losses at ``thetas`` (``inf`` where the simulator or the method fails).

        Common random numbers make the loss a function of theta, so a theta evaluated
        before is answered from memory, neither simulated nor recorded again.
        """
        thetas = [np.array(theta, dtype=np.float64) for theta in thetas]
        new, keys = [], set()
        for theta in thetas:
            key = theta.tobytes()
            if key not in self._seen and key not in keys:
                keys.add(key)
                new.append(theta)
        try:
            sims = self.engine.run(new) if new else []
        except ExecutorError as err:  # keep the evaluations that finished, then stop
            for theta, sim in zip(new, err.outputs, strict=True):
                if sim is not None:
                    self._record(theta, sim)
            raise
        for theta, sim in zip(new, sims, strict=True):
            self._record(theta, sim)
        return np.array([self._seen[t.tobytes()] for t in thetas])

    def _record(self, theta: np.ndarray, sim: np.ndarray | str) -> None:
        if not isinstance(sim, str):
            self.integer = self.integer and bool(np.all(sim == np.round(sim)))
        loss = self._statistic(sim) if not isinstance(sim, str) else sim
        if isinstance(loss, str):
            self.failures.append((tuple(float(t) for t in theta), loss))
            loss = math.inf
        self._seen[theta.tobytes()] = float(loss)
        self.thetas.append(theta)
        self.losses.append(float(loss))

    def _statistic(self, sim: np.ndarray) -> float | str:
        y = torch.as_tensor(sim, dtype=torch.float64)
        if y.shape[0] < self.method.min_samples:
            return f"only {y.shape[0]} simulated rows were finite"
        method = self.method
        try:
            if self.spec.refit:
                method = get_method(self.spec.method).fit_critic(
                    self.data, y, rng=np.random.default_rng(self.critic_seed)
                )
            with torch.no_grad():
                value = float(method(self.data, y))
        except (ValueError, RuntimeError, ArithmeticError) as err:
            return f"method {method.name!r} failed: {type(err).__name__}: {err}"
        return value if math.isfinite(value) else f"method {method.name!r} returned {value}"

    def at_u(self, u: np.ndarray) -> float:
        return float(self.evaluate([self.spec.transform.to_theta(u)])[0])


def _nelder_mead(obj: _Objective, u0: np.ndarray, budget: int) -> optimize.OptimizeResult:
    spec = obj.spec
    step = np.where(spec.transform.free, 0.1 * np.maximum(1.0, np.abs(u0)), 0.5)
    simplex = np.vstack([u0, u0 + np.diag(step)])
    options = {
        "initial_simplex": simplex,
        "xatol": spec.xtol,
        "fatol": math.inf,  # stop on the simplex size alone: the loss has no natural scale
        "maxfev": max(budget, u0.size + 1),
        "adaptive": u0.size > 2,
    }
    return optimize.minimize(obj.at_u, u0, method="Nelder-Mead", options=options)


def _difference_points(u: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Steps ``h`` and the points ``u, u + h_i e_i`` of a forward-difference gradient."""
    h = math.sqrt(np.finfo(np.float64).eps) * np.maximum(1.0, np.abs(u))
    return h, [u] + [u + h[i] * np.eye(u.size)[i] for i in range(u.size)]


def _lbfgsb(obj: _Objective, u0: np.ndarray, budget: int) -> optimize.OptimizeResult:
    k = u0.size
    transform = obj.spec.transform
    scale = [1.0]

    def value_and_grad(u: np.ndarray) -> tuple[float, np.ndarray]:
        h, points = _difference_points(u)
        f = obj.evaluate([transform.to_theta(p) for p in points]) / scale[0]
        if not np.isfinite(f).all():
            return math.inf, np.zeros(k)
        return float(f[0]), (f[1:] - f[0]) / h

    f0 = obj.evaluate([transform.to_theta(u0)])[0]  # remembered from the start's check
    if math.isfinite(f0) and f0 != 0.0:
        scale[0] = abs(f0)  # scale-free tolerances: losses relative to the start
    result = optimize.minimize(
        value_and_grad,
        u0,
        jac=True,
        method="L-BFGS-B",
        options={"maxfun": max(2, budget // (k + 1)), "maxiter": budget},
    )
    result.fun = result.fun * scale[0]
    return result


def _differential_evolution(
    obj: _Objective, budget: int, rng: np.random.Generator, theta0: np.ndarray | None
) -> optimize.OptimizeResult:
    transform = obj.spec.transform
    k = transform.low.size

    def losses(x: np.ndarray) -> np.ndarray:  # x: (k, S), a whole generation
        return obj.evaluate([x[:, s] for s in range(x.shape[1])])

    population = _POPSIZE * k
    # SciPy >= 1.15 takes `rng` (SPEC 7); older versions call it `seed`.
    seed_kw = (
        "rng" if "rng" in inspect.signature(optimize.differential_evolution).parameters else "seed"
    )
    return optimize.differential_evolution(
        losses,
        bounds=list(zip(transform.low, transform.high, strict=True)),
        popsize=_POPSIZE,
        maxiter=max(1, budget // population - 1),
        polish=False,
        vectorized=True,
        x0=theta0,  # one member of the first generation
        updating="deferred",
        tol=0.0,
        atol=0.0,
        **{seed_kw: rng},
    )


def _roughness(obj: _Objective, u: np.ndarray, fresh: list[_Objective]) -> float:
    """How much the loss jumps within ``xtol`` of ``u``, in units of its seed-to-seed noise.

    The median ``|D(u +- xtol e_i) - D(u)|`` over the ``2 k`` neighbours (common random
    numbers) divided by the standard deviation of ``D(u)`` over these and ``fresh`` sets of
    random numbers. Near a minimum of a smooth objective the jumps are second order,
    ``H xtol^2 / 2``, far below the noise; integer draws that consume the random stream
    unevenly (``rng.binomial``) re-draw part of the simulations when theta moves at all, so
    the jumps are a fair fraction of the noise and a local search stops at whichever
    neighbour happened to be lowest.
    """
    transform, step = obj.spec.transform, obj.spec.xtol
    f0 = obj.at_u(u)
    eye = np.eye(u.size)
    near = obj.evaluate([transform.to_theta(u + s * step * e) for e in eye for s in (1, -1)])
    near = near[np.isfinite(near)]
    noise = np.std([f0, *(other.at_u(u) for other in fresh)], ddof=1)
    jump = float(np.median(np.abs(near - f0))) if near.size else 0.0
    if not math.isfinite(noise):
        return 0.0
    return jump / noise if noise > 0 else (math.inf if jump > 0 else 0.0)


def run_search(
    spec: SearchSpec,
    data: np.ndarray,
    theta0: np.ndarray | None,
    rng: np.random.Generator,
    executor: Any,
    max_retries: int,
    timeout: float | None = None,
    detect_rough: bool = True,
) -> SearchOutcome:
    """Minimise the objective from ``theta0`` (or globally); see the module notes.

    A local search whose simulations were all whole numbers ends with a check of the
    objective's roughness at its solution (:func:`_roughness`, above :data:`ROUGH`): a rough
    one makes ``"auto"`` search globally from there (differential evolution over a finite
    box, then a polish) and the others report ``converged=False``.

    Raises
    ------
    ValueError
        If the simulator fails at ``theta0``, or at every point tried.
    ExecutorError
        If the executor failed before any evaluation gave a finite loss (after one did, the
        error is the outcome's ``error``).
    """
    crn_rng, critic_rng, search_rng, fresh_rng = rng.spawn(4)

    def engine_for(gen: np.random.Generator) -> SimulationEngine:
        return SimulationEngine(
            spec.simulator,
            spec.n_sim,
            spec.sim_batch_size,
            gen,
            spec.n_features,
            executor,
            max_retries,
            spec.nan_policy,
            timeout,
        )

    engine = engine_for(crn_rng)
    data_t = torch.as_tensor(data, dtype=torch.float64)
    critic_seed = critic_rng.bit_generator.seed_seq
    obj = _Objective(spec, data_t, engine, critic_seed)
    fresh = []
    transform = spec.transform
    interrupted = False
    error = None
    result = None
    roughness = None
    rough_note = ""
    try:
        if spec.search == "global":
            result = _global(obj, spec.max_evaluations, search_rng, theta0)
        else:
            u0 = transform.to_u(theta0)
            if not math.isfinite(obj.at_u(u0)):
                raise ValueError(
                    "`theta0` must be a parameter value the simulator and method work at; "
                    f"{obj.failures[-1][1]}."
                )
            search = _lbfgsb if spec.search == "l-bfgs-b" else _nelder_mead
            result = search(obj, u0, spec.max_evaluations - 1)
            if search is _lbfgsb and result.success:
                points = _difference_points(result.x)[1]  # evaluated: answered from memory
                f = obj.evaluate([transform.to_theta(p) for p in points])
                if (f[1:] == f[0]).all():
                    result.success = False
                    result.message = (
                        "the loss did not change within the finite-difference steps at the "
                        "solution, so its gradient there is zero (a simulator with discrete "
                        "outputs is flat at that scale)"
                    )
            if detect_rough and result.success and obj.integer:
                fresh = [
                    _Objective(spec, data_t, engine_for(g), critic_seed)
                    for g in fresh_rng.spawn(_N_FRESH)
                ]
                roughness = _roughness(obj, result.x, fresh)
                if roughness > ROUGH:
                    rough_note = (
                        f"the loss jumps by {roughness:.2g} times its seed-to-seed noise within "
                        "`xtol` of the local solution (integer draws that break the common "
                        "random numbers, e.g. rng.binomial; ratiokit.simulators.binomial "
                        "keeps them)"
                    )
                    if spec.search == "auto" and transform.finite:
                        local = transform.to_theta(result.x)
                        result = _global(obj, spec.max_evaluations * 5 // 2, search_rng, local)
                        rough_note += ", so the search went global"
                    else:
                        result.success = False
                        result.message = rough_note + ": a local search stops at noise"
                        rough_note = ""
    except KeyboardInterrupt:
        interrupted = True
    except ExecutorError as err:
        error = err
    losses = np.asarray(obj.losses)
    if interrupted and not np.isfinite(losses).any():
        raise KeyboardInterrupt
    if error is not None and not np.isfinite(losses).any():
        raise error
    if not np.isfinite(losses).any():
        raise ValueError(
            f"the simulator or method failed at every one of the {losses.size} parameter "
            f"values tried, e.g. {obj.failures[0][1]}."
            if obj.failures
            else "no evaluation ran."
        )
    best = int(np.argmin(losses))
    if result is not None and math.isfinite(result.fun) and result.fun <= losses[best]:
        theta, loss = transform.to_theta(result.x), float(result.fun)
    else:
        theta, loss = obj.thetas[best], float(losses[best])
    converged = bool(result is not None and result.success and not interrupted)
    if error is not None:
        message = f"stopped by the executor: {type(error.__cause__ or error).__name__}"
    else:
        message = "interrupted" if interrupted else str(result.message)
        message = f"{rough_note}: {message}" if rough_note and not interrupted else message
    finite = losses[np.isfinite(losses)]
    if converged and finite.size > 1 and np.ptp(finite) == 0:
        # A simplex shrinks onto theta0 when every loss ties: no minimum was found.
        converged = False
        message = (
            f"the loss was {loss:.6g} at all {finite.size} feasible parameter values tried: it "
            "is flat there (e.g. simulations far from the data saturate the kernel)"
        )
    if spec.search == "l-bfgs-b" and message.startswith("ABNORMAL"):
        converged = False  # SciPy's line search failed; its reason may be empty
        reason = message.partition(":")[2].strip()
        message = (
            "the line search of L-BFGS-B failed"
            + (f" ({reason})" if reason else "")
            + ": the loss is not smooth in theta at the scale of its finite differences"
        )
    return SearchOutcome(
        theta=theta,
        loss=loss,
        converged=converged,
        message=message,
        thetas=np.asarray(obj.thetas).reshape(len(obj.thetas), transform.low.size),
        losses=losses,
        failures=obj.failures,
        n_simulations=engine.n_simulations + sum(o.engine.n_simulations for o in fresh),
        n_dropped=engine.n_dropped,
        n_retries=engine.n_retries,
        interrupted=interrupted,
        error=error,
        roughness=roughness,
    )


def _global(
    obj: _Objective, budget: int, rng: np.random.Generator, theta0: np.ndarray | None
) -> optimize.OptimizeResult:
    """Differential evolution with 3/4 of ``budget``, then a Nelder-Mead polish."""
    de = _differential_evolution(obj, budget * 3 // 4, rng, theta0)
    return _nelder_mead(obj, obj.spec.transform.to_u(de.x), budget - len(obj.losses))


def _replicate(
    spec: SearchSpec, data: np.ndarray, theta_hat: np.ndarray, seed: np.random.SeedSequence
) -> tuple[np.ndarray, bool, int]:
    """One bootstrap replicate: resampled data, new common random numbers, a local search."""
    gen = np.random.default_rng(seed)
    rows = gen.integers(0, data.shape[0], data.shape[0])
    local = (
        spec if spec.search in ("nelder-mead", "l-bfgs-b") else _with_search(spec, "nelder-mead")
    )
    try:
        out = run_search(local, data[rows], theta_hat, gen, None, 0, detect_rough=False)
    except ValueError:
        return np.full(theta_hat.shape, np.nan), False, 0
    return out.theta, out.converged, out.n_simulations


def _with_search(spec: SearchSpec, search: str) -> SearchSpec:
    values = {name: getattr(spec, name) for name in spec.__dataclass_fields__}
    values["search"] = search
    return SearchSpec(**values)


def bootstrap(
    spec: SearchSpec,
    data: np.ndarray,
    theta_hat: np.ndarray,
    n_bootstrap: int,
    rng: np.random.Generator,
    executor: Any,
    max_retries: int,
    timeout: float | None = None,
) -> tuple[np.ndarray, int, int, ExecutorError | None]:
    """``(replicates (B, k), n_simulations, n_retries, error)``; failed replicates are NaN rows.

    ``error`` is the :class:`~ratiokit.exceptions.ExecutorError` that stopped the replicates
    (those that did not finish are NaN rows), else None.
    """
    seeds = [g.bit_generator.seed_seq for g in rng.spawn(n_bootstrap)]
    tasks = [(spec, data, theta_hat, seed) for seed in seeds]
    results, retries, error = run_tasks_keeping(
        executor,
        _replicate,
        tasks,
        max_retries=max_retries,
        describe=lambda i: f"bootstrap {i}",
        timeout=timeout,
        missing=(np.full(theta_hat.shape, np.nan), False, 0),
    )
    replicates = np.vstack([r[0] for r in results])
    return replicates, sum(r[2] for r in results), retries, error


#: How :func:`bootstrap_interval` builds an interval (``FitResult.interval_method``).
INTERVAL_METHOD = "student-t"


def bootstrap_interval(
    theta_hat: np.ndarray, replicates: np.ndarray, level: float, transform: BoxTransform
) -> np.ndarray | None:
    """Intervals (k, 2) at ``level`` that contain ``theta_hat`` by construction; None with
    fewer than two finite replicates (NaN rows are left out).

    On the unconstrained scale ``u`` of ``transform`` (``theta`` itself for a free
    parameter, ``log`` of the distance to a one-sided bound, ``logit`` inside a box), the
    interval is ``u_hat -+ t * sd(u*)``, with ``sd(u*)`` the standard deviation of the ``B``
    finite replicates and ``t`` the ``(1 + level) / 2`` quantile of Student's t with ``B - 1``
    degrees of freedom; its ends are mapped back to ``theta``, so they respect the bounds.
    If the estimate's error and the replicates are Gaussian with one spread on that scale,
    ``(theta_hat - theta) / sd(u*)`` is exactly t-distributed and the coverage is ``level``
    for any ``B``; the normal quantile would undercover (93.5% instead of 95% at ``B = 20``).

    Percentile, basic and BCa intervals (:func:`scipy.stats.bootstrap`'s methods) contain
    ``theta_hat`` only when it lies between the replicates' quantiles, which few replicates
    do not ensure, and BCa's acceleration needs a jackknife refit per data point (``n``
    more searches), which a simulator cannot afford: none is used.
    """
    ok = replicates[np.isfinite(replicates).all(1)]
    if ok.shape[0] < 2:
        return None
    u_hat, u_star = transform.to_u(theta_hat), transform.to_u(ok)
    half = stats.t.ppf(0.5 + level / 2, ok.shape[0] - 1) * u_star.std(0, ddof=1)
    ends = np.stack([transform.to_theta(u_hat - half), transform.to_theta(u_hat + half)], 1)
    return np.sort(ends, axis=1)  # an upper bound's map u -> theta decreases


def bootstrap_correlation(replicates: np.ndarray) -> np.ndarray | None:
    """Pearson correlation matrix (k, k) of the finite replicates; None with fewer than three.

    An entry is NaN where a parameter's replicates do not vary (its diagonal stays 1).
    """
    ok = replicates[np.isfinite(replicates).all(1)]
    if ok.shape[0] < 3:
        return None
    centred = ok - ok.mean(0)
    scale = np.sqrt((centred**2).sum(0))
    with np.errstate(divide="ignore", invalid="ignore"):
        unit = centred / scale
    corr = np.clip(unit.T @ unit, -1.0, 1.0)
    np.fill_diagonal(corr, 1.0)
    return corr
