"""
A GAN on handwritten digits
===========================

A GAN is one case of front door 3: :func:`ratiokit.fit` with a generator network
(noise to samples) and the ``"classifier"`` method. The classifier is the discriminator:
it estimates the density ratio between the data and the generator's samples
(class-probability estimation, ``log r = logit D``), and the generator is trained to drive
that ratio towards 1, in alternating steps.

The data are scikit-learn's 8 x 8 digits (1,797 images, 64 grey levels each, shipped with
scikit-learn). **This example trains for only 1,500 steps of two small multilayer
perceptrons on the CPU**, so that the documentation builds in minutes: the samples are
rough digit-like shapes, not the output of a converged GAN. Raise ``max_steps`` (and widen the
networks) for sharp digits.
"""

# %%
# The data, scaled to [-1, 1]
# ---------------------------
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

import ratiokit as rk
from ratiokit.config import TrainConfig

digits = load_digits().data.astype(np.float32)  # (1797, 64), values 0..16
data = digits / 8.0 - 1.0

# %%
# The generator
# -------------
# 16-dimensional Gaussian noise to 64 pixels; ``tanh`` keeps the pixels in [-1, 1]. ``fit``
# reads the noise dimension from the first linear layer and trains a *copy* of the module:
# the network passed in is left untouched.
with torch.random.fork_rng():  # seeded initial weights; the global RNG is left as it was
    torch.manual_seed(0)
    generator = nn.Sequential(
        nn.Linear(16, 128),
        nn.LeakyReLU(0.2),
        nn.Linear(128, 128),
        nn.LeakyReLU(0.2),
        nn.Linear(128, 64),
        nn.Tanh(),
    )

# %%
# Training
# --------
# :class:`~ratiokit.config.TrainConfig` holds the loop's settings: Adam with
# ``betas=(0.5, 0.999)``, the non-saturating generator loss ``-E[log D(G(z))]`` and an
# exponential moving average of the generator's weights (``ema``). The discriminator is
# the default critic of :class:`~ratiokit.methods.Classifier`, an MLP on standardised
# inputs, trained alongside.
config = TrainConfig(
    max_steps=1500, batch_size=128, lr=1e-3, critic_lr=1e-3, ema=0.99, progress=False
)
gan = rk.fit(generator, data, method="classifier", config=config, rng=0)
print(gan)

# %%
# The losses per step. The critic's loss is minus its estimate of the Jensen-Shannon
# divergence (the balanced cross-entropy minus ``log 2``); the generator's is the
# non-saturating ``-E[log D(G(z))]``. At the ideal equilibrium the discriminator outputs
# ``D = 1/2`` everywhere: the critic's loss is 0 and the generator's ``log 2``.
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(gan.history["loss"], label="generator loss", lw=0.8)
ax.plot(gan.history["critic_loss"], label="critic loss", lw=0.8)
ax.axhline(np.log(2), color="C0", ls=":", label="log 2")
ax.axhline(0.0, color="C1", ls=":", label="0")
ax.set(xlabel="step", title="alternating training")
ax.legend(ncol=2)
plt.show()

# %%
# Samples
# -------
# Real digits (top) and samples of the trained generator (bottom).
fake = gan.simulate(16, rng=1)
fig, axes = plt.subplots(2, 16, figsize=(10, 1.6))
for ax, image in zip(axes.ravel(), np.vstack([data[:16], fake]), strict=True):
    ax.imshow(image.reshape(8, 8), cmap="gray_r", vmin=-1, vmax=1)
    ax.set_axis_off()
plt.show()

# %%
# How far are the samples from the data? The MMD between 500 held digits and 500 samples,
# before and after training (the untrained generator's output is near 0: a grey smudge).
with torch.no_grad():
    before = generator(torch.randn(500, 16, generator=torch.Generator().manual_seed(2))).numpy()
after = gan.simulate(500, rng=2)
for label, sample in [("untrained", before), ("trained", after)]:
    print(f"MMD^2 to the data, {label}: {rk.discrepancy(data[:500], sample, rng=0):.4f}")
