"""The alternating training loop: every method trains, the loop is the textbook algorithm,
checkpoints resume bit for bit and refuse tampering, interrupts and NaNs are handled."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import signal
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import ratiokit as rk
from ratiokit._checkpoint import load_checkpoint, save_checkpoint, sidecar
from ratiokit._rng import check_rng, fork_torch_rng, torch_seed
from ratiokit._train_state import adam, finite_step, r1_penalty
from ratiokit.config import TrainConfig
from ratiokit.critics import make_critic
from ratiokit.exceptions import NonFiniteLossError
from ratiokit.methods import METHODS, Classifier, DeepKernelMMD, FDivergence, get_method
from ratiokit.players import BiGAN
from ratiokit.results import TrainHistory
from ratiokit.simulators import GaussianLocationScale
from ratiokit.training import RNG_STREAMS, TrainOutcome, train


def data_2d(n=200, shift=1.0, seed=0):
    return torch.tensor(np.random.default_rng(seed).normal(shift, 1.0, (n, 2)))


def location_scale(seed=0, dropout=0.0):
    """x = A z + b (float64), optionally through dropout (which draws from torch's RNG)."""
    with fork_torch_rng(seed):
        return nn.Sequential(nn.Linear(2, 2, dtype=torch.float64), nn.Dropout(dropout))


def sampler(model):
    return lambda n, g: model(torch.randn(n, 2, generator=g, dtype=torch.float64))


def quick(**kw):
    return TrainConfig(**{"max_steps": 4, "batch_size": 32, "progress": False, **kw})


def params(module):
    return [p.detach().clone() for p in module.parameters()]


def same(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def run(method="classifier", steps=4, rng=0, model_seed=0, dropout=0.0, **kw):
    model = location_scale(model_seed, dropout)
    out = train(model, sampler(model), data_2d(), get_method(method), quick(max_steps=steps),
                rng=rng, **kw)  # fmt: skip
    return model, out


# ---------------------------------------------------------------------------- every method


MMD_GAN = "mmd_deep"  # DeepKernelMMD: an MMD-GAN critic (learned kernel features)


@pytest.mark.parametrize("name", [*sorted(METHODS), MMD_GAN])
def test_every_method_trains_and_gradients_reach_the_model(name):
    method = DeepKernelMMD(hidden=(8,), n_features=4) if name == MMD_GAN else get_method(name)
    model = location_scale()
    before = params(model)
    out = train(model, sampler(model), data_2d(), method, quick(max_steps=3), rng=0)
    assert isinstance(out, TrainOutcome) and out.n_steps == 3 and not out.interrupted
    assert out.method is method and out.model is model
    # Adam moves a parameter only where its gradient is non-zero: every tensor moved.
    for old, new in zip(before, params(model), strict=True):
        assert torch.isfinite(new).all() and not torch.equal(old, new)
    hist = out.history
    assert isinstance(hist, TrainHistory) and len(hist) == 3
    assert hist.step.tolist() == [1, 2, 3] and np.isfinite(hist.model_loss).all()
    assert np.all(np.diff(hist.wall_time) >= 0)
    trains_critic = any(p.requires_grad for p in method.parameters())
    assert trains_critic == (name in ("bregman", "classifier", "fdiv", "wasserstein", MMD_GAN))
    assert (
        np.isfinite(hist.critic_loss).all() if trains_critic else np.isnan(hist.critic_loss).all()
    )


# ---------------------------------------------------------------------------- the algorithm


@pytest.mark.parametrize("loss", ["non-saturating", "minimax"])
def test_classifier_gan_equals_a_hand_written_loop(loss):
    # Reference: the GAN algorithm of Goodfellow et al. (2014) written out with plain
    # PyTorch on the loop's documented streams (RNG_STREAMS): k = 2 discriminator steps on the
    # balanced logistic loss, then one generator step on -E_q[log sigmoid T] (non-saturating)
    # or E_q[log sigmoid(-T)] / 2 (minimax), Adam for both.
    config = quick(max_steps=5, critic_steps=2, generator_loss=loss, lr=0.01, critic_lr=0.02)
    data, b = data_2d(), config.batch_size
    model = location_scale()
    ref_model = copy.deepcopy(model)
    out = train(model, sampler(model), data, Classifier(hidden=(8,)), config, rng=3)

    gen = check_rng(3)
    seeds = {name: torch_seed(gen) for name in RNG_STREAMS}
    data_gen = torch.Generator().manual_seed(seeds["data"])
    model_gen = torch.Generator().manual_seed(seeds["model"])
    sample = sampler(ref_model)

    def batch():
        return data[torch.randint(data.shape[0], (b,), generator=data_gen)]

    with torch.no_grad():
        probe = sample(b, model_gen)
    critic = make_critic(None, batch(), probe, hidden=(8,), activation="elu",
                         spectral_norm=False, rng=check_rng(seeds["init"]))  # fmt: skip
    # PyTorch's per-tensor Adam; the loop uses the fused kernel on the CPU: the same update
    # up to the order of floating-point operations.
    opt_d = torch.optim.Adam(critic.parameters(), lr=0.02, betas=(0.5, 0.999), foreach=False)
    opt_g = torch.optim.Adam(ref_model.parameters(), lr=0.01, betas=(0.5, 0.999), foreach=False)
    for _ in range(5):
        for _ in range(2):
            x_p = batch()
            with torch.no_grad():
                x_q = sample(b, model_gen)
            d_loss = -0.5 * (F.logsigmoid(critic(x_p)).mean() + F.logsigmoid(-critic(x_q)).mean())
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
        batch()  # the loop draws a data batch for the model step (unused by this loss)
        t_q = critic(sample(b, model_gen))
        g_loss = -F.logsigmoid(t_q).mean() if loss == "non-saturating" else (
            0.5 * F.logsigmoid(-t_q).mean())  # fmt: skip
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
    # Same operations up to the order of floating-point sums (the loop adds log 2 and the
    # constant E_p term to the losses; Adam's fused and per-tensor updates order theirs
    # differently): float64 rounding, ~1e-16 per step.
    for a, r in zip(params(model), params(ref_model), strict=True):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-12)
    for a, r in zip(params(out.method.critics_[0]), params(critic), strict=True):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-12)


def test_ema_follows_its_formula():
    # Reference: a_t = d_t a_{t-1} + (1 - d_t) w_t with d_t = min(ema, (1 + t) / (10 + t)),
    # t = 0, 1, ... counting updates, a_0 the initial weights, w_t the weights after step t.
    trace = []
    model = location_scale()
    start = params(model)
    out = train(model, sampler(model), data_2d(), "mmd", quick(max_steps=6, ema=0.8), rng=0,
                callback=lambda step, info: trace.append(params(model)))  # fmt: skip
    average = start
    for t, weights in enumerate(trace):
        d = min(0.8, (1 + t) / (10 + t))
        average = [d * a + (1 - d) * w for a, w in zip(average, weights, strict=True)]
    for got, want in zip(params(out.ema_model), average, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    assert not any(p.requires_grad for p in out.ema_model.parameters())


def test_r1_penalty_of_a_linear_critic_is_its_squared_weight_norm():
    # T(x) = w . x + b has gradient w everywhere: E_p |grad T|^2 = |w|^2 exactly.
    x = data_2d(50)
    method = FDivergence("js", critic=nn.Linear(2, 1, dtype=torch.float64))
    method.init_critic(x, x + 1.0, rng=0)
    w = method.critic_.weight.detach()
    penalty = float(r1_penalty(method, x).detach())
    assert penalty == pytest.approx(float(w.square().sum()), rel=1e-12)


def test_gradient_penalty_and_spectral_norm_train_the_critic():
    model = location_scale()
    config = quick(max_steps=30, gradient_penalty=10.0, spectral_norm=True)
    out = train(model, sampler(model), data_2d(), Classifier(hidden=(16, 16)), config, rng=0)
    linears = [m for m in out.method.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 3
    for layer in linears:
        assert nn.utils.parametrize.is_parametrized(layer, "weight")
        # One power iteration per forward pass tracks the top singular pair; after 30 steps
        # of slowly moving weights the normalised weight's norm is 1 to within a few percent.
        assert float(torch.linalg.matrix_norm(layer.weight.detach(), ord=2)) < 1.05
    assert np.isfinite(out.history.critic_loss).all()


def test_same_seed_same_run_and_no_global_rng_touched():
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    m1, _ = run(rng=7, dropout=0.2)
    m2, _ = run(rng=7, dropout=0.2)
    m3, _ = run(rng=8, dropout=0.2)
    assert same(params(m1), params(m2)) and not same(params(m1), params(m3))
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), np_state, strict=True))


def test_progress_bar(capsys):
    model = location_scale()
    train(model, sampler(model), data_2d(), "moments", quick(max_steps=2, progress=True), rng=0)
    assert "train (moments)" in capsys.readouterr().err
    # progress=None: a bar only once a run has lasted 1 s; these two steps take milliseconds.
    train(model, sampler(model), data_2d(), "moments", quick(max_steps=2, progress=None), rng=0)
    assert "train (moments)" not in capsys.readouterr().err


# ---------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("method", ["classifier", "ulsif", "mmd"])
def test_resume_is_bit_identical(method, tmp_path):
    # Dropout (torch's global RNG), EMA, spectral norm (power-iteration buffers) and, for
    # ulsif, the per-batch refit's NumPy stream all have state a resume must restore.
    extra = {"ema": 0.9}
    if method == "classifier":
        extra.update(spectral_norm=True, gradient_penalty=1.0, critic_steps=2)
    path = tmp_path / "run.pt"

    def go(steps, **kw):
        model = location_scale(dropout=0.3)
        config = quick(max_steps=steps, checkpoint_every=2, **extra)
        out = train(model, sampler(model), data_2d(), get_method(method), config, rng=1, **kw)
        return model, out

    straight_model, straight = go(6)
    go(3, checkpoint=path)
    assert load_checkpoint(path)[0]["step"] == 3  # written at the end, between steps
    model, out = go(6, checkpoint=path, resume=True)
    assert same(params(model), params(straight_model))
    assert same(params(out.ema_model), params(straight.ema_model))
    assert same(params(out.method), params(straight.method))
    np.testing.assert_array_equal(out.history.model_loss, straight.history.model_loss)
    assert out.n_steps == 6 and out.history.step.tolist() == list(range(1, 7))


def test_resume_needs_the_same_settings_and_starts_fresh_without_a_checkpoint(tmp_path):
    path = tmp_path / "run.pt"
    fresh_model, _ = run(checkpoint=path, resume=True)  # no files yet: a fresh run
    plain_model, _ = run()
    assert same(params(fresh_model), params(plain_model))
    model = location_scale()
    with pytest.raises(ValueError, match=r"`config` must match .* lr=0\.5 where it has 0\.001"):
        train(model, sampler(model), data_2d(), "classifier", quick(lr=0.5), rng=0,
              checkpoint=path, resume=True)  # fmt: skip
    other = tmp_path / "mmd.pt"
    run("mmd", checkpoint=other)
    with pytest.raises(ValueError, match="must come from a run of method 'classifier'; got 'mmd'"):
        run("classifier", checkpoint=other, resume=True)


def test_the_checkpoint_records_the_data_and_a_resume_refuses_other_data(tmp_path):
    path = tmp_path / "run.pt"
    run(checkpoint=path)
    data = data_2d()  # float64, the model's dtype: the bytes hashed are these
    assert load_checkpoint(path)[0]["data"] == {
        "sha256": hashlib.sha256(data.numpy().tobytes()).hexdigest(),
        "shape": [200, 2],
        "dtype": "float64",
    }
    for other, shown in ((data + 5, "shape \\[200, 2\\]"), (data[:150], "shape \\[150, 2\\]")):
        model = location_scale()
        with pytest.raises(ValueError, match=rf"`data` must be the data of checkpoint .*{shown}"):
            train(model, sampler(model), other, "classifier", quick(), rng=0, checkpoint=path,
                  resume=True)  # fmt: skip
    _, out = run(steps=6, checkpoint=path, resume=True)  # the same data: accepted
    assert out.n_steps == 6


def test_a_fresh_run_writes_only_over_its_own_checkpoint(tmp_path):
    def go(path, method="classifier", data=None, rng=0, steps=4, overwrite=False, **config):
        model = location_scale()
        data = data_2d() if data is None else data
        train(model, sampler(model), data, method, quick(max_steps=steps, **config), rng=rng,
              checkpoint=path, overwrite=overwrite)  # fmt: skip
        return model

    def refused(path, why, **kw):
        before = {p: p.read_bytes() for p in (path, sidecar(path)) if p.exists()}
        with pytest.raises(ValueError, match=rf"`checkpoint` must be a new path .*{why}.*"
                           r"Pass `overwrite=True`"):  # fmt: skip
            go(path, **kw)
        after = {p: p.read_bytes() for p in (path, sidecar(path)) if p.exists()}
        assert after == before  # nothing written, nothing created

    table = tmp_path / "results.csv"  # a user's file where the checkpoint would go
    table.write_text("a,b\n1,2\n")
    refused(table, "is another file")
    notes = tmp_path / "notes"  # ... or where its sidecar would go
    sidecar(notes).write_text('{"mine": 1}')
    refused(notes, "is another file")

    path = tmp_path / "run.pt"
    go(path)
    refused(
        path, r"another run \(data: SHA-256 [0-9a-f]{12}, shape \[200, 2\]", data=data_2d() + 5
    )
    refused(path, r"another run \(settings: critic_steps=2 where it has 1\)", critic_steps=2)
    refused(path, r"another run \(method: 'mmd' where it has 'classifier'\)", method="mmd")
    good = sidecar(path).read_bytes()
    sidecar(path).write_text(json.dumps({**json.loads(good), "step": 9}))
    refused(path, "is a damaged ratiokit checkpoint")
    sidecar(path).write_bytes(good)
    # The same run again (another rng, more steps: not part of what identifies a run)
    # replaces its own checkpoint.
    model = go(path, rng=3, steps=5)
    assert load_checkpoint(path)[0]["step"] == 5
    assert same(params(model), params(go(None, rng=3, steps=5)))
    # overwrite=True replaces anything.
    go(table, overwrite=True)
    assert load_checkpoint(table)[0]["step"] == 4


def test_a_fit_keeps_theta_s_iterates_in_its_checkpoint_and_refuses_other_data(tmp_path):
    sim = GaussianLocationScale(theta_true=(1.0, 2.0))
    data = sim.sample(100, rng=0)
    kw = {"method": "mmd", "theta0": [0.0, 1.0], "rng": 0}

    def fit(steps, x=data, **extra):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # a few steps need not converge
            config = TrainConfig(max_steps=steps, lr=0.05, batch_size=32, progress=False)
            return rk.fit(sim, x, config=config, **kw, **extra)

    path = tmp_path / "fit.ckpt"
    straight = fit(8)
    fit(4, checkpoint=path)
    # A trajectory file beside the checkpoint (where theta's iterates used to be kept, out of
    # reach of its hashes) has no say: an edit of it moved theta by +50.
    np.save(f"{path}.theta.npy", np.full((4, 2), 50.0))
    resumed = fit(8, checkpoint=path, resume=True)
    np.testing.assert_array_equal(resumed.history["theta"], straight.history["theta"])
    np.testing.assert_array_equal(resumed.theta, straight.theta)
    with pytest.raises(ValueError, match="`data` must be the data of checkpoint"):
        fit(12, x=data + 5, checkpoint=path, resume=True)
    tensors = torch.load(path, weights_only=True)
    tensors["extra"]["theta"] += 50.0  # the iterates, edited inside the checkpoint
    torch.save(tensors, path)
    with pytest.raises(ValueError, match="does not match the SHA-256"):
        fit(12, checkpoint=path, resume=True)

    table = tmp_path / "table.csv"
    table.write_text("a,b\n")
    with pytest.raises(ValueError, match="`checkpoint` must be a new path .* is another file"):
        fit(2, checkpoint=table)
    assert table.read_text() == "a,b\n"
    assert fit(2, checkpoint=table, overwrite=True).n_steps == 2
    with pytest.raises(ValueError, match="`overwrite` must be False without a `checkpoint`"):
        fit(2, overwrite=True)


def test_truncated_or_modified_checkpoints_are_refused(tmp_path):
    path = tmp_path / "run.pt"
    run(checkpoint=path)
    good, meta = path.read_bytes(), sidecar(path).read_bytes()

    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match=rf"{path.name}.*SHA-256.*truncated"):
        run(checkpoint=path, resume=True)

    path.write_bytes(good)
    record = json.loads(meta)
    record["step"] = 1  # a consistent-looking edit of the sidecar
    sidecar(path).write_text(json.dumps(record))
    with pytest.raises(ValueError, match="does not match its tensor file"):
        run(checkpoint=path, resume=True)

    sidecar(path).write_text(json.dumps({**json.loads(meta), "version": 1}))  # an older format
    with pytest.raises(ValueError, match=r"version 2 record; got version 1, .*`overwrite=True`"):
        run(checkpoint=path, resume=True)

    sidecar(path).write_bytes(meta[:20])
    with pytest.raises(ValueError, match="not valid JSON"):
        run(checkpoint=path, resume=True)

    sidecar(path).unlink()
    with pytest.raises(ValueError, match="incomplete"):
        run(checkpoint=path, resume=True)


@settings(deadline=None, max_examples=25)
@given(
    step=st.integers(0, 10**6),
    values=st.lists(st.floats(allow_nan=False, width=64), min_size=1, max_size=20),
    flip=st.integers(0, 10**9),
)
def test_checkpoint_round_trip_and_any_flipped_byte_is_refused(
    step, values, flip, tmp_path_factory
):
    path = tmp_path_factory.mktemp("ckpt") / "state.pt"
    tensors = {"x": torch.tensor(values, dtype=torch.float64), "nested": {"k": torch.arange(3)}}
    save_checkpoint(path, tensors, {"step": step, "note": "ok"})
    meta, loaded = load_checkpoint(path)
    assert meta["step"] == step and meta["note"] == "ok"
    assert torch.equal(loaded["x"], tensors["x"]) and torch.equal(
        loaded["nested"]["k"], tensors["nested"]["k"]
    )
    data = bytearray(path.read_bytes())
    data[flip % len(data)] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256"):
        load_checkpoint(path)


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: it creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_malicious_pickle_in_a_checkpoint_is_never_executed(tmp_path):
    path, marker = tmp_path / "run.pt", tmp_path / "pwned"
    run(checkpoint=path)
    tensors = torch.load(path, weights_only=True)
    tensors["model"] = _Payload(marker)
    torch.save(tensors, path)
    # The attacker rewrites the sidecar's hash too, so only weights_only stands in the way.
    record = json.loads(sidecar(path).read_bytes())
    record["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    sidecar(path).write_text(json.dumps(record))
    with pytest.raises(ValueError, match="weights_only=True refused it") as caught:
        run(checkpoint=path, resume=True)
    assert not marker.exists()
    # One clear error naming what was refused, without torch's advice to load it unsafely.
    assert "GLOBAL io.open" in str(caught.value) and "weights_only=False" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    # The payload is live: an unsafe load would have run it (in a separate directory).
    live = tmp_path / "live"
    live.mkdir()
    torch.save(_Payload(live / "ran"), live / "evil.pt")
    torch.load(live / "evil.pt", weights_only=False)  # the unsafe load the loop never does
    assert (live / "ran").exists()


# ---------------------------------------------------------------------------- interrupts, NaN


def test_interrupt_returns_the_partial_run_and_resumes_identically(tmp_path):
    path = tmp_path / "run.pt"

    def stop_at_3(step, info):
        if step == 3:
            raise KeyboardInterrupt

    model, out = run(steps=6, callback=stop_at_3, checkpoint=path)
    assert out.interrupted and out.n_steps == 3 and len(out.history) == 3
    assert load_checkpoint(path)[0]["step"] == 3
    resumed, _ = run(steps=6, checkpoint=path, resume=True)
    straight, _ = run(steps=6)
    assert same(params(resumed), params(straight))


def interrupting(model, at, signals=1, raises=False):
    """A sampler of ``model`` that, at its call number ``at``, sends Ctrl-C (SIGINT) to this
    process ``signals`` times, or raises KeyboardInterrupt itself. The probe is call 1 and
    each step of the classifier makes two (its critic's batch, then the model's), so call 7
    is the model's batch of step 3, after that step's critic update."""
    calls = 0

    def sample(n, g):
        nonlocal calls
        calls += 1
        if calls == at:
            if raises:
                raise KeyboardInterrupt
            for _ in range(signals):
                signal.raise_signal(signal.SIGINT)
        return model(torch.randn(n, 2, generator=g, dtype=torch.float64))

    return sample


def test_ctrl_c_mid_step_finishes_the_step_saves_it_and_resumes_identically(tmp_path):
    # Default settings: no periodic checkpoint (checkpoint_every=None).
    path = tmp_path / "run.pt"
    model = location_scale()
    out = train(model, interrupting(model, at=7), data_2d(), "classifier", quick(max_steps=6),
                rng=0, checkpoint=path)  # fmt: skip
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    assert out.interrupted and out.n_steps == 3 and out.history.step.tolist() == [1, 2, 3]
    assert load_checkpoint(path)[0]["step"] == 3
    three, _ = run(steps=3)  # step 3 was completed, not cut short
    assert same(params(model), params(three))
    resumed, again = run(steps=6, checkpoint=path, resume=True)
    straight, whole = run(steps=6)
    assert same(params(resumed), params(straight))
    np.testing.assert_array_equal(again.history.model_loss, whole.history.model_loss)
    np.testing.assert_array_equal(again.history.critic_loss, whole.history.critic_loss)


def test_a_second_ctrl_c_or_an_interrupt_raised_mid_step_stops_at_once(tmp_path):
    # The model then holds part of step 3: no result is returned and nothing is saved over
    # the last checkpoint (step 2).
    for kw in ({"signals": 2}, {"raises": True}):
        path = tmp_path / f"{sorted(kw)[0]}.pt"
        model = location_scale()
        with pytest.raises(KeyboardInterrupt):
            train(model, interrupting(model, at=7, **kw), data_2d(), "classifier",
                  quick(max_steps=6, checkpoint_every=2), rng=0, checkpoint=path)  # fmt: skip
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert load_checkpoint(path)[0]["step"] == 2


@pytest.mark.parametrize("method", ["classifier", "mmd"])
def test_a_nan_loss_stops_with_the_last_good_state(method, tmp_path):
    path, poisoned, good = tmp_path / "run.pt", {"on": False}, {}
    model = location_scale()

    def sample(n, g):
        x = model(torch.randn(n, 2, generator=g, dtype=torch.float64))
        return x * math.nan if poisoned["on"] else x

    def poison_after_3(step, info):
        good[step] = params(model)
        poisoned["on"] = step == 3

    config = quick(max_steps=8, checkpoint_every=2)
    with pytest.raises(NonFiniteLossError, match="at step 4") as err:
        train(model, sample, data_2d(), get_method(method), config, rng=0, checkpoint=path,
              callback=poison_after_3)  # fmt: skip
    # The classifier's critic loss turns NaN; MMD's median bandwidth fails on NaN samples.
    what = "the critic loss became nan" if method == "classifier" else "samples became non-fin"
    assert what in str(err.value) and err.value.step == 4
    assert same(params(model), good[3])
    assert err.value.outcome.n_steps == 3 and len(err.value.outcome.history) == 3
    meta, tensors = load_checkpoint(path)
    assert meta["step"] == 2  # the last checkpoint written, untouched
    assert all(torch.isfinite(t).all() for t in tensors["model"].values())


@pytest.mark.gpu
def test_training_and_resume_on_a_gpu(tmp_path, device):
    if device.type != "cuda":
        device = torch.device("cuda")
    path = tmp_path / "run.pt"

    def go(steps, **kw):
        model = location_scale().to(device)
        data = data_2d().to(device)
        config = quick(max_steps=steps, device=str(device), ema=0.9, spectral_norm=True)
        sample = lambda n, g: model(torch.randn(n, 2, generator=g, device=device,  # noqa: E731
                                                dtype=torch.float64))  # fmt: skip
        out = train(model, sample, data, Classifier(hidden=(8,)), config, rng=0, **kw)
        return model, out

    straight, _ = go(4)
    go(2, checkpoint=path)
    resumed, out = go(4, checkpoint=path, resume=True)
    assert all(p.device.type == "cuda" for p in resumed.parameters())
    assert same(params(resumed), params(straight)) and out.n_steps == 4


class _SqrtShift(nn.Module):
    """x = z + sqrt(a) with a = 0: a finite output whose gradient in ``a`` is infinite."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, z):
        return z + torch.sqrt(self.a)


def test_a_non_finite_gradient_is_caught_before_the_update():
    model = _SqrtShift()
    with pytest.raises(NonFiniteLossError, match="the model gradient became non-finite at step 1"):
        train(model, sampler(model), data_2d(), "moments", quick(), rng=0)
    assert float(model.a.detach()) == 0.0  # never stepped with the infinite gradient


def _two_dtypes():
    w32 = nn.Parameter(torch.ones(3, dtype=torch.float32))
    w64 = nn.Parameter(torch.ones(2, dtype=torch.float64))
    return w32, w64, adam([w32, w64], lr=0.1, betas=(0.9, 0.999))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_finite_step_refuses_a_non_finite_gradient_among_mixed_dtypes(bad):
    w32, w64, opt = _two_dtypes()
    # A finite loss whose float32 gradient gets one non-finite entry (through a hook).
    w32.register_hook(lambda g: g * torch.tensor([1.0, 1.0, bad]))
    loss = w32.sum().double() + w64.sum()
    with pytest.raises(NonFiniteLossError, match="critic gradient became non-finite at step 7"):
        finite_step(opt, loss, [w32, w64], "critic", 7)
    assert torch.equal(w32.detach(), torch.ones(3))
    assert torch.equal(w64.detach(), torch.ones(2, dtype=torch.float64))


def test_finite_step_steps_with_the_gradients_unchanged():
    w32, w64, opt = _two_dtypes()
    loss = (2.0 * w32).sum().double() + (3.0 * w64).sum()
    assert finite_step(opt, loss, [w32, w64], "model", 1) == 12.0
    # The fused check multiplies by exactly 1: the gradients are backward's.
    assert torch.equal(w32.grad, torch.full((3,), 2.0))
    assert torch.equal(w64.grad, torch.full((2,), 3.0, dtype=torch.float64))
    # One Adam step of size lr against the gradient's sign.
    torch.testing.assert_close(w32.detach(), torch.full((3,), 0.9))
    torch.testing.assert_close(w64.detach(), torch.full((2,), 0.9, dtype=torch.float64))


# ---------------------------------------------------------------------------- bad input


def test_bad_arguments():
    model, data = location_scale(), data_2d()
    ok = {"sample": sampler(model), "data": data, "method": "mmd", "config": quick()}
    cases = [
        ({"model": "G"}, TypeError, "`model` must be a torch.nn.Module; got str"),
        ({"sample": 3}, TypeError, "`sample` must be callable"),
        ({"config": {"max_steps": 3}}, TypeError, "`config` must be a TrainConfig; got dict"),
        ({"method": "mdm"}, ValueError, r"`method` must be one of \['bregman'"),
        ({"method": 3}, TypeError, "`method` must be a method name or a Discrepancy; got int"),
        ({"data": np.zeros((5, 2, 2))}, ValueError, "`data` must be a 2-D array"),
        ({"resume": True}, ValueError, "`checkpoint` must be a path when `resume` is True"),
        ({"checkpoint": 3}, TypeError, "`checkpoint` must be None or a path; got int"),
        ({"overwrite": 1}, TypeError, "`overwrite` must be True or False; got 1"),
        ({"overwrite": True}, ValueError, "`overwrite` must be False without a `checkpoint`"),
        ({"overwrite": True, "checkpoint": "x.pt", "resume": True}, ValueError,
         r"`overwrite` must be False .* with `resume`=True"),
        ({"sample": lambda n, g: torch.zeros(n, 3)}, ValueError,
         r"`sample` must return a tensor of shape \(n, n_features\) = \(32, 2\)"),
        ({"sample": lambda n, g: torch.zeros(n, 2)}, ValueError, "differentiable in the model"),
        ({"config": quick(gradient_penalty=1.0)}, ValueError,
         "`gradient_penalty` must be 0 and `spectral_norm` False for method 'mmd'"),
    ]  # fmt: skip
    for change, error, message in cases:
        kwargs = {"model": model, **ok, **change}
        extra = {k: kwargs.pop(k) for k in ("resume", "checkpoint", "overwrite") if k in kwargs}
        with pytest.raises(error, match=message):
            train(kwargs.pop("model"), **kwargs, rng=0, **extra)
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="`model` must have trainable parameters"):
        train(frozen, sampler(frozen), data, "mmd", quick())
    with pytest.raises(TypeError, match="scikit-learn classifier"):
        from sklearn.linear_model import LogisticRegression

        train(model, sampler(model), data, Classifier(LogisticRegression()), quick())


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"max_steps": -1}, ValueError, "`max_steps` must be an integer >= 0; got -1."),
        ({"max_steps": 2.5}, TypeError, "`max_steps` must be an integer; got 2.5."),
        ({"critic_steps": 0}, ValueError, "`critic_steps` must be an integer >= 1; got 0."),
        ({"batch_size": 1}, ValueError, "`batch_size` must be an integer >= 2; got 1."),
        ({"lr": 0.0}, ValueError, "`lr` must be a positive real number; got 0.0."),
        ({"critic_lr": "1e-3"}, TypeError, "`critic_lr` must be a positive real number"),
        ({"betas": (0.5,)}, ValueError, r"`betas` must be a pair of real numbers in \[0, 1\)"),
        ({"betas": (0.5, 1.0)}, ValueError, r"`betas` must be .*; got 1.0."),
        ({"betas": 0.5}, TypeError, "`betas` must be a pair"),
        ({"generator_loss": "wgan"}, ValueError, "`generator_loss` must be one of"),
        ({"gradient_penalty": -1.0}, ValueError, "`gradient_penalty` must be a real number >= 0"),
        ({"spectral_norm": 1}, TypeError, "`spectral_norm` must be True or False; got 1."),
        ({"ema": 1.0}, ValueError, r"`ema` must be a real number in \(0, 1\); got 1.0."),
        ({"device": "gpu0"}, ValueError, "`device` must be None or a device such as 'cpu'"),
        ({"device": 0}, TypeError, "`device` must be None or a device string; got 0."),
        ({"checkpoint_every": 0}, ValueError, "`checkpoint_every` must be an integer >= 1"),
        ({"progress": "yes"}, TypeError, "`progress` must be None, True or False"),
    ],
)
def test_config_validation(kwargs, error, message):
    with pytest.raises(error, match=message):
        TrainConfig(**kwargs)


def test_config_canonical_and_round_trip():
    config = TrainConfig(lr=1, betas=[0.0, 0.9], ema=np.float64(0.5), device=torch.device("cpu"))
    assert config.lr == 1.0 and isinstance(config.lr, float) and config.betas == (0.0, 0.9)
    assert config.device == "cpu" and type(config.ema) is float
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match=r"unknown \['lr_g'\]"):
        TrainConfig.from_dict({"lr_g": 1.0})


def test_history_repr_is_compact():
    _, out = run(steps=3)
    text = repr(out.history)
    assert text.startswith("TrainHistory(step=array(shape=(3,))") and "\n" not in text


# ---------------------------------------------------------------------------- one public loop


def test_the_loop_and_its_types_are_public():
    assert rk.train is train and rk.TrainOutcome is TrainOutcome
    assert rk.TrainConfig is TrainConfig and rk.TrainHistory is TrainHistory
    assert rk.NonFiniteLossError is NonFiniteLossError
    assert issubclass(NonFiniteLossError, RuntimeError)


@pytest.mark.parametrize(
    ("method", "setting", "instead"),
    [
        (Classifier(lr=0.01), "lr", r"TrainConfig\(critic_lr=...\)"),
        (
            FDivergence("js", max_steps=10),
            "max_steps",
            r"TrainConfig\(max_steps=..., critic_steps",
        ),
        (rk.NeuralBregman(batch_size=64), "batch_size", r"TrainConfig\(batch_size=...\)"),
        (Classifier(patience=5), "patience", "no validation split or early stopping"),
        (FDivergence(weight_decay=0.1), "weight_decay", "no weight decay"),
        (rk.NeuralBregman(validation_fraction=0.0), "validation_fraction", "no validation"),
        (DeepKernelMMD(hidden=(8,), lr=0.01), "lr", r"TrainConfig\(critic_lr=...\)"),
    ],
)
def test_a_critic_setting_the_loop_would_ignore_is_an_error(method, setting, instead):
    # Each of these used to be trained by TrainConfig's values, silently.
    model = location_scale()
    message = rf"`{setting}` of {type(method).__name__} must keep its default .*{instead}"
    with pytest.raises(ValueError, match=message):
        train(model, sampler(model), data_2d(), method, quick(), rng=0)
    before = params(model)
    with pytest.raises(ValueError, match=message):  # and through rk.fit's gradient path
        rk.fit(model, data_2d().numpy(), method=method, config=quick(), rng=0)
    assert same(before, params(model))


def test_spectral_norm_on_the_method_and_in_the_config_is_an_error():
    model = location_scale()
    method = Classifier(hidden=(8,), spectral_norm=True)
    with pytest.raises(ValueError, match="`spectral_norm` must be set in one place"):
        train(model, sampler(model), data_2d(), method, quick(spectral_norm=True), rng=0)
    # Either place alone trains.
    out = train(model, sampler(model), data_2d(), method, quick(), rng=0)
    assert out.n_steps == 4


def test_the_alternating_history_has_no_held_out_checks():
    _, out = run(steps=3)
    hist = out.history
    assert hist.val_step.size == 0 and hist.val_loss.size == 0
    assert hist.best_step == 3 and not hist.stopped_early


# ---------------------------------------------------------------------------- hooks: players


def bigan_players(seed=0):
    """A BiGAN of linear maps on float64: G(z) = A z + a, E(x) = B x + b, z in R^2."""
    with fork_torch_rng(seed):
        generator, encoder = (nn.Linear(2, 2, dtype=torch.float64) for _ in range(2))
    return BiGAN(generator, encoder, latent_dim=2)


def cycle_loss(bigan):
    """An extra loss: 0.1 E|E(G(z)) - z|^2 on a batch of z the loop's model stream draws."""

    def loss(n, g):
        z = torch.randn(n, 2, generator=g, dtype=torch.float64)
        return 0.1 * (bigan.encoder(bigan.generator(z)) - z).square().sum(dim=1).mean()

    return loss


@pytest.mark.parametrize("loss", ["non-saturating", "minimax"])
def test_a_bigan_with_an_extra_loss_equals_a_hand_written_loop(loss):
    # Reference: BiGAN (Donahue et al. 2017) written out with plain PyTorch on the loop's
    # documented streams: k = 2 discriminator steps on the balanced logistic loss between
    # rows [x, E(x)] (data) and [G(z), z] (model); then one step of generator and encoder
    # together on the flipped-label loss -(E_p log sigmoid(-T) + E_q log sigmoid T) / 2
    # (non-saturating) or the minimax (E_p log sigmoid T + E_q log sigmoid(-T)) / 2, plus
    # the extra loss on a batch drawn after the model's samples.
    config = quick(max_steps=5, critic_steps=2, generator_loss=loss, lr=0.01, critic_lr=0.02)
    data, b = data_2d(), config.batch_size
    bigan = bigan_players()
    ref = copy.deepcopy(bigan)
    out = train(bigan, bigan.sampler(), data, Classifier(hidden=(8,)), config, rng=3,
                data_map=bigan.data_map, extra_loss=cycle_loss(bigan))  # fmt: skip

    gen = check_rng(3)
    seeds = {name: torch_seed(gen) for name in RNG_STREAMS}
    data_gen = torch.Generator().manual_seed(seeds["data"])
    model_gen = torch.Generator().manual_seed(seeds["model"])
    sample, extra = ref.sampler(), cycle_loss(ref)

    def batch():
        return data[torch.randint(data.shape[0], (b,), generator=data_gen)]

    with torch.no_grad():
        probe = sample(b, model_gen)
        first = ref.data_map(batch())
    critic = make_critic(None, first, probe, hidden=(8,), activation="elu",
                         spectral_norm=False, rng=check_rng(seeds["init"]))  # fmt: skip
    opt_d = torch.optim.Adam(critic.parameters(), lr=0.02, betas=(0.5, 0.999), foreach=False)
    opt_g = torch.optim.Adam(ref.parameters(), lr=0.01, betas=(0.5, 0.999), foreach=False)
    for _ in range(5):
        for _ in range(2):
            with torch.no_grad():
                x_p, x_q = ref.data_map(batch()), sample(b, model_gen)
            d_loss = -0.5 * (F.logsigmoid(critic(x_p)).mean() + F.logsigmoid(-critic(x_q)).mean())
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
        t_p, t_q = critic(ref.data_map(batch())), critic(sample(b, model_gen))
        sign = -1.0 if loss == "non-saturating" else 1.0
        g_loss = 0.5 * sign * (F.logsigmoid(sign * t_p).mean() + F.logsigmoid(-sign * t_q).mean())
        g_loss = g_loss + extra(b, model_gen)
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
    # float64 rounding only (the loop adds log 2 and orders Adam's sums differently).
    for a, r in zip(params(bigan), params(ref), strict=True):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-12)
    for a, r in zip(params(out.method.critics_[0]), params(critic), strict=True):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-12)
    # The encoder moved: the data side of the model step reaches its parameters.
    assert not same(params(bigan.encoder), params(bigan_players().encoder))


def test_a_hooked_run_resumes_bit_identically(tmp_path):
    path = tmp_path / "bigan.pt"

    def go(steps, **kw):
        bigan = bigan_players()
        config = quick(max_steps=steps, checkpoint_every=2, ema=0.9, critic_steps=2)
        out = train(bigan, bigan.sampler(), data_2d(), "wasserstein", config, rng=1,
                    data_map=bigan.data_map, extra_loss=cycle_loss(bigan), **kw)  # fmt: skip
        return bigan, out

    straight_model, straight = go(6)
    go(3, checkpoint=path)
    model, out = go(6, checkpoint=path, resume=True)
    assert same(params(model), params(straight_model))
    assert same(params(out.ema_model), params(straight.ema_model))
    assert same(params(out.method), params(straight.method))
    np.testing.assert_array_equal(out.history.model_loss, straight.history.model_loss)


def test_bad_hooks():
    bigan = bigan_players()
    ok = {"data_map": bigan.data_map, "extra_loss": cycle_loss(bigan)}
    cases = [
        ({"data_map": 3}, TypeError, "`data_map` must be None or callable as data_map"),
        ({"extra_loss": "ce"}, TypeError, "`extra_loss` must be None or callable"),
        ({"data_map": None}, ValueError,
         r"`sample` must return a tensor of shape \(n, n_features\) = \(32, 2\) for n = 32, "
         r"as the data; got \(32, 4\)"),
        ({"data_map": lambda x: torch.cat([x, x, x], dim=1)}, ValueError,
         r"= \(32, 6\) for n = 32, as `data_map`'s rows; got \(32, 4\)"),
        ({"data_map": lambda x: torch.cat([x, x], dim=1)}, ValueError,
         "`data_map` must return rows differentiable in the model's parameters"),
    ]  # fmt: skip
    for change, error, message in cases:
        with pytest.raises(error, match=message):
            train(bigan, bigan.sampler(), data_2d(), "classifier", quick(), rng=0,
                  **{**ok, **change})  # fmt: skip
