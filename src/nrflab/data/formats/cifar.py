"""CIFAR-10/100 in the official python-pickle layout, read with a restricted unpickler (arrays only)."""

from __future__ import annotations

import importlib
import pickle
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from nrflab.core.errors import NrflabError
from nrflab.data.base import DatasetBundle, ImageTensorDataset, default_root, register_dataset
from nrflab.data.download import CIFAR10_URL, CIFAR100_URL, DOWNLOAD_HINT, PathLike, _download, _extract_folder


def _numpy_private(module: str, name: str) -> Any:
    """``from numpy.<module> import <name>`` for private helpers that numpy's stubs do not declare."""
    return getattr(importlib.import_module(f"numpy.{module}"), name)


try:  # numpy >= 2
    _np_reconstruct = _numpy_private("_core.multiarray", "_reconstruct")
    _np_frombuffer = _numpy_private("_core.numeric", "_frombuffer")
except (ImportError, AttributeError):  # pragma: no cover - numpy 1.x
    _np_reconstruct = _numpy_private("core.multiarray", "_reconstruct")
    _np_frombuffer = _numpy_private("core.numeric", "_frombuffer")


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """Stand-in for ``_codecs.encode`` that Python 3 protocol-2 pickles use for bytes; latin-1 only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise NrflabError("pickle asks for a codec call other than latin-1 bytes; refusing it")
    return text.encode("latin1")


_PICKLE_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _np_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _np_frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_bytes,
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild plain dicts, lists, bytes and numpy arrays, and nothing else.

    CIFAR files come from users; a normal ``pickle.load`` would run any code the file asks for.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _PICKLE_ALLOWED[(module, name)]
        except KeyError:
            raise NrflabError(
                f"refusing to load {module}.{name}: only numpy arrays are allowed in dataset pickles"
            ) from None


def _unpickle(path: Path) -> dict[bytes, Any]:
    """Load one CIFAR batch pickle (Python 2 era, so ``encoding='bytes'``) with the restricted unpickler."""
    try:
        with open(path, "rb") as fh:
            obj = _ArrayOnlyUnpickler(fh, encoding="bytes").load()
    except NrflabError as exc:
        raise NrflabError(f"{path}: {exc}") from exc
    except Exception as exc:
        raise NrflabError(f"{path} is not a readable CIFAR pickle ({type(exc).__name__}: {exc}); replace it") from exc
    if not isinstance(obj, dict):
        raise NrflabError(f"{path} should hold a dict, found {type(obj).__name__}")
    return obj


def _require_key(batch: dict[bytes, Any], key: bytes, path: Path) -> Any:
    if key not in batch:
        raise NrflabError(f"{path} has no {key.decode()!r} entry; is it a CIFAR file?")
    return batch[key]


def _read_cifar_batch(path: Path, label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (N x 3 x 32 x 32 uint8, channel-major RGB as stored) and labels of one CIFAR batch file."""
    batch = _unpickle(path)
    data = _require_key(batch, b"data", path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise NrflabError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), got {type(data).__name__} {shape}")
    try:
        labels = np.asarray(_require_key(batch, label_key, path), dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise NrflabError(f"{path}: {label_key.decode()!r} is not a list of integers") from exc
    if labels.shape[0] != data.shape[0]:
        raise NrflabError(f"{path} has {data.shape[0]} images but {labels.shape[0]} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise NrflabError(f"{path} has labels outside 0..{num_classes - 1}")
    return data.reshape(-1, 3, 32, 32), labels


def _label_names(path: Path, key: bytes) -> list[str]:
    names = _require_key(_unpickle(path), key, path)
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]


@dataclass(frozen=True)
class _CifarSpec:
    name: str
    root_name: str
    folder: str
    archive: str
    url: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: bytes
    names_key: bytes
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


_CIFAR10 = _CifarSpec(
    name="cifar10",
    root_name="cifar10",
    folder="cifar-10-batches-py",
    archive="cifar-10-python.tar.gz",
    url=CIFAR10_URL,
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_files=("test_batch",),
    meta_file="batches.meta",
    label_key=b"labels",
    names_key=b"label_names",
    num_classes=10,
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2023, 0.1994, 0.2010),
)
_CIFAR100 = _CifarSpec(
    name="cifar100",
    root_name="cifar100",
    folder="cifar-100-python",
    archive="cifar-100-python.tar.gz",
    url=CIFAR100_URL,
    train_files=("train",),
    test_files=("test",),
    meta_file="meta",
    label_key=b"fine_labels",
    names_key=b"fine_label_names",
    num_classes=100,
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
)
_CIFAR100_COARSE = replace(
    _CIFAR100, name="cifar100-coarse", label_key=b"coarse_labels", names_key=b"coarse_label_names", num_classes=20
)


def _cifar_folder(spec: _CifarSpec, root: Path) -> Path | None:
    """The folder holding the batch files: ``root/<folder>`` or ``root`` itself; None when incomplete."""
    needed = (*spec.train_files, *spec.test_files, spec.meta_file)
    for folder in (root / spec.folder, root):
        if all((folder / f).is_file() for f in needed):
            return folder
    return None


def _cifar_split(spec: _CifarSpec, folder: Path, names: tuple[str, ...]) -> ImageTensorDataset:
    """One split: its batch files read and concatenated in order."""
    batches = [_read_cifar_batch(folder / name, spec.label_key, spec.num_classes) for name in names]
    return ImageTensorDataset(np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches]))


def _load_cifar(spec: _CifarSpec, root: PathLike | None, download: bool) -> DatasetBundle:
    """Read a CIFAR python-version folder (downloading and extracting the archive first if asked)."""
    base = default_root(spec.root_name, root)
    folder = _cifar_folder(spec, base)
    if folder is None and download:
        archive = _download(spec.url, base / spec.archive)
        _extract_folder(archive, base, spec.folder)
        archive.unlink()
        folder = _cifar_folder(spec, base)
    if folder is None:
        files = ", ".join((*spec.train_files, *spec.test_files, spec.meta_file))
        raise NrflabError(
            f"{spec.name} not found: put {files} in {base / spec.folder}/ (the extracted {spec.archive}), "
            + DOWNLOAD_HINT
        )
    train, test = (_cifar_split(spec, folder, names) for names in (spec.train_files, spec.test_files))
    classes = _label_names(folder / spec.meta_file, spec.names_key)
    if len(classes) != spec.num_classes:
        raise NrflabError(f"{folder / spec.meta_file} lists {len(classes)} class names, expected {spec.num_classes}")
    return DatasetBundle(
        name=spec.name,
        train=train,
        test=test,
        num_classes=spec.num_classes,
        input_shape=(3, 32, 32),
        mean=spec.mean,
        std=spec.std,
        classes=classes,
        info={"source": str(folder)},
    )


@register_dataset("cifar10")
def load_cifar10(root: PathLike | None = None, download: bool = False) -> DatasetBundle:
    """CIFAR-10, 50,000/10,000 RGB 32x32 images, from the official python-version batches."""
    return _load_cifar(_CIFAR10, root, download)


@register_dataset("cifar100")
def load_cifar100(root: PathLike | None = None, download: bool = False) -> DatasetBundle:
    """CIFAR-100 with its 100 fine labels."""
    return _load_cifar(_CIFAR100, root, download)


@register_dataset("cifar100-coarse")
def load_cifar100_coarse(root: PathLike | None = None, download: bool = False) -> DatasetBundle:
    """CIFAR-100 images with the 20 coarse (superclass) labels; same files as ``cifar100``."""
    return _load_cifar(_CIFAR100_COARSE, root, download)
