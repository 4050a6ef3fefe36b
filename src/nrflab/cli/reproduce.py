"""``nrflab reproduce``: every experiment of the paper as one resumable chain into one report (options: the
fields of ``experiments.overrides.Overrides`` and of ``runs.jobs.Execution``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from nrflab.cli.app import QUIET, app, out_option, overwrite_option
from nrflab.cli.console import print_sections, progress_bars
from nrflab.cli.flags import EXECUTION_FLAGS, REPRODUCE_FLAGS
from nrflab.cli.schema_flags import Given, schema_command
from nrflab.experiments.overrides import Overrides
from nrflab.runs.jobs import Execution


@schema_command(
    app, "reproduce", (Overrides, Execution), flags={**REPRODUCE_FLAGS, **EXECUTION_FLAGS}, skip=("progress",)
)
def reproduce(
    given: Given,
    run: Given,
    only: Optional[str] = typer.Option(
        None,
        "--only",
        help="Comma-separated experiments (default: all; see `nrflab list`; norms = adversarial, family, corruptions).",
    ),
    out: Path = out_option(Path("nrflab-reproduce"), help="Output directory (runs, sets, report)."),
    quiet: bool = QUIET,
    overwrite: bool = overwrite_option(
        "Replace what the output directory holds (e.g. runs of a changed recipe); the old contents "
        "are kept aside until the new chain finishes a task."
    ),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Print the task list, the resolved settings and a time estimate (this machine, and --scale "
        "paper on a GPU), and write nothing.",
    ),
) -> None:
    """The whole paper, one command: Figure 3 twins (standard and adversarial), the normalization family and
    corruptions, the feature datasets and their twins, transfer with both boosts and the planted features,
    into ONE report with every verdict and figure. Rerun to resume: finished runs of the same recipe are reused."""
    from nrflab.experiments.reproduce import reproduce as run_reproduce

    execution = Execution(**run, progress=progress_bars(quiet))
    started = time.perf_counter()
    ov = Overrides(**given).checked()
    if dry_run:
        from nrflab.experiments.dryrun import dry_run as plan_text
        from nrflab.experiments.reproduce import resolve_chain

        typer.echo(plan_text(resolve_chain(only, ov), out, overrides=ov, only=only, execution=execution))
        return
    result = run_reproduce(out=out, overrides=ov, only=only, execution=execution, overwrite=overwrite)
    if not quiet:
        print_sections(result.sections)
    typer.echo(f"report: {out / 'report.md'} and {out / 'report.html'} ({time.perf_counter() - started:.0f} s)")
    result.raise_for_failures()
