"""
WGAN-GP and the GAN on a 5 x 5 grid of Gaussians
================================================

The harder sibling of the ring: an equal mixture of 25 Gaussians of standard deviation 0.05
at the points of a 5 x 5 grid one unit apart. The generator must split its noise into 25
separate blobs, and the modes of the middle lie between others, so a generator that has not
converged fills the square between them. Two scores, on 2,000 samples:

- **modes covered**: modes holding at least 16 samples (a fifth of the uniform share of 80);
- **high quality**: the share of samples within 3 standard deviations of a mode (exact
  samples: ``1 - exp(-9/2) = 0.989``, as ``|x - c|^2 / sd^2`` is chi-squared with 2
  degrees of freedom).

The same generator, data and seed are trained by :func:`ratiokit.train` with WGAN-GP
(:class:`~ratiokit.methods.Wasserstein`, one-sided penalty) and with the classifier GAN
(non-saturating loss), in the setting of the ``wgan`` section of ``benchmarks/gan.py``
(which runs three seeds). Both runs take about 90 s of CPU time (87 s measured on one core).
"""

# %%
# The grid and the scores
# -----------------------
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

import ratiokit as rk
from ratiokit.methods import Classifier, Wasserstein
from ratiokit.plot import plot_samples

MODE_SD = 0.05
axis = np.arange(5) - 2.0
centres = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)


def grid_data(n: int, seed: int) -> np.ndarray:
    """n points of the equal mixture of N(c_i, MODE_SD^2 I) over the centres, as float32."""
    gen = np.random.default_rng(seed)
    x = centres[gen.integers(len(centres), size=n)] + MODE_SD * gen.normal(size=(n, 2))
    return x.astype(np.float32)


def scores(x: np.ndarray) -> tuple[int, float]:
    """Modes holding >= 1/5 of the uniform share of x within 3 sd, and the share within 3 sd."""
    dist = np.linalg.norm(x[:, None, :] - centres[None], axis=2)
    good = dist.min(axis=1) < 3.0 * MODE_SD
    counts = np.bincount(dist.argmin(axis=1)[good], minlength=len(centres))
    return int((counts >= len(x) / len(centres) / 5).sum()), float(good.mean())


data = grid_data(4000, seed=0)
covered, quality = scores(grid_data(2000, seed=1))
print(f"exact samples: modes covered {covered} of 25, high quality {quality:.3f}")

# %%
# Training
# --------
# A generator MLP 128-128 (ReLU) from seeded initial weights, critics MLP 128-128, Adam
# ``lr=2e-3`` for both players, 3,000 generator steps, and an exponential moving average
# of the generator's weights, whose samples are scored. WGAN-GP takes 2 critic steps per
# generator step, with ``betas=(0.5, 0.9)`` and the one-sided penalty
# ``lambda E[max(0, |grad f| - 1)^2]``.


def new_generator() -> nn.Module:
    """2-D noise -> MLP 128-128 (ReLU) -> 2-D, seeded without touching the global RNG."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Linear(2, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 2)
        )


runs = {
    "WGAN-GP (one-sided)": (
        Wasserstein(hidden=(128, 128), one_sided=True),
        rk.TrainConfig(max_steps=3000, critic_steps=2, lr=2e-3, critic_lr=2e-3,
                       betas=(0.5, 0.9), ema=0.99, progress=False),
    ),
    "GAN (non-saturating)": (
        Classifier(hidden=(128, 128)),
        rk.TrainConfig(max_steps=3000, lr=2e-3, critic_lr=2e-3, ema=0.99, progress=False),
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
    print(f"{label:>20}: modes covered {covered} of 25, high quality {quality:.3f}")

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
