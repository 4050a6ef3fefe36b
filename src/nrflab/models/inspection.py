"""What nrflab knows about a loaded model, and whether it fits a dataset.

:class:`LoadedModel` is the record every command works from: a module that takes images in [0,1], with
its classes, input shape, input :class:`Normalization`, file sha256, weights fingerprint and whether it has
BatchNorm. This module holds that record and the functions that establish or check its facts
(:func:`has_batchnorm`, :func:`weights_fingerprint`, :func:`file_sha256`, :func:`check_model_fits`,
:func:`describe_model`), apart from how a model is named and loaded (:mod:`nrflab.models.references`) and
how a weights file is read (:mod:`nrflab.models.state_dicts`), so that both can use it without importing
each other.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

import torch
from torch import nn

from nrflab.core.errors import NrflabError
from nrflab.core.records import record, to_json
from nrflab.models import Normalize, NrfModel

LoadedKind = Literal["nrflab", "state-dict", "torchscript", "factory", "pretrained", "module"]

BN_TYPE_NAMES = {"BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "FrozenBatchNorm2d"}


# ---------------------------------------------------------------------------------------------
# The loaded-model record


@record
class Normalization:
    """How a model's inputs are normalized: ``mean``/``std`` per channel inside the model, or none.

    ``origin``: ``none`` (the model takes [0,1] inputs as they are), ``user`` (given as options),
    ``checkpoint`` (buffers found in the weights), ``nrflab`` (an nrflab model's own), ``registry``,
    ``dataset`` (the evaluation dataset's, for an nrflab state dict saved without its ``normalize.*``
    buffers), ``missing`` (such a state dict before :func:`adopt_dataset_normalization` gave it one).
    """

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    origin: str = "none"

    @property
    def inside(self) -> bool:
        """Whether a mean/std normalization is part of the model."""
        return self.mean is not None

    def describe(self) -> str:
        if self.origin == "missing":
            return "missing: an nrflab state dict without its normalize.* buffers (give --mean/--std or a dataset)"
        if self.mean is None:
            return "none: the model takes [0,1] inputs"
        fmt = lambda v: ",".join(f"{x:g}" for x in v)  # noqa: E731
        return f"mean {fmt(self.mean)} std {fmt(self.std or ())} ({self.origin}), inside the model"


#: What :meth:`LoadedModel.describe` records (every field but the module), in the order records have always
#: listed them (``input_shape`` is None or a non-empty shape, so its JSON is None or a list).
DESCRIBED_FIELDS = (
    "name kind source sha256 fingerprint arch norm width num_classes in_channels input_shape normalization layout "
    "has_batchnorm notes"
).split()


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model ready for nrflab: ``module`` takes [0,1] inputs, is in eval mode and sits on the requested
    device (a module handed over in Python keeps its own device and mode).

    ``sha256`` is the file's (None for factories and in-memory modules); ``fingerprint`` is a content hash
    of the module's weights and buffers (what a cache of attack results keys on). ``num_classes`` and
    ``input_shape`` are what is known before a forward pass (None: learn it from :func:`check_model_fits`).
    """

    module: nn.Module = field(repr=False)
    name: str
    kind: LoadedKind
    source: str
    num_classes: int | None
    input_shape: tuple[int, ...] | None
    in_channels: int | None
    normalization: Normalization
    sha256: str | None
    fingerprint: str
    has_batchnorm: bool
    arch: str | None = None
    norm: str | None = None
    width: float | None = None
    layout: str | None = None
    notes: tuple[str, ...] = ()

    def describe(self) -> dict[str, object]:
        """JSON-ready provenance for records and caches: the fields of :data:`DESCRIBED_FIELDS`, in that order."""
        return {k: to_json(getattr(self, k)) for k in DESCRIBED_FIELDS}


class InputNormalized(nn.Module):
    """A model on [0,1] inputs: ``normalize`` (mean/std per channel) then the wrapped ``net``.

    The same names as :class:`~nrflab.models.NrfModel`, for models nrflab did not build.
    """

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.net(self.normalize(x)))


# ---------------------------------------------------------------------------------------------
# Facts about a module


def has_batchnorm(module: nn.Module) -> bool:
    """Whether the module contains a BatchNorm layer (plain modules and TorchScript alike)."""
    return any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) or getattr(m, "original_name", None) in BN_TYPE_NAMES
        for m in module.modules()
    )


def first_conv_channels(module: nn.Module) -> int | None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            return int(m.in_channels)
        if getattr(m, "original_name", None) == "Conv2d" and hasattr(m, "weight"):
            return int(cast(torch.Tensor, m.weight).shape[1] * getattr(m, "groups", 1))
    return None


def _unwrapped(module: nn.Module) -> nn.Module:
    """The model inside ``DataParallel``/``DistributedDataParallel`` (``.module``) or ``torch.compile``
    (``._orig_mod``): the wrapper adds a name prefix, not weights."""
    while True:
        inner = getattr(module, "_orig_mod", None)
        if not isinstance(inner, nn.Module) and type(module).__name__ in ("DataParallel", "DistributedDataParallel"):
            inner = getattr(module, "module", None)
        if not isinstance(inner, nn.Module):
            return module
        module = inner


def _class_name(module: nn.Module) -> str:
    """A module's class name; for a TorchScript module, the class it was compiled from."""
    original = getattr(module, "original_name", None)
    return original if isinstance(original, str) else type(module).__name__


def weights_fingerprint(module: nn.Module) -> str:
    """The one content hash (hex) of a model's weights, whatever container carried them.

    It covers every parameter and buffer of the state dict (name, dtype, shape and bytes, in the module's
    order) and the class of every submodule (a TorchScript module counts as the class it was compiled
    from). It leaves out what the container adds rather than the weights: a ``DataParallel`` /
    ``torch.compile`` wrapper (and so its ``module.`` / ``_orig_mod.`` prefix), nrflab's config record and
    BatchNorm's ``num_batches_tracked`` counters. So the same
    weights give one fingerprint loaded as a factory, a TorchScript archive, a state dict or a run directory,
    while any change to a weight, a BatchNorm statistic or a layer's class (BatchNorm vs frozen BatchNorm)
    changes it. Hyper-parameters that live outside the tensors (a GroupNorm's group count, a stride) are not
    covered: TorchScript does not keep them. Result caches key on it (:mod:`nrflab.transfer.refs` too).
    """
    h = hashlib.sha256()
    inner = _unwrapped(module)
    h.update("/".join(_class_name(m) for m in inner.modules()).encode())
    for key, value in inner.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        t = value.detach().to("cpu").contiguous().reshape(-1)
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(value.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:32]


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def nrflab_loaded(
    model: NrfModel,
    *,
    name: str,
    kind: LoadedKind,
    source: str,
    normalization: Normalization,
    sha256: str,
    layout: str,
    notes: Sequence[str] = (),
) -> LoadedModel:
    """An nrflab-architecture model as a :class:`LoadedModel`: its classes, input shape, channels, arch, norm
    and width read from its config, its fingerprint and BatchNorm flag from its weights."""
    cfg = model.config
    return LoadedModel(
        module=model,
        name=name,
        kind=kind,
        source=source,
        num_classes=cfg.num_classes,
        input_shape=tuple(cfg.input_shape) if cfg.input_shape else None,
        in_channels=cfg.in_channels,
        normalization=normalization,
        sha256=sha256,
        fingerprint=weights_fingerprint(model),
        has_batchnorm=has_batchnorm(model),
        arch=cfg.arch,
        norm=cfg.norm,
        width=cfg.width,
        layout=layout,
        notes=tuple(notes),
    )


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file (cached per path, size and modification time within a process)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


# ---------------------------------------------------------------------------------------------
# Checks against a dataset


def check_model_fits(
    model: LoadedModel | nn.Module,
    *,
    num_classes: int,
    input_shape: Sequence[int],
    dataset: str = "the dataset",
    name: str | None = None,
) -> None:
    """Refuse, with one line, a model whose classes or input shape do not fit a dataset.

    Declared facts are checked first (classes, channels, input shape, length of mean/std); then a dry
    forward pass on two grey images (eval mode, no gradients, the model's mode restored) must return logits
    of shape ``(2, num_classes)``. Run it before any attack.
    """
    from nrflab.core.modules import frozen_model, model_device

    shape = tuple(int(v) for v in input_shape)
    if isinstance(model, LoadedModel):
        loaded, module, label = model, model.module, name or model.name
    else:
        loaded, module, label = None, model, name or type(model).__name__
    what = f"model {label}"
    fits = f"dataset {dataset!r} ({num_classes} classes, input {shape})"
    if loaded is not None:
        _check_declared(loaded, num_classes=num_classes, shape=shape, what=what, fits=fits)
    else:
        cfg = getattr(module, "config", None)
        if cfg is not None and getattr(cfg, "num_classes", num_classes) != num_classes:
            raise NrflabError(f"{what} ({cfg.num_classes} classes) does not fit {fits}")
    channels = first_conv_channels(module)
    if channels is not None and channels != shape[0]:
        raise NrflabError(f"{what} ({channels} input channels) does not fit {fits}")
    x = torch.full((2, *shape), 0.5, device=model_device(module))
    try:
        with torch.no_grad(), frozen_model(module, "eval"):
            out = module(x)
    except Exception as exc:  # any failure of the user's forward is a misfit, reported in one line
        raise NrflabError(
            f"{what} does not fit {fits}: a forward pass fails ({type(exc).__name__}: {first_line(exc)})"
        ) from None
    if not torch.is_tensor(out):
        raise NrflabError(
            f"{what} returns a {type(out).__name__}, not a tensor of logits; wrap it in a factory that returns logits"
        )
    if tuple(out.shape) != (2, num_classes):
        raise NrflabError(f"{what} (outputs of shape {tuple(out.shape[1:])} per image) does not fit {fits}")


def _check_declared(loaded: LoadedModel, *, num_classes: int, shape: tuple[int, ...], what: str, fits: str) -> None:
    """The facts a loaded model declares (classes, channels, input shape, normalization) against a dataset."""
    if loaded.normalization.origin == "missing":
        raise NrflabError(
            f"{what} is an nrflab state dict without its normalize.* buffers: give the mean/std it was trained "
            f"with (--mean/--std; --mean 0 --std 1 for [0,1] inputs), or a command that takes the dataset's"
        )
    declared = []
    if loaded.num_classes is not None and loaded.num_classes != num_classes:
        declared.append(f"{loaded.num_classes} classes")
    if loaded.in_channels is not None and loaded.in_channels != shape[0]:
        declared.append(f"{loaded.in_channels} input channels")
    if loaded.input_shape is not None and tuple(loaded.input_shape) != shape:
        declared.append(f"input {tuple(loaded.input_shape)}")
    mean = loaded.normalization.mean
    if mean is not None and len(mean) not in (1, shape[0]):
        declared.append(f"a normalization for {len(mean)} channels")
    if declared:
        raise NrflabError(f"{what} ({', '.join(declared)}) does not fit {fits}")


def adopt_dataset_normalization(
    loaded: LoadedModel, *, mean: Sequence[float], std: Sequence[float], dataset: str
) -> LoadedModel:
    """Give an nrflab state dict saved without its ``normalize.*`` buffers the dataset's mean/std.

    nrflab trains every model with its training set's mean/std as the first module; a state dict that lost
    those buffers (normalization origin ``missing``) gets them back from the dataset it is evaluated on, with
    a note saying so. Any other model is returned unchanged. Call it before :func:`check_model_fits`.
    """
    module = loaded.module
    if loaded.normalization.origin != "missing" or not isinstance(module, NrfModel):
        return loaded
    m, s = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    config = dataclasses.replace(module.config, mean=m, std=s)
    rebuilt = NrfModel(module.net, config).to(_device_of(module)).eval()
    normalization = Normalization(m, s, "dataset")
    note = f"normalization used: dataset {dataset}'s mean {_values(m)}, std {_values(s)} (the file has no normalize.*)"
    return dataclasses.replace(
        loaded,
        module=rebuilt,
        normalization=normalization,
        fingerprint=weights_fingerprint(rebuilt),
        notes=(*loaded.notes, note),
    )


def _device_of(module: nn.Module) -> torch.device:
    return next((t.device for t in module.state_dict().values()), torch.device("cpu"))


def _values(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


def describe_model(loaded: LoadedModel) -> list[str]:
    """Human-readable lines about a loaded model (printed by the commands before they run)."""
    lines = [
        f"model {loaded.name}: {loaded.kind} from {loaded.source}"
        + (f" ({loaded.arch}, norm {loaded.norm}, width {loaded.width:g})" if loaded.arch else ""),
        f"  input normalization: {loaded.normalization.describe()}",
        f"  weights fingerprint {loaded.fingerprint}"
        + (f", file sha256 {loaded.sha256[:16]}..." if loaded.sha256 else ""),
    ]
    if loaded.layout and loaded.layout not in ("nrflab", "plain"):
        lines.append(f"  layout: {loaded.layout}")
    lines += [f"  note: {n}" for n in loaded.notes]
    return lines


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), for one-line errors."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def model_slug(loaded: LoadedModel) -> str:
    """A file-name-safe short name of a model."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", loaded.name).strip("-.")[:60] or "model"


__all__ = [
    "LoadedModel",
    "adopt_dataset_normalization",
    "check_model_fits",
    "describe_model",
    "file_sha256",
    "first_line",
    "model_slug",
    "weights_fingerprint",
]
