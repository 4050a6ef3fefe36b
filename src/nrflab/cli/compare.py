"""``nrflab compare A B``: two models (or two groups of models, e.g. seeds) on the same images, with paired
intervals per quantity (options generated from ``CompareSettings``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from nrflab.cli.app import app, out_option, overwrite_option
from nrflab.cli.measuring import MEASURE_FLAGS, resolve_output_dir
from nrflab.cli.schema_flags import Given, schema_command
from nrflab.core.errors import NrflabError
from nrflab.measure.compare import CompareSettings, open_comparison, write_comparison

FLAGS = {k: v for k, v in MEASURE_FLAGS.items() if k != "model"}


@schema_command(app, "compare", CompareSettings, flags=FLAGS, skip=("model", "a", "b"))
def compare(
    given: Given,
    a: str = typer.Argument(..., metavar="A", help="Model reference(s) of side A, comma-separated (e.g. the seeds)."),
    b: str = typer.Argument(..., metavar="B", help="Model reference(s) of side B, paired with A's by position."),
    out: Optional[Path] = out_option(
        None,
        help="Output directory (compare.json, .csv, .md; AutoAttack's resume state in autoattack-state/); "
        "default: ./compare_<dataset>.",
    ),
    overwrite: bool = overwrite_option("Replace an earlier comparison in --out."),
) -> None:
    """Compare two models, or two groups paired by position: clean accuracy, robust accuracy per attack and
    for all attacks at once, LIGS and accuracy per class, each as A - B with a paired 95 % interval."""
    settings = CompareSettings.parse({**given, "a": _refs(a), "b": _refs(b)}, where="compare options", flags=given)
    subject, side_a, side_b = open_comparison(settings)
    folder = resolve_output_dir(out or Path.cwd() / f"compare_{Path(subject.bundle.name).name}")
    result, paths = write_comparison(
        subject, side_a, side_b, settings, folder=folder, overwrite=overwrite, progress=sys.stderr.isatty()
    )
    typer.echo(result.markdown().split("\n## ")[0].rstrip())
    typer.echo(f"wrote {', '.join(str(p) for p in paths)}")


def _refs(text: str) -> list[str]:
    refs = [r.strip() for r in text.split(",") if r.strip()]
    if not refs:
        raise NrflabError(f"no model reference in {text!r}")
    return refs
