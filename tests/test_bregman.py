"""Neural Bregman ratio matching against exact ratios, divergences and equivalent objectives."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ratiokit.methods.bregman import NeuralBregman
from ratiokit.methods.fdiv import FDivergence
from ratiokit.synthetic import GaussianMixture, GaussianShift
from tests.test_fdiv import js_by_quadrature, log_ratio_mse, samples

N = 2000


_FITS: dict = {}


def fitted(f, shift, alpha=0.5, seed=0):
    """One fit per configuration on a 1-D Gaussian shift, shared by the tests of this module."""
    key = (f, shift, alpha, seed)
    if key not in _FITS:
        pair = GaussianShift(dim=1, shift=shift)
        x_p, x_q = samples(pair, N, 10 * seed + 1)
        method = NeuralBregman(f, power_alpha=alpha).fit_critic(x_p, x_q, rng=seed)
        _FITS[key] = (pair, x_p, x_q, method)
    return _FITS[key]


def power_divergence(shift, alpha):
    """(int p^(1+a) q^(-a) - 1) / a for unit Gaussians at distance s: the integral is
    exp(a (1 + a) s^2 / 2) (complete the square in the exponent)."""
    return math.expm1(alpha * (1.0 + alpha) * shift**2 / 2.0) / alpha


# Estimates on the n = 2000 training rows against the exact values (chi^2 = exp(s^2) - 1 and
# KL = s^2 / 2 from synthetic.py, JS by quadrature, the power divergence in closed form).
# Largest deviations over five other seeds: lsif 0.092 (sampling sd of the chi^2 bound about
# 0.045 at s = 0.5), kl 0.087 (sd 0.022), logistic 0.015, power 0.052. lsif and power use
# s = 0.5, where r^2 and r^1.5 have moderate tails. Tolerances are 1.7-2 times those.
CASES = [
    ("lsif", 0.5, "pearson", lambda pair: pair.pearson(), 0.15),
    ("kl", 1.0, "kl", lambda pair: pair.kl_pq(), 0.15),
    ("logistic", 1.0, "js", js_by_quadrature, 0.03),
    ("power", 0.5, "power", lambda pair: power_divergence(0.5, 0.5), 0.1),
]


@pytest.mark.parametrize(("f", "shift", "kind", "exact", "tol"), CASES)
def test_divergence_estimate_matches_the_exact_value(f, shift, kind, exact, tol):
    pair, x_p, x_q, method = fitted(f, shift)
    assert method.kinds == (kind,)
    with torch.no_grad():
        assert float(method.estimate_divergence(kind, x_p, x_q)) == pytest.approx(
            exact(pair), abs=tol
        )


@pytest.mark.parametrize(
    ("f", "shift", "threshold"),
    # Observed maxima over five other seeds: lsif 0.011, kl 0.015, logistic 0.019, power
    # 0.009; the best constant predictor has MSE s^2 (0.25 and 1). lsif is the least stable
    # (see NeuralBregman): in three more seeds at s = 0.5 one run reached 0.35 (this seed:
    # 0.004), so its threshold is a regression check rather than a guarantee.
    [("lsif", 0.5, 0.05), ("kl", 1.0, 0.05), ("logistic", 1.0, 0.05), ("power", 0.5, 0.03)],
)
def test_log_ratio_is_close_to_the_exact_one(f, shift, threshold):
    pair, _, _, method = fitted(f, shift)
    assert log_ratio_mse(method, pair) < threshold


def test_lsif_on_a_mixture():
    # Observed 0.06-0.10 for lsif on the mixture (its ratio is bounded, so the correction
    # never acts); the best constant has MSE Var_q(log r) = 0.57.
    pair = GaussianMixture()
    x_p, x_q = samples(pair, N, 5)
    assert log_ratio_mse(NeuralBregman("lsif").fit_critic(x_p, x_q, rng=0), pair) < 0.2


def test_power_one_is_lsif_and_logistic_is_the_js_critic():
    # power with a = 1 has f(t) = t^2 - t = 2 f_lsif(t) + (t - 1): twice the LSIF risk up to a
    # constant. Adam is invariant to the loss scale up to its eps = 1e-8 (log-ratios then
    # differ by about 2e-5), so the fits agree to 1e-4.
    pair, x_p, x_q, lsif = fitted("lsif", 0.5)
    power = NeuralBregman("power", power_alpha=1.0).fit_critic(x_p, x_q, rng=0)
    assert power.kinds == ("power", "pearson")
    with torch.no_grad():
        torch.testing.assert_close(power.log_ratio(x_q), lsif.log_ratio(x_q), rtol=0, atol=1e-4)
        # D_f(power, a = 1) = chi^2 = 2 PE = 2 D_f(lsif).
        assert float(power(x_p, x_q)) == pytest.approx(2 * float(lsif(x_p, x_q)), abs=1e-4)
    # The logistic risk is minus the f-GAN JS bound up to a constant (without the clamp).
    _, x_p, x_q, _ = fitted("logistic", 1.0)
    logistic = NeuralBregman("logistic", correction=0.0).fit_critic(x_p, x_q, rng=0)
    js = FDivergence("js").fit_critic(x_p, x_q, rng=0)
    with torch.no_grad():
        torch.testing.assert_close(logistic.log_ratio(x_q), js.log_ratio(x_q), rtol=0, atol=1e-8)
        assert float(logistic(x_p, x_q)) == pytest.approx(float(js(x_p, x_q)), abs=1e-8)


@settings(deadline=None, max_examples=25)
@given(
    st.sampled_from(["lsif", "kl", "logistic", "power"]),
    st.floats(0.0, 0.9),
    st.lists(st.floats(-4, 4), min_size=2, max_size=8),
    st.lists(st.floats(-4, 4), min_size=2, max_size=8),
)
def test_non_negative_risk_bounds_the_plain_risk(f, c, v_p, v_q):
    # max(0, a - C b) + C b >= a with equality iff a >= C b: the corrected risk is the plain
    # risk BR_f = -(forward) + const whenever the clamp is inactive, and above it otherwise.
    method = NeuralBregman(f, correction=c)
    plain = NeuralBregman(f, correction=0.0)
    identity = torch.nn.Flatten(0)  # the "network" returns its one input column: V = x
    for m in (method, plain):
        m.critic_ = identity
    x_p = torch.tensor(v_p, dtype=torch.float64)[:, None]
    x_q = torch.tensor(v_q, dtype=torch.float64)[:, None]
    corrected, base = float(method._loss(x_p, x_q)), float(plain._loss(x_p, x_q))
    scale = 1e-12 * (1.0 + abs(base))
    assert corrected >= base - scale
    # The plain risk is BR_f up to a constant, and forward is -BR_f - f(1): their sum is
    # f's constant. lsif: the risk drops BR's constant -1/2 and f(1) = 0; kl: f(1) = -1;
    # logistic: f(1) = -log 4; power: f(1) = 0 and no constant.
    constant = {"lsif": 0.5, "kl": 1.0, "logistic": math.log(4.0), "power": 0.0}[f]
    assert base + float(plain(x_p, x_q)) == pytest.approx(constant, abs=1e-12 * (1 + abs(base)))


def test_correction_stops_train_loss_hacking():
    # The documented case: a 5-D unit shift where the plain LSIF risk is driven down by huge
    # ratios at P's training rows (log-ratio MSE 1.6); the non-negative risk is not (0.065).
    pair = GaussianShift(dim=5, shift=1.0)
    x_p, x_q = samples(pair, N, 1)
    plain = NeuralBregman("lsif", correction=0.0).fit_critic(x_p, x_q, rng=0)
    corrected = NeuralBregman("lsif").fit_critic(x_p, x_q, rng=0)
    assert log_ratio_mse(plain, pair, seed=6) > 0.5
    assert log_ratio_mse(corrected, pair, seed=6) < 0.15


# --------------------------------------------------------------------------- behaviour


def test_seeded_fit_is_bit_identical_and_gradients_flow():
    x_p, x_q = samples(GaussianShift(dim=2, shift=1.0), 200, 12)
    a, b, c = (NeuralBregman("kl").fit_critic(x_p, x_q, rng=r) for r in (3, 3, 4))
    with torch.no_grad():
        assert torch.equal(a.log_ratio(x_p), b.log_ratio(x_p))
        assert not torch.equal(a.log_ratio(x_p), c.log_ratio(x_p))
    x_p, x_q = x_p.requires_grad_(True), x_q.requires_grad_(True)
    a(x_p, x_q).backward()
    assert x_p.grad.abs().sum() > 0 and x_q.grad.abs().sum() > 0
    params = list(a.parameters())
    assert params and all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


def test_numpy_input_gives_numpy_output():
    x_p, x_q = samples(GaussianShift(dim=1, shift=1.0), 100, 13)
    method = NeuralBregman(max_steps=5).fit_critic(x_p.numpy(), x_q.numpy(), rng=0)
    out = method.log_ratio(x_q.numpy())
    assert isinstance(out, np.ndarray) and out.shape == (100,) and out.dtype == np.float64


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"f": "ls"}, ValueError, r"`f` must be one of \['kl', 'logistic', 'lsif', 'power'\]"),
        ({"power_alpha": 0.0}, ValueError, "`power_alpha` must be a positive real number"),
        ({"correction": 1.0}, ValueError, r"`correction` must be a real number in \[0, 1\)"),
        ({"correction": "0.1"}, TypeError, r"`correction` must be a real number in \[0, 1\)"),
        ({"critic": 3}, TypeError, "`critic` must be None or a torch.nn.Module; got int"),
        ({"validation_fraction": -0.1}, ValueError, "`validation_fraction` must be a real"),
    ],
)
def test_bad_parameters_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        NeuralBregman(**kwargs)


def test_bad_calls_are_named():
    x = torch.zeros(5, 2, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="NeuralBregman is not fitted yet"):
        NeuralBregman().log_ratio(x)
    _, x_p, x_q, method = fitted("kl", 1.0)
    with pytest.raises(ValueError, match="`x` must have 1 features, as in `fit_critic`; got 2"):
        method.log_ratio(x)
    with pytest.raises(ValueError, match=r"`kind` must be one of \['kl'\] for f='kl'"):
        method.estimate_divergence("pearson", x_p, x_q)
