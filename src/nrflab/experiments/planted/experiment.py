"""The planted experiment as a registered :class:`~nrflab.experiments.spec.ExperimentSpec`: ``plan`` turns the
settings into engine tasks (every planted run, its measurement, the MNIST chain), the one executor runs them
like any other experiment's, and ``analyze`` judges the claims and writes the report sections."""

from __future__ import annotations

import time
from pathlib import Path

from nrflab.core.errors import NrflabError
from nrflab.experiments.engine import CallTask, Task
from nrflab.experiments.planted.lens import with_lens
from nrflab.experiments.planted.measurement import Measured, measure
from nrflab.experiments.planted.mnist import mnist_question, mnist_tasks
from nrflab.experiments.planted.runs import planted_runs, train_task
from nrflab.experiments.planted.sections import build_sections
from nrflab.experiments.planted.settings import FULL, PAPER, QUICK, Settings
from nrflab.experiments.planted.transferability import transfer
from nrflab.experiments.registry import register_experiment
from nrflab.experiments.spec import AnalysisContext, ExperimentSpec
from nrflab.report.document import Section
from nrflab.runs.executor import torch_threads

MEASURE = "nrflab.experiments.planted.experiment:measure_run"


def check(s: Settings) -> None:
    """The settings the comparisons need, as one-line errors before anything runs."""
    if "none" not in s.norms or len(s.norms) < 2:
        raise NrflabError(
            "the planted experiment compares normalizations with 'none': norms must include it and one more"
        )
    if len(s.seeds) < 2:
        raise NrflabError("the planted experiment needs at least two seeds (paired intervals)")


def plan(s: Settings, home: Path) -> list[Task]:
    """Every planted run as a training task, each followed by its measurement, and the MNIST chain."""
    check(s)
    tasks: list[Task] = []
    for run in planted_runs(s):
        train = train_task(run, s, home)
        tasks.append(train)
        tasks.append(
            CallTask(
                f"{train.key}#measure",
                MEASURE,
                {"settings": s, "name": run.name, "home": str(home)},
                after=(train.key,),
                threads=s.run_threads,
            )
        )
    return [*tasks, *(mnist_tasks(s, home) if s.mnist else [])]


def measure_run(*, settings: Settings, name: str, home: str, progress: bool = False) -> dict[str, float]:
    """The final numbers of the planted run ``name`` (an engine task; cached next to the run)."""
    run = next(r for r in planted_runs(settings) if r.name == name)
    return measure(run, Path(home) / "runs" / name, settings)


def analyze(s: Settings, ctx: AnalysisContext) -> list[Section]:
    """Every run's numbers (cached by the measurement tasks), the MNIST question and transfer, judged."""
    started = time.perf_counter()
    runs = planted_runs(s)
    m = Measured({}, {})
    with torch_threads(s.run_threads):
        for r in runs:
            run_dir = ctx.home / "runs" / r.name
            m.dirs[(r.key, r.norm, r.seed)], m.values[(r.key, r.norm, r.seed)] = run_dir, measure(r, run_dir, s)
        mnist = mnist_question(ctx.home, s) if s.mnist else None
        op_key = f"sweep-a{s.a_n:g}"
        op_spec = next(r.spec for r in runs if r.key == op_key)
        tr = transfer(m, s, op_key, op_spec)
    home = str(ctx.home)
    seconds = sum(r.seconds for k, r in ctx.results.items() if k.startswith(home)) + time.perf_counter() - started
    sections, _ = build_sections(ctx.home, s, list(s.seeds), m, op_key, op_spec, mnist, tr, seconds)
    return [with_lens(sections[0], m, s, op_key, op_spec), *sections[1:]]


SPEC = register_experiment(
    ExperimentSpec(
        name="planted",
        summary="planted robust and non-robust features: the feature claims against ground truth",
        settings_type=Settings,
        presets={"cpu": FULL, "paper": PAPER, "quick": QUICK},
        plan=plan,
        analyze=analyze,
        order=70,
        epoch_keys=("epochs",),
        ignores=("dataset", "data_root"),
    )
)


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
