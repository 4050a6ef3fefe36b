"""The experiment engine: the task kinds experiments plan (training runs, dataset builds, calls) and the
planning rules (one task per directory, dependencies that exist, no cycles, one-line preflight).

Tasks are jobs of the one executor (:func:`nrflab.runs.executor.execute`), which runs them once each, in
dependency order, in this process, in parallel local processes or as Ray tasks on a cluster:

* :class:`~nrflab.training.task.TrainTask` -- one training run (a finished run of the same recipe is
  reused, an interrupted one resumes, a run of another recipe is refused in one line);
* :class:`BuildTask` -- one feature dataset (``build_dataset`` with resume: finished shards are kept);
* :class:`CallTask` -- a function (``module:function``) whose return value the experiment's analysis reads
  (a measurement, a transfer matrix).

A task is keyed by the directory it writes; experiments that plan the same directory with the same task
share it (:func:`merge_tasks`), with different tasks it is a one-line error before anything runs. Every
task checks, before the chain starts, that its directory holds nothing of another recipe.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Optional, Union

from nrflab.core.errors import NrflabError
from nrflab.core.validation import check_device_name
from nrflab.data import check_dataset_loads
from nrflab.runs.executor import topological_order
from nrflab.runs.rundir import RunDir
from nrflab.training.task import TrainTask, short_path

# ---------------------------------------------------------------------------------------------
# Tasks


@dataclass(frozen=True)
class BuildTask:
    """One feature dataset built into ``key`` from the run ``source`` (``build_dataset`` with resume)."""

    key: str
    build_kind: str
    source: str
    dataset: Optional[str]
    settings: Mapping[str, Any]
    data_root: Optional[str] = None
    base: Optional[str] = None
    device: str = "auto"
    after: tuple[str, ...] = ()
    #: Torch threads the build needs for its numbers (None: the execution's share).
    threads: Optional[int] = None
    kind: Literal["build"] = "build"

    @property
    def label(self) -> str:
        return short_path(self.key)

    def check(self) -> None:
        if RunDir(self.key).is_run():
            raise NrflabError(f"{self.key} holds a training run, not a built dataset; choose another output directory")

    def done(self) -> bool:
        from nrflab.data.built import is_built_dataset, read_card
        from nrflab.features import make_settings, sha256_file

        if not is_built_dataset(self.key):
            return False
        try:
            card = read_card(self.key)
        except NrflabError:
            return False
        if not card.complete:
            return False
        wanted = make_settings(self.build_kind, **dict(self.settings)).to_dict()
        model = RunDir(self.source).model_path
        return card.identity.get("settings") == wanted and model.is_file() and card.source_sha256 == sha256_file(model)

    def run(self, progress: bool) -> Any:
        from nrflab.features import build_dataset

        result = build_dataset(
            self.build_kind,
            self.source,
            self.dataset,
            self.key,
            data_root=self.data_root,
            base=self.base,
            device=self.device,
            resume=True,
            progress=progress,
            **dict(self.settings),
        )
        return str(result.out_dir)


@dataclass(frozen=True)
class CallTask:
    """A function, ``target`` = ``module:function``, called with ``kwargs`` (plus ``progress``). Its return
    value travels back to the analysis; it runs again on every chain unless ``done_target`` says its work
    is already on disk (the function reuses its own cached results)."""

    key: str
    target: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    after: tuple[str, ...] = ()
    #: ``module:function`` answering, from the same keyword arguments, whether the work is already done.
    done_target: Optional[str] = None
    #: Torch threads the call needs for its numbers (None: the execution's share).
    threads: Optional[int] = None
    kind: Literal["call"] = "call"

    @property
    def label(self) -> str:
        return f"{self.target} ({short_path(self.key)})"

    def check(self) -> None:
        _resolve(self.target)

    def done(self) -> bool:
        if self.done_target is None or not all(Path(d).is_dir() or "#" in d for d in self.after):
            return False
        try:
            return bool(_resolve(self.done_target)(**dict(self.kwargs)))
        except NrflabError:
            return False

    def run(self, progress: bool) -> Any:
        return _resolve(self.target)(**dict(self.kwargs), progress=progress)


Task = Union[TrainTask, BuildTask, CallTask]


def _resolve(target: str) -> Callable[..., Any]:
    module, _, name = target.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise NrflabError(f"experiment function {target} is not available in this installation") from None
    return fn  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------------
# The graph


def merge_tasks(tasks: Sequence[Task]) -> list[Task]:
    """One task per key (identical duplicates merged, their dependencies joined); conflicting tasks for
    one directory are a one-line error. Dependencies must name planned tasks; no cycles."""
    merged: dict[str, Task] = {}
    for t in tasks:
        old = merged.get(t.key)
        if old is None:
            merged[t.key] = t
            continue
        if replace(old, after=()) != replace(t, after=()):
            raise NrflabError(
                f"two experiments plan {t.key} differently ({_difference(old, t)}); give them the "
                "same settings for it or separate output directories"
            )
        merged[t.key] = replace(old, after=tuple(dict.fromkeys(old.after + t.after)))
    for t in merged.values():
        missing = [d for d in t.after if d not in merged]
        if missing:
            raise NrflabError(f"task {t.label} depends on {missing[0]}, which no experiment plans")
    topological_order(list(merged.values()))
    return list(merged.values())


def _difference(a: Task, b: Task) -> str:
    if isinstance(a, TrainTask) and isinstance(b, TrainTask):
        from nrflab.runs.rundir import config_diff

        diff = config_diff(dict(a.config), dict(b.config))
        if a.train_size != b.train_size:
            diff.append(f"train_size: {a.train_size} -> {b.train_size}")
        return "; ".join(diff[:3]) or "subset"
    return f"{a.kind} vs {b.kind}" if a.kind != b.kind else "settings differ"


def preflight(tasks: Sequence[Task], *, remote: bool = False) -> None:
    """Refuse in one line, before the first task runs, what would make tasks fail one by one: a device this
    machine cannot use, a dataset that is unknown or whose files are missing. Datasets the chain builds itself
    (a build task's directory) are left to the tasks. ``remote``: the tasks run on a Ray cluster (``cuda``
    is then not checked against this machine's GPUs)."""
    built = {str(Path(t.key)) for t in tasks if isinstance(t, BuildTask)}
    checked: set[tuple[str, str | None]] = set()
    for t in tasks:
        if isinstance(t, TrainTask):
            device, dataset, root = (
                str(t.config.get("device", "auto")),
                None if t.GENERATED else t.config.get("dataset"),
                t.config.get("data_root"),
            )
        elif isinstance(t, BuildTask):
            device, dataset, root = t.device, t.dataset, t.data_root
        else:
            continue
        try:
            check_device_name(device, remote=remote)
            if dataset is not None and str(Path(str(dataset))) not in built:
                check_dataset_loads(str(dataset), None if root is None else str(root), checked)
        except NrflabError as exc:
            # The message first: the task's path names a run not created yet, so it is context, not the subject.
            raise NrflabError(f"{exc} (setting of the planned task {t.label}; nothing was started)") from None


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
