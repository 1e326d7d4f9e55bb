"""Mutual information as a density ratio: the joint p(x, y) against the product p(x) p(y).

``I(x; y) = KL(p(x, y) || p(x) p(y)) = E_p(x,y)[log r(x, y)]`` with ``r = p(x, y) / (p(x) p(y))``.
A critic ``f(x, y)`` is trained on minibatches of paired rows: in a batch of b pairs the b
diagonal pairs ``(x_i, y_i)`` are draws from the joint and the b (b - 1) off-diagonal pairs
``(x_i, y_j)`` draws from the product of the marginals (the rows shuffled within the batch),
and the method's variational bound (or loss) is computed from the b x b score matrix
``S_ij = f(x_i, y_j)``, as in Poole et al. (2019). The critic is trained on one part of the
rows by :func:`ratiokit.critics.train_critic` and the bound is evaluated on the other part, in
disjoint blocks of ``batch_size`` rows, whose spread gives the standard error.
With ``telescope``, K pointwise classifiers estimate the ratios between consecutive
waymarks from the joint to the product, and their sum is the log-ratio (Rhodes et al. 2020).

(The module is not named after its function, as ``fitting`` holds ``fit``: a submodule
``ratiokit.mutual_information`` would replace the lazily imported ``rk.mutual_information``.)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ratiokit._progress import check_progress
from ratiokit._rng import check_rng
from ratiokit._validation import as_sample, check_choice, check_int, check_positive
from ratiokit.critics import Standardize, check_network, check_training, mlp_critic, train_critic
from ratiokit.exceptions import NonFiniteStatisticError
from ratiokit.results import MutualInformationResult
from ratiokit.telescope import (
    SeparateRatios,
    SharedRatios,
    check_telescope,
    check_telescope_body,
    telescope_loss,
    waymarks,
)

__all__ = ["BOUNDS", "CRITICS", "mutual_information"]

#: What each method's value is: a variational lower bound on I(x; y) or an estimate.
BOUNDS: dict[str, str] = {
    "classifier": "estimate",
    "dv": "lower bound",
    "infonce": "lower bound",
    "js": "lower bound",
    "nwj": "lower bound",
    "smile": "estimate",
}
#: The critic architectures: an MLP on [x, y], or ``g(x)^T h(y)``.
CRITICS = ("joint", "separable")


class _JointCritic(nn.Module):
    """``f(x, y) = T([x, y])``, an MLP on the standardised concatenated rows."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The score matrix ``S_ij = f(x_i, y_j)`` of shape (b, b): b^2 network rows."""
        b = x.shape[0]
        pairs = torch.cat([x[:, None].expand(b, b, -1), y[None].expand(b, b, -1)], dim=-1)
        return self.net(pairs.reshape(b * b, -1)).reshape(b, b)

    def pointwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The scores ``f(x_i, y_i)`` of the b pairs, of shape (b,)."""
        return self.net(torch.cat([x, y], dim=1))


class _SeparableCritic(nn.Module):
    """``f(x, y) = g(x)^T h(y)``: two embedding MLPs, 2 b network rows per b x b matrix."""

    def __init__(self, g: nn.Module, h: nn.Module) -> None:
        super().__init__()
        self.g, self.h = g, h

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The score matrix ``S_ij = g(x_i)^T h(y_j)`` of shape (b, b)."""
        return self.g(x) @ self.h(y).T

    def pointwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The scores ``g(x_i)^T h(y_i)`` of the b pairs, of shape (b,)."""
        return (self.g(x) * self.h(y)).sum(dim=1)


def _log_mean_exp(v: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(v, dim=0) - math.log(v.shape[0])


def _value(method: str, s: torch.Tensor, clip: float) -> torch.Tensor:
    """The method's value on one b x b score matrix (diagonal: joint; off it: product)."""
    b = s.shape[0]
    joint = s.diagonal()
    product = s[~torch.eye(b, dtype=torch.bool, device=s.device)]
    if method == "dv":  # E_p[f] - log E_q[exp f]
        return joint.mean() - _log_mean_exp(product)
    if method == "smile":  # DV with the partition term's scores clipped to [-clip, clip]
        return joint.mean() - _log_mean_exp(torch.clamp(product, -clip, clip))
    if method == "infonce":  # E_i[S_ii - log sum_j exp S_ij] + log b <= log b
        return (joint - torch.logsumexp(s, dim=1)).mean() + math.log(b)
    if method == "classifier":  # plug-in E_p[log r] with f = log r
        return joint.mean()
    # nwj, and js (a JS-trained f = log r read by NWJ): 1 + E_p[f] - E_q[exp f]
    return 1.0 + joint.mean() - torch.exp(product).mean()


def _loss(method: str, s: torch.Tensor, clip: float) -> torch.Tensor:
    """The training loss on one score matrix: the negative bound, or for js, smile and
    classifier the balanced logistic loss ``softplus(-f)`` on joint and ``softplus(f)`` on
    product pairs, minimised by ``f = log r`` (Song and Ermon 2020 train SMILE so)."""
    if method in ("js", "smile", "classifier"):
        b = s.shape[0]
        product = s[~torch.eye(b, dtype=torch.bool, device=s.device)]
        return 0.5 * (F.softplus(-s.diagonal()).mean() + F.softplus(product).mean())
    return -_value(method, s, clip)


def _blocks(n: int, batch_size: int) -> list[slice]:
    """``ceil(n / batch_size)`` contiguous blocks of nearly equal size, none above it."""
    k = math.ceil(n / batch_size)
    edges = [round(i * n / k) for i in range(k + 1)]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _per_block(
    fn: Callable[[torch.Tensor], torch.Tensor],
    critic: nn.Module,
    xy: torch.Tensor,
    d_x: int,
    batch_size: int,
) -> torch.Tensor:
    """``fn(S)`` on each block of ``batch_size`` rows of the paired rows ``xy`` = [x, y]."""
    return torch.stack(
        [
            fn(critic(xy[block, :d_x], xy[block, d_x:]))
            for block in _blocks(xy.shape[0], batch_size)
        ]
    )


def _standardize(v: torch.Tensor) -> Standardize:
    """The map to zero mean and unit spread by the moments of ``v`` (a constant feature is
    left unscaled)."""
    scale = v.std(dim=0)
    return Standardize(v.mean(dim=0), torch.where(scale > 0, scale, torch.ones_like(scale)))


def _make_critic(
    kind: str,
    x: torch.Tensor,
    y: torch.Tensor,
    hidden: tuple[int, ...],
    embedding_dim: int,
    gen: np.random.Generator,
) -> nn.Module:
    """A fresh critic whose inputs are standardised by the moments of the training rows."""
    like = {"dtype": x.dtype, "device": x.device}
    if kind == "joint":
        net = mlp_critic(x.shape[1] + y.shape[1], hidden, rng=gen, **like)
        xy = torch.cat([x, y], dim=1)
        return _JointCritic(nn.Sequential(_standardize(xy), net))
    g, h = (
        nn.Sequential(
            _standardize(v), mlp_critic(v.shape[1], hidden, d_out=embedding_dim, rng=gen, **like)
        )
        for v in (x, y)
    )
    return _SeparableCritic(g, h)


class _PairRows(nn.Module):
    """A critic's pointwise scores as a map of paired rows ``z = [x, y]`` (n, d_x + d_y) to
    (n,), the form :mod:`ratiokit.telescope` trains."""

    def __init__(self, critic: nn.Module, d_x: int) -> None:
        super().__init__()
        self.critic, self.d_x = critic, d_x

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """The scores ``f(x_i, y_i)`` of the rows."""
        return self.critic.pointwise(z[:, : self.d_x], z[:, self.d_x :])


class _SharedSeparable(nn.Module):
    """K separable critics with shared bodies: ``f_k(x, y) = g(x)^T h_k(y)``, where the K
    embeddings ``h_k`` are the K slices of one network's output."""

    def __init__(self, g: nn.Module, h: nn.Module, d_x: int, k: int) -> None:
        super().__init__()
        self.g, self.h, self.d_x, self.k = g, h, d_x, k

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """The K scores of each row ``z = [x, y]``: shape (n, K)."""
        gx = self.g(z[:, : self.d_x])
        hy = self.h(z[:, self.d_x :]).reshape(z.shape[0], self.k, -1)
        return torch.einsum("ne,nke->nk", gx, hy)


def _make_telescope(
    kind: str,
    body: str,
    x: torch.Tensor,
    y: torch.Tensor,
    weights: Sequence[float],
    hidden: tuple[int, ...],
    embedding_dim: int,
    gen: np.random.Generator,
) -> SeparateRatios | SharedRatios:
    """The K critics of a telescope, standardised by the moments of their waymarks' draws
    from the training rows (each pair's for separate critics, all waymarks' for a shared
    body)."""
    d_x, k = x.shape[1], len(weights) - 1
    xy = torch.cat([x, y], dim=1)
    rows = waymarks(xy, xy.roll(1, dims=0), weights, keep=d_x)
    if body == "separate":
        return SeparateRatios(
            _PairRows(
                _make_critic(
                    kind,
                    torch.cat([x, x]),
                    torch.cat([rows[j][:, d_x:], rows[j + 1][:, d_x:]]),
                    hidden,
                    embedding_dim,
                    gen,
                ),
                d_x,
            )
            for j in range(k)
        )
    pooled = torch.cat(rows)
    like = {"dtype": x.dtype, "device": x.device}
    if kind == "joint":
        net = mlp_critic(pooled.shape[1], hidden, d_out=k, rng=gen, **like)
        return SharedRatios(nn.Sequential(_standardize(pooled), net))
    g = mlp_critic(d_x, hidden, d_out=embedding_dim, rng=gen, **like)
    h = mlp_critic(y.shape[1], hidden, d_out=k * embedding_dim, rng=gen, **like)
    return SharedRatios(
        _SharedSeparable(
            nn.Sequential(_standardize(x), g),
            nn.Sequential(_standardize(pooled[:, d_x:]), h),
            d_x,
            k,
        )
    )


def _telescope_terms(ratios: nn.Module, xy: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Each critic's mean log-ratio ``f_k(x_i, y_i)`` over each block of the joint pairs
    ``xy`` = [x, y]: shape (n_blocks, K)."""
    scores = ratios(xy)
    return torch.stack([scores[block].mean(dim=0) for block in _blocks(xy.shape[0], batch_size)])


def _mutual_information_iv(
    x: Any,
    y: Any,
    method: Any,
    critic: Any,
    clip: Any,
    hidden: Any,
    embedding_dim: Any,
    test_fraction: Any,
    telescope: Any,
    telescope_body: Any,
    device: Any,
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...], tuple[float, ...] | None, str | None]:
    """Validate the inputs; return ``x``, ``y`` in their common dtype, the hidden widths, and
    the telescope's mixing weights and body (None without one)."""
    check_choice(method, "method", list(BOUNDS))
    weights = check_telescope(telescope)
    body = check_telescope_body(telescope_body, weights)
    if weights is not None and method != "classifier":
        raise ValueError(
            "`telescope` needs method='classifier' (the telescoped log-ratio is a plug-in "
            f"estimate); got method={method!r}."
        )
    check_choice(critic, "critic", CRITICS)
    check_positive(clip, "clip")
    widths = check_network(hidden, "elu")
    check_int(embedding_dim, "embedding_dim", minimum=1)
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real):
        raise TypeError(f"`test_fraction` must be a real number in (0, 1); got {test_fraction!r}.")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(
            f"`test_fraction` must be a real number in (0, 1); got {test_fraction!r}."
        )
    x_t = as_sample(x, "x", device=device)
    y_t = as_sample(y, "y", device=device)
    if x_t.shape[0] != y_t.shape[0]:
        raise ValueError(
            "`x` and `y` must have the same number of rows (row i of each is one pair); "
            f"got {x_t.shape[0]} and {y_t.shape[0]}."
        )
    if x_t.device != y_t.device:
        raise ValueError(
            f"`x` and `y` must be on the same device; got {x_t.device} and {y_t.device}."
        )
    common = torch.promote_types(x_t.dtype, y_t.dtype)
    return x_t.detach().to(common), y_t.detach().to(common), widths, weights, body


def mutual_information(
    x: Any,
    y: Any,
    *,
    method: str = "smile",
    critic: str = "joint",
    clip: float = 5.0,
    hidden: Sequence[int] = (64, 64),
    embedding_dim: int = 32,
    max_steps: int = 1000,
    batch_size: int = 128,
    lr: float = 0.001,
    patience: int = 100,
    test_fraction: float = 0.5,
    telescope: int | Sequence[float] | None = None,
    telescope_body: str | None = None,
    device: torch.device | str | None = None,
    rng: Any = None,
    progress: bool | None = None,
) -> MutualInformationResult:
    r"""Estimate the mutual information ``I(x; y) = E_p(x,y)[log p(x, y) / (p(x) p(y))]``.

    A critic ``f(x, y)`` is trained on the rows of a training part and the method's value
    is computed on the held-out part, in disjoint blocks of about ``batch_size`` pairs: in a
    block of b pairs the diagonal ``(x_i, y_i)`` are joint draws and the off-diagonal
    ``(x_i, y_j)``, i != j, draws from the product of the marginals. With ``E_p`` the mean
    over the diagonal and ``E_q`` over the off-diagonal of the block's score matrix:

    ================  ===============================================  ==============  ===========
    ``method``        value                                            trained on      ``bound``
    ================  ===============================================  ==============  ===========
    ``"dv"``          ``E_p[f] - log E_q[exp f]`` (Donsker-Varadhan;   the value       lower bound
                      MINE)
    ``"nwj"``         ``1 + E_p[f] - E_q[exp f]`` (NWJ)                the value       lower bound
    ``"infonce"``     ``mean_i [f_ii - log sum_j exp f_ij] + log b``   the value       lower bound
    ``"js"``          NWJ's value                                      logistic loss   lower bound
    ``"smile"``       DV with ``f`` clipped to ``[-clip, clip]`` in    logistic loss   estimate
                      ``log E_q[exp f]``
    ``"classifier"``  ``E_p[f]``, the plug-in of ``f = log r``         logistic loss   estimate
    ================  ===============================================  ==============  ===========

    The logistic loss ``E_p[softplus(-f)] / 2 + E_q[softplus(f)] / 2`` (the classifier ratio
    estimator's, and the Jensen-Shannon f-GAN bound's) is minimised by ``f = log r``.
    InfoNCE never exceeds ``log b``: it saturates once ``I(x; y)`` nears ``log batch_size``.
    DV and NWJ have variance growing like ``exp(I)`` (McAllester and Stratos 2020); SMILE
    trades that for a bias set by ``clip`` (Song and Ermon 2020). A lower bound holds in
    expectation for a critic fixed before the evaluation rows are seen (hence the held-out
    part); DV's minibatch ``log E_q`` is biased up by about ``Var_q[exp f] / (2 b)``.

    ``telescope`` chains K classifier ratios instead of one (telescoping density-ratio
    estimation, Rhodes, Xu and Gutmann 2020): waymark k holds the pairs ``(x, y_k)`` with
    ``y_k = sqrt(1 - a_k^2) y + a_k y'``, where ``y'`` is the y of another pair and
    ``0 = a_0 < a_1 < ... < a_K = 1``, so waymark 0 is the joint and waymark K the product of
    the marginals (only y is mixed, so x keeps its marginal). Critic k is trained on the
    logistic loss to separate waymark k from k + 1, both mixed from the same two pairs, so
    ``f_k ~ log p_k / p_(k+1)``, and ``log r = f_0 + ... + f_(K-1)`` is evaluated on the
    held-out joint pairs (``I = E_p[log r]``). Each ratio spans a fraction of the MI, so each
    classifier still sees overlap where a single one saturates. By default the K critics are
    one network whose hidden layers are shared by K output heads (``telescope_body="shared"``;
    ``"separate"``: K networks of their own), trained together by one Adam on the sum of
    their losses, with early stopping on the summed held-out loss; a step costs K times a
    single pointwise critic's. The machinery is :mod:`ratiokit.telescope`, shared with
    ``divergence(telescope=...)``.

    Parameters
    ----------
    x : array-like or Tensor of shape (n, d_x)
        One variable; a 1-D input is n rows of one feature.
    y : array-like or Tensor of shape (n, d_y)
        The other; row i of ``y`` is paired with row i of ``x``.
    method : {"smile", "dv", "nwj", "infonce", "js", "classifier"}, default="smile"
        The estimator (table above).
    critic : {"joint", "separable"}, default="joint"
        ``"joint"``: an MLP on the concatenated ``[x, y]`` (b^2 network evaluations per b
        pairs); ``"separable"``: ``f(x, y) = g(x)^T h(y)`` with two MLP embeddings (2 b
        evaluations, so cheaper, and expressive enough for Gaussian-like dependence).
    clip : float, default=5.0
        SMILE's clip ``tau`` (positive); used by ``method="smile"`` only.
    hidden : sequence of int, default=(64, 64)
        Hidden widths of each MLP (ELU activations; inputs standardised by the training
        part's moments).
    embedding_dim : int, default=32
        Output width of ``g`` and ``h`` for the separable critic.
    max_steps : int, default=1000
        Most Adam steps (early stopping on a held-out fifth of the training part).
    batch_size : int, default=128
        Pairs per training step and at most per evaluation block (InfoNCE's cap is its
        log); at least 3.
    lr : float, default=0.001
        Adam's learning rate.
    patience : int, default=100
        Steps without a lower held-out loss before training stops.
    test_fraction : float, default=0.5
        Fraction of the pairs held out for the estimate, in (0, 1).
    telescope : None, int or sequence of float (or 1-D array), default=None
        None: one ratio. An int K >= 1: K telescoped ratios with mixing weights
        ``a_k = k / K``. A sequence: the inner weights ``a_1 < ... < a_(K-1)`` in (0, 1) (to
        put waymarks where the ratio changes fastest, e.g. near the joint at high MI). Needs
        ``method="classifier"``.
    telescope_body : {"separate", "shared"} or None, default=None
        The telescope's critics: one network whose hidden layers are shared by K output
        heads (the default, which measured at least as accurate:
        ``benchmarks/results/mutual_information_bodies.md``; for ``critic="separable"``, one
        ``g`` and one ``h`` with K slices), or K separate networks. Only with ``telescope``.
    device : None, str or torch.device, default=None
        Where to compute; default: where ``x`` is (the CPU for arrays).
    rng : None, int or numpy.random.Generator, default=None
        Seeds the split, the critic's initialisation and the minibatches; an int gives the
        same result bit for bit on the CPU.
    progress : bool or None, default=None
        A progress bar while training: None shows it only on a terminal.

    Returns
    -------
    MutualInformationResult
        ``estimate`` (nats), ``standard_error`` (over the held-out blocks), ``bound``,
        ``method``, ``critic``, the block values, the training history and ``details``;
        with ``telescope``, ``details`` adds ``telescope`` (K), ``mixing_weights`` (the
        K + 1 weights ``a_k``), ``telescope_body`` and ``waymark_terms`` (K values: the
        held-out mean of each ``f_k``, averaged over the blocks as the estimate is, so they
        sum to it).

    Raises
    ------
    TypeError
        If an argument has the wrong type (the message names it).
    ValueError
        If ``x`` or ``y`` is not a finite 2-D sample, their row counts differ, a setting is
        out of range (``telescope`` below 1 or its weights not increasing in (0, 1), or
        given with another method than ``"classifier"``; ``telescope_body`` unknown or
        given without ``telescope``), or too few rows are left to train
        or evaluate.
    NonFiniteLossError
        If the training loss becomes NaN or infinite (lower ``lr``).
    NonFiniteStatisticError
        A ValueError: if the value on a held-out block is NaN or infinite (DV's or NWJ's
        exponential term overflowed).

    Notes
    -----
    The standard error is that of the held-out evaluation given the trained critic; the
    variability of the training itself (another split or seed gives another critic) is not
    in it, so repeated runs can spread more widely.

    References
    ----------
    Belghazi et al. (2018), "Mutual information neural estimation", ICML. Nguyen, Wainwright
    and Jordan (2010), IEEE Trans. Inf. Theory 56(11). van den Oord, Li and Vinyals (2018),
    "Representation learning with contrastive predictive coding", arXiv:1807.03748. Poole et
    al. (2019), "On variational bounds of mutual information", ICML. Song and Ermon (2020),
    "Understanding the limitations of variational mutual information estimators", ICLR.
    McAllester and Stratos (2020), "Formal limitations on the measurement of mutual
    information", AISTATS. Rhodes, Xu and Gutmann (2020), "Telescoping density-ratio
    estimation", NeurIPS.

    Examples
    --------
    >>> import ratiokit as rk
    >>> from ratiokit.synthetic import GaussianMI
    >>> problem = GaussianMI.from_mutual_information(1.0, dim=2)
    >>> x, y = problem.sample(2000, rng=0)
    >>> res = rk.mutual_information(x, y, method="smile", critic="separable", rng=0)
    >>> res.bound, abs(res.estimate - 1.0) < 0.2
    ('estimate', True)
    """
    # Blocks of ceil(n / batch_size) nearly equal parts then hold at least 2 pairs each (one
    # off the diagonal) for every n >= 2; batch_size = 2 would leave a single pair at odd n.
    check_int(batch_size, "batch_size", minimum=3)
    check_training(
        max_steps=max_steps,
        batch_size=batch_size,
        lr=lr,
        weight_decay=0.0,
        validation_fraction=0.2,
        patience=patience,
    )
    progress = check_progress(progress)
    x_t, y_t, widths, weights, body = _mutual_information_iv(
        x,
        y,
        method,
        critic,
        clip,
        hidden,
        embedding_dim,
        test_fraction,
        telescope,
        telescope_body,
        device,
    )
    gen = check_rng(rng)
    n = x_t.shape[0]
    n_test = math.floor(test_fraction * n)
    if n_test < 2 or n - n_test < 10:
        raise ValueError(
            "`x` and `y` must have enough rows for a held-out part of at least 2 pairs and a "
            f"training part of at least 10 at `test_fraction`={test_fraction!r}; got {n} rows."
        )
    order = torch.as_tensor(gen.permutation(n), device=x_t.device)
    test, train = order[:n_test], order[n_test:]
    d_x = x_t.shape[1]
    xy = torch.cat([x_t, y_t], dim=1)
    clip = float(clip)
    if weights is None:
        net = _make_critic(critic, x_t[train], y_t[train], widths, embedding_dim, gen)

        def loss(module: nn.Module, a: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
            # ``a`` is a minibatch of pairs (one block), or the validation part (several).
            return _per_block(lambda s: _loss(method, s, clip), module, a, d_x, batch_size).mean()

    else:
        net = _make_telescope(
            critic, body, x_t[train], y_t[train], weights, widths, embedding_dim, gen
        )

        def loss(module: nn.Module, a: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
            # One Adam over all K critics. Pair i's partner y_(i-1) (the rows rolled by one)
            # is a draw of y's marginal independent of x_i; both waymarks of a pair mix the
            # same two rows (Rhodes et al.).
            return telescope_loss(module, waymarks(a, a.roll(1, dims=0), weights, keep=d_x))

    # Both samples are the training pairs: the loss reads only the first, whose minibatches
    # are drawn without replacement so that no pair recurs off the diagonal.
    history = train_critic(
        loss,
        net,
        xy[train],
        xy[train],
        max_steps=max_steps,
        batch_size=batch_size,
        lr=lr,
        patience=patience,
        replace=False,
        rng=gen,
        progress=progress,
    )
    with torch.no_grad():
        if weights is None:
            values = _per_block(lambda s: _value(method, s, clip), net, xy[test], d_x, batch_size)
        else:
            terms = _telescope_terms(net, xy[test], batch_size)
            values = terms.sum(dim=1)
    block_estimates = values.detach().cpu().numpy().astype(np.float64)
    n_bad = int((~np.isfinite(block_estimates)).sum())
    if n_bad:
        raise NonFiniteStatisticError(
            f"the {method!r} estimate is not finite on {n_bad} of {block_estimates.size} "
            "held-out blocks (its exponential term overflowed: the "
            "MI is too high for it); use method='smile' or 'classifier', or float64 inputs."
        )
    k = block_estimates.size
    details: dict[str, Any] = {
        "n_train": int(train.numel()),
        "n_test": n_test,
        "batch_size": batch_size,
        "log_batch_size": math.log(max(b.stop - b.start for b in _blocks(n_test, batch_size))),
    }
    if method == "smile":
        details["clip"] = clip
    if weights is not None:
        details["telescope"] = len(weights) - 1
        details["telescope_body"] = body
        details["mixing_weights"] = np.asarray(weights)
        details["waymark_terms"] = terms.mean(dim=0).cpu().numpy().astype(np.float64)
    return MutualInformationResult(
        estimate=float(block_estimates.mean()),
        standard_error=float(block_estimates.std(ddof=1) / math.sqrt(k)) if k > 1 else None,
        bound=BOUNDS[method],
        method=method,
        critic=critic,
        block_estimates=block_estimates,
        history=history,
        details=details,
    )
