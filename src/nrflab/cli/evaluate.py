"""``nrflab evaluate``: clean accuracy, robust accuracy per attack and LIGS of any model, with a
gradient-masking sanity block for every robustness number."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer
from torch import nn

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
from nrflab.core.io import atomic_write_json
from nrflab.core.validation import SEED_MAX, resolve_device
from nrflab.data import DatasetBundle, limit_dataset, load_dataset
from nrflab.data.defaults import PRESETS, preset_for
from nrflab.measure.metrics import dataset_tensors, evaluate_model
from nrflab.models.inspection import LoadedModel, adopt_dataset_normalization, check_model_fits


def resolve_json_output(
    out: Optional[Path], *, default_dir: Path, default_name: str, inputs: tuple[Path, ...] = ()
) -> Path:
    """Where a command writes its JSON record: ``out`` as a ``.json`` file, or ``out`` (or ``default_dir``)
    as a directory holding ``default_name``. Never a model, checkpoint, dataset shard, card or run record,
    nor any input of the command (outputs never clobber inputs)."""
    from nrflab.runs.rundir import check_output_file, check_output_path

    if out is None:
        target = default_dir / default_name
    elif out.suffix and not out.is_dir():
        target = check_output_file(out, what="--out", suffix=".json")
    else:
        target = check_output_path(out, what="--out", allow_run=True) / default_name
    resolved = target.resolve()
    for p in inputs:
        if p is not None and Path(p).resolve() == resolved:
            raise NrflabError(f"refusing to write results over an input of this command: {target}")
    if target.with_suffix(".safetensors").is_file():
        raise NrflabError(
            f"refusing to write results over {target}: it is the config beside model "
            f"{target.with_suffix('.safetensors').name}"
        )
    return target


def _default_dataset(loaded: LoadedModel) -> str:
    found = default_dataset_of(loaded)
    if found is None:
        raise NrflabError("--dataset is required (the model is not an nrflab run nor a registered pretrained model)")
    return found


@app.command()
def evaluate(
    model_ref: Optional[str] = typer.Option(
        None, "--model", "-m", "--checkpoint", "-c", help=MODEL_HELP + " (--checkpoint/-c is an alias.)"
    ),
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
    random_start: bool = typer.Option(False, "--random-start", help="Start PGD at a random point of the eps-ball."),
    restarts: int = typer.Option(1, "--restarts", min=1, help="PGD restarts; the per-sample worst case is kept."),
    limit: Optional[int] = typer.Option(
        None,
        "--limit",
        min=1,
        help="Evaluate a seeded random subset of N test images (seed: --seed; the same images for every model).",
    ),
    ligs: bool = typer.Option(True, "--ligs/--no-ligs", help="Measure LIGS (local input-gradient similarity)."),
    sigma: float = typer.Option(0.01, "--sigma", min=0.0, help="LIGS noise std (pixel scale)."),
    sanity: bool = typer.Option(
        True,
        "--sanity/--no-sanity",
        help="Gradient-masking checks for every robustness number (eps monotone, unbounded attack, restarts, transfer from --surrogate) on a subset.",
    ),
    sanity_limit: int = typer.Option(
        32, "--sanity-limit", min=1, help="Images used by the sanity checks (the first N evaluated)."
    ),
    surrogate: Optional[str] = typer.Option(
        None,
        "--surrogate",
        help="A model reference to transfer from in the sanity checks (e.g. the model's no-BN twin).",
    ),
    surrogate_mean: Optional[str] = typer.Option(
        None, "--surrogate-mean", help="Per-channel mean the surrogate expects (as --mean)."
    ),
    surrogate_std: Optional[str] = typer.Option(
        None, "--surrogate-std", help="Per-channel std the surrogate expects (as --std)."
    ),
    corruptions: bool = typer.Option(
        False, "--corruptions", help="Also report accuracy per common corruption and severity."
    ),
    cifar_c: Optional[Path] = typer.Option(
        None, "--cifar-c", help="A CIFAR-10-C/100-C directory of .npy files to use for --corruptions."
    ),
    batch_size: int = typer.Option(256, "--batch-size", min=1),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    seed: int = typer.Option(
        0, "--seed", min=0, max=SEED_MAX, help="Seed (0..2^32-1) for the --limit subset, random starts and LIGS noise."
    ),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        "-o",
        help="A .json file or a directory to write the record into (default: evaluation_<dataset>.json beside an nrflab checkpoint, else evaluation_<model>_<dataset>.json in the current directory). Never a model, checkpoint, dataset shard or card.",
    ),
) -> None:
    """Evaluate a model: usefulness (clean accuracy), robust usefulness (robust accuracy), robustness (LIGS)."""
    specs = attack_specs_from_flags(attack, eps, steps, step_size, random_start, restarts)
    if cifar_c is not None:
        from nrflab.measure.corruptions import available_cifar_c

        available_cifar_c(cifar_c)  # a wrong directory fails now, not after the attacks ran
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
    )
    dataset = dataset or _default_dataset(loaded)
    bundle = load_dataset(dataset, root=data_root, download=download)
    if specs is None:
        preset = preset_for(bundle.name, bundle.info.get("base_dataset") if bundle.info else None)
        specs = [parse_attack(t) for t in PRESETS[preset]["eval_attacks"]]
    loaded = adopt_dataset_normalization(loaded, mean=bundle.mean, std=bundle.std, dataset=bundle.name)
    check_model_fits(loaded, num_classes=bundle.num_classes, input_shape=bundle.input_shape, dataset=bundle.name)
    surrogate_model = None
    if surrogate is not None and sanity:
        surrogate_model = load_model_option(
            surrogate,
            mean=surrogate_mean,
            std=surrogate_std,
            device=str(dev),
            weights_dir=weights_dir,
            allow_unverified=allow_unverified,
            flag="--surrogate",
        )
        check_model_fits(
            surrogate_model, num_classes=bundle.num_classes, input_shape=bundle.input_shape, dataset=bundle.name
        )
    source = Path(loaded.source)
    if loaded.kind == "nrflab":
        default_dir, default_name = source.parent, f"evaluation_{Path(bundle.name).name}.json"
    else:
        default_dir, default_name = Path.cwd(), f"evaluation_{model_slug(loaded)}_{Path(bundle.name).name}.json"
    target = resolve_json_output(
        out, default_dir=default_dir, default_name=default_name, inputs=(source,) if source.exists() else ()
    )
    echo_model(loaded)
    model = loaded.module
    x, y = dataset_tensors(limit_dataset(bundle.test, limit, seed))
    x, y = x.to(dev), y.to(dev)
    attacks = [(s.label, s.build(model, seed=seed)) for s in specs]
    result = evaluate_model(
        model, x, y, attacks, sigma if ligs else None, seed, batch_size, progress=sys.stderr.isatty()
    ).row()
    cfg = getattr(model, "config", None)
    record: dict[str, Any] = {
        "checkpoint": loaded.source,
        "dataset": bundle.name,
        "num_samples": int(y.shape[0]),
        "model": cfg.to_dict() if cfg is not None and hasattr(cfg, "to_dict") else loaded.describe(),
        "model_reference": loaded.describe(),
        "attacks": {s.label: s.to_string() for s in specs},
        "ligs_sigma": sigma if ligs else None,
        "seed": seed,
        "metrics": result,
    }
    reports = []
    if sanity:
        from nrflab.measure.sanity import sanity_checks

        n = min(sanity_limit, int(y.shape[0]))
        for s in specs:
            if s.kind != "none":
                reports.append(
                    sanity_checks(
                        model,
                        x[:n],
                        y[:n],
                        spec=s,
                        surrogate=surrogate_model.module if surrogate_model else None,
                        surrogate_name=surrogate_model.name if surrogate_model else "surrogate",
                        seed=seed,
                        batch_size=batch_size,
                    )
                )
        record["sanity"] = {r.attack: r.to_dict() for r in reports}
    if corruptions:
        record["corruptions"] = _corruption_rows(model, bundle, cifar_c, limit, batch_size, seed)
    atomic_write_json(target, record)
    typer.echo(f"{'metric':<28} value")
    for k, v in result.items():
        shown = f"{100 * v:.2f} %" if k.endswith("acc") or "acc[" in k else f"{v:.4f}"
        typer.echo(f"{k:<28} {shown}")
    if corruptions:
        typer.echo(f"{'mean corruption accuracy':<28} {100 * record['corruptions']['summary']['mean']:.2f} %")
    if reports:
        from nrflab.measure.sanity import format_sanity

        for line in format_sanity(reports):
            typer.echo(line)
    typer.echo(f"wrote {target}")


def _corruption_rows(
    model: nn.Module,
    bundle: DatasetBundle,
    cifar_c: Optional[Path],
    limit: Optional[int],
    batch_size: int,
    seed: int,
) -> dict[str, Any]:
    """Accuracy per corruption and severity: on CIFAR-C files if given, else corrupting the test set."""
    from nrflab.measure import corruptions as C

    if cifar_c is not None:
        from nrflab.measure.metrics import accuracy

        rows: list[dict[str, Any]] = []
        for name in C.available_cifar_c(cifar_c):
            for sev in C.SEVERITIES:
                block = C.load_cifar_c(cifar_c, name, sev)
                data = limit_dataset(block, limit, seed)
                rows.append({"corruption": name, "severity": sev, "accuracy": accuracy(model, data, batch_size)})
    else:
        test = bundle.test
        test = limit_dataset(test, limit, seed)
        rows = C.corruption_accuracy(model, test, seed=seed, batch_size=batch_size, progress=sys.stderr.isatty())
    return {"rows": rows, "summary": C.summarize_corruption_accuracy(rows)}
