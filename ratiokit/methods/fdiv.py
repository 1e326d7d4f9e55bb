"""Variational f-divergence estimation (f-GAN): a critic maximises a lower bound on D_f(P||Q)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ratiokit._progress import check_progress
from ratiokit._rng import check_rng
from ratiokit._validation import as_sample, as_sample_pair, check_choice, is_tensor
from ratiokit.critics import (
    TRAINING_SETTINGS,
    check_network,
    check_training,
    evaluate_critic,
    make_critic,
    train_critic,
    training_kwargs,
)
from ratiokit.methods._base import Discrepancy
from ratiokit.results import TrainHistory

__all__ = ["GENERATORS", "FDivergence", "FGenerator"]

Fn = Callable[[torch.Tensor], torch.Tensor]
_LOG2 = math.log(2.0)


@dataclass(frozen=True)
class FGenerator:
    """One f-divergence ``D_f(P||Q) = E_q[f(p/q)]`` and its variational form (f-GAN).

    Attributes
    ----------
    f : callable
        The convex generator ``f(u)``, ``u > 0``; ``f(1) = 0`` except for gan
        (``f(1) = -log 4``).
    conjugate : callable
        Its convex conjugate ``f*(t) = sup_u (u t - f(u))`` on the domain of ``f*``.
    link : callable
        The output activation ``g_f``: the critic ``T = g_f(v)`` of a network output ``v``
        always lies in the domain of ``f*``.
    conjugate_of_link : callable
        ``f*(g_f(v))`` in a numerically stable form.
    log_ratio : callable or None
        ``log (f')^-1(g_f(v))``: the log-ratio read from the critic (the optimal critic is
        ``T* = f'(p/q)``); None where ``f'`` is not invertible (total variation).
    kind : str
        The divergence in :mod:`ratiokit.synthetic`'s convention that ``D_f`` gives:
        ``kind = scale * (D_f + offset)``.
    scale, offset : float
    """

    f: Fn
    conjugate: Fn
    link: Fn
    conjugate_of_link: Fn
    log_ratio: Fn | None
    kind: str
    scale: float = 1.0
    offset: float = 0.0


def _log_one_plus_half(v: torch.Tensor) -> torch.Tensor:
    """``log(1 + v / 2)``; ``-inf`` where ``v <= -2`` (the ratio estimate is 0 there)."""
    return torch.log1p(torch.clamp(0.5 * v, min=-1.0))


#: The generators of Nowozin, Cseke and Tomioka (2016), Tables 1, 2 and 6; see
#: :class:`FDivergence` for the scale of each.
GENERATORS: dict[str, FGenerator] = {
    "kl": FGenerator(
        f=lambda u: torch.xlogy(u, u),
        conjugate=lambda t: torch.exp(t - 1.0),
        link=lambda v: v,
        conjugate_of_link=lambda v: torch.exp(v - 1.0),
        log_ratio=lambda v: v - 1.0,
        kind="kl",
    ),
    "rkl": FGenerator(
        f=lambda u: -torch.log(u),
        conjugate=lambda t: -1.0 - torch.log(-t),
        link=lambda v: -torch.exp(-v),
        conjugate_of_link=lambda v: v - 1.0,
        log_ratio=lambda v: v,
        kind="rkl",
    ),
    "pearson": FGenerator(
        f=lambda u: (u - 1.0) ** 2,
        conjugate=lambda t: 0.25 * t**2 + t,
        link=lambda v: v,
        conjugate_of_link=lambda v: 0.25 * v**2 + v,
        log_ratio=_log_one_plus_half,
        kind="pearson",
    ),
    "hellinger": FGenerator(
        f=lambda u: (torch.sqrt(u) - 1.0) ** 2,
        conjugate=lambda t: t / (1.0 - t),
        link=lambda v: -torch.expm1(-v),
        conjugate_of_link=torch.expm1,
        log_ratio=lambda v: 2.0 * v,
        kind="hellinger",
        scale=0.5,
    ),
    "js": FGenerator(
        f=lambda u: torch.xlogy(u, u) - torch.xlogy(u + 1.0, 0.5 * (u + 1.0)),
        conjugate=lambda t: -torch.log(2.0 - torch.exp(t)),
        link=lambda v: _LOG2 + F.logsigmoid(v),
        conjugate_of_link=lambda v: F.softplus(v) - _LOG2,
        log_ratio=lambda v: v,
        kind="js",
        scale=0.5,
    ),
    "gan": FGenerator(
        f=lambda u: torch.xlogy(u, u) - torch.xlogy(u + 1.0, u + 1.0),
        conjugate=lambda t: -torch.log(-torch.expm1(t)),
        link=F.logsigmoid,
        conjugate_of_link=F.softplus,
        log_ratio=lambda v: v,
        kind="js",
        scale=0.5,
        offset=2.0 * _LOG2,
    ),
    "tv": FGenerator(
        f=lambda u: 0.5 * torch.abs(u - 1.0),
        conjugate=lambda t: t,
        link=lambda v: 0.5 * torch.tanh(v),
        conjugate_of_link=lambda v: 0.5 * torch.tanh(v),
        log_ratio=None,
        kind="tv",
    ),
}

#: Bounds on KL(P||Q): f-GAN's, Donsker-Varadhan's and Nguyen-Wainwright-Jordan's.
BOUNDS = ("fgan", "dv", "nwj")


def _bound(gen: FGenerator, bound: str, v_p: torch.Tensor, v_q: torch.Tensor) -> torch.Tensor:
    """The variational lower bound on ``D_f`` from network outputs at the P and Q rows."""
    if bound == "dv":  # E_p[T] - log E_q[exp T]
        return v_p.mean() - (torch.logsumexp(v_q, dim=0) - math.log(v_q.shape[0]))
    if bound == "nwj":  # the network gives log r: T = 1 + v
        return 1.0 + v_p.mean() - torch.exp(v_q).mean()
    return gen.link(v_p).mean() - gen.conjugate_of_link(v_q).mean()


class FDivergence(Discrepancy):
    r"""Variational f-divergence: a critic maximises ``E_p[T] - E_q[f*(T)] <= D_f(P||Q)``.

    ``D_f(P||Q) = E_q[f(p/q)] = sup_T E_p[T(x)] - E_q[f*(T(x))]``, with ``f*`` the convex
    conjugate of ``f`` and the supremum at ``T* = f'(p/q)`` (Nguyen, Wainwright and Jordan
    2010). The critic is ``T = g_f(V)`` for a network ``V`` and the output activation
    ``g_f`` of Nowozin et al. (2016), Table 2, which keeps ``T`` in the domain of ``f*``;
    the log-ratio is read back as ``log r = log (f')^-1(T)``. The network is trained by
    :func:`ratiokit.critics.train_critic` to maximise the bound (minimise its negative),
    stopping early on a held-out split, and :meth:`forward` is the bound on the given
    samples: differentiable in both samples and the critic's parameters. On the training
    samples it is optimistic; on fresh samples it is a lower bound in expectation.

    =========  ================================  ========================  ================
    ``f``      ``f(u)``                          ``g_f(v)``                ``log r``
    =========  ================================  ========================  ================
    kl         ``u log u``                       ``v``                     ``v - 1``
    rkl        ``-log u``                        ``-exp(-v)``              ``v``
    pearson    ``(u - 1)^2``                     ``v``                     ``log(1 + v/2)``
    hellinger  ``(sqrt(u) - 1)^2``               ``1 - exp(-v)``           ``2 v``
    js         ``u log u - (u+1) log((u+1)/2)``  ``log 2 - softplus(-v)``  ``v``
    gan        ``u log u - (u+1) log(u+1)``      ``-softplus(-v)``         ``v``
    tv         ``|u - 1| / 2``                   ``tanh(v) / 2``           not identified
    =========  ================================  ========================  ================

    Scales (``D_f`` is :meth:`forward`; :meth:`estimate_divergence` converts to the
    convention of :mod:`ratiokit.synthetic`): kl gives KL(P||Q), rkl KL(Q||P) and pearson
    chi^2(P||Q) as they are; hellinger gives ``2 H^2`` with ``H^2 = 1 - int sqrt(p q)``
    in [0, 1]; js gives ``2 JS`` with ``JS = KL(P||M) / 2 + KL(Q||M) / 2`` in [0, log 2],
    ``M = (P + Q) / 2``; gan gives ``2 JS - log 4``; tv gives the total variation
    ``int |p - q| / 2`` in [0, 1]. For tv the optimal critic is ``sign(p - q) / 2``, so the
    ratio is not identified and :meth:`log_ratio` raises. For pearson the read-out
    ``r = 1 + T/2`` can be negative; its log is then ``-inf``.

    For ``f="kl"``, ``bound`` picks the bound: ``"fgan"`` is the row above; ``"dv"`` is
    Donsker-Varadhan's ``E_p[T] - log E_q[exp T]`` (tighter, the critic is defined up to a
    constant, and ``log r = T - log E_q[exp T]`` with the normaliser taken on the fitted Q
    sample; minibatch gradients are biased); ``"nwj"`` is Nguyen-Wainwright-Jordan's
    ``1 + E_p[V] - E_q[exp V]``, *the same bound* as ``"fgan"`` written with the network
    output as the log-ratio (``T = 1 + V``), so an untrained critic starts near ``r = 1``
    rather than ``r = exp(-1)``.

    Parameters
    ----------
    f : {"kl", "rkl", "pearson", "hellinger", "js", "gan", "tv"}, default="kl"
    bound : {"fgan", "dv", "nwj"}, default="fgan"
        ``"dv"`` and ``"nwj"`` only with ``f="kl"``.
    critic : None or torch.nn.Module, default=None
        ``None``: an MLP (:func:`ratiokit.critics.mlp_critic`) on standardised inputs. A
        module mapping (n, d) to (n,) is copied and trained from its current weights on raw
        inputs; it gives ``V``, before the output activation.
    hidden : sequence of int, default=(64, 64)
    activation : str, default="elu"
    spectral_norm : bool, default=False
    max_steps : int, default=1000
    batch_size : int, default=256
    lr : float, default=0.005
    weight_decay : float, default=0.0
    validation_fraction : float, default=0.2
    patience : int, default=100
    progress : bool or None, default=None
        The default network and training settings; see
        :class:`~ratiokit.methods.classifier.Classifier`.

    Attributes
    ----------
    critic_ : torch.nn.Module
        The fitted network ``V``.
    log_norm_ : float
        ``log E_q[exp T]`` on the fitted Q sample (``bound="dv"`` only, else 0).
    history_ : TrainHistory
        Training record of the critic (see :func:`ratiokit.critics.train_critic`).
    n_features_in_ : int

    References
    ----------
    Nowozin, Cseke and Tomioka (2016), "f-GAN: training generative neural samplers using
    variational divergence minimization", NeurIPS. Nguyen, Wainwright and Jordan (2010),
    "Estimating divergence functionals and the likelihood ratio by convex risk
    minimization", IEEE Trans. Inf. Theory 56(11). Donsker and Varadhan (1983), "Asymptotic
    evaluation of certain Markov process expectations for large time IV", Comm. Pure Appl.
    Math. 36.

    Examples
    --------
    >>> import torch
    >>> from ratiokit.synthetic import GaussianShift
    >>> pair = GaussianShift(dim=1, shift=1.0)  # KL = 0.5, H^2 = 0.1175
    >>> x_p = torch.tensor(pair.sample_p(500, rng=0))
    >>> x_q = torch.tensor(pair.sample_q(500, rng=1))
    >>> kl = FDivergence("kl").fit_critic(x_p, x_q, rng=0)
    >>> abs(kl.estimate_divergence("kl", x_p, x_q).item() - 0.5) < 0.15
    True
    """

    name: ClassVar[str] = "fdiv"
    has_log_ratio: ClassVar[bool] = True
    learned_critic: ClassVar[bool] = True
    training_settings: ClassVar[tuple[str, ...]] = TRAINING_SETTINGS
    divergence_kinds: ClassVar[tuple[str, ...]] = ("kl", "rkl", "pearson", "hellinger", "js", "tv")

    def __init__(
        self,
        f: str = "kl",
        *,
        bound: str = "fgan",
        critic: nn.Module | None = None,
        hidden: Sequence[int] = (64, 64),
        activation: str = "elu",
        spectral_norm: bool = False,
        max_steps: int = 1000,
        batch_size: int = 256,
        lr: float = 0.005,
        weight_decay: float = 0.0,
        validation_fraction: float = 0.2,
        patience: int = 100,
        progress: bool | None = None,
    ) -> None:
        super().__init__()
        self.f = check_choice(f, "f", list(GENERATORS))
        self.bound = check_choice(bound, "bound", BOUNDS)
        if bound != "fgan" and f != "kl":
            raise ValueError(f"`bound` must be 'fgan' when `f` is not 'kl'; got {bound!r}.")
        if critic is not None and not isinstance(critic, nn.Module):
            raise TypeError(
                f"`critic` must be None or a torch.nn.Module; got {type(critic).__name__}."
            )
        check_training(
            max_steps=max_steps,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            validation_fraction=validation_fraction,
            patience=patience,
        )
        # Not a registered submodule (its parameters would join ``parameters()``); each fit
        # trains a copy, ``critic_``.
        object.__setattr__(self, "critic", critic)
        self.hidden = check_network(hidden, activation)
        self.activation = activation
        self.spectral_norm = bool(spectral_norm)
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.progress = check_progress(progress)
        self.critic_: nn.Module | None = None
        self.log_norm_ = 0.0
        self.history_: TrainHistory | None = None
        self.n_features_in_: int | None = None

    @property
    def generator(self) -> FGenerator:
        """The :class:`FGenerator` of ``f``."""
        return GENERATORS[self.f]

    @property
    def kinds(self) -> tuple[str, ...]:
        """The divergence this ``f`` estimates (see :meth:`estimate_divergence`)."""
        return (self.generator.kind,)

    @classmethod
    def for_divergence(cls, kind: str) -> FDivergence:
        """The f-divergence estimator of ``kind`` (``f = kind`` where it is one of the f).

        A kind no ``f`` estimates (``"pe"``) gets the default ``f``, whose log ratio
        :func:`ratiokit.divergence` plugs in.
        """
        if kind in GENERATORS:
            return cls(f=kind)
        return cls(f=next((f for f, gen in GENERATORS.items() if gen.kind == kind), "kl"))

    def fit_critic(self, x_p: Any, x_q: Any, *, rng: Any = None) -> FDivergence:
        """Train the critic to maximise the bound on ``x_p`` ~ P, ``x_q`` ~ Q.

        Parameters
        ----------
        x_p : Tensor or array of shape (n, d)
        x_q : Tensor or array of shape (m, d)
        rng : None, int or numpy.random.Generator, default=None
            Seeds the initialisation, validation split and minibatches; the fit does not
            depend on the order of the rows.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            If a sample is invalid.
        RuntimeError
            If training reaches a non-finite loss.
        """
        x_p, x_q = as_sample_pair(x_p, x_q, min_samples=self.min_samples)
        x_p, x_q = x_p.detach(), x_q.detach()
        gen = check_rng(rng)
        self.init_critic(x_p, x_q, rng=gen)
        self.history_ = train_critic(
            lambda _, a, b: -self._value(a, b),
            self.critic_,
            x_p,
            x_q,
            rng=gen,
            **training_kwargs(self),
        )
        if self.bound == "dv":
            with torch.no_grad():
                v_q = self._network(x_q)
                self.log_norm_ = float(torch.logsumexp(v_q, 0)) - math.log(x_q.shape[0])
        return self

    def init_critic(self, x_p: Any, x_q: Any, *, rng: Any = None) -> FDivergence:
        """Build the network ``V`` for samples like ``x_p``, ``x_q`` without training it.

        For a training loop (an f-GAN): the critic descends :meth:`critic_loss`, ``-forward``.

        Raises
        ------
        ValueError
            If a sample is invalid.
        """
        x_p, x_q = as_sample_pair(x_p, x_q, min_samples=self.min_samples)
        self.critic_ = make_critic(
            self.critic,
            x_p.detach(),
            x_q.detach(),
            hidden=self.hidden,
            activation=self.activation,
            spectral_norm=self.spectral_norm,
            rng=check_rng(rng),
        )
        self.log_norm_, self.history_ = 0.0, None
        self.n_features_in_ = x_p.shape[1]
        return self

    def _network(self, x: torch.Tensor) -> torch.Tensor:
        if self.critic_ is None:
            raise RuntimeError("FDivergence is not fitted yet; call `fit_critic(x_p, x_q)` first.")
        return evaluate_critic(self.critic_, x)

    def generator_loss(
        self, x_p: torch.Tensor, x_q: torch.Tensor, *, saturating: bool = False
    ) -> torch.Tensor:
        """The loss of a model sampling ``x_q``: ``-E_q[T]`` (non-saturating, Nowozin et al.).

        ``T`` is the critic ``g_f(V)`` (``1 + V`` for ``bound="nwj"``, ``V`` for ``"dv"``);
        the model ascends it, as in Nowozin, Cseke and Tomioka (2016), sec. 3.2.
        ``saturating=True`` gives the minimax loss :meth:`forward`, whose ``x_q`` part is
        ``-E_q[f*(T)]``.
        """
        if saturating:
            return self(x_p, x_q)
        v_q = self._network(x_q)
        if self.bound == "nwj":
            t_q = 1.0 + v_q
        elif self.bound == "dv":
            t_q = v_q
        else:
            t_q = self.generator.link(v_q)
        return -t_q.mean().to(x_q.dtype)

    def critic_score(self, x: torch.Tensor) -> torch.Tensor:
        """The network's output ``V(x)`` (before the output activation), shape (n,)."""
        return self._network(x)

    def _value(self, x_p: torch.Tensor, x_q: torch.Tensor) -> torch.Tensor:
        return _bound(self.generator, self.bound, self._network(x_p), self._network(x_q))

    def forward(self, x_p: torch.Tensor, x_q: torch.Tensor) -> torch.Tensor:
        """The variational lower bound on ``D_f(P||Q)`` (scale: see the class notes)."""
        return self._value(x_p, x_q).to(x_p.dtype)

    def log_ratio(self, x: Any) -> Any:
        """Estimated ``log p(x)/q(x)`` read from the critic, ``log (f')^-1(T(x))``.

        Parameters
        ----------
        x : Tensor or array of shape (n, d)

        Returns
        -------
        Tensor or array of shape (n,), of ``x``'s type, dtype and device

        Raises
        ------
        NotImplementedError
            For ``f="tv"``: its optimal critic is ``sign(p - q) / 2``, not a ratio.
        RuntimeError
            Before :meth:`fit_critic`.
        ValueError
            If ``x`` is not a finite sample with the fitted number of features.
        """
        read_out = self.generator.log_ratio
        if read_out is None:
            raise NotImplementedError(
                "`f`='tv' does not identify the density ratio (its optimal critic is "
                "sign(p - q) / 2); choose another `f`, e.g. 'kl' or 'js'."
            )
        t = as_sample(x, "x", min_samples=1)
        if self.n_features_in_ is not None and t.shape[1] != self.n_features_in_:
            raise ValueError(
                f"`x` must have {self.n_features_in_} features, as in `fit_critic`; "
                f"got {t.shape[1]}."
            )
        v = self._network(t)
        if self.bound == "dv":
            out = v - self.log_norm_
        elif self.bound == "nwj":
            out = v
        else:
            out = read_out(v)
        return out if is_tensor(x) else out.detach().cpu().numpy()

    def estimate_divergence(self, kind: str, x_p: torch.Tensor, x_q: torch.Tensor) -> torch.Tensor:
        """The bound converted to divergence ``kind``, the one that ``f`` estimates.

        ``kind`` is "kl" (f = kl), "rkl", "pearson", "hellinger" (``H^2``), "js" (f = js or
        gan; ``JS`` in [0, log 2]) or "tv", in the convention of :mod:`ratiokit.synthetic`.

        Raises
        ------
        ValueError
            If ``kind`` is not the divergence of this ``f``.
        """
        gen = self.generator
        if kind not in self.kinds:
            raise ValueError(
                f"`kind` must be {gen.kind!r} for f={self.f!r} (use FDivergence(f=...) for "
                f"another divergence); got {kind!r}."
            )
        return gen.scale * (self.forward(x_p, x_q) + gen.offset)

    def extra_repr(self) -> str:
        critic = "'mlp'" if self.critic is None else type(self.critic).__name__
        return (
            f"f={self.f!r}, bound={self.bound!r}, critic={critic}, hidden={self.hidden}, "
            f"max_steps={self.max_steps}, lr={self.lr}"
        )
