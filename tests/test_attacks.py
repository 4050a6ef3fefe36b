"""Tests for nrflab.attacks: invariants (property tests), restarts, loss hooks, train mode, bad input,
agreement with torchattacks, monotonicity in eps, and attack specs."""

from __future__ import annotations

import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

from nrflab.attacks import FGSM, PGD, AttackSpec, cross_entropy_loss, parse_attack, project
from nrflab.core.errors import NrflabError
from nrflab.measure.metrics import accuracy, robust_accuracy

from conftest import assert_same_state, state_snapshot, tiny_model

MODEL_KINDS = [("smallcnn", n) for n in ("bn", "none", "gn", "ln", "in", "bn-eval")] + [("resnet18", "fixup")]
EPS = {"linf": [0.0, 0.01, 0.1, 0.3, 1.0], "l2": [0.0, 0.1, 0.5, 2.0, 10.0]}


def images(n: int, seed: int, channels: int = 1, size: int = 8) -> torch.Tensor:
    """Random images in [0,1] with saturated rows (exactly 0 and 1) that exercise the [0,1] clamp."""
    x = torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))
    x[:, :, 0, :] = 0.0
    x[:, :, -1, :] = 1.0
    return x


def labels(n: int, seed: int, num_classes: int = 10) -> torch.Tensor:
    return torch.randint(0, num_classes, (n,), generator=torch.Generator().manual_seed(seed + 1))


def assert_in_ball(x: torch.Tensor, x_adv: torch.Tensor, norm: str, eps: float, tol: float = 1e-5) -> None:
    assert torch.isfinite(x_adv).all()
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert float(size.max()) <= eps + tol


@st.composite
def attack_cases(draw) -> dict:
    """An attack configuration of any kind, on a tiny model of any norm, left in eval or train mode."""
    norm = draw(st.sampled_from(["linf", "l2"]))
    return {
        "kind": draw(st.sampled_from(["pgd", "fgsm"])),
        "norm": norm,
        "eps": draw(st.sampled_from(EPS[norm] + [math.inf])),
        "steps": draw(st.integers(0, 4)),
        "step_size": draw(st.sampled_from([None, 0.05, 0.5])),
        "random_start": draw(st.booleans()),
        "restarts": draw(st.integers(1, 3)),
        "targeted": draw(st.booleans()),
        "mode": draw(st.sampled_from(["eval", "train"])),
        "model": draw(st.sampled_from(MODEL_KINDS)),
        "model_training": draw(st.booleans()),
        "n": draw(st.integers(2, 6)),
        "seed": draw(st.integers(0, 2**16)),
    }


def build(case: dict, model: nn.Module):
    if case["kind"] == "fgsm":
        return FGSM(
            model, eps=case["eps"], norm=case["norm"], targeted=case["targeted"], mode=case["mode"], seed=case["seed"]
        )
    step = case["step_size"]
    if step is None and math.isinf(case["eps"]):
        step = 0.1  # the default 2.5 * eps / steps is infinite: an unbounded PGD needs an explicit step
    return PGD(
        model,
        norm=case["norm"],
        eps=case["eps"],
        step_size=step,
        steps=case["steps"],
        random_start=case["random_start"],
        restarts=case["restarts"],
        targeted=case["targeted"],
        mode=case["mode"],
        seed=case["seed"],
    )


@settings(max_examples=60)
@given(attack_cases())
def test_attack_invariants(case: dict) -> None:
    arch, norm = case["model"]
    model = tiny_model(norm, arch, seed=case["seed"] % 7)
    model.train(case["model_training"])
    flags = {name: m.training for name, m in model.named_modules()}
    before = state_snapshot(model)
    x, y = images(case["n"], case["seed"]), labels(case["n"], case["seed"])
    x_orig = x.clone()

    x_adv = build(case, model)(x, y)

    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert torch.equal(x, x_orig)
    assert_in_ball(x, x_adv, case["norm"], case["eps"])
    assert_same_state(model, before)
    assert {name: m.training for name, m in model.named_modules()} == flags
    assert all(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())


@given(
    norm=st.sampled_from(["linf", "l2"]),
    random_start=st.booleans(),
    restarts=st.integers(1, 2),
    split=st.integers(1, 7),
    seed=st.integers(0, 1000),
    model_kind=st.sampled_from(MODEL_KINDS),
)
def test_attack_is_independent_of_batch_size(norm, random_start, restarts, split, seed, model_kind) -> None:
    model = tiny_model(model_kind[1], model_kind[0], seed=seed % 5).eval()
    x, y = images(8, seed), labels(8, seed)
    eps = 0.1 if norm == "linf" else 0.5
    atk = PGD(model, norm=norm, eps=eps, steps=3, random_start=random_start, restarts=restarts, seed=seed)
    whole = atk(x, y)
    parts = torch.cat([atk(x[:split], y[:split]), atk(x[split:], y[split:])])
    one_by_one = torch.cat([atk(x[i : i + 1], y[i : i + 1]) for i in range(8)])
    torch.testing.assert_close(parts, whole, atol=1e-6, rtol=0)
    torch.testing.assert_close(one_by_one, whole, atol=1e-6, rtol=0)


def test_random_start_depends_on_seed_only(trained_model, test_batch) -> None:
    x, y = test_batch[0][:16], test_batch[1][:16]
    make = lambda seed: PGD(trained_model, norm="linf", eps=0.1, steps=2, random_start=True, seed=seed)  # noqa: E731
    a, b, c = make(3)(x, y), make(3)(x, y), make(4)(x, y)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert not torch.allclose(a, PGD(trained_model, norm="linf", eps=0.1, steps=2, seed=3)(x, y))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_zero_steps_without_random_start_returns_x(norm) -> None:
    model = tiny_model()
    x, y = images(4, 0), labels(4, 0)
    assert torch.equal(PGD(model, norm=norm, eps=0.3, steps=0)(x, y), x)
    assert torch.equal(PGD(model, norm=norm, eps=0.0, steps=5)(x, y), x)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_one_full_pgd_step_is_fgsm(trained_model, test_batch, norm) -> None:
    x, y = test_batch[0][:32], test_batch[1][:32]
    eps = 0.1 if norm == "linf" else 1.0
    pgd = PGD(trained_model, norm=norm, eps=eps, step_size=eps, steps=1)(x, y)
    torch.testing.assert_close(pgd, FGSM(trained_model, eps=eps, norm=norm)(x, y), atol=1e-6, rtol=0)


class RecordingPGD(PGD):
    """PGD that keeps every restart's final iterate, to check which one wins per sample."""

    def _run(self, x, y, x_adv):
        out = super()._run(x, y, x_adv)
        self.runs.append(out)
        return out


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_restarts_keep_the_per_sample_worst_case(trained_model, test_batch, norm) -> None:
    x, y = test_batch[0][:64], test_batch[1][:64]
    eps = 0.05 if norm == "linf" else 0.5
    # A custom loss ranks restarts by the loss alone: the per-sample maximum must win.
    atk = RecordingPGD(
        trained_model, norm=norm, eps=eps, steps=3, random_start=True, restarts=4, seed=1, loss_fn=cross_entropy_loss
    )
    atk.runs = []
    best = atk(x, y)
    assert len(atk.runs) == 4
    with torch.no_grad():
        losses = torch.stack([F.cross_entropy(trained_model(r), y, reduction="none") for r in atk.runs])
        winner = losses.argmax(0)
        expected = torch.stack(atk.runs)[winner, torch.arange(x.shape[0])]
        torch.testing.assert_close(best, expected, atol=1e-6, rtol=0)
        assert (losses.max(0).values > losses[0]).any()  # the later restarts did matter

    # The default (cross-entropy) scoring puts misclassification first: restarts=4 never correctly
    # classifies a sample that restarts=1 (its first restart, same seed) already fooled.
    single = PGD(trained_model, norm=norm, eps=eps, steps=3, random_start=True, restarts=1, seed=1)(x, y)
    multi = PGD(trained_model, norm=norm, eps=eps, steps=3, random_start=True, restarts=4, seed=1)(x, y)
    with torch.no_grad():
        fooled_single = trained_model(single).argmax(1) != y
        fooled_multi = trained_model(multi).argmax(1) != y
    assert bool((fooled_multi | ~fooled_single).all())
    assert int(fooled_multi.sum()) > int(fooled_single.sum())


def test_untargeted_raises_loss_targeted_reaches_target(trained_model, test_batch) -> None:
    x, y = test_batch[0][:64], test_batch[1][:64]
    target = (y + 1) % 10
    with torch.no_grad():
        clean_loss = F.cross_entropy(trained_model(x), y, reduction="none")
        x_adv = PGD(trained_model, norm="l2", eps=1.0, steps=10)(x, y)
        assert bool((F.cross_entropy(trained_model(x_adv), y, reduction="none") >= clean_loss - 1e-4).all())
        x_t = PGD(trained_model, norm="l2", eps=3.0, step_size=0.5, steps=20, targeted=True)(x, target)
        to_target = F.cross_entropy(trained_model(x_t), target, reduction="none")
        assert bool((to_target < F.cross_entropy(trained_model(x), target, reduction="none")).all())
        on_target = (trained_model(x_t).argmax(1) == target).sum()
        assert on_target > (trained_model(x).argmax(1) == target).sum()


def test_custom_loss_on_the_representation_is_used(trained_model, test_batch) -> None:
    """A loss on ``model.features`` moves the representation: toward a target (targeted) or away."""
    x = test_batch[0][:16]
    with torch.no_grad():
        goal = trained_model.features(test_batch[0][16:32])
        start = trained_model.features(x)

    def feature_distance(model, inputs, target):
        return (model.features(inputs) - target).pow(2).flatten(1).sum(1)

    toward = PGD(trained_model, norm="l2", eps=3.0, step_size=0.3, steps=20, targeted=True, loss_fn=feature_distance)
    # Ascending from x itself would see a zero gradient (the distance is at its minimum): start at random.
    away = PGD(trained_model, norm="l2", eps=3.0, step_size=0.3, steps=20, random_start=True, loss_fn=feature_distance)
    just_start = PGD(trained_model, norm="l2", eps=3.0, steps=0, random_start=True, loss_fn=feature_distance)
    with torch.no_grad():
        d_before = (start - goal).pow(2).sum(1)
        d_after = (trained_model.features(toward(x, goal)) - goal).pow(2).sum(1)
        moved = (trained_model.features(away(x, start)) - start).pow(2).sum(1)
        moved_by_start = (trained_model.features(just_start(x, start)) - start).pow(2).sum(1)
    assert bool((d_after < 0.5 * d_before).all())
    assert bool((moved > 10 * moved_by_start).all())


@pytest.mark.parametrize("restarts", [1, 2])
def test_train_mode_buffers_kept_or_updated(trained_model, test_batch, restarts) -> None:
    x, y = test_batch[0][:32], test_batch[1][:32]
    before = state_snapshot(trained_model)
    tracked = int(trained_model.net.bn1.num_batches_tracked)

    kept = PGD(
        trained_model,
        norm="linf",
        eps=0.1,
        steps=3,
        mode="train",
        keep_buffers=True,
        restarts=restarts,
        random_start=restarts > 1,
    )(x, y)
    assert_same_state(trained_model, before)
    assert not trained_model.training

    PGD(
        trained_model,
        norm="linf",
        eps=0.1,
        steps=3,
        mode="train",
        keep_buffers=False,
        restarts=restarts,
        random_start=restarts > 1,
    )(x, y)
    assert not trained_model.training
    # One BN update per forward pass: 3 gradient steps per restart (plus scoring passes when restarts > 1).
    updates = int(trained_model.net.bn1.num_batches_tracked) - tracked
    assert updates == 3 if restarts == 1 else updates >= 3 * restarts
    assert not torch.equal(trained_model.net.bn1.running_mean, before["net.bn1.running_mean"])
    # Batch statistics really were used: the eval-mode attack finds other examples.
    assert not torch.allclose(kept, PGD(trained_model, norm="linf", eps=0.1, steps=3)(x, y))


def test_model_left_in_train_mode_is_restored(trained_model, test_batch) -> None:
    trained_model.train()
    before = state_snapshot(trained_model)
    PGD(trained_model, norm="l2", eps=0.5, steps=2)(test_batch[0][:8], test_batch[1][:8])
    assert trained_model.training and all(m.training for m in trained_model.modules())
    assert_same_state(trained_model, before)


def test_parameter_flags_and_existing_grads_survive(trained_model, test_batch) -> None:
    frozen = trained_model.net.conv1.weight
    frozen.requires_grad_(False)
    head = trained_model.net.linear.weight
    head.grad = torch.ones_like(head)
    FGSM(trained_model, eps=0.1)(test_batch[0][:8], test_batch[1][:8])
    assert not frozen.requires_grad and frozen.grad is None
    assert torch.equal(head.grad, torch.ones_like(head))


BAD_ATTACKS = {  # name: (build the attack for a model, the error it raises)
    "negative eps": (lambda m: PGD(m, eps=-0.1), "eps must be >= 0, got -0.1"),
    "nan eps": (lambda m: PGD(m, eps=math.nan), "eps must be >= 0, got nan"),
    "fgsm nan eps": (lambda m: FGSM(m, eps=math.nan), "eps must be >= 0, got nan"),
    "negative steps": (lambda m: PGD(m, eps=0.1, steps=-1), "steps must be >= 0, got -1"),
    "zero restarts": (lambda m: PGD(m, eps=0.1, restarts=0), "restarts must be >= 1, got 0"),
    "unknown norm": (lambda m: PGD(m, norm="l1", eps=0.1), "unknown norm 'l1'; choose linf or l2"),
    "fgsm unknown norm": (lambda m: FGSM(m, eps=0.1, norm="linfinity"), "unknown norm 'linfinity'; choose linf or l2"),
    "unknown mode": (lambda m: PGD(m, eps=0.1, mode="test"), "mode must be 'eval' or 'train', got 'test'"),
    "negative step": (lambda m: PGD(m, eps=0.1, step_size=-0.1), "step_size must be a finite number >= 0, got -0.1"),
    "nan step": (lambda m: PGD(m, eps=0.1, step_size=math.nan), "step_size must be a finite number >= 0, got nan"),
    "infinite default step": (lambda m: PGD(m, eps=math.inf), "step_size must be a finite number >= 0, got inf"),
    "not a module": (lambda m: PGD(lambda x: x, eps=0.1), "model must be a torch.nn.Module, got function"),
}


@pytest.mark.parametrize("name", sorted(BAD_ATTACKS))
def test_bad_attack_arguments_raise(name) -> None:
    build, message = BAD_ATTACKS[name]
    with pytest.raises(NrflabError, match=re.escape(message)):
        build(tiny_model())


@pytest.mark.parametrize(
    "x, y, message",
    [
        (images(2, 0) + 0.5, labels(2, 0), "inputs must lie in [0,1] (got [0.5, 1.5])"),  # above 1
        (images(2, 0) - 0.5, labels(2, 0), "inputs must lie in [0,1] (got [-0.5, 0.5])"),  # below 0
        (images(2, 0) * 255, labels(2, 0), "inputs must lie in [0,1] (got [0, 255])"),  # unscaled pixels
        # NaN images are not in [0,1] either
        (torch.full((2, 1, 8, 8), math.nan), labels(2, 0), "inputs must lie in [0,1] (got [nan, nan])"),
        # integer images
        ((images(2, 0) * 255).to(torch.uint8), labels(2, 0), "x must be a floating-point tensor of images in [0,1]"),
        (images(3, 0), labels(2, 0), "3 inputs but 2 labels"),  # label count mismatch
    ],
    ids=["above-1", "below-0", "unscaled", "nan", "uint8", "label-count"],
)
@pytest.mark.parametrize("attack_cls", [PGD, FGSM])
def test_bad_inputs_raise(x, y, message, attack_cls) -> None:
    with pytest.raises(NrflabError, match=re.escape(message)):
        attack_cls(tiny_model(), eps=0.1)(x, y)


def test_projection() -> None:
    delta = torch.tensor([[[[3.0, -4.0]]], [[[0.3, 0.4]]]])
    torch.testing.assert_close(project(delta, "l2", 1.0), torch.tensor([[[[0.6, -0.8]]], [[[0.3, 0.4]]]]))
    torch.testing.assert_close(project(delta, "linf", 0.35), torch.tensor([[[[0.35, -0.35]]], [[[0.3, 0.35]]]]))


# -------------------------------------------------------------------------------------------------
# Cross-check against torchattacks on the same trained model and settings.


@pytest.fixture()
def ta_batch(test_batch):
    # 64 = 2^6 images: torchattacks' mean-reduced loss scales the gradient by exactly 2^-6, which changes
    # neither the sign nor the direction in floating point, so the two implementations agree exactly.
    return test_batch[0][:64], test_batch[1][:64]


def test_pgd_linf_matches_torchattacks(trained_model, ta_batch) -> None:
    torchattacks = pytest.importorskip("torchattacks")
    x, y = ta_batch
    ours = PGD(trained_model, norm="linf", eps=0.1, step_size=0.01, steps=10)(x, y)
    theirs = torchattacks.PGD(trained_model, eps=0.1, alpha=0.01, steps=10, random_start=False)(x, y)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    assert (ours - x).abs().max() > 0.09


def test_pgd_l2_matches_torchattacks(trained_model, ta_batch) -> None:
    torchattacks = pytest.importorskip("torchattacks")
    x, y = ta_batch
    ours = PGD(trained_model, norm="l2", eps=1.0, step_size=0.2, steps=10)(x, y)
    assert (ours - x).flatten(1).norm(dim=1).max() > 0.99
    # torchattacks divides the gradient by (||g|| + 1e-10). That moves the normalized step by about one
    # ulp, and over 10 steps a ReLU / max-pool switch can amplify it for a sample or two (here sample 30
    # diverges at step 4 by up to 0.014). Without the 1e-10 the two are the same to float tolerance.
    exact = torchattacks.PGDL2(trained_model, eps=1.0, alpha=0.2, steps=10, random_start=False)
    exact.eps_for_division = 0.0
    torch.testing.assert_close(ours, exact(x, y), atol=1e-6, rtol=0)
    theirs = torchattacks.PGDL2(trained_model, eps=1.0, alpha=0.2, steps=10, random_start=False)(x, y)
    same = (ours - theirs).flatten(1).abs().amax(1) <= 1e-5
    assert int(same.sum()) >= 62


def test_targeted_pgd_matches_torchattacks(trained_model, ta_batch) -> None:
    torchattacks = pytest.importorskip("torchattacks")
    x, y = ta_batch
    ours = PGD(trained_model, norm="linf", eps=0.2, step_size=0.02, steps=10, targeted=True)(x, (y + 1) % 10)
    ta = torchattacks.PGD(trained_model, eps=0.2, alpha=0.02, steps=10, random_start=False)
    ta.set_mode_targeted_by_function(lambda images, labels: (labels + 1) % 10, quiet=True)
    torch.testing.assert_close(ours, ta(x, y), atol=1e-6, rtol=0)


def test_fgsm_matches_torchattacks(trained_model, ta_batch) -> None:
    torchattacks = pytest.importorskip("torchattacks")
    x, y = ta_batch
    ours = FGSM(trained_model, eps=0.1)(x, y)
    theirs = torchattacks.FGSM(trained_model, eps=0.1)(x, y)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


# -------------------------------------------------------------------------------------------------
# Robust accuracy against eps


@pytest.mark.parametrize("norm, grid", [("linf", [0.0, 0.02, 0.05, 0.1, 0.2]), ("l2", [0.0, 0.25, 0.5, 1.0, 2.0])])
def test_robust_accuracy_does_not_increase_with_eps(trained_model, test_batch, norm, grid) -> None:
    x, y = test_batch[0][:128], test_batch[1][:128]
    accs = [robust_accuracy(trained_model, (x, y), PGD(trained_model, norm=norm, eps=e, steps=10)) for e in grid]
    assert accs[0] == accuracy(trained_model, (x, y)) > 0.9
    assert all(b <= a for a, b in zip(accs, accs[1:])), accs
    assert accs[-1] < accs[0] - 0.5


@pytest.mark.parametrize("norm, eps, step", [("linf", 1.0, 0.05), ("l2", 30.0, 1.0)])
def test_unbounded_attack_breaks_the_model(trained_model, test_batch, norm, eps, step) -> None:
    x, y = test_batch[0][:128], test_batch[1][:128]
    assert (
        robust_accuracy(trained_model, (x, y), PGD(trained_model, norm=norm, eps=eps, step_size=step, steps=30)) <= 0.02
    )


# -------------------------------------------------------------------------------------------------
# Attack specs


def test_parse_attack_and_round_trip() -> None:
    spec = parse_attack("pgd-linf:eps=8/255,steps=20,step=2/255,rs=1,restarts=3,targeted=1")
    assert spec == AttackSpec("pgd-linf", 8 / 255, 2 / 255, 20, True, 3, True)
    assert spec.norm == "linf" and parse_attack("fgm-l2:eps=1").norm == "l2"
    assert parse_attack(spec.to_string()) == spec  # the text form round-trips exactly
    assert parse_attack("pgd-l2:eps=0.25,steps=10").label == "pgd-l2_0.25"


def test_specs_build_the_right_attacks(trained_model, test_batch) -> None:
    x, y = test_batch[0][:16], test_batch[1][:16]
    pgd = parse_attack("pgd-l2:eps=0.5,step=0.1,steps=7").build(trained_model, seed=3)
    assert isinstance(pgd, PGD) and (pgd.norm, pgd.eps, pgd.step_size, pgd.steps, pgd.seed) == ("l2", 0.5, 0.1, 7, 3)
    fgm = parse_attack("fgm-l2:eps=0.5").build(trained_model)
    assert isinstance(fgm, FGSM) and fgm.norm == "l2"
    assert torch.equal(parse_attack("none").build(trained_model)(x, y), x)


BAD_SPECS = {  # spec: the error it raises
    "pgd-l3:eps=0.1": "unknown attack 'pgd-l3'; choose one of",
    "pgd-l2:eps=-1": "eps must be a finite number >= 0, got -1.0",
    "pgd-l2:eps=abc": "bad number 'abc' in attack 'pgd-l2:eps=abc'",
    "pgd-l2:epsilon=0.1": "bad attack option 'epsilon=0.1' in 'pgd-l2:epsilon=0.1'",
    "pgd-l2:eps": "bad attack option 'eps' in 'pgd-l2:eps'",
    "pgd-l2:steps=-2": "steps must be >= 1 for pgd-l2, got -2",
    "pgd-l2:restarts=0": "restarts must be >= 1, got 0",
    "pgd-l2:eps=1/0": "bad number '1/0' in attack 'pgd-l2:eps=1/0'",
    "pgd-l2:step=-0.1": "step size must be a finite number > 0, got -0.1",
}


@pytest.mark.parametrize("text", list(BAD_SPECS))
def test_bad_specs_raise(text) -> None:
    with pytest.raises(NrflabError, match=re.escape(BAD_SPECS[text])):
        parse_attack(text)
