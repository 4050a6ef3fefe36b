"""What the commands print, shared by them (not a command): report sections as plain text, and whether to
draw progress bars."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

from nrflab.report.document import Section, strip_markdown


def print_sections(sections: Sequence[Section]) -> None:
    """Each report section as plain text."""
    typer.echo("")
    for s in sections:
        typer.echo(f"== {s.title} ==\n{strip_markdown(s.markdown)}\n")


def progress_bars(quiet: bool) -> bool:
    """Progress bars unless ``--quiet``, and only on a terminal."""
    return not quiet and sys.stderr.isatty()


__all__: list[str] = []  # room-internal: siblings import from here; the room's public names are in its package
