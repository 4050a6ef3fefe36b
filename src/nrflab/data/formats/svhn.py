"""SVHN cropped digits (``train_32x32.mat``, ``test_32x32.mat``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nrflab.core.errors import NrflabError
from nrflab.data.base import DatasetBundle, ImageTensorDataset, default_root, register_dataset
from nrflab.data.download import DOWNLOAD_HINT, SVHN_URLS, PathLike, _download


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
            f"svhn not found: put train_32x32.mat and test_32x32.mat (cropped digits) in {base}/, " + DOWNLOAD_HINT
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
