"""The one exception type the CLI turns into a one-line ``error: ...`` message, and the exit codes.

Exit codes (every command; ``docs/errors.md`` has the table per command):
0 done; 1 some inputs failed (the rest were processed) or a check failed; 2 bad arguments,
a bad model or a refused output file: nothing was done; 3/4 ``esr export --trt`` without
TensorRT / TensorRT could not build; 70 an unexpected internal error (a bug: rerun with
``--debug`` for the traceback); 130 interrupted (Ctrl-C); 141 the reader of the output went away
(``esr models | head -1``, no message); 143 terminated (SIGTERM).
"""
from __future__ import annotations

import re

EXIT_OK = 0
EXIT_FAILED = 1  # some inputs failed, the rest were processed
EXIT_USAGE = 2  # bad arguments or a bad model file: nothing was done
EXIT_INTERNAL = 70  # an unexpected exception (EX_SOFTWARE): a bug, not a user error
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
EXIT_BROKEN_PIPE = 141  # stdout's reader closed the pipe (128 + SIGPIPE), as for other command-line tools
EXIT_TERMINATED = 143  # SIGTERM (128 + SIGTERM)


class EsrError(Exception):
    """A user-facing failure: ``str(err)`` is one line naming the file and the reason."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM, so that it gets the same clean-up as Ctrl-C."""


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def one_line(text: str) -> str:
    """``text`` with its lines joined by spaces (a message must never span or glue lines), without terminal
    escape sequences or control characters (messages quote third-party errors and file names)."""
    text = CONTROL.sub("?", ANSI_ESCAPE.sub("", str(text)).replace("\t", " "))
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def first_line(err: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's message (libraries append graphs, tracebacks,
    hints; a heading ending in ``:`` gets its next line), at most ``limit`` characters, or the
    type name when there is no message: the reason part of a one-line error."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    text = " ".join(lines[:2]) if lines[0].endswith(":") and len(lines) > 1 else lines[0]
    return text if len(text) <= limit else text[:limit - 3] + "..."


def error_line(message: str) -> str:
    """``error: MESSAGE`` on one line, without the trailing newline."""
    return f"error: {one_line(message)}"
