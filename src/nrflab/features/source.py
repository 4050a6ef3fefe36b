"""The source model of a build: loading it, what the card records about it, its representation and the
check that it fits the dataset."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypedDict, cast

import torch
from torch import nn
from typing_extensions import Unpack

from nrflab.core.errors import NrflabError
from nrflab.models.inspection import LoadedModel, file_sha256
from nrflab.models.references import ModelOptions, load_model_reference
from nrflab.runs.rundir import run_dir_of


class SourceInfo(TypedDict):
    """The source model as the card records it (``source``)."""

    path: str | None
    sha256: str | None
    fingerprint: str
    kind: str
    module: str
    model_config: dict[str, object] | None
    reference: dict[str, object]
    adversarially_trained: bool | None
    run_config: dict[str, object] | None


@dataclass
class Source:
    """A source model with what the card records about it."""

    model: nn.Module
    info: SourceInfo
    loaded: LoadedModel


sha256_file = file_sha256
"""The sha256 of a file (cached per path, size and modification time: models are hashed once)."""


def load_source(
    source: str | os.PathLike[str] | nn.Module | LoadedModel,
    device: torch.device,
    **options: Unpack[ModelOptions],
) -> Source:
    """Any model reference (an nrflab run directory or checkpoint, a state dict with ``arch``..., a
    TorchScript file, ``pretrained:NAME``, a factory, or an ``nn.Module``) in eval mode on ``device``;
    ``options`` as :func:`~nrflab.models.references.load_model_reference` takes them.

    Whether the source was adversarially trained is read from its run's config.json when it is an
    nrflab run; the card records the reference, its sha256 and the fingerprint of its weights.
    """
    loaded = load_model_reference(source, device=device, **options)
    model = loaded.module.to(device).eval()
    run_cfg = None
    if loaded.kind == "nrflab":
        run = run_dir_of(loaded.source)
        if run is not None:
            full = run.read_config()
            run_cfg = {
                k: full.get(k)
                for k in (
                    "dataset",
                    "arch",
                    "norm",
                    "width",
                    "epochs",
                    "seed",
                    "adv_train",
                    "adv_eps",
                    "adv_steps",
                    "adv_step_size",
                )
            }
    adv = None if run_cfg is None else run_cfg.get("adv_train", "none") != "none"
    cfg = getattr(model, "config", None)
    info: SourceInfo = {
        "path": loaded.source if loaded.kind not in ("module",) else None,
        "sha256": loaded.sha256,
        "fingerprint": loaded.fingerprint,
        "kind": loaded.kind,
        "module": type(model).__name__,
        "model_config": cfg.to_dict() if cfg is not None and hasattr(cfg, "to_dict") else None,
        "reference": loaded.describe(),
        "adversarially_trained": adv,
        "run_config": run_cfg,
    }
    return Source(model, info, loaded)


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
            raise NrflabError(
                "the source model has no .features(x); give the name of the layer whose output "
                "is the representation (layer=...)"
            )

    def _hook(self, module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        self._captured = output

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.layer is None:
            features = cast(Callable[..., torch.Tensor], self.model.features)  # checked callable in __init__
            return features(x, fake_relu=self.fake_relu).flatten(1)
        self._captured = None
        self.model(x)
        if self._captured is None:
            raise NrflabError(f"layer {self.layer!r} was not called in the model's forward pass")
        return self._captured.flatten(1)

    def distance_loss(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-sample ``||rep(x) - target||_2``: the PGD loss of the inversions (descended, targeted)."""
        return cast(torch.Tensor, (self(x) - target).flatten(1).norm(dim=1))  # Tensor.norm is typed Any


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
