"""On-disk dataset loaders: tiny files in each real format, error paths, and the download path (no network)."""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import os
import pickle
import shutil
import struct
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat

import nrflab.data as data
from nrflab.core.errors import NrflabError
from nrflab.data import download
from nrflab.data.base import channel_stats
from nrflab.data.formats import cifar, idx, imagefolder, svhn

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a URL fails, so no test can reach the network by accident."""

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------------- CIFAR


def _cifar_batch(n: int, seed: int, label_keys: dict[bytes, int]) -> dict:
    """A batch dict shaped like the official files: bytes keys, uint8 (N, 3072) data, list-of-int labels."""
    rng = np.random.default_rng(seed)
    batch = {
        b"batch_label": f"batch {seed}".encode(),
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(n)],
    }
    for key, num_classes in label_keys.items():
        batch[key] = [int(v) for v in rng.integers(0, num_classes, size=n)]
    return batch


def _dump(obj, path: Path, protocol: int = pickle.DEFAULT_PROTOCOL) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=protocol)


def make_cifar10(root: Path, protocol: int = pickle.DEFAULT_PROTOCOL) -> Path:
    """Write cifar-10-batches-py/ with 5 train batches of 3 images and a test batch of 4; return the folder."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        _dump(_cifar_batch(3, i, {b"labels": 10}), folder / f"data_batch_{i}", protocol)
    _dump(_cifar_batch(4, 99, {b"labels": 10}), folder / "test_batch", protocol)
    meta = {b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_cases_per_batch": 3, b"num_vis": 3072}
    _dump(meta, folder / "batches.meta", protocol)
    return folder


def make_cifar100(root: Path) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    keys = {b"fine_labels": 100, b"coarse_labels": 20}
    _dump(_cifar_batch(6, 1, keys), folder / "train")
    _dump(_cifar_batch(4, 2, keys), folder / "test")
    meta = {
        b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
    }
    _dump(meta, folder / "meta")
    return folder


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_shapes_values_and_exact_round_trip(tmp_path: Path, protocol: int) -> None:
    folder = make_cifar10(tmp_path, protocol)
    bundle = cifar.load_cifar10(root=tmp_path)
    assert (len(bundle.train), len(bundle.test)) == (15, 4)
    assert bundle.train.images.dtype == torch.uint8 and bundle.train.images.shape == (15, 3, 32, 32)
    assert bundle.num_classes == 10 and bundle.input_shape == (3, 32, 32)
    assert bundle.classes == CIFAR10_NAMES
    assert bundle.mean == (0.4914, 0.4822, 0.4465) and bundle.std == (0.2023, 0.1994, 0.2010)
    assert bundle.info["source"] == str(folder)

    with open(folder / "data_batch_2", "rb") as fh:
        raw = pickle.load(fh, encoding="bytes")
    row = raw[b"data"][1]  # train index 3 + 1 = 4: second image of the second batch
    image, label = bundle.train[4]
    assert label == raw[b"labels"][1]
    # channel-major RGB: red plane is bytes 0..1023, row-major 32x32; green starts at 1024
    assert int(bundle.train.images[4, 0, 0, 1]) == int(row[1])
    assert int(bundle.train.images[4, 1, 0, 0]) == int(row[1024])
    assert int(bundle.train.images[4, 2, 31, 31]) == int(row[3071])
    assert image.dtype == torch.float32 and 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert torch.allclose(image, torch.from_numpy(row.reshape(3, 32, 32)).float() / 255)


def test_cifar10_accepts_the_batches_folder_itself_and_goes_through_the_registry(tmp_path: Path) -> None:
    folder = make_cifar10(tmp_path)
    direct = data.load_dataset("cifar10", root=folder)
    via_parent = data.load_dataset("CIFAR10", root=tmp_path)
    assert direct.name == "cifar10" and torch.equal(direct.test.images, via_parent.test.images)
    assert {"cifar10", "cifar100", "cifar100-coarse", "svhn", "mnist", "fashion-mnist", "imagefolder"} <= set(
        data.list_datasets()
    )


def test_cifar100_fine_and_coarse_labels(tmp_path: Path) -> None:
    folder = make_cifar100(tmp_path)
    with open(folder / "train", "rb") as fh:
        raw = pickle.load(fh, encoding="bytes")
    fine = data.load_dataset("cifar100", root=tmp_path)
    coarse = data.load_dataset("cifar100-coarse", root=tmp_path)
    assert fine.num_classes == 100 and coarse.num_classes == 20
    assert fine.classes[7] == "fine7" and coarse.classes == [f"coarse{i}" for i in range(20)]
    assert fine.train.labels.tolist() == raw[b"fine_labels"]
    assert coarse.train.labels.tolist() == raw[b"coarse_labels"]
    assert torch.equal(fine.train.images, coarse.train.images)
    assert fine.mean == (0.5071, 0.4865, 0.4409) and fine.std == (0.2673, 0.2564, 0.2762)


def test_cifar_missing_files_say_what_to_put_where(tmp_path: Path) -> None:
    with pytest.raises(NrflabError, match="cifar10 not found: put data_batch_1") as err:
        cifar.load_cifar10(root=tmp_path)
    message = str(err.value)
    assert "data_batch_1" in message and "batches.meta" in message and "--download" in message
    assert str(tmp_path / "cifar-10-batches-py") in message and "\n" not in message

    folder = make_cifar10(tmp_path / "partial")
    (folder / "test_batch").unlink()
    with pytest.raises(NrflabError, match="test_batch"):
        cifar.load_cifar10(root=tmp_path / "partial")


def test_cifar_truncated_pickle_names_the_file(tmp_path: Path) -> None:
    folder = make_cifar10(tmp_path)
    path = folder / "data_batch_3"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(NrflabError, match="data_batch_3"):
        cifar.load_cifar10(root=tmp_path)


def test_cifar_wrong_content_names_the_file(tmp_path: Path) -> None:
    folder = make_cifar10(tmp_path)
    bad = _cifar_batch(3, 1, {b"labels": 10})
    bad[b"data"] = bad[b"data"][:, :100]
    _dump(bad, folder / "data_batch_1")
    with pytest.raises(NrflabError, match=r"data_batch_1.*\(N, 3072\)"):
        cifar.load_cifar10(root=tmp_path)

    short = _cifar_batch(3, 1, {b"labels": 10})
    short[b"labels"] = short[b"labels"][:2]
    _dump(short, folder / "data_batch_1")
    with pytest.raises(NrflabError, match="3 images but 2 labels"):
        cifar.load_cifar10(root=tmp_path)

    _dump(["not", "a", "dict"], folder / "data_batch_1")
    with pytest.raises(NrflabError, match="should hold a dict"):
        cifar.load_cifar10(root=tmp_path)


def _py2_style_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """Protocol-2 bytes as Python 2's cPickle wrote the official files: str as BINSTRING, numpy 1.x names."""

    def short(b: bytes) -> bytes:
        return b"U" + bytes([len(b)]) + b

    raw = data.tobytes()
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85"
        + short(b"b")
        + b"\x87R"
        + b"(K\x01K"
        + bytes([data.shape[0]])
        + b"M"
        + struct.pack("<H", data.shape[1])
        + b"\x86"
        + b"cnumpy\ndtype\n"
        + short(b"u1")
        + b"K\x00K\x01\x87R"
        + b"(K\x03"
        + short(b"|")
        + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
        + b"\x89T"
        + struct.pack("<i", len(raw))
        + raw
        + b"tb"
    )
    label_list = b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"e"
    return b"\x80\x02}(" + short(b"data") + array + short(b"labels") + label_list + b"u."


def test_cifar_reads_python2_pickles_with_legacy_numpy_names(tmp_path: Path) -> None:
    folder = make_cifar10(tmp_path)
    pixels = np.random.default_rng(7).integers(0, 256, size=(3, 3072), dtype=np.uint8)
    (folder / "data_batch_1").write_bytes(_py2_style_pickle(pixels, [4, 0, 9]))
    bundle = cifar.load_cifar10(root=tmp_path)
    assert bundle.train.labels[:3].tolist() == [4, 0, 9]
    assert np.array_equal(bundle.train.images[:3].numpy(), pixels.reshape(3, 3, 32, 32))


class _RunsShell:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _CallsCodec:
    def __reduce__(self):
        return (codecs.encode, ("payload", "rot13"))


@pytest.mark.parametrize("where", ["top", "nested"])
def test_malicious_pickle_is_refused_without_running_anything(tmp_path: Path, where: str) -> None:
    folder = make_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    payload = _RunsShell(marker)
    evil = payload if where == "top" else {b"data": payload, b"labels": [0]}
    _dump(evil, folder / "test_batch")
    with pytest.raises(NrflabError, match=r"test_batch.*refusing to load (posix|os|nt)\.system"):
        cifar.load_cifar10(root=tmp_path)
    assert not marker.exists()


def test_pickle_codec_calls_other_than_latin1_bytes_are_refused(tmp_path: Path) -> None:
    folder = make_cifar10(tmp_path)
    _dump({b"data": _CallsCodec(), b"labels": [0]}, folder / "test_batch", protocol=2)
    with pytest.raises(NrflabError, match="latin-1"):
        cifar.load_cifar10(root=tmp_path)


# ----------------------------------------------------------------------------------------------------- SVHN


def make_svhn(root: Path) -> dict[str, dict[str, np.ndarray]]:
    """Write train_32x32.mat (7 images) and test_32x32.mat (5) in the cropped-digits layout; labels 1..10."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    written = {}
    for split, n in (("train", 7), ("test", 5)):
        x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
        y = np.array([[10], [1], [2], [3], [9], [10], [5]][:n], dtype=np.uint8)
        savemat(root / f"{split}_32x32.mat", {"X": x, "y": y})
        written[split] = {"X": x, "y": y}
    return written


def test_svhn_transposes_and_maps_label_10_to_0(tmp_path: Path) -> None:
    written = make_svhn(tmp_path)
    bundle = data.load_dataset("svhn", root=tmp_path)
    x = written["train"]["X"]
    assert bundle.train.images.shape == (7, 3, 32, 32) and bundle.train.images.dtype == torch.uint8
    assert bundle.train.labels.tolist() == [0, 1, 2, 3, 9, 0, 5]
    assert bundle.test.labels.tolist() == [0, 1, 2, 3, 9]
    # images[n, c, h, w] == X[h, w, c, n]
    assert int(bundle.train.images[2, 1, 5, 7]) == int(x[5, 7, 1, 2])
    assert np.array_equal(bundle.train.images[6].numpy(), x[:, :, :, 6].transpose(2, 0, 1))
    image, label = bundle.test[0]
    assert label == 0 and 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert bundle.num_classes == 10 and bundle.input_shape == (3, 32, 32) and bundle.classes[0] == "0"
    assert bundle.mean == (0.4377, 0.4438, 0.4728) and bundle.std == (0.1980, 0.2010, 0.1970)


def test_svhn_default_root_comes_from_nrflab_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_svhn(tmp_path / "svhn")
    monkeypatch.setenv("NRFLAB_DATA", str(tmp_path))
    assert data.load_dataset("svhn").info["source"] == str(tmp_path / "svhn")


def test_svhn_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(NrflabError, match=r"train_32x32\.mat and test_32x32\.mat.*--download"):
        svhn.load_svhn(root=tmp_path)
    make_svhn(tmp_path)
    savemat(tmp_path / "test_32x32.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8)})
    with pytest.raises(NrflabError, match=r"test_32x32\.mat lacks the X and y"):
        svhn.load_svhn(root=tmp_path)
    (tmp_path / "test_32x32.mat").write_bytes(b"this is not a mat file at all" * 10)
    with pytest.raises(NrflabError, match=r"test_32x32\.mat is not a readable"):
        svhn.load_svhn(root=tmp_path)
    savemat(tmp_path / "test_32x32.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.ones((3, 1), np.uint8)})
    with pytest.raises(NrflabError, match="2 images but 3 labels"):
        svhn.load_svhn(root=tmp_path)


# ------------------------------------------------------------------------------------------------------ IDX


def _idx_images(images: np.ndarray) -> bytes:
    n, h, w = images.shape
    return struct.pack(">IIII", 0x00000803, n, h, w) + images.astype(np.uint8).tobytes()


def _idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">II", 0x00000801, len(labels)) + labels.astype(np.uint8).tobytes()


def make_idx(folder: Path, gz: bool, n_train: int = 6, n_test: int = 4) -> dict[str, np.ndarray]:
    """Write the four MNIST IDX files (gzipped or plain) into ``folder``; return the arrays written."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, size=n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, size=n_test, dtype=np.uint8),
    }
    for name, array in arrays.items():
        payload = _idx_images(array) if array.ndim == 3 else _idx_labels(array)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(payload))
        else:
            (folder / name).write_bytes(payload)
    return arrays


@pytest.mark.parametrize(("subdir", "gz"), [("", False), ("", True), ("raw", True), ("MNIST/raw", False)])
def test_mnist_layouts_plain_and_gzip(tmp_path: Path, subdir: str, gz: bool) -> None:
    arrays = make_idx(tmp_path / subdir, gz)
    bundle = data.load_dataset("mnist", root=tmp_path)
    assert bundle.train.images.shape == (6, 1, 28, 28) and bundle.train.images.dtype == torch.uint8
    assert bundle.test.images.shape == (4, 1, 28, 28)
    assert np.array_equal(bundle.train.images[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert bundle.test.labels.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    image, label = bundle.train[3]
    assert label == int(arrays["train-labels-idx1-ubyte"][3]) and float(image.max()) <= 1.0
    assert bundle.input_shape == (1, 28, 28) and bundle.mean == (0.1307,) and bundle.std == (0.3081,)
    assert bundle.info["source"] == str(tmp_path / subdir)


def test_fashion_mnist_classes_and_layout(tmp_path: Path) -> None:
    make_idx(tmp_path / "FashionMNIST" / "raw", gz=True)
    bundle = data.load_dataset("fashion-mnist", root=tmp_path)
    assert bundle.classes[0] == "T-shirt/top" and bundle.classes[9] == "Ankle boot" and bundle.num_classes == 10
    assert bundle.mean == (0.2860,) and bundle.std == (0.3530,)


def test_idx_missing_files(tmp_path: Path) -> None:
    make_idx(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(NrflabError, match="mnist not found: put train-images-idx3-ubyte") as err:
        idx.load_mnist(root=tmp_path)
    assert "t10k-labels-idx1-ubyte" in str(err.value) and "--download" in str(err.value)


def test_idx_bad_magic_size_and_count_name_the_file(tmp_path: Path) -> None:
    arrays = make_idx(tmp_path, gz=False)
    images_path = tmp_path / "train-images-idx3-ubyte"
    good = images_path.read_bytes()

    images_path.write_bytes(struct.pack(">I", 0x00000801) + good[4:])
    with pytest.raises(NrflabError, match=r"train-images-idx3-ubyte is not a uint8 IDX file.*0x00000801"):
        idx.load_mnist(root=tmp_path)

    images_path.write_bytes(good[:-10])
    with pytest.raises(NrflabError, match=r"train-images-idx3-ubyte holds"):
        idx.load_mnist(root=tmp_path)

    images_path.write_bytes(good)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_labels(arrays["train-labels-idx1-ubyte"][:5]))
    with pytest.raises(NrflabError, match="6 images but .*train-labels-idx1-ubyte has 5 labels"):
        idx.load_mnist(root=tmp_path)


def test_idx_corrupt_gzip_names_the_file(tmp_path: Path) -> None:
    make_idx(tmp_path, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(NrflabError, match=r"t10k-images-idx3-ubyte\.gz could not be read"):
        idx.load_mnist(root=tmp_path)


# ---------------------------------------------------------------------------------------------- imagefolder


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_imagefolder_train_test_layout_round_trips_pixels(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    pixels = {}
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("zebra", "ant", "mole"):
            for i in range(n):
                array = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)  # H=6, W=8
                pixels[(split, cls, i)] = array
                _png(tmp_path / split / cls / f"{i}.png", array)
    bundle = data.load_dataset("imagefolder", root=tmp_path)
    assert bundle.classes == ["ant", "mole", "zebra"] and bundle.num_classes == 3
    assert bundle.input_shape == (3, 6, 8) and bundle.train.images.dtype == torch.uint8
    assert (len(bundle.train), len(bundle.test)) == (9, 6)
    # train is ordered by class then file name: index 4 is mole/1.png
    assert bundle.train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert np.array_equal(bundle.train.images[4].numpy(), pixels[("train", "mole", 1)].transpose(2, 0, 1))
    assert np.array_equal(bundle.test.images[5].numpy(), pixels[("test", "zebra", 1)].transpose(2, 0, 1))
    assert (bundle.mean, bundle.std) == channel_stats(bundle.train.images)
    image, _ = bundle.test[0]
    assert image.shape == (3, 6, 8) and 0.0 <= float(image.min()) and float(image.max()) <= 1.0


def test_imagefolder_single_tree_is_split_80_20_per_class(tmp_path: Path) -> None:
    for c, cls in enumerate(("a", "b", "c")):
        for i in range(10):
            _png(tmp_path / cls / f"{i:02d}.png", np.full((5, 5), 20 * c + i, dtype=np.uint8))
    bundle = imagefolder.load_imagefolder(root=tmp_path)
    assert bundle.input_shape == (1, 5, 5)  # mode L stays one channel
    assert np.bincount(bundle.train.labels.numpy()).tolist() == [8, 8, 8]
    assert np.bincount(bundle.test.labels.numpy()).tolist() == [2, 2, 2]
    train_values = set(bundle.train.images[:, 0, 0, 0].tolist())
    test_values = set(bundle.test.images[:, 0, 0, 0].tolist())
    assert not train_values & test_values and len(train_values | test_values) == 30
    again = imagefolder.load_imagefolder(root=tmp_path)
    assert torch.equal(again.test.images, bundle.test.images)  # fixed seed


def test_imagefolder_mixed_gray_and_colour_becomes_rgb(tmp_path: Path) -> None:
    _png(tmp_path / "train" / "x" / "gray.png", np.full((4, 4), 77, dtype=np.uint8))
    _png(tmp_path / "train" / "y" / "rgb.jpg", np.zeros((4, 4, 3), dtype=np.uint8))
    _png(tmp_path / "test" / "x" / "g.bmp", np.full((4, 4), 5, dtype=np.uint8))
    _png(tmp_path / "test" / "y" / "rgba.png", np.zeros((4, 4, 4), dtype=np.uint8))
    bundle = imagefolder.load_imagefolder(root=tmp_path)
    assert bundle.input_shape == (3, 4, 4)
    assert bundle.train.images[0].unique().tolist() == [77]


def test_imagefolder_errors(tmp_path: Path) -> None:
    with pytest.raises(NrflabError, match=r"train/<class>/.*<class>/"):
        imagefolder.load_imagefolder(root=tmp_path / "nothing")

    _png(tmp_path / "s" / "train" / "a" / "0.png", np.zeros((4, 4, 3), np.uint8))
    _png(tmp_path / "s" / "train" / "b" / "0.png", np.zeros((4, 4, 3), np.uint8))
    _png(tmp_path / "s" / "test" / "a" / "0.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(NrflabError, match="must match"):
        imagefolder.load_imagefolder(root=tmp_path / "s")

    _png(tmp_path / "s" / "test" / "b" / "1.png", np.zeros((5, 4, 3), np.uint8))
    with pytest.raises(NrflabError, match=r"test/b/1\.png is 4x5 .*resize"):
        imagefolder.load_imagefolder(root=tmp_path / "s")

    (tmp_path / "s" / "test" / "b" / "1.png").write_bytes(b"not a png")
    with pytest.raises(NrflabError, match=r"1\.png is not a readable image"):
        imagefolder.load_imagefolder(root=tmp_path / "s")

    shutil.rmtree(tmp_path / "s" / "test")
    with pytest.raises(NrflabError, match="has train/ but not the other"):
        imagefolder.load_imagefolder(root=tmp_path / "s")


# ------------------------------------------------------------------------------------------------- download


def _tar_gz(source: Path, archive: Path, arcname: str) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname=arcname)
    return archive


def _serve(monkeypatch: pytest.MonkeyPatch, table: dict[str, Path]) -> list[str]:
    """Make ``download._fetch`` copy local files for the given URLs (with their true MD5s); return the URL log."""
    fetched: list[str] = []

    def fake_fetch(url: str, dest: Path) -> None:
        fetched.append(url)
        shutil.copyfile(table[url], dest)

    monkeypatch.setattr(download, "_fetch", fake_fetch)
    for url, path in table.items():
        monkeypatch.setitem(download.MD5SUMS, url, _md5(path))
    return fetched


def test_cifar10_download_extracts_verifies_and_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = make_cifar10(tmp_path / "src")
    archive = _tar_gz(source, tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py")
    fetched = _serve(monkeypatch, {download.CIFAR10_URL: archive})
    target = tmp_path / "data"
    bundle = data.load_dataset("cifar10", root=target, download=True)
    assert fetched == [download.CIFAR10_URL]
    assert len(bundle.train) == 15 and bundle.classes == CIFAR10_NAMES
    assert sorted(p.name for p in target.iterdir()) == ["cifar-10-batches-py"]  # archive and temp files gone
    fetched.clear()
    cifar.load_cifar10(root=target, download=True)
    assert fetched == []  # present files are not fetched again


def test_cifar100_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _tar_gz(make_cifar100(tmp_path / "src"), tmp_path / "c100.tar.gz", "cifar-100-python")
    _serve(monkeypatch, {download.CIFAR100_URL: archive})
    assert cifar.load_cifar100_coarse(root=tmp_path / "data", download=True).num_classes == 20


def test_checksum_mismatch_is_rejected_and_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _tar_gz(make_cifar10(tmp_path / "src"), tmp_path / "a.tar.gz", "cifar-10-batches-py")
    _serve(monkeypatch, {download.CIFAR10_URL: archive})
    monkeypatch.setitem(download.MD5SUMS, download.CIFAR10_URL, "0" * 32)
    target = tmp_path / "data"
    with pytest.raises(NrflabError, match="checksum mismatch"):
        cifar.load_cifar10(root=target, download=True)
    assert list(target.iterdir()) == []


def test_unsafe_tar_member_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/../../escaped.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    _serve(monkeypatch, {download.CIFAR10_URL: archive})
    target = tmp_path / "deep" / "data"
    with pytest.raises(NrflabError, match="unsafe member"):
        cifar.load_cifar10(root=target, download=True)
    assert not (tmp_path / "deep" / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()


def test_mnist_and_svhn_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_idx(tmp_path / "mnist_src", gz=True)
    make_svhn(tmp_path / "svhn_src")
    table = {download.MNIST_BASE_URL + f"{n}.gz": tmp_path / "mnist_src" / f"{n}.gz" for n in download.IDX_FILES}
    table.update({url: tmp_path / "svhn_src" / f"{split}_32x32.mat" for split, url in download.SVHN_URLS.items()})
    fetched = _serve(monkeypatch, table)
    assert len(idx.load_mnist(root=tmp_path / "m", download=True).train) == 6
    assert svhn.load_svhn(root=tmp_path / "s", download=True).test.labels.tolist() == [0, 1, 2, 3, 9]
    assert sorted(fetched) == sorted(table)
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["test_32x32.mat", "train_32x32.mat"]


def test_network_failure_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NrflabError, match=r"could not download .*train-images-idx3-ubyte\.gz.*network disabled"):
        idx.load_fashion_mnist(root=tmp_path, download=True)
    assert list(tmp_path.iterdir()) == []


def test_imagefolder_size_resizes_and_centre_crops_photos_of_any_size(tmp_path: Path) -> None:
    # a wide photo whose centre square is white and whose sides are black, and a tall grey one
    wide = np.zeros((40, 80, 3), dtype=np.uint8)
    wide[:, 20:60] = 255
    _png(tmp_path / "train" / "a" / "wide.png", wide)
    _png(tmp_path / "train" / "b" / "tall.png", np.full((90, 30), 128, dtype=np.uint8))
    _png(tmp_path / "test" / "a" / "0.png", np.zeros((17, 23, 3), dtype=np.uint8))
    _png(tmp_path / "test" / "b" / "0.png", np.zeros((64, 64, 3), dtype=np.uint8))
    with pytest.raises(NrflabError, match=r"imagefolder:size=S"):
        data.load_dataset("imagefolder", root=tmp_path)
    bundle = data.load_dataset("imagefolder:size=16", root=tmp_path)
    assert bundle.input_shape == (3, 16, 16) and bundle.train.images.shape == (2, 3, 16, 16)
    assert int(bundle.train.images[0][:, :, 2:-2].min()) >= 250  # the crop kept the white centre of the wide photo
    assert bundle.train.images[1].unique().tolist() == [128]  # grey widened to RGB, resized, cropped
    assert bundle.info["images"] == "resized and centre-cropped to 16x16"
    # the name says what the data is (the size), never where it lives or how it is held in memory
    assert bundle.name == "imagefolder:size=16"
    assert data.load_dataset(f"imagefolder:root={tmp_path},size=16,memory=1").name == "imagefolder:size=16"


def test_imagefolder_over_the_memory_bound_decodes_only_what_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        for i in range(6):
            _png(tmp_path / cls / f"{i}.png", rng.integers(0, 256, size=(300, 200, 3), dtype=np.uint8))
    eager = data.load_dataset(f"imagefolder:root={tmp_path},size=200")
    decoded: list[Path] = []
    real = imagefolder._read_image
    monkeypatch.setattr(imagefolder, "_read_image", lambda p, **kw: decoded.append(p) or real(p, **kw))
    assert data.load_dataset(f"imagefolder:root={tmp_path},size=32,memory=1").info["storage"] == "decoded in memory"
    decoded.clear()
    decoded.clear()
    lazy = data.load_dataset(f"imagefolder:root={tmp_path},size=200,memory=1")  # 12 x 3 x 200 x 200 bytes > 1 MiB
    assert lazy.info["storage"].startswith("decoded from disk") and isinstance(lazy.test, imagefolder.ImageFileDataset)
    n_stats = len(decoded)  # the mean/std sample: every training image of this small set
    assert n_stats == len(lazy.train)
    image, label = lazy.test[1]
    assert len(decoded) == n_stats + 1 and image.shape == (3, 200, 200)
    assert torch.equal((image * 255).round().to(torch.uint8), eager.test.images[1]) and label == int(
        eager.test.labels[1]
    )
    assert (lazy.mean, lazy.std) == (eager.mean, eager.std)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("imagefolder:size=0", r"size= must be an integer in 4\.\.4096"),
        ("imagefolder:size=big", r"size= must be an integer"),
        ("imagefolder:memory=-1", r"memory= must be an integer"),
        ("imagefolder:colour=1", r"imagefolder takes root=, size= and memory= \(got colour\)"),
    ],
)
def test_imagefolder_bad_parameters_are_one_line(tmp_path: Path, name: str, message: str) -> None:
    with pytest.raises(NrflabError, match=message):
        data.load_dataset(name, root=tmp_path)
