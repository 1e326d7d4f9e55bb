"""The extension point: every method is a :class:`Discrepancy`, a sample estimate of D(P, Q)."""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ratiokit._permutation import (
    LabelMatrix,
    Statistics,
    held_out_scores,
    score_statistics,
    vmap_statistics,
)

__all__ = ["TEST_FITS", "Discrepancy", "fits_on_split"]

#: How :func:`ratiokit.two_sample_test` fits a method before testing it (``test_fit``).
TEST_FITS = ("split", "all", "none")


class Discrepancy(nn.Module):
    """A differentiable sample estimate of a discrepancy D(P, Q) between two distributions.

    Subclasses set ``name`` (the registry key) and implement :meth:`forward`. Ratio-family
    methods set ``has_log_ratio = True`` and implement :meth:`log_ratio`. A method with a
    closed-form or data-dependent critic (kernel weights, a bandwidth) solves it in
    :meth:`fit_critic`; a method with trainable parameters exposes them as usual for an
    :class:`torch.nn.Module`, and a trainer ascends :meth:`forward` in them.

    Attributes
    ----------
    name : str
        Registry key, e.g. ``"mmd"``.
    has_log_ratio : bool
        Whether :meth:`log_ratio` is available after :meth:`fit_critic`.
    min_samples : int
        Fewest rows per sample the estimate is defined for.
    ratio_anywhere : bool
        Whether :meth:`log_ratio` can be evaluated at any point (False for kernel mean
        matching, whose weights live on the fitted Q sample only).
    learned_critic : bool
        Whether :meth:`fit_critic` learns from the data (network weights, kernel-model
        coefficients); it sets the default ``test_fit``.
    divergence_kinds : tuple of str
        Divergences the method estimates with an estimator of its own
        (:meth:`estimate_divergence`); every ratio method also gets plug-in estimates from
        :meth:`log_ratio` through :func:`ratiokit.divergence`.
    refit_per_batch : bool
        Whether a training loop solves :meth:`fit_critic` on every minibatch before the
        model's step (closed-form critics whose :meth:`forward` reads the fitted solution).
    test_fit : {"split", "all", "none"}
        How :func:`ratiokit.two_sample_test` fits the method: ``"split"`` fits on one part of
        each sample and tests on the held-out rest (the default for a ``learned_critic``);
        ``"all"`` fits on all the data, which must use no labels (a median bandwidth: the
        default otherwise); ``"none"`` does not fit (a statistic without a critic, such as
        Hotelling's T^2).
    scale_invariant : bool
        Whether the test statistic is unchanged by rescaling each feature (Hotelling's T^2):
        the test then does not warn when the features' scales differ widely.
    null : {"permutation", "wild"}
        How the test relabels the pooled sample: permutations, or (``"wild"``, n = m only)
        swaps of the pairs ``(x_i, y_i)``, the wild bootstrap.

    Notes
    -----
    Settings follow scikit-learn's conventions: :meth:`get_params` returns the constructor's
    arguments as given (recorded when the instance is created, so every subclass gets them
    from its ``__init__`` signature), :meth:`set_params` rebuilds the instance with new ones,
    and :func:`sklearn.base.clone` gives an unfitted copy. Nested names reach a setting's own
    settings (``critic__C`` for a scikit-learn critic), and through
    :class:`~ratiokit.RatioEstimator` a method's (``method__n_centres``), as in
    ``GridSearchCV``.

    Training hooks (the alternating loop of :func:`ratiokit.train`): :meth:`init_critic`
    builds the trainable critic without training it; the critic's parameters descend
    :meth:`critic_loss` (default ``-forward``: they ascend the discrepancy); the model
    descends :meth:`generator_loss` (default ``forward``); :meth:`critic_score` is the
    per-row critic output that a gradient penalty differentiates. The constructor's
    arguments named in ``training_settings`` train the critic in :meth:`fit_critic` only:
    :func:`ratiokit.train` refuses a value other than the default there (the loop's
    :class:`~ratiokit.TrainConfig` trains the critic).
    """

    name: ClassVar[str]
    has_log_ratio: ClassVar[bool] = False
    min_samples: ClassVar[int] = 2
    ratio_anywhere: ClassVar[bool] = True
    learned_critic: ClassVar[bool] = False
    divergence_kinds: ClassVar[tuple[str, ...]] = ()
    refit_per_batch: ClassVar[bool] = False
    test_fit: ClassVar[str] = "all"
    scale_invariant: ClassVar[bool] = False
    training_settings: ClassVar[tuple[str, ...]] = ()
    null: str = "permutation"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "test_fit" not in cls.__dict__:  # a learned critic is fitted on a split by default
            cls.test_fit = "split" if cls.learned_critic else "all"
        if "forward" in cls.__dict__ and "null_statistics" not in cls.__dict__:
            # A batched null computes its class's own formula: a subclass that redefines the
            # statistic without its own null_statistics gets the generic one over its forward.
            cls.null_statistics = Discrepancy.null_statistics

    def __new__(cls, *args: Any, **kwargs: Any) -> Discrepancy:
        # Record the constructor's arguments, defaults filled in, before ``__init__`` validates
        # and converts them: :meth:`get_params` returns them as given. ``__new__`` sees the
        # arguments of the class being built only (a subclass calling ``super().__init__``
        # with other values does not overwrite them); unpickling and deep copies call it with
        # no arguments, then restore the recorded ones with the rest of the state. As in
        # scikit-learn, ``*args`` and ``**kwargs`` are not parameters (a subclass without an
        # ``__init__`` of its own has none).
        self = super().__new__(cls)
        signature = inspect.signature(cls.__init__)
        bound = signature.bind_partial(self, *args, **kwargs)
        bound.apply_defaults()
        named = [
            p.name
            for p in list(signature.parameters.values())[1:]
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        params = {name: bound.arguments[name] for name in named if name in bound.arguments}
        object.__setattr__(self, "_init_params", params)
        return self

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's arguments, as given; with ``deep``, also ``name__sub`` entries.

        Parameters
        ----------
        deep : bool, default=True
            Also return the parameters of each argument that has ``get_params`` (a
            scikit-learn critic), as ``<argument>__<parameter>``.

        Returns
        -------
        dict
            ``type(self)(**self.get_params(deep=False))`` is an unfitted copy.

        Examples
        --------
        >>> from ratiokit.methods import ULSIF
        >>> ULSIF(n_centres=50).get_params()["n_centres"]
        50
        """
        params = dict(self._init_params)
        if deep:
            for name, value in self._init_params.items():
                if hasattr(value, "get_params") and not isinstance(value, type):
                    params.update({f"{name}__{k}": v for k, v in value.get_params().items()})
        return params

    def set_params(self, **params: Any) -> Discrepancy:
        """Set constructor arguments (``name=value``) or their own (``name__sub=value``).

        The instance is rebuilt by its constructor from the merged arguments, so new values
        are validated as at construction and any fitted state is dropped; if a value is
        refused, the instance is left unchanged.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For a name that is not a constructor argument, or a nested name whose argument
            has no ``set_params``; the constructor's errors for refused values.

        Examples
        --------
        >>> from ratiokit.methods import ULSIF
        >>> ULSIF().set_params(n_centres=50).n_centres
        50
        """
        own = dict(self._init_params)
        nested: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in own:
                raise ValueError(
                    f"`{name}` must be a parameter of {type(self).__name__}, one of "
                    f"{sorted(own)}; got {key!r}."
                )
            if sub:
                if not hasattr(own[name], "set_params"):
                    raise ValueError(
                        f"`{name}` must have parameters of its own to set {key!r}; got "
                        f"{own[name]!r}."
                    )
                nested.setdefault(name, {})[sub] = value
            else:
                own[name] = value
        fresh = type(self)(**own)  # validates before anything changes
        for name, sub_params in nested.items():
            own[name].set_params(**sub_params)
        self.__dict__.clear()
        self.__dict__.update(fresh.__dict__)
        return self

    def __repr__(self) -> str:
        # One line: nn.Module's repr would also print a fitted critic's layers.
        return f"{type(self).__name__}({self.extra_repr()})"

    def forward(self, x_p: torch.Tensor, x_q: torch.Tensor) -> torch.Tensor:
        """Estimate D(P, Q) from ``x_p`` (n, d) ~ P and ``x_q`` (m, d) ~ Q as a 0-d tensor."""
        raise NotImplementedError

    def log_ratio(self, x: torch.Tensor) -> torch.Tensor:
        """Estimated ``log p(x) / q(x)`` at the rows of ``x`` (n, d), shape (n,)."""
        raise NotImplementedError(
            f"method {self.name!r} estimates a density difference, not a ratio; "
            "choose a method with `has_log_ratio`."
        )

    @property
    def kinds(self) -> tuple[str, ...]:
        """Divergences this instance estimates itself (a subset of ``divergence_kinds``)."""
        return self.divergence_kinds

    @classmethod
    def for_divergence(cls, kind: str) -> Discrepancy:
        """A default instance configured to estimate ``kind`` (e.g. the matching f)."""
        return cls()

    @classmethod
    def for_two_sample_test(cls) -> Discrepancy:
        """The instance :func:`ratiokit.two_sample_test` uses for the method's registry name."""
        return cls()

    def null_statistics(
        self, z: torch.Tensor, labels: LabelMatrix, progress: bool | None
    ) -> Statistics:
        """The test statistic of every relabelling of the pooled sample, observed first.

        :func:`ratiokit.two_sample_test` calls this on the fitted method with ``z`` (N, d),
        the pooled sample (the first ``labels.n`` rows are x), and ``labels``, a
        :class:`~ratiokit._permutation.LabelMatrix` of C columns (column 0 the observed
        labelling). Default: a ratio method fitted on a split is scored by the mean held-out
        log-ratio difference (and its accuracy); any other method's :meth:`forward` is
        evaluated on every relabelling with ``torch.func.vmap``. A method with a faster
        batched form (kernel quadratic forms over tiles of the Gram matrix) overrides it; a
        subclass that overrides :meth:`forward` but not this method gets this default, so the
        batched form always computes the class's own statistic.

        Returns
        -------
        Statistics
            ``values`` of shape (C,), ``scale`` (the magnitude of the terms, for ties) and
            ``details`` for the result.
        """
        if self.test_fit == "split" and self.has_log_ratio:
            scores = held_out_scores(self, z)
            if scores is not None:
                return score_statistics(self.name, scores, labels)
        # stacklevel 4: vmap_statistics, this, two_sample_test, the user's call.
        values = vmap_statistics(
            self, z, labels, progress=progress, name=f"of {self.name!r}", stacklevel=4
        )
        values = values.cpu().numpy()
        return Statistics(values, float(np.abs(values).max()), {"statistic": "forward"})

    def estimate_divergence(self, kind: str, x_p: torch.Tensor, x_q: torch.Tensor) -> torch.Tensor:
        """The method's own estimate of divergence ``kind`` (one of ``divergence_kinds``)."""
        raise NotImplementedError(
            f"method {self.name!r} has no estimator of its own for {kind!r}; "
            f"it has {list(self.divergence_kinds)}."
        )

    def fit_critic(self, x_p: torch.Tensor, x_q: torch.Tensor, *, rng: Any = None) -> Discrepancy:
        """Solve the method's closed-form critic on (x_p, x_q); the default has none."""
        return self

    def is_fitted(self) -> bool:
        """Whether the method holds a fitted state (from :meth:`fit_critic` or a training loop).

        Fitted attributes are public names ending in ``_`` (scikit-learn's convention): the
        method is fitted when one of them is set here while an unfitted instance with the
        same settings, ``type(self)(**self.get_params(deep=False))``, leaves it None or
        lacks it. A subclass whose fitted state follows another rule overrides this.

        Returns
        -------
        bool

        Examples
        --------
        >>> import torch
        >>> from ratiokit.methods import OptimizedMMD
        >>> x = torch.randn(30, 1, dtype=torch.float64)
        >>> method = OptimizedMMD(bandwidths=[0.5, 1.0])
        >>> method.is_fitted(), method.fit_critic(x, x + 1.0).is_fitted()
        (False, True)
        """
        unfitted = _fitted_attributes(type(self)(**self.get_params(deep=False)))
        return any(
            value is not None and unfitted.get(name) is None
            for name, value in _fitted_attributes(self).items()
        )

    # ------------------------------------------------------------------ training hooks

    def init_critic(self, x_p: torch.Tensor, x_q: torch.Tensor, *, rng: Any = None) -> Discrepancy:
        """Build the trainable critic for samples like (x_p, x_q), untrained; default: none."""
        return self

    def critic_loss(self, x_p: torch.Tensor, x_q: torch.Tensor) -> torch.Tensor:
        """The loss the critic's parameters descend on one minibatch: ``-forward(x_p, x_q)``."""
        return -self(x_p, x_q)

    def generator_loss(
        self, x_p: torch.Tensor, x_q: torch.Tensor, *, saturating: bool = False
    ) -> torch.Tensor:
        """The loss a model sampling ``x_q`` descends: ``forward`` (either form by default).

        ``saturating=True`` asks for the minimax loss ``forward(x_p, x_q)``; ``False`` for a
        non-saturating form, where a method has one (it keeps the same fixed points but
        stronger gradients while the critic separates the samples easily).
        """
        return self(x_p, x_q)

    def critic_score(self, x: torch.Tensor) -> torch.Tensor:
        """The critic's scalar output at the rows of ``x``, shape (n,), for gradient penalties.

        Default: :meth:`log_ratio` for ratio methods.

        Raises
        ------
        NotImplementedError
            For a method without a per-row critic.
        """
        if not self.has_log_ratio:
            raise NotImplementedError(
                f"method {self.name!r} has no per-row critic score for a gradient penalty; "
                "set `gradient_penalty` to 0."
            )
        return self.log_ratio(x)


def _fitted_attributes(method: Discrepancy) -> dict[str, Any]:
    """The public attributes of ``method`` whose names end in ``_``: plain attributes,
    parameters, buffers and submodules alike."""
    found = {
        **vars(method),  # nn.Module keeps parameters, buffers and submodules out of vars()
        **dict(method.named_parameters(recurse=False)),
        **dict(method.named_buffers(recurse=False)),
        **dict(method.named_children()),
    }
    return {k: v for k, v in found.items() if k.endswith("_") and not k.startswith("_")}


def fits_on_split(method: Discrepancy) -> bool:
    """Whether ``method`` is fitted on one part of each sample and tested or trained against
    the other (``method.test_fit == "split"``)."""
    return method.test_fit == "split"
