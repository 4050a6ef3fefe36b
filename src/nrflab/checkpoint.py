"""Checkpoints without pickles: safetensors weights plus JSON, all written atomically.

A model file ``*.safetensors`` carries its ModelConfig in the safetensors metadata and in a JSON
sidecar (``*.json``), so it loads alone; nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .errors import NrflabError
from .models import ModelConfig, NrfModel, build_model

MODEL_FILE = "model.safetensors"
CONFIG_META_KEY = "nrflab_model_config"


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text via a temporary file and rename, so readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (Path,)):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if torch.is_tensor(obj):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def atomic_save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """``safetensors.save_file`` via a temporary file and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    """Parse a JSON file or raise a one-line error naming it."""
    path = Path(path)
    if not path.exists():
        raise NrflabError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NrflabError(f"{what} {path} is not valid JSON ({exc.__class__.__name__})") from None


def read_yaml_mapping(path: str | os.PathLike, what: str = "config file") -> dict[str, Any]:
    """Parse a YAML (or JSON) file that must hold a mapping, or raise a one-line error naming it."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise NrflabError(f"{what} not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise NrflabError(f"{what} {path} is not valid YAML/JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise NrflabError(f"{what} {path} must hold a mapping of settings")
    return data


def load_tensors(path: str | os.PathLike, what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Read a safetensors file or raise a one-line error (missing, corrupt, not safetensors)."""
    path = Path(path)
    if not path.is_file():
        raise NrflabError(f"{what} not found: {path}")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise NrflabError(f"{what} {path} is not a valid safetensors file ({str(exc).splitlines()[0][:80]})") from None


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise NrflabError(f"checkpoint {path} is not a valid safetensors file ({str(exc).splitlines()[0][:80]})") from None


def model_config_of(model: nn.Module) -> ModelConfig | None:
    cfg = getattr(model, "config", None)
    return cfg if isinstance(cfg, ModelConfig) else None


def save_model(model: nn.Module, path: str | os.PathLike, extra_metadata: dict[str, str] | None = None) -> Path:
    """Save weights and buffers to ``path`` (a ``.safetensors`` file or a directory) plus a JSON sidecar."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path / MODEL_FILE
    metadata = dict(extra_metadata or {})
    cfg = model_config_of(model)
    if cfg is not None:
        metadata[CONFIG_META_KEY] = json.dumps(cfg.to_dict())
    atomic_save_tensors(path, model.state_dict(), metadata)
    if cfg is not None:
        atomic_write_json(path.with_suffix(".json"), cfg.to_dict())
    return path


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file, or a run directory (then its latest model checkpoint)."""
    path = Path(path)
    if path.is_dir():
        for candidate in (path / MODEL_FILE, path / "checkpoints" / "last" / MODEL_FILE):
            if candidate.is_file():
                return candidate
        raise NrflabError(f"no checkpoint in {path} (expected {MODEL_FILE}); is it an nrflab run directory?")
    if not path.exists():
        raise NrflabError(f"checkpoint not found: {path}")
    return path


def load_model_config(path: str | os.PathLike) -> ModelConfig:
    """The ModelConfig stored with a checkpoint (metadata first, then the JSON sidecar)."""
    path = resolve_checkpoint(path)
    meta = read_metadata(path)
    if CONFIG_META_KEY in meta:
        try:
            return ModelConfig.from_dict(json.loads(meta[CONFIG_META_KEY]))
        except (json.JSONDecodeError, TypeError) as exc:
            raise NrflabError(f"checkpoint {path} has a corrupt model config ({exc})") from None
    sidecar = path.with_suffix(".json")
    if sidecar.exists():
        try:
            return ModelConfig.from_dict(read_json(sidecar, "model config"))
        except TypeError as exc:
            raise NrflabError(f"model config {sidecar} is invalid ({exc})") from None
    raise NrflabError(f"checkpoint {path} has no model config (no metadata and no {sidecar.name})")


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> NrfModel:
    """Rebuild an nrflab model from a checkpoint file or run directory, in eval mode."""
    path = resolve_checkpoint(path)
    config = load_model_config(path)
    model = build_model(config)
    load_state(model, load_tensors(path), path)
    return model.to(device).eval()


def load_state(model: nn.Module, tensors: dict[str, torch.Tensor], path: str | os.PathLike = "checkpoint") -> None:
    """Load a state dict strictly, turning key or shape mismatches into one clear error line."""
    try:
        result = model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()
        raise NrflabError(f"checkpoint {path} does not fit the model: {' '.join(first[:2])[:200]}") from None
    del result


__all__ = [
    "atomic_save_tensors",
    "atomic_write_json",
    "atomic_write_text",
    "load_model",
    "load_model_config",
    "load_state",
    "load_tensors",
    "read_json",
    "resolve_checkpoint",
    "save_model",
]
