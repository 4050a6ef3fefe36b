"""Reading datasets built by ``nrflab build-dataset``: a ``dataset.json`` card plus safetensors shards.

Train = the built images and their labels; test = the base dataset's original clean test set, so a model
trained on a feature dataset is evaluated on real images, as in Ilyas et al. and the paper.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import torch

from nrflab.core.errors import NrflabError
from nrflab.data.base import DatasetBundle, ImageTensorDataset, load_dataset, register_directory_format

CARD_FILE = "dataset.json"
CARD_FORMAT = "nrflab-built-dataset"
_REQUIRED = ("kind", "complete", "num_images", "shards", "base_dataset", "label_policy")


def shard_name(index: int) -> str:
    return f"shard_{index:05d}.safetensors"


@dataclass(frozen=True)
class BuiltLayout:
    """Where a built dataset's files are in its directory, and the format its card declares: what a writer
    of built datasets (``nrflab build-dataset``) needs so that :func:`read_card` reads its output."""

    directory: Path
    #: The ``format`` a dataset card declares.
    FORMAT: ClassVar[str] = CARD_FORMAT

    @property
    def card(self) -> Path:
        """The dataset card (``dataset.json``)."""
        return self.directory / CARD_FILE

    def shard(self, index: int) -> Path:
        """Shard ``index`` (0-based) of the images."""
        return self.directory / shard_name(index)

    @staticmethod
    def shard_names(count: int) -> list[str]:
        """The file names of ``count`` shards, in order (the card lists them)."""
        return [shard_name(i) for i in range(count)]


@dataclass(frozen=True)
class BaseDatasetInfo:
    """The dataset a feature set was built from (its test set is the built set's test set)."""

    name: str
    root: str | None
    input_shape: tuple[int, ...] | None


@dataclass(frozen=True)
class DatasetCard:
    """The typed view of a built dataset's ``dataset.json``: what every reader needs, checked once.

    ``raw`` keeps the whole card (settings, source model, seeds) for records that copy it verbatim.
    """

    path: Path
    kind: str
    complete: bool
    num_images: int
    shards: tuple[str, ...]
    base: BaseDatasetInfo
    label_policy: str
    identity: Mapping[str, Any]
    source_sha256: str | None
    sanity: Mapping[str, float]
    raw: Mapping[str, Any]

    @property
    def card_path(self) -> Path:
        return self.path / CARD_FILE


def is_built_dataset(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a directory holding a dataset card (complete or not)."""
    return (Path(path) / CARD_FILE).is_file()


def read_card(path: str | os.PathLike[str]) -> DatasetCard:
    """The card of a built dataset directory, checked for the fields every loader needs."""
    from nrflab.core.io import read_json

    path = Path(path)
    if not path.is_dir():
        raise NrflabError(f"built dataset directory not found: {path}")
    card = read_json(path / CARD_FILE, "dataset card")
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise NrflabError(f"{path / CARD_FILE} is not an nrflab dataset card")
    missing = [k for k in _REQUIRED if k not in card]
    if missing:
        raise NrflabError(f"dataset card {path / CARD_FILE} lacks {', '.join(missing)}")
    base = card["base_dataset"]
    try:
        shape = base.get("input_shape")
        return DatasetCard(
            path=path,
            kind=str(card["kind"]),
            complete=bool(card["complete"]),
            num_images=int(card["num_images"]),
            shards=tuple(str(n) for n in card["shards"]),
            base=BaseDatasetInfo(
                name=str(base["name"]),
                root=None if base.get("root") is None else str(base["root"]),
                input_shape=None if shape is None else tuple(int(v) for v in shape),
            ),
            label_policy=str(card["label_policy"]),
            identity=dict(card.get("identity") or {}),
            source_sha256=(card.get("source") or {}).get("sha256"),
            sanity={str(k): float(v) for k, v in (card.get("sanity") or {}).items() if isinstance(v, (int, float))},
            raw=card,
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise NrflabError(f"dataset card {path / CARD_FILE} is malformed ({exc})") from None


def load_built_arrays(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """All tensors of a complete built dataset (images, labels, orig_labels, targets, source_indices, ...)."""
    from nrflab.core.io import load_tensors

    path = Path(path)
    card = read_card(path)
    if not card.complete:
        raise NrflabError(f"the build in {path} is incomplete; finish it with `nrflab build-dataset ... --resume`")
    parts: dict[str, list[torch.Tensor]] = {}
    for name in card.shards:
        tensors = load_tensors(path / name, "dataset shard")
        if "images" not in tensors or "labels" not in tensors:
            raise NrflabError(f"dataset shard {path / name} lacks images or labels")
        n = tensors["labels"].shape[0]
        if any(t.shape[0] != n for t in tensors.values()):
            raise NrflabError(f"dataset shard {path / name} is corrupt (tensors of different lengths)")
        for k, v in tensors.items():
            parts.setdefault(k, []).append(v)
    if set(len(v) for v in parts.values()) != {len(card.shards)}:
        raise NrflabError(f"the shards in {path} do not hold the same tensors")
    arrays = {k: torch.cat(v) for k, v in parts.items()}
    if arrays["labels"].shape[0] != card.num_images:
        raise NrflabError(f"{path} holds {arrays['labels'].shape[0]} images, its card says {card.num_images}")
    shape = tuple(card.base.input_shape or arrays["images"].shape[1:])
    if tuple(arrays["images"].shape[1:]) != shape:
        raise NrflabError(f"{path} holds images of shape {tuple(arrays['images'].shape[1:])}, expected {shape}")
    return arrays


@register_directory_format(CARD_FILE)
def load_built_dataset(path: str | os.PathLike[str]) -> DatasetBundle:
    """A built dataset as a DatasetBundle: built train set, the base dataset's clean test set."""
    path = Path(path)
    card = read_card(path)
    arrays = load_built_arrays(path)
    bundle = load_dataset(card.base.name, root=card.base.root)
    if int(arrays["labels"].min()) < 0 or int(arrays["labels"].max()) >= bundle.num_classes:
        raise NrflabError(f"{path} has labels outside 0..{bundle.num_classes - 1}")
    # The base dataset with the built train set; the base's probes and views describe its own images only.
    return replace(
        bundle,
        name=str(path),
        train=ImageTensorDataset(arrays["images"], arrays["labels"]),
        probes=[],
        reliance_views=None,
        info={
            "base_dataset": bundle.name,
            "kind": card.kind,
            "card": str(card.card_path),
            "label_policy": card.label_policy,
        },
    )


__all__ = ["BuiltLayout", "is_built_dataset", "load_built_arrays", "read_card"]
