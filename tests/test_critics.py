"""Critic networks and the minibatch trainer: shapes, seeding, early stopping, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ratiokit.critics import (
    ACTIVATIONS,
    TRAINING_SETTINGS,
    Standardize,
    canonical_order,
    check_network,
    evaluate_critic,
    make_critic,
    mlp_critic,
    train_critic,
)
from ratiokit.exceptions import NonFiniteLossError
from ratiokit.methods import Classifier, DeepKernelMMD, FDivergence, NeuralBregman
from ratiokit.results import TrainHistory
from ratiokit.synthetic import GaussianShift


def logistic_loss(module, x_p, x_q):
    """Balanced logistic loss, minimised by T = log p/q."""
    t_p, t_q = evaluate_critic(module, x_p), evaluate_critic(module, x_q)
    return -0.5 * (F.logsigmoid(t_p).mean() + F.logsigmoid(-t_q).mean())


def shift_samples(n, seed, dim=1, shift=1.0):
    pair = GaussianShift(dim=dim, shift=shift)
    x_p = torch.tensor(pair.sample_p(n, rng=seed))
    x_q = torch.tensor(pair.sample_q(n, rng=seed + 1))
    return pair, x_p, x_q


SETTINGS = dict(max_steps=300, batch_size=128, lr=0.01)


# --------------------------------------------------------------------------- networks


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_mlp_critic_shape_dtype_and_seeded_init(activation):
    net = mlp_critic(4, (8, 5), activation=activation, rng=3)
    x = torch.randn(7, 4, dtype=torch.float64)
    out = net(x)
    assert out.shape == (7,) and out.dtype == torch.float64
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(4, 8), (8, 5), (5, 1)]
    assert isinstance(net[1], ACTIVATIONS[activation])
    again, other = (
        mlp_critic(4, (8, 5), activation=activation, rng=3),
        mlp_critic(4, (8, 5), rng=4),
    )
    assert torch.equal(again(x), out)
    assert not torch.equal(other(x), out)


def test_mlp_critic_does_not_touch_the_global_torch_rng():
    state = torch.random.get_rng_state()
    mlp_critic(3, (4,), rng=0)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_linear_critic_and_float32():
    net = mlp_critic(2, (), rng=0, dtype=torch.float32)
    assert len(net) == 2 and isinstance(net[0], torch.nn.Linear)  # Linear, Flatten
    assert net(torch.zeros(3, 2)).dtype == torch.float32


def test_spectral_norm_makes_every_layer_one_lipschitz():
    net = mlp_critic(3, (16, 16), spectral_norm=True, rng=0)
    net.train()
    x = torch.randn(10, 3, dtype=torch.float64)
    for _ in range(10):  # power iterations run in training mode
        net(x)
    net.eval()
    for layer in (m for m in net if isinstance(m, torch.nn.Linear)):
        # The power iteration's estimate of the top singular value converges to it.
        assert float(torch.linalg.matrix_norm(layer.weight.detach(), ord=2)) == pytest.approx(
            1.0, abs=1e-3
        )


def test_make_critic_standardises_the_pooled_sample():
    gen = np.random.default_rng(0)
    x_p = torch.tensor(gen.normal(5.0, 3.0, size=(50, 2)))
    x_q = torch.tensor(gen.normal(-1.0, 0.5, size=(70, 2)))
    critic = make_critic(None, x_p, x_q, hidden=(4,), activation="elu", spectral_norm=False, rng=0)
    assert isinstance(critic[0], Standardize)
    z = critic[0](torch.cat([x_p, x_q]))
    torch.testing.assert_close(z.mean(0), torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(z.std(0), torch.ones(2, dtype=torch.float64))
    assert list(critic.parameters()) == list(critic[1].parameters())  # buffers, not parameters


def test_make_critic_copies_a_template_to_the_sample_dtype():
    template = torch.nn.Linear(2, 1)  # float32, (n, 1) output
    x = torch.zeros(5, 2, dtype=torch.float64)
    critic = make_critic(template, x, x, hidden=(), activation="elu", spectral_norm=False, rng=0)
    assert critic is not template and critic.weight.dtype == torch.float64
    assert template.weight.dtype == torch.float32
    assert evaluate_critic(critic, x).shape == (5,)


def test_evaluate_critic_casts_and_names_bad_output_shapes():
    net = mlp_critic(2, (3,), rng=0)  # float64
    x32 = torch.randn(4, 2)
    out = evaluate_critic(net, x32)
    assert out.dtype == torch.float32 and out.shape == (4,)
    with pytest.raises(ValueError, match=r"`critic` must map .* got shape \(4, 2\)"):
        evaluate_critic(torch.nn.Linear(2, 2), x32)


@settings(deadline=None, max_examples=25)
@given(
    arrays(
        np.float64, st.tuples(st.integers(1, 12), st.integers(1, 3)), elements=st.integers(-2, 2)
    ),
    st.randoms(use_true_random=False),
)
def test_canonical_order_is_lexicographic_and_ignores_row_order(a, rnd):
    # Small integers: many ties and duplicate rows.
    x = torch.tensor(a)
    perm = torch.tensor(rnd.sample(range(len(a)), len(a)), dtype=torch.long)
    sorted_x = x[canonical_order(x)]
    assert torch.equal(x[perm][canonical_order(x[perm])], sorted_x)
    rows = [tuple(r) for r in sorted_x.tolist()]
    assert rows == sorted(rows)


# --------------------------------------------------------------------------- train_critic


def test_train_critic_recovers_the_logistic_optimum_of_a_gaussian_shift():
    # P = N(1, 1), Q = N(0, 1): log p/q = x - 1/2, which a linear critic represents exactly.
    # The logistic MLE has standard error about 2 / sqrt(n_train) ~ 0.03 per coefficient
    # (Fisher information n Var(x) / 4 per class); 0.15 is 5 standard errors.
    _, x_p, x_q = shift_samples(2000, 0)
    net = mlp_critic(1, (), rng=0)
    hist = train_critic(
        logistic_loss, net, x_p, x_q, max_steps=2000, batch_size=256, lr=0.05, rng=0
    )
    assert net[0].weight.item() == pytest.approx(1.0, abs=0.15)
    assert net[0].bias.item() == pytest.approx(-0.5, abs=0.15)
    assert len(hist) == len(hist.critic_loss) and hist.val_step[0] == 0
    assert hist.val_loss[list(hist.val_step).index(hist.best_step)] == hist.val_loss.min()


def test_early_stopping_restores_the_best_state():
    # A wide network, tiny sample, no weight decay: the held-out loss rises after a while.
    _, x_p, x_q = shift_samples(60, 2)
    net = mlp_critic(1, (128, 128), rng=0)
    hist = train_critic(logistic_loss, net, x_p, x_q, **SETTINGS, patience=30, rng=1)
    assert hist.stopped_early and len(hist) == hist.best_step + 30
    # The trajectory is deterministic: a rerun stopped at best_step has the same weights.
    rerun = mlp_critic(1, (128, 128), rng=0)
    kwargs = {**SETTINGS, "max_steps": hist.best_step}
    train_critic(logistic_loss, rerun, x_p, x_q, **kwargs, patience=10_000, rng=1)
    for a, b in zip(net.state_dict().values(), rerun.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_without_validation_it_trains_max_steps_and_keeps_the_last_state():
    _, x_p, x_q = shift_samples(100, 3)
    net = mlp_critic(1, (8,), rng=0)
    hist = train_critic(
        logistic_loss, net, x_p, x_q, **SETTINGS, validation_fraction=0.0, patience=1, rng=0
    )
    assert len(hist) == hist.best_step == 300 and hist.val_loss.size == 0
    assert not hist.stopped_early


def test_max_steps_zero_leaves_the_module_unchanged():
    _, x_p, x_q = shift_samples(50, 4)
    net = mlp_critic(1, (4,), rng=0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    hist = train_critic(logistic_loss, net, x_p, x_q, max_steps=0, batch_size=8, lr=0.1, rng=0)
    assert len(hist) == 0 and hist.best_step == 0
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_seeded_training_is_bit_identical_and_ignores_row_order():
    _, x_p, x_q = shift_samples(300, 5, dim=2)
    outs = []
    for perm_seed in (None, 0):
        a, b = x_p, x_q
        if perm_seed is not None:
            gen = np.random.default_rng(perm_seed)
            a, b = x_p[gen.permutation(300)], x_q[gen.permutation(300)]
        net = mlp_critic(2, (16,), rng=0)
        train_critic(logistic_loss, net, a, b, **SETTINGS, rng=7)
        outs.append(net(x_p))
    assert torch.equal(outs[0], outs[1])
    net = mlp_critic(2, (16,), rng=0)
    train_critic(logistic_loss, net, x_p, x_q, **SETTINGS, rng=8)
    assert not torch.equal(net(x_p), outs[0])


def test_training_works_under_no_grad():
    _, x_p, x_q = shift_samples(100, 6)
    net, again = mlp_critic(1, (4,), rng=0), mlp_critic(1, (4,), rng=0)
    with torch.no_grad():
        train_critic(logistic_loss, net, x_p, x_q, **SETTINGS, rng=0)
    train_critic(logistic_loss, again, x_p, x_q, **SETTINGS, rng=0)
    for a, b in zip(net.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_training_uses_its_own_generator_only():
    _, x_p, x_q = shift_samples(100, 6)
    state = torch.random.get_rng_state()
    train_critic(logistic_loss, mlp_critic(1, (4,), rng=0), x_p, x_q, **SETTINGS, rng=0)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_progress_bar_only_when_asked(capsys):
    _, x_p, x_q = shift_samples(40, 7)
    for progress in (False, True):
        net = mlp_critic(1, (4,), rng=0)
        train_critic(
            logistic_loss,
            net,
            x_p,
            x_q,
            max_steps=5,
            batch_size=8,
            lr=0.01,
            rng=0,
            progress=progress,
        )
        assert ("critic" in capsys.readouterr().err) is progress


def test_non_finite_loss_raises_and_keeps_the_best_state():
    _, x_p, x_q = shift_samples(50, 8)
    steps = []

    def exploding(module, a, b):
        loss = logistic_loss(module, a, b)
        if torch.is_grad_enabled():  # a training step (held-out checks run without grad)
            steps.append(1)
            if len(steps) == 3:
                return loss * math.nan
        return loss

    net = mlp_critic(1, (4,), rng=0)
    with pytest.raises(RuntimeError, match=r"non-finite loss \(nan\) at step 3"):
        train_critic(exploding, net, x_p, x_q, **SETTINGS, rng=0)
    # The same run stopped after 2 steps keeps the best of steps 0-2: the state kept above.
    rerun = mlp_critic(1, (4,), rng=0)
    train_critic(logistic_loss, rerun, x_p, x_q, **{**SETTINGS, "max_steps": 2}, rng=0)
    for a, b in zip(net.state_dict().values(), rerun.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_steps": -1}, ValueError, "`max_steps` must be an integer >= 0"),
        ({"max_steps": 2.5}, TypeError, "`max_steps` must be an integer"),
        ({"batch_size": 0}, ValueError, "`batch_size` must be an integer >= 1"),
        ({"lr": 0.0}, ValueError, "`lr` must be a positive real number"),
        ({"weight_decay": -1.0}, ValueError, r"`weight_decay` must be a real number >= 0"),
        ({"weight_decay": "0"}, TypeError, r"`weight_decay` must be a real number >= 0"),
        ({"validation_fraction": 1.0}, ValueError, r"`validation_fraction` must be .* \[0, 1\)"),
        ({"patience": 0}, ValueError, "`patience` must be an integer >= 1"),
    ],
)
def test_bad_settings_are_named(kwargs, error, match):
    _, x_p, x_q = shift_samples(20, 9)
    settings_ = {**SETTINGS, **kwargs}
    with pytest.raises(error, match=match):
        train_critic(logistic_loss, mlp_critic(1, (4,), rng=0), x_p, x_q, **settings_, rng=0)


def test_too_few_training_rows_are_named():
    x = torch.zeros(2, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="`x_p` must leave at least 2 training rows"):
        train_critic(
            logistic_loss, mlp_critic(1, (), rng=0), x, x, **SETTINGS, validation_fraction=0.5
        )


@pytest.mark.parametrize(
    ("hidden", "activation", "error", "match"),
    [
        (64, "elu", TypeError, "`hidden` must be a sequence of positive integers; got 64"),
        ("64", "elu", TypeError, "`hidden` must be a sequence"),
        ((64, 0), "elu", ValueError, "`hidden` must be an integer >= 1"),
        ((64,), "swish", ValueError, r"`activation` must be one of \['elu'"),
    ],
)
def test_bad_network_settings_are_named(hidden, activation, error, match):
    with pytest.raises(error, match=match):
        check_network(hidden, activation)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"d_in": 0}, "`d_in` must be an integer >= 1"),
        ({"hidden": (4, -1)}, "`hidden` must be an integer >= 1"),
        ({"activation": "swish"}, "`activation` must be one of"),
    ],
)
def test_bad_mlp_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mlp_critic(**{"d_in": 2, **kwargs})


# --------------------------------------------------------------------------- critic-only mode


def test_the_critic_only_history_is_a_train_history():
    _, x_p, x_q = shift_samples(100, 10)
    hist = train_critic(logistic_loss, mlp_critic(1, (4,), rng=0), x_p, x_q, **SETTINGS, rng=0)
    assert isinstance(hist, TrainHistory)
    n = len(hist)
    assert hist.step.tolist() == list(range(1, n + 1)) and np.isnan(hist.model_loss).all()
    assert np.isfinite(hist.critic_loss).all() and np.all(np.diff(hist.wall_time) >= 0)
    assert hist.val_step.dtype == np.int64 and hist.val_step.size == hist.val_loss.size


def test_the_minibatch_losses_are_the_losses_on_the_drawn_batches():
    # Independent truth: the loss recomputed on the rows the loop handed to loss_fn, at the
    # weights before each update (recorded by the loss itself).
    _, x_p, x_q = shift_samples(60, 11)
    seen = []

    def recording(module, a, b):
        loss = logistic_loss(module, a, b)
        if torch.is_grad_enabled():
            seen.append(float(loss.detach()))
        return loss

    net = mlp_critic(1, (4,), rng=0)
    hist = train_critic(recording, net, x_p, x_q, max_steps=5, batch_size=16, lr=0.01, rng=0)
    assert hist.critic_loss.tolist() == seen


def test_a_non_finite_gradient_raises_before_the_update_and_keeps_the_best_state():
    # A finite loss whose gradient is NaN at step 3: caught before the update by the package's
    # one optimiser step (it used to reach the weights).
    _, x_p, x_q = shift_samples(50, 8)
    steps = []

    def nan_gradient(module, a, b):
        loss = logistic_loss(module, a, b)
        if torch.is_grad_enabled():
            steps.append(1)
            if len(steps) == 3:
                w = module[0].weight.sum()
                return loss + 0.0 * torch.sqrt(w - w.detach())  # 0 * sqrt'(0) = 0 * inf = NaN
        return loss

    net = mlp_critic(1, (4,), rng=0)
    with pytest.raises(NonFiniteLossError, match="non-finite gradient at step 3") as err:
        train_critic(nan_gradient, net, x_p, x_q, **SETTINGS, rng=0)
    assert err.value.step == 3 and isinstance(err.value, RuntimeError)
    rerun = mlp_critic(1, (4,), rng=0)
    train_critic(logistic_loss, rerun, x_p, x_q, **{**SETTINGS, "max_steps": 2}, rng=0)
    for a, b in zip(net.state_dict().values(), rerun.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("replace", [True, False])
def test_minibatch_rows_with_or_without_replacement(replace):
    # 30 of 40 training rows per draw: with replacement, repeats are all but certain
    # (P(no repeat) = 40!/10!/40^30 < 1e-6); without, the rows are distinct.
    x_p = torch.arange(50, dtype=torch.float64)[:, None]
    x_q = x_p + 0.5
    repeats = []

    def counting(module, a, b):
        if torch.is_grad_enabled():
            repeats.append(a.shape[0] - torch.unique(a).shape[0])
        return logistic_loss(module, a, b)

    net = mlp_critic(1, (), rng=0)
    train_critic(counting, net, x_p, x_q, max_steps=3, batch_size=30, lr=0.01,
                 replace=replace, rng=0)  # fmt: skip
    assert len(repeats) == 3 and all((r > 0) is replace for r in repeats)
    with pytest.raises(TypeError, match="`replace` must be True or False; got 1."):
        train_critic(counting, net, x_p, x_q, **SETTINGS, replace=1, rng=0)


@pytest.mark.parametrize("cls", [Classifier, FDivergence, NeuralBregman])
def test_the_ratio_methods_record_train_histories_and_name_their_settings(cls):
    _, x_p, x_q = shift_samples(80, 12)
    method = cls(hidden=(4,), max_steps=20).fit_critic(x_p, x_q, rng=0)
    hist = method.history_[0] if cls is Classifier else method.history_
    assert isinstance(hist, TrainHistory) and 0 < len(hist) <= 20
    assert cls.training_settings == TRAINING_SETTINGS


def test_the_deep_kernel_trains_in_the_critic_only_mode():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 2, generator=g, dtype=torch.float64)
    y = torch.randn(60, 2, generator=g, dtype=torch.float64) * 2.0
    mmd = DeepKernelMMD(hidden=(8,), n_features=3, max_steps=20).fit_critic(x, y, rng=0)
    hist = mmd.history_
    assert isinstance(hist, TrainHistory) and len(hist) == 20 and hist.val_step.size == 0
    assert np.isnan(hist.model_loss).all()
    # The first loss is minus the power criterion of the initial kernel on all the rows (60 <
    # batch_size): the same kernel built by init_critic from the same rng, evaluated on the
    # rows in canonical order (the loop's order differs: equal up to rounding).
    ref = DeepKernelMMD(hidden=(8,), n_features=3)
    xs, ys = x[canonical_order(x)], y[canonical_order(y)]
    ref.init_critic(xs, ys, rng=np.random.default_rng(0))
    with torch.no_grad():
        criterion = float(ref._criterion(xs, ys))
    assert hist.critic_loss[0] == pytest.approx(-criterion, rel=1e-10)
    # Training raises the criterion (sd 1 against sd 2: the kernel can separate them).
    assert hist.critic_loss[-5:].mean() < hist.critic_loss[:5].mean()
    again = DeepKernelMMD(hidden=(8,), n_features=3, max_steps=20).fit_critic(x, y, rng=0)
    assert np.array_equal(again.history_.critic_loss, hist.critic_loss)
