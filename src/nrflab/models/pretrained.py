"""A small registry of pretrained models nrflab can build, with provenance and checksums (the shipped
entries are in :mod:`nrflab.models.zoo`).

Each entry says where the weights come from, under what licence, which architecture and input
normalization they need, on which dataset they were trained and what accuracy their source reports.
Weights are looked up, in order, inside an installed package that ships them, in a directory given by
the caller, in ``$NRFLAB_WEIGHTS`` and in ``~/.nrflab/weights`` (as ``<dir>/<filename>``, where
``filename`` follows RobustBench's ``models/<dataset>/<threat>/<name>.pt`` layout, so a RobustBench
model directory can serve as the weights directory). Missing weights are downloaded (machines with
internet) into the first writable weights directory.

Checksums: a file is verified against the entry's sha256 when the entry pins one; a mismatch is an
error. Entries whose sha256 is not pinned (marked ``unverified``) are never downloaded unless the caller
allows unverified weights; a copy the user placed locally loads with a note that shows its sha256.
Weights are always read with ``weights_only=True`` (no code runs either way).
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from nrflab.core.errors import NrflabError
from nrflab.core.fmt import pct
from nrflab.core.records import record
from nrflab.core.registry import Registry

if TYPE_CHECKING:
    from nrflab.models import NrfModel
    from nrflab.models.inspection import LoadedModel
    from nrflab.models.state_dicts import WeightsFit

WEIGHTS_ENV = "NRFLAB_WEIGHTS"
DEFAULT_WEIGHTS_DIR = Path("~/.nrflab/weights")


@record
class PretrainedEntry:
    """One registered pretrained model.

    ``arch``/``norm``/``width`` name the nrflab architecture the weights load into (``arch=None``: nrflab
    cannot build it; listed for reference). ``mean``/``std``: the input normalization the model expects
    (None: raw [0,1] inputs). ``sha256=None``: not pinned (unverified). ``package_file``: (package, path
    inside it) when an installed wheel ships the weights.
    """

    name: str
    description: str
    dataset: str
    architecture: str
    arch: str | None
    source: str
    licence: str
    threat_model: str
    filename: str
    norm: str = "bn"
    width: float = 1.0
    num_classes: int = 10
    in_channels: int = 3
    input_shape: tuple[int, int, int] = (3, 32, 32)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    reported_clean_acc: float | None = None
    reported_robust_acc: float | None = None
    reported_by: str = ""
    sha256: str | None = None
    url: str | None = None
    package_file: tuple[str, str] | None = None

    @property
    def verified(self) -> bool:
        return self.sha256 is not None

    @property
    def loadable(self) -> bool:
        return self.arch is not None


PRETRAINED: Registry[PretrainedEntry] = Registry("pretrained model")
"""Every pretrained model ``--model pretrained:NAME`` can load, by name."""


def register_pretrained(entry: PretrainedEntry) -> PretrainedEntry:
    """Add an entry (e.g. a lab's own published checkpoints) to the registry; a second, different entry
    under a registered name is an error."""
    return PRETRAINED.add(entry.name, entry)


def list_pretrained(filter: str | None = None) -> list[str]:
    """Registered names, sorted; ``filter`` is a shell pattern (``"robustbench/*"``)."""
    return sorted(PRETRAINED.names(filter))


def available_pretrained() -> list[PretrainedEntry]:
    """All registered entries, sorted by name."""
    return [PRETRAINED.get(k) for k in list_pretrained()]


def is_pretrained_name(name: str) -> bool:
    return str(name) in PRETRAINED


def get_pretrained(name: str) -> PretrainedEntry:
    """The entry called ``name``, or a one-line error listing the registered names."""
    key = str(name).removeprefix("pretrained:")
    if key not in PRETRAINED:
        raise NrflabError(f"unknown pretrained model {name!r}; registered: {', '.join(list_pretrained())}")
    return PRETRAINED.get(key)


def weights_dirs(weights_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Where weights are looked for, in order: ``weights_dir``, ``$NRFLAB_WEIGHTS``, ``~/.nrflab/weights``."""
    dirs = []
    if weights_dir is not None:
        dirs.append(_check_weights_dir(Path(weights_dir).expanduser()))
    if os.environ.get(WEIGHTS_ENV):
        dirs.append(Path(os.environ[WEIGHTS_ENV]).expanduser())
    dirs.append(DEFAULT_WEIGHTS_DIR.expanduser())
    return dirs


def _check_weights_dir(path: Path) -> Path:
    """``path`` when it is a directory or could become one; a one-line error naming the file in the way."""
    blocker = next((p for p in (path, *path.parents) if p.exists()), path)
    if blocker.exists() and not blocker.is_dir():
        where = "is a file" if blocker == path else f"is inside {blocker}, which is a file"
        raise NrflabError(f"weights directory {path} {where}, not a directory; give the folder for the weights")
    return path


def package_weights(entry: PretrainedEntry) -> Path | None:
    """The weights file inside an installed package (found without importing the package), or None."""
    if entry.package_file is None:
        return None
    package, rel = entry.package_file
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        candidate = Path(base) / rel
        if candidate.is_file():
            return candidate
    return None


def locate_weights(entry: PretrainedEntry, *, weights_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The local weights file of an entry (package, then weights directories), or None."""
    found = package_weights(entry)
    if found is not None:
        return found
    for d in weights_dirs(weights_dir):
        for candidate in (d / entry.filename, d / Path(entry.filename).name):
            if candidate.is_file():
                return candidate
    return None


def verify_sha256(path: str | os.PathLike[str], expected: str | None, *, what: str = "weights file") -> str:
    """The file's sha256; a one-line error if ``expected`` is given and differs."""
    from nrflab.models.inspection import file_sha256

    actual = file_sha256(path)
    if expected is not None and actual != expected.lower():
        raise NrflabError(
            f"{what} {path} has sha256 {actual[:16]}..., the registry pins {expected[:16]}...: "
            f"a different or corrupt file; delete it and fetch it again"
        )
    return actual


def fetch_weights(
    entry: PretrainedEntry,
    *,
    weights_dir: str | os.PathLike[str] | None = None,
    allow_unverified: bool = False,
    timeout: float = 60.0,
) -> Path:
    """Download an entry's weights into the first weights directory (needs internet), verified by sha256.

    Unpinned entries are refused unless ``allow_unverified``. The file appears only once complete.
    """
    if entry.url is None:
        hint = (
            f"install the package that ships it ({entry.package_file[0]})" if entry.package_file else "place it by hand"
        )
        raise NrflabError(f"pretrained {entry.name} has no download address; {hint}")
    if not entry.verified and not allow_unverified:
        raise NrflabError(
            f"pretrained {entry.name} has no pinned sha256, so nrflab will not download it unverified; "
            f"place it as {weights_dirs(weights_dir)[0] / entry.filename} yourself, or allow unverified "
            f"weights (--allow-unverified)"
        )
    import urllib.error
    import urllib.request

    target = weights_dirs(weights_dir)[0] / entry.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(entry.url, timeout=timeout) as resp:
            if "text/html" in (resp.headers.get("Content-Type") or ""):
                raise NrflabError(
                    f"{entry.url} returned a web page instead of weights; download {entry.name} by hand into {target}"
                )
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                out.write(chunk)
                h.update(chunk)
        digest = h.hexdigest()
        if entry.sha256 is not None and digest != entry.sha256.lower():
            raise NrflabError(
                f"downloaded {entry.name} has sha256 {digest[:16]}..., the registry pins "
                f"{entry.sha256[:16]}...; not kept"
            )
        os.replace(tmp, target)
    except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException) as exc:
        raise NrflabError(
            f"could not download {entry.name} from {entry.url} ({getattr(exc, 'reason', exc)}); place "
            f"it as {target} by hand"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _weights_path(
    entry: PretrainedEntry, *, weights_dir: str | os.PathLike[str] | None, allow_unverified: bool, download: bool
) -> Path:
    """Where a loadable entry's weights are: found locally, else downloaded (when ``download``)."""
    if not entry.loadable:
        raise NrflabError(
            f"pretrained {entry.name} is a {entry.architecture}, which nrflab cannot build; load it with "
            f"a factory (module:function) that returns the model"
        )
    path = locate_weights(entry, weights_dir=weights_dir)
    if path is not None:
        return path
    if not download:
        raise NrflabError(
            f"weights of {entry.name} not found in {', '.join(str(d) for d in weights_dirs(weights_dir))}"
        )
    return fetch_weights(entry, weights_dir=weights_dir, allow_unverified=allow_unverified)


def _entry_model(entry: PretrainedEntry, path: Path) -> tuple[NrfModel, WeightsFit, bool]:
    """The entry's model built from the weights file: (model, what the loader found, whether the entry's
    normalization was used -- it is, unless the checkpoint carries its own)."""
    from nrflab.models.state_dicts import (
        canonicalize_state_dict,
        extract_state_dict,
        load_weights_only,
        state_dict_to_model,
    )

    obj = load_weights_only(path)
    _, found_mean, _, _ = canonicalize_state_dict(extract_state_dict(obj, str(path))[0])
    use_registry = found_mean is None and entry.mean is not None
    model, info = state_dict_to_model(
        obj,
        arch=entry.arch,
        norm=entry.norm,
        num_classes=entry.num_classes,
        width=entry.width,
        mean=entry.mean if use_registry else None,
        std=entry.std if use_registry else None,
        source=str(path),
    )
    return model, info, use_registry


def load_pretrained(
    name: str,
    *,
    device: str | torch.device = "cpu",
    weights_dir: str | os.PathLike[str] | None = None,
    allow_unverified: bool = False,
    download: bool = True,
    display_name: str | None = None,
) -> LoadedModel:
    """Load a registered pretrained model as a :class:`~nrflab.models.inspection.LoadedModel`.

    Local weights are used when present (verified against a pinned sha256; an unpinned file loads with a
    note giving its sha256); otherwise they are downloaded if ``download`` (see :func:`fetch_weights`).
    The entry's normalization is used unless the checkpoint carries its own.
    """
    from dataclasses import replace

    from nrflab.models.inspection import nrflab_loaded

    entry = get_pretrained(name)
    path = _weights_path(entry, weights_dir=weights_dir, allow_unverified=allow_unverified, download=download)
    sha = verify_sha256(path, entry.sha256, what=f"weights of {entry.name}")
    notes = []
    if not entry.verified:
        notes.append(f"unverified: the registry pins no sha256 for {entry.name}; this file's sha256 is {sha}")
    model, info, use_registry = _entry_model(entry, path)
    normalization = replace(info.normalization, origin="registry") if use_registry else info.normalization
    if normalization.mean is None:  # the entry documents raw [0,1] inputs: no guess to warn about
        notes += [n for n in info.notes if not n.startswith("no normalization")]
    else:
        notes += info.notes
    model.config = replace(model.config, input_shape=tuple(entry.input_shape))
    return nrflab_loaded(
        model.to(device).eval(),
        name=display_name or entry.name,
        kind="pretrained",
        source=str(path),
        normalization=normalization,
        sha256=sha,
        layout=info.layout,
        notes=notes,
    )


def format_pretrained_table(
    entries: Sequence[PretrainedEntry] | None = None, *, weights_dir: str | os.PathLike[str] | None = None
) -> list[str]:
    """Lines for ``nrflab list --pretrained``: name, architecture, data, threat model, reported numbers, status."""
    entries = list(entries if entries is not None else available_pretrained())
    lines = []
    for e in entries:
        local = locate_weights(e, weights_dir=weights_dir)
        if local:
            status = "local"
        elif e.url:
            status = "downloadable" if e.verified else "download with --allow-unverified"
        else:
            status = "not available"
        if not e.loadable:
            status = "listed only (arch not buildable)"
        lines.append(f"{e.name}")
        lines.append(f"    {e.description}")
        lines.append(
            f"    arch {e.arch or '-'} ({e.architecture}), {e.dataset}, threat model {e.threat_model}; "
            f"reported clean {pct(e.reported_clean_acc, 2)}, robust {pct(e.reported_robust_acc, 2)}"
            + (f" ({e.reported_by})" if e.reported_by else "")
        )
        norm = "raw [0,1] inputs" if e.mean is None else f"mean {list(e.mean)} std {list(e.std or ())}"
        lines.append(
            f"    normalization: {norm}; sha256 {e.sha256[:16] + '...' if e.sha256 else 'unverified'}; "
            f"status: {status}" + (f" ({local})" if local else "")
        )
        lines.append(f"    source: {e.source}; licence: {e.licence}")
        if e.url:
            lines.append(f"    url: {e.url}")
    return lines


# The shipped entries register themselves (their module imports this one's record and registry).
from nrflab.models import zoo as _zoo  # noqa: E402,F401

__all__ = ["available_pretrained", "format_pretrained_table"]
