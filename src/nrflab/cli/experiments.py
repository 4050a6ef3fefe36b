"""``nrflab demo`` (the main job) and ``nrflab experiment NAME``: the paper's experiments, one command each.

The experiments, their settings and presets live in :mod:`nrflab.experiments`; these commands turn flags
into :class:`nrflab.experiments.overrides.Overrides` and run the engine.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from nrflab.cli.app import app
from nrflab.core.errors import NrflabError
from nrflab.report.document import Section, strip_markdown, write_report

if TYPE_CHECKING:
    from nrflab.experiments.overrides import Overrides


class _Experiments(Mapping[str, str]):
    """Experiment name -> one-line summary, read from the registry when first used."""

    def _load(self) -> dict[str, str]:
        from nrflab.experiments.registry import experiments

        return {name: spec.summary for name, spec in experiments().items()}

    def __getitem__(self, key: str) -> str:
        return self._load()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


EXPERIMENTS: Mapping[str, str] = _Experiments()

# Options shared by `experiment`, `demo` and `reproduce`.
SCALE_HELP = "Settings preset: cpu (the embedded data, minutes on a laptop) or paper (the official CIFAR-10 settings)."
SET_HELP = (
    "Change one setting: dotted KEY=VALUE into the experiment's settings, e.g. twins.epochs=40 or "
    "'twins.eval_attacks=[\"pgd-l2:eps=0.5,step=0.1,steps=10\"]'; repeatable. See recipes/ for every key."
)
RECIPE_HELP = (
    "A recipe file (YAML: experiment, scale, settings); repeatable. recipes/<experiment>/<scale>.yaml hold the presets."
)
BACKEND_HELP = "Where runs go: local (this machine, --workers processes) or ray (a Ray cluster, see --ray-address)."


def print_sections(sections: list[Section]) -> None:
    typer.echo("")
    for s in sections:
        typer.echo(f"== {s.title} ==")
        typer.echo(strip_markdown(s.markdown))
        typer.echo("")


def _progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


def overrides_from_flags(
    *,
    scale: str,
    recipe: Optional[list[Path]],
    dataset: Optional[str],
    data_root: Optional[str],
    arch: Optional[str],
    width: Optional[float],
    device: Optional[str],
    epochs: Optional[int],
    seed: Optional[list[int]],
    assignments: Optional[list[str]],
) -> Overrides:
    """The command-line flags as Overrides (recipes read, flags checked)."""
    from nrflab.experiments.overrides import Overrides, read_recipe
    from nrflab.experiments.spec import ALL_SCALES

    if scale not in ALL_SCALES:
        raise NrflabError(f"unknown scale {scale!r}; choose one of cpu, paper (or quick)")
    if arch is not None:
        from nrflab.models import check_arch

        check_arch(arch)
    if epochs is not None and epochs < 1:
        raise NrflabError(f"--epochs must be >= 1, got {epochs}")
    return Overrides(
        scale=scale,
        recipes=tuple(read_recipe(p) for p in recipe or ()),
        dataset=dataset,
        data_root=data_root,
        arch=arch,
        width=width,
        device=device,
        epochs=epochs,
        seeds=tuple(seed or ()),
        assignments=tuple(assignments or ()),
    )


@app.command()
def experiment(
    name: str = typer.Argument(
        ..., help="An experiment (see `nrflab list`), or norms (adversarial, family and corruptions)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (runs, plots, report)."),
    scale: str = typer.Option("cpu", "--scale", help=SCALE_HELP),
    quick: bool = typer.Option(False, "--quick", help="A seconds-long run of the pipeline (the quick preset)."),
    recipe: Optional[list[Path]] = typer.Option(None, "--recipe", help=RECIPE_HELP),
    dataset: Optional[str] = typer.Option(
        None, "--dataset", "-d", help="Dataset name (e.g. cifar10, imagefolder:root=DIR) or built dataset directory."
    ),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Where file-based datasets live."),
    arch: Optional[str] = typer.Option(None, "--arch", help="Architecture of every model."),
    width: Optional[float] = typer.Option(None, "--width", help="Channel-width multiplier."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs of every training stage."),
    seed: Optional[list[int]] = typer.Option(None, "--seed", help="Seed(s); repeat for several."),
    assignments: Optional[list[str]] = typer.Option(None, "--set", help=SET_HELP),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="Independent runs in parallel local processes."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Run one of the paper's experiments, on any dataset, architecture and device, and write its report."""
    from nrflab.experiments.overrides import settings_for
    from nrflab.experiments.registry import ALIASES, select
    from nrflab.experiments.reproduce import intro, run_chain
    from nrflab.runs.jobs import Execution

    started = time.perf_counter()
    specs = select(name) if name in ALIASES else select([name])
    ov = overrides_from_flags(
        scale="quick" if quick else scale,
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
    selected = [(spec, settings_for(spec, ov, strict=True, chain=[s.name for s in specs])) for spec in specs]
    result = run_chain(selected, out, Execution(workers=workers, progress=_progress(quiet)))
    md, html = write_report(out, f"nrflab experiment: {name}", result.sections, intro(ov.scale, selected))
    print_sections(result.sections)
    typer.echo(f"report: {md} and {html} ({time.perf_counter() - started:.0f} s)")
    result.raise_for_failures()


@app.command()
def demo(
    out: Path = typer.Option(Path("nrflab-demo"), "--out", "-o", help="Output directory (runs, plots, report)."),
    dataset: Optional[str] = typer.Option(
        None, "--dataset", "-d", help="Dataset for the twins (default: the embedded MNIST subset)."
    ),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Where file-based datasets live."),
    arch: Optional[str] = typer.Option(None, "--arch", help="Architecture of both twins."),
    width: Optional[float] = typer.Option(None, "--width", help="Channel width multiplier."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs of the twins (default 8)."),
    eval_size: Optional[int] = typer.Option(
        None, "--eval-size", min=1, help="Fixed test subset evaluated every epoch."
    ),
    seed: Optional[list[int]] = typer.Option(None, "--seed", help="Seed(s); repeat for several (default 0)."),
    device: Optional[str] = typer.Option(None, "--device"),
    full: bool = typer.Option(False, "--full", help="Every experiment of the paper (as `nrflab reproduce`)."),
    quick: bool = typer.Option(
        False, "--quick", help="A reduced run (1 epoch, small evaluation) to check the pipeline."
    ),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="Independent runs in parallel local processes."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """The main job: train a BN model and its no-normalization twin, record every epoch, report the paper's claims."""
    from nrflab.experiments.reproduce import reproduce
    from nrflab.runs.jobs import Execution

    started = time.perf_counter()
    ov = overrides_from_flags(
        scale="quick" if quick else "cpu",
        recipe=None,
        dataset=dataset,
        data_root=data_root,
        arch=arch,
        width=width,
        device=device,
        epochs=epochs,
        seed=seed,
        assignments=[f"core.twins.eval_size={eval_size}"] if eval_size else None,
    )
    execution = Execution(workers=workers, progress=_progress(quiet))
    result = reproduce(out=out, overrides=ov, only=None if full else ["core"], execution=execution)
    print_sections(result.sections)
    typer.echo(f"report: {out / 'report.md'} and {out / 'report.html'} ({time.perf_counter() - started:.0f} s)")
    result.raise_for_failures()
