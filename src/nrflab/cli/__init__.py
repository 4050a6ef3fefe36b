"""Lives here: the ``nrflab`` command line -- one module per command: parse the flags, make one library call, print.
Never here: anything a Python user would also want (it lives in the library room the command calls), hand copies of settings fields.
To add one: a module with ``@app.command()`` (or ``@schema_command(app, NAME, Schema)`` when a settings schema describes it), imported below.

Options of commands configured by a settings schema are generated from its fields (:mod:`nrflab.cli.schema_flags`);
:mod:`nrflab.cli.flags` holds only the spellings users type that the fields do not say. Bad input of any kind
prints one ``error: ...`` line and exits with status 2, never a traceback.
"""

from __future__ import annotations

import sys

# Each module registers its commands on ``app``.
from nrflab.cli import (  # noqa: F401
    bn_analysis,
    build,
    compare,
    demo,
    evaluate,
    experiments,
    fourier,
    info,
    plot,
    reproduce,
    sweep,
    train,
    transfer,
    verdicts,
)
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


__all__ = ["main"]
