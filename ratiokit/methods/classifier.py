"""Class-probability estimation: a classifier between the samples gives the density ratio."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from torch import nn

from ratiokit._progress import check_progress
from ratiokit._rng import check_rng
from ratiokit._validation import as_sample, as_sample_pair, check_choice, check_int, is_tensor
from ratiokit.critics import (
    TRAINING_SETTINGS,
    canonical_order,
    check_network,
    check_training,
    evaluate_critic,
    make_critic,
    train_critic,
    training_kwargs,
)
from ratiokit.methods._base import Discrepancy
from ratiokit.results import TrainHistory

__all__ = ["Classifier"]

CALIBRATIONS = ("sigmoid", "isotonic")
#: Probabilities from ``predict_proba`` are clipped here before taking logs, so log-odds
#: from scikit-learn critics lie within +-log(1e15) = +-34.5.
PROBA_FLOOR = 1e-15


def _balanced_logistic_loss(
    critic: nn.Module, x_p: torch.Tensor, x_q: torch.Tensor
) -> torch.Tensor:
    """``-(E_p[log sigmoid T] + E_q[log sigmoid(-T)]) / 2``: minimised by ``T = log p/q``."""
    t_p, t_q = evaluate_critic(critic, x_p), evaluate_critic(critic, x_q)
    return -0.5 * (F.logsigmoid(t_p).mean() + F.logsigmoid(-t_q).mean())


class Classifier(Discrepancy):
    r"""Density ratio by class-probability estimation: a classifier of P's rows against Q's.

    ``log r(x) = logit D(x) + log(n_q / n_p)``, with ``D(x)`` the probability that ``x`` is
    from P. The default critic is a torch MLP ``T`` trained on the *class-balanced* logistic
    loss ``-(E_p[log sigmoid T] + E_q[log sigmoid(-T)]) / 2``, whose minimiser is
    ``T = log p/q`` whatever ``n_p / n_q``, so its prior term is 0. A scikit-learn critic is
    fit on the pooled rows (label 1 for P, 0 for Q) and gets the prior correction
    ``log(n_q / n_p)`` of its training rows. The log-odds of a scikit-learn critic come from
    ``predict_proba`` (clipped to [1e-15, 1], so within +-34.5), or else from
    ``decision_function``, which is then taken to *be* the log-odds (right for logistic
    models; for margin classifiers such as SVMs pass ``calibration``).

    :meth:`forward` is ``log 2 + (E_p[log sigmoid T] + E_q[log sigmoid(-T)]) / 2`` with
    ``T = log r``: ``log 2`` minus the balanced cross-entropy, the Jensen-Shannon divergence
    ``JS = KL(P||M) / 2 + KL(Q||M) / 2``, ``M = (P + Q) / 2`` (in nats, in [0, log 2]) at the
    optimal critic and a lower bound on it otherwise; about 0 (or below) when P = Q. It is
    the GAN discrepancy of Goodfellow et al. (2014) up to scale, differentiable in both
    samples and in the torch critic's parameters. A scikit-learn critic is not
    differentiable: it supports estimation and testing only, and :meth:`forward` raises when
    an input requires a gradient.

    With ``cross_fit=K`` the rows of each sample are split into K folds and one critic is fit
    per fold on the other K - 1 folds. At new points :meth:`log_ratio` averages the K
    critics' log-ratios; at the training rows, the out-of-fold log-ratios
    ``oof_log_ratio_p_`` and ``oof_log_ratio_q_`` (from the one critic that did not see each
    row) are free of the optimism of in-sample estimates, e.g. for the plug-in
    ``KL ~ mean(oof_log_ratio_p_)``.

    The settings ``max_steps`` to ``patience`` train the critic of :meth:`fit_critic`. In
    :func:`ratiokit.train` and :func:`ratiokit.fit` the critic is trained by the
    :class:`~ratiokit.TrainConfig` instead, so a value other than the default there is
    refused (ValueError) rather than ignored.

    Parameters
    ----------
    critic : None, torch.nn.Module or scikit-learn classifier, default=None
        ``None``: an MLP (:func:`ratiokit.critics.mlp_critic`) on standardised inputs. A
        module mapping (n, d) to (n,) or (n, 1) is copied and trained from its current
        weights on raw inputs. A scikit-learn classifier (with ``fit`` and ``predict_proba``
        or ``decision_function``, e.g. ``LogisticRegression``, ``MLPClassifier``,
        ``HistGradientBoostingClassifier``) is cloned and fit; an unset ``random_state`` is
        drawn from ``rng``.
    calibration : {None, "sigmoid", "isotonic"}, default=None
        Calibrate a scikit-learn critic's probabilities with
        :class:`sklearn.calibration.CalibratedClassifierCV` (5-fold). Not for torch critics,
        whose logistic loss is already a proper scoring rule. Prefer ``"sigmoid"`` for
        ratios: isotonic calibration is a step function that reaches probabilities 0 and 1
        at the edges of the data, where the log-ratio then sits at the clip +-34.5.
    cross_fit : int or None, default=None
        Number of folds K >= 2 for cross-fitting; ``None`` fits one critic on all rows.
    hidden : sequence of int, default=(64, 64)
        Hidden widths of the default MLP.
    activation : str, default="elu"
        Hidden activation of the default MLP (see :data:`ratiokit.critics.ACTIVATIONS`).
    spectral_norm : bool, default=False
        Spectral normalisation of the default MLP's layers (a fitted method then pickles only
        through its ``state_dict``).
    max_steps : int, default=1000
        Most Adam steps per critic (0: an untrained critic, e.g. to start a GAN).
    batch_size : int, default=256
        Rows of each sample per step (the whole sample if smaller).
    lr : float, default=0.005
        Adam's learning rate.
    weight_decay : float, default=0.0
        Adam's L2 penalty.
    validation_fraction : float, default=0.2
        Held-out fraction of each sample for early stopping (0: no early stopping).
    patience : int, default=100
        Steps without a lower held-out loss before stopping.
    progress : bool or None, default=None
        A progress bar while training: None shows it only on a terminal, True always,
        False never.

    Attributes
    ----------
    critics_ : torch.nn.ModuleList or list of scikit-learn classifiers
        The fitted critic, or one per fold with ``cross_fit``.
    log_prior_ : list of float
        Each critic's prior correction ``log(n_q / n_p)`` (0 for torch critics).
    history_ : list of TrainHistory
        Training record of each torch critic (empty for scikit-learn critics), from the
        critic-only training loop :func:`ratiokit.critics.train_critic`: ``critic_loss`` per
        step, the held-out ``val_loss``, ``best_step`` and ``stopped_early``.
    oof_log_ratio_p_, oof_log_ratio_q_ : Tensor of shape (n,) and (m,), or None
        Out-of-fold log-ratios at the rows of ``x_p`` and ``x_q``, in their order, with
        ``cross_fit``; otherwise None.
    n_features_in_ : int

    References
    ----------
    Sugiyama, Suzuki and Kanamori (2012), "Density Ratio Estimation in Machine Learning",
    Cambridge University Press, ch. 4. Goodfellow et al. (2014), "Generative adversarial
    nets", NeurIPS. Chernozhukov et al. (2018), "Double/debiased machine learning for
    treatment and structural parameters", Econometrics Journal 21 (cross-fitting).

    Examples
    --------
    >>> import torch
    >>> from ratiokit.synthetic import GaussianShift
    >>> pair = GaussianShift(dim=1, shift=1.0)  # log r(x) = x - 1/2
    >>> x_p = torch.tensor(pair.sample_p(500, rng=0))
    >>> x_q = torch.tensor(pair.sample_q(500, rng=1))
    >>> clf = Classifier().fit_critic(x_p, x_q, rng=0)
    >>> grid = torch.linspace(-1.0, 2.0, 7, dtype=torch.float64)[:, None]
    >>> err = clf.log_ratio(grid).detach() - pair.log_ratio(grid)
    >>> bool(err.abs().max() < 0.3), 0.05 < clf(x_p, x_q).item() < 0.15  # JS = 0.1
    (True, True)
    """

    name: ClassVar[str] = "classifier"
    has_log_ratio: ClassVar[bool] = True
    learned_critic: ClassVar[bool] = True
    training_settings: ClassVar[tuple[str, ...]] = TRAINING_SETTINGS
    divergence_kinds: ClassVar[tuple[str, ...]] = ("js",)

    def __init__(
        self,
        critic: Any = None,
        *,
        calibration: str | None = None,
        cross_fit: int | None = None,
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
        self._is_sklearn = _check_critic(critic)
        if calibration is not None:
            check_choice(calibration, "calibration", CALIBRATIONS)
            if not self._is_sklearn:
                raise ValueError(
                    "`calibration` must be None for a torch critic (its logistic loss is "
                    f"already calibrated; pass a scikit-learn classifier); got {calibration!r}."
                )
        if cross_fit is not None:
            check_int(cross_fit, "cross_fit", minimum=2)
        check_training(
            max_steps=max_steps,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            validation_fraction=validation_fraction,
            patience=patience,
        )
        # A torch template must not be a registered submodule: its (untrained) parameters
        # would join ``parameters()``. Each fit trains a copy held in ``critics_``.
        object.__setattr__(self, "critic", critic)
        self.calibration = calibration
        self.cross_fit = cross_fit
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
        self.critics_: nn.ModuleList | list[Any] | None = None
        self.log_prior_: list[float] = []
        self.history_: list[TrainHistory] = []
        self.oof_log_ratio_p_: torch.Tensor | None = None
        self.oof_log_ratio_q_: torch.Tensor | None = None
        self.n_features_in_: int | None = None

    # ------------------------------------------------------------------ fitting

    def fit_critic(self, x_p: Any, x_q: Any, *, rng: Any = None) -> Classifier:
        """Fit the critic (one per fold with ``cross_fit``) to classify ``x_p`` against ``x_q``.

        Parameters
        ----------
        x_p : Tensor or array of shape (n, d)
            Sample from P (label 1).
        x_q : Tensor or array of shape (m, d)
            Sample from Q (label 0).
        rng : None, int or numpy.random.Generator, default=None
            Seeds the folds, network initialisation, validation split and minibatches (or a
            scikit-learn critic's unset ``random_state``). The rows are put in a canonical
            order first, so the fit does not depend on their order.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            If a sample is invalid, or has fewer rows than ``2 * cross_fit``.
        RuntimeError
            If training reaches a non-finite loss.
        """
        x_p, x_q = as_sample_pair(x_p, x_q, min_samples=self.min_samples)
        x_p, x_q = x_p.detach(), x_q.detach()
        gen = check_rng(rng)
        k = 1 if self.cross_fit is None else self.cross_fit
        for name, x in (("x_p", x_p), ("x_q", x_q)):
            if k > 1 and x.shape[0] < 2 * k:
                raise ValueError(
                    f"`{name}` must have at least 2 * `cross_fit` = {2 * k} samples; "
                    f"got {x.shape[0]}."
                )
        folds_p, folds_q = _folds(x_p, k, gen), _folds(x_q, k, gen)
        critics: list[Any] = []
        self.log_prior_, self.history_ = [], []
        for fold, stream in enumerate(gen.spawn(k)):
            train_p = x_p[folds_p != fold] if k > 1 else x_p
            train_q = x_q[folds_q != fold] if k > 1 else x_q
            if self._is_sklearn:
                critics.append(self._fit_sklearn(train_p, train_q, stream))
                self.log_prior_.append(math.log(train_q.shape[0] / train_p.shape[0]))
            else:
                critics.append(self._fit_torch(train_p, train_q, stream))
                self.log_prior_.append(0.0)
        self.critics_ = list(critics) if self._is_sklearn else nn.ModuleList(critics)
        self.n_features_in_ = x_p.shape[1]
        self.oof_log_ratio_p_ = self.oof_log_ratio_q_ = None
        if k > 1:
            with torch.no_grad():
                self.oof_log_ratio_p_ = self._out_of_fold(x_p, folds_p)
                self.oof_log_ratio_q_ = self._out_of_fold(x_q, folds_q)
        return self

    def _new_critic(
        self, x_p: torch.Tensor, x_q: torch.Tensor, gen: np.random.Generator
    ) -> nn.Module:
        return make_critic(
            self.critic,
            x_p,
            x_q,
            hidden=self.hidden,
            activation=self.activation,
            spectral_norm=self.spectral_norm,
            rng=gen,
        )

    def _fit_torch(
        self, x_p: torch.Tensor, x_q: torch.Tensor, gen: np.random.Generator
    ) -> nn.Module:
        critic = self._new_critic(x_p, x_q, gen)
        self.history_.append(
            train_critic(
                _balanced_logistic_loss,
                critic,
                x_p,
                x_q,
                rng=gen,
                **training_kwargs(self),
            )
        )
        return critic

    def _fit_sklearn(self, x_p: torch.Tensor, x_q: torch.Tensor, gen: np.random.Generator) -> Any:
        # Canonical row order, then one seeded shuffle: the fit depends on the rows as a set,
        # and CalibratedClassifierCV's unshuffled stratified folds see mixed rows.
        x = torch.cat([x_p[canonical_order(x_p)], x_q[canonical_order(x_q)]]).cpu().numpy()
        y = np.r_[np.ones(x_p.shape[0]), np.zeros(x_q.shape[0])].astype(np.int64)
        perm = gen.permutation(x.shape[0])
        estimator = clone(self.critic)
        if estimator.get_params().get("random_state", 0) is None:
            estimator.set_params(random_state=int(gen.integers(2**31 - 1)))
        if self.calibration is not None:
            estimator = CalibratedClassifierCV(estimator, method=self.calibration)
        return estimator.fit(x[perm].astype(np.float64), y[perm])

    def init_critic(self, x_p: Any, x_q: Any, *, rng: Any = None) -> Classifier:
        """Build the torch critic for samples like ``x_p``, ``x_q`` without training it.

        For a training loop (a GAN's discriminator): the critic's parameters then descend
        :meth:`critic_loss`, the balanced logistic loss minus ``log 2``.

        Raises
        ------
        TypeError
            If the critic is a scikit-learn classifier (it has no gradient).
        ValueError
            With ``cross_fit`` (one critic is trained), or if a sample is invalid.
        """
        if self._is_sklearn:
            raise TypeError(
                "`critic` must be a torch module to train in a loop; got "
                f"{type(self.critic).__name__}, a scikit-learn classifier."
            )
        if self.cross_fit is not None:
            raise ValueError(
                f"`cross_fit` must be None to train one critic in a loop; got {self.cross_fit}."
            )
        x_p, x_q = as_sample_pair(x_p, x_q, min_samples=self.min_samples)
        self.critics_ = nn.ModuleList(
            [self._new_critic(x_p.detach(), x_q.detach(), check_rng(rng))]
        )
        self.log_prior_, self.history_ = [0.0], []
        self.oof_log_ratio_p_ = self.oof_log_ratio_q_ = None
        self.n_features_in_ = x_p.shape[1]
        return self

    def _out_of_fold(self, x: torch.Tensor, folds: torch.Tensor) -> torch.Tensor:
        out = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
        for fold in range(len(self.log_prior_)):
            rows = folds == fold
            out[rows] = self._critic_log_ratio(fold, x[rows])
        return out

    # ------------------------------------------------------------------ evaluation

    def _critic_log_ratio(self, fold: int, x: torch.Tensor) -> torch.Tensor:
        """``log r`` from critic ``fold`` at the rows of the tensor ``x``, in ``x``'s dtype."""
        critic = self.critics_[fold]  # type: ignore[index]
        if not self._is_sklearn:
            return evaluate_critic(critic, x)
        a = x.detach().cpu().numpy().astype(np.float64)
        if hasattr(critic, "predict_proba"):
            proba = np.clip(critic.predict_proba(a), PROBA_FLOOR, None)
            column = list(critic.classes_).index(1)
            logit = np.log(proba[:, column]) - np.log(proba[:, 1 - column])
        else:
            logit = np.asarray(critic.decision_function(a), dtype=np.float64)
        return torch.as_tensor(logit + self.log_prior_[fold], dtype=x.dtype, device=x.device)

    def _log_ratio(self, x: torch.Tensor) -> torch.Tensor:
        if self.critics_ is None:
            raise RuntimeError("Classifier is not fitted yet; call `fit_critic(x_p, x_q)` first.")
        if len(self.log_prior_) == 1:  # one critic (no cross-fitting): no stack, same values
            return self._critic_log_ratio(0, x)
        folds = range(len(self.log_prior_))
        return torch.stack([self._critic_log_ratio(k, x) for k in folds]).mean(dim=0)

    def log_ratio(self, x: Any) -> Any:
        """Estimated ``log p(x)/q(x)`` at the rows of ``x``: the critics' mean log-ratio.

        Parameters
        ----------
        x : Tensor or array of shape (n, d)

        Returns
        -------
        Tensor or array of shape (n,), of ``x``'s type, dtype and device
            For a tensor and a torch critic, differentiable in ``x`` and the critic.

        Raises
        ------
        RuntimeError
            Before :meth:`fit_critic`.
        ValueError
            If ``x`` is not a finite sample with the fitted number of features.
        """
        t = as_sample(x, "x", min_samples=1)
        if self.n_features_in_ is not None and t.shape[1] != self.n_features_in_:
            raise ValueError(
                f"`x` must have {self.n_features_in_} features, as in `fit_critic`; "
                f"got {t.shape[1]}."
            )
        out = self._log_ratio(t)
        return out if is_tensor(x) else out.detach().cpu().numpy()

    def forward(self, x_p: torch.Tensor, x_q: torch.Tensor) -> torch.Tensor:
        """``log 2 + (E_p[log sigmoid T] + E_q[log sigmoid(-T)]) / 2``, ``T`` the log-ratio.

        A lower bound on the Jensen-Shannon divergence (nats), tight at the optimal critic.

        Raises
        ------
        RuntimeError
            Before :meth:`fit_critic`.
        TypeError
            If the critic is a scikit-learn classifier and an input requires a gradient.
        """
        self._check_differentiable(x_p, x_q)
        t_p, t_q = self._log_ratio(x_p), self._log_ratio(x_q)
        value = math.log(2.0) + 0.5 * (F.logsigmoid(t_p).mean() + F.logsigmoid(-t_q).mean())
        return value.to(x_p.dtype)

    def _check_differentiable(self, x_p: torch.Tensor, x_q: torch.Tensor) -> None:
        if (
            self._is_sklearn
            and torch.is_grad_enabled()
            and (x_p.requires_grad or x_q.requires_grad)
        ):
            raise TypeError(
                "`critic` must be a torch module for a differentiable estimate (an input "
                f"requires a gradient); got {type(self.critic).__name__}, a scikit-learn "
                "classifier, which supports estimation and testing only."
            )

    def generator_loss(
        self, x_p: torch.Tensor, x_q: torch.Tensor, *, saturating: bool = False
    ) -> torch.Tensor:
        """The loss of a model sampling ``x_q``: ``-E_q[log sigmoid T]`` (non-saturating).

        ``T = log r`` is the discriminator's logit. ``saturating=True`` gives the minimax
        loss :meth:`forward`, whose ``x_q`` part ``E_q[log sigmoid(-T)] / 2`` flattens where
        the discriminator rejects the model's samples (Goodfellow et al. 2014, sec. 3).
        """
        if saturating:
            return self(x_p, x_q)
        self._check_differentiable(x_p, x_q)
        return -F.logsigmoid(self._log_ratio(x_q)).mean().to(x_q.dtype)

    def critic_score(self, x: torch.Tensor) -> torch.Tensor:
        """The discriminator's logit ``T(x) = log r(x)`` at the rows of ``x``, shape (n,)."""
        return self._log_ratio(x)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The divergences this instance estimates: ``("js",)``."""
        return self.divergence_kinds

    def estimate_divergence(self, kind: str, x_p: torch.Tensor, x_q: torch.Tensor) -> torch.Tensor:
        """The Jensen-Shannon divergence ``kind="js"`` (nats): :meth:`forward`."""
        check_choice(kind, "kind", self.kinds)
        return self.forward(x_p, x_q)

    def extra_repr(self) -> str:
        if self._is_sklearn:
            text = f"critic={type(self.critic).__name__}"
        else:
            critic = "'mlp'" if self.critic is None else type(self.critic).__name__
            text = (
                f"critic={critic}, hidden={self.hidden}, max_steps={self.max_steps}, lr={self.lr}"
            )
        if self.calibration is not None:
            text += f", calibration={self.calibration!r}"
        if self.cross_fit is not None:
            text += f", cross_fit={self.cross_fit}"
        return text


def _check_critic(critic: Any) -> bool:
    """Validate ``critic``; return whether it is a scikit-learn classifier."""
    if critic is None or isinstance(critic, nn.Module):
        return False
    if hasattr(critic, "fit") and (
        hasattr(critic, "predict_proba") or hasattr(critic, "decision_function")
    ):
        return True
    raise TypeError(
        "`critic` must be None, a torch.nn.Module or a scikit-learn classifier with "
        f"`predict_proba` or `decision_function`; got {type(critic).__name__}."
    )


def _folds(x: torch.Tensor, k: int, gen: np.random.Generator) -> torch.Tensor:
    """A fold label in [0, k) per row of ``x``, balanced, by rank in canonical order."""
    labels = torch.as_tensor(gen.permutation(np.arange(x.shape[0]) % k), device=x.device)
    folds = torch.empty_like(labels)
    folds[canonical_order(x)] = labels
    return folds
