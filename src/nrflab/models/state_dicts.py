"""Weights files and state-dict layouts: reading a weights file safely and mapping it onto an nrflab arch.

:func:`load_weights_only` reads ``.pt`` / ``.pth`` / ``.bin`` / ``.ckpt`` files with
``torch.load(weights_only=True)``: a pickle that needs code to load (a whole model saved with
``torch.save(model)``, or a malicious file) is refused with one line and never executed.
:func:`extract_state_dict` finds the tensors inside a checkpoint's containers, :func:`canonicalize_state_dict`
renames common layouts (``module.`` / ``_orig_mod.`` / ``model.`` prefixes, the ``robustness`` library,
RobustBench's ``mu``/``sigma``, torchvision ResNet names) to nrflab's, and :func:`state_dict_to_model`
reads the architecture, norm, width, classes and channels off the weights and loads them strictly.

Kept apart from :mod:`nrflab.models.references` (which names and loads models of every kind) because it
is the one place that interprets foreign weights files; the pretrained registry uses it too.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from typing_extensions import TypedDict, Unpack

from nrflab.core.errors import NrflabError
from nrflab.core.records import record
from nrflab.models import ARCHS, NrfModel, check_arch, check_norm, create_model
from nrflab.models.inspection import Normalization, first_line

CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "last")
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.")
NRFLAB_WITHOUT_NORMALIZE = "nrflab (net.) without its normalize.* buffers"


def load_weights_only(path: str | os.PathLike[str]) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU; a pickle that needs code is one line, never executed."""
    path = Path(path)
    if not path.is_file():
        raise NrflabError(f"weights file not found: {path}")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = _unsafe_global(str(exc))
        if not detail and "weights_only" not in str(exc).lower():  # not a pickle needing code: just unreadable
            raise NrflabError(f"{path} is not a readable PyTorch weights file ({first_line(exc)})") from None
        raise NrflabError(
            f"{path} is a pickle that needs code to load{detail} (e.g. a whole model saved with torch.save(model)); "
            f"nrflab loads weights only: save model.state_dict(), export TorchScript, or name a factory "
            f"(module:function)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, AttributeError, TypeError) as exc:
        raise NrflabError(
            f"{path} is not a readable PyTorch weights file ({type(exc).__name__}: {first_line(exc)})"
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
    elif all(k.startswith("net.") for k in sd):
        sd = {k[len("net.") :]: v for k, v in sd.items()}
        layouts.append(NRFLAB_WITHOUT_NORMALIZE)
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
        for prefix in WRAPPER_PREFIXES:
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


@record
class WeightsFit:
    """What building a model from a state dict found: the file's layout (``plain``, ``under 'state_dict'``,
    ...), the input normalization and the notes that say where it came from."""

    layout: str
    normalization: Normalization
    notes: tuple[str, ...]


class ArchOptions(TypedDict, total=False):
    """The architecture of a bare state dict (``--arch``, ``--norm``, ``--num-classes``, ``--width``); a key
    left out or None is read off the weights."""

    arch: str | None
    norm: str | None
    num_classes: int | None
    width: float | None


class ModelOptions(ArchOptions, total=False):
    """:class:`ArchOptions` and the input normalization a model expects (``--mean``, ``--std``): the keywords
    every function that loads a model from outside nrflab takes (``**options: Unpack[ModelOptions]``)."""

    mean: Sequence[float] | None
    std: Sequence[float] | None


def check_option_names(options: Mapping[str, object], function: str) -> None:
    """A keyword that is no model option is a TypeError, as it is for a function that spells its keywords out
    (``**options`` would otherwise take a misspelt one without a word)."""
    unknown = [k for k in options if k not in ModelOptions.__annotations__]
    if unknown:
        raise TypeError(f"{function}() got an unexpected keyword argument {unknown[0]!r}")


def arch_options_of(options: ModelOptions) -> ArchOptions:
    """The four architecture options of ``options``, every one present (None where not given), in flag order."""
    return ArchOptions(
        arch=options.get("arch"),
        norm=options.get("norm"),
        num_classes=options.get("num_classes"),
        width=options.get("width"),
    )


def state_dict_to_model(
    tensors: Any, *, source: str = "weights file", **options: Unpack[ModelOptions]
) -> tuple[NrfModel, WeightsFit]:
    """Build the nrflab model a (possibly wrapped) state dict describes and load it strictly.

    Returns the model (CPU, eval mode) and what the fit found (:class:`WeightsFit`). Architecture,
    norm, width, classes and channels are read off the weights unless given in ``options``; a mismatch is
    one line naming the first differing keys.
    """
    check_option_names(options, "state_dict_to_model")
    arch, norm, num_classes = options.get("arch"), options.get("norm"), options.get("num_classes")
    raw, container = extract_state_dict(tensors, source) if not _is_tensor_mapping(tensors) else (dict(tensors), None)
    sd, found_mean, found_std, layouts = canonicalize_state_dict(raw)
    if container:
        layouts.insert(0, f"under '{container}'")
    normalization, notes = _normalization(
        options.get("mean"), options.get("std"), found_mean, found_std, layouts, source
    )
    first, linear = _stem_and_head(sd, source)
    in_channels = int(sd[first].shape[1])
    classes = int(num_classes) if num_classes is not None else int(linear.shape[0])
    archs = [check_arch(arch)] if arch else _candidate_archs(sd)
    norms = [check_norm(norm)] if norm else _candidate_norms(sd)
    file_sig = {k: tuple(v.shape) for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    best = _best_fit(file_sig, archs, norms, classes, in_channels, options.get("width"), int(sd[first].shape[0]))
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
    state.update(
        {f"net.{k}": v.detach().to(state[f"net.{k}"].dtype) if f"net.{k}" in state else v for k, v in sd.items()}
    )
    load_state(model, state, source)
    return model.eval(), WeightsFit(
        layout=", ".join(layouts) or "plain", normalization=normalization, notes=tuple(notes)
    )


def _stem_and_head(sd: Mapping[str, torch.Tensor], source: str) -> tuple[str, torch.Tensor]:
    """The first convolution's key and the linear head's weight, or one line saying the file is no nrflab arch."""
    first = _first_conv_key(sd)
    linear = sd.get("linear.weight")
    if first is None or linear is None or linear.ndim != 2:
        keys = ", ".join(list(sd)[:6])
        raise NrflabError(
            f"{source} does not look like an nrflab architecture (no first convolution or no 'linear'/'fc' "
            f"head; first keys: {keys}); load it with a factory (module:function)"
        )
    return first, linear


def _normalization(
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    found_mean: tuple[float, ...] | None,
    found_std: tuple[float, ...] | None,
    layouts: Sequence[str],
    source: str,
) -> tuple[Normalization, list[str]]:
    """The input normalization of a state dict: given, found in the file, missing (nrflab's layout without
    its ``normalize.*`` buffers: the dataset's comes later) or none; and the notes that say which."""
    notes: list[str] = []
    if mean is not None and found_mean is not None:
        if _close(mean, found_mean) and _close(std, found_std):
            found_mean = found_std = None
        else:
            raise NrflabError(
                f"{source} carries its own input normalization (mean {_fmt(found_mean)}, std "
                f"{_fmt(found_std)}); --mean/--std would normalize twice: drop them"
            )
    bare_nrflab = NRFLAB_WITHOUT_NORMALIZE in layouts
    if mean is not None:
        if bare_nrflab:
            notes.append(f"normalization used: mean {_fmt(mean)}, std {_fmt(std)} (given; the file has no normalize.*)")
        return Normalization(tuple(mean), tuple(std), "user"), notes  # type: ignore[arg-type]
    if found_mean is not None:
        return Normalization(found_mean, found_std, "checkpoint"), notes
    if bare_nrflab:
        return Normalization(origin="missing"), notes
    notes.append(
        "no normalization found or given: the model is taken to expect [0,1] inputs "
        "(give --mean/--std if it was trained on normalized inputs)"
    )
    return Normalization(), notes


_Fit = tuple[int, str, str, float, dict[str, tuple[int, ...]]]


def _best_fit(
    file_sig: Mapping[str, tuple[int, ...]],
    archs: Sequence[str],
    norms: Sequence[str],
    classes: int,
    in_channels: int,
    width: float | None,
    first_conv_out: int,
) -> _Fit | None:
    """The (score, arch, norm, width, signature) whose state matches ``file_sig`` best; an exact match wins."""
    best: _Fit | None = None
    for a in archs:
        w = float(width) if width is not None else _width_from(a, first_conv_out)
        if not (0 < w <= 64):
            continue
        for n in norms:
            if n == "fixup" and not ARCHS.get(a).residual:
                continue
            sig = {
                k: s
                for k, s in _signature(a, n, classes, in_channels, w).items()
                if not k.endswith("num_batches_tracked")
            }
            if sig == file_sig:
                return (10**9, a, n, w, sig)
            score = sum(1 for k, s in sig.items() if file_sig.get(k) == s) - len(set(file_sig) ^ set(sig))
            if best is None or score > best[0]:
                best = (score, a, n, w, sig)
    return best


def load_state(model: nn.Module, tensors: dict[str, torch.Tensor], path: str | os.PathLike[str] = "checkpoint") -> None:
    """Load a state dict strictly, turning key or shape mismatches into one clear error line."""
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()
        raise NrflabError(f"checkpoint {path} does not fit the model: {' '.join(first[:2])[:200]}") from None


def load_into_module(module: nn.Module, obj: Any, *, source: str, builder: str) -> str:
    """Load a state dict (any container :func:`extract_state_dict` reads) into the user's own module, strictly.

    Wrapper prefixes every key shares (``module.``, ``_orig_mod.``, ``model.``) are stripped while the module's
    own names do not start with them; ``num_batches_tracked`` counters may be absent (the module keeps its
    own). Any other missing, unexpected or differently shaped key is one line naming the first few.
    Returns the layout recognized (for the record).
    """
    raw, container = (dict(obj), None) if _is_tensor_mapping(obj) else extract_state_dict(obj, source)
    expected = module.state_dict()
    layouts = [f"under '{container}'"] if container else []
    sd = dict(raw)
    while sd and set(sd) != set(expected):
        prefix = next(
            (
                p
                for p in WRAPPER_PREFIXES
                if all(k.startswith(p) for k in sd) and not all(k.startswith(p) for k in expected)
            ),
            None,
        )
        if prefix is None:
            break
        sd = {k[len(prefix) :]: v for k, v in sd.items()}
        layouts.append(f"'{prefix}' prefix")
    model_sig = {
        k: tuple(v.shape) for k, v in expected.items() if not (k.endswith("num_batches_tracked") and k not in sd)
    }
    file_sig = {k: tuple(v.shape) for k, v in sd.items()}
    if file_sig != model_sig:
        raise NrflabError(f"{source} does not fit {builder}: {_mismatch(file_sig, model_sig)}")
    module.load_state_dict({**expected, **sd}, strict=True)
    return ", ".join([f"built by {builder}", *layouts])


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


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
