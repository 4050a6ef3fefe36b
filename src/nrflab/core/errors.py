"""The one exception type users see: a clear, one-line message about bad input or a bad file."""


class NrflabError(ValueError):
    """A user-facing error (bad name, bad value, missing or corrupt file, a busy output directory).

    A ``ValueError``, so code that validates values can catch it like any other. The CLI prints
    ``error: <message>`` and exits with status 2; no traceback.
    """


__all__ = ["NrflabError"]
