"""Model references: one way to name a model, understood by every command that takes one.

A reference is text (or an ``nn.Module`` in Python) that :func:`load_model_reference` turns into a
:class:`LoadedModel` -- a module that takes images in [0,1], in eval mode, with what is known about it
(classes, input shape, normalization, a content hash of its weights, whether it has BatchNorm). The forms:

* an nrflab **run directory** or **checkpoint** (``model.safetensors`` with its config), as before;
* a **state dict**: ``file.safetensors`` without nrflab config, or ``.pt`` / ``.pth`` / ``.bin`` / ``.ckpt``
  read with ``torch.load(weights_only=True)``, mapped onto an nrflab architecture read off the weights
  unless given (``arch``, ``norm``, ``num_classes``, ``width``). Known layouts load (:mod:`.state_dicts`);
  nrflab's own without its ``normalize.*`` buffers takes ``mean``/``std`` or, in a command, the dataset's.
  With ``arch="package.module:Net"`` or ``"path/to/file.py:make"`` the module is built by your class or
  factory and the state dict (any container, wrapper prefixes stripped) is loaded into it strictly;
* a **TorchScript** archive (``torch.jit.load``); its program is the model and runs in TorchScript's
  interpreter, not in Python;
* a **Python factory** ``package.module:function`` or ``path/to/file.py:function``, optionally with keyword
  arguments ``?norm=none,width=2``, that returns an ``nn.Module`` with its weights loaded
  (:mod:`nrflab.models.factory`: what a factory receives and may import). This RUNS YOUR OWN CODE: it is the
  one place where nrflab executes code named in its input, and only when you name it;
* a **pretrained** name: ``pretrained:NAME`` or a bare registered name (``nrflab list --pretrained``).

Input conventions are explicit: a model takes [0,1] inputs, or ``mean``/``std`` are given (or found in the
checkpoint) and the normalization becomes the model's first module. :func:`check_model_fits` verifies
classes and input shape against a dataset with a dry forward pass before any attack runs.

Nothing here unpickles code: a pickle that needs code to load (a whole model saved with
``torch.save(model)``, or a malicious file) is refused with one line and never executed.

This module parses a reference (:class:`ModelReference`) and loads each kind. Weights files and state-dict
layouts live in :mod:`nrflab.models.state_dicts`; the :class:`LoadedModel` record, its facts (the one
fingerprint) and the checks against a dataset in :mod:`nrflab.models.inspection` (re-exported here).
"""

from __future__ import annotations

import dataclasses
import math
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from typing_extensions import Unpack

from nrflab.core.errors import NrflabError
from nrflab.models import ModelConfig
from nrflab.models.factory import FactorySpec, call_factory, looks_like_factory, parse_factory, with_arguments
from nrflab.models.inspection import (
    InputNormalized,
    LoadedKind,
    LoadedModel,
    Normalization,
    file_sha256,
    first_conv_channels,
    first_line,
    has_batchnorm,
    nrflab_loaded,
    weights_fingerprint,
)
from nrflab.models.state_dicts import (
    ArchOptions,
    ModelOptions,
    arch_options_of,
    check_option_names,
    load_into_module,
    load_weights_only,
    state_dict_to_model,
)

ReferenceKind = Literal["path", "factory-module", "factory-file", "pretrained"]


# ---------------------------------------------------------------------------------------------
# Typed reference


@dataclass(frozen=True)
class ModelReference:
    """A parsed textual reference (see :func:`parse_model_reference`)."""

    kind: ReferenceKind
    text: str
    path: Path | None = None
    target: str | None = None  # module path or pretrained name
    attribute: str | None = None  # factory function name
    factory: FactorySpec | None = None  # a factory's file or module, callable and arguments


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
    if looks_like_factory(raw):
        factory = parse_factory(raw)
        kind: ReferenceKind = "factory-file" if factory.path is not None else "factory-module"
        return ModelReference(
            kind, raw, path=factory.path, target=factory.module, attribute=factory.attribute, factory=factory
        )
    from nrflab.models.pretrained import is_pretrained_name

    if is_pretrained_name(raw):
        return ModelReference("pretrained", raw, target=raw)
    raise NrflabError(
        f"model {raw!r}: no such file or directory, not a registered pretrained name (see `nrflab list "
        f"--pretrained`), and not a factory (package.module:function or path/to/file.py:function)"
    )


def with_factory_arguments(
    pairs: Sequence[str], *, arch: str | None, model: str | None
) -> tuple[str | None, str | None]:
    """``(arch, model)`` with the ``--factory-arg`` pairs added to the factory they are for: the class or
    factory ``arch`` names when it names one, else the model reference when it is a factory. Anything else
    (a registered architecture, a weights file without ``--arch CLASS``) is one line: the pairs would go
    nowhere."""
    if not pairs:
        return arch, model
    if arch is not None and looks_like_factory(arch):
        return with_arguments(arch, pairs), model
    if model is not None and parse_model_reference(model).factory is not None:
        return arch, with_arguments(model, pairs)
    raise NrflabError(
        "--factory-arg is for your own class or factory: give --arch package.module:Net (or file.py:make) "
        "with the weights, or a model package.module:function"
    )


# ---------------------------------------------------------------------------------------------
# Loading


def load_model_reference(
    reference: str | os.PathLike[str] | nn.Module | LoadedModel,
    *,
    device: str | torch.device = "cpu",
    name: str | None = None,
    weights_dir: str | os.PathLike[str] | None = None,
    allow_unverified: bool = False,
    **options: Unpack[ModelOptions],
) -> LoadedModel:
    """Load any model reference (see the module docstring) as a :class:`LoadedModel` on ``device``.

    ``options``: ``arch``/``norm``/``num_classes``/``width`` describe a bare state dict (read off the weights
    when omitted); ``mean``/``std`` wrap a normalization around a model that expects normalized inputs.
    ``weights_dir`` and ``allow_unverified`` apply to pretrained names (see :mod:`nrflab.models.pretrained`).
    An ``nn.Module`` is used as it is (not copied; its device and mode untouched); a ``LoadedModel`` is
    returned as is.
    """
    check_option_names(options, "load_model_reference")
    if isinstance(reference, LoadedModel):
        return reference
    mean_t, std_t = _check_mean_std(options.get("mean"), options.get("std"))
    arch_options = arch_options_of(options)
    if isinstance(reference, nn.Module):
        _refuse_arch_options(arch_options, "an in-memory module")
        label = type(reference).__name__
        return _from_module(
            reference, kind="module", name=name or label, source=f"<{label} object>", mean=mean_t, std=std_t,
            device=device,
        )  # fmt: skip
    ref = parse_model_reference(reference)
    if ref.kind == "pretrained":
        _refuse_arch_options(arch_options, f"pretrained model {ref.target}")
        return _load_pretrained(
            ref, mean=mean_t, device=device, name=name, weights_dir=weights_dir, allow=allow_unverified
        )
    if ref.kind in ("factory-module", "factory-file"):
        _refuse_arch_options(arch_options, f"factory {ref.text}")
        assert ref.factory is not None
        return _from_module(
            call_factory(ref.factory), kind="factory", name=name or ref.text, source=ref.text, mean=mean_t,
            std=std_t, device=device,
        )  # fmt: skip
    assert ref.path is not None
    arch = arch_options["arch"]
    if arch is not None and looks_like_factory(arch):
        others = {k: v for k, v in arch_options.items() if k != "arch"}
        return _load_with_factory(ref.path, arch, others, name=name, mean=mean_t, std=std_t, device=device)
    return _load_path(ref.path, name=name, mean=mean_t, std=std_t, device=device, options=arch_options)


def _load_pretrained(
    ref: ModelReference,
    *,
    mean: tuple[float, ...] | None,
    device: str | torch.device,
    name: str | None,
    weights_dir: str | os.PathLike[str] | None,
    allow: bool,
) -> LoadedModel:
    """A registered pretrained model (which brings its own normalization: ``mean`` must be None)."""
    if mean is not None:
        raise NrflabError(f"pretrained model {ref.target} carries its own input normalization; drop --mean/--std")
    from nrflab.models.pretrained import load_pretrained

    target = ref.target or ""
    return load_pretrained(target, device=device, weights_dir=weights_dir, allow_unverified=allow, display_name=name)


def _load_with_factory(
    path: Path,
    arch: str,
    others: Mapping[str, Any],
    *,
    name: str | None,
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
    device: str | torch.device,
) -> LoadedModel:
    """A state dict loaded strictly into the module the user's class or factory builds (``--arch mod:Net``)."""
    factory = parse_factory(arch)
    given = [f"--{k.replace('_', '-')}" for k, v in others.items() if v is not None]
    if given:
        raise NrflabError(
            f"{', '.join(given)} describe{'s' if len(given) == 1 else ''} nrflab architectures, not "
            f"{factory.text}; pass your class's own arguments in --arch ({factory.text.split('?')[0]}?key=value,...)"
        )
    from nrflab.core.io import load_tensors

    if _is_nrflab_file(path):
        raise NrflabError(f"{path} is an nrflab checkpoint with its own architecture; drop --arch {factory.text}")
    if _is_torchscript(path):
        raise NrflabError(f"TorchScript archive {path} brings its own architecture; drop --arch {factory.text}")
    tensors: Any = load_tensors(path, "weights file") if path.suffix == ".safetensors" else load_weights_only(path)
    module = call_factory(factory)
    layout = load_into_module(module, tensors, source=str(path), builder=factory.call_text() + f" from {factory.where}")
    loaded = _from_module(
        module, kind="state-dict", name=name or path.stem, source=path, mean=mean, std=std, device=device
    )
    return dataclasses.replace(loaded, layout=layout)


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


def _is_nrflab_file(path: Path) -> bool:
    """A run directory, or a ``.safetensors`` file with nrflab's model config (in it or beside it)."""
    from nrflab.core.io import read_metadata
    from nrflab.models.checkpoint import CONFIG_META_KEY

    if path.is_dir():
        return True
    return path.suffix == ".safetensors" and (
        CONFIG_META_KEY in read_metadata(path) or path.with_suffix(".json").is_file()
    )


def _load_path(
    path: Path,
    *,
    name: str | None,
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
    device: str | torch.device,
    options: ArchOptions,
) -> LoadedModel:
    from nrflab.core.io import load_tensors
    from nrflab.models.checkpoint import resolve_checkpoint

    if _is_nrflab_file(path):
        file = resolve_checkpoint(path) if path.is_dir() else path
        label = path.name if path.is_dir() else path.stem
        return _load_nrflab(file, name=name or label, mean=mean, std=std, device=device, options=options)
    if path.suffix == ".safetensors":
        tensors: Any = load_tensors(path, "weights file")
    elif _is_torchscript(path):
        _refuse_arch_options(options, f"TorchScript archive {path}")
        return _load_torchscript(path, name=name or path.stem, mean=mean, std=std, device=device)
    else:
        tensors = load_weights_only(path)
    sha = file_sha256(path)
    model, info = state_dict_to_model(tensors, mean=mean, std=std, source=str(path), **options)
    return nrflab_loaded(
        model.to(device).eval(),
        name=name or path.stem,
        kind="state-dict",
        source=str(path),
        normalization=info.normalization,
        sha256=sha,
        layout=info.layout,
        notes=info.notes,
    )


def _load_nrflab(
    path: Path,
    *,
    name: str,
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
    device: str | torch.device,
    options: Mapping[str, Any],
) -> LoadedModel:
    """An nrflab checkpoint; ``options`` (arch, norm, num_classes, width) may only repeat its config."""
    from nrflab.models.checkpoint import load_model

    model = load_model(path, device)
    cfg = model.config
    clash = [
        f"--{k.replace('_', '-')} {v!r} (its config says {getattr(cfg, k)!r})"
        for k, v in options.items()
        if v is not None and (str(v).lower() if isinstance(v, str) else v) != getattr(cfg, k)
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
    return nrflab_loaded(
        model,
        name=name,
        kind="nrflab",
        source=str(path),
        normalization=normalization,
        sha256=file_sha256(path),
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
        raise NrflabError(f"TorchScript archive {path} could not be loaded ({first_line(exc)})") from None
    return _from_module(module, kind="torchscript", name=name, source=path, mean=mean, std=std, device=device)


def _from_module(
    module: nn.Module,
    *,
    kind: LoadedKind,
    name: str,
    source: str | Path,
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
    device: str | torch.device,
    notes: Sequence[str] = (),
) -> LoadedModel:
    """``module`` as a LoadedModel; a file ``source`` (a Path) gives its sha256. Any module but one handed over
    in Python (``kind="module"``, which keeps its device and mode) is moved to ``device`` in eval mode."""
    if not isinstance(module, nn.Module):
        raise NrflabError(f"{source} returned a {type(module).__name__}, not a torch.nn.Module")
    from nrflab.core.modules import model_device

    normalization = Normalization()
    if mean is not None:
        assert std is not None  # _check_mean_std gives both or neither
        module = InputNormalized(module, mean, std).to(model_device(module))
        normalization = Normalization(tuple(mean), tuple(std), "user")
    if kind != "module":  # a module handed over in Python keeps its device and mode
        module = module.to(device).eval()
    cfg = getattr(module, "config", None)
    num_classes = cfg.num_classes if isinstance(cfg, ModelConfig) else None
    in_channels = cfg.in_channels if isinstance(cfg, ModelConfig) else first_conv_channels(module)
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
        source=str(source),
        num_classes=num_classes,
        input_shape=shape,
        in_channels=in_channels,
        normalization=normalization,
        sha256=file_sha256(source) if isinstance(source, Path) else None,
        fingerprint=weights_fingerprint(module),
        has_batchnorm=has_batchnorm(module),
        arch=cfg.arch if isinstance(cfg, ModelConfig) else None,
        norm=cfg.norm if isinstance(cfg, ModelConfig) else None,
        width=cfg.width if isinstance(cfg, ModelConfig) else None,
        notes=tuple(notes),
    )


__all__ = ["ModelOptions", "load_model_reference", "with_factory_arguments"]
