"""A transfer output directory: its layout, the result cache, and claiming it safely.

Layout (:class:`TransferDir`)::

    transfer_settings.json            the manifest: the settings every cached number was made with
    adversarial/<source>.safetensors  adversarial examples crafted on each source (+ its predictions)
    pairs/<source>__<target>.json     the numbers of each pair
    transfer.json, pairs.csv, matrix_*.csv, heatmap_*.png/.svg, summary.md   written from the result

Claiming (:func:`open_store`): the directory's lock is held for the whole job (a second writer gets one
line naming the holder); a directory holding anything but transfer results is refused; results made with
other settings are refused, and existing results need ``resume`` (reuse) or ``overwrite``. With
``overwrite`` the old results are moved aside and deleted only once the new job commits its first result
(restored if it fails before). The manifest is written with that first result, so a job that fails before
it leaves no manifest behind and its corrected rerun needs no ``--overwrite``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

import torch

from nrflab.core.errors import NrflabError
from nrflab.core.io import atomic_save_tensors, atomic_write_json, load_tensors, read_json, read_metadata
from nrflab.core.logs import get_logger
from nrflab.core.records import to_json
from nrflab.runs.rundir import Stash, check_output_path, is_input_file, locked, pending_stash
from nrflab.transfer.refs import ModelRef
from nrflab.transfer.results import PairNumbers, TransferSettings

log = get_logger("transfer")

LOCK_WHAT = "transfer directory"


def slug(name: str) -> str:
    """A file-name-safe form of a model name."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", name).strip("_") or "model"


class TransferDir:
    """Where each file of a transfer output directory lives."""

    MANIFEST = "transfer_settings.json"
    ADVERSARIAL = "adversarial"
    PAIRS = "pairs"
    JSON = "transfer.json"
    PAIRS_CSV = "pairs.csv"
    SUMMARY = "summary.md"
    OUTPUT_PATTERNS = ("matrix_*.csv", "heatmap_*.png", "heatmap_*.svg")

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def manifest(self) -> Path:
        return self.path / self.MANIFEST

    def adversarial(self, ref: ModelRef) -> Path:
        return self.path / self.ADVERSARIAL / f"{slug(ref.name)}.safetensors"

    def pair(self, source: ModelRef, target: ModelRef) -> Path:
        return self.path / self.PAIRS / f"{slug(source.name)}__{slug(target.name)}.json"

    def matrix_csv(self, metric: str) -> Path:
        return self.path / f"matrix_{metric}.csv"

    def heatmap_stem(self, metric: str) -> Path:
        return self.path / f"heatmap_{metric}"

    def owns(self, entry: Path) -> bool:
        """Whether a directory entry is one of the files a transfer job writes (hidden files count too)."""
        name = entry.name
        if name.startswith(".") or name in (
            self.MANIFEST,
            self.ADVERSARIAL,
            self.PAIRS,
            self.JSON,
            self.PAIRS_CSV,
            self.SUMMARY,
        ):
            return True
        return any(entry.match(p) for p in self.OUTPUT_PATTERNS)

    def state(self) -> Literal["empty", "results", "partial", "foreign"]:
        """``empty`` (absent or nothing visible), ``results`` (a manifest), ``partial`` (only transfer files,
        no manifest: a job that stopped before its first result), ``foreign`` (anything else)."""
        if not self.path.is_dir():
            return "empty"
        entries = [p for p in self.path.iterdir() if not p.name.startswith(".")]
        if not entries:
            return "empty"
        if not all(self.owns(p) for p in entries):
            return "foreign"
        return "results" if self.manifest.is_file() else "partial"


def check_transfer_output(out: str | Path) -> Path:
    """Refuse an output directory that is (or holds) an input: a model or run file, a training run, a
    built dataset, or a directory holding other files. Reads only."""
    out = Path(out)
    if out.is_file() and is_input_file(out):
        raise NrflabError(
            f"refusing to write transfer results to {out}: it is a model, checkpoint or run file; "
            "--out must be a directory"
        )
    check_output_path(out, what="--out")
    if TransferDir(out).state() == "foreign":
        raise NrflabError(f"{out} is not empty and holds no transfer results; choose a new or empty --out")
    return out


def settings_key(settings: TransferSettings) -> str:
    """A short hash of the settings (cached files carry it)."""
    return hashlib.blake2b(json.dumps(to_json(settings), sort_keys=True).encode(), digest_size=12).hexdigest()


@dataclass(frozen=True)
class AdversarialSet:
    """What crafting on one source produced: the adversarial images and the source's predictions."""

    x_adv: torch.Tensor
    y: torch.Tensor
    t: torch.Tensor
    source_clean_pred: torch.Tensor
    source_adv_pred: torch.Tensor

    def tensors(self) -> dict[str, torch.Tensor]:
        """The fields by name, in declaration order (what the cache file stores)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], num_samples: int) -> AdversarialSet | None:
        """The set stored in ``tensors``, or None if a tensor is missing or has the wrong length."""
        names = [f.name for f in fields(cls)]
        if any(n not in tensors or tensors[n].shape[:1] != (num_samples,) for n in names):
            return None
        return cls(*(tensors[n] for n in names))


class ResultStore:
    """The cache of a claimed transfer directory: adversarial examples per source, numbers per pair.

    A cached file is reused only when it was made under the same settings and with the same weights
    (fingerprints). The first saved result commits the job: the manifest is written and an overwritten
    directory's old contents are deleted.
    """

    def __init__(self, layout: TransferDir, settings: TransferSettings, stash: Stash | None, committed: bool):
        self.layout, self.settings, self.stash = layout, settings, stash
        self.key = settings_key(settings)
        self.committed = committed

    def commit(self) -> None:
        """Write the manifest and drop an overwritten directory's old contents (once)."""
        if self.committed:
            return
        atomic_write_json(self.layout.manifest, to_json(self.settings))
        if self.stash is not None:
            self.stash.commit()
        self.committed = True

    def load_adversarial(self, ref: ModelRef) -> AdversarialSet | None:
        path = self.layout.adversarial(ref)
        if not path.exists():
            return None
        try:
            meta = read_metadata(path)
            if meta.get("settings") != self.key or meta.get("source") != ref.fingerprint:
                log.info("source %s or the settings changed since %s was written: crafting again", ref.name, path.name)
                return None
            found = AdversarialSet.from_tensors(load_tensors(path, "adversarial examples"), self.settings.num_samples)
        except NrflabError:
            found = None
        if found is None:
            log.warning("%s is unreadable or incomplete: crafting again", path)
        return found

    def save_adversarial(self, ref: ModelRef, adv: AdversarialSet) -> None:
        atomic_save_tensors(
            self.layout.adversarial(ref),
            adv.tensors(),
            {"settings": self.key, "source": ref.fingerprint, "source_name": ref.name},
        )
        self.commit()

    def _pair_key(self, source: ModelRef, target: ModelRef) -> list[str]:
        return [self.key, source.fingerprint, target.fingerprint]

    def load_pair(self, source: ModelRef, target: ModelRef) -> PairNumbers | None:
        path = self.layout.pair(source, target)
        if not path.exists():
            return None
        try:
            record = read_json(path, "pair result", expect=dict)
        except NrflabError:
            log.warning("%s is unreadable: evaluating again", path)
            return None
        if record.get("_key") != self._pair_key(source, target):
            log.info("%s -> %s: a model or the settings changed; evaluating again", source.name, target.name)
            return None
        try:
            return PairNumbers.from_dict(record)
        except (KeyError, TypeError, ValueError):
            log.warning("%s is incomplete: evaluating again", path)
            return None

    def save_pair(self, source: ModelRef, target: ModelRef, numbers: PairNumbers) -> None:
        atomic_write_json(
            self.layout.pair(source, target),
            {"source": source.name, "target": target.name, **to_json(numbers), "_key": self._pair_key(source, target)},
        )
        self.commit()


def _check_recorded(layout: TransferDir, settings: TransferSettings, *, resume: bool) -> None:
    """Existing results must have the same settings, and reusing them must be asked for."""
    recorded = read_json(layout.manifest, "transfer settings", expect=dict)
    changed = settings.changed_fields(recorded)
    if changed:
        raise NrflabError(
            f"{layout.path} holds transfer results made with other settings (changed: "
            f"{', '.join(changed)}); use another output directory or --overwrite"
        )
    if not resume:
        raise NrflabError(
            f"{layout.path} already holds transfer results; pass --resume to reuse them or --overwrite to recompute"
        )


def precheck_output(out: str | Path, settings: TransferSettings, *, resume: bool, overwrite: bool) -> Path:
    """Every refusal :func:`open_store` would make, checked before anything is written (reads only)."""
    out = check_transfer_output(out)
    layout = TransferDir(out)
    if layout.state() == "results" and not overwrite and not pending_stash(out):
        _check_recorded(layout, settings, resume=resume)
    return out


@contextmanager
def open_store(out: str | Path, settings: TransferSettings, *, resume: bool, overwrite: bool) -> Iterator[ResultStore]:
    """Claim ``out`` for a transfer job under its lock and yield its :class:`ResultStore`.

    On an exception inside the block, an overwritten directory's old results come back unless the new
    job had already committed its first result.
    """
    out = precheck_output(out, settings, resume=resume, overwrite=overwrite)
    layout = TransferDir(out)
    with locked(out, what=LOCK_WHAT):  # also restores results an interrupted overwrite had set aside
        check_transfer_output(out)  # again, under the lock
        state = layout.state()
        stash = None
        if state in ("results", "partial") and overwrite:
            log.info("overwriting the transfer results in %s (kept aside until the first new result)", out)
            stash = Stash.aside(out)
        elif state == "results":
            _check_recorded(layout, settings, resume=resume)
        store = ResultStore(layout, settings, stash, committed=state == "results" and stash is None)
        try:
            yield store
        except BaseException:
            if stash is not None and not store.committed:
                stash.restore()
            raise


__all__ = ["open_store"]
