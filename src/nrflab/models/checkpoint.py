"""Checkpoints without pickles: safetensors weights plus JSON, all written atomically.

A model file ``*.safetensors`` carries its ModelConfig in the safetensors metadata and in a JSON
sidecar (``*.json``), so it loads alone; nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from nrflab.core.errors import NrflabError
from nrflab.core.io import atomic_save_tensors, atomic_write_json, load_tensors, read_json, read_metadata
from nrflab.models import ModelConfig, NrfModel, build_model
from nrflab.models.state_dicts import load_state

MODEL_FILE = "model.safetensors"
CONFIG_META_KEY = "nrflab_model_config"


def model_config_of(model: nn.Module) -> ModelConfig | None:
    cfg = getattr(model, "config", None)
    return cfg if isinstance(cfg, ModelConfig) else None


def save_model(model: nn.Module, path: str | os.PathLike[str], extra_metadata: dict[str, str] | None = None) -> Path:
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


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A checkpoint file, or a run directory (then its latest model checkpoint)."""
    path = Path(path)
    if path.is_dir():
        if (path / MODEL_FILE).is_file():
            return path / MODEL_FILE
        raise NrflabError(f"no checkpoint in {path} (expected {MODEL_FILE}); is it an nrflab run directory?")
    if not path.exists():
        raise NrflabError(f"checkpoint not found: {path}")
    return path


def has_model_config(path: str | os.PathLike[str]) -> bool:
    """Whether the weights file ``path`` carries its model config (in its metadata or a JSON sidecar), so that
    :func:`load_model_config` can read it. Reads only the metadata."""
    path = Path(path)
    return CONFIG_META_KEY in read_metadata(path) or path.with_suffix(".json").is_file()


def load_model_config(path: str | os.PathLike[str]) -> ModelConfig:
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


def load_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> NrfModel:
    """Rebuild an nrflab model from a checkpoint file or run directory, in eval mode."""
    path = resolve_checkpoint(path)
    config = load_model_config(path)
    model = build_model(config)
    load_state(model, load_tensors(path), path)
    return model.to(device).eval()


__all__ = ["has_model_config", "load_model", "load_model_config", "load_state", "save_model"]
