"""``nrflab sweep``: a recipe times a grid of overrides, run locally (optionally in parallel) or on Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
import yaml

from nrflab.cli.app import app
from nrflab.core.errors import NrflabError


def parse_value(text: str, flag: str, scalar: bool) -> Any:
    """A YAML value (int, float, bool, string; lists/mappings too unless ``scalar``)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise NrflabError(f"{flag}: cannot parse value {text!r}") from None
    if scalar and isinstance(value, (list, dict)):
        raise NrflabError(f"{flag}: value {text!r} must be a single number, bool or string")
    return value


def split_assignment(text: str, flag: str) -> tuple[str, str]:
    """``key=value`` -> (key, value), or a one-line error naming the flag."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise NrflabError(f"{flag} expects key=value, got {text!r}")
    return key.strip(), value


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``--grid norm=bn,none --grid seed=0,1`` -> {"norm": ["bn", "none"], "seed": [0, 1]}."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, text = split_assignment(item, "--grid")
        if key in grid:
            raise NrflabError(f"--grid {key} is given twice; list all its values in one --grid {key}=v1,v2")
        parts = [p.strip() for p in text.split(",")]
        if any(not p for p in parts):
            raise NrflabError(f"--grid {key}: empty value in {text!r}")
        grid[key] = [parse_value(p, f"--grid {key}", scalar=True) for p in parts]
    return grid


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``--set epochs=5 --set 'eval_attacks=["pgd-l2:eps=0.5,steps=2"]'`` -> fixed overrides."""
    out: dict[str, Any] = {}
    for item in items:
        key, text = split_assignment(item, "--set")
        out[key] = parse_value(text, f"--set {key}", scalar=False)
    return out


@app.command()
def sweep(
    out: Path = typer.Option(
        ..., "--out", "-o", help="Sweep directory: one run directory per grid point, sweep.json, summary.csv."
    ),
    config: Optional[Path] = typer.Option(
        None, "--config", help="Base YAML/JSON recipe (default: paper defaults + dataset preset)."
    ),
    grid: list[str] = typer.Option(
        [], "--grid", help="key=v1,v2,... (repeatable; cartesian product; values are YAML scalars)."
    ),
    set_: list[str] = typer.Option(
        [], "--set", help="key=value fixed override for every run (repeatable; value is YAML)."
    ),
    backend: str = typer.Option("local", "--backend", help="local (this machine) or ray (a Ray cluster)."),
    workers: int = typer.Option(
        1, "--workers", help="Local backend: runs in parallel processes (threads split between them)."
    ),
    ray_address: Optional[str] = typer.Option(
        None, "--ray-address", help="Ray cluster address (default: start a local Ray instance)."
    ),
    cpus_per_run: float = typer.Option(1.0, "--cpus-per-run", help="Ray backend: CPUs reserved per run."),
    gpus_per_run: float = typer.Option(
        0.0, "--gpus-per-run", help="Ray backend: GPUs reserved per run (fractions share a GPU)."
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="Only one line per finished run and the summary; no per-epoch lines."
    ),
) -> None:
    """Train a recipe over a grid of settings; finished runs are skipped and interrupted ones resume."""
    from nrflab.runs.jobs import Execution
    from nrflab.training.sweep import run_sweep, summary_table

    execution = Execution(
        workers=workers,
        backend=backend,  # type: ignore[arg-type]
        ray_address=ray_address,
        cpus_per_run=cpus_per_run,
        gpus_per_run=gpus_per_run,
        progress=False,
        verbose=not quiet,
    )
    result = run_sweep(config, parse_grid(grid), out, overrides=parse_sets(set_), execution=execution)
    typer.echo(summary_table(result))
    typer.echo(f"summary: {result.out_dir / 'summary.csv'}")
    if result.failed:
        typer.echo(
            f"error: {len(result.failed)} of {len(result.runs)} runs failed (see {result.out_dir / 'sweep.json'})",
            err=True,
        )
        raise typer.Exit(code=2)
