"""``nrflab bn-analysis``: BN surgery on any model with BatchNorm -- is it the statistics or the affine?"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import torch
import typer

from nrflab.attacks import parse_attack
from nrflab.cli.app import app
from nrflab.cli.model_options import (
    ALLOW_UNVERIFIED_OPTION,
    ARCH_OPTION,
    MEAN_OPTION,
    MODEL_HELP,
    NORM_OPTION,
    NUM_CLASSES_OPTION,
    STD_OPTION,
    WEIGHTS_DIR_OPTION,
    WIDTH_OPTION,
    default_dataset_of,
    echo_model,
    load_model_option,
    model_slug,
)
from nrflab.cli.options import (
    ATTACKS_OPTION,
    DATA_ROOT_OPTION,
    DOWNLOAD_OPTION,
    EPS_OPTION,
    EVAL_DATASET_OPTION,
    STEP_SIZE_OPTION,
    STEPS_OPTION,
    attack_specs_from_flags,
)
from nrflab.core.errors import NrflabError
from nrflab.core.io import atomic_write_json, atomic_write_text
from nrflab.core.validation import SEED_MAX, resolve_device
from nrflab.data import limit_dataset, load_dataset
from nrflab.data.defaults import PRESETS, preset_for
from nrflab.measure.metrics import dataset_tensors
from nrflab.models.inspection import adopt_dataset_normalization, check_model_fits

RESULT_JSON = "bn_analysis.json"
RESULT_MD = "bn_analysis.md"


@app.command("bn-analysis")
def bn_analysis(
    model_ref: str = typer.Argument(..., metavar="MODEL", help=MODEL_HELP),
    dataset: Optional[str] = EVAL_DATASET_OPTION,
    data_root: Optional[Path] = DATA_ROOT_OPTION,
    download: bool = DOWNLOAD_OPTION,
    arch: Optional[str] = ARCH_OPTION,
    norm: Optional[str] = NORM_OPTION,
    num_classes: Optional[int] = NUM_CLASSES_OPTION,
    width: Optional[float] = WIDTH_OPTION,
    mean: Optional[str] = MEAN_OPTION,
    std: Optional[str] = STD_OPTION,
    weights_dir: Optional[Path] = WEIGHTS_DIR_OPTION,
    allow_unverified: bool = ALLOW_UNVERIFIED_OPTION,
    attack: Optional[list[str]] = ATTACKS_OPTION,
    eps: Optional[float] = EPS_OPTION,
    steps: Optional[int] = STEPS_OPTION,
    step_size: Optional[float] = STEP_SIZE_OPTION,
    variants: Optional[list[str]] = typer.Option(
        None,
        "--variant",
        help="Variants to run (repeatable): running, batch, recalibrated, affine-only, folded. Default: all.",
    ),
    calibration: int = typer.Option(
        512, "--calibration", min=2, help="Clean training images used to recalibrate the running statistics."
    ),
    limit: Optional[int] = typer.Option(
        None, "--limit", min=1, help="Use a seeded random subset of N test images (seed: --seed)."
    ),
    ligs: bool = typer.Option(True, "--ligs/--no-ligs", help="Measure LIGS per variant."),
    sigma: float = typer.Option(0.01, "--sigma", min=0.0, help="LIGS noise std (pixel scale)."),
    batch_size: int = typer.Option(
        256,
        "--batch-size",
        min=2,
        help="Batch size; the batch-statistics variant normalizes over batches of this size.",
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    seed: int = typer.Option(
        0,
        "--seed",
        min=0,
        max=SEED_MAX,
        help="Seed (0..2^32-1) for attacks, LIGS noise and the choice of calibration images.",
    ),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        "-o",
        help=f"Output directory ({RESULT_JSON} and {RESULT_MD}); default: bn_analysis_<dataset> beside an nrflab checkpoint, else bn_analysis_<model>_<dataset> in the current directory.",
    ),
) -> None:
    """BN surgery: the framework table (clean acc, robust acc, LIGS) under running statistics, batch
    statistics, recalibrated statistics, normalization removed (affine kept) and BN folded into the
    convolutions, plus transfer from each variant to the original model."""
    from nrflab.measure.bn_surgery import VARIANTS, analyze_batchnorm
    from nrflab.runs.rundir import check_output_path

    specs = attack_specs_from_flags(attack, eps, steps, step_size)
    chosen = list(dict.fromkeys(v.strip().lower() for v in (variants or VARIANTS)))
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown:
        raise NrflabError(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    dev = resolve_device(device)
    loaded = load_model_option(
        model_ref,
        arch=arch,
        norm=norm,
        num_classes=num_classes,
        width=width,
        mean=mean,
        std=std,
        device=str(dev),
        weights_dir=weights_dir,
        allow_unverified=allow_unverified,
        flag="MODEL",
    )
    if not loaded.has_batchnorm:
        raise NrflabError(f"model {loaded.name} has no BatchNorm layer: there is nothing to operate on")
    if loaded.kind == "torchscript":
        raise NrflabError("BN surgery needs an editable model, not TorchScript; give a state dict or a factory")
    dataset = dataset or default_dataset_of(loaded)
    if dataset is None:
        raise NrflabError("--dataset is required (the model is not an nrflab run nor a registered pretrained model)")
    bundle = load_dataset(dataset, root=data_root, download=download)
    if specs is None:
        preset = preset_for(bundle.name, bundle.info.get("base_dataset") if bundle.info else None)
        specs = [parse_attack(t) for t in PRESETS[preset]["eval_attacks"]]
    loaded = adopt_dataset_normalization(loaded, mean=bundle.mean, std=bundle.std, dataset=bundle.name)
    check_model_fits(loaded, num_classes=bundle.num_classes, input_shape=bundle.input_shape, dataset=bundle.name)
    source = Path(loaded.source)
    base_name = Path(bundle.name).name
    if out is None:
        out = (
            source.parent / f"bn_analysis_{base_name}"
            if loaded.kind == "nrflab"
            else Path.cwd() / f"bn_analysis_{model_slug(loaded)}_{base_name}"
        )
    out = check_output_path(out, what="--out")
    if out.suffix.lower() in (".json", ".md", ".safetensors", ".pt", ".pth"):
        raise NrflabError(f"--out of bn-analysis is a directory, not {out}")
    echo_model(loaded)
    x, y = dataset_tensors(limit_dataset(bundle.test, limit, seed))
    calib = None
    if "recalibrated" in chosen:
        train_x, _ = dataset_tensors(bundle.train)
        order = torch.randperm(train_x.shape[0], generator=torch.Generator().manual_seed(seed))
        calib = train_x[order[:calibration]]
    result = analyze_batchnorm(
        loaded.module,
        x,
        y,
        attacks=specs,
        calibration_images=calib,
        variants=chosen,
        seed=seed,
        batch_size=batch_size,
        ligs_sigma=sigma if ligs else None,
        num_classes=bundle.num_classes,
        dataset=bundle.name,
        model_info=loaded.describe(),
        progress=sys.stderr.isatty(),
    )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / RESULT_JSON, result.to_dict())
    atomic_write_text(out / RESULT_MD, result.markdown())
    header, rows = result.table()
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        typer.echo("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    typer.echo("")
    for line in result.reading():
        typer.echo(line)
    typer.echo(f"wrote {out / RESULT_JSON} and {out / RESULT_MD}")
