"""Acceleration without other results: the fused PGD update equals the unfused code, the graphed step's
bookkeeping equals the eager loop, compiled updates stay within their stated tolerance, bf16 training
stays near fp32 while evaluation stays fp32, augmentation stays on its device, evaluation batching and
caching change no number, and every CUDA path falls back cleanly on a CPU."""

from __future__ import annotations

import dataclasses
import json
import logging
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from nrflab import training as T
from nrflab.attacks import PGD, fast, pgd_update, project
from nrflab.core import accel
from nrflab.core.errors import NrflabError
from nrflab.data import load_dataset
from nrflab.measure.ligs import ligs_noise, ligs_per_sample
from nrflab.measure.metrics import accuracy, robust_accuracy
from nrflab.training.augment import augment_batch, augment_batch_reference
from nrflab.training.evaluation import EvalSet, evaluate_epoch

from conftest import tiny_model

torch.set_num_threads(1)


def unfused_update(x_adv, grad, x, norm, step_size, eps):
    """The PGD step exactly as it was written before fusion: step, then the base class's projection."""
    if norm == "linf":
        step = grad.sign()
    else:
        n = grad.flatten(1).norm(p=2, dim=1).clamp_min(1e-12)
        step = grad / n.view(-1, *([1] * (grad.ndim - 1)))
    x_adv = x_adv + step_size * step
    if eps == math.inf:
        return x_adv.clamp(0.0, 1.0)
    delta = project(x_adv - x, norm, eps)
    return (x + delta).clamp(0.0, 1.0)


def eager_pgd(model, x, y, norm, eps, step, steps):
    """A plain PGD loop (no random start), the reference for every accelerated path."""
    x_adv = x.clone()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        for _ in range(steps):
            z = x_adv.detach().requires_grad_(True)
            with torch.enable_grad():
                loss = torch.nn.functional.cross_entropy(model(z), y, reduction="none").sum()
                (grad,) = torch.autograd.grad(loss, z)
            x_adv = unfused_update(x_adv, grad, x, norm, step, eps)
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    return unfused_update(x_adv, torch.zeros_like(x_adv), x, norm, 0.0, eps)


def batch(n=6, seed=0, channels=1, size=8):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, size, size, generator=g)
    x[:, :, 0] = 0.0
    x[:, :, -1] = 1.0
    return x, torch.randint(0, 10, (n,), generator=g)


# -- the fused update -------------------------------------------------------------------------------------


@given(
    norm=st.sampled_from(["linf", "l2"]),
    eps=st.sampled_from([0.0, 0.03, 0.5, 3.0, math.inf]),
    step=st.sampled_from([0.0, 0.01, 0.2, 2.0]),
    seed=st.integers(0, 10_000),
    zero_rows=st.booleans(),
)
def test_fused_update_equals_the_unfused_code_bit_for_bit(norm, eps, step, seed, zero_rows) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(5, 3, 4, 4, generator=g)
    x_adv = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    grad = torch.randn(x.shape, generator=g)
    if zero_rows:
        grad[1] = 0.0  # a vanished gradient: the 1e-12 floor of the L2 norm
    fused = pgd_update(x_adv, grad, x, norm=norm, step_size=step, eps=eps)
    assert torch.equal(fused, unfused_update(x_adv, grad, x, norm, step, eps))


@pytest.mark.parametrize("norm,eps,step", [("linf", 0.1, 0.03), ("l2", 0.5, 0.2), ("l2", math.inf, 0.2)])
def test_eager_pgd_equals_the_plain_loop_exactly(norm, eps, step) -> None:
    model = tiny_model("bn").eval()
    x, y = batch()
    got = PGD(model, norm=norm, eps=eps, step_size=step, steps=4, accelerate=False)(x, y)
    assert torch.equal(got, eager_pgd(model, x, y, norm, eps, step, 4))


# -- the graphed step's bookkeeping, with a stand-in for the capture on a CPU ------------------------------


class ReplayStep:
    """A CPU stand-in for accel.CapturedStep: runs the warm-up steps, then ``step()`` per replay."""

    captures = 0

    def __init__(self, step, device, *, warmup=2):
        for _ in range(warmup):
            step()
        self.step = step
        ReplayStep.captures += 1

    def replay(self):
        self.step()


@pytest.fixture()
def fake_graphs(monkeypatch):
    monkeypatch.setattr(accel, "CapturedStep", ReplayStep)
    monkeypatch.setattr(
        PGD, "_graphable", lambda self, x, y: bool(self.cuda_graphs) and self.steps >= 2 and torch.is_tensor(y)
    )
    ReplayStep.captures = 0
    return ReplayStep


@pytest.mark.parametrize(
    "norm,eps,step,random_start,restarts",
    [("linf", 0.1, 0.03, False, 1), ("l2", 0.5, 0.2, False, 1), ("l2", 0.5, 0.2, True, 2)],
)
def test_graphed_step_bookkeeping_equals_the_eager_loop(fake_graphs, norm, eps, step, random_start, restarts) -> None:
    model = tiny_model("bn").eval()
    x, y = batch()
    kwargs = dict(norm=norm, eps=eps, step_size=step, steps=3, random_start=random_start, restarts=restarts, seed=4)
    eager = PGD(model, accelerate=False, cuda_graphs=False, **kwargs)(x, y)
    graphed_attack = PGD(model, accelerate=False, cuda_graphs=True, **kwargs)
    first = graphed_attack(x, y)
    again = graphed_attack(x, y)  # replays the cached "graph": its warm-up left no trace in the buffers
    assert torch.equal(first, eager) and torch.equal(again, eager)
    assert fake_graphs.captures == 1


def test_graph_cache_follows_shapes_and_the_models_tensors(fake_graphs) -> None:
    model = tiny_model("none").eval()
    x, y = batch(6)
    atk = PGD(model, norm="l2", eps=0.5, steps=2, cuda_graphs=True)
    atk(x, y)
    atk(x[:4], y[:4])  # another shape: another graph
    assert fake_graphs.captures == 2
    atk(x, y)
    assert fake_graphs.captures == 2
    model.load_state_dict({k: v.clone() for k, v in model.state_dict().items()}, assign=True)  # tensors moved
    out = atk(x, y)
    assert fake_graphs.captures == 3
    assert torch.equal(out, PGD(model, norm="l2", eps=0.5, steps=2, accelerate=False)(x, y))


# -- CUDA paths on a CPU ----------------------------------------------------------------------------------


def test_cuda_paths_fall_back_cleanly_on_cpu() -> None:
    model = tiny_model("bn").eval()
    x, y = batch()
    atk = PGD(model, norm="l2", eps=0.5, steps=3, cuda_graphs=True)  # asked for, but the inputs are on a CPU
    assert atk.accelerate is None and not atk._accelerated(x) and not atk._graphable(x, y)
    assert torch.equal(atk(x, y), PGD(model, norm="l2", eps=0.5, steps=3)(x, y))
    assert not accel.default_accelerate("cpu") and accel.default_accelerate("cuda")
    with pytest.raises(NrflabError, match="CUDA graphs need a CUDA device"):
        accel.CapturedStep(lambda: None, "cpu")
    draws = [torch.arange(4), torch.ones(3, dtype=torch.bool)]
    assert all(a is b for a, b in zip(accel.to_device_async(draws, "cpu"), draws, strict=True))
    accel.synchronize("cpu")
    with pytest.raises(NrflabError, match="accelerate and cuda_graphs must be True, False or None"):
        PGD(model, eps=0.1, accelerate="yes")


def test_batch_sizes_given_auto_and_even() -> None:
    model = tiny_model("bn").eval()
    sample = torch.rand(1, 1, 8, 8)
    assert accel.resolve_batch_size(64, model=model, sample=sample, total=1000) == 64
    assert accel.resolve_batch_size("auto", model=model, sample=sample, total=1000) == 256  # CPU: the default
    assert accel.resolve_batch_size("auto", model=model, sample=sample, total=100) == 100
    with pytest.raises(NrflabError, match=r"batch size must be an integer >= 1 or 'auto', got 'big'"):
        accel.resolve_batch_size("big", model=model, sample=sample, total=10)
    with pytest.raises(NrflabError, match="batch size must be >= 1, got 0"):
        accel.resolve_batch_size(0, model=model, sample=sample, total=10)
    assert accel.even_batches(10_000, 4096) == 3334
    assert accel.even_batches(10_000, 20_000) == 10_000
    assert accel.even_batches(7, 3) == 3
    assert accel.MemoryProbe(fixed=1000.0, per_sample=100.0, free=100_000).largest_batch(0.5) == 490


def test_compile_modes_and_a_failing_compilation_falls_back(caplog) -> None:
    assert accel.resolve_compile_mode(None) is None and accel.resolve_compile_mode(False) is None
    assert accel.resolve_compile_mode("none") is None and accel.resolve_compile_mode(True) == "default"
    assert accel.resolve_compile_mode("reduce-overhead") == "reduce-overhead"
    with pytest.raises(NrflabError, match="unknown compile mode 'fast'; choose none, default, reduce-overhead"):
        accel.resolve_compile_mode("fast")
    model = tiny_model("bn")
    assert accel.training_model(model, None) is model

    def data_dependent(x):  # a host sync inside: cannot be compiled as one graph
        return x * 2 if float(x.sum()) > 0 else x

    fn = accel.CompiledFunction(data_dependent)
    with caplog.at_level(logging.WARNING, logger="nrflab.core.accel"):
        out = fn(torch.ones(3))
    assert torch.equal(out, torch.full((3,), 2.0)) and fn.failed
    assert "using the eager version" in caplog.text
    assert torch.equal(fn(-torch.ones(3)), -torch.ones(3))  # eager from now on


# -- augmentation stays on its device -----------------------------------------------------------------------


@pytest.mark.parametrize("flip", [True, False])
def test_augmentation_output_stays_on_the_input_device_without_host_copies(flip) -> None:
    """On the meta device any host copy of the images (.cpu(), .tolist(), .numpy()) would raise."""
    x = torch.empty(5, 3, 12, 10, device="meta")
    out = augment_batch(x, torch.Generator().manual_seed(0), pad=3, flip=flip)
    assert out.device.type == "meta" and out.shape == x.shape and out.dtype == x.dtype
    real = torch.rand(5, 3, 12, 10, generator=torch.Generator().manual_seed(1))
    a = augment_batch(real, torch.Generator().manual_seed(2), pad=3, flip=flip)
    b = augment_batch_reference(real, torch.Generator().manual_seed(2), pad=3, flip=flip)
    assert torch.equal(a, b)


# -- evaluation: batching, caching and layout change no number ------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_cached_evaluation_equals_the_metrics_functions(digits) -> None:
    cfg = T.make_config(
        dataset="digits",
        arch="smallcnn",
        width=0.25,
        eval_batch_size=7,
        eval_size=40,
        eval_attacks=["pgd-l2:eps=1.0,step=0.5,steps=2", "pgd-linf:eps=0.1,steps=2"],
        device="cpu",
    )
    model = tiny_model("bn", seed=3).eval()
    data = EvalSet.from_bundle(digits, cfg, torch.device("cpu"))
    first = evaluate_epoch(model, cfg, data, 10)
    second = evaluate_epoch(model, cfg, data, 10)  # attacks and noise from the cache
    assert first == second and data.cache.attacks is not None and len(data.cache.attacks[2]) == 2
    x, y = data.x, data.y
    assert first["clean_acc"] == accuracy(model, (x, y), 7)
    for spec in cfg.attack_specs():
        expected = robust_accuracy(model, (x, y), spec.build(model, seed=cfg.seed), 7)
        assert first[f"robust_acc[{spec.label}]"] == expected
    res = ligs_per_sample(model, x, y, sigma=cfg.ligs_sigma, seed=cfg.seed, batch_size=7)
    assert first["ligs"] == res.ligs and first["logit_sim"] == res.logit_sim


def test_precomputed_ligs_noise_gives_the_same_values(digits) -> None:
    model = tiny_model("bn", seed=1).eval()
    x, y = digits.test.tensors()
    x, y = x[:20], y[:20]
    plain = ligs_per_sample(model, x, y, sigma=0.05, seed=2, batch_size=6)
    cached = ligs_per_sample(model, x, y, sigma=0.05, seed=2, batch_size=6, noise=ligs_noise(x, 2))
    assert torch.equal(plain.gradient_similarity, cached.gradient_similarity)
    assert torch.equal(plain.logit_similarity, cached.logit_similarity)
    with pytest.raises(NrflabError, match=r"LIGS noise of shape \(3, 1, 8, 8\) for images of shape \(20, 1, 8, 8\)"):
        ligs_per_sample(model, x, y, noise=ligs_noise(x[:3]))


def test_channels_last_evaluation_set_and_bad_images_checked_once(digits) -> None:
    cfg = T.make_config(
        dataset="digits",
        arch="smallcnn",
        width=0.25,
        eval_size=16,
        channels_last=True,
        eval_attacks=["pgd-l2:eps=1.0,steps=2"],
        ligs=False,
        device="cpu",
    )
    data = EvalSet.from_bundle(digits, cfg, torch.device("cpu"))
    assert data.x.is_contiguous(memory_format=torch.channels_last)
    model = tiny_model("bn").to(memory_format=torch.channels_last).eval()
    row = evaluate_epoch(model, cfg, data, 10)
    plain = EvalSet.from_bundle(digits, cfg.model_copy(update={"channels_last": False}), torch.device("cpu"))
    assert row == evaluate_epoch(model, cfg, plain, 10)
    bad = EvalSet(data.x * 2, data.y)
    with pytest.raises(NrflabError, match=r"inputs must lie in \[0,1\] \(got \[0, 2\]\)"):
        evaluate_epoch(model, cfg, bad, 10)


# -- training -----------------------------------------------------------------------------------------------


def short_run(tmp_path, bundle, name, **fields):
    base = dict(
        dataset="digits",
        arch="smallcnn",
        width=0.5,
        epochs=2,
        batch_size=64,
        lr=0.05,
        schedule="constant",
        eval_attacks=["pgd-l2:eps=0.5,step=0.25,steps=2"],
        eval_size=120,
        device="cpu",
        seed=0,
    )
    cfg = T.make_config(**{**base, **fields})
    return T.train(cfg, tmp_path / name, bundle=bundle, progress=False)


def test_bf16_training_stays_near_fp32_and_evaluation_stays_fp32(digits, tmp_path) -> None:
    fp32 = short_run(tmp_path, digits, "fp32")
    bf16 = short_run(tmp_path, digits, "bf16", amp="bf16")
    for res in (fp32, bf16):
        assert all(math.isfinite(r["train_loss"]) for r in res.history[1:])
    a, b = fp32.history[-1], bf16.history[-1]
    assert a["clean_acc"] > 0.5  # it learned, so the comparison means something
    assert abs(a["clean_acc"] - b["clean_acc"]) <= 0.05
    assert abs(a["train_loss"] - b["train_loss"]) <= 0.1
    recorded = json.loads((bf16.run_dir / "config.json").read_text())["resolved"]
    assert recorded["numerics"] == {"training": "bfloat16 autocast", "evaluation": "float32"}
    assert recorded["acceleration"] == {"channels_last": False, "compile": "none"}
    # Evaluation ran in fp32: the model's weights stay fp32 and evaluating afterwards gives the recorded row.
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())
    cfg = bf16.config
    again = evaluate_epoch(bf16.model, cfg, EvalSet.from_bundle(digits, cfg, torch.device("cpu")), 10)
    assert again["clean_acc"] == b["clean_acc"] and again["ligs"] == pytest.approx(b["ligs"], abs=1e-6)


def test_channels_last_adversarial_training_runs_and_records_its_layout(digits, tmp_path) -> None:
    small = dataclasses.replace(digits, train=digits.train.subset(range(128)))
    res = short_run(tmp_path, small, "cl", epochs=1, channels_last=True, adv_train="targeted-l2", adv_steps=2)
    assert math.isfinite(res.history[-1]["train_loss"])
    recorded = json.loads((res.run_dir / "config.json").read_text())["resolved"]["acceleration"]
    assert recorded == {"channels_last": True, "compile": "none"}


def test_adversarial_training_checks_float_images_once_before_claiming_the_run(digits, tmp_path) -> None:
    x, y = digits.train.tensors()
    from nrflab.data import ImageTensorDataset

    bad = dataclasses.replace(digits, train=ImageTensorDataset(x[:64] * 3, y[:64]))
    with pytest.raises(NrflabError, match=r"inputs must lie in \[0,1\]"):
        short_run(tmp_path, bad, "bad", epochs=1, adv_train="targeted-l2", adv_steps=1)
    assert not (tmp_path / "bad" / "config.json").exists()


# -- compiled paths (torch.compile on a CPU takes tens of seconds) ------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_one_compiled_update_is_within_one_rounding_of_the_eager_one(norm) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 8, 8, generator=g)
    x_adv = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    grad = torch.randn(x.shape, generator=g)
    kw = dict(norm=norm, step_size=0.2, eps=0.5 if norm == "l2" else 0.1)
    got = fast.compiled_pgd_update(x_adv, grad, x, **kw)
    expected = pgd_update(x_adv, grad, x, **kw)
    if norm == "linf":
        assert torch.equal(got, expected)
    else:
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("norm,eps,step", [("linf", 0.1, 0.03), ("l2", 0.5, 0.2)])
def test_compiled_update_matches_eager(norm, eps, step) -> None:
    """Linf is element-wise with an exact step: bit-exact. L2 sums squares in another order; the last-bit
    difference feeds back through the gradients: within 1e-6 per pixel after 5 steps of a tiny CNN."""
    model = tiny_model("bn").eval()
    x, y = batch(16)
    eager = PGD(model, norm=norm, eps=eps, step_size=step, steps=5, accelerate=False)(x, y)
    compiled_attack = PGD(model, norm=norm, eps=eps, step_size=step, steps=5, accelerate=True)
    got = compiled_attack(x, y)
    assert not fast.compiled_pgd_update.failed
    if norm == "linf":
        assert torch.equal(got, eager)
    else:
        torch.testing.assert_close(got, eager, atol=1e-6, rtol=0)


@pytest.mark.slow
def test_compiled_training_model_trains_like_the_eager_one(digits, tmp_path, monkeypatch) -> None:
    from nrflab.training import trainer

    eager = short_run(tmp_path, digits, "eager", epochs=1, eval_attacks=[], ligs=False)
    monkeypatch.setattr(trainer, "compile_setting", lambda cfg: "default")
    compiled = short_run(tmp_path, digits, "compiled", epochs=1, eval_attacks=[], ligs=False)
    recorded = json.loads((compiled.run_dir / "config.json").read_text())["resolved"]["acceleration"]
    assert recorded["compile"] == "default"
    assert compiled.history[-1]["train_loss"] == pytest.approx(eager.history[-1]["train_loss"], abs=1e-3)
    assert abs(compiled.history[-1]["clean_acc"] - eager.history[-1]["clean_acc"]) <= 0.02
