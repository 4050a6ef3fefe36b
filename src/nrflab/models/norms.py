"""Normalization layers, switchable by name: the variable the paper studies."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from nrflab.core.errors import NrflabError

NORM_DESCRIPTIONS: dict[str, str] = {
    "bn": "BatchNorm2d: batch statistics in training, running statistics in eval",
    "none": "no normalization: identity everywhere, shortcuts included (the paper's 'without BN')",
    "gn": "GroupNorm with up to 32 groups (the largest divisor of the channels <= 32)",
    "ln": "LayerNorm over (C, H, W): GroupNorm with one group, as in the paper's code",
    "in": "InstanceNorm2d with affine parameters",
    "bn-eval": "BN's per-channel affine only: normalizes with frozen running statistics (0 and 1), "
    "batch statistics never used",
    "fixup": "no normalization, ResNets only: Fixup initialization (zero-init last residual conv, "
    "scaled branches, scalar biases) so it trains at lr 0.1 through initialization alone",
}
NORMS = tuple(NORM_DESCRIPTIONS)


def check_norm(norm: str) -> str:
    """Return ``norm`` lower-cased, or raise a clear error listing the choices."""
    key = str(norm).lower()
    if key not in NORM_DESCRIPTIONS:
        raise NrflabError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
    return key


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm that always normalizes with its running statistics and never updates them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


def group_count(channels: int, max_groups: int = 32) -> int:
    return math.gcd(channels, max_groups)


def norm_layer(norm: str) -> Callable[[int], nn.Module]:
    """A factory ``channels -> module`` for the given normalization name."""
    key = check_norm(norm)
    if key == "bn":
        return nn.BatchNorm2d
    if key == "bn-eval":
        return FrozenBatchNorm2d
    if key == "gn":
        return lambda c: nn.GroupNorm(group_count(c), c)
    if key == "ln":
        return lambda c: nn.GroupNorm(1, c)
    if key == "in":
        return lambda c: nn.InstanceNorm2d(c, affine=True)
    return lambda c: nn.Identity()  # "none" and "fixup"
