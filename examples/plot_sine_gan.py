"""
A generator learns a sine-shaped distribution
=============================================

The first exercise of GAN training: points ``(x, sin x + e)``, with ``x`` uniform on
``[-pi, pi]`` and ``e ~ N(0, 0.1^2)``, and a small generator network that maps 2-D Gaussian
noise to such points. :func:`ratiokit.train` runs the one alternating loop; the method
decides the game. Two are compared here:

- the classifier GAN (``"classifier"``): the discriminator ``D`` estimates the ratio of the
  data's density to the generator's, and the generator descends the non-saturating loss
  ``-E[log D(G(z))]``;
- WGAN-GP (:class:`~ratiokit.methods.Wasserstein`): a critic ``f`` estimates the
  Wasserstein-1 distance by its dual ``sup_{|f|_L <= 1} E_data[f] - E_G[f]``, kept about
  1-Lipschitz by a gradient penalty, and the generator descends ``-E[f(G(z))]``.

Both are judged against the truth on fresh samples by the MMD (median-bandwidth Gaussian
kernel), which neither was trained on. The budgets are small so that the documentation
builds quickly (about 15 to 20 seconds per method on one CPU thread).
"""

# %%
# The data and the generator
# --------------------------
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

import ratiokit as rk
from ratiokit.methods import Classifier, Wasserstein
from ratiokit.plot import plot_samples

NOISE_SD = 0.1


def sine_data(n: int, seed: int) -> np.ndarray:
    """n points (x, sin x + e), x ~ U(-pi, pi), e ~ N(0, NOISE_SD^2), as float32."""
    gen = np.random.default_rng(seed)
    x = gen.uniform(-np.pi, np.pi, n)
    return np.stack([x, np.sin(x) + NOISE_SD * gen.normal(size=n)], axis=1).astype(np.float32)


def new_generator() -> nn.Module:
    """2-D noise -> MLP 64-64 (ReLU) -> 2-D, with seeded initial weights (the global RNG is
    left as it was): every method starts from the same network."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2)
        )


def samples_of(generator: nn.Module, n: int = 1000) -> np.ndarray:
    """n samples of ``generator`` from fixed noise (seed 2)."""
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        return generator(z).numpy()


data = sine_data(4000, seed=0)

# %%
# Training
# --------
# The same generator, data and seed for both methods; each keeps an exponential moving
# average of the generator's weights (``ema``), whose samples are scored. WGAN-GP takes 5
# critic steps per generator step with Adam's ``betas=(0.5, 0.9)`` (Gulrajani et al.), and
# the one-sided penalty ``lambda E[max(0, |grad f| - 1)^2]``, which leaves slopes below 1
# free (see :class:`~ratiokit.methods.Wasserstein` on one- and two-sided penalties).
runs = {
    "GAN (non-saturating)": (
        Classifier(hidden=(64, 64)),
        rk.TrainConfig(max_steps=1500, batch_size=256, lr=1e-3, critic_lr=1e-3, ema=0.99,
                       progress=False),
    ),
    "WGAN-GP (one-sided)": (
        Wasserstein(hidden=(64, 64), one_sided=True),
        rk.TrainConfig(max_steps=300, critic_steps=5, batch_size=256, lr=1e-3, critic_lr=1e-3,
                       betas=(0.5, 0.9), ema=0.99, progress=False),
    ),
}  # fmt: skip
generated = {"untrained": samples_of(new_generator())}
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
    generated[label] = samples_of(out.ema_model)

# %%
# Against the truth
# -----------------
# The unbiased MMD^2 between 1,000 fresh points of the truth and 1,000 samples of each
# generator. A second fresh sample of the truth shows the floor: about 0, and slightly
# negative as often as not.
truth = sine_data(1000, seed=1)
generated["truth (fresh sample)"] = sine_data(1000, seed=3)
for label, sample in generated.items():
    print(f"MMD^2 to the truth, {label:>22}: {rk.discrepancy(truth, sample, rng=0):8.4f}")

# %%
# The samples over the curve ``y = sin x``. In this budget both generators find the curve
# but let some samples run past the ends of the support (``|x| > pi``): the sharp edges of
# the uniform ``x`` are the last thing learnt.
curve = np.linspace(-np.pi, np.pi, 200)
fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
for ax, label in zip(axes, ["untrained", *runs], strict=True):
    plot_samples(truth, generated[label], ax=ax, labels=("truth", label), title=label)
    ax.plot(curve, np.sin(curve), color="k", lw=1)
    ax.set(aspect="auto", xlim=(-4.5, 4.5), ylim=(-2.0, 2.5))
plt.show()
