"""``nrflab demo`` (the main job) and ``nrflab experiment NAME``: the paper's experiments, one command each."""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from ..errors import NrflabError
from ..report import Section, strip_markdown, write_report
from .app import app

EXPERIMENTS = {
    "core": "BN vs no-BN twins: framework table and LIGS curves (Figure 3)",
    "features": "D_rand, D_det and conflicting-feature sets, and training on them (Figures 4 and 6)",
    "transfer": "transfer matrix of a BN/no-BN zoo and early-stopped sources (transfer boosts)",
    "norms": "adversarial training, the normalization family and corruption robustness",
}

INTRO = (
    "Reproduction of Benz, Zhang and Kweon, *Batch Normalization Increases Adversarial Vulnerability and "
    "Decreases Adversarial Transferability: A Non-Robust Feature Perspective* (ICCV 2021) with nrflab. "
    "Framework: **usefulness** = clean accuracy, **robust usefulness** = robust (adversarial) accuracy, "
    "**robustness** of the used features = LIGS (local input-gradient similarity; near 1 = robust features)."
)


def _load(name: str):
    if name not in EXPERIMENTS:
        raise NrflabError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}")
    try:
        return importlib.import_module(f"nrflab.experiments.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"nrflab.experiments.{name}":
            raise NrflabError(f"experiment {name!r} is not available in this installation") from None
        raise


def run_experiments(names: list[str], out: Path, quick: bool, seeds: list[int], progress: bool, **core_kwargs) -> list[Section]:
    """Run the named experiments into ``out`` and return their report sections."""
    sections: list[Section] = []
    for name in names:
        module = _load(name)
        kwargs = core_kwargs if name == "core" else {}
        sections += module.run(out / name if name != "core" else out, quick=quick, seeds=tuple(seeds),
                               progress=progress, **kwargs)
    return sections


def _finish(out: Path, title: str, sections: list[Section], started: float) -> None:
    md, html = write_report(out, title, sections, INTRO)
    typer.echo("")
    for s in sections:
        typer.echo(f"== {s.title} ==")
        typer.echo(strip_markdown(s.markdown))
        typer.echo("")
    typer.echo(f"report: {md} and {html} ({time.perf_counter() - started:.0f} s)")


@app.command()
def demo(
    out: Path = typer.Option(Path("nrflab-demo"), "--out", "-o", help="Output directory (runs, plots, report)."),
    dataset: str = typer.Option("mnist5k", "--dataset", "-d", help="Dataset for the twins (default: the embedded MNIST subset)."),
    arch: str = typer.Option("smallcnn", "--arch", help="Architecture of both twins."),
    width: float = typer.Option(0.5, "--width", help="Channel width multiplier."),
    epochs: int = typer.Option(8, "--epochs", min=1),
    eval_size: int = typer.Option(500, "--eval-size", min=1, help="Fixed test subset evaluated every epoch."),
    seed: Optional[list[int]] = typer.Option(None, "--seed", help="Seed(s); repeat for several (default 0)."),
    device: str = typer.Option("auto", "--device"),
    full: bool = typer.Option(False, "--full", help="Also run the feature-dataset, transfer and normalization experiments."),
    quick: bool = typer.Option(False, "--quick", help="A reduced run (1 epoch, small evaluation) to check the pipeline."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """The main job: train a BN model and its no-normalization twin, record every epoch, report the paper's claims."""
    from ..experiments.core import QUICK, DemoSettings

    from ..models import check_arch

    check_arch(arch)
    started = time.perf_counter()
    settings = DemoSettings(dataset=dataset, arch=arch, width=width, epochs=epochs, eval_size=eval_size, device=device)
    if quick:
        settings = DemoSettings(dataset=dataset, arch=arch, width=width, epochs=QUICK.epochs,
                                eval_size=QUICK.eval_size, device=device)
    names = list(EXPERIMENTS) if full else ["core"]
    sections = run_experiments(names, out, quick, seed or [0], not quiet and sys.stderr.isatty(), settings=settings)
    _finish(out, "nrflab report: batch normalization and non-robust features", sections, started)


@app.command()
def experiment(
    name: str = typer.Argument(..., help=f"One of: {', '.join(f'{k} ({v})' for k, v in EXPERIMENTS.items())}."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory."),
    seed: Optional[list[int]] = typer.Option(None, "--seed", help="Seed(s); repeat for several (default 0 and 1)."),
    quick: bool = typer.Option(False, "--quick", help="A reduced run to check the pipeline."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Run one of the paper's experiments at CPU scale on the embedded data and write its report."""
    started = time.perf_counter()
    _load(name)
    sections = run_experiments([name], out, quick, seed or [0, 1], not quiet and sys.stderr.isatty())
    _finish(out, f"nrflab experiment: {name}", sections, started)
