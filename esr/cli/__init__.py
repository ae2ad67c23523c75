"""The ``esr`` console script: one subcommand module per verb, listed in :data:`COMMANDS`.

Each command module exposes ``HELP`` (one line), ``configure(parser)`` (cheap: no
torch import) and ``run(args) -> int`` (the exit code). Every parser gets
:class:`esr.cli.common.HelpFormatter` (defaults shown, epilogs kept as written); options
that recur (``-n/--model``, ``--threads``, ``--device``, ``--json``) come from :mod:`esr.cli.common`. :class:`esr.errors.EsrError`
raised by a command becomes one ``error: ...`` line and its exit code; any other
exception becomes one line ``error: Type: message (rerun with --debug for the traceback)``
and exit code 70; ``esr --debug COMMAND`` (or ``ESR_DEBUG=1``) also prints the traceback.
SIGTERM is handled like Ctrl-C (the same clean-up), exit code 143 (Ctrl-C: 130). Output piped
into a reader that stops early (``esr models | head -1``) ends quietly with exit code 141.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import traceback
import warnings
from contextlib import contextmanager
from typing import Iterator

from esr.errors import (EXIT_BROKEN_PIPE, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_TERMINATED, EsrError, Terminated,
                        error_line)

COMMANDS: dict[str, str] = {
    "models": "esr.cli.models_cmd",
    "eval": "esr.cli.eval_cmd",
    "analyze": "esr.cli.analyze_cmd",
    "bench": "esr.cli.bench_cmd",
    "upscale": "esr.cli.upscale_cmd",
    "train": "esr.cli.train_cmd",
    "quantize": "esr.cli.quantize_cmd",
    "export": "esr.cli.export_cmd",
}
"""subcommand -> module implementing it."""


def build_parser() -> argparse.ArgumentParser:
    from esr import __version__
    from esr.cli.common import HelpFormatter

    parser = argparse.ArgumentParser(
        prog="esr", formatter_class=HelpFormatter,
        description="Efficient super-resolution: train, export, upscale and benchmark RLFN/DITN models.",
        epilog="exit codes: see docs/errors.md (0 ok, 1 some inputs failed, 2 usage/bad model/refused output, "
               "70 internal error, 130 interrupted, 141 output pipe closed, 143 terminated)")
    parser.add_argument("--version", action="version", version=f"esr {__version__}")
    parser.add_argument("--debug", dest="esr_debug", action="store_true",
                        help="print the Python traceback of any error (also: ESR_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=module.HELP, description=module.HELP, formatter_class=HelpFormatter)
        module.configure(command)
        command.set_defaults(run=module.run)
    return parser


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings reach users as one ``warning: ...`` line (no source location)."""
    print(f"warning: {message}", file=file or sys.stderr)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While active (main thread only), SIGTERM raises :class:`esr.errors.Terminated` (a KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum: int, frame: object) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def debug_requested(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "esr_debug", False)) or os.environ.get("ESR_DEBUG", "") not in ("", "0")


def say_error(message: str) -> None:
    """One ``error: ...`` line on stderr, always newline-terminated."""
    sys.stderr.write(error_line(message) + "\n")
    sys.stderr.flush()


def silence_stdout() -> None:
    """Point stdout at /dev/null after its reader closed the pipe, so the exit flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout without a file descriptor (a test's capture)
        pass


def main(argv: list[str] | None = None) -> int:
    """Run ``esr`` with ``argv`` (None: the command line, where warnings print as one line each)."""
    args = build_parser().parse_args(argv)
    debug = debug_requested(args)
    if argv is None:
        warnings.showwarning = show_warning
    try:
        with sigterm_as_interrupt():
            code = int(args.run(args))
        sys.stdout.flush()  # a reader that went away (esr models | head) shows here, not at exit
        return code
    except BrokenPipeError:
        silence_stdout()
        return EXIT_BROKEN_PIPE
    except EsrError as err:
        if debug:
            traceback.print_exc()
        say_error(str(err))
        return err.exit_code
    except Terminated:
        say_error("terminated")
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        say_error("interrupted")
        return EXIT_INTERRUPTED
    except Exception as err:  # the last line of defence: one line, the traceback only on request
        if debug:
            traceback.print_exc()
        detail = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        say_error(f"{detail} (rerun with --debug for the traceback)")
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
