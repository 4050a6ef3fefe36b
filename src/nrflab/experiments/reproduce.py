"""The paper as one resumable chain: every selected experiment's runs through the engine (independent
runs in parallel), then every analysis, into ONE report with every verdict and figure.

``reproduce(out=..., overrides=Overrides(scale="paper", data_root=..., device="cuda"))`` is what
``nrflab reproduce`` calls. The output directory is locked for the chain; each experiment lives in its
own directory under it (the core experiment in the directory itself); the settings each experiment ran
with are written to ``recipes/<name>.yaml`` (a recipe file ``--recipe`` reads back), the chain's plan and
task results to ``reproduce.json``, the report to ``report.md``/``report.html`` and the verdicts to
``verdicts.json``. Rerunning the same command reuses every finished run (same recipe only) and resumes
interrupted ones.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from nrflab.core.errors import NrflabError
from nrflab.core.io import atomic_write_json, atomic_write_text
from nrflab.core.logs import get_logger
from nrflab.experiments.analysis import settings_text
from nrflab.experiments.engine import Task, merge_tasks, preflight
from nrflab.experiments.overrides import (
    Overrides,
    check_assignments_used,
    check_recipes,
    parse_assignment,
    settings_for,
)
from nrflab.experiments.registry import get_spec, list_experiments, select
from nrflab.experiments.spec import AnalysisContext, ExperimentSpec, Stage
from nrflab.measure.predict import PROTOCOLS
from nrflab.report.document import Section, settle_verdicts, write_report
from nrflab.runs.executor import check_reachable, execute
from nrflab.runs.jobs import Execution, JobResult, error_line
from nrflab.runs.rundir import Stash, check_output_path, locked

log = get_logger("reproduce")

TITLE = "nrflab report: batch normalization and non-robust features"
INTRO = (
    "Reproduction of Benz, Zhang and Kweon, *Batch Normalization Increases Adversarial Vulnerability and "
    "Decreases Adversarial Transferability: A Non-Robust Feature Perspective* (ICCV 2021) with nrflab. "
    "Framework: **usefulness** = clean accuracy, **robust usefulness** = robust (adversarial) accuracy, "
    "**robustness** of the used features = LIGS (local input-gradient similarity; near 1 = robust features)."
)


@dataclass
class ExperimentOutcome:
    """One experiment of a chain: its sections, or the tasks that failed."""

    name: str
    settings: BaseModel
    sections: list[Section] = field(default_factory=list)
    failures: list[JobResult] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures and self.error is None


@dataclass
class ChainResult:
    """What a chain produced: per-experiment outcomes and every task's result."""

    out: Path
    outcomes: list[ExperimentOutcome]
    results: dict[str, JobResult]
    seconds: float = 0.0
    #: The report's sections with their verdicts Holm-adjusted (set once the report is written).
    settled: list[Section] | None = None
    #: The report written (``report.md``, ``report.html``), once it is.
    report: tuple[Path, Path] | None = None

    @property
    def sections(self) -> list[Section]:
        """Every experiment's sections; once the report is written, with the verdicts it states."""
        if self.settled is not None:
            return self.settled
        return [s for o in self.outcomes for s in o.sections]

    @property
    def failed(self) -> list[ExperimentOutcome]:
        return [o for o in self.outcomes if not o.ok]

    def raise_for_failures(self) -> None:
        if self.failed:
            o = self.failed[0]
            first = o.failures[0].error if o.failures else o.error
            raise NrflabError(f"experiment {o.name} failed: {first}")


def plan_chain(
    selected: Sequence[tuple[ExperimentSpec, BaseModel]], out: Path, execution: Execution = Execution()
) -> dict[str, list[Task]]:
    """Every experiment's tasks (validated: recipes built, conflicts between experiments refused, devices
    checked where the tasks will run, a Ray cluster reachable)."""
    plans = {spec.name: spec.plan(settings, spec.home_dir(out)) for spec, settings in selected}
    preflight(merge_tasks([t for tasks in plans.values() for t in tasks]), remote=execution.backend == "ray")
    check_reachable(execution)
    return plans


def run_chain(
    selected: Sequence[tuple[ExperimentSpec, BaseModel]], out: Path, execution: Execution = Execution()
) -> ChainResult:
    """Plan, run (in parallel where independent) and analyze the selected experiments under ``out``, holding
    its lock."""
    out = check_output_path(Path(out))
    plans = plan_chain(selected, out, execution)  # bad recipes, devices, datasets: one line, nothing written
    with locked(out, what="experiment directory"):
        return _run_planned(selected, out, plans, execution)


def report_experiments(
    selected: Sequence[tuple[ExperimentSpec, BaseModel]],
    out: Path,
    *,
    scale: str,
    title: str,
    execution: Execution = Execution(),
) -> ChainResult:
    """Run the selected experiments (their settings resolved) under ``out`` and write their report there:
    ``report.md`` and ``report.html`` (``result.report``), the verdicts Holm-adjusted as the report states them
    (``result.sections``). What ``nrflab experiment`` calls; failed experiments get a section saying so (check
    ``result.failed``)."""
    result = run_chain(selected, out, execution)
    result.settled = settle_verdicts(result.sections)
    result.report = write_report(out, title, result.settled, intro(scale, selected))
    return result


def _run_planned(
    selected: Sequence[tuple[ExperimentSpec, BaseModel]],
    out: Path,
    plans: dict[str, list[Task]],
    execution: Execution,
) -> ChainResult:
    started = time.perf_counter()
    results = execute(merge_tasks([t for tasks in plans.values() for t in tasks]), execution)
    outcomes = []
    for spec, settings in selected:
        t0 = time.perf_counter()
        outcome = ExperimentOutcome(spec.name, settings)
        outcome.failures = [results[t.key] for t in plans[spec.name] if not results[t.key].ok]
        if not outcome.failures:
            try:
                context = AnalysisContext(spec.home_dir(out), execution.progress, results)
                outcome.sections = spec.analyze(settings, context)
            except NrflabError as exc:
                outcome.error = str(exc)
            except Exception as exc:  # an analysis bug must not cost the other experiments' report
                outcome.error = error_line(exc)
        if not outcome.ok:
            outcome.sections = [_failed_section(spec, outcome)]
        outcome.seconds = time.perf_counter() - t0
        outcomes.append(outcome)
    return ChainResult(out, outcomes, results, time.perf_counter() - started)


def run_experiment(
    name: str,
    out: Path,
    *,
    scale: str = "cpu",
    settings: BaseModel | None = None,
    execution: Execution = Execution(),
) -> list[Section]:
    """Run one experiment (plan, runs, analysis) into ``out`` and return its report sections."""
    spec = get_spec(name)
    chosen = settings if settings is not None else spec.preset(scale)
    result = run_chain([(spec, chosen)], Path(out), execution)
    result.raise_for_failures()
    return result.sections


def _failed_section(spec: ExperimentSpec, outcome: ExperimentOutcome) -> Section:
    lines = [f"- `{r.key}`: {r.status}: {r.error}" for r in outcome.failures[:10]]
    if outcome.error:
        lines.append(f"- analysis: {outcome.error}")
    return Section(
        f"{spec.summary} (not completed)",
        "This experiment did not complete, so it judges no claim. Fix the problem and rerun the same "
        "command: finished runs are reused.\n\n" + "\n".join(lines),
    )


def resolve_chain(only: str | Sequence[str] | None, overrides: Overrides) -> list[tuple[ExperimentSpec, BaseModel]]:
    """The selected experiments and their validated settings (everything checked before anything runs)."""
    specs = select(only)
    check_recipes(overrides.recipes, list_experiments(), selected=[s.name for s in specs])
    check_assignments_used(specs, [parse_assignment(a) for a in overrides.assignments])
    return [(spec, settings_for(spec, overrides, strict=False, chain=list_experiments())) for spec in specs]


def reproduce(
    *,
    out: str | Path,
    overrides: Overrides = Overrides(),
    only: str | Sequence[str] | None = None,
    execution: Execution = Execution(),
    title: str = TITLE,
    overwrite: bool = False,
) -> ChainResult:
    """The whole paper (or ``only`` some experiments) into one report under ``out``.

    ``overwrite``: the directory's old contents (e.g. runs of a changed recipe) are set aside, as
    ``train --overwrite`` does, deleted once the new chain has finished a task, and put back if it
    stops (an error, or a kill: the next claim restores them) before any task finished."""
    out = check_output_path(Path(out))
    selected = resolve_chain(only, overrides)
    plans = plan_chain(selected, out, execution)  # bad recipes, devices, datasets: one line, nothing written
    with locked(out, what="reproduce directory"):
        stash = Stash.aside(out) if overwrite else None
        try:
            write_recipes(out, selected, overrides.scale)
            result = _run_planned(selected, out, plans, execution)
        except BaseException:
            if stash is not None:
                stash.restore()
            raise
        if stash is not None:
            _settle(stash, result, out)
        sections = settle_verdicts([*result.sections, chain_section(result, overrides.scale, selected)])
        result.settled = sections[:-1]
        result.report = write_report(out, title, sections, intro(overrides.scale, selected))
        atomic_write_json(out / "reproduce.json", manifest(result, overrides, selected, execution))
    return result


def _settle(stash: Stash, result: ChainResult, out: Path) -> None:
    """An overwrite's old contents go once a task of the new chain finished, else they come back."""
    if any(r.ok for r in result.results.values()):
        stash.commit()
        return
    stash.restore()
    first = next((r.error for r in result.results.values() if r.error), "no task finished")
    raise NrflabError(f"no task of the new chain finished ({first}); the previous contents of {out} are back")


def write_recipes(out: Path, selected: Sequence[tuple[ExperimentSpec, BaseModel]], scale: str) -> list[Path]:
    """``recipes/<name>.yaml``: the settings each experiment runs with, as a recipe file."""
    paths = []
    for spec, settings in selected:
        path = out / "recipes" / f"{spec.name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, recipe_text(spec, settings, scale))
        paths.append(path)
    return paths


def recipe_text(spec: ExperimentSpec, settings: BaseModel, scale: str, description: str | None = None) -> str:
    """A recipe file holding ``settings`` in full (unset stage fields left out)."""
    data: dict[str, Any] = {"experiment": spec.name, "scale": scale}
    if description:
        data["description"] = description
    data["settings"] = settings_data(settings)
    return str(yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=110))


def settings_data(settings: BaseModel) -> dict[str, Any]:
    """Settings as plain data for a recipe: every field, but only the fields a training stage sets."""
    return {name: _plain(getattr(settings, name)) for name in type(settings).model_fields}


def _plain(value: Any) -> Any:
    if isinstance(value, Stage):
        return _plain(value.fields())
    if isinstance(value, BaseModel):
        return {name: _plain(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def intro(scale: str, selected: Sequence[tuple[ExperimentSpec, BaseModel]]) -> str:
    protocols = "; ".join(f"**{p.name}**: {p.description}" for p in PROTOCOLS.values())
    notes = [spec.scale_notes[scale] for spec, _ in selected if scale in spec.scale_notes]
    return "\n\n".join(
        [
            INTRO,
            f"Scale `{scale}`; experiments: {', '.join(s.name for s, _ in selected)}. The settings "
            "each experiment ran with are in `recipes/<experiment>.yaml` (rerun with `--recipe`). "
            f"Evaluation protocols: {protocols}.",
            *notes,
        ]
    )


def chain_section(result: ChainResult, scale: str, selected: Sequence[tuple[ExperimentSpec, BaseModel]]) -> Section:
    """How the chain went: tasks trained or reused, wall times, settings."""
    counts: dict[str, int] = {}
    for r in result.results.values():
        counts[r.status] = counts.get(r.status, 0) + 1
    trained = sum(r.seconds for r in result.results.values() if r.status == "finished")
    rows = "\n".join(
        f"- `{o.name}`: {'completed' if o.ok else 'NOT completed'}; analysis {o.seconds:.0f} s; settings: "
        f"{settings_text(o.settings)}"
        for o in result.outcomes
    )
    text = (
        f"{len(result.results)} tasks: "
        + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        + f"; {trained / 60:.1f} min of task time; chain wall time {result.seconds / 60:.1f} min.\n\n{rows}"
    )
    return Section("The chain", text)


def manifest(
    result: ChainResult,
    overrides: Overrides,
    selected: Sequence[tuple[ExperimentSpec, BaseModel]],
    execution: Execution,
) -> dict[str, Any]:
    return {
        "scale": overrides.scale,
        "experiments": [spec.name for spec, _ in selected],
        "backend": execution.backend,
        "workers": execution.workers,
        "seconds": result.seconds,
        "tasks": [
            {"key": r.key, "status": r.status, "seconds": r.seconds, "error": r.error, "where": r.where}
            for r in result.results.values()
        ],
        "failed": [o.name for o in result.failed],
    }


__all__ = ["report_experiments", "reproduce", "resolve_chain"]
