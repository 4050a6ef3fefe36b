"""The five BN variants of a trained model that BN surgery compares (see :mod:`nrflab.measure.bn_surgery`),
each a deep copy: the user's model never changes.

* ``running`` -- as trained and deployed (eval mode);
* ``batch`` -- BN normalizes with each batch's statistics, running buffers dropped;
* ``recalibrated`` -- running statistics re-estimated on clean training images (cumulative average);
* ``affine-only`` -- normalization removed, affine kept: ``y = gamma * x + beta``;
* ``folded`` -- BN folded into the preceding convolutions (``torch.fx``), the rest as per-channel affines.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from nrflab.core.errors import NrflabError
from nrflab.core.modules import model_device
from nrflab.core.records import record

VARIANT_DESCRIPTIONS: dict[str, str] = {
    "running": "running statistics (as trained, eval mode)",
    "batch": "batch statistics of each evaluated batch (BN as in training; buffers untouched)",
    "recalibrated": "running statistics re-estimated on clean training images (cumulative average)",
    "affine-only": "normalization removed, affine kept: y = gamma * x + beta",
    "folded": "BN folded into the preceding convolutions (same function as running)",
}
VARIANTS = tuple(VARIANT_DESCRIPTIONS)


class BatchStatisticsNorm(nn.Module):
    """Normalizes with the statistics of the batch it sees, whatever the mode; keeps no running buffers."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm):
        super().__init__()
        self.eps = float(bn.eps)
        self.weight = nn.Parameter(bn.weight.detach().clone()) if bn.weight is not None else None
        self.bias = nn.Parameter(bn.bias.detach().clone()) if bn.bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)


class ChannelAffine(nn.Module):
    """``y = scale * x + shift`` per channel (dimension 1)."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor):
        super().__init__()
        self.scale = nn.Parameter(scale.detach().clone().float().to(scale.device))
        self.shift = nn.Parameter(shift.detach().clone().float().to(shift.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return x * self.scale.view(shape).to(x.dtype) + self.shift.view(shape).to(x.dtype)


def batchnorm_layers(model: nn.Module) -> list[tuple[str, nn.modules.batchnorm._BatchNorm]]:
    """Every BatchNorm layer of a model (BatchNorm1d/2d/3d and subclasses), with its qualified name."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _replace(model: nn.Module, make: Any) -> int:
    """Replace every BatchNorm layer of ``model`` in place by ``make(bn)``; the number replaced."""
    count = 0
    for name, bn in batchnorm_layers(model):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, make(bn))
        count += 1
    return count


def _require_bn(model: nn.Module) -> None:
    if isinstance(model, torch.jit.ScriptModule):
        raise NrflabError(
            "BN surgery needs an editable nn.Module, not TorchScript; load the model from a state dict "
            "or a factory (module:function)"
        )
    if not batchnorm_layers(model):
        raise NrflabError("the model has no BatchNorm layer: there is nothing to operate on")


def running_statistics_variant(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode: BN uses its running statistics (the deployed model)."""
    _require_bn(model)
    return copy.deepcopy(model).eval()


def batch_statistics_variant(model: nn.Module) -> nn.Module:
    """A deep copy whose BN layers normalize with the statistics of each batch (running buffers dropped)."""
    _require_bn(model)
    out = copy.deepcopy(model).eval()
    _replace(out, BatchStatisticsNorm)
    return out


def affine_only_variant(model: nn.Module) -> nn.Module:
    """A deep copy whose BN layers keep only their affine: ``gamma * x + beta`` (no normalization)."""
    _require_bn(model)
    out = copy.deepcopy(model).eval()

    def make(bn: nn.modules.batchnorm._BatchNorm) -> ChannelAffine:
        c = bn.num_features
        like = bn.weight if bn.weight is not None else next(iter(bn.buffers()), torch.zeros(1))
        gamma = bn.weight.detach() if bn.weight is not None else torch.ones(c, device=like.device)
        beta = bn.bias.detach() if bn.bias is not None else torch.zeros(c, device=like.device)
        return ChannelAffine(gamma, beta)

    _replace(out, make)
    return out


def recalibrated_variant(model: nn.Module, images: torch.Tensor, *, batch_size: int = 256) -> nn.Module:
    """A deep copy whose running statistics are re-estimated on ``images`` (clean training images).

    Every BN's statistics are reset and accumulated as a cumulative average (``momentum=None``) over all
    images in batches of ``batch_size``, with only the BN layers in training mode; then eval mode.
    """
    _require_bn(model)
    if images.shape[0] < 2:
        raise NrflabError("recalibration needs at least 2 images")
    out = copy.deepcopy(model).eval()
    layers = [bn for _, bn in batchnorm_layers(out)]
    momenta = [bn.momentum for bn in layers]
    for bn in layers:
        if not bn.track_running_stats or bn.running_mean is None:
            raise NrflabError(
                "a BatchNorm layer keeps no running statistics (track_running_stats=False): "
                "it always uses batch statistics, there is nothing to recalibrate"
            )
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    device = model_device(out)
    with torch.no_grad():
        for i in range(0, images.shape[0], batch_size):
            chunk = images[i : i + batch_size]
            if chunk.shape[0] < 2:  # a BN batch of one carries no variance
                continue
            out(chunk.to(device))
    for bn, m in zip(layers, momenta):
        bn.momentum = m
    return out.eval()


@record
class FoldInfo:
    """How ``folded`` was built: BN layers folded into convolutions, turned into affines, and why."""

    folded_into_conv: int
    as_affine: int
    traced: bool
    reason: str = ""


def folded_variant(model: nn.Module) -> tuple[nn.Module, FoldInfo]:
    """BN folded into the preceding convolutions (``torch.fx`` conv-BN fusion on a deep copy, eval mode).

    BN layers that do not follow a convolution (or all of them, when the model cannot be traced) become
    the per-channel affine their running statistics define: ``gamma / sqrt(var + eps)`` and
    ``beta - mean * gamma / sqrt(var + eps)``. Either way the function is that of ``running``.
    """
    _require_bn(model)
    total = len(batchnorm_layers(model))
    base = copy.deepcopy(model).eval()
    traced, reason = True, ""
    try:
        from torch.fx.experimental.optimization import fuse

        out = fuse(base, inplace=True)
    except Exception as exc:  # tracing fails on data-dependent control flow: fold into affines only
        out, traced, reason = base, False, f"not traceable with torch.fx ({type(exc).__name__})"
    remaining = _replace(out, _running_affine)
    return out.eval(), FoldInfo(folded_into_conv=total - remaining, as_affine=remaining, traced=traced, reason=reason)


def _running_affine(bn: nn.modules.batchnorm._BatchNorm) -> ChannelAffine:
    if bn.running_mean is None or bn.running_var is None:
        raise NrflabError("a BatchNorm layer keeps no running statistics; it cannot be folded")
    inv = torch.rsqrt(bn.running_var.detach().double() + bn.eps)
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(inv)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(inv)
    scale = gamma * inv
    return ChannelAffine(scale, beta - bn.running_mean.detach().double() * scale)


def make_variants(
    model: nn.Module,
    *,
    calibration_images: torch.Tensor | None = None,
    batch_size: int = 256,
    variants: Sequence[str] = VARIANTS,
) -> tuple[dict[str, nn.Module], FoldInfo | None]:
    """The requested variants (deep copies) by name, and how ``folded`` was built (None if not asked)."""
    unknown = [v for v in variants if v not in VARIANT_DESCRIPTIONS]
    if unknown:
        raise NrflabError(f"unknown BN variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    out: dict[str, nn.Module] = {}
    fold = None
    for name in variants:
        if name == "running":
            out[name] = running_statistics_variant(model)
        elif name == "batch":
            out[name] = batch_statistics_variant(model)
        elif name == "recalibrated":
            if calibration_images is None:
                raise NrflabError("the recalibrated variant needs calibration images (clean training images)")
            out[name] = recalibrated_variant(model, calibration_images, batch_size=batch_size)
        elif name == "affine-only":
            out[name] = affine_only_variant(model)
        else:
            out[name], fold = folded_variant(model)
    return out, fold


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
