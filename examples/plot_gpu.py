"""
Running on a GPU
================

Computation in ratiokit is in torch, and ``device=`` is accepted wherever work is heavy:
the front doors take ``device="cuda"``, tensors already on a GPU stay there, and
:class:`~ratiokit.config.TrainConfig` trains a model on the device it names. Kernel sums
on a GPU run as KeOps reductions (``backend="auto"``), which never hold an n x m Gram
matrix in memory.

**This page was built on a machine without a GPU**: the code below picks ``"cuda"`` when
:func:`torch.cuda.is_available` and otherwise runs the same calls on the CPU, with smaller
sizes so that the documentation builds quickly. The printed device says which one ran.
"""

# %%
# Choosing the device
# -------------------
import numpy as np
import torch

import ratiokit as rk
from ratiokit.config import TrainConfig
from ratiokit.simulators import GaussianLocationScale

device = "cuda" if torch.cuda.is_available() else "cpu"
n = 20_000 if device == "cuda" else 2_000
print(f"device: {device}, n = m = {n}")

# %%
# A two-sample test on the device
# -------------------------------
# Samples can be made on the GPU directly (here with a seeded :class:`torch.Generator`), or
# passed as NumPy arrays with ``device="cuda"``, which copies them there.
gen = torch.Generator(device=device).manual_seed(0)
x = torch.randn(n, 10, generator=gen, device=device, dtype=torch.float64)
y = torch.randn(n, 10, generator=gen, device=device, dtype=torch.float64) * 1.05
res = rk.two_sample_test(x, y, method="mmd", n_permutations=999, rng=0)
print(f"MMD^2 = {res.statistic:.3g}, p = {res.pvalue:.3f}")

# %%
# The relabellings are drawn on the CPU from ``rng``, whatever the device, so the same seed
# gives the same p-value on the CPU and on a GPU. Checking it on the first 500 points:
small_dev = rk.two_sample_test(x[:500], y[:500], n_permutations=199, rng=0)
small_cpu = rk.two_sample_test(x[:500].cpu(), y[:500].cpu(), n_permutations=199, rng=0)
print(f"p on {device}: {small_dev.pvalue:.3f}, p on cpu: {small_cpu.pvalue:.3f}")

# %%
# A density ratio on the device
# -----------------------------
# ``device=`` moves NumPy input to the device; the fitted estimator evaluates there and
# returns NumPy for NumPy input, a tensor (on its device) for a tensor.
gen_np = np.random.default_rng(1)
x_p = gen_np.normal(0.5, 1.0, size=(1000, 2))
x_q = gen_np.normal(0.0, 1.0, size=(1000, 2))
est = rk.estimate_ratio(x_p, x_q, method="ulsif", rng=0, device=device)
points = torch.tensor([[-1.0, -1.0], [0.0, 0.0], [1.0, 1.0]], dtype=torch.float64, device=device)
log_r = est.log_ratio(points)  # a tensor on `device`
exact = points.sum(1) / 2 - 0.25  # log p/q for these two Gaussians
print(f"log r on {log_r.device}: {np.round(log_r.cpu().numpy(), 2)}, exact {exact.cpu().numpy()}")

# %%
# Fitting on the device
# ---------------------
# A differentiable simulator is trained where ``TrainConfig(device=...)`` says: its
# parameters, the simulated minibatches and the method's computations all live there.
sim = GaussianLocationScale(theta_true=(1.0, 2.0), dim=2)
data = sim.sample(2000, rng=0)
config = TrainConfig(max_steps=600, lr=0.05, device=device, progress=False)
fit = rk.fit(sim, data, method="mmd", theta0=[0.0, 1.0], config=config, rng=0)
print(f"(loc, scale) = {np.round(fit.theta, 2)} (truth (1, 2)), trained on {device}")
