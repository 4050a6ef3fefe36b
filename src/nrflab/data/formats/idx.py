"""MNIST and Fashion-MNIST in the IDX format (plain or gzipped)."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import cast

import numpy as np

from nrflab.core.errors import NrflabError
from nrflab.data.base import DatasetBundle, ImageTensorDataset, default_root, register_dataset
from nrflab.data.download import DOWNLOAD_HINT, FASHION_MNIST_BASE_URL, IDX_FILES, MNIST_BASE_URL, PathLike, _download

FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def _read_maybe_gzip(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise NrflabError(f"{path} could not be read ({type(exc).__name__}: {exc}); replace it") from exc


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """A uint8 IDX array (magic 0x0000080<ndim>, big-endian dims), size checked against the header."""
    data = _read_maybe_gzip(path)
    header = 4 + 4 * ndim
    expected = 0x800 + ndim
    magic = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if magic != expected:
        found = "nothing" if magic is None else f"{magic:#010x}"
        raise NrflabError(f"{path} is not a uint8 IDX file with {ndim} dims (magic {found}, expected {expected:#010x})")
    if len(data) < header:
        raise NrflabError(f"{path} is truncated: its IDX header is incomplete")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    if len(data) != header + int(np.prod(shape)):
        needed = int(np.prod(shape))
        raise NrflabError(f"{path} holds {len(data) - header} data bytes but its header {shape} needs {needed}")
    return cast(np.ndarray, np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy())


def _idx_file(folder: Path, name: str) -> Path | None:
    """``name`` or ``name.gz`` in ``folder``, whichever exists (plain first)."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _idx_paths(root: Path, subfolder: str) -> dict[str, Path] | None:
    """The four IDX files from the first of ``root``, ``root/raw``, ``root/<subfolder>/raw`` holding them all."""
    for folder in (root, root / "raw", root / subfolder / "raw"):
        found = {name: _idx_file(folder, name) for name in IDX_FILES}
        if all(found.values()):
            return {name: path for name, path in found.items() if path is not None}
    return None


def _read_idx_split(paths: dict[str, Path], prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N x 1 x H x W) and labels 0-9 of the ``train`` or ``t10k`` IDX pair, counts cross-checked."""
    images_path, labels_path = paths[f"{prefix}-images-idx3-ubyte"], paths[f"{prefix}-labels-idx1-ubyte"]
    images, labels = _read_idx(images_path, 3), _read_idx(labels_path, 1).astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise NrflabError(f"{images_path} has {images.shape[0]} images but {labels_path} has {labels.shape[0]} labels")
    if labels.size and labels.max() > 9:
        raise NrflabError(f"{labels_path} has labels outside 0..9")
    return images[:, None], labels


def _load_idx(
    name: str,
    subfolder: str,
    base_url: str,
    classes: list[str],
    mean: float,
    std: float,
    root: PathLike | None,
    download: bool,
) -> DatasetBundle:
    """MNIST-style IDX dataset from ``root``, ``root/raw`` or ``root/<subfolder>/raw`` (plain or .gz files)."""
    base = default_root(name, root)
    paths = _idx_paths(base, subfolder)
    if paths is None and download:
        for file in IDX_FILES:
            if _idx_file(base, file) is None:
                _download(base_url + f"{file}.gz", base / f"{file}.gz")
        paths = _idx_paths(base, subfolder)
    if paths is None:
        raise NrflabError(
            f"{name} not found: put {', '.join(IDX_FILES)} (each may be .gz) in {base}/ "
            f"(or its raw/ or {subfolder}/raw/ subfolder), " + DOWNLOAD_HINT
        )
    (x_train, y_train), (x_test, y_test) = (_read_idx_split(paths, p) for p in ("train", "t10k"))
    folder = paths[IDX_FILES[0]].parent
    if x_train.shape[1:] != x_test.shape[1:]:
        raise NrflabError(f"{folder}: train images are {x_train.shape[2:]} but test images are {x_test.shape[2:]}")
    return DatasetBundle(
        name=name,
        train=ImageTensorDataset(x_train, y_train),
        test=ImageTensorDataset(x_test, y_test),
        num_classes=10,
        input_shape=(1, x_train.shape[2], x_train.shape[3]),
        mean=(mean,),
        std=(std,),
        classes=list(classes),
        info={"source": str(folder)},
    )


@register_dataset("mnist")
def load_mnist(root: PathLike | None = None, download: bool = False) -> DatasetBundle:
    """Full MNIST, 60,000/10,000 28x28 digits from the IDX files."""
    return _load_idx("mnist", "MNIST", MNIST_BASE_URL, [str(i) for i in range(10)], 0.1307, 0.3081, root, download)


@register_dataset("fashion-mnist")
def load_fashion_mnist(root: PathLike | None = None, download: bool = False) -> DatasetBundle:
    """Fashion-MNIST, 60,000/10,000 28x28 clothing images in MNIST's IDX format."""
    return _load_idx(
        "fashion-mnist", "FashionMNIST", FASHION_MNIST_BASE_URL, FASHION_MNIST_CLASSES, 0.2860, 0.3530, root, download
    )
