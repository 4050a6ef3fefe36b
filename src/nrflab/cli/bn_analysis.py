"""``nrflab bn-analysis``: BN surgery on any model with BatchNorm -- is it the statistics or the affine?
(options generated from ``BnAnalysisSettings``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from nrflab.cli.app import app, out_option
from nrflab.cli.measuring import MEASURE_FLAGS, resolve_output_dir
from nrflab.cli.model_options import FACTORY_ARG_OPTION, MODEL_HELP, WEIGHTS_HELP, one_model, with_factory_args
from nrflab.cli.schema_flags import Flag, Given, schema_command
from nrflab.core.errors import NrflabError
from nrflab.measure.bn_analysis import write_bn_analysis
from nrflab.measure.evaluation import BnAnalysisSettings, open_bn_analysis

FLAGS = {**MEASURE_FLAGS, "variants": Flag(names=("--variant",))}
del FLAGS["model"]


@schema_command(app, "bn-analysis", BnAnalysisSettings, flags=FLAGS, skip=("model",))
def bn_analysis(
    given: Given,
    model: Optional[str] = typer.Argument(None, metavar="MODEL", help=f"{MODEL_HELP} (Or give it as --weights.)"),
    weights: Optional[str] = typer.Option(None, "--weights", metavar="MODEL", help=f"{WEIGHTS_HELP} Instead of MODEL."),
    factory_arg: Optional[list[str]] = FACTORY_ARG_OPTION,
    out: Optional[Path] = out_option(
        None,
        help="Output directory (bn_analysis.json and bn_analysis.md); default: bn_analysis_<dataset> beside an nrflab "
        "checkpoint, else bn_analysis_<model>_<dataset> in the current directory.",
    ),
) -> None:
    """BN surgery: the framework table (clean acc, robust acc, LIGS) under running statistics, batch
    statistics, recalibrated statistics, normalization removed (affine kept) and BN folded into the
    convolutions, plus transfer from each variant to the original model. Your own model: --arch
    mypkg.models:Net --weights w.pt (--factory-arg KEY=VALUE for your class's arguments)."""
    chosen = one_model([m for m in (model, weights) if m is not None], "MODEL or --weights")
    if chosen is None:
        raise NrflabError("give the model: MODEL, or --weights w.pt (with --arch mypkg.models:Net for your class)")
    given = with_factory_args({**given, "model": chosen}, factory_arg)
    settings = BnAnalysisSettings.parse(given, where="bn-analysis options", flags=given)
    subject = open_bn_analysis(settings)
    folder = resolve_output_dir(out or subject.default_output("bn_analysis"))
    for line in subject.describe():
        typer.echo(line)
    result, (json_path, md_path) = write_bn_analysis(subject, settings, folder=folder, progress=sys.stderr.isatty())
    for line in result.summary_lines():
        typer.echo(line)
    typer.echo(f"wrote {json_path} and {md_path}")
