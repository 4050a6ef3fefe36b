"""``nrflab fourier``: Fourier heat maps (Yin et al. 2019) of one or more models on one dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nrflab.cli.app import app, out_option
from nrflab.core.errors import NrflabError
from nrflab.core.validation import SEED_MAX


@app.command()
def fourier(
    models: list[str] = typer.Argument(..., help="Model references (run directories, weights, pretrained:NAME, ...)."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset name or built dataset directory."),
    eps: float = typer.Option(4.0, "--eps", help="L2 norm of the Fourier perturbation per channel (> 0)."),
    limit: int = typer.Option(1000, "--limit", help="Seeded random subset of N test images (>= 1)."),
    out: Path = out_option(Path("fourier"), help="Directory for the PNG, SVG, CSV and JSON files."),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX, help="Seed of the subset and the perturbation signs."),
    per_channel: bool = typer.Option(False, "--per-channel", help="An independent sign per channel (Yin et al.)."),
    precision: str = typer.Option("float32", "--precision", help="float32, or bfloat16 autocast (faster)."),
    batch_size: int = typer.Option(512, "--batch-size", min=1, help="Perturbed images per forward pass."),
    stride: int = typer.Option(1, "--stride", min=1, help="Every STRIDE-th frequency per axis (coarser grid)."),
    freeze: bool = typer.Option(False, "--freeze", help="Frozen TorchScript graph (~2x faster on CPU)."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Where the dataset's files are."),
    download: bool = typer.Option(False, "--download", help="Fetch missing dataset files (checksummed)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
) -> None:
    """Error rate of each model under a perturbation along every Fourier basis image, as centred heat maps."""
    from nrflab.measure.fourier_models import heat_maps_of
    from nrflab.report.fourier_plots import write_heat_maps

    if out.exists() and not out.is_dir():  # refused now, not after every map is measured
        raise NrflabError(f"--out {out} exists and is not a directory")
    slugs, maps = [], []
    for slug, heat_map in heat_maps_of(
        models,
        dataset=dataset,
        eps=eps,
        limit=limit,
        seed=seed,
        per_channel=per_channel,
        precision=precision,
        batch_size=batch_size,
        stride=stride,
        freeze=freeze,
        data_root=data_root,
        download=download,
        device=device,
        progress=True,
    ):
        slugs.append(slug)
        maps.append(heat_map)
        worst = max(max(row) for row in heat_map.error)
        typer.echo(f"{slug}: clean error {100 * heat_map.clean_error:.1f} %, worst frequency {100 * worst:.1f} %")
    for path in write_heat_maps(maps, out, slugs=slugs):
        typer.echo(f"wrote {path}")
