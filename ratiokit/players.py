"""Multi-player GANs as configurations of the one loop: BiGAN/ALI's encoder, InfoGAN's head.

:func:`ratiokit.train` trains a model against a critic; two of its hooks add players and
losses without another loop. ``data_map`` changes the rows the critic sees on the data side:
BiGAN (Donahue et al. 2017) and ALI (Dumoulin et al. 2017) compare pairs ``(x, E(x))`` of
data and their codes with pairs ``(G(z), z)`` of samples and their noise, and the encoder
``E`` is a player of the model, trained with the generator down what the critic moves up;
at the optimum the two joint laws agree, so ``E`` inverts ``G``. ``extra_loss`` adds a term
to the model's loss: InfoGAN (Chen et al. 2016) draws a discrete code ``c`` with the noise
and trains an auxiliary head ``Q(c | x)`` with the generator on the cross-entropy of ``c``
given ``G(z, c)``; ``H(c)`` minus it is a lower bound on the mutual information
``I(c; G(z, c))``, so the codes come to name distinct factors of the data.

:class:`BiGAN` and :class:`InfoGAN` hold the players (each one ``nn.Module``, so the
checkpoint and the model's optimiser hold every player) and build the hooks.

References
----------
Donahue, Kraehenbuehl and Darrell (2017), "Adversarial feature learning", ICLR.
Dumoulin et al. (2017), "Adversarially learned inference", ICLR.
Chen et al. (2016), "InfoGAN: interpretable representation learning by information
maximizing generative adversarial nets", NeurIPS.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ratiokit._rng import torch_generator
from ratiokit._validation import as_sample, check_int, check_positive
from ratiokit.conditional import ConditionalGenerator
from ratiokit.training import Sampler

__all__ = ["BiGAN", "InfoGAN"]


def _check_module(value: Any, name: str) -> None:
    if not isinstance(value, nn.Module):
        raise TypeError(f"`{name}` must be a torch.nn.Module; got {type(value).__name__}.")


def _first_parameter(module: nn.Module) -> torch.Tensor:
    found = next(iter(module.parameters()), None)
    if found is None:
        raise ValueError("the players must have parameters; got none.")
    return found


class BiGAN(nn.Module):
    """A generator ``x = G(z)`` and an encoder ``z = E(x)`` trained together (BiGAN/ALI).

    The critic tells ``(x, E(x))``, ``x`` from the data, from ``(G(z), z)``, ``z ~ N(0, I)``:
    train with ``rk.train(bigan, bigan.sampler(), x, method, config,
    data_map=bigan.data_map)``. Rows are ``[x, z]`` on both sides.

    Parameters
    ----------
    generator : torch.nn.Module
        Maps codes (n, latent_dim) to samples (n, d).
    encoder : torch.nn.Module
        Maps samples (n, d) to codes (n, latent_dim).
    latent_dim : int
        Dimension of the code ``z`` (>= 1).

    Raises
    ------
    TypeError
        If a network is not a torch.nn.Module or ``latent_dim`` is not an int.
    ValueError
        If ``latent_dim`` < 1.

    Examples
    --------
    >>> import torch
    >>> import ratiokit as rk
    >>> x = np.random.default_rng(0).normal(3.0, 1.0, size=(500, 1)).astype(np.float32)
    >>> with torch.random.fork_rng():
    ...     _ = torch.manual_seed(0)
    ...     bigan = BiGAN(torch.nn.Linear(1, 1), torch.nn.Linear(1, 1), latent_dim=1)
    >>> config = rk.TrainConfig(max_steps=300, lr=0.02, critic_lr=0.02, progress=False)
    >>> out = rk.train(bigan, bigan.sampler(), x, "classifier", config, rng=0,
    ...                data_map=bigan.data_map)
    >>> np.round(bigan.reconstruct([[2.0], [3.0], [4.0]]).ravel())  # G(E(x)) near x
    array([2., 3., 4.], dtype=float32)
    """

    def __init__(self, generator: nn.Module, encoder: nn.Module, latent_dim: int) -> None:
        super().__init__()
        _check_module(generator, "generator")
        _check_module(encoder, "encoder")
        self.generator = generator
        self.encoder = encoder
        self.latent_dim = check_int(latent_dim, "latent_dim", minimum=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``G(z)``, shape (n, d)."""
        return self.generator(z)

    def sampler(self) -> Sampler:
        """The ``sample(n, generator)`` of :func:`ratiokit.train`: rows ``[G(z), z]``.

        Returns
        -------
        callable
            ``sample(n, generator) -> Tensor (n, d + latent_dim)``, differentiable in the
            generator's parameters; ``z`` is drawn from ``generator``.
        """

        def sample(n: int, generator: torch.Generator) -> torch.Tensor:
            like = _first_parameter(self)
            z = torch.randn(n, self.latent_dim, generator=generator, device=generator.device,
                            dtype=like.dtype).to(like.device)  # fmt: skip
            return torch.cat([self.generator(z), z], dim=1)

        return sample

    def data_map(self, x: torch.Tensor) -> torch.Tensor:
        """The ``data_map`` of :func:`ratiokit.train`: rows ``[x, E(x)]``, shape (n, d + k)."""
        return torch.cat([x, self.encoder(x)], dim=1)

    def _numpy(self, x: Any, net: nn.Module, name: str) -> np.ndarray:
        like = _first_parameter(self)
        rows = as_sample(x, name, min_samples=1).detach().to(like.device, like.dtype)
        with torch.no_grad():
            return net(rows).cpu().numpy()

    def encode(self, x: Any) -> np.ndarray:
        """The codes ``E(x)`` of rows ``x`` (n, d), without gradients: shape (n, latent_dim)."""
        return self._numpy(x, self.encoder, "x")

    def reconstruct(self, x: Any) -> np.ndarray:
        """``G(E(x))`` for rows ``x`` (n, d), without gradients: shape (n, d)."""
        return self._numpy(self.encode(x), self.generator, "x")

    def generate(self, n: int, *, rng: Any = None) -> np.ndarray:
        """``n`` samples ``G(z)``, ``z ~ N(0, I)`` seeded by ``rng``: shape (n, d)."""
        n = check_int(n, "n", minimum=1)
        like = _first_parameter(self)
        generator = torch_generator(rng, like.device)
        z = torch.randn(n, self.latent_dim, generator=generator, device=like.device,
                        dtype=like.dtype)  # fmt: skip
        with torch.no_grad():
            return self.generator(z).cpu().numpy()

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}"


class InfoGAN(nn.Module):
    """A generator ``x = G(z, c)`` of a discrete code ``c`` and a head ``Q(c | x)`` (InfoGAN).

    The critic sees ``x`` only; the model's loss gains ``weight`` times the cross-entropy of
    the code given its sample, ``-E log Q(c | G(z, c))``, with ``c`` uniform on
    ``0 .. n_codes - 1``: ``H(c) - CE <= I(c; G(z, c))``. Train with
    ``rk.train(info, info.sampler(), x, method, config, extra_loss=info.info_loss)``; the
    head is a player of the model (not shared with the critic).

    Parameters
    ----------
    generator : ConditionalGenerator
        ``G(z, c)`` on ``[z, one_hot(c)]``, with ``n_codes`` condition columns.
    head : torch.nn.Module
        Maps samples (n, d) to code logits (n, n_codes).
    n_codes : int
        Number of values of the code (>= 2).
    weight : float, default=1.0
        Weight of the cross-entropy in the model's loss (> 0).

    Raises
    ------
    TypeError
        If ``generator`` is not a ConditionalGenerator, ``head`` not a torch.nn.Module,
        ``n_codes`` not an int or ``weight`` not a real number.
    ValueError
        If ``n_codes`` < 2 or ``weight`` is not positive and finite.

    Examples
    --------
    >>> import torch
    >>> import ratiokit as rk
    >>> from ratiokit.conditional import ConditionalGenerator
    >>> with torch.random.fork_rng():
    ...     _ = torch.manual_seed(0)
    ...     info = InfoGAN(ConditionalGenerator(torch.nn.Linear(3, 1), latent_dim=1),
    ...                    torch.nn.Linear(1, 2), n_codes=2)
    >>> info.sample_codes([0, 1, 1], rng=0).shape, info.predict_code([[0.5], [1.0]]).shape
    ((3, 1), (2,))
    """

    def __init__(
        self, generator: ConditionalGenerator, head: nn.Module, n_codes: int, weight: float = 1.0
    ) -> None:
        super().__init__()
        if not isinstance(generator, ConditionalGenerator):
            raise TypeError(
                f"`generator` must be a ConditionalGenerator; got {type(generator).__name__}."
            )
        _check_module(head, "head")
        self.generator = generator
        self.head = head
        self.n_codes = check_int(n_codes, "n_codes", minimum=2)
        self.weight = check_positive(weight, "weight")

    def forward(self, z: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """``G(z, one_hot(codes))``, shape (n, d), for integer ``codes`` of shape (n,)."""
        c = F.one_hot(codes, self.n_codes).to(z.dtype)
        return self.generator(z, c)

    def _draw(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes uniform on ``0 .. n_codes - 1``, then the samples given them."""
        like = _first_parameter(self)
        codes = torch.randint(self.n_codes, (n,), generator=generator, device=generator.device)
        z = torch.randn(n, self.generator.latent_dim, generator=generator,
                        device=generator.device, dtype=like.dtype)  # fmt: skip
        codes = codes.to(like.device)
        return codes, self(z.to(like.device), codes)

    def sampler(self) -> Sampler:
        """The ``sample(n, generator)`` of :func:`ratiokit.train`: ``G(z, c)``, ``c`` uniform.

        Returns
        -------
        callable
            ``sample(n, generator) -> Tensor (n, d)``, differentiable in the generator's
            parameters; ``c`` and ``z`` are drawn from ``generator``.
        """
        return lambda n, generator: self._draw(n, generator)[1]

    def info_loss(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """The ``extra_loss`` of :func:`ratiokit.train`: ``weight * CE(Q(G(z, c)), c)``.

        On ``n`` fresh codes and samples drawn from ``generator``; differentiable in the
        generator's and the head's parameters.
        """
        codes, x = self._draw(n, generator)
        return self.weight * F.cross_entropy(self.head(x), codes)

    def predict_code(self, x: Any) -> np.ndarray:
        """The head's most likely code ``argmax_c Q(c | x)`` of rows ``x`` (n, d): shape (n,)."""
        like = _first_parameter(self)
        rows = as_sample(x, "x", min_samples=1).detach().to(like.device, like.dtype)
        with torch.no_grad():
            return self.head(rows).argmax(dim=1).cpu().numpy()

    def sample_codes(self, codes: Any, *, rng: Any = None) -> np.ndarray:
        """One sample ``G(z, c)`` per integer code in ``codes`` (m,), seeded by ``rng``.

        Raises
        ------
        ValueError
            If ``codes`` is not 1-D or holds a value outside ``0 .. n_codes - 1``.
        """
        values = np.asarray(codes)
        if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"`codes` must be a 1-D array of integers; got {values!r}.")
        if values.size and (values.min() < 0 or values.max() >= self.n_codes):
            raise ValueError(
                f"`codes` must lie in 0 .. n_codes - 1 = {self.n_codes - 1}; got {values!r}."
            )
        like = _first_parameter(self)
        generator = torch_generator(rng, like.device)
        z = torch.randn(values.size, self.generator.latent_dim, generator=generator,
                        device=like.device, dtype=like.dtype)  # fmt: skip
        with torch.no_grad():
            return self(z, torch.as_tensor(values, device=like.device)).cpu().numpy()

    def extra_repr(self) -> str:
        return f"n_codes={self.n_codes}, weight={self.weight}"
