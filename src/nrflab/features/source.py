"""The source model of a build: loading it, what the card records about it, its representation and the
check that it fits the dataset."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
from torch import nn

from ..checkpoint import resolve_checkpoint
from ..data import DatasetBundle
from ..errors import NrflabError
from ..io import read_json

@dataclass
class Source:
    """A source model with what the card records about it."""

    model: nn.Module
    info: dict


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_source(source: str | os.PathLike | nn.Module, device: torch.device) -> Source:
    """A checkpoint file, a run directory, or an ``nn.Module`` in eval mode; adversarial training is read
    from the run's config.json when there is one."""
    if isinstance(source, nn.Module):
        cfg = getattr(source, "config", None)
        info = {"path": None, "sha256": None, "module": type(source).__name__,
                "model_config": cfg.to_dict() if hasattr(cfg, "to_dict") else None,
                "adversarially_trained": None, "run_config": None}
        return Source(source.to(device).eval(), info)
    from ..checkpoint import load_model

    path = resolve_checkpoint(source)
    model = load_model(path, device)
    run_cfg = None
    cfg_file = path.parent / "config.json"
    if cfg_file.is_file():
        full = read_json(cfg_file, "run config")
        run_cfg = {k: full.get(k) for k in ("dataset", "arch", "norm", "width", "epochs", "seed", "adv_train",
                                            "adv_eps", "adv_steps", "adv_step_size")}
    adv = None if run_cfg is None else run_cfg.get("adv_train", "none") != "none"
    info = {"path": str(path), "sha256": sha256_file(path), "module": type(model).__name__,
            "model_config": model.config.to_dict(), "adversarially_trained": adv, "run_config": run_cfg}
    return Source(model, info)


class Representation:
    """``rep(x)``: the model's penultimate representation (``.features``), or the flattened output of a
    named layer captured by a forward hook (for user modules without ``.features``)."""

    def __init__(self, model: nn.Module, layer: str | None = None, fake_relu: bool = False):
        self.model = model
        self.layer = layer
        self.fake_relu = fake_relu
        self._captured: torch.Tensor | None = None
        if layer is not None:
            modules = dict(model.named_modules())
            if layer not in modules:
                names = ", ".join(n for n in list(modules)[1:12] if n)
                raise NrflabError(f"the model has no layer {layer!r} (layers: {names}, ...)")
            modules[layer].register_forward_hook(self._hook)
        elif not callable(getattr(model, "features", None)):
            raise NrflabError("the source model has no .features(x); give the name of the layer whose output "
                              "is the representation (layer=...)")

    def _hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self._captured = output

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.layer is None:
            return self.model.features(x, fake_relu=self.fake_relu).flatten(1)
        self._captured = None
        self.model(x)
        if self._captured is None:
            raise NrflabError(f"layer {self.layer!r} was not called in the model's forward pass")
        return self._captured.flatten(1)

    def distance_loss(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-sample ``||rep(x) - target||_2``: the PGD loss of the inversions (descended, targeted)."""
        return (self(x) - target).flatten(1).norm(dim=1)


def check_fits(model: nn.Module, bundle: DatasetBundle, sample: torch.Tensor) -> None:
    """Refuse a source model whose classes or input shape do not match the dataset."""
    cfg = getattr(model, "config", None)
    shape = tuple(getattr(cfg, "input_shape", None) or ())
    channels = getattr(cfg, "in_channels", bundle.input_shape[0])
    if cfg is not None and (cfg.num_classes != bundle.num_classes or channels != bundle.input_shape[0]
                            or (shape and shape != tuple(bundle.input_shape))):
        raise NrflabError(
            f"the source model ({cfg.num_classes} classes, input {shape or 'any'}) does not fit dataset "
            f"{bundle.name!r} ({bundle.num_classes} classes, input {tuple(bundle.input_shape)})")
    with torch.no_grad():
        try:
            out = model(sample)
        except RuntimeError as exc:
            raise NrflabError(f"the source model cannot take {bundle.name!r} images "
                              f"{tuple(bundle.input_shape)}: {str(exc).splitlines()[0][:120]}") from None
    if out.ndim != 2 or out.shape[1] != bundle.num_classes:
        raise NrflabError(f"the source model outputs {tuple(out.shape[1:])} values per image; dataset "
                          f"{bundle.name!r} has {bundle.num_classes} classes")


__all__ = ["Representation", "Source", "check_fits", "load_source", "sha256_file"]
