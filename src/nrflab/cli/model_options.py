"""How a model is named on the command line (see :mod:`nrflab.models.references`): ``MODEL_HELP`` documents
the forms, the ``*_OPTION`` objects describe a bare state dict or a model expecting normalized inputs, and
:func:`parse_channel_values` reads ``--mean``/``--std``.

Bring your own model, the same spelling in every command that measures or uses one model (evaluate,
bn-analysis, build-dataset): ``--arch mypkg.models:Net --weights w.pt`` -- ``--weights`` names the model
(the same option as the command's own model option, ``--model``, ``--source`` or the MODEL argument), and
``--factory-arg KEY=VALUE`` gives your class or factory its keyword arguments (the flag form of
``?key=value``). Commands over several models (transfer) take each model's weights by its role instead."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Optional

import typer

from nrflab.attacks import parse_number
from nrflab.core.errors import NrflabError

if TYPE_CHECKING:
    from nrflab.models.references import ModelOptions

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
WEIGHTS_HELP = (
    "The model's weights (any form a model reference takes); with --arch package.module:Net the "
    "state dict your class loads, e.g. --arch mypkg.models:Net --weights w.pt."
)
FACTORY_ARG_HELP = (
    "A keyword argument of your class or factory, KEY=VALUE (repeatable; the value read as a YAML scalar): "
    "the flag form of ?key=value after --arch package.module:Net (or file.py:make), else after a factory "
    "model. A key given both ways, or twice, is an error (neither wins)."
)
FACTORY_ARG_OPTION = typer.Option(None, "--factory-arg", metavar="KEY=VALUE", help=FACTORY_ARG_HELP)
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
    return tuple(parse_number(p, what=f"in {what}") for p in parts)


def one_model(values: Sequence[str] | str | None, flags: str) -> str | None:
    """The one model a command measures, given once by any of its spellings (``flags``, for the error):
    two are refused, never one of them silently dropped."""
    items = [values] if isinstance(values, str) else [v for v in values or [] if v is not None]
    if len(items) > 1:
        raise NrflabError(f"give one model ({flags}), got {len(items)}: {', '.join(map(str, items))}")
    return items[0] if items else None


def with_factory_args(given: Mapping[str, Any], pairs: Optional[Sequence[str]]) -> dict[str, object]:
    """The given settings with the ``--factory-arg`` pairs added to ``arch`` (your class) or to ``model`` (a
    factory model): :func:`nrflab.models.references.with_factory_arguments` decides which; one-line errors."""
    if not pairs:
        return dict(given)
    from nrflab.models.references import with_factory_arguments

    arch, model = with_factory_arguments(list(pairs), arch=given.get("arch"), model=given.get("model"))
    return {**given, **({"arch": arch} if arch is not None else {}), **({"model": model} if model is not None else {})}


def outside_options(
    *,
    arch: Optional[str],
    norm: Optional[str],
    num_classes: Optional[int],
    width: Optional[float],
    mean: Optional[str],
    std: Optional[str],
) -> ModelOptions:
    """The options of a model from outside nrflab, ``--mean``/``--std`` read as numbers."""
    return {
        "arch": arch,
        "norm": norm,
        "num_classes": num_classes,
        "width": width,
        "mean": parse_channel_values(mean, "--mean"),
        "std": parse_channel_values(std, "--std"),
    }


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
