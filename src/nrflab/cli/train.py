"""``nrflab train`` (options generated from ``TrainConfig``) and ``nrflab plot`` (the Figure-3 curves)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from nrflab.cli.app import QUIET, app, out_option, overwrite_option, resume_option
from nrflab.cli.flags import TRAIN_FLAGS
from nrflab.cli.schema_flags import Given, schema_command
from nrflab.runs.rundir import RunDir
from nrflab.training import TrainConfig, load_config_file, make_config
from nrflab.training import train as run_training


@schema_command(app, "train", TrainConfig, flags=TRAIN_FLAGS)
def train(
    given: Given,
    out: Path = out_option(..., help="Run directory to write (metrics.csv, config, checkpoints)."),
    config: Optional[Path] = typer.Option(None, "--config", help="A YAML/JSON recipe; flags given here override it."),
    download: bool = typer.Option(False, "--download", help="Fetch missing dataset files first (needs internet)."),
    resume: bool = resume_option(
        "Continue an interrupted run from its last complete epoch. Its recorded config is the recipe: flags "
        "given must agree with it (the same run), else the resume is refused with the differing fields."
    ),
    overwrite: bool = overwrite_option(
        "Start again even if OUT holds a run; the old run is kept aside until the new one has committed its "
        "first epoch (restored if it fails before)."
    ),
    quiet: bool = QUIET,
) -> None:
    """Train a model, recording clean accuracy, robust accuracy and LIGS every epoch (epoch 0 included)."""
    recorded = out / RunDir.CONFIG
    if config is None and resume and recorded.is_file():
        config = recorded  # resuming: the run's recorded config is the recipe; flags given must agree with it
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


def _check_names(arch: str, norm: str) -> None:
    from nrflab.models import check_arch, check_norm

    check_arch(arch)
    check_norm(norm)
