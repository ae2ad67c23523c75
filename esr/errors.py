"""The one exception type the CLI turns into a one-line ``error: ...`` message."""
from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # some inputs failed, the rest were processed
EXIT_USAGE = 2  # bad arguments or a bad model file: nothing was done


class EsrError(Exception):
    """A user-facing failure: ``str(err)`` is one line naming the file and the reason."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code
