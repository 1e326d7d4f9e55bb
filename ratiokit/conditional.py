"""Conditional GANs as a configuration of the one loop: a GAN on joint (condition, x) rows.

A conditional GAN (Mirza and Osindero 2014) trains ``G(z | c)`` so that ``(c, G(z | c))``,
with ``c`` drawn as in the data, is distributed as the data's pairs ``(c, x)``. That is an
ordinary GAN on joint rows ``[c, x]``: the data are :func:`joint_rows`, the model's
``sample(n, generator)`` (:meth:`ConditionalGenerator.sampler`) draws ``c`` and returns
``[c, G(z, c)]``, and any critic of the registry (a classifier, an f-divergence, the
Wasserstein dual...) tells joint pairs apart: at the optimum the joint laws agree, so
``G(z | c)`` follows ``p(x | c)`` for almost every ``c``. :func:`ratiokit.train` trains it
as it trains any model; :meth:`ConditionalGenerator.sample` then draws ``x`` given chosen
conditions. Labels become conditions by :func:`one_hot`; continuous conditions are used as
they are.

References
----------
Mirza and Osindero (2014), "Conditional generative adversarial nets", arXiv:1411.1784.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ratiokit._rng import torch_generator
from ratiokit._validation import as_sample
from ratiokit.training import Sampler

__all__ = ["ConditionalGenerator", "joint_rows", "one_hot"]

#: ``conditions(n, generator)``: n condition rows (n, k), all randomness from ``generator``.
ConditionDraw = Callable[[int, torch.Generator], torch.Tensor]


def one_hot(labels: Any, n_classes: int | None = None) -> np.ndarray:
    """Encode integer class labels as one-hot condition rows: ``c_ij = [labels_i == j]``.

    Parameters
    ----------
    labels : array-like of int, shape (n,)
        Class labels in ``0 .. n_classes - 1``.
    n_classes : int or None, default=None
        Number of classes; None means ``max(labels) + 1``.

    Returns
    -------
    numpy.ndarray of shape (n, n_classes), float32

    Raises
    ------
    ValueError
        If ``labels`` is not 1-D and non-empty, or a label is outside ``0 .. n_classes - 1``.
    TypeError
        If ``labels`` are not integers or ``n_classes`` is not an int.

    Examples
    --------
    >>> one_hot([0, 2, 1])
    array([[1., 0., 0.],
           [0., 0., 1.],
           [0., 1., 0.]], dtype=float32)
    """
    y = np.asarray(labels)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"`labels` must be a non-empty 1-D array; got shape {y.shape}.")
    if y.dtype == bool or not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"`labels` must be integers; got dtype {y.dtype}.")
    if n_classes is None:
        n_classes = int(y.max()) + 1
    elif not isinstance(n_classes, numbers.Integral) or isinstance(n_classes, bool):
        raise TypeError(f"`n_classes` must be an int or None; got {n_classes!r}.")
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(
            f"`labels` must lie in 0 .. n_classes - 1 = {n_classes - 1}; got values from "
            f"{y.min()} to {y.max()}."
        )
    return np.eye(int(n_classes), dtype=np.float32)[y]


def joint_rows(conditions: Any, x: Any) -> np.ndarray:
    """The data of a conditional GAN: each row's condition, then its sample, ``[c_i, x_i]``.

    Parameters
    ----------
    conditions : array-like of shape (n, k)
        Condition rows (:func:`one_hot` labels or continuous values; 1-D: one feature).
    x : array-like of shape (n, d)
        The samples, row ``i`` drawn given ``conditions[i]``.

    Returns
    -------
    numpy.ndarray of shape (n, k + d)
        In the two inputs' common dtype.

    Raises
    ------
    ValueError
        If an input is not a finite 1-D or 2-D array, or their numbers of rows differ.
    TypeError
        If an input is not numeric.

    Examples
    --------
    >>> joint_rows(one_hot([0, 1]), [[5.0], [7.0]])
    array([[1., 0., 5.],
           [0., 1., 7.]])
    """
    c = as_sample(conditions, "conditions", min_samples=1).detach().cpu().numpy()
    values = as_sample(x, "x", min_samples=1).detach().cpu().numpy()
    if c.shape[0] != values.shape[0]:
        raise ValueError(
            "`conditions` and `x` must have the same number of rows; got "
            f"{c.shape[0]} and {values.shape[0]}."
        )
    return np.concatenate([c, values], axis=1)


class ConditionalGenerator(nn.Module):
    """A generator ``x = G(z, c)``: a network on ``[z, c]``, noise ``z ~ N(0, I)`` first.

    Train it with :func:`ratiokit.train` on :func:`joint_rows` of the data, with
    ``sample=`` :meth:`sampler`; draw ``x`` given chosen conditions with :meth:`sample`.

    Parameters
    ----------
    net : torch.nn.Module
        Maps rows ``[z, c]`` of shape (n, latent_dim + k) to samples (n, d).
    latent_dim : int
        Dimension of the noise ``z`` (>= 1).

    Raises
    ------
    TypeError
        If ``net`` is not a torch.nn.Module or ``latent_dim`` is not an int.
    ValueError
        If ``latent_dim`` < 1.

    Examples
    --------
    A generator of one feature given two classes, trained to put class 0 at -2 and class 1
    at +2:

    >>> import torch
    >>> import ratiokit as rk
    >>> gen = np.random.default_rng(0)
    >>> labels = gen.integers(2, size=1000)
    >>> x = (4.0 * labels - 2.0 + 0.1 * gen.normal(size=1000)).astype(np.float32)
    >>> c = one_hot(labels)
    >>> with torch.random.fork_rng():
    ...     _ = torch.manual_seed(0)
    ...     G = ConditionalGenerator(torch.nn.Linear(3, 1), latent_dim=1)
    >>> config = rk.TrainConfig(max_steps=300, lr=0.02, critic_lr=0.02, progress=False)
    >>> out = rk.train(G, G.sampler(c), joint_rows(c, x), "classifier", config, rng=0)
    >>> x_given = G.sample(one_hot([0, 1] * 200), rng=1)
    >>> np.round([x_given[0::2].mean(), x_given[1::2].mean()])
    array([-2.,  2.], dtype=float32)
    """

    def __init__(self, net: nn.Module, latent_dim: int) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"`net` must be a torch.nn.Module; got {type(net).__name__}.")
        if not isinstance(latent_dim, numbers.Integral) or isinstance(latent_dim, bool):
            raise TypeError(f"`latent_dim` must be an int; got {latent_dim!r}.")
        if latent_dim < 1:
            raise ValueError(f"`latent_dim` must be an integer >= 1; got {latent_dim}.")
        self.net = net
        self.latent_dim = int(latent_dim)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``G(z, c)``: the network on ``[z, c]``, shape (n, d)."""
        return self.net(torch.cat([z, c], dim=1))

    def _like(self) -> dict[str, Any]:
        first = next(iter(self.parameters()), None)
        if first is None:
            return {"dtype": torch.get_default_dtype(), "device": torch.device("cpu")}
        return {"dtype": first.dtype, "device": first.device}

    def sampler(self, conditions: Any | ConditionDraw) -> Sampler:
        """The ``sample(n, generator)`` of :func:`ratiokit.train`: joint rows ``[c, G(z, c)]``.

        Parameters
        ----------
        conditions : array-like of shape (m, k), or callable
            Rows to draw ``c`` from, uniformly with replacement (the data's own conditions:
            their empirical law); or ``conditions(n, generator) -> Tensor (n, k)``, a given
            distribution drawing all its randomness from ``generator``.

        Returns
        -------
        callable
            ``sample(n, generator) -> Tensor (n, k + d)``, differentiable in the generator's
            parameters; ``c`` and ``z`` are drawn from ``generator``, on its device.

        Raises
        ------
        ValueError, TypeError
            If ``conditions`` is not a finite numeric array (or a callable).
        """
        if callable(conditions):
            draw = conditions
        else:
            rows = as_sample(conditions, "conditions", min_samples=1).detach()

            def draw(n: int, generator: torch.Generator) -> torch.Tensor:
                nonlocal rows
                if rows.device != generator.device:  # moved once, to the training device
                    rows = rows.to(generator.device)
                index = torch.randint(rows.shape[0], (n,), generator=generator,
                                      device=generator.device)  # fmt: skip
                return rows[index]

        def sample(n: int, generator: torch.Generator) -> torch.Tensor:
            like = self._like()
            c = draw(n, generator).to(**like)
            z = torch.randn(n, self.latent_dim, generator=generator, device=generator.device,
                            dtype=like["dtype"])  # fmt: skip
            return torch.cat([c, self(z.to(like["device"]), c)], dim=1)

        return sample

    def sample(self, conditions: Any, *, rng: Any = None) -> np.ndarray:
        """Draw one ``x ~ G(z | c)`` per condition row, without gradients.

        Parameters
        ----------
        conditions : array-like of shape (m, k)
            The conditions, e.g. ``one_hot([3] * 10, 10)`` for ten samples of class 3.
        rng : None, int or numpy.random.Generator, default=None
            Seeds the noise; an int gives the same samples on every call.

        Returns
        -------
        numpy.ndarray of shape (m, d)

        Raises
        ------
        ValueError, TypeError
            If ``conditions`` is not a finite numeric array, or for a bad ``rng``.
        """
        like = self._like()
        c = as_sample(conditions, "conditions", min_samples=1).detach().to(**like)
        generator = torch_generator(rng, like["device"])
        with torch.no_grad():
            z = torch.randn(c.shape[0], self.latent_dim, generator=generator,
                            device=like["device"], dtype=like["dtype"])  # fmt: skip
            return self(z, c).cpu().numpy()

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}"
