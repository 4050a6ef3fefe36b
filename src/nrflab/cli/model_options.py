"""How a model is named on the command line (see :mod:`nrflab.models.references`): ``MODEL_HELP`` documents
the forms, the ``*_OPTION`` objects describe a bare state dict or a model expecting normalized inputs, and
:func:`parse_channel_values` reads ``--mean``/``--std``."""

from __future__ import annotations

from typing import Any, Optional

import typer

from nrflab.attacks import parse_number
from nrflab.core.errors import NrflabError

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
MEAN_HELP = (
    "Per-channel mean the model expects, comma-separated (e.g. 0.4914,0.4822,0.4465); nrflab then normalizes "
    "inside the model. Omit for models that take [0,1] inputs."
)
STD_HELP = "Per-channel std the model expects, comma-separated (with --mean)."
MEAN_OPTION = typer.Option(None, "--mean", help=MEAN_HELP)
STD_OPTION = typer.Option(None, "--std", help=STD_HELP)


def parse_channel_values(text: Optional[str], what: str) -> tuple[float, ...] | None:
    """``"0.49,0.48,0.45"`` (fractions like ``1/2`` allowed: the number syntax of attack specs) as floats; None for None."""
    if text is None:
        return None
    parts = [p.strip() for p in str(text).replace(" ", ",").split(",") if p.strip()]
    if not parts:
        raise NrflabError(f"{what} needs comma-separated numbers, got {text!r}")
    values = [parse_number(p, what=f"in {what}") for p in parts]
    return tuple(values)


def outside_options(
    *,
    arch: Optional[str],
    norm: Optional[str],
    num_classes: Optional[int],
    width: Optional[float],
    mean: Optional[str],
    std: Optional[str],
) -> dict[str, Any]:
    """The options of a model from outside nrflab, ``--mean``/``--std`` read as numbers."""
    channels = {"mean": parse_channel_values(mean, "--mean"), "std": parse_channel_values(std, "--std")}
    return {"arch": arch, "norm": norm, "num_classes": num_classes, "width": width, **channels}


__all__: list[str] = []  # nothing to import from here: the room's public names come from its package
