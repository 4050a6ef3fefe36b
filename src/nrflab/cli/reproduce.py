"""``nrflab reproduce``: every experiment of the paper as one resumable chain into one report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from nrflab.cli.app import app
from nrflab.cli.experiments import (
    BACKEND_HELP,
    RECIPE_HELP,
    SCALE_HELP,
    SET_HELP,
    _progress,
    overrides_from_flags,
    print_sections,
)


@app.command()
def reproduce(
    scale: str = typer.Option("cpu", "--scale", help=SCALE_HELP),
    only: Optional[str] = typer.Option(
        None,
        "--only",
        help="Comma-separated experiments (default: all; see `nrflab list`; norms = adversarial, family, corruptions).",
    ),
    out: Path = typer.Option(Path("nrflab-reproduce"), "--out", "-o", help="Output directory (runs, sets, report)."),
    recipe: Optional[list[Path]] = typer.Option(None, "--recipe", help=RECIPE_HELP),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Dataset of every experiment that takes one."),
    data_root: Optional[str] = typer.Option(
        None, "--data-root", help="Where file-based datasets live (e.g. the folder holding cifar-10-batches-py)."
    ),
    arch: Optional[str] = typer.Option(None, "--arch", help="Architecture of every model."),
    width: Optional[float] = typer.Option(None, "--width", help="Channel-width multiplier."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs of every training stage of every experiment."),
    seed: Optional[list[int]] = typer.Option(None, "--seed", help="Seed(s) of every experiment; repeatable."),
    assignments: Optional[list[str]] = typer.Option(
        None,
        "--set",
        help=SET_HELP + " Prefix a key with an experiment's name to change it there only (features.twins.lr=0.05).",
    ),
    workers: int = typer.Option(
        1,
        "--workers",
        "-j",
        min=1,
        help="Independent runs in parallel local processes (each gets cores/workers torch threads).",
    ),
    backend: str = typer.Option("local", "--backend", help=BACKEND_HELP),
    ray_address: Optional[str] = typer.Option(
        None,
        "--ray-address",
        help="Address of a running Ray cluster (HOST:PORT or auto); default: a local Ray instance.",
    ),
    cpus_per_run: float = typer.Option(
        1.0, "--cpus-per-run", help="Ray: CPUs each run reserves (= its torch threads)."
    ),
    gpus_per_run: float = typer.Option(
        0.0, "--gpus-per-run", help="Ray: GPUs each run reserves (e.g. 1, or 0.5 to share)."
    ),
    threads: Optional[int] = typer.Option(
        None,
        "--threads",
        min=1,
        help="Torch threads per run (default: all cores "
        "with one worker, cores/workers with several). Runs give the same numbers "
        "for the same seed and threads per run, wherever they run.",
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Every run's per-epoch lines (workers included)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace what the output directory holds (e.g. runs of a changed recipe); the old contents "
        "are kept aside until the new chain finishes a task.",
    ),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Print the task list, the resolved settings and a time estimate (this machine, and --scale "
        "paper on a GPU), and write nothing.",
    ),
) -> None:
    """The whole paper, one command: Figure 3 twins (standard and adversarial), the normalization family and
    corruptions, the feature datasets and their twins, transfer with both boosts and the planted features,
    into ONE report with every verdict and figure. Rerun to resume: finished runs of the same recipe are reused."""
    from nrflab.experiments.reproduce import reproduce as run_reproduce
    from nrflab.runs.jobs import Execution

    execution = Execution(
        workers=workers,
        backend=backend,  # type: ignore[arg-type]
        ray_address=ray_address,
        cpus_per_run=cpus_per_run,
        gpus_per_run=gpus_per_run,
        threads=threads,
        progress=_progress(quiet),
        verbose=True if verbose else None,
    )
    started = time.perf_counter()
    ov = overrides_from_flags(
        scale=scale,
        recipe=recipe,
        dataset=dataset,
        data_root=data_root,
        arch=arch,
        width=width,
        device=device,
        epochs=epochs,
        seed=seed,
        assignments=assignments,
    )
    if dry_run:
        from nrflab.experiments.dryrun import dry_run as plan_text
        from nrflab.experiments.reproduce import resolve_chain

        typer.echo(plan_text(resolve_chain(only, ov), out, overrides=ov, only=only, execution=execution))
        return
    result = run_reproduce(out=out, overrides=ov, only=only, execution=execution, overwrite=overwrite)
    if not quiet:
        print_sections(result.sections)
    typer.echo(f"report: {out / 'report.md'} and {out / 'report.html'} ({time.perf_counter() - started:.0f} s)")
    result.raise_for_failures()
