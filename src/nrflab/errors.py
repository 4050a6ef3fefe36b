"""The one exception type users see: a clear, one-line message about bad input or a bad file."""


class NrflabError(Exception):
    """A user-facing error (bad name, bad value, missing or corrupt file).

    The CLI prints ``error: <message>`` and exits with status 2; no traceback.
    """
