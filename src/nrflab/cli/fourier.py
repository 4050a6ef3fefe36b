"""``nrflab fourier``: Fourier heat maps (Yin et al. 2019) of one or more models on one dataset."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Optional, cast

import typer

from nrflab.cli.app import app, out_option
from nrflab.core.errors import NrflabError
from nrflab.core.validation import SEED_MAX, resolve_device
from nrflab.measure.fourier import PRECISIONS, Precision
from nrflab.models.inspection import model_slug


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
    for bad, text in (
        (not (eps > 0 and math.isfinite(eps)), f"--eps must be > 0 and finite, got {eps}"),
        (limit < 1, f"--limit must be >= 1, got {limit}"),
        (precision not in PRECISIONS, f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}"),
    ):
        if bad:
            raise NrflabError(text)
    from nrflab.data import limit_dataset, load_dataset
    from nrflab.measure.fourier import fourier_heat_map
    from nrflab.measure.metrics import dataset_tensors
    from nrflab.models.inspection import check_model_fits
    from nrflab.models.references import load_model_reference
    from nrflab.report.fourier_plots import write_heat_maps

    dev = resolve_device(device)
    loaded = [load_model_reference(m, device=dev) for m in models]
    bundle = load_dataset(dataset, root=data_root, download=download)
    for model in loaded:
        check_model_fits(model, num_classes=bundle.num_classes, input_shape=bundle.input_shape, dataset=bundle.name)
    x, y = dataset_tensors(limit_dataset(bundle.test, limit, seed))
    slugs = [f"{i + 1}-{model_slug(m)}" if len(loaded) > 1 else model_slug(m) for i, m in enumerate(loaded)]
    maps = []
    for model, slug in zip(loaded, slugs):
        print(f"fourier: {model.name} on {len(y)} images of {bundle.name}", file=sys.stderr)
        heat_map = fourier_heat_map(
            model.module,
            x,
            y,
            eps=eps,
            name=model.name,
            per_channel=per_channel,
            seed=seed,
            batch_size=batch_size,
            precision=cast(Precision, precision),
            freeze=freeze,
            stride=stride,
            progress=True,
        )
        maps.append(heat_map)
        worst = max(max(row) for row in heat_map.error)
        typer.echo(f"{slug}: clean error {100 * heat_map.clean_error:.1f} %, worst frequency {100 * worst:.1f} %")
    for path in write_heat_maps(maps, out, slugs=slugs):
        typer.echo(f"wrote {path}")
