"""``nrflab experiment NAME``, and what it shares with ``demo`` and ``reproduce``: the experiment flags (the
fields of :class:`nrflab.experiments.overrides.Overrides`, :data:`nrflab.cli.flags.EXPERIMENT_FLAGS`), workers,
quiet, and the printed report sections."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from nrflab.cli.app import QUIET, WORKERS, app, out_option
from nrflab.cli.console import print_sections, progress_bars
from nrflab.cli.flags import EXPERIMENT_FLAGS
from nrflab.cli.schema_flags import Given, schema_command
from nrflab.core.errors import NrflabError
from nrflab.experiments.overrides import Overrides

OUT_HELP = "Output directory (runs, plots, report)."


@schema_command(app, "experiment", Overrides, flags=EXPERIMENT_FLAGS)
def experiment(
    given: Given,
    name: str = typer.Argument(
        ..., help="An experiment (see `nrflab list`), or norms (adversarial, family, corruptions)."
    ),
    out: Optional[Path] = out_option(None, help=OUT_HELP + " Required unless --show-settings."),
    quick: bool = typer.Option(False, "--quick", help="A seconds-long run of the pipeline (the quick preset)."),
    workers: int = WORKERS,
    quiet: bool = QUIET,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the task list, the resolved settings and a time estimate; write nothing."
    ),
    show_settings: bool = typer.Option(
        False, "--show-settings", help="Print every setting with its value and its meaning, and exit."
    ),
) -> None:
    """Run one of the paper's experiments, on any dataset, architecture and device, and write its report."""
    from nrflab.experiments.overrides import settings_for
    from nrflab.experiments.registry import select
    from nrflab.experiments.reproduce import report_experiments
    from nrflab.runs.jobs import Execution

    started = time.perf_counter()
    specs = select([name])  # an alias (norms) stands for its experiments
    ov = Overrides(**{**given, **({"scale": "quick"} if quick else {})}).checked()
    selected = [(spec, settings_for(spec, ov, strict=True, chain=[s.name for s in specs])) for spec in specs]
    if out is None and not show_settings:
        raise NrflabError("experiment needs --out DIR (the output directory)")
    if show_settings or out is None:
        from nrflab.cli.flags import TRAIN_FLAGS
        from nrflab.experiments.dryrun import settings_lines

        meanings = {k: f.help for k, f in TRAIN_FLAGS.items() if f.help}
        typer.echo("\n".join(line for _, s in selected for line in settings_lines(s, stage_help=meanings)))
        return
    if dry_run:
        from nrflab.experiments.dryrun import dry_run as plan_text

        typer.echo(plan_text(selected, out, overrides=ov, only=[s.name for s in specs]))
        return
    execution = Execution(workers=workers, progress=progress_bars(quiet))
    result = report_experiments(selected, out, scale=ov.scale, title=f"nrflab experiment: {name}", execution=execution)
    print_sections(result.sections)
    assert result.report is not None
    md, html = result.report
    typer.echo(f"report: {md} and {html} ({time.perf_counter() - started:.0f} s)")
    result.raise_for_failures()
