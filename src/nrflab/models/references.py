"""Model references: one way to name a model, understood by every command that takes one.

A reference is text (or an ``nn.Module`` in Python) that :func:`load_model_reference` turns into a
:class:`LoadedModel` -- a module that takes images in [0,1], in eval mode, with what is known about it
(classes, input shape, normalization, a content hash of its weights, whether it has BatchNorm). The forms:

* an nrflab **run directory** or **checkpoint** (``model.safetensors`` with its config), as before;
* a **state dict**: ``file.safetensors`` without nrflab config, or ``file.pt`` / ``.pth`` / ``.bin`` /
  ``.ckpt`` read with ``torch.load(weights_only=True)``, mapped onto an nrflab architecture. Architecture,
  width, classes and channels are read off the weights unless given (``arch``, ``norm``, ``num_classes``,
  ``width``). Common layouts load: ``module.`` / ``model.`` prefixes, the ``robustness`` library's
  ``module.model.`` / ``module.attacker.model.`` / ``module.normalizer.`` (its mean/std buffers are used),
  RobustBench's CIFAR ResNets (``conv1``, ``layer1.0.conv1``, ``shortcut``, ``linear``, ``mu``/``sigma``),
  and torchvision-named ResNets (``fc``, ``downsample``) with a CIFAR stem. What does not map is refused
  with one line naming the first mismatched keys;
* a **TorchScript** archive (``torch.jit.load``); its program is the model and runs in TorchScript's
  interpreter, not in Python;
* a **Python factory** ``package.module:function`` or ``path/to/file.py:function``: a function without
  arguments that returns an ``nn.Module`` with its weights loaded. This RUNS YOUR OWN CODE: it is the one
  place where nrflab executes code named in its input, and only when you name it;
* a **pretrained** name: ``pretrained:NAME`` or a bare registered name (``nrflab list --pretrained``).

Input conventions are explicit: a model takes [0,1] inputs, or ``mean``/``std`` are given (or found in the
checkpoint) and the normalization becomes the model's first module. :func:`check_model_fits` verifies
classes and input shape against a dataset with a dry forward pass before any attack runs.

Nothing here unpickles code: a pickle that needs code to load (a whole model saved with
``torch.save(model)``, or a malicious file) is refused with one line and never executed.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import math
import os
import pickle
import re
import sys
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import torch
from torch import nn

from ..errors import NrflabError
from . import ARCHS, ModelConfig, Normalize, NrfModel, check_arch, check_norm, create_model

ReferenceKind = Literal["path", "factory-module", "factory-file", "pretrained"]
LoadedKind = Literal["nrflab", "state-dict", "torchscript", "factory", "pretrained", "module"]

STATE_DICT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".tar")
CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "last")
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_BN_TYPE_NAMES = {"BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "FrozenBatchNorm2d"}


# ---------------------------------------------------------------------------------------------
# Typed results


@dataclass(frozen=True)
class Normalization:
    """How a model's inputs are normalized: ``mean``/``std`` per channel inside the model, or none.

    ``origin``: ``none`` (the model takes [0,1] inputs as they are), ``user`` (given as options),
    ``checkpoint`` (buffers found in the weights), ``nrflab`` (an nrflab model's own), ``registry``.
    """

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    origin: str = "none"

    @property
    def inside(self) -> bool:
        """Whether a mean/std normalization is part of the model."""
        return self.mean is not None

    def describe(self) -> str:
        if self.mean is None:
            return "none: the model takes [0,1] inputs"
        fmt = lambda v: ",".join(f"{x:g}" for x in v)  # noqa: E731
        return f"mean {fmt(self.mean)} std {fmt(self.std or ())} ({self.origin}), inside the model"

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": list(self.mean) if self.mean else None,
            "std": list(self.std) if self.std else None,
            "origin": self.origin,
        }


@dataclass(frozen=True)
class ModelReference:
    """A parsed textual reference (see :func:`parse_model_reference`)."""

    kind: ReferenceKind
    text: str
    path: Path | None = None
    target: str | None = None  # module path or pretrained name
    attribute: str | None = None  # factory function name


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

    @property
    def is_nrflab_arch(self) -> bool:
        """Whether ``module`` is an :class:`~nrflab.models.NrfModel` (``features`` and ``net`` available)."""
        return isinstance(self.module, NrfModel)

    def describe(self) -> dict[str, Any]:
        """JSON-ready provenance for records and caches."""
        return {
            "name": self.name,
            "kind": self.kind,
            "source": self.source,
            "sha256": self.sha256,
            "fingerprint": self.fingerprint,
            "arch": self.arch,
            "norm": self.norm,
            "width": self.width,
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "normalization": self.normalization.to_dict(),
            "layout": self.layout,
            "has_batchnorm": self.has_batchnorm,
            "notes": list(self.notes),
        }


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
# Parsing


def parse_model_reference(text: str | os.PathLike[str]) -> ModelReference:
    """Classify a textual model reference, without loading anything.

    Order: ``pretrained:NAME``; an existing file or directory; ``file.py:function`` or
    ``package.module:function`` (a factory); a bare registered pretrained name. Anything else is a
    one-line error saying what was expected.
    """
    raw = str(text).strip()
    if not raw:
        raise NrflabError(
            "empty model reference; give a run directory, a weights file, pretrained:NAME or module:function"
        )
    if raw.startswith("pretrained:"):
        name = raw[len("pretrained:") :].strip()
        if not name:
            raise NrflabError("pretrained: needs a name (see `nrflab list --pretrained`)")
        return ModelReference("pretrained", raw, target=name)
    path = Path(raw).expanduser()
    if path.exists():
        if path.is_file() and path.suffix == ".py":
            raise NrflabError(f"{raw} is a Python file: name the function that builds the model, e.g. {raw}:build")
        return ModelReference("path", raw, path=path)
    factory = re.fullmatch(rf"(.+):({_IDENT})", raw)
    if factory:
        left, attr = factory.group(1), factory.group(2)
        if left.endswith(".py"):
            file = Path(left).expanduser()
            if not file.is_file():
                raise NrflabError(f"factory file not found: {left}")
            return ModelReference("factory-file", raw, path=file, attribute=attr)
        if re.fullmatch(rf"{_IDENT}(\.{_IDENT})*", left):
            return ModelReference("factory-module", raw, target=left, attribute=attr)
    from .pretrained import is_pretrained_name

    if is_pretrained_name(raw):
        return ModelReference("pretrained", raw, target=raw)
    raise NrflabError(
        f"model {raw!r}: no such file or directory, not a registered pretrained name (see `nrflab list "
        f"--pretrained`), and not a factory (package.module:function or path/to/file.py:function)"
    )


# ---------------------------------------------------------------------------------------------
# Loading


def load_model_reference(
    reference: str | os.PathLike[str] | nn.Module | LoadedModel,
    *,
    arch: str | None = None,
    norm: str | None = None,
    num_classes: int | None = None,
    width: float | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    device: str | torch.device = "cpu",
    name: str | None = None,
    weights_dir: str | os.PathLike[str] | None = None,
    allow_unverified: bool = False,
) -> LoadedModel:
    """Load any model reference (see the module docstring) as a :class:`LoadedModel` on ``device``.

    ``arch``/``norm``/``num_classes``/``width`` describe a bare state dict (read off the weights when
    omitted); ``mean``/``std`` wrap a normalization around a model that expects normalized inputs.
    ``weights_dir`` and ``allow_unverified`` apply to pretrained names (see :mod:`nrflab.models.pretrained`).
    An ``nn.Module`` is used as it is (not copied; its device and mode untouched); a ``LoadedModel`` is
    returned as is.
    """
    if isinstance(reference, LoadedModel):
        return reference
    mean_t, std_t = _check_mean_std(mean, std)
    arch_options: dict[str, Any] = {"arch": arch, "norm": norm, "num_classes": num_classes, "width": width}
    if isinstance(reference, nn.Module):
        _refuse_arch_options(arch_options, "an in-memory module")
        return _from_module(
            reference,
            kind="module",
            name=name or type(reference).__name__,
            source=f"<{type(reference).__name__} object>",
            mean=mean_t,
            std=std_t,
            device=device,
            sha256=None,
            eval_mode=False,
        )
    ref = parse_model_reference(reference)
    if ref.kind == "pretrained":
        _refuse_arch_options(arch_options, f"pretrained model {ref.target}")
        if mean_t is not None:
            raise NrflabError(f"pretrained model {ref.target} carries its own input normalization; drop --mean/--std")
        from .pretrained import load_pretrained

        return load_pretrained(
            ref.target or "",
            device=device,
            weights_dir=weights_dir,
            allow_unverified=allow_unverified,
            display_name=name,
        )
    if ref.kind in ("factory-module", "factory-file"):
        _refuse_arch_options(arch_options, f"factory {ref.text}")
        module = _call_factory(ref)
        return _from_module(
            module,
            kind="factory",
            name=name or ref.text,
            source=ref.text,
            mean=mean_t,
            std=std_t,
            device=device,
            sha256=None,
            eval_mode=True,
        )
    assert ref.path is not None
    return _load_path(ref.path, name=name, mean=mean_t, std=std_t, device=device, **arch_options)


def _check_mean_std(
    mean: Sequence[float] | None, std: Sequence[float] | None
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    if (mean is None) != (std is None):
        raise NrflabError("give both --mean and --std (per channel), or neither")
    if mean is None:
        return None, None
    m, s = tuple(float(v) for v in mean), tuple(float(v) for v in std)  # type: ignore[union-attr]
    if not m or len(m) != len(s):
        raise NrflabError(
            f"--mean and --std need the same number of values (one per channel), got {len(m)} and {len(s)}"
        )
    if not all(math.isfinite(v) for v in m) or not all(math.isfinite(v) and v > 0 for v in s):
        raise NrflabError("--mean values must be finite and --std values finite and > 0")
    return m, s


def _refuse_arch_options(options: Mapping[str, Any], what: str) -> None:
    given = [f"--{k.replace('_', '-')}" for k, v in options.items() if v is not None]
    if given:
        raise NrflabError(
            f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for bare state dicts only; "
            f"{what} brings its own architecture"
        )


def _load_path(
    path: Path,
    *,
    name: str | None,
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
    device: str | torch.device,
    arch: str | None,
    norm: str | None,
    num_classes: int | None,
    width: float | None,
) -> LoadedModel:
    from ..checkpoint import CONFIG_META_KEY, read_metadata, resolve_checkpoint

    if path.is_dir():
        return _load_nrflab(
            resolve_checkpoint(path),
            name=name or path.name,
            mean=mean,
            std=std,
            device=device,
            arch=arch,
            norm=norm,
            num_classes=num_classes,
            width=width,
        )
    if path.suffix == ".safetensors":
        meta = read_metadata(path)
        if CONFIG_META_KEY in meta or path.with_suffix(".json").is_file():
            return _load_nrflab(
                path,
                name=name or path.stem,
                mean=mean,
                std=std,
                device=device,
                arch=arch,
                norm=norm,
                num_classes=num_classes,
                width=width,
            )
        from ..checkpoint import load_tensors

        tensors: Any = load_tensors(path, "weights file")
    elif _is_torchscript(path):
        _refuse_arch_options(
            {"arch": arch, "norm": norm, "num_classes": num_classes, "width": width}, f"TorchScript archive {path}"
        )
        return _load_torchscript(path, name=name or path.stem, mean=mean, std=std, device=device)
    else:
        tensors = load_weights_only(path)
    sha = file_sha256(path)
    model, info = state_dict_to_model(
        tensors, arch=arch, norm=norm, num_classes=num_classes, width=width, mean=mean, std=std, source=str(path)
    )
    model = model.to(device).eval()
    cfg = model.config
    return LoadedModel(
        module=model,
        name=name or path.stem,
        kind="state-dict",
        source=str(path),
        num_classes=cfg.num_classes,
        input_shape=None,
        in_channels=cfg.in_channels,
        normalization=info["normalization"],
        sha256=sha,
        fingerprint=weights_fingerprint(model),
        has_batchnorm=has_batchnorm(model),
        arch=cfg.arch,
        norm=cfg.norm,
        width=cfg.width,
        layout=info["layout"],
        notes=tuple(info["notes"]),
    )


def _load_nrflab(
    path: Path,
    *,
    name: str,
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
    device: str | torch.device,
    arch: str | None,
    norm: str | None,
    num_classes: int | None,
    width: float | None,
) -> LoadedModel:
    from ..checkpoint import load_model

    model = load_model(path, device)
    cfg = model.config
    given = {
        "arch": (arch, cfg.arch),
        "norm": (norm, cfg.norm),
        "num_classes": (num_classes, cfg.num_classes),
        "width": (width, cfg.width),
    }
    clash = [
        f"--{k.replace('_', '-')} {v!r} (its config says {c!r})"
        for k, (v, c) in given.items()
        if v is not None and (str(v).lower() if isinstance(v, str) else v) != c
    ]
    if clash:
        raise NrflabError(f"{path} is an nrflab checkpoint with its own config; drop {', '.join(clash)}")
    if mean is not None and (mean != tuple(cfg.mean) or std != tuple(cfg.std)):
        raise NrflabError(
            f"{path} is an nrflab model that normalizes its inputs itself (mean {list(cfg.mean)}, "
            f"std {list(cfg.std)}); drop --mean/--std"
        )
    is_identity = all(m == 0.0 for m in cfg.mean) and all(s == 1.0 for s in cfg.std)
    normalization = Normalization() if is_identity else Normalization(tuple(cfg.mean), tuple(cfg.std), "nrflab")
    return LoadedModel(
        module=model,
        name=name,
        kind="nrflab",
        source=str(path),
        num_classes=cfg.num_classes,
        input_shape=tuple(cfg.input_shape) if cfg.input_shape else None,
        in_channels=cfg.in_channels,
        normalization=normalization,
        sha256=file_sha256(path),
        fingerprint=weights_fingerprint(model),
        has_batchnorm=has_batchnorm(model),
        arch=cfg.arch,
        norm=cfg.norm,
        width=cfg.width,
        layout="nrflab",
    )


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive is a zip with a ``code/`` folder (``torch.save`` zips have none)."""
    if path.suffix in (".ts", ".jit", ".torchscript"):
        return True
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as zf:
            return any("/code/" in n or n.endswith("/constants.pkl") for n in zf.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _load_torchscript(
    path: Path, *, name: str, mean: tuple[float, ...] | None, std: tuple[float, ...] | None, device: str | torch.device
) -> LoadedModel:
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # torch raises RuntimeError and others for a broken archive
        raise NrflabError(f"TorchScript archive {path} could not be loaded ({_first_line(exc)})") from None
    return _from_module(
        module,
        kind="torchscript",
        name=name,
        source=str(path),
        mean=mean,
        std=std,
        device=device,
        sha256=file_sha256(path),
        eval_mode=True,
    )


def _from_module(
    module: nn.Module,
    *,
    kind: LoadedKind,
    name: str,
    source: str,
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
    device: str | torch.device,
    sha256: str | None,
    eval_mode: bool,
    notes: Sequence[str] = (),
) -> LoadedModel:
    if not isinstance(module, nn.Module):
        raise NrflabError(f"{source} returned a {type(module).__name__}, not a torch.nn.Module")
    from ..metrics import model_device

    normalization = Normalization()
    if mean is not None:
        assert std is not None  # _check_mean_std gives both or neither
        module = InputNormalized(module, mean, std).to(model_device(module))
        normalization = Normalization(tuple(mean), tuple(std), "user")
    if kind != "module":  # a module handed over in Python keeps its device and mode
        module = module.to(device)
    if eval_mode:
        module.eval()
    cfg = getattr(module, "config", None)
    num_classes = cfg.num_classes if isinstance(cfg, ModelConfig) else None
    in_channels = cfg.in_channels if isinstance(cfg, ModelConfig) else _first_conv_channels(module)
    shape = tuple(cfg.input_shape) if isinstance(cfg, ModelConfig) and cfg.input_shape else None
    if (
        isinstance(cfg, ModelConfig)
        and mean is None
        and not (all(m == 0 for m in cfg.mean) and all(s == 1 for s in cfg.std))
    ):
        normalization = Normalization(tuple(cfg.mean), tuple(cfg.std), "nrflab")
    return LoadedModel(
        module=module,
        name=name,
        kind=kind,
        source=source,
        num_classes=num_classes,
        input_shape=shape,
        in_channels=in_channels,
        normalization=normalization,
        sha256=sha256,
        fingerprint=weights_fingerprint(module),
        has_batchnorm=has_batchnorm(module),
        arch=cfg.arch if isinstance(cfg, ModelConfig) else None,
        norm=cfg.norm if isinstance(cfg, ModelConfig) else None,
        width=cfg.width if isinstance(cfg, ModelConfig) else None,
        notes=tuple(notes),
    )


def _call_factory(ref: ModelReference) -> nn.Module:
    """Import the user's module and call the named function (this runs the user's own code)."""
    if ref.kind == "factory-file":
        assert ref.path is not None
        digest = hashlib.sha256(str(ref.path.resolve()).encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(f"nrflab_user_factory_{digest}", ref.path)
        if spec is None or spec.loader is None:
            raise NrflabError(f"factory file {ref.path} cannot be imported")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        try:
            spec.loader.exec_module(mod)
        except Exception as exc:
            sys.modules.pop(spec.name, None)
            raise NrflabError(
                f"factory file {ref.path} failed to import ({type(exc).__name__}: {_first_line(exc)})"
            ) from None
    else:
        cwd = os.getcwd()
        added = cwd not in sys.path
        if added:
            sys.path.insert(0, cwd)  # `package.module` relative to where the command runs, as `python -m` does
        try:
            mod = importlib.import_module(ref.target or "")
        except Exception as exc:
            raise NrflabError(
                f"factory module {ref.target} cannot be imported ({type(exc).__name__}: {_first_line(exc)})"
            ) from None
        finally:
            if added and cwd in sys.path:
                sys.path.remove(cwd)
    fn = getattr(mod, ref.attribute or "", None)
    if not callable(fn):
        raise NrflabError(f"factory {ref.text}: {getattr(mod, '__name__', ref.text)} has no function {ref.attribute!r}")
    try:
        module = fn()
    except Exception as exc:
        raise NrflabError(f"factory {ref.text} raised {type(exc).__name__}: {_first_line(exc)}") from None
    if not isinstance(module, nn.Module):
        raise NrflabError(f"factory {ref.text} returned a {type(module).__name__}, not a torch.nn.Module")
    return module


# ---------------------------------------------------------------------------------------------
# Weights files and state-dict layouts


def load_weights_only(path: str | os.PathLike[str]) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU; a pickle that needs code is one line, never executed."""
    path = Path(path)
    if not path.is_file():
        raise NrflabError(f"weights file not found: {path}")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = _unsafe_global(str(exc))
        raise NrflabError(
            f"{path} is a pickle that needs code to load{detail} (e.g. a whole model saved with torch.save(model)); "
            f"nrflab loads weights only: save model.state_dict(), export TorchScript, or name a factory "
            f"(module:function)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, AttributeError, TypeError) as exc:
        raise NrflabError(
            f"{path} is not a readable PyTorch weights file ({type(exc).__name__}: {_first_line(exc)})"
        ) from None


def _unsafe_global(message: str) -> str:
    m = re.search(r"GLOBAL ([\w.]+(?: [\w.]+)?) was not an allowed global", message) or re.search(
        r"Unsupported global: GLOBAL ([\w.]+)", message
    )
    return f" ({m.group(1).replace(' ', '.')})" if m else ""


def extract_state_dict(obj: Any, source: str = "weights file") -> tuple[dict[str, torch.Tensor], str | None]:
    """The tensor mapping inside a loaded checkpoint, and the container key it sat under (None: top level).

    Looks at the top level, then under ``state_dict``, ``model_state_dict``, ``model``, ``net``,
    ``network`` and ``last`` (one level of nesting). Non-tensor entries of a state dict are dropped.
    """

    def tensors_of(d: Any) -> dict[str, torch.Tensor] | None:
        if not isinstance(d, Mapping) or not d:
            return None
        t = {str(k): v for k, v in d.items() if torch.is_tensor(v)}
        return t if t and len(t) >= len(d) / 2 else None

    found = tensors_of(obj)
    if found is not None:
        return found, None
    if isinstance(obj, Mapping):
        for key in CONTAINER_KEYS:
            inner = obj.get(key)
            found = tensors_of(inner)
            if found is not None:
                return found, key
            if isinstance(inner, Mapping):
                for key2 in CONTAINER_KEYS:
                    found = tensors_of(inner.get(key2))
                    if found is not None:
                        return found, f"{key}.{key2}"
        keys = ", ".join(sorted(str(k) for k in obj)[:8])
        raise NrflabError(
            f"{source} holds no state dict (top-level keys: {keys}); nrflab looks at the top level and "
            f"under {', '.join(CONTAINER_KEYS)}"
        )
    raise NrflabError(f"{source} holds a {type(obj).__name__}, not a state dict")


def canonicalize_state_dict(
    tensors: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], tuple[float, ...] | None, tuple[float, ...] | None, list[str]]:
    """Map a state dict of a known layout onto nrflab's network names.

    Returns ``(net_state, mean, std, layouts)``: the network's tensors named as in nrflab's archs (no
    ``net.`` prefix), a normalization found in the file (or None) and the names of the layouts recognized.
    """
    sd = dict(tensors)
    layouts: list[str] = []
    mean = std = None
    sd = _strip_wrappers(sd, layouts)
    if any(k.startswith("model.") for k in sd) and (
        "normalizer.new_mean" in sd or any(k.startswith("attacker.") for k in sd)
    ):
        mean, std = _channel_values(sd.get("normalizer.new_mean")), _channel_values(sd.get("normalizer.new_std"))
        sd = {k[len("model.") :]: v for k, v in sd.items() if k.startswith("model.")}
        layouts.append("robustness library (model./attacker./normalizer.)")
    elif any(k.startswith("net.") for k in sd) and "normalize.mean" in sd:
        mean, std = _channel_values(sd.get("normalize.mean")), _channel_values(sd.get("normalize.std"))
        sd = {k[len("net.") :]: v for k, v in sd.items() if k.startswith("net.")}
        layouts.append("nrflab (normalize./net.)")
    if "mu" in sd and "sigma" in sd:
        mean, std = _channel_values(sd.pop("mu")), _channel_values(sd.pop("sigma"))
        layouts.append("mu/sigma normalization buffers (RobustBench)")
    sd = _strip_wrappers(sd, layouts)
    if any(k.startswith("fc.") for k in sd) or any(".downsample." in k for k in sd):
        sd = {re.sub(r"^fc\.", "linear.", k).replace(".downsample.", ".shortcut."): v for k, v in sd.items()}
        layouts.append("torchvision ResNet names (fc, downsample)")
    if mean is not None and std is None or std is not None and mean is None:
        mean = std = None
    return sd, mean, std, layouts


def _strip_wrappers(sd: dict[str, torch.Tensor], layouts: list[str]) -> dict[str, torch.Tensor]:
    """Strip prefixes that every key shares (DataParallel ``module.``, ``torch.compile``'s ``_orig_mod.``,
    a wrapper's ``model.``), as often as they are nested."""
    changed = True
    while changed and sd:
        changed = False
        for prefix in ("module.", "_orig_mod.", "model."):
            if all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix) :]: v for k, v in sd.items()}
                layouts.append(f"'{prefix}' prefix")
                changed = True
    return sd


def _channel_values(t: torch.Tensor | None) -> tuple[float, ...] | None:
    if t is None or not torch.is_tensor(t):
        return None
    return tuple(float(v) for v in t.detach().float().reshape(-1))


def _signature(arch: str, norm: str, num_classes: int, in_channels: int, width: float) -> dict[str, tuple[int, ...]]:
    """Names and shapes of an nrflab network's state (no ``net.`` prefix), built on the meta device."""
    with torch.device("meta"):
        model = create_model(arch, norm, num_classes, in_channels, width=width)
    return {k[len("net.") :]: tuple(v.shape) for k, v in model.state_dict().items() if k.startswith("net.")}


_BASE_CHANNELS = {"smallcnn": 32}


def _width_from(arch: str, first_conv_out: int) -> float:
    return first_conv_out / _BASE_CHANNELS.get(arch, 64)


def _first_conv_key(sd: Mapping[str, torch.Tensor]) -> str | None:
    for key in ("conv1.weight", "features.0.weight"):
        if key in sd and sd[key].ndim == 4:
            return key
    return next((k for k, v in sd.items() if k.endswith("weight") and v.ndim == 4), None)


def state_dict_to_model(
    tensors: Any,
    *,
    arch: str | None = None,
    norm: str | None = None,
    num_classes: int | None = None,
    width: float | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    source: str = "weights file",
) -> tuple[NrfModel, dict[str, Any]]:
    """Build the nrflab model a (possibly wrapped) state dict describes and load it strictly.

    Returns the model (CPU, eval mode) and ``{"layout", "normalization", "notes"}``. Architecture,
    norm, width, classes and channels are read off the weights unless given; a mismatch is one line naming
    the first differing keys.
    """
    raw, container = extract_state_dict(tensors, source) if not _is_tensor_mapping(tensors) else (dict(tensors), None)
    sd, found_mean, found_std, layouts = canonicalize_state_dict(raw)
    if container:
        layouts.insert(0, f"under '{container}'")
    notes: list[str] = []
    if mean is not None and found_mean is not None:
        if _close(mean, found_mean) and _close(std, found_std):
            found_mean = found_std = None
        else:
            raise NrflabError(
                f"{source} carries its own input normalization (mean {_fmt(found_mean)}, std "
                f"{_fmt(found_std)}); --mean/--std would normalize twice: drop them"
            )
    if mean is not None:
        normalization = Normalization(tuple(mean), tuple(std), "user")  # type: ignore[arg-type]
    elif found_mean is not None:
        normalization = Normalization(found_mean, found_std, "checkpoint")
    else:
        normalization = Normalization()
        notes.append(
            "no normalization found or given: the model is taken to expect [0,1] inputs "
            "(give --mean/--std if it was trained on normalized inputs)"
        )
    first = _first_conv_key(sd)
    linear = sd.get("linear.weight")
    if first is None or linear is None or linear.ndim != 2:
        keys = ", ".join(list(sd)[:6])
        raise NrflabError(
            f"{source} does not look like an nrflab architecture (no first convolution or no 'linear'/'fc' "
            f"head; first keys: {keys}); load it with a factory (module:function)"
        )
    in_channels = int(sd[first].shape[1])
    classes = int(num_classes) if num_classes is not None else int(linear.shape[0])
    archs = [check_arch(arch)] if arch else _candidate_archs(sd)
    norms = [check_norm(norm)] if norm else _candidate_norms(sd)
    file_sig = {k: tuple(v.shape) for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    best: tuple[int, str, str, float, dict[str, tuple[int, ...]]] | None = None
    for a in archs:
        w = float(width) if width is not None else _width_from(a, int(sd[first].shape[0]))
        if not (0 < w <= 64):
            continue
        for n in norms:
            if n == "fixup" and not ARCHS[a].residual:
                continue
            sig = {
                k: s
                for k, s in _signature(a, n, classes, in_channels, w).items()
                if not k.endswith("num_batches_tracked")
            }
            score = sum(1 for k, s in sig.items() if file_sig.get(k) == s) - len(set(file_sig) ^ set(sig))
            if sig == file_sig:
                best = (10**9, a, n, w, sig)
                break
            if best is None or score > best[0]:
                best = (score, a, n, w, sig)
        if best and best[0] == 10**9:
            break
    if best is None:
        raise NrflabError(
            f"{source}: no nrflab architecture with a valid width fits its first convolution {tuple(sd[first].shape)}"
        )
    _, a, n, w, sig = best
    if sig != file_sig:
        raise NrflabError(
            f"{source} does not map onto nrflab {a} (norm {n}, width {w:g}, {classes} classes): "
            f"{_mismatch(file_sig, sig)}{_hint(file_sig, sig)}"
        )
    if not norm and n == "gn" and any(k.endswith(".weight") and k.split(".")[-2].startswith("bn") for k in sd):
        raise NrflabError(
            f"{source} has normalization layers without running statistics (GroupNorm, LayerNorm or "
            f"InstanceNorm): say which with --norm gn|ln|in"
        )
    if any("torchvision" in lay for lay in layouts) and a.startswith("resnet"):
        notes.append(
            "torchvision ResNet names mapped (fc -> linear, downsample -> shortcut); nrflab's CIFAR ResNet "
            "has a 3x3 stem and no max-pool: if the original model had a max-pool, load it with a factory"
        )
    model = create_model(a, n, classes, in_channels, width=w, mean=normalization.mean, std=normalization.std)
    state = model.state_dict()
    for k, v in sd.items():
        state[f"net.{k}"] = v.detach().to(state[f"net.{k}"].dtype) if f"net.{k}" in state else v
    from ..checkpoint import load_state

    load_state(model, state, source)
    return model.eval(), {"layout": ", ".join(layouts) or "plain", "normalization": normalization, "notes": notes}


def _is_tensor_mapping(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(torch.is_tensor(v) for v in obj.values())


def _candidate_archs(sd: Mapping[str, torch.Tensor]) -> list[str]:
    if any(k.startswith("layer") for k in sd):
        deep = any(".conv3." in k for k in sd)
        return ["resnet50", "resnet18"] if deep else ["resnet18", "resnet50"]
    if any(k.startswith("features.") for k in sd):
        return (
            ["vgg16", "vgg11"]
            if len({k.split(".")[1] for k in sd if k.startswith("features.")}) > 20
            else ["vgg11", "vgg16"]
        )
    return [a for a in ARCHS if a not in ("resnet18", "resnet50", "vgg11", "vgg16")] + ["resnet18", "vgg11"]


def _candidate_norms(sd: Mapping[str, torch.Tensor]) -> list[str]:
    if any(k.endswith("running_mean") for k in sd):
        return ["bn"]
    if any(k.endswith("bias1a.bias") for k in sd):
        return ["fixup"]
    return ["none", "gn"]


def _mismatch(file_sig: Mapping[str, tuple[int, ...]], model_sig: Mapping[str, tuple[int, ...]]) -> str:
    shape = [k for k in model_sig if k in file_sig and file_sig[k] != model_sig[k]]
    missing = [k for k in model_sig if k not in file_sig]
    extra = [k for k in file_sig if k not in model_sig]
    parts = []
    if shape:
        parts.append(
            "shapes differ at "
            + ", ".join(f"{k} (file {list(file_sig[k])}, model {list(model_sig[k])})" for k in shape[:2])
        )
    if missing:
        parts.append("missing " + ", ".join(missing[:3]) + (f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""))
    if extra:
        parts.append("unexpected " + ", ".join(extra[:3]) + (f" (+{len(extra) - 3} more)" if len(extra) > 3 else ""))
    return "; ".join(parts)


def _hint(file_sig: Mapping[str, tuple[int, ...]], model_sig: Mapping[str, tuple[int, ...]]) -> str:
    conv1 = file_sig.get("conv1.weight")
    if conv1 and len(conv1) == 4 and conv1[-1] == 7:
        return " -- a 7x7 ImageNet stem (torchvision ResNet) is not an nrflab arch: load it with a factory (module:function)"
    return " -- give --arch/--norm/--width if they were guessed wrong, or load it with a factory (module:function)"


def _close(a: Sequence[float] | None, b: Sequence[float] | None, tol: float = 1e-6) -> bool:
    if a is None or b is None:
        return a is b
    a, b = tuple(a), tuple(b)
    if len(a) != len(b):
        a, b = (a * len(b), b) if len(a) == 1 else (a, b * len(a)) if len(b) == 1 else (a, b)
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b))


def _fmt(values: Sequence[float] | None) -> str:
    return "none" if values is None else "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


# ---------------------------------------------------------------------------------------------
# Facts about a module


def has_batchnorm(module: nn.Module) -> bool:
    """Whether the module contains a BatchNorm layer (plain modules and TorchScript alike)."""
    return any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) or getattr(m, "original_name", None) in _BN_TYPE_NAMES
        for m in module.modules()
    )


def _first_conv_channels(module: nn.Module) -> int | None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            return int(m.in_channels)
        if getattr(m, "original_name", None) == "Conv2d" and hasattr(m, "weight"):
            return int(cast(torch.Tensor, m.weight).shape[1] * getattr(m, "groups", 1))
    return None


def weights_fingerprint(module: nn.Module) -> str:
    """A content hash (hex) of a module's class, nrflab config and every parameter and buffer.

    Two loads of the same weights give the same fingerprint whatever file format carried them; any change
    to a weight or a BatchNorm statistic changes it. Caches of attack results key on it.
    """
    h = hashlib.sha256()
    inner = module.net if isinstance(module, InputNormalized) else module
    h.update(type(inner).__qualname__.encode())
    cfg = getattr(module, "config", None)
    if cfg is not None and hasattr(cfg, "to_dict"):
        h.update(json.dumps(cfg.to_dict(), sort_keys=True).encode())
    for key, value in module.state_dict().items():
        t = value.detach().to("cpu").contiguous().reshape(-1)
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(value.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:32]


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


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
    from ..attacks import frozen_model
    from ..metrics import model_device

    shape = tuple(int(v) for v in input_shape)
    if isinstance(model, LoadedModel):
        loaded, module, label = model, model.module, name or model.name
    else:
        loaded, module, label = None, model, name or type(model).__name__
    what = f"model {label}"
    fits = f"dataset {dataset!r} ({num_classes} classes, input {shape})"
    if loaded is not None:
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
    else:
        cfg = getattr(module, "config", None)
        if cfg is not None and getattr(cfg, "num_classes", num_classes) != num_classes:
            raise NrflabError(f"{what} ({cfg.num_classes} classes) does not fit {fits}")
    channels = _first_conv_channels(module)
    if channels is not None and channels != shape[0]:
        raise NrflabError(f"{what} ({channels} input channels) does not fit {fits}")
    x = torch.full((2, *shape), 0.5, device=model_device(module))
    try:
        with torch.no_grad(), frozen_model(module, "eval"):
            out = module(x)
    except Exception as exc:  # any failure of the user's forward is a misfit, reported in one line
        raise NrflabError(
            f"{what} does not fit {fits}: a forward pass fails ({type(exc).__name__}: {_first_line(exc)})"
        ) from None
    if not torch.is_tensor(out):
        raise NrflabError(
            f"{what} returns a {type(out).__name__}, not a tensor of logits; wrap it in a factory that returns logits"
        )
    if tuple(out.shape) != (2, num_classes):
        raise NrflabError(f"{what} (outputs of shape {tuple(out.shape[1:])} per image) does not fit {fits}")


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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


__all__ = [
    "InputNormalized",
    "LoadedModel",
    "ModelReference",
    "Normalization",
    "canonicalize_state_dict",
    "check_model_fits",
    "describe_model",
    "extract_state_dict",
    "file_sha256",
    "has_batchnorm",
    "load_model_reference",
    "load_weights_only",
    "parse_model_reference",
    "state_dict_to_model",
    "weights_fingerprint",
]
