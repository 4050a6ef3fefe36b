"""Which models enter a transfer matrix: run directories (``RUN@epoch=K`` for a kept epoch), nrflab model
files, user modules in Python, and models from outside nrflab.

Every source and target becomes a :class:`ModelRef`: a name (unique within sources or targets), a group
(for averages over seeds, e.g. ``smallcnn/bn`` read from the run's config), an origin (two refs with one
origin are the same model at different epochs: a "self pair"), and a fingerprint of the weights that the
result cache keys on. Run-directory file names come from :class:`nrflab.runs.rundir.RunDir` only.

Models from outside nrflab (state dicts, TorchScript, ``package.module:function`` factories,
``pretrained:NAME``) are loaded through :func:`nrflab.models.references.load_model_reference`
(:func:`load_outside_model` is the one place that calls it). Every ref's fingerprint is
:func:`nrflab.models.inspection.weights_fingerprint`, so the same weights share cached results whatever
file carried them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Union

import torch
from torch import nn

from nrflab.core.errors import NrflabError
from nrflab.core.io import read_metadata
from nrflab.models.checkpoint import has_model_config, load_model, load_model_config
from nrflab.models.inspection import weights_fingerprint
from nrflab.runs.rundir import RunDir, run_dir_of
from nrflab.transfer.results import ModelInfo

GroupKeys = Sequence[str]
DEFAULT_GROUP_KEYS: tuple[str, ...] = ("arch", "norm")


@dataclass(frozen=True, eq=False)
class NamedModel:
    """A user ``nn.Module`` entering a transfer matrix under ``name`` (and an optional group)."""

    name: str
    module: nn.Module = field(repr=False)
    group: str | None = None


@dataclass(frozen=True)
class OutsideModelOptions:
    """How to read models from outside nrflab: the architecture of a bare state dict (read off the
    weights when omitted) and the input normalization a model expects (then applied inside it)."""

    arch: str | None = None
    norm: str | None = None
    num_classes: int | None = None
    width: float | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


@dataclass(frozen=True, eq=False)
class ModelRef:
    """A resolved source or target: its name, group and provenance, and how to load it.

    ``path`` is an nrflab model file (loaded on demand); ``module`` an in-memory model (a user module or
    a model loaded from outside nrflab, with ``weights_hash`` its fingerprint).
    """

    name: str
    group: str
    origin: str
    path: Path | None = None
    epoch: int | None = None
    run_dir: Path | None = None
    module: nn.Module | None = field(default=None, repr=False)
    weights_hash: str | None = field(default=None, repr=False)

    def load(self, device: torch.device | str = "cpu") -> nn.Module:
        """The model on ``device`` (in-memory modules are moved, not copied)."""
        if self.module is not None:
            return self.module.to(device)
        if self.path is None:
            raise NrflabError(f"model {self.name} has neither weights nor a module")
        return load_model(self.path, device)

    @cached_property
    def fingerprint(self) -> str:
        """The weights' one fingerprint (:func:`nrflab.models.inspection.weights_fingerprint`), the same
        whatever container held them: cached results are reused only for the same weights."""
        if self.weights_hash is not None:
            return self.weights_hash
        if self.module is not None:
            return weights_fingerprint(self.module)
        if self.path is None:
            raise NrflabError(f"model {self.name} has neither weights nor a module")
        return weights_fingerprint(load_model(self.path, "cpu"))

    def info(self) -> ModelInfo:
        """Provenance for records."""
        return ModelInfo(
            name=self.name,
            group=self.group,
            origin=self.origin,
            path=None if self.path is None else str(self.path),
            epoch=self.epoch,
            run_dir=None if self.run_dir is None else str(self.run_dir),
        )

    def with_group(self, group: str) -> ModelRef:
        """The same model in another group (the fingerprint is kept)."""
        ref = ModelRef(
            self.name, group, self.origin, self.path, self.epoch, self.run_dir, self.module, self.weights_hash
        )
        if "fingerprint" in self.__dict__:
            ref.__dict__["fingerprint"] = self.__dict__["fingerprint"]
        return ref


ModelLike = Union[str, Path, NamedModel, ModelRef]


def parse_model_spec(text: str) -> tuple[Path, int | None]:
    """``PATH`` or ``PATH@epoch=K`` (also ``PATH@K``) -> (path, epoch)."""
    path, sep, rest = str(text).partition("@")
    if not sep:
        return Path(path), None
    m = re.fullmatch(r"(?:epoch=)?(\d+)", rest.strip())
    if m:
        return Path(path), int(m.group(1))
    if Path(text).exists():  # an '@' that is part of the name
        return Path(text), None
    raise NrflabError(f"bad model spec {text!r}; use RUN_DIR or RUN_DIR@epoch=K")


def run_group(run: RunDir, keys: GroupKeys) -> str:
    """The group of a run: its recorded config values at ``keys`` (e.g. ``smallcnn/bn``), or its name."""
    try:
        cfg = run.read_config()
    except NrflabError:
        return run.path.name
    return "/".join(str(cfg.get(k)) for k in keys)


def _file_group(path: Path, keys: GroupKeys) -> str:
    cfg = load_model_config(path).to_dict()
    return "/".join(str(cfg.get(k, "?")) for k in keys)


def _file_epoch(path: Path) -> int | None:
    value = read_metadata(path).get("epoch")
    return int(value) if value is not None and value.isdigit() else None


def is_nrflab_model_file(path: Path) -> bool:
    """Whether ``path`` is a model file nrflab wrote (safetensors with its model config)."""
    if path.suffix != ".safetensors" or not path.is_file():
        return False
    return has_model_config(path)


def resolve_model(
    spec: ModelLike | nn.Module,
    *,
    epoch: int | None = None,
    group_keys: GroupKeys = DEFAULT_GROUP_KEYS,
    options: OutsideModelOptions = OutsideModelOptions(),
) -> ModelRef:
    """A ModelRef from a run directory (``RUN@epoch=K`` for a kept epoch), an nrflab model file, a
    NamedModel, or any reference :func:`load_outside_model` understands.

    ``epoch`` applies to run directories without an explicit ``@epoch``; the group is the run's config
    values at ``group_keys`` with ``@eK`` appended for a chosen epoch. ``options`` apply only to models from
    outside nrflab.
    """
    if isinstance(spec, ModelRef):
        return spec
    if isinstance(spec, NamedModel):
        if not isinstance(spec.module, nn.Module):
            raise NrflabError(f"model {spec.name!r} is not a torch.nn.Module")
        return ModelRef(spec.name, spec.group or spec.name, f"module:{spec.name}", module=spec.module)
    if isinstance(spec, nn.Module):
        raise NrflabError("give a user module as NamedModel(name, module) so it has a name")
    text = str(spec)
    path, at = parse_model_spec(text)
    chosen = at if at is not None else epoch
    if path.is_dir():
        run = RunDir(path)
        if not run.is_run():
            raise NrflabError(f"{path} is not an nrflab run directory (no {RunDir.MODEL})")
        group = run_group(run, group_keys)
        if chosen is None:
            file = run.model_file()
            return ModelRef(path.name, group, str(path.resolve()), file, _file_epoch(file), path)
        file = run.model_file(chosen)
        return ModelRef(f"{path.name}@e{chosen}", f"{group}@e{chosen}", str(path.resolve()), file, chosen, path)
    if at is not None:
        if not path.exists():
            raise NrflabError(f"run directory not found: {path}")
        raise NrflabError(f"@epoch needs a run directory, not the file {path}")
    if is_nrflab_model_file(path):
        if chosen is not None:
            raise NrflabError(f"an epoch (--source-epoch) needs run directories, not the file {path}")
        owner = run_dir_of(path)
        ep = _file_epoch(path)
        if owner is not None:
            name = f"{owner.path.name}@e{ep}" if path.parent.name == RunDir.KEPT else path.stem
            return ModelRef(name, run_group(owner, group_keys), str(owner.path.resolve()), path, ep, owner.path)
        return ModelRef(path.stem, _file_group(path, group_keys), str(path.resolve()), path, ep, None)
    if chosen is not None:
        raise NrflabError(f"an epoch (--source-epoch) needs run directories; {text} is not one")
    return load_outside_model(text, options=options, group_keys=group_keys)


def load_outside_model(
    reference: str, *, options: OutsideModelOptions = OutsideModelOptions(), group_keys: GroupKeys = DEFAULT_GROUP_KEYS
) -> ModelRef:
    """A model from outside nrflab (state dict, TorchScript, factory, pretrained name) as a ModelRef.

    Loaded once on the CPU with :func:`nrflab.models.references.load_model_reference`; the fingerprint is
    its hash of the state dict; the group is its architecture/norm where known, else its name.
    """
    from nrflab.models.references import load_model_reference

    loaded = load_model_reference(reference, device="cpu", **asdict(options))
    if loaded.normalization.origin == "missing":
        raise NrflabError(
            f"{reference} is an nrflab state dict without its normalize.* buffers: give the mean/std it was "
            f"trained with (--mean/--std; --mean 0 --std 1 for [0,1] inputs)"
        )
    known = {"arch": loaded.arch, "norm": loaded.norm, "width": loaded.width}
    values = [known.get(k) for k in group_keys]
    group = "/".join(str(v) for v in values) if all(v is not None for v in values) else loaded.name
    source = Path(loaded.source)
    origin = str(source.resolve()) if source.exists() else loaded.source
    return ModelRef(loaded.name, group, origin, module=loaded.module, weights_hash=loaded.fingerprint)


def recorded_dataset(ref: ModelRef) -> str | None:
    """The dataset a source was trained on, when it comes from an nrflab run that recorded it."""
    if ref.run_dir is None:
        return None
    try:
        value = RunDir(ref.run_dir).read_config().get("dataset")
    except NrflabError:
        return None
    return None if value is None else str(value)


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
