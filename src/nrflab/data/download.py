"""Downloads of the official dataset files: the addresses, their MD5 checksums, a verified atomic fetch and a
safe tar extraction. Nothing here parses a format (``nrflab.data.formats`` does).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zlib
from pathlib import Path, PurePosixPath

from nrflab.core.errors import NrflabError

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

DOWNLOAD_HINT = "or pass download=True (CLI: --download) to fetch them"


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
    safe_filter = hasattr(tarfile, "data_filter")  # extraction filters (3.12 and security releases before it)
    try:
        with tarfile.open(archive, "r:gz") as tar, tempfile.TemporaryDirectory(dir=dest) as tmp:
            members = tar.getmembers()
            for member in members:
                _check_tar_member(archive, member)
            if safe_filter:
                tar.extractall(tmp, members=members, filter="data")
            else:
                tar.extractall(tmp, members=members)
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
