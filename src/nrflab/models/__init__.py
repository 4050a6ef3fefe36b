"""Lives here: architectures and normalizations (registries), create_model, ModelConfig, checkpoints, outside models.
Never here: training, attacks, measuring, datasets; nothing here imports a room other than ``core``.
To add one: ``@register_arch`` (models/archs.py), ``@register_norm`` (models/norms.py), ``register_pretrained``.

``create_model(arch, norm, ...)`` builds from the registries; every model takes inputs in [0,1]. The dataset's
mean/std normalization is the model's first module (the RobustBench/AutoAttack convention), so attacks, LIGS and
feature datasets all work in pixel space.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, cast

import torch
from torch import nn

from nrflab.core.errors import NrflabError
from nrflab.core.records import fields_json
from nrflab.models.archs import ARCHS, BasicBlock, Bottleneck, ResNet, check_arch, list_archs, register_arch
from nrflab.models.norms import NORMS, check_norm, list_norms, norm_layer, register_norm

INITS = ("kaiming", "torch", "fixup")


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model; saved as JSON next to its weights."""

    arch: str
    norm: str = "bn"
    num_classes: int = 10
    in_channels: int = 3
    width: float = 1.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    init: str = "auto"
    input_shape: tuple[int, ...] | None = None

    def to_dict(self) -> dict[str, object]:
        """The JSON form (what checkpoints store and :meth:`from_dict` reads back)."""
        return fields_json(self)

    @classmethod
    def from_dict(cls, d: Any) -> ModelConfig:
        """Rebuild from stored JSON, checking every field's type and range (checkpoint metadata is input too)."""
        if not isinstance(d, dict):
            raise NrflabError(f"model config must be a mapping, not {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise NrflabError(f"model config has unknown fields {sorted(unknown)}")
        if "arch" not in d:
            raise NrflabError("model config lacks its arch")
        try:
            from pydantic import TypeAdapter, ValidationError

            cfg = TypeAdapter(cls).validate_python(dict(d))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err.get("loc", ()))
            raise NrflabError(f"model config field {where}: {err.get('msg', 'invalid')}") from None
        check_arch(cfg.arch)
        check_norm(cfg.norm)
        if cfg.num_classes < 2:
            raise NrflabError(f"model config num_classes must be >= 2, got {cfg.num_classes}")
        if cfg.in_channels < 1:
            raise NrflabError(f"model config in_channels must be >= 1, got {cfg.in_channels}")
        if not (0 < cfg.width <= 64 and math.isfinite(cfg.width)):
            raise NrflabError(f"model config width must be in (0, 64], got {cfg.width}")
        if any(s <= 0 or not math.isfinite(s) for s in cfg.std) or any(not math.isfinite(m) for m in cfg.mean):
            raise NrflabError("model config mean/std must be finite (std > 0)")
        return cfg


class Normalize(nn.Module):
    """(x - mean) / std per channel; the first layer of every nrflab model."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class NrfModel(nn.Module):
    """A classifier on [0,1] inputs: ``normalize`` then ``net``; ``features`` gives the representation."""

    def __init__(self, net: nn.Module, config: ModelConfig):
        super().__init__()
        self.normalize = Normalize(config.mean, config.std)
        self.net = net
        self.config = config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.net(self.normalize(x)))

    def features(self, x: torch.Tensor, fake_relu: bool = False) -> torch.Tensor:
        """The penultimate representation (after global pooling, before the linear head)."""
        forward_features = cast(Callable[..., torch.Tensor], self.net.forward_features)
        return forward_features(self.normalize(x), fake_relu=fake_relu)


def default_init(arch: str, norm: str) -> str:
    """The initialization under which the arch trains with this norm (recorded in the config).

    ResNets keep PyTorch's default init, as the paper's code does: with identity shortcuts the no-norm
    ResNet trains at lr 0.1 under it, while fan-in Kaiming makes its logits grow with depth. Plain
    stacks (smallcnn, VGG) get fan-in Kaiming, without which their no-norm variants barely train.
    """
    if norm == "fixup":
        return "fixup"
    return "torch" if ARCHS.get(arch).residual else "kaiming"


def create_model(
    arch: str,
    norm: str = "bn",
    num_classes: int = 10,
    in_channels: int = 3,
    width: float = 1.0,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    init: str = "auto",
    input_shape: Sequence[int] | None = None,
    seed: int | None = None,
) -> NrfModel:
    """Build a model from the registry.

    ``init``: ``kaiming`` (fan-in, ReLU gain: lets no-norm nets train), ``torch`` (PyTorch defaults,
    as in the paper's code), ``fixup`` (ResNets; implied by ``norm='fixup'``), or ``auto``.
    ``seed`` makes the initial weights reproducible without touching the global RNG.
    """
    arch_key, norm_key = check_arch(arch), check_norm(norm)
    if num_classes < 2:
        raise NrflabError(f"num_classes must be >= 2, got {num_classes}")
    if in_channels < 1:
        raise NrflabError(f"in_channels must be >= 1, got {in_channels}")
    if not (0 < width <= 64 and math.isfinite(width)):
        raise NrflabError(f"width must be in (0, 64], got {width}")
    spec = ARCHS.get(arch_key)
    if norm_key == "fixup" and not spec.residual:
        raise NrflabError(f"norm 'fixup' needs a residual arch (resnet18, resnet50), not {arch_key!r}")
    init_key = default_init(arch_key, norm_key) if init == "auto" else str(init).lower()
    if init_key not in INITS:
        raise NrflabError(f"unknown init {init!r}; choose one of auto, {', '.join(INITS)}")
    if init_key == "fixup" and norm_key != "fixup":
        raise NrflabError("init 'fixup' goes with norm 'fixup'")
    mean = tuple(float(m) for m in (mean if mean is not None else (0.0,) * in_channels))
    std = tuple(float(s) for s in (std if std is not None else (1.0,) * in_channels))
    if len(mean) not in (1, in_channels) or len(std) not in (1, in_channels):
        allowed = "1 value each" if in_channels == 1 else f"1 value (for every channel) or {in_channels} values each"
        raise NrflabError(
            f"mean/std need {allowed} for a model with {in_channels} input channel{'s' if in_channels > 1 else ''}, "
            f"got {len(mean)} mean and {len(std)} std value{'s' if len(std) != 1 else ''}"
        )
    if any(s <= 0 for s in std):
        raise NrflabError("std values must be > 0")
    config = ModelConfig(
        arch=arch_key,
        norm=norm_key,
        num_classes=int(num_classes),
        in_channels=int(in_channels),
        width=float(width),
        mean=mean,
        std=std,
        init=init_key,
        input_shape=tuple(int(v) for v in input_shape) if input_shape else None,
    )
    return build_model(config, seed=seed)


def build_model(config: ModelConfig, seed: int | None = None) -> NrfModel:
    """Instantiate the network a ModelConfig describes (weights initialized, not loaded)."""
    spec = ARCHS.get(check_arch(config.arch))
    fork = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
    with fork:
        if seed is not None:
            torch.manual_seed(seed)
        net = spec.build(
            config.num_classes, config.in_channels, norm_layer(config.norm), config.width, config.norm == "fixup"
        )
        init_weights(net, config.init)
    return NrfModel(net, config)


def init_weights(net: nn.Module, init: str) -> None:
    """Apply the named initialization in place."""
    if init == "torch":
        return
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    head = getattr(net, "classifier", None)
    if isinstance(head, nn.Linear):
        # The head has no ReLU after it: unit gain keeps logits at a sane scale at initialization.
        nn.init.kaiming_normal_(head.weight, mode="fan_in", nonlinearity="linear")
    if init == "fixup":
        _fixup_init(net)


def _fixup_init(net: nn.Module) -> None:
    """Fixup (Zhang et al. 2019): scale residual branches by L^(-1/(2m-2)), zero their last conv and the head."""
    blocks = cast(ResNet, net).blocks()
    depth = len(blocks)
    for b in blocks:
        convs = cast(BasicBlock | Bottleneck, b).branch_convs()
        m = len(convs)
        for conv in convs[:-1]:
            nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
            conv.weight.data.mul_(depth ** (-1.0 / (2 * m - 2)))
        nn.init.zeros_(convs[-1].weight)
    head = cast(nn.Linear, net.classifier)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_pretrained(name: str, **kwargs: Any) -> Any:
    """A registered pretrained model as a ``LoadedModel`` (see :mod:`nrflab.models.pretrained`)."""
    from nrflab.models.pretrained import load_pretrained as _load

    return _load(name, **kwargs)


def list_pretrained(filter: str | None = None) -> list[str]:
    """Names in the pretrained registry, sorted (``nrflab list --pretrained``); ``filter`` is a shell pattern."""
    from nrflab.models.pretrained import list_pretrained as _names

    return _names(filter)


__all__ = [
    "ARCHS",
    "INITS",
    "ModelConfig",
    "NORMS",
    "Normalize",
    "NrfModel",
    "build_model",
    "check_arch",
    "check_norm",
    "count_parameters",
    "create_model",
    "list_archs",
    "list_norms",
    "list_pretrained",
    "load_pretrained",
    "register_arch",
    "register_norm",
]
