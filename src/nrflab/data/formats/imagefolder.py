"""Your own images in class folders: ``root/{train,test}/<class>/*`` or ``root/<class>/*`` (split 80/20).

``imagefolder`` reads images of one size as they are. ``imagefolder:size=S`` resizes every image (shorter side to
``S``, bilinear with antialiasing) and centre-crops it to ``S x S``, so a folder of photos of any size works.
Only the image headers are read when the dataset is loaded; pixels are decoded when they are used. A set whose
decoded pixels fit in ``memory=MiB`` (default 2048) is decoded once into memory for fast batching; a larger one
stays on disk and is decoded image by image, so ``--limit N`` on a folder of ImageNet-size photos decodes N images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from nrflab.core.errors import NrflabError
from nrflab.data.base import (
    DatasetBundle,
    ImageTensorDataset,
    channel_stats,
    class_balanced_split,
    default_root,
    register_dataset,
)
from nrflab.data.download import PathLike

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
IMAGEFOLDER_SPLIT_SEED = 1337
IMAGEFOLDER_TEST_FRACTION = 0.2
DEFAULT_MEMORY_MIB = 2048
STATS_SAMPLE = 1000
"""Images (a seeded sample of the training set) that mean/std are measured on when the set stays on disk."""

__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package


@dataclass(frozen=True)
class ImagefolderOptions:
    """The parameters of ``imagefolder:key=value,...``."""

    root: str | None = None
    size: int | None = None
    memory_mib: int = DEFAULT_MEMORY_MIB

    @classmethod
    def from_params(cls, params: dict[str, str]) -> ImagefolderOptions:
        unknown = sorted(set(params) - {"root", "size", "memory"})
        if unknown:
            raise NrflabError(f"imagefolder takes root=, size= and memory= (got {', '.join(unknown)})")
        size = _int_param(params, "size", low=4, high=4096)
        memory = _int_param(params, "memory", low=1, high=1 << 30)
        return cls(params.get("root"), size, DEFAULT_MEMORY_MIB if memory is None else memory)


def _int_param(params: dict[str, str], key: str, *, low: int, high: int) -> int | None:
    if key not in params:
        return None
    text = params[key]
    if not text.isdigit() or not low <= int(text) <= high:
        unit = " (MiB)" if key == "memory" else " (pixels)"
        raise NrflabError(f"imagefolder {key}= must be an integer in {low}..{high}{unit}, got {text!r}")
    return int(text)


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _class_images(folder: Path) -> list[tuple[Path, int]]:
    """``(file, class index)`` for every image under ``folder/<class>/`` (classes sorted by name)."""
    pairs: list[tuple[Path, int]] = []
    for index, class_dir in enumerate(_class_dirs(folder)):
        files = sorted(
            p
            for p in class_dir.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
        )
        if not files:
            raise NrflabError(f"{class_dir} has no images ({', '.join(IMAGE_EXTENSIONS)})")
        pairs.extend((p, index) for p in files)
    return pairs


def _header(path: Path) -> tuple[int, int, int]:
    """``(width, height, channels)`` from the file's header, without decoding its pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.width, img.height, 1 if img.mode == "L" else 3
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise NrflabError(f"{path} is not a readable image ({exc})") from exc


def _read_image(path: Path, *, channels: int, size: int | None) -> np.ndarray:
    """One image as C x H x W uint8: ``channels`` 1 (mode L) or 3 (RGB); resized and centre-cropped to ``size``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            if size is not None:
                scale = size / min(img.width, img.height)
                w, h = max(size, round(img.width * scale)), max(size, round(img.height * scale))
                img = img.resize((w, h), Image.Resampling.BILINEAR, reducing_gap=None)
                left, top = (w - size) // 2, (h - size) // 2
                img = img.crop((left, top, left + size, top + size))
            array = np.asarray(img, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise NrflabError(f"{path} is not a readable image ({exc})") from exc
    return np.ascontiguousarray((array[:, :, None] if array.ndim == 2 else array).transpose(2, 0, 1))


def _input_shape(paths: Sequence[Path], size: int | None) -> tuple[int, int, int]:
    """One shape for every image (from headers): grey stays 1 channel unless any image is colour."""
    headers = [_header(p) for p in paths]
    channels = max(c for _, _, c in headers)
    if size is not None:
        return channels, size, size
    w0, h0, _ = headers[0]
    for path, (w, h, _) in zip(paths, headers):
        if (w, h) != (w0, h0):
            raise NrflabError(
                f"{path} is {w}x{h} but {paths[0]} is {w0}x{h0}; all images must share one size: resize them "
                "first, or load the folder as imagefolder:size=S (resize and centre-crop to S x S)"
            )
    return channels, h0, w0


class ImageFileDataset(Dataset[tuple[torch.Tensor, int]]):
    """Images decoded from their files when an item is asked for (float in [0,1], shape ``input_shape``)."""

    def __init__(self, paths: Sequence[Path], labels: np.ndarray, *, input_shape: tuple[int, int, int]) -> None:
        self.paths = list(paths)
        self.labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        self.input_shape = input_shape

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self.decode(index)).float().div_(255.0), int(self.labels[index])

    def decode(self, index: int) -> np.ndarray:
        channels, size = self.input_shape[0], self.input_shape[1]
        square = self.input_shape[1] == self.input_shape[2]
        return _read_image(self.paths[index], channels=channels, size=size if square else None)

    def in_memory(self) -> ImageTensorDataset:
        """Every image decoded once into a uint8 ``ImageTensorDataset``."""
        images = np.stack([self.decode(i) for i in range(len(self))]) if self.paths else np.zeros((0, 1, 1, 1))
        return ImageTensorDataset(images, self.labels)

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageFileDataset:
        idx = [int(i) for i in indices]
        return ImageFileDataset([self.paths[i] for i in idx], self.labels.numpy()[idx], input_shape=self.input_shape)


def _layout(base: Path) -> tuple[list[str], list[tuple[Path, int]], np.ndarray, np.ndarray, str]:
    """Classes, every ``(file, class)``, the train and test indices, and how they were split."""
    hint = f"put images in {base}/train/<class>/ and {base}/test/<class>/, or in {base}/<class>/ for an 80/20 split"
    if not base.is_dir() or not _class_dirs(base):
        raise NrflabError(f"imagefolder not found: {hint}")
    has_train, has_test = (base / "train").is_dir(), (base / "test").is_dir()
    if has_train != has_test:
        raise NrflabError(f"{base} has {'train/' if has_train else 'test/'} but not the other; {hint}")
    if not has_train:
        pairs = _class_images(base)
        labels = np.array([c for _, c in pairs], dtype=np.int64)
        train_idx, test_idx = class_balanced_split(labels, IMAGEFOLDER_TEST_FRACTION, IMAGEFOLDER_SPLIT_SEED, sort=True)
        fraction = IMAGEFOLDER_TEST_FRACTION
        split = f"class-balanced {1 - fraction:.0%}/{fraction:.0%}, seed {IMAGEFOLDER_SPLIT_SEED}"
        return [p.name for p in _class_dirs(base)], pairs, train_idx, test_idx, split
    classes = [p.name for p in _class_dirs(base / "train")]
    if not classes:
        raise NrflabError(f"{base}/train has no class folders; {hint}")
    test_classes = [p.name for p in _class_dirs(base / "test")]
    if classes != test_classes:
        raise NrflabError(f"{base}/train has classes {classes} but {base}/test has {test_classes}; they must match")
    train_pairs, test_pairs = _class_images(base / "train"), _class_images(base / "test")
    n = len(train_pairs)
    return (
        classes,
        train_pairs + test_pairs,
        np.arange(n),
        np.arange(n, n + len(test_pairs)),
        "train/ and test/ folders",
    )


@register_dataset("imagefolder", params=True)
def load_imagefolder(
    root: PathLike | None = None, download: bool = False, params: dict[str, str] | None = None
) -> DatasetBundle:
    """Your own images (see the module docstring). Classes are the sorted folder names; mean/std are measured on
    the train images (on a seeded sample of 1,000 when the set stays on disk). Nothing to download."""
    options = ImagefolderOptions.from_params(dict(params or {}))
    base = default_root("imagefolder", options.root if options.root is not None else root)
    classes, pairs, train_idx, test_idx, split = _layout(base)
    paths = [p for p, _ in pairs]
    shape = _input_shape(paths, options.size)
    files = ImageFileDataset(paths, np.array([c for _, c in pairs], dtype=np.int64), input_shape=shape)
    decoded_mib = len(paths) * shape[0] * shape[1] * shape[2] / 2**20
    train: Dataset[tuple[torch.Tensor, int]]
    test: Dataset[tuple[torch.Tensor, int]]
    if decoded_mib <= options.memory_mib:
        everything = files.in_memory()
        train, test = everything.subset(torch.as_tensor(train_idx)), everything.subset(torch.as_tensor(test_idx))
        mean, std = channel_stats(train.images)
        storage = "decoded in memory"
    else:
        train, test = files.subset(train_idx), files.subset(test_idx)
        sample = np.random.default_rng(IMAGEFOLDER_SPLIT_SEED).permutation(len(train_idx))[:STATS_SAMPLE]
        mean, std = channel_stats(torch.from_numpy(np.stack([train.decode(int(i)) for i in np.sort(sample)])))
        storage = f"decoded from disk per image ({decoded_mib:.1f} MiB > memory={options.memory_mib} MiB)"
    resize = f"resized and centre-cropped to {options.size}x{options.size}" if options.size else "as stored"
    return DatasetBundle(
        name="imagefolder"
        if options.size is None
        else f"imagefolder:size={options.size}",  # what the data is, not where
        train=train,
        test=test,
        num_classes=len(classes),
        input_shape=shape,
        mean=mean,
        std=std,
        classes=classes,
        info={"source": str(base), "split": split, "images": resize, "storage": storage},
    )
