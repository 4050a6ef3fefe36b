"""``nrflab evaluate``: clean accuracy, robust accuracy per attack and LIGS of a checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ..checkpoint import atomic_write_json, load_model, resolve_checkpoint
from ..data import load_dataset
from ..errors import NrflabError
from ..metrics import dataset_tensors, evaluate_model
from ..presets import PRESETS, preset_for
from ..attacks import parse_attack
from ..training import read_run_config, resolve_device
from .app import app
from .options import attack_specs_from_flags


def _default_dataset(checkpoint: Path) -> str:
    run_dir = checkpoint.parent
    try:
        return str(read_run_config(run_dir)["dataset"])
    except NrflabError:
        raise NrflabError("--dataset is required (the checkpoint is not inside an nrflab run directory)") from None


@app.command()
def evaluate(
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="A model .safetensors file or a run directory (its last checkpoint)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Dataset name or built dataset directory; default: the run's dataset."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Where the dataset's files are."),
    download: bool = typer.Option(False, "--download", help="Fetch missing dataset files (needs internet)."),
    attack: Optional[list[str]] = typer.Option(None, "--attack", "-a", help="pgd-l2, pgd-linf, fgsm, fgm-l2, or a full spec like 'pgd-l2:eps=0.25,step=0.1,steps=10' (repeatable). Default: the dataset preset's attacks."),
    eps: Optional[float] = typer.Option(None, "--eps", help="Attack radius (pixel scale, inputs in [0,1])."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Attack iterations (default 10)."),
    step_size: Optional[float] = typer.Option(None, "--step-size", help="Attack step (default 2.5 * eps / steps)."),
    random_start: bool = typer.Option(False, "--random-start", help="Start PGD at a random point of the eps-ball."),
    restarts: int = typer.Option(1, "--restarts", min=1, help="PGD restarts; the per-sample worst case is kept."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Evaluate only the first N test images."),
    ligs: bool = typer.Option(True, "--ligs/--no-ligs", help="Measure LIGS (local input-gradient similarity)."),
    sigma: float = typer.Option(0.01, "--sigma", min=0.0, help="LIGS noise std (pixel scale)."),
    corruptions: bool = typer.Option(False, "--corruptions", help="Also report accuracy per common corruption and severity."),
    cifar_c: Optional[Path] = typer.Option(None, "--cifar-c", help="A CIFAR-10-C/100-C directory of .npy files to use for --corruptions."),
    batch_size: int = typer.Option(256, "--batch-size", min=1),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    seed: int = typer.Option(0, "--seed", help="Seed for random starts and LIGS noise."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="JSON file to write (default: evaluation_<dataset>.json beside the checkpoint)."),
) -> None:
    """Evaluate a model: usefulness (clean accuracy), robust usefulness (robust accuracy), robustness (LIGS)."""
    path = resolve_checkpoint(checkpoint)
    dataset = dataset or _default_dataset(path)
    specs = attack_specs_from_flags(attack, eps, steps, step_size, random_start, restarts)
    if cifar_c is not None:
        from ..corruptions import available_cifar_c

        available_cifar_c(cifar_c)  # a wrong directory fails now, not after the attacks ran
    bundle = load_dataset(dataset, root=data_root, download=download)
    if specs is None:
        preset = preset_for(bundle.name, bundle.info.get("base_dataset") if bundle.info else None)
        specs = [parse_attack(t) for t in PRESETS[preset]["eval_attacks"]]
    dev = resolve_device(device)
    model = load_model(path, dev)
    cfg = model.config
    shape = tuple(cfg.input_shape) if cfg.input_shape else None
    # A 3-channel model would silently broadcast 1-channel images through its Normalize layer: check channels too.
    if (cfg.num_classes != bundle.num_classes or cfg.in_channels != bundle.in_channels
            or (shape and shape != tuple(bundle.input_shape))):
        raise NrflabError(
            f"the model ({cfg.num_classes} classes, {cfg.in_channels} channels, input {shape or 'any'}) "
            f"does not fit dataset {bundle.name!r} "
            f"({bundle.num_classes} classes, input {bundle.input_shape})"
        )
    x, y = dataset_tensors(bundle.test, limit)
    x, y = x.to(dev), y.to(dev)
    attacks = [(s.label, s.build(model, seed=seed)) for s in specs]
    result = evaluate_model(model, x, y, attacks, sigma if ligs else None, seed, batch_size, progress=sys.stderr.isatty())
    record = {
        "checkpoint": str(path),
        "dataset": bundle.name,
        "num_samples": int(y.shape[0]),
        "model": cfg.to_dict(),
        "attacks": {s.label: s.to_string() for s in specs},
        "ligs_sigma": sigma if ligs else None,
        "seed": seed,
        "metrics": result,
    }
    if corruptions:
        record["corruptions"] = _corruption_rows(model, bundle, cifar_c, limit, batch_size, seed)
    target = out or path.parent / f"evaluation_{Path(bundle.name).name}.json"
    atomic_write_json(target, record)
    typer.echo(f"{'metric':<28} value")
    for k, v in result.items():
        shown = f"{100 * v:.2f} %" if k.endswith("acc") or "acc[" in k else f"{v:.4f}"
        typer.echo(f"{k:<28} {shown}")
    if corruptions:
        typer.echo(f"{'mean corruption accuracy':<28} {100 * record['corruptions']['summary']['mean']:.2f} %")
    typer.echo(f"wrote {target}")


def _corruption_rows(model, bundle, cifar_c: Optional[Path], limit: Optional[int], batch_size: int, seed: int) -> dict:
    """Accuracy per corruption and severity: on CIFAR-C files if given, else corrupting the test set."""
    from .. import corruptions as C

    if cifar_c is not None:
        from ..metrics import accuracy

        rows = []
        for name in C.available_cifar_c(cifar_c):
            for sev in C.SEVERITIES:
                data = C.load_cifar_c(cifar_c, name, sev)
                if limit is not None:
                    data = data.subset(range(min(limit, len(data))))
                rows.append({"corruption": name, "severity": sev, "accuracy": accuracy(model, data, batch_size)})
    else:
        test = bundle.test
        if limit is not None:
            test = test.subset(range(min(limit, len(test))))
        rows = C.corruption_accuracy(model, test, seed=seed, batch_size=batch_size, progress=sys.stderr.isatty())
    return {"rows": rows, "summary": C.summarize_corruption_accuracy(rows)}
