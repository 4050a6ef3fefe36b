"""What a chain would do, shown before it runs: ``--dry-run`` (the task list, the resolved settings, the data
it needs and a time estimate) and ``--show-settings`` (every settings key with its value and its meaning).
Both only read.

A dry run checks what the run itself refuses up front (recipes, devices, a Ray address) but does not need
the data: datasets whose files are missing are listed in the plan (with where to put them) instead of
refusing it, so the paper-scale plan and its time can be read on a machine without CIFAR.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from nrflab.core.errors import NrflabError
from nrflab.experiments.engine import BuildTask, Task, TrainTask, merge_tasks
from nrflab.experiments.estimate import GPU_EPOCH_SECONDS, estimate
from nrflab.experiments.overrides import Overrides
from nrflab.experiments.spec import ExperimentSpec, Stage
from nrflab.runs.jobs import Execution
from nrflab.runs.rundir import check_output_path
from nrflab.training import TrainConfig

Selected = Sequence[tuple[ExperimentSpec, BaseModel]]


def _rel(key: str, out: Path) -> str:
    try:
        return os.path.relpath(key, out)
    except ValueError:  # another drive (Windows)
        return key


def task_lines(tasks: Sequence[Task], out: Path) -> list[str]:
    """One line per task: kind, key (relative to ``out``) and what it depends on."""
    lines = []
    for t in tasks:
        after = ", ".join(_rel(a, out) for a in getattr(t, "after", ()))
        kind = str(getattr(t, "kind", type(t).__name__))
        lines.append(f"  {kind:6} {_rel(t.key, out)}" + (f"  (after {after})" if after else ""))
    return lines


def _describe(model: type[BaseModel], name: str, stage_help: Mapping[str, str]) -> str:
    """A field's meaning: its description; a training stage's fields are the training recipe's."""
    source = TrainConfig if issubclass(model, Stage) else model
    info = source.model_fields.get(name)
    text = (info.description or "") if info is not None else ""
    return text or (stage_help.get(name, "") if issubclass(model, Stage) else "")


def settings_lines(settings: BaseModel, prefix: str = "", *, stage_help: Mapping[str, str] = {}) -> list[str]:
    """Every key of ``settings`` (stages and nested settings expanded) as ``key = value  # meaning``.
    ``stage_help``: meanings of the training-recipe fields (the ``train`` command's option help)."""
    lines = []
    model = type(settings)
    for name in model.model_fields:
        value = getattr(settings, name)
        key = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            lines.extend(settings_lines(value, f"{key}.", stage_help=stage_help))
            continue
        if isinstance(value, dict) and value and all(isinstance(v, BaseModel) for v in value.values()):
            for k, v in value.items():
                lines.extend(settings_lines(v, f"{key}.{k}.", stage_help=stage_help))
            continue
        meaning = _describe(model, name, stage_help)
        shown = yaml.safe_dump(_plain(value), default_flow_style=True, width=10**6).strip().removesuffix("...")
        if value is None and issubclass(model, Stage):
            shown = "null (the dataset's default)"
        lines.append(f"{key} = {shown.strip()}" + (f"  # {meaning}" if meaning else ""))
    return lines


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _needs(t: Task) -> tuple[str, str | None, str | None] | None:
    """``(device, dataset, data_root)`` of a task that trains or builds (dataset None: generated data)."""
    if isinstance(t, TrainTask):
        dataset = None if t.GENERATED else t.config.get("dataset")
        root = t.config.get("data_root")
        return str(t.config.get("device", "auto")), None if dataset is None else str(dataset), root and str(root)
    if isinstance(t, BuildTask):
        return t.device, t.dataset, t.data_root
    return None


def check_devices(tasks: Sequence[Task], execution: Execution) -> None:
    """What the run refuses before its first task besides data: a device this machine (or, with Ray, the
    cluster) cannot use, an unreachable ``--ray-address``; one line naming the task."""
    from nrflab.core.validation import check_device_name
    from nrflab.runs.executor import check_reachable

    for t in tasks:
        needs = _needs(t)
        try:
            if needs is not None:
                check_device_name(needs[0], remote=execution.backend == "ray")
        except NrflabError as exc:
            raise NrflabError(f"{exc} (setting of the planned task {t.label}; nothing was started)") from None
    check_reachable(execution)


def data_lines(tasks: Sequence[Task], *, seen: set[tuple[str, str | None]], scale: str = "") -> list[str]:
    """One line per dataset the tasks read (each name and root once, across calls sharing ``seen``; sets the
    chain builds itself and generated data left out): present, or MISSING with the files it needs and where
    they go. A dataset whose files are missing fails before reading anything; a present one is opened once,
    as the run's own check does. ``scale``: a note for datasets only another scale reads."""
    from nrflab.data import check_dataset_loads

    built = {str(Path(t.key)) for t in tasks if isinstance(t, BuildTask)}
    lines = []
    for t in tasks:
        needs = _needs(t)
        if needs is None or needs[1] is None or str(Path(needs[1])) in built or (needs[1], needs[2]) in seen:
            continue
        name, root = needs[1], needs[2]
        seen.add((name, root))
        try:
            check_dataset_loads(name, root)
        except NrflabError as exc:
            lines.append(f"  MISSING{scale}: {exc}")
            continue
        lines.append(f"  present{scale}: {name}" + (f" (--data-root {root})" if root else ""))
    return lines


def paper_tasks(only: str | Sequence[str] | None, overrides: Overrides, out: Path) -> list[Task]:
    """The tasks the same command would plan at ``--scale paper`` (its recipes' own scales ignored)."""
    from nrflab.experiments.reproduce import resolve_chain

    recipes = tuple(dataclasses.replace(r, scale=None) for r in overrides.recipes)
    paper = dataclasses.replace(overrides, scale="paper", recipes=recipes)
    selected = resolve_chain(only, paper)
    return merge_tasks([t for spec, s in selected for t in spec.plan(s, spec.home_dir(out))])


def dry_run_text(
    selected: Selected,
    plans: dict[str, list[Task]],
    out: Path,
    *,
    paper: Sequence[Task] | str,
    data: Sequence[str] = (),
) -> str:
    """The plan as text: tasks, resolved settings, the data it needs (``data``: :func:`data_lines`), and the
    time on this machine and on a named GPU at paper scale (``paper``: the paper-scale tasks, or why they
    could not be planned)."""
    tasks = merge_tasks([t for ts in plans.values() for t in ts])
    lines = [f"dry run: nothing is written to {out}", "", f"{len(tasks)} tasks (kind, key under {out}, depends on):"]
    lines += task_lines(tasks, out)
    if data:
        lines += ["", "data the tasks read (a MISSING set stops the run before its first task, not this plan):"]
        lines += data
    for spec, settings in selected:
        lines += ["", f"settings of {spec.name}:", *("  " + line for line in settings_lines(settings))]
    lines += ["", "time estimate (measured per-epoch figures, nrflab.experiments.estimate):"]
    lines.append(f"  this machine (2 CPU cores as measured): {estimate(tasks).text()}")
    for gpu in GPU_EPOCH_SECONDS:
        shown = paper if isinstance(paper, str) else estimate(paper, gpu=gpu).text()
        lines.append(f"  --scale paper on an {gpu}: {shown}")
    return "\n".join(lines)


def dry_run(
    selected: Selected,
    out: str | Path,
    *,
    overrides: Overrides,
    only: str | Sequence[str] | None = None,
    execution: Execution = Execution(),
) -> str:
    """Everything a run of ``selected`` into ``out`` checks up front except the data, then its plan as text,
    the data it reads listed as present or missing (:func:`data_lines`); writes nothing."""
    out = check_output_path(Path(out))
    plans = {spec.name: spec.plan(settings, spec.home_dir(out)) for spec, settings in selected}
    tasks = merge_tasks([t for ts in plans.values() for t in ts])  # conflicts between experiments refused
    check_devices(tasks, execution)
    seen: set[tuple[str, str | None]] = set()
    data = data_lines(tasks, seen=seen)
    try:
        paper: Sequence[Task] | str = paper_tasks(only or [s.name for s, _ in selected], overrides, out)
    except NrflabError as exc:
        paper = f"not estimated ({exc})"
    if overrides.scale != "paper" and not isinstance(paper, str):
        data += data_lines(paper, seen=seen, scale=" for --scale paper")
    return dry_run_text(selected, plans, out, paper=paper, data=data)


__all__ = ["dry_run", "settings_lines"]
