"""The ``nrflab`` command line: one command per task, each with ``--help``.

Bad input of any kind prints one ``error: ...`` line and exits with status 2, never a traceback.
"""

from __future__ import annotations

import sys

# Each module registers its commands on ``app``.
import nrflab.cli.fourier  # noqa: F401
from nrflab.cli import bn_analysis, evaluate, experiments, features, info, reproduce, sweep, train, transfer  # noqa: F401
from nrflab.cli.app import app
from nrflab.core.errors import NrflabError


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``nrflab`` script; returns the exit status."""
    from nrflab.core.logs import console_logging

    console_logging()
    try:
        result = app(args=argv, prog_name="nrflab", standalone_mode=False)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except KeyboardInterrupt:
        print("interrupted: completed epochs/shards are saved; rerun with --resume", file=sys.stderr)
        return 130
    except NrflabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, permission denied, ...: still one line
        print(f"error: {exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}", file=sys.stderr)
        return 2
    except Exception as exc:
        # Click/Typer usage errors, Exit and Abort (Typer vendors Click, so they are matched by shape).
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            message = exc.format_message()
            if message:  # empty when no arguments were given: the help was shown
                print(f"error: {message} (see --help)", file=sys.stderr)
            return int(exc.exit_code)
        if hasattr(exc, "exit_code"):
            return int(exc.exit_code)
        if type(exc).__name__ == "Abort":
            print("aborted", file=sys.stderr)
            return 130
        raise
    return result if isinstance(result, int) else 0


def run() -> None:  # pragma: no cover - console script shim
    sys.exit(main())


__all__ = [
    "main",
]
