"""
Fitting a simulator
===================

Front door 3: :func:`ratiokit.fit` chooses a simulator's parameters by driving a
discrepancy between the data and simulations to its minimum,
``theta_hat = argmin_theta D(P_data, Q_theta)``. The simulator only has to *sample*: no
likelihood is needed.

The g-and-k distribution is a standard likelihood-free benchmark. It is defined by its
quantile function at a standard normal draw ``z``,
``x = A + B (1 + 0.8 tanh(g z / 2)) (1 + z^2)^k z``, and has no closed-form density.
"""

# %%
# Data from known parameters
# --------------------------
# :class:`ratiokit.simulators.GAndK` carries its parameter names, its bounds (the box
# ``[0, 10]^4``) and the true parameters ``(A, B, g, k) = (3, 1, 2, 0.5)`` that
# :meth:`~ratiokit.simulators.Simulator.sample` draws observations at.
import matplotlib.pyplot as plt
import numpy as np

import ratiokit as rk
from ratiokit.config import TrainConfig
from ratiokit.simulators import GAndK

sim = GAndK()
data = sim.sample(500, rng=0)
print(dict(zip(sim.param_names, map(float, sim.theta_true), strict=True)))

# %%
# A black-box fit
# ---------------
# Called with a NumPy ``theta`` the simulator is a black box, ``simulator(theta, n, rng)``.
# ``kind="numpy"`` fits it by a gradient-free Nelder-Mead search on the MMD between the data
# and as many simulated points (500), with common random numbers (the same ``rng`` stream at every
# ``theta``), so the objective is a smooth function of ``theta``. Bounds are enforced by a
# transform, so the search never leaves the box.
fit = rk.fit(sim, data, method="mmd", theta0=[2.0, 2.0, 1.0, 1.0], kind="numpy", rng=0)
print(fit)
for name, true, est in zip(sim.param_names, sim.theta_true, fit.theta, strict=True):
    print(f"{name}: true {true:4.2f}   estimate {est:5.3f}")

# %%
# ``plot`` draws the search's trace and the data against simulations at the estimate.
fig = fit.plot(truth=sim.theta_true)[0].figure  # plot returns the Axes it drew on
plt.show()

# %%
# Is the fitted model compatible with the data? A two-sample test of the data against fresh
# simulations at ``theta_hat`` (conservative: ``theta_hat`` was chosen to match these data,
# so a small p-value is strong evidence of misfit).
gof = fit.goodness_of_fit(n_permutations=499, rng=1)
print(f"goodness of fit: p = {gof.pvalue:.3f}")

# %%
# By gradient descent
# -------------------
# ``GAndK`` is also differentiable: with a torch ``theta`` and a :class:`torch.Generator`
# it returns samples differentiable in ``theta`` (reparameterised draws). ``fit`` then runs
# the alternating training loop on ``theta`` with Adam: here the method is the MMD, which
# has no critic to train, so every step is a step of ``theta``. The estimate averages the
# second half of the iterates. :class:`~ratiokit.config.TrainConfig` holds the loop's
# settings.
config = TrainConfig(max_steps=400, batch_size=256, lr=0.02, progress=False)
grad_fit = rk.fit(sim, data, method="mmd", theta0=[2.0, 2.0, 1.0, 1.0], config=config, rng=0)
print(grad_fit.kind, np.round(grad_fit.theta, 3))

# %%
# ``converged`` is True only when the iterates stopped moving: a trend test on the second half
# of each parameter's trajectory. Here ``g``, the skewness, is still drifting after 400 steps
# (the plot below shows it), so the fit says so, with a
# :class:`~ratiokit.ConvergenceWarning`, instead of claiming an answer: raise ``max_steps`` or
# ``lr`` until it stops moving.
print(grad_fit.converged, grad_fit.details.get("message"))

fig, ax = plt.subplots(figsize=(7, 3.5))
for i, name in enumerate(sim.param_names):
    line = ax.plot(grad_fit.history["theta"][:, i], label=name)
    ax.axhline(sim.theta_true[i], color=line[0].get_color(), ls=":")
ax.set(xlabel="step", ylabel="theta", title="gradient descent on the MMD (dotted: truth)")
ax.legend(ncol=4)
plt.show()

# %%
# Confidence intervals
# --------------------
# ``n_bootstrap=B`` refits on resampled data with new random numbers, starting from the
# estimate, and reports intervals that contain the estimate (``fit.confidence_interval``)
# and the replicates' correlation matrix (``fit.correlation``). Each replicate
# is a whole fit, which is why replicates fan out through ``executor=``: the
# :ref:`Dask example <sphx_glr_auto_examples_plot_dask.py>` runs them on a cluster.
