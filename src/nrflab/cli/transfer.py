"""``nrflab transfer``: a transfer matrix between models, with the paper's boosts (no-BN twin, early stop).

The options are generated from :class:`nrflab.transfer.TransferConfig`, the schema ``--recipe`` files use
too (options given on the command line override the file); the library does the rest.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Optional

import typer

from nrflab.cli.app import QUIET, app, overwrite_option, resume_option
from nrflab.cli.flags import TRANSFER_FLAGS
from nrflab.cli.model_options import FACTORY_ARG_OPTION
from nrflab.cli.schema_flags import Given, schema_command
from nrflab.core.errors import NrflabError
from nrflab.core.io import read_yaml_mapping
from nrflab.transfer import TransferConfig


@schema_command(app, "transfer", TransferConfig, flags=TRANSFER_FLAGS)
def transfer(
    given: Given,
    recipe: Optional[Path] = typer.Option(
        None,
        "--recipe",
        help="A YAML file with the same keys as the options (sources, targets, dataset, attack, eps, ..., out); "
        "options given on the command line override it. Unknown keys are refused.",
    ),
    resume: bool = resume_option("Reuse the results already in --out (same settings); only missing work is done."),
    overwrite: bool = overwrite_option(
        "Recompute everything even if --out holds results; the old results are kept aside until the first "
        "new result is written (restored if the job fails before)."
    ),
    quiet: bool = QUIET,
    factory_arg: Optional[list[str]] = FACTORY_ARG_OPTION,
    weights: Optional[list[str]] = typer.Option(None, "--weights", hidden=True, help="Not for transfer."),
) -> None:
    """Transfer matrix: craft adversarial examples on each source once, evaluate every target on them.

    Reports per pair the target's accuracy on the transferred examples and the transfer success on eligible
    examples (source correct when clean and fooled; target correct when clean), with 95 % Wilson intervals,
    per-source averages over targets, and the effect of the chosen boost (your own twins: --twin A=B). --arch,
    --norm, --num-classes, --width, --mean, --std and --factory-arg apply to every model from outside nrflab:
    your own class is --arch mypkg.models:Net --source w1.pt --target w2.pt.
    """
    from nrflab.models.references import with_factory_arguments
    from nrflab.transfer import run_transfer

    if weights:
        raise NrflabError(
            "transfer takes several models: give each weights file by its role, --source w.pt / --target w.pt "
            "(with --arch mypkg.models:Net for your own class)"
        )
    settings = {**(read_yaml_mapping(recipe, "recipe") if recipe else {}), **given}
    if factory_arg:
        arch = settings.get("arch")
        settings["arch"] = with_factory_arguments(factory_arg, arch=None if arch is None else str(arch), model=None)[0]
    where = f"recipe {recipe}" if recipe else "transfer options"
    config = TransferConfig.from_mapping(settings, where=where, flags=frozenset(given))
    run = run_transfer(config, resume=resume, overwrite=overwrite, progress=not quiet and sys.stderr.isatty())
    typer.echo(f"{'source':<28} {'targets':>7} {'success %':>9}  mean target acc %")
    for r in run.result.per_source():
        succ = "n/a" if not math.isfinite(r.mean_success) else f"{100 * r.mean_success:.1f}"
        acc = "n/a" if not math.isfinite(r.mean_target_accuracy) else f"{100 * r.mean_target_accuracy:.1f}"
        typer.echo(f"{r.source:<28} {r.targets:>7} {succ:>9}  {acc}")
    for b in run.boosts:
        if b.boost != "none" and math.isfinite(b.gain):
            typer.echo(f"boost {b.boost:<11} on {b.source}: {100 * b.gain:+.1f} points ({b.model})")
    for p in run.paths.all():
        typer.echo(f"wrote {p}")
