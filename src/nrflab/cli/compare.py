"""``nrflab compare A B``: two models (or two groups of models, e.g. seeds) on the same images, with paired
intervals per quantity (options generated from ``CompareSettings``)."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Optional

import typer

from nrflab.cli.app import app, out_option, overwrite_option
from nrflab.cli.measuring import MEASURE_FLAGS, resolve_output_dir
from nrflab.cli.schema_flags import Given, schema_command
from nrflab.core.errors import NrflabError
from nrflab.core.io import atomic_write_json, atomic_write_text
from nrflab.core.records import to_json
from nrflab.measure.compare import CompareSettings, compare_opened, open_comparison

FILES = ("compare.json", "compare.csv", "compare.md")
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
    existing = [name for name in FILES if (folder / name).exists()]
    if existing and not overwrite:
        raise NrflabError(f"{folder / existing[0]} exists: give --overwrite to replace it, or another --out")
    state = folder / "autoattack-state"  # an interrupted AutoAttack resumes from here
    result = compare_opened(subject, side_a, side_b, settings, progress=sys.stderr.isatty(), state_dir=state)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "compare.json", to_json(result))
    atomic_write_text(folder / "compare.csv", _csv(result.csv_rows()))
    atomic_write_text(folder / "compare.md", result.markdown())
    typer.echo(result.markdown().split("\n## ")[0].rstrip())
    typer.echo(f"wrote {', '.join(str(folder / n) for n in FILES)}")


def _refs(text: str) -> list[str]:
    refs = [r.strip() for r in text.split(",") if r.strip()]
    if not refs:
        raise NrflabError(f"no model reference in {text!r}")
    return refs


def _csv(rows: list[dict[str, object]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["quantity"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
