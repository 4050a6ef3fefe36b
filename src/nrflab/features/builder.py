"""The images a build starts from and the shard builder: one PGD run per batch, every random draw of a
shard keyed on (seed, shard index) so a resumed build equals an uninterrupted one."""

from __future__ import annotations

import os
from collections.abc import Sized
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict, cast

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from nrflab.core.errors import NrflabError
from nrflab.core.modules import model_device
from nrflab.core.seeds import seeded_subset
from nrflab.data import DatasetBundle, load_dataset
from nrflab.data.base import to_float
from nrflab.data.built import read_card
from nrflab.features.settings import INVERSION_KINDS, BuildSettings
from nrflab.features.source import Representation, sha256_file
from nrflab.measure.metrics import dataset_tensors


class BaseDatasetInfo(TypedDict):
    """The base dataset as the card records it (``base_dataset``)."""

    name: str
    root: str | None
    num_classes: int
    input_shape: list[int]
    mean: list[float]
    std: list[float]
    train_size: int


class BaseSetInfo(TypedDict):
    """The D_R set a conflicting set starts from, as the card records it (``base_set``)."""

    path: str
    kind: str
    num_images: int
    card_sha256: str
    label_policy: str


@dataclass
class BuildInputs:
    """The images a build starts from, their labels and where they come from."""

    images: torch.Tensor  # uint8 or float, N x C x H x W (the whole pool, for random inversion starts)
    labels: torch.Tensor
    source_indices: torch.Tensor  # index into the base dataset's training set
    count: int  # how many samples are built (the first ``count``)
    bundle_info: BaseDatasetInfo
    base_info: BaseSetInfo | None = None


def prepare_inputs(
    settings: BuildSettings, dataset: str | None, data_root: str | None, base: str | os.PathLike[str] | None
) -> tuple[BuildInputs, DatasetBundle]:
    """Load the base dataset (or, for the conflicting set, the D_R set given as ``base``)."""
    if settings.kind == "conflicting":
        if base is None:
            raise NrflabError("the conflicting set starts from a D_R set: give its directory with --base")
        from nrflab.data.built import load_built_arrays

        card = read_card(base)
        if card.kind != "d_r":
            raise NrflabError(f"--base {base} is a {card.kind} set; the conflicting set needs a d_r set")
        base_name = card.base.name
        if dataset is not None and str(dataset).lower() != base_name:
            raise NrflabError(f"--base {base} was built from {base_name!r}, not from {dataset!r}")
        bundle = load_dataset(base_name, root=card.base.root)
        arrays = load_built_arrays(base)
        root = card.base.root
        images, labels, idx = arrays["images"], arrays["labels"], arrays["source_indices"]
        base_info: BaseSetInfo | None = {
            "path": str(Path(base).resolve()),
            "kind": card.kind,
            "num_images": card.num_images,
            "card_sha256": sha256_file(card.card_path),
            "label_policy": card.label_policy,
        }
    else:
        if base is not None:
            raise NrflabError("--base is only for the conflicting set")
        if dataset is None:
            raise NrflabError("give the base dataset (--dataset)")
        bundle = load_dataset(dataset, root=data_root)
        if bundle.info.get("base_dataset"):
            raise NrflabError(f"{dataset} is itself a built dataset; build from a base dataset such as mnist5k")
        images, labels = _train_tensors(bundle)
        idx = torch.arange(labels.shape[0])
        root, base_info = data_root, None
    chosen = seeded_subset(labels.shape[0], settings.limit, seed=settings.seed)
    n = labels.shape[0]
    if chosen is not None:
        # The chosen images first (in their original order), the rest after them: the whole set stays
        # the pool the inversions draw their start images from.
        rest = torch.ones(labels.shape[0], dtype=torch.bool)
        rest[chosen] = False
        order = torch.cat([chosen, torch.nonzero(rest).flatten()])
        images, labels, idx = images[order], labels[order], idx[order]
        n = int(chosen.numel())
    info: BaseDatasetInfo = {
        "name": bundle.name,
        "root": None if root is None else str(root),
        "num_classes": bundle.num_classes,
        "input_shape": list(bundle.input_shape),
        "mean": list(bundle.mean),
        "std": list(bundle.std),
        "train_size": len(cast(Sized, bundle.train)),  # torch Datasets are not typed Sized
    }
    return BuildInputs(images, labels.long(), idx.long(), n, info, base_info), bundle


def _train_tensors(bundle: DatasetBundle) -> tuple[torch.Tensor, torch.Tensor]:
    train = bundle.train
    if hasattr(train, "images") and hasattr(train, "labels"):
        return train.images, train.labels
    return dataset_tensors(train)


def shard_generator(seed: int, shard: int) -> torch.Generator:
    """The only randomness of a shard: a generator keyed by (seed, shard index)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(shard)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def quantize(x: torch.Tensor, dtype: str) -> torch.Tensor:
    """Images as stored: uint8 rounds to the nearest 1/255; float16/float32 keep more of the perturbation."""
    if dtype == "uint8":
        return (x.clamp(0, 1) * 255).round().to(torch.uint8)
    return x.clamp(0, 1).to(torch.float16 if dtype == "float16" else torch.float32)


class ShardBuilder:
    """Builds shards: one PGD run per batch, then the stored images' labels and sanity counts."""

    def __init__(
        self, settings: BuildSettings, model: nn.Module, inputs: BuildInputs, num_classes: int, batch_size: int
    ):
        self.s = settings
        self.model = model
        self.inputs = inputs
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.device = model_device(model)
        self.rep = (
            Representation(model, settings.layer, settings.fake_relu) if settings.kind in INVERSION_KINDS else None
        )
        loss = self.rep.distance_loss if self.rep is not None else None
        self.attack = settings.attack.build(model, seed=settings.seed, loss_fn=loss)

    def plan(self, shard: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices of the built samples, per-sample draw): start images for inversions, targets otherwise."""
        s, n_pool = self.s, self.inputs.labels.shape[0]
        lo, hi = shard * s.shard_size, min((shard + 1) * s.shard_size, self.inputs.count)
        idx = torch.arange(lo, hi)
        gen = shard_generator(s.seed, shard)
        y = self.inputs.labels[idx]
        if s.kind in INVERSION_KINDS:
            if n_pool < 2:
                raise NrflabError("the inversions need at least two training images (a different start image)")
            start = torch.randint(0, n_pool - 1, (len(idx),), generator=gen)
            return idx, start + (start >= idx).long()  # a different image than the reference
        if s.kind == "d_rand":
            return idx, torch.randint(0, self.num_classes, (len(idx),), generator=gen)
        return idx, (y + 1) % self.num_classes

    def build(self, shard: int, bar: tqdm | None = None) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        idx, draw = self.plan(shard)
        out: dict[str, list[torch.Tensor]] = {
            "images": [],
            "labels": [],
            "orig_labels": [],
            "targets": [],
            "source_indices": [],
        }
        if self.rep is not None:
            out["start_indices"] = []
        stats = {
            "n": 0,
            "label_agreement": 0,
            "on_target": 0,
            "on_original": 0,
            "dist_before": 0.0,
            "dist_after": 0.0,
            "ref_norm": 0.0,
        }
        for b in range(0, len(idx), self.batch_size):
            bi, bd = idx[b : b + self.batch_size], draw[b : b + self.batch_size]
            y = self.inputs.labels[bi]
            x = to_float(self.inputs.images[bi]).to(self.device)
            if self.rep is not None:
                start = to_float(self.inputs.images[bd]).to(self.device)
                with torch.no_grad():
                    target_rep = self.rep(x)
                x_new = self.attack(start, target_rep)
                stored = quantize(x_new, self.s.dtype)
                with torch.no_grad():
                    before = (self.rep(start) - target_rep).norm(dim=1)
                    after = (self.rep(to_float(stored)) - target_rep).norm(dim=1)
                stats["dist_before"] += float(before.sum())
                stats["dist_after"] += float(after.sum())
                stats["ref_norm"] += float(target_rep.norm(dim=1).sum())
                target = y
                out["start_indices"].append(self.inputs.source_indices[bd])
            else:
                target = bd
                stored = quantize(self.attack(x, target.to(self.device)), self.s.dtype)
            with torch.no_grad():
                pred = self.model(to_float(stored)).argmax(1).cpu()
            labels = {"target": target, "reference": y, "prediction": pred}[self.s.label_policy]
            stats["n"] += len(bi)
            stats["label_agreement"] += int((pred == labels).sum())
            stats["on_target"] += int((pred == target).sum())
            stats["on_original"] += int((pred == y).sum())
            out["images"].append(stored.cpu())
            out["labels"].append(labels)
            out["orig_labels"].append(y)
            out["targets"].append(target)
            out["source_indices"].append(self.inputs.source_indices[bi])
            if bar is not None:
                bar.update(len(bi))
        tensors = {k: torch.cat(v) for k, v in out.items()}
        return {k: (v if k == "images" else v.long()) for k, v in tensors.items()}, stats


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
