"""``nrflab transfer``: a transfer matrix between models, with the paper's boosts (no-BN twin, early stop).

The flags and ``--recipe`` YAML share one schema, :class:`nrflab.transfer.TransferConfig` (flags win);
the command builds the config, the library does the rest.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from nrflab.cli.app import app
from nrflab.cli.model_options import (
    ARCH_OPTION,
    MEAN_OPTION,
    NORM_OPTION,
    NUM_CLASSES_OPTION,
    STD_OPTION,
    WIDTH_OPTION,
    parse_channel_values,
)
from nrflab.core.io import read_yaml_mapping
from nrflab.core.validation import DEVICE_HELP

MODEL_FORMS = (
    "run directories, RUN_DIR@epoch=K (a kept epoch), nrflab model .safetensors files, or models from "
    "outside nrflab: state dicts (.safetensors/.pt, see --arch/--norm/--num-classes), TorchScript files, "
    "pretrained:NAME, or package.module:function factories (a factory RUNS YOUR OWN CODE)"
)
LIMIT_HELP = (
    "Attack N test images drawn at random (without replacement) with --seed, kept in test-set order; the "
    "same N and seed give the same images. Not the first N: test sets are often sorted by class. "
    "Default: the whole test set."
)


def _split(values: Optional[list[str]]) -> list[str]:
    """Repeated options, each possibly a comma- or space-separated list."""
    out: list[str] = []
    for v in values or []:
        out.extend(p for p in v.replace(",", " ").split() if p)
    return out


@app.command()
def transfer(
    sources: Optional[list[str]] = typer.Option(
        None,
        "--sources",
        "--source",
        "-s",
        help=f"Source models: {MODEL_FORMS}. Repeat the option or give a comma/space-separated list "
        "(--source is the same option, as in build-dataset).",
    ),
    targets: Optional[list[str]] = typer.Option(
        None, "--targets", "--target", "-t", help="Target models (same forms as --sources; --target is the same)."
    ),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        "-o",
        help="Output directory (cached adversarial examples, pair results, matrix CSV/JSON, heat maps, summary.md). A training run, a model file, a built dataset or a directory holding other files is refused.",
    ),
    recipe: Optional[Path] = typer.Option(
        None,
        "--recipe",
        help="A YAML file with the same keys as the options (sources, targets, dataset, attack, eps, ..., out); options given on the command line override it. Unknown keys are refused.",
    ),
    dataset: Optional[str] = typer.Option(
        None, "--dataset", "-d", help="Dataset whose test set is attacked (default: the first source run's dataset)."
    ),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Where the dataset's files are."),
    attack: Optional[str] = typer.Option(
        None,
        "--attack",
        "-a",
        help="pgd-linf (default), pgd-l2, fgsm, fgm-l2 (with --eps), or a full spec like 'pgd-linf:eps=0.1,steps=10'.",
    ),
    eps: Optional[float] = typer.Option(
        None, "--eps", help="Attack radius (pixel scale), for an attack given by kind."
    ),
    steps: Optional[int] = typer.Option(None, "--steps", help="Attack iterations (default 10)."),
    step_size: Optional[float] = typer.Option(None, "--step-size", help="Attack step (default 2.5 * eps / steps)."),
    targeted: Optional[bool] = typer.Option(
        None, "--targeted/--untargeted", help="Targeted attack; success = the target predicts the target class."
    ),
    target_policy: Optional[str] = typer.Option(
        None, "--target-policy", help="Target classes: next = (y+1) mod C, random = a seeded uniform wrong class."
    ),
    source_epoch: Optional[int] = typer.Option(
        None,
        "--source-epoch",
        help="Use epoch K's kept checkpoint of every source run (train with --keep-checkpoints).",
    ),
    boost: Optional[str] = typer.Option(
        None,
        "--boost",
        help="none; no-bn-twin (the source's twin run with norm none); early-stop (an earlier checkpoint chosen by --early-stop); both (all combinations). Boosted variants are compared with the sources as given.",
    ),
    early_stop: Optional[str] = typer.Option(
        None,
        "--early-stop",
        help="Early-stop rule: epoch=K, frac=X (earliest kept epoch with clean acc >= X * final; default frac=0.9), or ligs=F (highest-LIGS kept epoch with clean acc >= F).",
    ),
    twin_candidates: Optional[list[str]] = typer.Option(
        None,
        "--twin-candidates",
        help="Run dirs, or folders of run dirs, to search for no-BN twins (default: the sources' parent folders).",
    ),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help=LIMIT_HELP),
    seed: Optional[int] = typer.Option(
        None,
        "--seed",
        help="Seed (0..2^32-1, default 0) for the --limit subset, random starts and random target classes.",
    ),
    device: Optional[str] = typer.Option(None, "--device", help=f"{DEVICE_HELP} (default auto)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Images per batch (default 256)."),
    include_self: Optional[bool] = typer.Option(
        None, "--include-self/--exclude-self", help="Count a model as its own target in averages (default: excluded)."
    ),
    arch: Optional[str] = ARCH_OPTION,
    norm: Optional[str] = NORM_OPTION,
    num_classes: Optional[int] = NUM_CLASSES_OPTION,
    width: Optional[float] = WIDTH_OPTION,
    mean: Optional[str] = MEAN_OPTION,
    std: Optional[str] = STD_OPTION,
    resume: bool = typer.Option(
        False, "--resume", help="Reuse the results already in --out (same settings); only missing work is done."
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Recompute everything even if --out holds results; the old results are kept aside until the first new result is written (restored if the job fails before).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Transfer matrix: craft adversarial examples on each source once, evaluate every target on them.

    Reports per pair the target's accuracy on the transferred examples and the transfer success on
    eligible examples (source correct when clean and fooled; target correct when clean), with 95 %
    Wilson intervals, per-source averages over targets, and the effect of the chosen boost. --arch,
    --norm, --num-classes, --width, --mean and --std apply to every model from outside nrflab.
    """
    from nrflab.transfer import TransferConfig, run_transfer

    mean_values = parse_channel_values(mean, "--mean")
    std_values = parse_channel_values(std, "--std")
    given: dict[str, Any] = dict(
        sources=_split(sources) or None,
        targets=_split(targets) or None,
        dataset=dataset,
        data_root=data_root,
        attack=attack,
        eps=eps,
        steps=steps,
        step_size=step_size,
        targeted=targeted,
        target_policy=target_policy,
        source_epoch=source_epoch,
        boost=boost,
        early_stop=early_stop,
        twin_candidates=_split(twin_candidates) or None,
        limit=limit,
        seed=seed,
        device=device,
        batch_size=batch_size,
        include_self=include_self,
        arch=arch,
        norm=norm,
        num_classes=num_classes,
        width=width,
        mean=None if mean_values is None else list(mean_values),
        std=None if std_values is None else list(std_values),
        out=None if out is None else str(out),
    )
    given = {k: v for k, v in given.items() if v is not None}
    settings = dict(read_yaml_mapping(recipe, "recipe")) if recipe else {}
    settings.update(given)
    config = TransferConfig.from_mapping(
        settings, where=f"recipe {recipe}" if recipe else "transfer options", flags=frozenset(given)
    )
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
