"""The Wasserstein-1 distance by its Kantorovich-Rubinstein dual: a 1-Lipschitz critic (WGAN)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from ratiokit._permutation import LabelMatrix, Statistics, linear_sums
from ratiokit._progress import check_progress
from ratiokit._rng import check_rng, fork_torch_rng
from ratiokit._validation import as_sample, as_sample_pair, check_choice, check_positive
from ratiokit.critics import (
    TRAINING_SETTINGS,
    Standardize,
    canonical_order,
    check_network,
    check_training,
    evaluate_critic,
    mlp_critic,
    train_critic,
    training_kwargs,
)
from ratiokit.methods._base import Discrepancy
from ratiokit.results import TrainHistory

__all__ = ["LIPSCHITZ", "Wasserstein"]

#: How :class:`Wasserstein` keeps its critic (about) 1-Lipschitz.
LIPSCHITZ = ("penalty", "spectral", "clip")
#: Activations with Lipschitz constant 1, for ``lipschitz="spectral"`` (GELU and SiLU exceed 1).
_ONE_LIPSCHITZ = ("elu", "leaky_relu", "relu", "tanh")
_DEFAULT_PENALTY = 10.0
_DEFAULT_CLIP = 0.01


class Wasserstein(Discrepancy):
    r"""The Wasserstein-1 distance by its dual: ``W1 = sup_{|f|_L <= 1} E_p[f] - E_q[f]``.

    Kantorovich-Rubinstein duality writes the earth mover's distance
    ``W1(P, Q) = inf_{pi in Pi(P, Q)} E_pi |x - y|`` (Euclidean norm, in the data's units) as
    a supremum over 1-Lipschitz critics ``f``. An MLP critic is trained by
    :func:`ratiokit.critics.train_critic` to maximise ``E_p[f] - E_q[f]`` under a Lipschitz
    control, and :meth:`forward` is the dual ``mean f(x_p) - mean f(x_q)`` on the given
    samples: differentiable in both samples and the critic's parameters. The controls:

    - ``"penalty"`` (WGAN-GP, Gulrajani et al. 2017): the critic descends
      ``-(E_p f - E_q f) + lambda E[(|grad f(x_hat)| - 1)^2]`` at random interpolates
      ``x_hat = e x_p + (1 - e) x_q``, ``e ~ U(0, 1)``; with ``one_sided=True`` the penalty
      is ``lambda E[max(0, |grad f(x_hat)| - 1)^2]`` (Petzka, Fischer and Lukovnicov 2018),
      which leaves critics with slopes below 1 free. A soft constraint: the critic's slope
      can exceed 1 slightly.
    - ``"spectral"``: every linear layer is spectrally normalised (Miyato et al. 2018) and
      the activation is 1-Lipschitz, so the critic is 1-Lipschitz (up to the power
      iteration's estimate of each layer's norm).
    - ``"clip"``: every critic parameter is clipped to ``[-clip_value, clip_value]`` after
      each step (Arjovsky, Chintala and Bottou 2017). The critic is then K-Lipschitz for an
      unknown K, so the dual estimates ``K W1`` at best: for reference and GAN training only.

    The critic sees ``(x - loc) / s`` and outputs ``s g(.)``, with ``loc`` the pooled mean and
    ``s`` one scale for all features (the root mean of the features' variances): the network
    works at unit scale, and ``f`` has the Lipschitz constant of ``g`` in the data's units
    (a scale per feature would change the metric that W1 is taken in).

    **Bias.** For any fixed 1-Lipschitz ``f``, ``E_p f - E_q f <= W1``: on samples the critic
    was not trained on (the held-out half of :func:`ratiokit.two_sample_test`, or fresh
    draws), the dual is an unbiased estimate of a value below W1, biased low because the MLP
    is a restricted class, trained imperfectly and stopped early. Two effects push it up.
    The penalty is soft: at its optimum the critic's slope is about ``1 + W1 / (2 lambda)``
    (for a critic linear along the transport, ``max_a a W1 - lambda (a - 1)^2``), so the dual
    can exceed W1 by about ``W1^2 / (2 lambda)`` (0.05 for W1 = 1 and ``lambda`` = 10). And
    :func:`ratiokit.discrepancy` evaluates the dual on the samples the critic was trained on,
    where it also fits their noise, up to the empirical W1 between each sample and its
    distribution (order ``n^{-1/2}`` in 1-D, ``n^{-1/d}`` in d > 2 dimensions). For a
    held-out estimate, fit on one part of each sample and call the method on the rest.

    Parameters
    ----------
    lipschitz : {"penalty", "spectral", "clip"}, default="penalty"
    penalty : float or None, default=None
        ``lambda > 0`` of the gradient penalty; None means 10 (Gulrajani et al.). Only with
        ``lipschitz="penalty"``.
    one_sided : bool, default=False
        The one-sided penalty ``max(0, |grad f| - 1)^2``. Only with ``lipschitz="penalty"``.
    clip_value : float or None, default=None
        Bound ``c > 0`` on every critic parameter; None means 0.01 (Arjovsky et al.). Only
        with ``lipschitz="clip"``.
    hidden : sequence of int, default=(64, 64)
    activation : str, default="leaky_relu"
        A piecewise-linear activation lets the critic bend sharply, as ``|x|`` does for two
        distributions with one centre; a smooth one (ELU) with the two-sided penalty tends to
        a critic linear along the data in 1-D, since bending lowers its slope. With
        ``lipschitz="spectral"``, one of the 1-Lipschitz "elu", "leaky_relu", "relu", "tanh".
    max_steps : int, default=1000
    batch_size : int, default=256
    lr : float, default=0.005
    weight_decay : float, default=0.0
    validation_fraction : float, default=0.2
    patience : int, default=100
    progress : bool or None, default=None
        The network and training settings of :func:`ratiokit.critics.train_critic`, as for
        :class:`~ratiokit.methods.classifier.Classifier`.

    Attributes
    ----------
    critic_ : torch.nn.Module
        The fitted network ``x -> g((x - loc) / s)``, shape (n,); ``f = scale_ * critic_``.
    scale_ : float
        ``s``.
    history_ : TrainHistory
        Training record of the critic.
    n_features_in_ : int

    Raises
    ------
    ValueError
        For an unknown ``lipschitz`` or ``activation``, a setting of another control, or a
        training setting out of range.
    TypeError
        For settings of the wrong type.

    Notes
    -----
    Training a model (:func:`ratiokit.train`, :func:`ratiokit.fit` with a generator, a WGAN):
    the model descends :meth:`generator_loss`, ``-mean f(x_q)``. In 1-D the two-sided
    penalty can stall it: once the model's samples pass the data, the critic must reverse its
    slope, which passes through ``|grad f| = 0`` where the penalty is ``lambda``, and the
    model keeps moving away. In two or more dimensions the critic's gradient can turn
    instead. ``one_sided=True`` (no penalty below slope 1) or ``lipschitz="spectral"`` has
    no such barrier. The output layer of the penalised critic starts at zero, so its first
    steps follow the dual alone (from a random start the two-sided penalty would lock in the
    critic's initial direction in the same way).

    References
    ----------
    Arjovsky, Chintala and Bottou (2017), "Wasserstein generative adversarial networks",
    ICML. Gulrajani, Ahmed, Arjovsky, Dumoulin and Courville (2017), "Improved training of
    Wasserstein GANs", NeurIPS. Petzka, Fischer and Lukovnicov (2018), "On the regularization
    of Wasserstein GANs", ICLR. Miyato, Kataoka, Koyama and Yoshida (2018), "Spectral
    normalization for generative adversarial networks", ICLR. Villani (2009), "Optimal
    transport: old and new", Springer, Theorem 5.10.

    Examples
    --------
    >>> import numpy as np
    >>> import ratiokit as rk
    >>> gen = np.random.default_rng(0)
    >>> x_p, x_q = gen.normal(1.0, 1.0, (500, 1)), gen.normal(0.0, 1.0, (500, 1))  # W1 = 1
    >>> w1 = rk.discrepancy(x_p, x_q, method="wasserstein", rng=0)
    >>> bool(0.9 < w1 < 1.2)  # the samples' mean gap is 1.04; the soft penalty adds ~0.05
    True
    """

    name: ClassVar[str] = "wasserstein"
    learned_critic: ClassVar[bool] = True
    training_settings: ClassVar[tuple[str, ...]] = TRAINING_SETTINGS

    def __init__(
        self,
        lipschitz: str = "penalty",
        *,
        penalty: float | None = None,
        one_sided: bool = False,
        clip_value: float | None = None,
        hidden: Sequence[int] = (64, 64),
        activation: str = "leaky_relu",
        max_steps: int = 1000,
        batch_size: int = 256,
        lr: float = 0.005,
        weight_decay: float = 0.0,
        validation_fraction: float = 0.2,
        patience: int = 100,
        progress: bool | None = None,
    ) -> None:
        super().__init__()
        self.lipschitz = check_choice(lipschitz, "lipschitz", LIPSCHITZ)
        for value, setting, owner in (
            (penalty, "penalty", "penalty"),
            (clip_value, "clip_value", "clip"),
        ):
            if value is not None:
                check_positive(value, setting)
                if lipschitz != owner:
                    raise ValueError(
                        f"`{setting}` must be None unless `lipschitz` is {owner!r}; got "
                        f"{value!r} with `lipschitz`={lipschitz!r}."
                    )
        if not isinstance(one_sided, bool):
            raise TypeError(f"`one_sided` must be True or False; got {one_sided!r}.")
        if one_sided and lipschitz != "penalty":
            raise ValueError(
                "`one_sided` must be False unless `lipschitz` is 'penalty'; got True with "
                f"`lipschitz`={lipschitz!r}."
            )
        self.hidden = check_network(hidden, activation)
        if lipschitz == "spectral" and activation not in _ONE_LIPSCHITZ:
            raise ValueError(
                f"`activation` must be one of {list(_ONE_LIPSCHITZ)} with `lipschitz`="
                f"'spectral' (a 1-Lipschitz activation); got {activation!r}."
            )
        check_training(
            max_steps=max_steps,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            validation_fraction=validation_fraction,
            patience=patience,
        )
        self.penalty = penalty
        self.one_sided = one_sided
        self.clip_value = clip_value
        self.activation = activation
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.progress = check_progress(progress)
        self.critic_: nn.Module | None = None
        self.scale_ = 1.0
        self.history_: TrainHistory | None = None
        self.n_features_in_: int | None = None

    # ------------------------------------------------------------------ fitting

    def init_critic(self, x_p: Any, x_q: Any, *, rng: Any = None) -> Wasserstein:
        """Build the critic for samples like ``x_p``, ``x_q`` without training it.

        For a training loop (a WGAN): the critic's parameters descend :meth:`critic_loss`.

        Raises
        ------
        ValueError
            If a sample is invalid.
        """
        x_p, x_q = as_sample_pair(x_p, x_q, min_samples=self.min_samples)
        x_p, x_q = x_p.detach(), x_q.detach()
        # Canonical order: the same rows in any order give bit-identical moments.
        pooled = torch.cat([x_p[canonical_order(x_p)], x_q[canonical_order(x_q)]])
        scale = float(pooled.var(dim=0).mean().sqrt())
        self.scale_ = scale if scale > 0 else 1.0
        d = x_p.shape[1]
        net = mlp_critic(
            d,
            self.hidden,
            activation=self.activation,
            spectral_norm=self.lipschitz == "spectral",
            rng=check_rng(rng),
            dtype=x_p.dtype,
            device=x_p.device,
        )
        if self.lipschitz == "penalty":
            # A zero output layer: f = 0 and its gradient is 0, so the first steps follow the
            # dual alone (see the class notes).
            nn.init.zeros_(net[-2].weight)
            nn.init.zeros_(net[-2].bias)
        self.critic_ = nn.Sequential(
            Standardize(pooled.mean(dim=0), torch.full_like(pooled[0], self.scale_)), net
        )
        self.history_ = None
        self.n_features_in_ = d
        return self

    def fit_critic(self, x_p: Any, x_q: Any, *, rng: Any = None) -> Wasserstein:
        """Train the critic to maximise the dual on ``x_p`` ~ P, ``x_q`` ~ Q.

        Parameters
        ----------
        x_p : Tensor or array of shape (n, d)
        x_q : Tensor or array of shape (m, d)
        rng : None, int or numpy.random.Generator, default=None
            Seeds the initialisation, validation split, minibatches and the interpolation
            weights of the penalty; the fit does not depend on the order of the rows.

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
        with fork_torch_rng(gen, x_p.device):  # the penalty's interpolation weights
            self.history_ = train_critic(
                lambda _, a, b: self.critic_loss(a, b),
                self.critic_,
                x_p,
                x_q,
                rng=gen,
                **training_kwargs(self),
            )
        self._clip()
        return self

    # ------------------------------------------------------------------ evaluation

    def critic_score(self, x: torch.Tensor) -> torch.Tensor:
        """The critic ``f(x)`` at the rows of the tensor ``x`` (n, d), shape (n,).

        Raises
        ------
        RuntimeError
            Before :meth:`fit_critic` or :meth:`init_critic`.
        """
        if self.critic_ is None:
            raise RuntimeError("Wasserstein is not fitted yet; call `fit_critic(x_p, x_q)` first.")
        return self.scale_ * evaluate_critic(self.critic_, x)

    def forward(self, x_p: torch.Tensor, x_q: torch.Tensor) -> torch.Tensor:
        """The dual ``mean f(x_p) - mean f(x_q)``, an estimate of W1(P, Q) (see the bias).

        Raises
        ------
        RuntimeError
            Before :meth:`fit_critic`.
        """
        value = self.critic_score(x_p).mean() - self.critic_score(x_q).mean()
        return value.to(x_p.dtype)

    def gradient_penalty(self, x: Any) -> torch.Tensor:
        """``lambda mean_i (|grad f(x_i)| - 1)^2`` at the rows of ``x`` (n, d).

        With ``one_sided``: ``lambda mean_i max(0, |grad f(x_i)| - 1)^2``. Differentiable in
        the critic's parameters (a double backward) when gradients are enabled.

        Raises
        ------
        ValueError
            Unless ``lipschitz="penalty"``, or if ``x`` is not a sample with the fitted
            number of features.
        RuntimeError
            Before :meth:`fit_critic` or :meth:`init_critic`.
        """
        if self.lipschitz != "penalty":
            raise ValueError(
                f"`lipschitz` must be 'penalty' for a gradient penalty; got {self.lipschitz!r}."
            )
        t = as_sample(x, "x", min_samples=1)
        if self.n_features_in_ is not None and t.shape[1] != self.n_features_in_:
            raise ValueError(
                f"`x` must have {self.n_features_in_} features, as in `fit_critic`; "
                f"got {t.shape[1]}."
            )
        create_graph = torch.is_grad_enabled()
        t = t.detach().requires_grad_(True)
        with torch.enable_grad():  # also for a held-out loss evaluated under no_grad
            (grad,) = torch.autograd.grad(self.critic_score(t).sum(), t, create_graph=create_graph)
        excess = torch.linalg.vector_norm(grad, dim=1) - 1.0
        if self.one_sided:
            excess = excess.clamp(min=0.0)
        weight = _DEFAULT_PENALTY if self.penalty is None else self.penalty
        return weight * excess.square().mean()

    # ------------------------------------------------------------------ training hooks

    def critic_loss(self, x_p: torch.Tensor, x_q: torch.Tensor) -> torch.Tensor:
        """``-(mean f(x_p) - mean f(x_q))``, plus the gradient penalty at interpolates.

        With ``lipschitz="penalty"``, the first ``k = min(n, m)`` rows are paired and
        ``x_hat = e x_p + (1 - e) x_q`` with ``e ~ U(0, 1)`` per pair, drawn from torch's
        global RNG (which :meth:`fit_critic` and :func:`ratiokit.train` seed). With
        ``lipschitz="clip"``, the parameters are clipped first: after the previous step.
        """
        self._clip()
        loss = -self(x_p, x_q)
        if self.lipschitz == "penalty":
            k = min(x_p.shape[0], x_q.shape[0])
            e = torch.rand(k, 1, dtype=x_p.dtype, device=x_p.device)
            x_hat = e * x_p[:k].detach() + (1.0 - e) * x_q[:k].detach()
            loss = loss + self.gradient_penalty(x_hat)
        return loss

    def generator_loss(
        self, x_p: torch.Tensor, x_q: torch.Tensor, *, saturating: bool = False
    ) -> torch.Tensor:
        """The loss of a model sampling ``x_q``: ``-mean f(x_q)``.

        ``saturating=True`` gives :meth:`forward`, which differs by ``mean f(x_p)``, a
        constant for the model: both have the same gradient (the WGAN loss does not
        saturate). With ``lipschitz="clip"``, the parameters are clipped first.
        """
        self._clip()
        if saturating:
            return self(x_p, x_q)
        return -self.critic_score(x_q).mean().to(x_q.dtype)

    def _clip(self) -> None:
        """Clip the critic's parameters to ``[-c, c]`` (``lipschitz="clip"`` only); in place
        only where one is outside, so a graph that holds them is not invalidated."""
        if self.lipschitz != "clip" or self.critic_ is None:
            return
        c = _DEFAULT_CLIP if self.clip_value is None else self.clip_value
        with torch.no_grad():
            for param in self.critic_.parameters():
                if bool((param.abs() > c).any()):
                    param.clamp_(-c, c)

    def null_statistics(
        self, z: torch.Tensor, labels: LabelMatrix, progress: bool | None
    ) -> Statistics:
        """The dual of every relabelling in one matrix product: it is linear in the labels.

        With ``s = f(z)`` on the pooled held-out sample, ``T = mean_x s - mean_y s``.
        """
        with torch.no_grad():
            scores = self.critic_score(z).to(torch.float64)
        n, m = labels.n, z.shape[0] - labels.n
        sums = linear_sums(scores[:, None], labels)[0]
        values = (sums / n - (scores.sum() - sums) / m).cpu().numpy()
        return Statistics(values, float(scores.abs().mean()), {"statistic": "dual"})

    def extra_repr(self) -> str:
        text = f"lipschitz={self.lipschitz!r}"
        if self.penalty is not None:
            text += f", penalty={self.penalty}"
        if self.one_sided:
            text += ", one_sided=True"
        if self.clip_value is not None:
            text += f", clip_value={self.clip_value}"
        return text + f", hidden={self.hidden}, max_steps={self.max_steps}, lr={self.lr}"
