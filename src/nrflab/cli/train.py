"""``nrflab train`` and ``nrflab plot``: train with per-epoch records; draw the Figure-3 curves."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer

from nrflab.cli.app import app
from nrflab.core.errors import NrflabError
from nrflab.core.validation import SEED_MAX
from nrflab.runs.rundir import RunDir
from nrflab.training import ADV_TRAIN_KINDS, load_config_file, make_config
from nrflab.training import train as run_training


@app.command()
def train(
    out: Path = typer.Option(..., "--out", "-o", help="Run directory to write (metrics.csv, config, checkpoints)."),
    config: Optional[Path] = typer.Option(None, "--config", help="A YAML/JSON recipe; flags given here override it."),
    dataset: Optional[str] = typer.Option(
        None, "--dataset", "-d", help="Dataset name or built dataset directory (default cifar10)."
    ),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Where the dataset's files are."),
    download: bool = typer.Option(False, "--download", help="Fetch missing dataset files first (needs internet)."),
    arch: Optional[str] = typer.Option(
        None, "--arch", help="resnet18, resnet50, vgg11, vgg16, smallcnn (default resnet18)."
    ),
    norm: Optional[str] = typer.Option(None, "--norm", help="bn, none, gn, ln, in, bn-eval, fixup (default bn)."),
    width: Optional[float] = typer.Option(None, "--width", help="Channel width multiplier (e.g. 0.25 for CPU runs)."),
    init: Optional[str] = typer.Option(None, "--init", help="auto, kaiming, torch, fixup."),
    epochs: Optional[int] = typer.Option(None, "--epochs"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help="sgd or adam."),
    lr: Optional[float] = typer.Option(None, "--lr"),
    momentum: Optional[float] = typer.Option(None, "--momentum"),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay"),
    schedule: Optional[str] = typer.Option(None, "--schedule", help="multistep, onecycle, cosine, constant."),
    milestones: Optional[str] = typer.Option(
        None, "--milestones", help="Comma-separated epochs for multistep, e.g. 50,100."
    ),
    gamma: Optional[float] = typer.Option(None, "--gamma"),
    augment: Optional[bool] = typer.Option(None, "--augment/--no-augment", help="Random crop (and flip) augmentation."),
    seed: Optional[int] = typer.Option(
        None,
        "--seed",
        min=0,
        max=SEED_MAX,
        help="Seed (0..2^32-1) of the initial weights, the data order and the augmentation.",
    ),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N."),
    eval_attack: Optional[list[str]] = typer.Option(
        None,
        "--eval-attack",
        help="Per-epoch attack spec (repeatable), e.g. 'pgd-l2:eps=0.25,step=0.1,steps=10'. Default: the dataset preset.",
    ),
    ligs: Optional[bool] = typer.Option(None, "--ligs/--no-ligs", help="Record LIGS every epoch."),
    eval_size: Optional[int] = typer.Option(
        None, "--eval-size", help="Evaluate on a fixed seeded subset of N test images."
    ),
    eval_shifted_labels: Optional[bool] = typer.Option(
        None, "--eval-shifted-labels/--no-eval-shifted-labels", help="Also record accuracy against (y+1) mod C."
    ),
    adv_train: Optional[str] = typer.Option(
        None, "--adv-train", help=f"Adversarial training: {', '.join(ADV_TRAIN_KINDS)}."
    ),
    adv_eps: Optional[float] = typer.Option(None, "--adv-eps"),
    adv_steps: Optional[int] = typer.Option(None, "--adv-steps"),
    adv_step_size: Optional[float] = typer.Option(None, "--adv-step-size"),
    attack_mode: Optional[str] = typer.Option(
        None,
        "--attack-mode",
        help="Model mode while crafting training attacks: eval, or train (BN batch stats, as the official code).",
    ),
    keep_checkpoints: Optional[int] = typer.Option(
        None, "--keep-checkpoints", help="Also keep the model of every N-th epoch (for early-stopped transfer sources)."
    ),
    channels_last: Optional[bool] = typer.Option(
        None, "--channels-last/--no-channels-last", help="channels_last memory format (faster convs on CPU and GPU)."
    ),
    amp: Optional[str] = typer.Option(
        None,
        "--amp",
        help="Mixed precision for the training steps: none (fp32) or bf16 (bfloat16 autocast). Evaluation and every recorded robustness number stay fp32.",
    ),
    flip: Optional[bool] = typer.Option(None, "--flip/--no-flip", help="Horizontal flips in the augmentation."),
    warmup_epochs: Optional[float] = typer.Option(
        None,
        "--warmup-epochs",
        help="Linear learning-rate warm-up over this many epochs (multistep, cosine, constant schedules).",
    ),
    ligs_sigma: Optional[float] = typer.Option(None, "--ligs-sigma", help="LIGS noise std (pixel scale)."),
    eval_batch_size: Optional[str] = typer.Option(
        None,
        "--eval-batch-size",
        help="Batch size of the per-epoch evaluation: N, or auto (256 on CPU; on CUDA the largest that fits a quarter of free memory, up to 4096).",
    ),
    compile_mode: Optional[str] = typer.Option(
        None,
        "--compile",
        help="torch.compile the model for the training steps: none, default, reduce-overhead (CUDA graphs), max-autotune, max-autotune-no-cudagraphs. Pays after its compile time on long GPU runs; evaluation stays eager fp32.",
    ),
    probe_every: Optional[int] = typer.Option(
        None,
        "--probe-every",
        help="Also record the dataset's probes (e.g. planted-feature reliance) every N steps of the first --probe-epochs epochs, in probes.csv.",
    ),
    probe_epochs: Optional[int] = typer.Option(
        None, "--probe-epochs", help="How many epochs --probe-every covers (default 1)."
    ),
    preset: Optional[str] = typer.Option(
        None, "--preset", help="Dataset preset to apply (default: chosen from the dataset)."
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue an interrupted run from its last complete epoch. Its recorded config is the recipe: flags given must agree with it (the same run), else the resume is refused with the differing fields.",
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Start again even if OUT holds a run; the old run is kept aside until the new one has committed its first epoch (restored if it fails before).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Train a model, recording clean accuracy, robust accuracy and LIGS every epoch (epoch 0 included)."""
    flags: dict[str, Any] = dict(
        dataset=dataset,
        data_root=data_root,
        arch=arch,
        norm=norm,
        width=width,
        init=init,
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        schedule=schedule,
        gamma=gamma,
        augment=augment,
        seed=seed,
        device=device,
        ligs=ligs,
        eval_size=eval_size,
        eval_shifted_labels=eval_shifted_labels,
        adv_train=adv_train,
        adv_eps=adv_eps,
        adv_steps=adv_steps,
        adv_step_size=adv_step_size,
        attack_mode=attack_mode,
        keep_checkpoints=keep_checkpoints,
        channels_last=channels_last,
        preset=preset,
        amp=amp,
        flip=flip,
        warmup_epochs=warmup_epochs,
        ligs_sigma=ligs_sigma,
        probe_every=probe_every,
        probe_epochs=probe_epochs,
        compile=compile_mode,
        eval_batch_size=_batch_size_flag(eval_batch_size),
    )
    if milestones is not None:
        try:
            flags["milestones"] = [int(m) for m in milestones.split(",") if m.strip()]
        except ValueError:
            raise NrflabError(f"--milestones must be comma-separated integers, got {milestones!r}") from None
    if eval_attack:
        flags["eval_attacks"] = list(eval_attack)
    given = {k: v for k, v in flags.items() if v is not None}
    recorded = out / RunDir.CONFIG
    if config is None and resume and recorded.is_file():
        # Resuming: the run's own recorded config is the recipe; any flag given must agree with it.
        config = recorded
    cfg = load_config_file(config, **given) if config else make_config(**given)
    _check_names(cfg.arch, cfg.norm)
    if download:
        from nrflab.data import load_dataset

        load_dataset(cfg.dataset, root=cfg.data_root, download=True)
    result = run_training(cfg, out, resume=resume, overwrite=overwrite, progress=not quiet and sys.stderr.isatty())
    last = result.history[-1]
    typer.echo(
        f"done: {result.run_dir} (clean {100 * last['clean_acc']:.1f}%); metrics in {result.run_dir / 'metrics.csv'}"
    )


def _batch_size_flag(text: Optional[str]) -> int | str | None:
    """``--eval-batch-size``: ``auto`` or a whole number."""
    if text is None or text.strip().lower() == "auto":
        return None if text is None else "auto"
    try:
        return int(text)
    except ValueError:
        raise NrflabError(f"--eval-batch-size must be auto or a whole number, got {text!r}") from None


def _check_names(arch: str, norm: str) -> None:
    from nrflab.models import check_arch, check_norm

    check_arch(arch)
    check_norm(norm)


@app.command()
def plot(
    runs: list[Path] = typer.Argument(..., help="Run directories to draw on one figure."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output directory (default: the first run's parent)."),
    name: str = typer.Option(
        "curves", "--name", help="File name of the figure inside --out (writes NAME.png and NAME.svg)."
    ),
    attack: Optional[str] = typer.Option(
        None, "--attack", help="Which robust-accuracy column to draw (default: the first)."
    ),
    title: Optional[str] = typer.Option(None, "--title"),
) -> None:
    """Draw clean accuracy, robust accuracy and LIGS vs epoch (paper Figure 3) for several runs."""
    from nrflab.report.plots import plot_runs
    from nrflab.runs.rundir import check_output_path

    if not name or "/" in name or name.startswith("."):
        raise NrflabError(f"--name must be a plain file name, got {name!r}")
    folder = check_output_path(out or runs[0].parent, what="output directory")
    paths = plot_runs(runs, folder / name, attack=attack, title=title)
    for p in paths:
        typer.echo(f"wrote {p}")
