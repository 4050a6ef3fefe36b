"""``nrflab build-dataset``: the robust / non-robust / conflicting feature datasets (Ilyas et al., the paper)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ..errors import NrflabError
from ..features import BUILD_KINDS, DTYPES, KIND_DEFAULTS, LABEL_POLICIES, build_dataset
from .app import app

_DEFAULTS = ", ".join(f"{k}: {s} steps, eps {e:g}, step {st:g}" for k, (s, e, st) in KIND_DEFAULTS.items())


@app.command("build-dataset")
def build_dataset_command(
    kind: str = typer.Argument(..., help=f"One of {', '.join(BUILD_KINDS)}."),
    source: Path = typer.Option(..., "--source", "-s", help="Source model: a run directory or a .safetensors checkpoint (adversarially trained for d_r, standard otherwise)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Base dataset name (e.g. mnist5k, cifar10); for conflicting, default: the --base set's."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory to write (shards + dataset.json)."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Where the base dataset's files are."),
    base: Optional[Path] = typer.Option(None, "--base", help="conflicting only: the D_R set to start from."),
    steps: Optional[int] = typer.Option(None, "--steps", help=f"PGD steps. Defaults: {_DEFAULTS}."),
    eps: Optional[float] = typer.Option(None, "--eps", help="L2 radius (pixel scale; 1000 = unbounded for the inversions)."),
    step_size: Optional[float] = typer.Option(None, "--step-size", help="L2 step size."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Build from a seeded random subset of N training images (seed: --seed)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random start images / random targets (per shard)."),
    label_policy: str = typer.Option("target", "--label-policy", help=f"Labels to store: {', '.join(LABEL_POLICIES)}."),
    shard_size: int = typer.Option(1000, "--shard-size", help="Images per shard (the unit of resuming)."),
    dtype: str = typer.Option("uint8", "--dtype", help=f"Stored image type: {', '.join(DTYPES)} (uint8 quantizes to 1/255)."),
    fake_relu: bool = typer.Option(False, "--fake-relu", help="d_r/d_nr: pass gradients through the last ReLU (official code)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted build (same settings) shard by shard."),
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
        kind.lower(), source, dataset, out, data_root=data_root, base=base, steps=steps, eps=eps, step_size=step_size,
        seed=seed, label_policy=label_policy, shard_size=shard_size, dtype=dtype, fake_relu=fake_relu, limit=limit,
        batch_size=batch_size, device=device, resume=resume, overwrite=overwrite,
        progress=not quiet and sys.stderr.isatty(),
    )
    typer.echo(f"wrote {result.out_dir / 'dataset.json'}")
