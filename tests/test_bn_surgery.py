"""Tests for nrflab.measure.bn_surgery: each variant is the function it claims to be (folded == running exactly,
batch statistics == BN in training mode, recalibration == a cumulative average, affine-only == gamma*x+beta),
the analysis orders the variants as documented, and the user's model never changes."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from _byom_helpers import digits, randomize_bn, trained_digits_model
from nrflab.attacks import frozen_model, parse_attack
from nrflab.core.errors import NrflabError
from nrflab.measure.bn_surgery import analyze_batchnorm
from nrflab.measure.bn_variants import (
    VARIANTS,
    BatchStatisticsNorm,
    ChannelAffine,
    affine_only_variant,
    batch_statistics_variant,
    batchnorm_layers,
    folded_variant,
    recalibrated_variant,
)
from nrflab.models import create_model

ATTACK = parse_attack("pgd-l2:eps=0.5,steps=5")


@pytest.fixture(scope="module")
def data():
    bundle = digits()
    x, y = bundle.test.tensors()
    train_x, _ = bundle.train.tensors()
    return x[:120], y[:120], train_x[:400]


@pytest.fixture(scope="module")
def analysis(data):
    model = trained_digits_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y, calib = data
    result = analyze_batchnorm(
        model, x, y, attacks=[ATTACK], calibration_images=calib, batch_size=60, num_classes=10, dataset="digits"
    )
    return model, before, result


def state_equal(model: nn.Module, before: dict) -> bool:
    after = model.state_dict()
    return set(after) == set(before) and all(torch.equal(after[k], v) for k, v in before.items())


def out(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("arch", ["smallcnn", "resnet18", "vgg11"])
def test_folded_is_numerically_the_running_statistics_model(arch) -> None:
    model = randomize_bn(create_model(arch, "bn", 10, 3, width=0.0625 if arch != "smallcnn" else 0.25, seed=1))
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    folded, info = folded_variant(model)
    assert info.traced and info.folded_into_conv == len(batchnorm_layers(model)) and info.as_affine == 0
    assert not batchnorm_layers(folded)
    torch.testing.assert_close(out(folded, x), out(model.eval(), x), atol=1e-4, rtol=1e-4)


def test_bn_without_a_convolution_before_it_becomes_an_exact_affine() -> None:
    model = randomize_bn(
        nn.Sequential(
            nn.BatchNorm2d(3),
            nn.Conv2d(3, 4, 3),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, 5),
        )
    )
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    folded, info = folded_variant(model)
    assert (info.folded_into_conv, info.as_affine) == (1, 1)
    assert sum(isinstance(m, ChannelAffine) for m in folded.modules()) == 1
    torch.testing.assert_close(out(folded, x), out(model, x), atol=1e-5, rtol=1e-5)


def test_batch_statistics_variant_is_bn_in_training_mode_without_touching_buffers() -> None:
    model = trained_digits_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = digits().test.tensors()[0][:50]
    variant = batch_statistics_variant(model)
    assert sum(isinstance(m, BatchStatisticsNorm) for m in variant.modules()) == 4 and not batchnorm_layers(variant)
    reference = copy.deepcopy(model)
    with torch.no_grad(), frozen_model(reference, "train"):
        expected = reference(x)
    torch.testing.assert_close(out(variant.eval(), x), expected)
    assert not torch.allclose(out(variant, x), out(model, x))  # batch and running statistics differ
    assert state_equal(model, before) and not model.training


def test_recalibration_is_a_cumulative_average_over_the_given_images() -> None:
    model = trained_digits_model()
    images = digits().train.tensors()[0][:300]
    recal = recalibrated_variant(model, images, batch_size=100)
    bn1 = recal.net.bn1
    with torch.no_grad():
        pre = model.net.conv1(model.normalize(images))  # the first BN's input
    means = [pre[i : i + 100].mean(dim=(0, 2, 3)) for i in range(0, 300, 100)]
    torch.testing.assert_close(bn1.running_mean, torch.stack(means).mean(0), atol=1e-5, rtol=1e-4)
    assert int(bn1.num_batches_tracked) == 3 and bn1.momentum == model.net.bn1.momentum
    assert not recal.training and not torch.equal(bn1.running_mean, model.net.bn1.running_mean)


def test_affine_only_is_gamma_x_plus_beta() -> None:
    bn = randomize_bn(nn.Sequential(nn.BatchNorm2d(3)))
    variant = affine_only_variant(bn)
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    gamma, beta = bn[0].weight.detach().view(1, 3, 1, 1), bn[0].bias.detach().view(1, 3, 1, 1)
    torch.testing.assert_close(out(variant, x), gamma * x + beta)


def test_the_analysis_orders_the_variants_as_documented(analysis) -> None:
    _, _, result = analysis
    rows = {v.variant: v for v in result.variants}
    assert list(rows) == list(VARIANTS)
    running, label = rows["running"], ATTACK.label
    assert running.clean_acc > 0.85 and running.void is None
    # folded is the same function: identical numbers, full agreement, a tiny logit error.
    folded = rows["folded"]
    assert (folded.clean_acc, folded.robust_acc[label], folded.agreement) == (
        running.clean_acc,
        running.robust_acc[label],
        1.0,
    )
    assert result.max_fold_error < 1e-4 and result.fold.folded_into_conv == result.bn_layers == 4
    # recalibrated on clean training images behaves like the trained running statistics.
    assert abs(rows["recalibrated"].clean_acc - running.clean_acc) <= 0.05 and rows["recalibrated"].agreement >= 0.95
    # batch statistics on batches of 60 clean test images classify like running statistics.
    assert abs(rows["batch"].clean_acc - running.clean_acc) <= 0.1
    # removing the normalization of a model trained with BN breaks it; its row says so.
    assert rows["affine-only"].void is not None or rows["affine-only"].clean_acc < running.clean_acc - 0.3
    # transfer from the running statistics model to itself is the white-box attack.
    t = running.transfer[label]
    assert t.eligible > 0 and t.success_rate == 1.0 and folded.transfer[label].success_rate == 1.0
    for v in result.variants:
        t = v.transfer[label]
        assert 0 <= t.successes <= t.eligible and (
            t.eligible == 0 or t.ci[0] - 1e-9 <= t.success_rate <= t.ci[1] + 1e-9
        )


def test_differences_to_running_are_paired_and_zero_for_folded(analysis) -> None:
    _, _, result = analysis
    folded = [d for d in result.differences if d.variant == "folded"]
    assert {d.metric for d in folded} == {"clean acc", f"robust acc [{ATTACK.label}]", "ligs"}
    assert all(abs(d.difference) < 1e-3 and d.word == "no detectable difference" for d in folded)
    assert not any(d.variant == "running" for d in result.differences)


def test_the_users_model_is_unchanged(analysis) -> None:
    model, before, _ = analysis
    assert state_equal(model, before) and not model.training
    assert all(p.grad is None for p in model.parameters())


def test_results_are_plain_files(analysis) -> None:
    _, _, result = analysis
    record = json.loads(json.dumps(result.to_dict()))
    assert [v["variant"] for v in record["variants"]] == list(VARIANTS)
    assert record["attacks"] == {ATTACK.label: ATTACK.to_string()} and record["calibration_images"] == 400
    md = result.markdown()
    header, rows = result.table()
    assert "| " + " | ".join(header) + " |" in md and len(rows) == len(VARIANTS)
    assert "Protocol:" in md and "paired" in md


def test_models_without_batchnorm_or_as_torchscript_are_refused() -> None:
    with pytest.raises(NrflabError, match="has no BatchNorm layer"):
        batch_statistics_variant(create_model("smallcnn", "none", 10, 1, width=0.125))
    scripted = torch.jit.trace(create_model("smallcnn", "bn", 10, 1, width=0.125).eval(), torch.rand(2, 1, 8, 8))
    with pytest.raises(NrflabError, match="not TorchScript"):
        folded_variant(scripted)
    with pytest.raises(NrflabError, match="unknown BN variant 'frozen'"):
        analyze_batchnorm(
            create_model("smallcnn", "bn", 10, 1, width=0.125),
            torch.rand(4, 1, 8, 8),
            torch.zeros(4, dtype=torch.long),
            attacks=[],
            calibration_images=None,
            variants=["frozen"],
        )
