"""Output directories: one writer at a time, overwrite that never loses the old result, and the layout of
a training run.

* :class:`DirLock` — an advisory lock (``fcntl.flock`` on ``.nrflab.lock``) held for a job's lifetime by
  every command that writes a directory (train, build-dataset, transfer, sweep, experiments). A second
  writer gets one line naming the holder's PID. A normal exit (success or error) removes the lock file; the
  kernel releases the lock when its process dies, so the file a killed process leaves is simply taken over.
* :class:`Stash` — ``--overwrite`` moves the old contents aside and deletes them only once the new job
  has committed its first result; on failure the old contents come back.
* :class:`RunDir` — the layout of a training run (config, metrics, model, checkpoint, kept epochs,
  evaluations) and reading it back, with one-line errors for anything missing or corrupt.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from nrflab.core.errors import NrflabError
from nrflab.core.io import read_json, read_numeric_csv, remove_stale_temps

LOCK_FILE = ".nrflab.lock"
STASH_DIR = ".nrflab-previous"


class DirectoryBusy(NrflabError):
    """Another process holds the directory's lock."""


class DirLock:
    """An exclusive advisory lock on a directory, held until :meth:`release` (or process exit).

    Not re-entrant: a second writer is refused even within one process (two threads, or code that would
    write a directory it is already writing).
    """

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = Path(directory)
        self._fh: Any = None

    @classmethod
    def acquire(cls, directory: str | os.PathLike[str], *, what: str = "directory") -> DirLock:
        lock = cls(directory)
        lock._lock(what)
        return lock

    def _lock(self, what: str) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NrflabError(f"cannot create {what} {self.directory}: {exc.strerror}") from None
        for _ in range(100):  # another holder may remove the file between our open and our lock: open again
            fh = self._try_lock(what)
            if fh is not None:
                fh.seek(0)
                fh.truncate()
                fh.write(str(os.getpid()))
                fh.flush()
                self._fh = fh
                return
        raise NrflabError(f"cannot lock {what} {self.directory}: its lock file keeps being replaced")

    def _try_lock(self, what: str) -> Any:
        """The open, locked lock file; None when the file we locked is no longer the directory's (its holder
        removed it on exit just before our lock): locking a removed file would let two writers in."""
        import fcntl

        path = self.directory / LOCK_FILE
        try:
            fh = open(path, "a+", encoding="utf-8")
        except OSError as exc:
            raise NrflabError(f"cannot lock {what} {self.directory}: {exc.strerror}") from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise DirectoryBusy(
                    f"{what} {self.directory} is being written by another nrflab process (pid {holder}); "
                    "wait for it to finish or choose another output"
                ) from None
            raise NrflabError(f"cannot lock {what} {self.directory}: {exc.strerror}") from None
        if _same_file(fh, path):
            return fh
        fh.close()
        return None

    def release(self) -> None:
        """Remove the lock file (while still holding it, so no one locks a file about to vanish), then unlock."""
        if self._fh is None:
            return
        import fcntl

        try:
            path = self.directory / LOCK_FILE
            if _same_file(self._fh, path):
                path.unlink(missing_ok=True)
        except OSError:
            pass  # a directory moved or made read-only meanwhile: the file stays, and is taken over next time
        finally:
            try:
                fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            finally:
                self._fh.close()
                self._fh = None

    def __enter__(self) -> DirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _same_file(fh: Any, path: Path) -> bool:
    """Whether the open file ``fh`` is the file at ``path`` now."""
    try:
        here, there = os.fstat(fh.fileno()), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


@contextmanager
def locked(directory: str | os.PathLike[str], *, what: str = "directory") -> Iterator[DirLock]:
    """Hold ``directory``'s lock for the ``with`` block; stale temporary files inside are removed."""
    lock = DirLock.acquire(directory, what=what)
    try:
        remove_stale_temps(directory)
        if pending_stash(directory):
            # An overwrite was killed before the new job committed: the old contents come back.
            Stash(Path(directory), Path(directory) / STASH_DIR).restore()
        yield lock
    finally:
        lock.release()


class Stash:
    """The old contents of a directory being overwritten, kept aside until the new job commits.

    ``Stash.aside(dir)`` moves every entry except the lock into ``dir/.nrflab-previous``; ``commit()``
    deletes them; ``restore()`` moves them back (over whatever the failed new job wrote).
    """

    def __init__(self, directory: Path, stash: Path | None):
        self.directory = directory
        self.path = stash

    @classmethod
    def aside(cls, directory: str | os.PathLike[str]) -> Stash:
        directory = Path(directory)
        stash = directory / STASH_DIR
        if stash.exists():  # left by an earlier overwrite that was killed: that run was never replaced
            cls(directory, stash).restore()
        entries = [p for p in directory.iterdir() if p.name not in (LOCK_FILE, STASH_DIR)]
        if not entries:
            return cls(directory, None)
        stash.mkdir()
        for p in entries:
            os.replace(p, stash / p.name)
        return cls(directory, stash)

    def commit(self) -> None:
        """The new job has written its first result: the old one can go."""
        if self.path is not None and self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)
        self.path = None

    def restore(self) -> None:
        """Put the old contents back (the new job failed before committing)."""
        if self.path is None or not self.path.exists():
            self.path = None
            return
        for p in list(self.directory.iterdir()):
            if p.name in (LOCK_FILE, STASH_DIR):
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        for p in list(self.path.iterdir()):
            os.replace(p, self.directory / p.name)
        self.path.rmdir()
        self.path = None


def pending_stash(directory: str | os.PathLike[str]) -> bool:
    """Whether an interrupted overwrite left the previous contents aside (restored at the next claim)."""
    return (Path(directory) / STASH_DIR).is_dir()


def check_output_path(
    path: str | os.PathLike[str],
    *,
    what: str = "output directory",
    allow_run: bool = False,
    allow_dataset: bool = False,
) -> Path:
    """Refuse an output path that is a file, or a directory that holds an input: a training run (unless
    ``allow_run``: the trainer writing its own run) or a built dataset (unless ``allow_dataset``: a builder
    resuming its own set).

    A directory *inside* a run or a built dataset, at any depth, is refused the same way (a chain nested in
    a run would be taken for part of it). Used before a command writes a *directory*: outputs never clobber
    inputs. Reads only.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NrflabError(f"{what} {path} exists and is not a directory")
    for parent in Path(os.path.abspath(path)).parents:
        if RunDir(parent).is_run():
            raise NrflabError(
                f"refusing to write into {path}: it is inside the training run {parent}; choose another {what}"
            )
        if (parent / "dataset.json").is_file():
            raise NrflabError(
                f"refusing to write into {path}: it is inside the built dataset {parent}; choose another {what}"
            )
    if not allow_run and RunDir(path).is_run():
        raise NrflabError(f"refusing to write into {path}: it is a training run directory; choose another {what}")
    if not allow_dataset and (path / "dataset.json").is_file():
        raise NrflabError(f"refusing to write into {path}: it holds a built dataset; choose another {what}")
    return path


INPUT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt", ".bin", ".npy", ".npz", ".pkl", ".mat", ".gz")
INPUT_NAMES = ("dataset.json", "config.json", "config.yaml", "metrics.csv", "model.json")


def is_input_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is named like a model, checkpoint, dataset shard, card or run record (by its name or
    suffix): a file an output must never be written over."""
    path = Path(path)
    return path.name in INPUT_NAMES or path.suffix.lower() in INPUT_SUFFIXES


def check_output_file(path: str | os.PathLike[str], *, what: str = "output file", suffix: str | None = None) -> Path:
    """Refuse an output *file* that would overwrite a model, checkpoint, dataset shard, card or run record."""
    path = Path(path)
    if path.is_dir():
        raise NrflabError(f"{what} {path} is a directory")
    if is_input_file(path):
        raise NrflabError(f"refusing to write {what} over {path}: it looks like a model, dataset or run file")
    if suffix is not None and path.suffix.lower() != suffix:
        raise NrflabError(f"{what} {path} must end in {suffix}")
    return path


# ---------------------------------------------------------------------------------------------
# The training run


class Recipe(Protocol):
    """A training recipe as the run directory sees it: it can name how it differs from a recorded one."""

    def differences(self, recorded: Mapping[str, object]) -> list[str]:
        """``field: recorded -> new`` for every field that makes it another run than ``recorded``."""
        ...


@dataclass(frozen=True)
class RunStatus:
    """The state of a run's last committed epoch."""

    epoch: int
    epochs: int
    finished: bool


class _RunFile:
    """The path of one run file, ``run.path / name``: one line per file in :class:`RunDir` instead of a
    property each. Read-only, like the properties it stands for."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, run: RunDir, owner: type[RunDir] | None = None) -> Path:
        return run.path / self.name

    def __set__(self, run: RunDir, value: object) -> None:
        raise AttributeError(f"a run file's path is fixed: {self.name}")


class RunDir:
    """A training run directory: where each file lives, and reading them back.

    Layout::

        config.json / config.yaml    the full resolved TrainConfig (+ "resolved": dataset, model, device)
        metrics.csv                  one row per epoch (epoch 0 = before training)
        probes.csv                   optional: probe metrics every few steps early in training
        model.safetensors (+ .json)  the latest model
        checkpoint.safetensors       model + optimizer + history: commits an epoch (written last)
        checkpoints/epoch_NNNN.safetensors   kept epochs (--keep-checkpoints N)
        evaluation_<dataset>.json    written by `nrflab evaluate`
    """

    CONFIG = "config.json"
    CONFIG_YAML = "config.yaml"
    METRICS = "metrics.csv"
    PROBES = "probes.csv"
    MODEL = "model.safetensors"
    CHECKPOINT = "checkpoint.safetensors"
    KEPT = "checkpoints"

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # -- paths ---------------------------------------------------------------------------------
    config_path = _RunFile(CONFIG)
    config_yaml_path = _RunFile(CONFIG_YAML)
    metrics_path = _RunFile(METRICS)
    probes_path = _RunFile(PROBES)
    model_path = _RunFile(MODEL)
    checkpoint_path = _RunFile(CHECKPOINT)

    def kept_path(self, epoch: int) -> Path:
        return self.path / self.KEPT / f"epoch_{int(epoch):04d}.safetensors"

    # -- what is there ----------------------------------------------------------------------------
    def is_run(self) -> bool:
        """Whether the directory holds (a part of) a training run."""
        return self.path.is_dir() and (
            self.config_path.is_file() or self.checkpoint_path.is_file() or self.model_path.is_file()
        )

    def status(self) -> RunStatus | None:
        """The last committed epoch, or None when no epoch was committed yet."""
        if not self.checkpoint_path.is_file():
            return None
        from nrflab.core.io import read_metadata

        meta = read_metadata(self.checkpoint_path)
        try:
            return RunStatus(int(meta.get("epoch", -1)), int(meta.get("epochs", -1)), meta.get("finished") == "1")
        except ValueError:
            raise NrflabError(f"run checkpoint {self.checkpoint_path} has corrupt metadata") from None

    def kept_epochs(self) -> list[int]:
        """Epochs whose model was kept under ``checkpoints/``."""
        folder = self.path / self.KEPT
        found = (re.fullmatch(r"epoch_(\d+)\.safetensors", p.name) for p in folder.glob("epoch_*.safetensors"))
        return sorted(int(m.group(1)) for m in found if m)

    def model_file(self, epoch: int | None = None) -> Path:
        """The model of ``epoch`` (a kept checkpoint, or the final model for its own epoch); latest if None."""
        if epoch is None:
            if not self.model_path.is_file():
                raise NrflabError(f"run {self.path} has no {self.MODEL} yet")
            return self.model_path
        kept = self.kept_path(epoch)
        if kept.is_file():
            return kept
        if self.model_path.is_file():
            from nrflab.core.io import read_metadata

            if read_metadata(self.model_path).get("epoch") == str(int(epoch)):
                return self.model_path
        have = ", ".join(map(str, self.kept_epochs())) or "none (train with --keep-checkpoints N)"
        raise NrflabError(f"epoch {epoch} of {self.path} was not kept; kept epochs: {have}")

    # -- reading ---------------------------------------------------------------------------------
    def read_config(self) -> dict[str, Any]:
        """The run's recorded config (a mapping), or a one-line error."""
        if not self.path.is_dir():
            raise NrflabError(f"run directory not found: {self.path}")
        config: dict[str, Any] = read_json(self.config_path, "run config", expect=dict)
        return config

    def read_metrics(self) -> list[dict[str, float]]:
        """Rows of metrics.csv as floats (empty cells become NaN)."""
        if not self.metrics_path.is_file():
            raise NrflabError(f"no {self.METRICS} in {self.path}; is it an nrflab run directory?")
        rows = read_numeric_csv(self.metrics_path, "metrics file")
        if not rows or "epoch" not in rows[0]:
            raise NrflabError(f"metrics file {self.metrics_path} has no epoch rows")
        return rows

    def read_probes(self) -> list[dict[str, float]]:
        """Rows of probes.csv (empty list when the run recorded none)."""
        return read_numeric_csv(self.probes_path, "probe file") if self.probes_path.is_file() else []

    # -- is it the run of this recipe? -------------------------------------------------------------
    def differences(self, cfg: Recipe) -> list[str]:
        """``field: recorded -> new`` for every field in which ``cfg`` differs from the recorded recipe
        (empty when the directory records no recipe yet)."""
        if not (self.is_run() and self.config_path.is_file()):
            return []
        return cfg.differences(self.read_config())

    def is_finished_with(self, cfg: Recipe) -> bool:
        """Whether the directory holds a finished run of exactly this recipe: the one rule by which a run is
        reused instead of trained (sweeps, experiment tasks and ``train_or_reuse`` all ask it)."""
        if not (self.is_run() and self.config_path.is_file()):
            return False
        status = self.status()
        return bool(status is not None and status.finished and not cfg.differences(self.read_config()))


def run_dir_of(path: str | os.PathLike[str]) -> RunDir | None:
    """The run a model file belongs to (``RUN/model.safetensors`` or ``RUN/checkpoints/epoch_K``), if any."""
    path = Path(path)
    if path.is_dir():
        return RunDir(path) if RunDir(path).is_run() else None
    parent = path.parent.parent if path.parent.name == RunDir.KEPT else path.parent
    return RunDir(parent) if (parent / RunDir.CONFIG).is_file() else None


def config_diff(old: Mapping[str, object], new: Mapping[str, object], *, ignore: tuple[str, ...] = ()) -> list[str]:
    """``field: old -> new`` for every differing field (nested mappings compared whole)."""
    out = []
    for key in sorted(set(old) | set(new)):
        if key in ignore:
            continue
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if json.dumps(a, sort_keys=True, default=str) != json.dumps(b, sort_keys=True, default=str):
            out.append(f"{key}: {_short(a)} -> {_short(b)}")
    return out


def _short(value: object) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


__all__ = [
    "RunDir",
    "RunStatus",
    "Stash",
    "check_output_file",
    "check_output_path",
    "config_diff",
    "is_input_file",
    "locked",
    "pending_stash",
    "run_dir_of",
]
