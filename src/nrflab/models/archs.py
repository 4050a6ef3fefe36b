"""Architectures with a pluggable normalization layer (CIFAR-style, as in the paper's code).

Every network exposes ``forward_features(x, fake_relu=False)`` (the penultimate representation after
global pooling) and ``classifier`` (the linear head), so representation attacks work on all of them.
Module names of the ResNets follow the common CIFAR ResNet layout (conv1, bn1, layer1..4, linear,
shortcut), so published state dicts of that layout load directly.

To add an architecture, decorate its builder ``(num_classes, in_channels, norm_factory, width, fixup) ->
nn.Module`` with :func:`register_arch`; ``create_model(arch=NAME)`` and ``nrflab list`` then know it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn
from torch.nn import functional as F

from nrflab.core.errors import NrflabError
from nrflab.core.registry import Registry
from nrflab.models.norms import NormFactory


class FakeReLU(torch.autograd.Function):
    """ReLU forward, identity backward: the official code's pass-through gradient at the last layer."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad


def relu(x: torch.Tensor, fake: bool = False) -> torch.Tensor:
    return FakeReLU.apply(x) if fake else F.relu(x)


class Bias(nn.Module):
    """A learnable scalar bias (Fixup)."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


class Scale(nn.Module):
    """A learnable scalar multiplier (Fixup)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def _ch(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def _shortcut(in_planes: int, out_planes: int, stride: int, norm: NormFactory) -> nn.Sequential:
    """A residual block's shortcut: the identity (an empty Sequential), or a strided 1x1 convolution and a norm
    where the block changes the resolution or the channel count."""
    if stride != 1 or in_planes != out_planes:
        return nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride, bias=False), norm(out_planes))
    return nn.Sequential()


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int, norm: NormFactory, fixup: bool = False):
        super().__init__()
        self.fixup = fixup
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = norm(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = norm(planes)
        self.shortcut = _shortcut(in_planes, planes, stride, norm)
        if fixup:
            self.bias1a, self.bias1b, self.bias2a = Bias(), Bias(), Bias()
            self.scale, self.bias2b = Scale(), Bias()

    def branch_convs(self) -> list[nn.Conv2d]:
        return [self.conv1, self.conv2]

    def forward(self, x: torch.Tensor, fake_relu: bool = False) -> torch.Tensor:
        if self.fixup:
            out = F.relu(self.bias1b(self.conv1(self.bias1a(x))))
            out = self.bias2b(self.scale(self.conv2(self.bias2a(out))))
            return relu(out + self.shortcut(self.bias1a(x)), fake_relu)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return relu(out + self.shortcut(x), fake_relu)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int, norm: NormFactory, fixup: bool = False):
        super().__init__()
        self.fixup = fixup
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = norm(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = norm(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = norm(out_planes)
        self.shortcut = _shortcut(in_planes, out_planes, stride, norm)
        if fixup:
            self.bias1a, self.bias1b, self.bias2a = Bias(), Bias(), Bias()
            self.bias2b, self.bias3a, self.bias3b, self.scale = Bias(), Bias(), Bias(), Scale()

    def branch_convs(self) -> list[nn.Conv2d]:
        return [self.conv1, self.conv2, self.conv3]

    def forward(self, x: torch.Tensor, fake_relu: bool = False) -> torch.Tensor:
        if self.fixup:
            out = F.relu(self.bias1b(self.conv1(self.bias1a(x))))
            out = F.relu(self.bias2b(self.conv2(self.bias2a(out))))
            out = self.bias3b(self.scale(self.conv3(self.bias3a(out))))
            return relu(out + self.shortcut(self.bias1a(x)), fake_relu)
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return relu(out + self.shortcut(x), fake_relu)


class ResNet(nn.Module):
    """CIFAR ResNet: 3x3 stride-1 stem, no max-pool, four stages, global average pool, linear head."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        num_blocks: Sequence[int],
        num_classes: int,
        in_channels: int,
        norm: NormFactory,
        width: float = 1.0,
        fixup: bool = False,
    ):
        super().__init__()
        self.fixup = fixup
        planes = [_ch(c, width) for c in (64, 128, 256, 512)]
        self.in_planes = planes[0]
        self.conv1 = nn.Conv2d(in_channels, planes[0], 3, 1, 1, bias=False)
        self.bn1 = norm(planes[0])
        self.layer1 = self._make_layer(block, planes[0], num_blocks[0], 1, norm)
        self.layer2 = self._make_layer(block, planes[1], num_blocks[1], 2, norm)
        self.layer3 = self._make_layer(block, planes[2], num_blocks[2], 2, norm)
        self.layer4 = self._make_layer(block, planes[3], num_blocks[3], 2, norm)
        if fixup:
            self.bias1, self.bias2 = Bias(), Bias()
        self.linear = nn.Linear(planes[3] * block.expansion, num_classes)

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, n: int, stride: int, norm: NormFactory
    ) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(block(self.in_planes, planes, s, norm, self.fixup))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    @property
    def classifier(self) -> nn.Linear:
        return self.linear

    def blocks(self) -> list[nn.Module]:
        return [b for layer in (self.layer1, self.layer2, self.layer3, self.layer4) for b in layer]

    def forward_features(self, x: torch.Tensor, fake_relu: bool = False) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        if self.fixup:
            out = self.bias1(out)
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        blocks = list(self.layer4)
        for b in blocks[:-1]:
            out = b(out)
        out = blocks[-1](out, fake_relu=fake_relu)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.bias2(out) if self.fixup else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.linear(self.forward_features(x)))


VGG_CONFIGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """CIFAR VGG: 3x3 convs, norm, ReLU, five max-pools (ceil mode, so 28x28 and 8x8 inputs work too)."""

    def __init__(
        self, cfg: Sequence[int | str], num_classes: int, in_channels: int, norm: NormFactory, width: float = 1.0
    ):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            else:
                out = _ch(int(v), width)
                layers += [nn.Conv2d(c, out, 3, 1, 1, bias=False), norm(out), nn.ReLU(inplace=False)]
                c = out
        self.features = nn.Sequential(*layers)
        self.linear = nn.Linear(c, num_classes)

    @property
    def classifier(self) -> nn.Linear:
        return self.linear

    def forward_features(self, x: torch.Tensor, fake_relu: bool = False) -> torch.Tensor:
        mods = list(self.features)
        last_relu = max(i for i, m in enumerate(mods) if isinstance(m, nn.ReLU))
        for i, m in enumerate(mods):
            x = relu(x, fake=True) if (fake_relu and i == last_relu) else m(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.linear(self.forward_features(x)))


class SmallCNN(nn.Module):
    """A fast CNN for CPU work: four 3x3 convs (32, 32, 64, 64 channels x width), two max-pools,
    global average pool and a linear head."""

    def __init__(self, num_classes: int, in_channels: int, norm: NormFactory, width: float = 1.0):
        super().__init__()
        c1, c2 = _ch(32, width), _ch(64, width)
        self.conv1 = nn.Conv2d(in_channels, c1, 3, 1, 1, bias=False)
        self.bn1 = norm(c1)
        self.conv2 = nn.Conv2d(c1, c1, 3, 1, 1, bias=False)
        self.bn2 = norm(c1)
        self.conv3 = nn.Conv2d(c1, c2, 3, 1, 1, bias=False)
        self.bn3 = norm(c2)
        self.conv4 = nn.Conv2d(c2, c2, 3, 1, 1, bias=False)
        self.bn4 = norm(c2)
        self.linear = nn.Linear(c2, num_classes)

    @property
    def classifier(self) -> nn.Linear:
        return self.linear

    def forward_features(self, x: torch.Tensor, fake_relu: bool = False) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2, ceil_mode=True)
        x = F.relu(self.bn3(self.conv3(x)))
        x = F.max_pool2d(relu(self.bn4(self.conv4(x)), fake_relu), 2, ceil_mode=True)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.linear(self.forward_features(x)))


# ---------------------------------------------------------------------------------------------
# The architecture registry

ArchBuilder = Callable[[int, int, NormFactory, float, bool], nn.Module]
"""``build(num_classes, in_channels, norm_factory, width, fixup) -> nn.Module``."""


@dataclass(frozen=True)
class ArchSpec:
    """A registered architecture: its builder, one line for ``nrflab list``, and whether it is residual
    (residual nets keep PyTorch's init and can use Fixup)."""

    build: ArchBuilder
    description: str
    residual: bool = False


ARCHS: Registry[ArchSpec] = Registry("arch")
"""Every architecture ``create_model`` can build, by name."""


def register_arch(name: str, *, description: str, residual: bool = False) -> Callable[[ArchBuilder], ArchBuilder]:
    """A decorator that registers an architecture builder under ``name`` (lower case)."""
    return ARCHS.register(name.lower(), lambda build: ArchSpec(build, description, residual))


def list_archs(filter: str | None = None) -> list[str]:
    """Registered architecture names, sorted; ``filter`` is a shell pattern (``"resnet*"``)."""
    return sorted(ARCHS.names(filter))


def check_arch(arch: str) -> str:
    """``arch`` lower-cased, or a one-line error listing the choices."""
    key = str(arch).lower()
    if key not in ARCHS:
        raise NrflabError(f"unknown arch {arch!r}; choose one of {', '.join(list_archs())}")
    return key


@register_arch("resnet18", description="CIFAR ResNet-18 (BasicBlock [2,2,2,2])", residual=True)
def _resnet18(nc: int, ic: int, norm: NormFactory, width: float, fixup: bool) -> nn.Module:
    return ResNet(BasicBlock, (2, 2, 2, 2), nc, ic, norm, width, fixup)


@register_arch("resnet50", description="CIFAR ResNet-50 (Bottleneck [3,4,6,3])", residual=True)
def _resnet50(nc: int, ic: int, norm: NormFactory, width: float, fixup: bool) -> nn.Module:
    return ResNet(Bottleneck, (3, 4, 6, 3), nc, ic, norm, width, fixup)


@register_arch("vgg11", description="CIFAR VGG-11")
def _vgg11(nc: int, ic: int, norm: NormFactory, width: float, fixup: bool) -> nn.Module:
    return VGG(VGG_CONFIGS["vgg11"], nc, ic, norm, width)


@register_arch("vgg16", description="CIFAR VGG-16")
def _vgg16(nc: int, ic: int, norm: NormFactory, width: float, fixup: bool) -> nn.Module:
    return VGG(VGG_CONFIGS["vgg16"], nc, ic, norm, width)


@register_arch("smallcnn", description="4 convs + linear head, fast on CPU")
def _smallcnn(nc: int, ic: int, norm: NormFactory, width: float, fixup: bool) -> nn.Module:
    return SmallCNN(nc, ic, norm, width)
