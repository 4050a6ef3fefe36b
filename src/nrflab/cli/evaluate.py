"""``nrflab evaluate``: clean accuracy, robust accuracy per attack and LIGS of any model, with a
gradient-masking sanity block for every robustness number (options generated from ``EvaluateSettings``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from nrflab.cli.app import app, out_option, overwrite_option
from nrflab.cli.measuring import MEASURE_FLAGS, channels, resolve_json_output
from nrflab.cli.model_options import FACTORY_ARG_OPTION, WEIGHTS_HELP, one_model, with_factory_args
from nrflab.cli.schema_flags import Flag, Given, schema_command
from nrflab.core.errors import NrflabError
from nrflab.measure.evaluation import EvaluateSettings, open_evaluation
from nrflab.measure.evaluation_files import write_evaluation

FLAGS = {
    **MEASURE_FLAGS,
    "random_start": Flag(names=("--random-start",)),
    "corruptions": Flag(names=("--corruptions",)),
    "spectrum": Flag(names=("--spectrum",)),
    "surrogate_mean": channels("--surrogate-mean"),
    "surrogate_std": channels("--surrogate-std"),
}


@schema_command(app, "evaluate", EvaluateSettings, flags=FLAGS)
def evaluate(
    given: Given,
    out: Optional[Path] = out_option(
        None,
        help="A .json file or a directory to write the record into (default: evaluation_<dataset>.json beside an "
        "nrflab checkpoint, else evaluation_<model>_<dataset>.json in the current directory), with the same name "
        ".csv beside it (one row per metric) and AutoAttack's resume state in autoattack-state/. Never a model, "
        "checkpoint, dataset shard or card.",
    ),
    weights: Optional[str] = typer.Option(
        None, "--weights", metavar="MODEL", help=f"{WEIGHTS_HELP} The same as --model (give one of them)."
    ),
    factory_arg: Optional[list[str]] = FACTORY_ARG_OPTION,
    overwrite: bool = overwrite_option("Replace an existing record at the output path."),
) -> None:
    """Evaluate a model: usefulness (clean accuracy), robust usefulness (robust accuracy), robustness (LIGS).

    Your own class and its weights: --arch mypkg.models:Net --weights w.pt (--factory-arg KEY=VALUE: its arguments)."""
    if weights is not None:
        given = {**given, "model": one_model([m for m in (given.get("model"), weights) if m], "--model or --weights")}
    given = with_factory_args(given, factory_arg)
    settings = EvaluateSettings.parse(given, where="evaluate options", flags=given)
    subject = open_evaluation(settings)
    default = subject.default_output("evaluation")
    source = Path(subject.loaded.source)
    target = resolve_json_output(
        out,
        default_dir=default.parent,
        default_name=default.name + ".json",
        inputs=(source,) if source.exists() else (),
    )
    if target.exists() and not overwrite:
        raise NrflabError(f"{target} exists: give --overwrite to replace it, or another --out")
    for line in subject.describe():
        typer.echo(line)
    record, (json_path, csv_path) = write_evaluation(subject, settings, target=target, progress=sys.stderr.isatty())
    if record.at_chance:
        typer.echo(f"warning: {record.at_chance}", err=True)
    for line in record.summary_lines():
        typer.echo(line)
    typer.echo(f"wrote {json_path} and {csv_path.name}")
