"""``nrflab sweep``: a recipe times a grid of overrides, run locally (optionally in parallel) or on Ray (options:
the fields of ``runs.jobs.Execution``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nrflab.cli.app import app, out_option, quiet_option
from nrflab.cli.flags import SWEEP_EXECUTION_FLAGS
from nrflab.cli.schema_flags import Given, schema_command
from nrflab.runs.jobs import Execution


@schema_command(app, "sweep", Execution, flags=SWEEP_EXECUTION_FLAGS, skip=("threads", "progress", "verbose"))
def sweep(
    run: Given,
    out: Path = out_option(..., help="Sweep directory: one run directory per grid point, sweep.json, summary.csv."),
    config: Optional[Path] = typer.Option(
        None, "--config", help="Base YAML/JSON recipe (default: paper defaults + dataset preset)."
    ),
    grid: list[str] = typer.Option(
        [], "--grid", help="key=v1,v2,... (repeatable; cartesian product; values are YAML scalars)."
    ),
    set_: list[str] = typer.Option(
        [], "--set", help="key=value fixed override for every run (repeatable; value is YAML)."
    ),
    quiet: bool = quiet_option("Only one line per finished run and the summary; no per-epoch lines."),
) -> None:
    """Train a recipe over a grid of settings; finished runs are skipped and interrupted ones resume."""
    from nrflab.training.sweep import run_sweep

    execution = Execution(**run, progress=False, verbose=not quiet)
    result = run_sweep(config, grid, out, overrides=set_, execution=execution)
    typer.echo(result.table())
    typer.echo(f"summary: {result.out_dir / 'summary.csv'}")
    if result.failed:
        typer.echo(
            f"error: {len(result.failed)} of {len(result.runs)} runs failed (see {result.out_dir / 'sweep.json'})",
            err=True,
        )
        raise typer.Exit(code=2)
