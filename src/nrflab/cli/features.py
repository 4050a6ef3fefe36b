"""``nrflab build-dataset``: the robust / non-robust / conflicting feature datasets (Ilyas et al., the paper)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from nrflab.cli.app import app
from nrflab.cli.model_options import (
    ARCH_OPTION,
    MEAN_OPTION,
    MODEL_HELP,
    NORM_OPTION,
    NUM_CLASSES_OPTION,
    STD_OPTION,
    WIDTH_OPTION,
    parse_channel_values,
)
from nrflab.core.errors import NrflabError
from nrflab.core.validation import SEED_MAX
from nrflab.features import BUILD_KINDS, DTYPES, KIND_DEFAULTS, LABEL_POLICIES, build_dataset

_DEFAULTS = ", ".join(f"{k}: {a.steps} steps, eps {a.eps:g}, step {a.step_size:g}" for k, a in KIND_DEFAULTS.items())


@app.command("build-dataset")
def build_dataset_command(
    kind: str = typer.Argument(..., help=f"One of {', '.join(BUILD_KINDS)}."),
    source: str = typer.Option(
        ..., "--source", "-s", help="Source model (adversarially trained for d_r, standard otherwise). " + MODEL_HELP
    ),
    arch: Optional[str] = ARCH_OPTION,
    norm: Optional[str] = NORM_OPTION,
    num_classes: Optional[int] = NUM_CLASSES_OPTION,
    width: Optional[float] = WIDTH_OPTION,
    mean: Optional[str] = MEAN_OPTION,
    std: Optional[str] = STD_OPTION,
    layer: Optional[str] = typer.Option(
        None,
        "--layer",
        help="d_r/d_nr with a model that has no .features(x): the name of the layer whose output is the representation.",
    ),
    dataset: Optional[str] = typer.Option(
        None,
        "--dataset",
        "-d",
        help="Base dataset name (e.g. mnist5k, cifar10); for conflicting, default: the --base set's.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Directory to write (shards + dataset.json)."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Where the base dataset's files are."),
    base: Optional[Path] = typer.Option(None, "--base", help="conflicting only: the D_R set to start from."),
    steps: Optional[int] = typer.Option(None, "--steps", help=f"PGD steps. Defaults: {_DEFAULTS}."),
    eps: Optional[float] = typer.Option(
        None, "--eps", help="L2 radius (pixel scale; 1000 = unbounded for the inversions)."
    ),
    step_size: Optional[float] = typer.Option(None, "--step-size", help="L2 step size."),
    limit: Optional[int] = typer.Option(
        None, "--limit", help="Build from a seeded random subset of N training images (seed: --seed)."
    ),
    seed: int = typer.Option(
        0,
        "--seed",
        min=0,
        max=SEED_MAX,
        help="Seed (0..2^32-1) of the --limit subset, the random start images and random targets (per shard).",
    ),
    label_policy: str = typer.Option("target", "--label-policy", help=f"Labels to store: {', '.join(LABEL_POLICIES)}."),
    shard_size: int = typer.Option(1000, "--shard-size", help="Images per shard (the unit of resuming)."),
    dtype: str = typer.Option(
        "uint8", "--dtype", help=f"Stored image type: {', '.join(DTYPES)} (uint8 quantizes to 1/255)."
    ),
    fake_relu: bool = typer.Option(
        False, "--fake-relu", help="d_r/d_nr: pass gradients through the last ReLU (official code)."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue an interrupted build (same settings) shard by shard."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Build again even if OUT holds files."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    batch_size: int = typer.Option(256, "--batch-size", help="Images per PGD batch."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Build a feature dataset (d_r, d_nr, d_rand, d_det, conflicting); train on it with `nrflab train -d OUT`."""
    if kind.lower() not in BUILD_KINDS:
        raise NrflabError(f"unknown dataset kind {kind!r}; choose one of {', '.join(BUILD_KINDS)}")
    if kind.lower() != "conflicting" and dataset is None:
        raise NrflabError("--dataset is required (the base dataset, e.g. mnist5k)")
    result = build_dataset(
        kind.lower(),
        source,
        dataset,
        out,
        data_root=data_root,
        base=base,
        steps=steps,
        eps=eps,
        step_size=step_size,
        seed=seed,
        label_policy=label_policy,
        shard_size=shard_size,
        dtype=dtype,
        fake_relu=fake_relu,
        limit=limit,
        layer=layer,
        model_options=dict(
            arch=arch,
            norm=norm,
            num_classes=num_classes,
            width=width,
            mean=parse_channel_values(mean, "--mean"),
            std=parse_channel_values(std, "--std"),
        ),
        batch_size=batch_size,
        device=device,
        resume=resume,
        overwrite=overwrite,
        progress=not quiet and sys.stderr.isatty(),
    )
    typer.echo(f"wrote {result.out_dir / 'dataset.json'}")
