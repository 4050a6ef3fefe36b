"""Messages through :mod:`logging`: the library logs to the ``nrflab`` logger and prints nothing itself.

Library users see nrflab's progress messages once they configure logging (``logging.basicConfig(level=
logging.INFO)``); the ``nrflab`` command installs :func:`console_logging`, which prints INFO messages to
standard output and warnings to standard error, without logger names or timestamps.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

LOGGER = "nrflab"


class _ConsoleHandler(logging.Handler):
    """Writes to the *current* sys.stdout / sys.stderr at each record (so redirection and capture work)."""

    def __init__(self, prefix: str = ""):
        super().__init__(logging.INFO)
        self.prefix = prefix

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.levelno >= logging.WARNING:
                stream = sys.stderr
                text = f"warning: {text}" if record.levelno == logging.WARNING else f"error: {text}"
            else:
                stream = sys.stdout
            stream.write(f"{self.prefix}{text}\n")
            stream.flush()
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def console_logging(*, prefix: str = "", quiet: bool = False) -> None:
    """Route the ``nrflab`` logger to the console (idempotent); ``quiet`` keeps only warnings."""
    logger = logging.getLogger(LOGGER)
    for h in list(logger.handlers):
        if isinstance(h, _ConsoleHandler):
            logger.removeHandler(h)
    logger.addHandler(_ConsoleHandler(prefix))
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


@contextlib.contextmanager
def scoped(*, prefix: str = "", quiet: bool = False) -> Iterator[None]:
    """Within the block, console messages carry ``prefix`` (and only warnings pass when ``quiet``).

    Installs the console handler first where none is (a worker process), so a worker's messages reach its
    output like the main process's; the previous prefix and level come back afterwards.
    """
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(h, _ConsoleHandler) for h in logger.handlers):
        console_logging()
    handlers = [h for h in logger.handlers if isinstance(h, _ConsoleHandler)]
    old_prefixes = [h.prefix for h in handlers]
    old_level = logger.level
    for h in handlers:
        h.prefix = prefix
    if quiet:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for h, p in zip(handlers, old_prefixes):
            h.prefix = p
        logger.setLevel(old_level)


def get_logger(name: str) -> logging.Logger:
    """The logger of an nrflab module (``nrflab.<name>``)."""
    return logging.getLogger(f"{LOGGER}.{name}" if not name.startswith(LOGGER) else name)


__all__ = ["console_logging", "get_logger", "scoped"]
