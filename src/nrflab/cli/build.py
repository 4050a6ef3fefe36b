"""``nrflab build-dataset``: robust / non-robust / conflicting feature datasets (options: ``make_settings``'s)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nrflab.cli import model_options as mo
from nrflab.cli.app import app, out_option, overwrite_option, quiet_option, resume_option
from nrflab.cli.console import progress_bars
from nrflab.cli.flags import BUILD_FLAGS
from nrflab.cli.schema_flags import Given, schema_command
from nrflab.core.errors import NrflabError
from nrflab.features import BUILD_KINDS, build_dataset, make_settings
from nrflab.models.references import with_factory_arguments


@schema_command(app, "build-dataset", make_settings, flags=BUILD_FLAGS, skip=("kind",))
def build_dataset_command(
    given: Given,
    kind: str = typer.Argument(..., help=f"One of {', '.join(BUILD_KINDS)}."),
    source: list[str] = typer.Option(
        ...,
        "--source",
        "-s",
        "--weights",
        metavar="MODEL",
        help="Source model (adversarially trained for d_r, standard otherwise), once. "
        + mo.MODEL_HELP
        + " --weights is the same option: --arch mypkg.models:Net --weights w.pt for your own class.",
    ),
    dataset: Optional[str] = typer.Option(
        None,
        "--dataset",
        "-d",
        help="Base dataset name (e.g. mnist5k, cifar10); for conflicting, default: the --base set's.",
    ),
    arch: Optional[str] = mo.ARCH_OPTION,
    norm: Optional[str] = mo.NORM_OPTION,
    num_classes: Optional[int] = mo.NUM_CLASSES_OPTION,
    width: Optional[float] = mo.WIDTH_OPTION,
    mean: Optional[str] = mo.MEAN_OPTION,
    std: Optional[str] = mo.STD_OPTION,
    factory_arg: Optional[list[str]] = mo.FACTORY_ARG_OPTION,
    out: Path = out_option(..., help="Directory to write (shards + dataset.json)."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Where the base dataset's files are."),
    base: Optional[Path] = typer.Option(None, "--base", help="conflicting only: the D_R set to start from."),
    resume: bool = resume_option("Continue an interrupted build (same settings) shard by shard."),
    overwrite: bool = overwrite_option("Build again even if OUT holds files."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    batch_size: int = typer.Option(256, "--batch-size", help="Images per PGD batch."),
    quiet: bool = quiet_option("No progress bar."),
) -> None:
    """Build a feature dataset (d_r, d_nr, d_rand, d_det, conflicting); train on it with `nrflab train -d OUT`."""
    model = mo.one_model(source, "--source/-s or --weights")
    arch, model = with_factory_arguments(factory_arg or [], arch=arch, model=model)
    if model is None:
        raise NrflabError("give the source model: --source/-s or --weights")
    outside = mo.outside_options(arch=arch, norm=norm, num_classes=num_classes, width=width, mean=mean, std=std)
    result = build_dataset(
        kind,
        model,
        dataset,
        out,
        data_root=data_root,
        base=base,
        model_options=outside,
        batch_size=batch_size,
        device=device,
        resume=resume,
        overwrite=overwrite,
        progress=progress_bars(quiet),
        **given,
    )
    typer.echo(f"wrote {result.out_dir / 'dataset.json'}")
