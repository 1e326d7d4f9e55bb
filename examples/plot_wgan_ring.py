"""
WGAN-GP and the GAN on a ring of Gaussians
==========================================

The standard test of mode collapse: the data are an equal mixture of 8 Gaussians of
standard deviation 0.05 on a circle of radius 2, and a generator maps 2-D noise to the
plane. A generator that collapses puts its samples on a few of the modes; one that has not
converged spreads them along the circle between the modes. Two scores, on 2,000 samples:

- **modes covered**: modes holding at least 50 samples (a fifth of the uniform share of 250);
- **high quality**: the share of samples within 3 standard deviations of a mode. For exact
  samples ``|x - c|^2 / sd^2`` is chi-squared with 2 degrees of freedom, so the share is
  ``1 - exp(-9/2) = 0.989``.

The same generator, data and seed are trained by :func:`ratiokit.train` with the
classifier GAN (non-saturating loss) and with WGAN-GP (:class:`~ratiokit.methods.Wasserstein`,
one-sided penalty), each for about ten seconds on the CPU. ``benchmarks/gan.py`` runs
longer budgets and more seeds.
"""

# %%
# The ring and the scores
# -----------------------
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

import ratiokit as rk
from ratiokit.methods import Classifier, Wasserstein
from ratiokit.plot import plot_samples

N_MODES, RADIUS, MODE_SD = 8, 2.0, 0.05
angle = 2.0 * np.pi * np.arange(N_MODES) / N_MODES
centres = RADIUS * np.stack([np.cos(angle), np.sin(angle)], axis=1)


def ring_data(n: int, seed: int) -> np.ndarray:
    """n points of the equal mixture of N(c_i, MODE_SD^2 I) over the centres, as float32."""
    gen = np.random.default_rng(seed)
    x = centres[gen.integers(N_MODES, size=n)] + MODE_SD * gen.normal(size=(n, 2))
    return x.astype(np.float32)


def scores(x: np.ndarray) -> tuple[int, float]:
    """Modes holding >= 1/5 of the uniform share of x within 3 sd, and the share within 3 sd."""
    dist = np.linalg.norm(x[:, None, :] - centres[None], axis=2)
    good = dist.min(axis=1) < 3.0 * MODE_SD
    counts = np.bincount(dist.argmin(axis=1)[good], minlength=N_MODES)
    return int((counts >= len(x) / N_MODES / 5).sum()), float(good.mean())


data = ring_data(4000, seed=0)
covered, quality = scores(ring_data(2000, seed=1))
print(f"exact samples: modes covered {covered} of 8, high quality {quality:.3f}")

# %%
# Training
# --------
# A generator MLP 64-64 (ReLU) from seeded initial weights; the critics are MLPs 64-64.
# Each run keeps an exponential moving average of the generator's weights, whose samples
# are scored. WGAN-GP takes 2 critic steps per generator step, with Adam's
# ``betas=(0.5, 0.9)`` and the one-sided penalty ``lambda E[max(0, |grad f| - 1)^2]``.


def new_generator() -> nn.Module:
    """2-D noise -> MLP 64-64 (ReLU) -> 2-D, seeded without touching the global RNG."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2)
        )


runs = {
    "GAN (non-saturating)": (
        Classifier(hidden=(64, 64)),
        rk.TrainConfig(max_steps=1500, lr=3e-3, critic_lr=3e-3, ema=0.99, progress=False),
    ),
    "WGAN-GP (one-sided)": (
        Wasserstein(hidden=(64, 64), one_sided=True),
        rk.TrainConfig(max_steps=1000, critic_steps=2, lr=3e-3, critic_lr=3e-3,
                       betas=(0.5, 0.9), ema=0.99, progress=False),
    ),
}  # fmt: skip
generated = {}
for label, (method, config) in runs.items():
    generator = new_generator()
    out = rk.train(
        generator,
        lambda n, g, generator=generator: generator(torch.randn(n, 2, generator=g)),
        data,
        method,
        config,
        rng=0,
    )
    with torch.no_grad():
        z = torch.randn(2000, 2, generator=torch.Generator().manual_seed(2))
        generated[label] = out.ema_model(z).numpy()
    covered, quality = scores(generated[label])
    print(f"{label:>20}: modes covered {covered} of 8, high quality {quality:.3f}")

# %%
# The samples
# -----------
# Data (blue) and 2,000 samples of each generator, with the 3-sd circle round each mode.
fig, axes = plt.subplots(1, 2, figsize=(9, 4.4))
for ax, (label, sample) in zip(axes, generated.items(), strict=True):
    plot_samples(data[:2000], sample, ax=ax, labels=("data", label), title=label)
    for c in centres:
        ax.add_patch(plt.Circle(c, 3.0 * MODE_SD, fill=False, color="k", lw=0.6))
plt.show()
