"""
A class-conditional GAN on handwritten digits
=============================================

A conditional GAN learns ``p(x | label)``: its generator ``G(z, c)`` takes the label ``c``
beside the noise, and its critic judges pairs ``(c, x)``. That is an ordinary GAN on joint
rows ``[c, x]``, so :func:`ratiokit.train` trains it as it trains any model, with the
helpers of :mod:`ratiokit.conditional`: :func:`~ratiokit.conditional.one_hot` encodes the
labels, :func:`~ratiokit.conditional.joint_rows` builds the data ``[c, x]``, and
:class:`~ratiokit.conditional.ConditionalGenerator` gives the model's sampler (labels drawn
as in the data, returning ``[c, G(z, c)]``) and, after training, samples given chosen labels.
The critic is the registry's :class:`~ratiokit.methods.Classifier` on the 74 joint features:
it needs no notion of a condition.

The data are scikit-learn's 8 x 8 digits. The check: a logistic regression fitted on real
digits labels the generated ones; the share it labels as the digit asked for is set beside
its accuracy on real held-out digits. The whole example takes about 25 s of CPU time on one
core (2,000 training steps; measured).
"""

# %%
# The data and the judge
# ----------------------
# Pixels 0..16 scaled to [-1, 1]; 75% of the digits train the GAN and the judge, the rest
# measure the judge on real digits.
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from torch import nn

import ratiokit as rk
from ratiokit.conditional import ConditionalGenerator, joint_rows, one_hot
from ratiokit.methods import Classifier

digits = load_digits()
images = (digits.data / 8.0 - 1.0).astype(np.float32)
x_fit, x_held, y_fit, y_held = train_test_split(
    images, digits.target, test_size=0.25, random_state=0, stratify=digits.target
)
judge = LogisticRegression(max_iter=2000).fit(x_fit, y_fit)
print(f"judge on real held-out digits: accuracy {judge.score(x_held, y_held):.3f}")

# %%
# The conditional GAN
# -------------------
# The generator's network maps ``[z, c]`` (32 noise dimensions and 10 one-hot label
# columns) through two leaky-ReLU layers of 128 to 64 pixels (tanh). The critic is an MLP
# 128-128 (leaky ReLU) on ``[c, x]``. Non-saturating losses, Adam ``lr=1e-3``,
# ``betas=(0.5, 0.999)``, an exponential moving average of the generator's weights.
LATENT = 32
with torch.random.fork_rng():  # seeded initial weights; the global RNG is left as it was
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(LATENT + 10, 128), nn.LeakyReLU(0.2), nn.Linear(128, 128),
        nn.LeakyReLU(0.2), nn.Linear(128, 64), nn.Tanh(),
    )  # fmt: skip
generator = ConditionalGenerator(net, latent_dim=LATENT)
conditions = one_hot(y_fit, 10)
config = rk.TrainConfig(max_steps=2000, batch_size=128, lr=1e-3, critic_lr=1e-3, ema=0.999,
                        progress=False)  # fmt: skip
out = rk.train(
    generator,
    generator.sampler(conditions),  # labels drawn as in the data
    joint_rows(conditions, x_fit),  # rows [one_hot(label), pixels]
    Classifier(hidden=(128, 128), activation="leaky_relu"),
    config,
    rng=0,
)

# %%
# Digits on demand
# ----------------
# 200 digits of each label from the averaged generator, labelled by the judge.
asked = np.repeat(np.arange(10), 200)
fake = out.ema_model.sample(one_hot(asked, 10), rng=1)
accuracy = judge.score(fake, asked)
per_label = (judge.predict(fake) == asked).reshape(10, 200).mean(axis=1)
print(f"judge on generated digits: {accuracy:.3f} labelled as the digit asked for")
print("per label:", np.round(per_label, 3))

# %%
# Ten generated digits per label (rows: the label asked for).
fig, ax = plt.subplots(figsize=(5, 5))
canvas = np.ones((10 * 9 - 1, 10 * 9 - 1))
for label in range(10):
    for j in range(10):
        image = fake[200 * label + j].reshape(8, 8)
        canvas[label * 9 : label * 9 + 8, j * 9 : j * 9 + 8] = image
ax.imshow(canvas, cmap="gray_r", vmin=-1, vmax=1)
ax.set(xticks=[], yticks=4 + 9 * np.arange(10), yticklabels=range(10), ylabel="label asked for")
ax.set_title(f"judged as asked: {accuracy:.1%} (real held-out: {judge.score(x_held, y_held):.1%})")
plt.show()
