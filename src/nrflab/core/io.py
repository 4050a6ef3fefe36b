"""Plain files, written atomically and read defensively: the one home for nrflab's file I/O.

Every file nrflab writes goes to a temporary file in the same directory and is renamed into place, so a
reader (or a kill at any moment) sees the old file or the new one, never half of one. Files get the
permissions the umask gives (collaborators and workers on a shared filesystem can read runs). Readers
turn every kind of bad file into one :class:`~nrflab.core.errors.NrflabError` line that names the user's path.
Nothing here unpickles or executes anything.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from nrflab.core.errors import NrflabError
from nrflab.core.records import to_json

TEMP_SUFFIX = ".tmp"


def _umask() -> int:
    """The process umask (read without changing it where /proc allows; else set and restore)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


@contextmanager
def _temp_beside(path: Path) -> Iterator[Path]:
    """A temporary path in ``path``'s directory, removed unless it was renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def _commit(tmp: Path, path: Path) -> None:
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o666 & ~_umask())  # the mode a newly created regular file gets under the current umask
    os.replace(tmp, path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write text (UTF-8) via a temporary file and rename, so readers never see a half-written file."""
    path = Path(path)
    with _temp_beside(path) as tmp:
        tmp.write_bytes(text.encode("utf-8"))
        _commit(tmp, path)


def json_default(obj: Any) -> Any:
    """JSON for the types results carry: paths, sets/tuples, tensors and numpy scalars, records (dataclasses)."""
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if torch.is_tensor(obj):
        return obj.tolist()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_json(obj)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def to_json_text(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, default=json_default) + "\n"


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write_text(path, to_json_text(obj))


def atomic_save_tensors(
    path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """``safetensors.save_file`` via a temporary file and rename; errors name ``path``, not the temp file."""
    path = Path(path)
    with _temp_beside(path) as tmp:
        try:
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        _commit(tmp, path)


def remove_stale_temps(directory: str | os.PathLike[str]) -> list[Path]:
    """Remove temporary files left by writes that were interrupted (``.NAME.*.tmp``).

    Call only while holding the directory's lock: then no other writer can own them.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for p in directory.glob("**/.*" + TEMP_SUFFIX):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def read_json(path: str | os.PathLike[str], what: str = "file", *, expect: type | None = None) -> Any:
    """Parse a JSON file or raise a one-line error naming it; ``expect=dict`` also checks the top-level type."""
    path = Path(path)
    if not path.is_file():
        raise NrflabError(f"{what} not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NrflabError(f"{what} {path} is not valid JSON ({exc.__class__.__name__})") from None
    except OSError as exc:
        raise NrflabError(f"cannot read {what} {path}: {exc.strerror}") from None
    if expect is not None and not isinstance(data, expect):
        kind = "a mapping" if expect is dict else expect.__name__
        raise NrflabError(f"{what} {path} must hold {kind}, not {type(data).__name__}")
    return data


def read_yaml_mapping(path: str | os.PathLike[str], what: str = "config file") -> dict[str, Any]:
    """Parse a YAML (or JSON) file that must hold a mapping, or raise a one-line error naming it.

    ``yaml.safe_load`` builds only plain data: no tag in the file can construct objects or run code.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise NrflabError(f"{what} not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise NrflabError(f"{what} {path} is not valid YAML/JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise NrflabError(f"{what} {path} must hold a mapping of settings")
    return data


def write_csv(path: str | os.PathLike[str], rows: Sequence[Mapping[str, object]], columns: list[str]) -> None:
    """Write rows as CSV atomically (floats with 6 significant digits, missing cells empty)."""
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())


def read_numeric_csv(path: str | os.PathLike[str], what: str = "metrics file") -> list[dict[str, float]]:
    """Rows of a CSV of numbers as floats (empty cells become NaN); one-line errors for anything else."""
    path = Path(path)
    if not path.is_file():
        raise NrflabError(f"{what} not found: {path}")
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise NrflabError(f"{what} {path} is not a CSV file ({exc.__class__.__name__})") from None
    out = []
    for line, r in enumerate(rows, start=2):
        parsed: dict[str, float] = {}
        for k, v in r.items():
            if k is None or v is None:
                raise NrflabError(f"{what} {path} line {line} does not match its header")
            try:
                parsed[k] = float(v) if v != "" else math.nan
            except ValueError:
                raise NrflabError(f"{what} {path} line {line}: {k} = {v[:40]!r} is not a number") from None
        out.append(parsed)
    return out


__all__ = [
    "atomic_save_tensors",
    "atomic_write_json",
    "atomic_write_text",
    "load_tensors",
    "read_json",
    "read_metadata",
    "read_numeric_csv",
    "read_yaml_mapping",
    "remove_stale_temps",
    "write_csv",
]


def load_tensors(path: str | os.PathLike[str], what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Read a safetensors file or raise a one-line error (missing, corrupt, not safetensors)."""
    path = Path(path)
    if not path.is_file():
        raise NrflabError(f"{what} not found: {path}")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise NrflabError(f"{what} {path} is not a valid safetensors file ({str(exc).splitlines()[0][:80]})") from None


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise NrflabError(
            f"checkpoint {path} is not a valid safetensors file ({str(exc).splitlines()[0][:80]})"
        ) from None
