"""The Typer application every command module registers on, and the options many commands share.

The shared options are spelled once here (``--out/-o``, ``--overwrite``, ``--resume``, ``--quiet/-q``,
``--workers/-j``); where a command's help says something only true of that command (what ``--out`` holds,
what ``--overwrite`` keeps aside), the command passes its own help text.
"""

from __future__ import annotations

from typing import Any

import typer

app = typer.Typer(
    name="nrflab",
    help="nrflab: batch normalization, non-robust features, adversarial vulnerability and transfer, measured.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def out_option(default: Any, help: str) -> Any:
    """``--out/-o``: where the command writes (``...`` for a required one); ``help`` says what it holds."""
    return typer.Option(default, "--out", "-o", help=help)


def overwrite_option(help: str) -> Any:
    """``--overwrite``: ``help`` says what this command replaces and what it keeps aside meanwhile."""
    return typer.Option(False, "--overwrite", help=help)


def resume_option(help: str) -> Any:
    """``--resume``: ``help`` says what this command continues from."""
    return typer.Option(False, "--resume", help=help)


def quiet_option(help: str = "No progress bars.") -> Any:
    """``--quiet/-q``: ``help`` says what output this command leaves out."""
    return typer.Option(False, "--quiet", "-q", help=help)


QUIET = quiet_option()
WORKERS = typer.Option(1, "--workers", "-j", min=1, help="Independent runs in parallel local processes.")

__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
