"""Normalization layers, switchable by name: the variable the paper studies.

To add one, decorate a factory ``channels -> nn.Module`` with :func:`register_norm`; every architecture,
``create_model(norm=NAME)`` and ``nrflab list`` then know it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from nrflab.core.errors import NrflabError
from nrflab.core.registry import Registry

NormFactory = Callable[[int], nn.Module]
"""``channels -> module``: how an architecture asks for one normalization layer."""


@dataclass(frozen=True)
class NormSpec:
    """A registered normalization: the layer factory and one line for ``nrflab list``."""

    layer: NormFactory
    description: str


NORMS: Registry[NormSpec] = Registry("norm")
"""Every normalization an architecture can use, by name, in the order ``nrflab list`` shows them."""


def register_norm(name: str, *, description: str) -> Callable[[NormFactory], NormFactory]:
    """A decorator that registers a layer factory ``channels -> nn.Module`` under ``name`` (lower case)."""
    return NORMS.register(name.lower(), lambda layer: NormSpec(layer, description))


def list_norms(filter: str | None = None) -> list[str]:
    """Registered normalization names in registration order; ``filter`` is a shell pattern (``"bn*"``)."""
    return NORMS.names(filter)


def check_norm(norm: str) -> str:
    """Return ``norm`` lower-cased, or raise a clear error listing the choices."""
    key = str(norm).lower()
    if key not in NORMS:
        raise NrflabError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
    return key


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm that always normalizes with its running statistics and never updates them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


def norm_layer(norm: str) -> NormFactory:
    """A factory ``channels -> module`` for the given normalization name."""
    return NORMS.get(check_norm(norm)).layer


@register_norm("bn", description="BatchNorm2d: batch statistics in training, running statistics in eval")
def _bn(channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels)


@register_norm(
    "none", description="no normalization: identity everywhere, shortcuts included (the paper's 'without BN')"
)
def _none(channels: int) -> nn.Module:
    return nn.Identity()


@register_norm("gn", description="GroupNorm with up to 32 groups (the largest divisor of the channels <= 32)")
def _gn(channels: int) -> nn.Module:
    return nn.GroupNorm(math.gcd(channels, 32), channels)  # 32 is a power of two: the gcd is that divisor


@register_norm("ln", description="LayerNorm over (C, H, W): GroupNorm with one group, as in the paper's code")
def _ln(channels: int) -> nn.Module:
    return nn.GroupNorm(1, channels)


@register_norm("in", description="InstanceNorm2d with affine parameters")
def _in(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=True)


@register_norm(
    "bn-eval",
    description="BN's per-channel affine only: normalizes with frozen running statistics (0 and 1), "
    "batch statistics never used",
)
def _bn_eval(channels: int) -> nn.Module:
    return FrozenBatchNorm2d(channels)


@register_norm(
    "fixup",
    description="no normalization, ResNets only: Fixup initialization (zero-init last residual conv, "
    "scaled branches, scalar biases) so it trains at lr 0.1 through initialization alone",
)
def _fixup(channels: int) -> nn.Module:
    return nn.Identity()
