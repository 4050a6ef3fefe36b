"""Your own images in class folders."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
import torch

from nrflab.core.errors import NrflabError
from nrflab.data.base import DatasetBundle, ImageTensorDataset, channel_stats, default_root, register_dataset
from nrflab.data.download import PathLike

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
IMAGEFOLDER_SPLIT_SEED = 1337
IMAGEFOLDER_TEST_FRACTION = 0.2


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


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _read_image(path: Path) -> np.ndarray:
    """One image as H x W x C uint8: mode L keeps 1 channel, every other mode becomes RGB."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img if img.mode == "L" else img.convert("RGB")
            array = np.asarray(img, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise NrflabError(f"{path} is not a readable image ({exc})") from exc
    return array[:, :, None] if array.ndim == 2 else array


def _stack_images(paths: list[Path]) -> np.ndarray:
    """N x C x H x W uint8 from files of one size; grayscale is widened to RGB if any image is colour."""
    arrays: list[np.ndarray] = []
    for path in paths:
        array = _read_image(path)
        if arrays and array.shape[:2] != arrays[0].shape[:2]:
            (h, w), (h0, w0) = array.shape[:2], arrays[0].shape[:2]
            raise NrflabError(
                f"{path} is {w}x{h} but {paths[0]} is {w0}x{h0}; all images must share one size, resize them first"
            )
        arrays.append(array)
    channels = max(a.shape[2] for a in arrays)
    stacked = np.stack([np.repeat(a, channels // a.shape[2], axis=2) for a in arrays])
    return cast(np.ndarray, stacked.transpose(0, 3, 1, 2).copy())


def _fraction_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced split putting ``round(test_fraction * n_c)`` of each class (at least 1 if n_c > 1) in test."""
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_test = min(max(round(test_fraction * idx.size), 1), idx.size - 1)
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(test_idx))


@register_dataset("imagefolder")
def load_imagefolder(root: PathLike | None = None, download: bool = False) -> DatasetBundle:
    """Your own images: ``root/{train,test}/<class>/*.png|jpg|jpeg|bmp``, or ``root/<class>/...`` split 80/20.

    Classes are the sorted folder names; mean/std are measured on the train images. Nothing to download.
    """
    base = default_root("imagefolder", root)
    layout_hint = (
        f"put images in {base}/train/<class>/ and {base}/test/<class>/, or in {base}/<class>/ for an 80/20 split"
    )
    if not base.is_dir() or not _class_dirs(base):
        raise NrflabError(f"imagefolder not found: {layout_hint}")
    has_train, has_test = (base / "train").is_dir(), (base / "test").is_dir()
    if has_train != has_test:
        raise NrflabError(f"{base} has {'train/' if has_train else 'test/'} but not the other; {layout_hint}")
    if has_train:
        classes = [p.name for p in _class_dirs(base / "train")]
        if not classes:
            raise NrflabError(f"{base}/train has no class folders; {layout_hint}")
        test_classes = [p.name for p in _class_dirs(base / "test")]
        if classes != test_classes:
            raise NrflabError(f"{base}/train has classes {classes} but {base}/test has {test_classes}; they must match")
        train_pairs, test_pairs = _class_images(base / "train"), _class_images(base / "test")
        images = _stack_images([p for p, _ in train_pairs + test_pairs])
        labels = np.array([c for _, c in train_pairs + test_pairs], dtype=np.int64)
        train_idx, test_idx = np.arange(len(train_pairs)), np.arange(len(train_pairs), len(labels))
        split = "train/ and test/ folders"
    else:
        classes = [p.name for p in _class_dirs(base)]
        pairs = _class_images(base)
        images = _stack_images([p for p, _ in pairs])
        labels = np.array([c for _, c in pairs], dtype=np.int64)
        train_idx, test_idx = _fraction_split(labels, IMAGEFOLDER_TEST_FRACTION, IMAGEFOLDER_SPLIT_SEED)
        fraction = IMAGEFOLDER_TEST_FRACTION
        split = f"class-balanced {1 - fraction:.0%}/{fraction:.0%}, seed {IMAGEFOLDER_SPLIT_SEED}"
    train_images = torch.from_numpy(images[train_idx])
    mean, std = channel_stats(train_images)
    return DatasetBundle(
        name="imagefolder",
        train=ImageTensorDataset(train_images, labels[train_idx]),
        test=ImageTensorDataset(images[test_idx], labels[test_idx]),
        num_classes=len(classes),
        input_shape=tuple(images.shape[1:]),
        mean=mean,
        std=std,
        classes=classes,
        info={"source": str(base), "split": split},
    )
