"""``nrflab verdicts`` (the verdict table of a finished run, and the README's results table written from it) and
``nrflab claims`` (every claim nrflab judges, as declared)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nrflab.cli.app import app


@app.command()
def verdicts(
    run_dir: Path = typer.Argument(..., help="A directory written by `nrflab reproduce`, `demo` or `experiment`."),
    readme: Optional[Path] = typer.Option(
        None,
        "--readme",
        help="Also write the table into this file, between its '<!-- verdicts:begin -->' and "
        "'<!-- verdicts:end -->' lines (how the README's results table is made).",
    ),
) -> None:
    """Print the verdict table of a finished run (from its verdicts.json)."""
    from nrflab.report.results import results_table, update_readme

    table = results_table(run_dir)
    if readme is not None:
        typer.echo(f"wrote {update_readme(readme, table, source=str(run_dir))}")
        return
    typer.echo(table)


@app.command()
def claims(
    pattern: Optional[str] = typer.Argument(None, help="Only claims whose id matches this shell pattern ('core.*')."),
) -> None:
    """List every claim nrflab judges: id, family, unit, minimum seeds and the judged quantity."""
    from nrflab.experiments.claims import list_claims
    from nrflab.report.results import claims_table

    found = list_claims(pattern)
    typer.echo(claims_table(found) if found else f"no claim matches {pattern!r}")
