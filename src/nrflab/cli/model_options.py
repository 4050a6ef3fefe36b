"""Options shared by every command that takes a model reference (see :mod:`nrflab.models.references`).

``MODEL_HELP`` documents the forms; the ``*_OPTION`` objects are the flags for bare state dicts and
normalized-input models; :func:`load_model_option` turns them into a checked ``LoadedModel``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import typer

from nrflab.core.errors import NrflabError
from nrflab.models.inspection import LoadedModel, describe_model
from nrflab.models.references import load_model_reference

MODEL_HELP = (
    "A model: an nrflab run directory or checkpoint; a state dict (.safetensors, .pt/.pth read with "
    "weights_only) with --arch/--norm/--num-classes/--width when they cannot be read off the weights; a "
    "TorchScript file; pretrained:NAME (see `nrflab list --pretrained`); or a Python factory "
    "package.module:function or path/to/file.py:function -- a factory RUNS YOUR OWN CODE."
)

ARCH_OPTION = typer.Option(
    None,
    "--arch",
    help="Architecture of a bare state dict (read off the weights if omitted), or your own class or factory "
    "that builds the module the weights load into: package.module:Net or file.py:make?key=value,...",
)
NORM_OPTION = typer.Option(None, "--norm", help="Normalization of a bare state dict (bn, none, gn, ln, in, ...).")
NUM_CLASSES_OPTION = typer.Option(None, "--num-classes", min=2, help="Classes of a bare state dict.")
WIDTH_OPTION = typer.Option(None, "--width", help="Width multiplier of a bare state dict.")
MEAN_OPTION = typer.Option(
    None,
    "--mean",
    help="Per-channel mean the model expects, comma-separated (e.g. 0.4914,0.4822,0.4465); nrflab then normalizes inside the model. Omit for models that take [0,1] inputs.",
)
STD_OPTION = typer.Option(None, "--std", help="Per-channel std the model expects, comma-separated (with --mean).")
WEIGHTS_DIR_OPTION = typer.Option(
    None,
    "--weights-dir",
    help="Where pretrained weights are looked for and downloaded (default $NRFLAB_WEIGHTS, then ~/.nrflab/weights).",
)
ALLOW_UNVERIFIED_OPTION = typer.Option(
    False, "--allow-unverified", help="Allow downloading pretrained weights whose sha256 the registry does not pin."
)


def parse_channel_values(text: Optional[str], what: str) -> tuple[float, ...] | None:
    """``"0.49,0.48,0.45"`` (fractions like ``1/2`` allowed) as floats; None for None."""
    if text is None:
        return None
    parts = [p.strip() for p in str(text).replace(" ", ",").split(",") if p.strip()]
    if not parts:
        raise NrflabError(f"{what} needs comma-separated numbers, got {text!r}")
    values = []
    for p in parts:
        if not re.fullmatch(r"[0-9eE.+\-]+(/[0-9eE.+\-]+)?", p):
            raise NrflabError(f"{what}: {p!r} is not a number")
        try:
            num, _, den = p.partition("/")
            values.append(float(num) / float(den) if den else float(num))
        except (ValueError, ZeroDivisionError):
            raise NrflabError(f"{what}: {p!r} is not a number") from None
    return tuple(values)


def load_model_option(
    reference: Optional[str],
    *,
    arch: Optional[str] = None,
    norm: Optional[str] = None,
    num_classes: Optional[int] = None,
    width: Optional[float] = None,
    mean: Optional[str] = None,
    std: Optional[str] = None,
    device: str = "cpu",
    weights_dir: Optional[Path] = None,
    allow_unverified: bool = False,
    flag: str = "--model",
) -> LoadedModel:
    """Load the model a command was given (one-line errors for every bad input)."""
    if reference is None or not str(reference).strip():
        raise NrflabError(
            f"give a model with {flag} (a run directory, weights file, pretrained:NAME or module:function)"
        )
    return load_model_reference(
        reference,
        arch=arch,
        norm=norm,
        num_classes=num_classes,
        width=width,
        mean=parse_channel_values(mean, "--mean"),
        std=parse_channel_values(std, "--std"),
        device=device,
        weights_dir=weights_dir,
        allow_unverified=allow_unverified,
    )


def default_dataset_of(loaded: LoadedModel) -> str | None:
    """The dataset a model was trained on, when nrflab knows it: an nrflab run's, a pretrained entry's."""
    if loaded.kind == "nrflab":
        from nrflab.training import read_run_config

        try:
            return str(read_run_config(Path(loaded.source).parent)["dataset"])
        except (NrflabError, KeyError, TypeError):
            return None
    if loaded.kind == "pretrained":
        from nrflab.models.pretrained import available_pretrained

        for entry in available_pretrained():
            shipped = entry.package_file and loaded.source.endswith(entry.package_file[1])
            if entry.name == loaded.name or loaded.source.endswith(entry.filename) or shipped:
                return entry.dataset
    return None


def model_slug(loaded: LoadedModel) -> str:
    """A file-name-safe short name of a model."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", loaded.name).strip("-.")[:60] or "model"


def echo_model(loaded: LoadedModel) -> None:
    """Print what was loaded: kind, source, normalization, fingerprint, notes."""
    for line in describe_model(loaded):
        typer.echo(line)


__all__: list[str] = []  # nothing to import from here: the room's public names come from its package
