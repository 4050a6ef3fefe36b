"""``nrflab demo``: the main job, the BN/no-BN twins and the paper's claims (the experiment flags it takes)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from nrflab.cli.app import QUIET, WORKERS, app, out_option
from nrflab.cli.console import print_sections, progress_bars
from nrflab.cli.experiments import OUT_HELP
from nrflab.cli.flags import EXPERIMENT_FLAGS
from nrflab.cli.schema_flags import Given, schema_command
from nrflab.experiments.overrides import Overrides


@schema_command(app, "demo", Overrides, flags=EXPERIMENT_FLAGS, skip=("scale", "recipes", "assignments"))
def demo(
    given: Given,
    out: Path = out_option(Path("nrflab-demo"), help=OUT_HELP),
    eval_size: Optional[int] = typer.Option(
        None, "--eval-size", min=1, help="Fixed test subset evaluated every epoch."
    ),
    full: bool = typer.Option(False, "--full", help="Every experiment of the paper (as `nrflab reproduce`)."),
    quick: bool = typer.Option(
        False, "--quick", help="A reduced run (1 epoch, small evaluation) to check the pipeline."
    ),
    workers: int = WORKERS,
    quiet: bool = QUIET,
) -> None:
    """The main job: train a BN model and its no-normalization twin, record every epoch, report the paper's claims."""
    from nrflab.experiments.reproduce import reproduce
    from nrflab.runs.jobs import Execution

    started = time.perf_counter()
    sets = (f"core.twins.eval_size={eval_size}",) if eval_size else ()
    ov = Overrides(**given, scale="quick" if quick else "cpu", assignments=sets).checked()
    execution = Execution(workers=workers, progress=progress_bars(quiet))
    result = reproduce(out=out, overrides=ov, only=None if full else ["core"], execution=execution)
    print_sections(result.sections)
    typer.echo(f"report: {out / 'report.md'} and {out / 'report.html'} ({time.perf_counter() - started:.0f} s)")
    result.raise_for_failures()
