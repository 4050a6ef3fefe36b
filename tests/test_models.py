"""Tests for nrflab.models: every arch x norm works, norms are what they claim, errors, seeds, init, and the
CIFAR ResNet state-dict layout (checked against a real pretrained ResNet-18)."""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from nrflab.core.errors import NrflabError
from nrflab.models import (
    INITS,
    NORMS,
    ModelConfig,
    build_model,
    count_parameters,
    create_model,
)
from nrflab.models import list_archs as available_archs
from nrflab.models.norms import FrozenBatchNorm2d

ARCHS = ("resnet18", "resnet50", "vgg11", "vgg16", "smallcnn")
PLAIN_NORMS = ("bn", "none", "gn", "ln", "in", "bn-eval")
COMBOS = [(a, n) for a in ARCHS for n in PLAIN_NORMS] + [("resnet18", "fixup"), ("resnet50", "fixup")]
# Small but valid inputs: InstanceNorm needs more than one pixel at the last stage (VGG pools five times).
SIZE = {"resnet18": 16, "resnet50": 16, "vgg11": 32, "vgg16": 32, "smallcnn": 8}
WIDTH = {"resnet18": 0.0625, "resnet50": 0.0625, "vgg11": 0.0625, "vgg16": 0.0625, "smallcnn": 0.125}
NORM_MODULES = (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d, nn.LayerNorm)


def small(arch: str, norm: str, in_channels: int = 3, num_classes: int = 7, seed: int = 0, **kw):
    return create_model(arch, norm, num_classes, in_channels, width=WIDTH[arch], seed=seed, **kw)


def small_input(arch: str, in_channels: int = 3, n: int = 2) -> torch.Tensor:
    return torch.rand(n, in_channels, SIZE[arch], SIZE[arch], generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("arch, norm", COMBOS)
@pytest.mark.parametrize("in_channels", [1, 3])
def test_forward_backward_shapes(arch, norm, in_channels) -> None:
    model = small(arch, norm, in_channels).train()
    x = small_input(arch, in_channels).requires_grad_(True)
    out = model(x)
    assert out.shape == (2, 7)
    out.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())

    model.eval()
    with torch.no_grad():
        feats = model.features(x)
        assert feats.shape == (2, model.net.classifier.in_features)
        torch.testing.assert_close(model.net.classifier(feats), model(x))
        torch.testing.assert_close(model.features(x, fake_relu=True), feats)
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == in_channels


@pytest.mark.parametrize("arch", ["smallcnn", "vgg11", "resnet18"])
def test_fake_relu_passes_gradients_through_the_last_relu(arch) -> None:
    model = small(arch, "none").eval()
    grads = []
    for fake in (False, True):
        x = small_input(arch).requires_grad_(True)
        (g,) = torch.autograd.grad(model.features(x, fake_relu=fake).sum(), x)
        grads.append(g)
    assert not torch.allclose(grads[0], grads[1])


@pytest.mark.parametrize("arch, norm", [(a, "none") for a in ARCHS] + [("resnet18", "fixup"), ("resnet50", "fixup")])
def test_no_norm_models_have_only_identity(arch, norm) -> None:
    model = small(arch, norm)
    assert not any(isinstance(m, NORM_MODULES) for m in model.modules())
    # Every place a norm would sit holds an Identity, shortcuts included.
    bn_model = small(arch, "bn")
    n_norms = sum(isinstance(m, nn.BatchNorm2d) for m in bn_model.modules())
    assert sum(isinstance(m, nn.Identity) for m in model.modules()) == n_norms
    if arch.startswith("resnet"):
        shortcut = model.net.layer2[0].shortcut
        assert isinstance(shortcut[0], nn.Conv2d) and isinstance(shortcut[1], nn.Identity)
        assert isinstance(bn_model.net.layer2[0].shortcut[1], nn.BatchNorm2d)


@pytest.mark.parametrize(
    "norm, cls, check",
    [
        ("bn", nn.BatchNorm2d, lambda m: type(m) is nn.BatchNorm2d),
        ("gn", nn.GroupNorm, lambda m: m.num_groups == math.gcd(m.num_channels, 32) and m.num_groups > 1),
        ("ln", nn.GroupNorm, lambda m: m.num_groups == 1),
        ("in", nn.InstanceNorm2d, lambda m: m.affine),
        ("bn-eval", FrozenBatchNorm2d, lambda m: True),
    ],
)
def test_norm_layers_are_what_they_say(norm, cls, check) -> None:
    model = create_model("resnet18", norm, 10, 3, width=0.25)
    layers = [m for m in model.modules() if isinstance(m, NORM_MODULES)]
    assert layers and all(isinstance(m, cls) and check(m) for m in layers)


def test_bn_eval_never_uses_batch_statistics() -> None:
    model = small("smallcnn", "bn-eval")
    x = small_input("smallcnn", n=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        train_out = model.train()(x)
        eval_out = model.eval()(x)
    torch.testing.assert_close(train_out, eval_out)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_bn_uses_batch_statistics_in_train_mode() -> None:
    model = small("smallcnn", "bn")
    x = small_input("smallcnn", n=4)
    with torch.no_grad():
        train_out = model.train()(x)
        assert int(model.net.bn1.num_batches_tracked) == 1
        assert not torch.allclose(train_out, model.eval()(x))


def test_normalization_is_the_first_layer() -> None:
    model = create_model("smallcnn", "none", 10, 3, width=0.125, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.5))
    x = torch.rand(2, 3, 8, 8)
    expected = model.net(
        (x - torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1)) / torch.tensor([0.2, 0.25, 0.5]).view(1, 3, 1, 1)
    )
    torch.testing.assert_close(model(x), expected)
    assert model.config.mean == (0.4, 0.5, 0.6) and model.config.std == (0.2, 0.25, 0.5)


def test_fixup_starts_as_identity_blocks_with_a_zero_head() -> None:
    model = create_model("resnet18", "fixup", 10, 3, width=0.0625, seed=0)
    assert model.config.init == "fixup"
    assert all(float(b.conv2.weight.detach().abs().max()) == 0.0 for b in model.net.blocks())
    assert torch.equal(model(torch.rand(2, 3, 8, 8)), torch.zeros(2, 10))


@pytest.mark.parametrize(
    "kwargs, names",
    [
        ({"arch": "resnet19"}, available_archs()),
        ({"norm": "batchnorm"}, NORMS),
        ({"init": "xavier"}, INITS),
    ],
)
def test_unknown_names_list_the_choices(kwargs, names) -> None:
    args = {"arch": "smallcnn", "norm": "bn", **kwargs}
    ((what, value),) = kwargs.items()
    with pytest.raises(NrflabError, match=re.escape(f"unknown {what} '{value}'; choose one of")) as info:
        create_model(args.pop("arch"), args.pop("norm"), 10, 1, **args)
    message = str(info.value)
    assert "\n" not in message and all(name in message for name in names)


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        (("vgg11", "fixup", 10, 3), {}, "norm 'fixup' needs a residual arch (resnet18, resnet50), not 'vgg11'"),
        (("smallcnn", "fixup", 10, 3), {}, "norm 'fixup' needs a residual arch (resnet18, resnet50), not 'smallcnn'"),
        (("resnet18", "bn", 10, 3), {"init": "fixup"}, "init 'fixup' goes with norm 'fixup'"),
        (("smallcnn", "bn", 1, 3), {}, "num_classes must be >= 2, got 1"),
        (("smallcnn", "bn", 10, 0), {}, "in_channels must be >= 1, got 0"),
        (("smallcnn", "bn", 10, 3), {"width": 0.0}, "width must be in (0, 64], got 0.0"),
        (("smallcnn", "bn", 10, 3), {"width": math.nan}, "width must be in (0, 64], got nan"),
        (
            ("smallcnn", "bn", 10, 3),
            {"mean": (0.1, 0.2)},
            "mean/std need 1 value (for every channel) or 3 values each for a model with 3 input channels, got 2 mean and 3 std values",
        ),
        (("smallcnn", "bn", 10, 3), {"std": (0.0,)}, "std values must be > 0"),
    ],
    ids=[
        "fixup-vgg",
        "fixup-smallcnn",
        "fixup-init-bn",
        "one-class",
        "no-channels",
        "zero-width",
        "nan-width",
        "mean-length",
        "zero-std",
    ],
)
def test_bad_model_arguments_raise(args, kwargs, message) -> None:
    with pytest.raises(NrflabError, match=re.escape(message)):
        create_model(*args, **kwargs)


def test_seeds_give_identical_weights_without_touching_the_global_rng() -> None:
    rng = torch.random.get_rng_state()
    a, b = small("resnet18", "bn", seed=3), small("resnet18", "bn", seed=3)
    c = small("resnet18", "bn", seed=4)
    assert torch.equal(torch.random.get_rng_state(), rng)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["net.conv1.weight"], sc["net.conv1.weight"])


@pytest.mark.parametrize(
    "arch, norm, init, expected",
    [
        ("resnet18", "bn", "auto", "torch"),
        ("resnet50", "none", "auto", "torch"),
        ("resnet18", "fixup", "auto", "fixup"),
        ("smallcnn", "bn", "auto", "kaiming"),
        ("vgg11", "none", "auto", "kaiming"),
        ("smallcnn", "bn", "torch", "torch"),
        ("resnet18", "gn", "KAIMING", "kaiming"),
    ],
)
def test_init_is_recorded_in_the_config(arch, norm, init, expected) -> None:
    model = small(arch, norm, init=init)
    assert model.config.init == expected
    assert build_model(model.config, seed=0).config.init == expected


def test_kaiming_init_scales_with_fan_in() -> None:
    model = create_model("smallcnn", "none", 10, 3, width=1.0, seed=0)
    w = model.net.conv3.weight.detach()  # 64 x 32 x 3 x 3
    assert abs(float(w.std()) / math.sqrt(2 / (32 * 9)) - 1) < 0.05


def test_config_round_trip_and_unknown_fields() -> None:
    model = create_model("vgg11", "gn", 100, 3, width=0.5, mean=(0.1, 0.2, 0.3), std=(0.3,), input_shape=(3, 32, 32))
    cfg = ModelConfig.from_dict(model.config.to_dict())
    assert cfg == model.config
    with pytest.raises(NrflabError, match=re.escape("model config has unknown fields ['depth']")):
        ModelConfig.from_dict({**model.config.to_dict(), "depth": 18})


# -------------------------------------------------------------------------------------------------
# The common CIFAR ResNet layout, checked on a real pretrained CIFAR-10 ResNet-18.


def test_resnet18_has_the_cifar_resnet_layout() -> None:
    model = create_model("resnet18", "bn", 10, 3)
    keys = set(model.state_dict())
    for key in (
        "net.conv1.weight",
        "net.bn1.running_mean",
        "net.layer1.0.bn1.running_mean",
        "net.layer1.0.conv2.weight",
        "net.layer2.0.shortcut.0.weight",
        "net.layer2.0.shortcut.1.running_var",
        "net.layer4.1.bn2.num_batches_tracked",
        "net.linear.weight",
        "net.linear.bias",
    ):
        assert key in keys
    assert "net.layer1.0.shortcut.0.weight" not in keys  # identity shortcut where shapes match
    assert count_parameters(model) == 11_173_962  # the well-known CIFAR ResNet-18 parameter count
    assert model.net.linear.weight.shape == (10, 512)


def _pyautoattack_examples() -> Path:
    spec = importlib.util.find_spec("pyautoattack")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("pyautoattack is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "examples"
    if not (path / "model_test.pt").is_file():
        pytest.skip("pyautoattack ships no examples/model_test.pt")
    return path


def test_pretrained_cifar_resnet18_loads_strictly_and_matches_its_reference() -> None:
    examples = _pyautoattack_examples()
    state = torch.load(examples / "model_test.pt", map_location="cpu", weights_only=True)
    model = create_model("resnet18", "bn", 10, 3)  # mean 0, std 1: that model takes raw [0,1] inputs
    missing = model.load_state_dict({f"net.{k}": v for k, v in state.items()}, strict=False)
    assert missing.unexpected_keys == [] and sorted(missing.missing_keys) == ["normalize.mean", "normalize.std"]
    model.load_state_dict({**model.state_dict(), **{f"net.{k}": v for k, v in state.items()}}, strict=True)
    model.eval()

    # The same weights in the reference implementation (plain torch) give the same logits.
    spec = importlib.util.spec_from_file_location("pyautoattack_resnet_reference", examples / "resnet.py")
    reference_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference_module)
    reference = reference_module.ResNet18().eval()
    reference.load_state_dict(state, strict=True)
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = model(x), reference(x)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    assert float(theirs.std()) > 0.1  # real, non-degenerate logits
