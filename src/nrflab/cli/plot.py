"""``nrflab plot``: clean accuracy, robust accuracy and LIGS vs epoch (paper Figure 3) for several runs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nrflab.cli.app import app, out_option
from nrflab.core.errors import NrflabError


@app.command()
def plot(
    runs: list[Path] = typer.Argument(..., help="Run directories to draw on one figure."),
    out: Optional[Path] = out_option(None, help="Output directory (default: the first run's parent)."),
    name: str = typer.Option(
        "curves", "--name", help="File name of the figure inside --out (writes NAME.png and NAME.svg)."
    ),
    attack: Optional[str] = typer.Option(
        None, "--attack", help="Which robust-accuracy column to draw (default: the first)."
    ),
    title: Optional[str] = typer.Option(None, "--title", help="Figure title."),
) -> None:
    """Draw clean accuracy, robust accuracy and LIGS vs epoch (paper Figure 3) for several runs."""
    from nrflab.report.plots import plot_runs
    from nrflab.runs.rundir import check_output_path

    if not name or "/" in name or name.startswith("."):
        raise NrflabError(f"--name must be a plain file name, got {name!r}")
    folder = check_output_path(out or runs[0].parent, what="output directory")
    for p in plot_runs(runs, folder / name, attack=attack, title=title):
        typer.echo(f"wrote {p}")
