"""Real on-disk datasets: CIFAR-10/100 (python pickles), SVHN (.mat), MNIST/Fashion-MNIST (IDX), image folders.

Every loader reads the official file layout, optionally downloads it (checksummed), and turns any missing or
corrupt file into a one-line ``NrflabError`` that names the file.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import importlib
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any, cast

import numpy as np
import torch

from nrflab.core.errors import NrflabError
from nrflab.data.base import DatasetBundle, ImageTensorDataset, channel_stats, default_root, register_dataset


def _numpy_private(module: str, name: str) -> Any:
    """``from numpy.<module> import <name>`` for private helpers that numpy's stubs do not declare."""
    return getattr(importlib.import_module(f"numpy.{module}"), name)


try:  # numpy >= 2
    _np_reconstruct = _numpy_private("_core.multiarray", "_reconstruct")
    _np_frombuffer = _numpy_private("_core.numeric", "_frombuffer")
except (ImportError, AttributeError):  # pragma: no cover - numpy 1.x
    _np_reconstruct = _numpy_private("core.multiarray", "_reconstruct")
    _np_frombuffer = _numpy_private("core.numeric", "_frombuffer")

PathLike = str | os.PathLike[str]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
SVHN_URLS = {
    "train": "http://ufldl.stanford.edu/housenumbers/train_32x32.mat",
    "test": "http://ufldl.stanford.edu/housenumbers/test_32x32.mat",
}
MNIST_BASE_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
FASHION_MNIST_BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

MD5SUMS: dict[str, str] = {
    CIFAR10_URL: "c58f30108f718f92721af3b95e74349a",
    CIFAR100_URL: "eb9058c3a382ffc7106e4002c42a8d85",
    SVHN_URLS["train"]: "e26dedcc434d2e4c54c9b2d4a06d8373",
    SVHN_URLS["test"]: "eb5a983be6a315427106f1b164d9cef3",
    MNIST_BASE_URL + "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    MNIST_BASE_URL + "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    MNIST_BASE_URL + "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    MNIST_BASE_URL + "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    FASHION_MNIST_BASE_URL + "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    FASHION_MNIST_BASE_URL + "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    FASHION_MNIST_BASE_URL + "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    FASHION_MNIST_BASE_URL + "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12e480ee83cd310",
}

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
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
IMAGEFOLDER_SPLIT_SEED = 1337
IMAGEFOLDER_TEST_FRACTION = 0.2
_DOWNLOAD_HINT = "or pass download=True (CLI: --download) to fetch them"


# ----------------------------------------------------------------------------------------------- downloads


def _fetch(url: str, dest: Path) -> None:
    """Stream ``url`` into ``dest``; module-level so tests can replace it and never touch the network."""
    request = urllib.request.Request(url, headers={"User-Agent": "nrflab"})
    with urllib.request.urlopen(request, timeout=60) as response, open(dest, "wb") as fh:
        shutil.copyfileobj(response, fh, length=1 << 20)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(url: str, dest: Path) -> Path:
    """Fetch ``url`` to ``dest`` via a temp file in the same folder, verify its MD5, then rename atomically.

    A ``dest`` already present with the right checksum is reused; a bad download never stays on disk.
    """
    expected = MD5SUMS[url]
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file() and _md5(dest) == expected:
        return dest
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            _fetch(url, tmp)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise NrflabError(f"could not download {url} ({exc}); fetch it by hand and put it at {dest}") from exc
        actual = _md5(tmp)
        if actual != expected:
            raise NrflabError(
                f"checksum mismatch for {url}: got md5 {actual}, expected {expected}; "
                "the bad file was removed, try again"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _check_tar_member(archive: Path, member: tarfile.TarInfo) -> None:
    """Refuse members that could write outside the target folder (absolute, '..', links, devices)."""
    name = member.name.replace("\\", "/")
    if name.startswith("/") or ".." in PurePosixPath(name).parts or not (member.isfile() or member.isdir()):
        raise NrflabError(f"{archive} contains an unsafe member {member.name!r}; refusing to extract it")


def _extract_folder(archive: Path, dest: Path, folder: str) -> None:
    """Safely unpack ``folder`` from a .tar.gz into ``dest`` (via a temp dir, merging into what is there)."""
    extra: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    try:
        with tarfile.open(archive, "r:gz") as tar, tempfile.TemporaryDirectory(dir=dest) as tmp:
            members = tar.getmembers()
            for member in members:
                _check_tar_member(archive, member)
            tar.extractall(tmp, members=members, **extra)
            src = Path(tmp) / folder
            if not src.is_dir():
                raise NrflabError(f"{archive} has no {folder}/ folder; is it the right archive?")
            for path in sorted(src.rglob("*")):
                if path.is_file():
                    target = dest / folder / path.relative_to(src)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(path, target)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise NrflabError(f"{archive} is not a readable .tar.gz ({exc}); delete it and try again") from exc


# --------------------------------------------------------------------------------------------- CIFAR pickles


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
            + _DOWNLOAD_HINT
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


# ------------------------------------------------------------------------------------------------------ SVHN


def _read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N x 3 x 32 x 32) and labels 0-9 from a cropped-digits .mat (X: 32x32x3xN, y: Nx1 with 10 = '0')."""
    from scipy.io import loadmat

    try:
        mat = loadmat(path, variable_names=["X", "y"])
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        raise NrflabError(f"{path} is not a readable MATLAB .mat file ({reason}); replace it") from exc
    if "X" not in mat or "y" not in mat:
        raise NrflabError(f"{path} lacks the X and y arrays of SVHN cropped digits (format 2)")
    x, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[2] != 3:
        raise NrflabError(f"{path}: X must be uint8 of shape (H, W, 3, N), got {x.dtype} {x.shape}")
    if y.shape[0] != x.shape[3]:
        raise NrflabError(f"{path} has {x.shape[3]} images but {y.shape[0]} labels")
    if y.size and (y.min() < 1 or y.max() > 10):
        raise NrflabError(f"{path} has labels outside 1..10")
    labels = y.astype(np.int64) % 10
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), labels


@register_dataset("svhn")
def load_svhn(root: PathLike | None = None, download: bool = False) -> DatasetBundle:
    """SVHN cropped digits, train (73,257) and test (26,032); the optional extra_32x32.mat is not used."""
    base = default_root("svhn", root)
    paths = {split: base / f"{split}_32x32.mat" for split in SVHN_URLS}
    if download:
        for split, path in paths.items():
            if not path.is_file():
                _download(SVHN_URLS[split], path)
    if not all(p.is_file() for p in paths.values()):
        raise NrflabError(
            f"svhn not found: put train_32x32.mat and test_32x32.mat (cropped digits) in {base}/, " + _DOWNLOAD_HINT
        )
    (x_train, y_train), (x_test, y_test) = (_read_svhn_mat(paths[s]) for s in ("train", "test"))
    return DatasetBundle(
        name="svhn",
        train=ImageTensorDataset(x_train, y_train),
        test=ImageTensorDataset(x_test, y_test),
        num_classes=10,
        input_shape=(3, x_train.shape[2], x_train.shape[3]),
        mean=(0.4377, 0.4438, 0.4728),
        std=(0.1980, 0.2010, 0.1970),
        classes=[str(i) for i in range(10)],
        info={"source": str(base)},
    )


# ------------------------------------------------------------------------------------------------------- IDX


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
            f"(or its raw/ or {subfolder}/raw/ subfolder), " + _DOWNLOAD_HINT
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


# ------------------------------------------------------------------------------------------------ imagefolder


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
