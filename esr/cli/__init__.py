"""The ``esr`` console script: one subcommand module per verb, listed in :data:`COMMANDS`.

Each command module exposes ``HELP`` (one line), ``configure(parser)`` (cheap: no
torch import) and ``run(args) -> int`` (the exit code). :class:`esr.errors.EsrError`
raised by a command becomes one ``error: ...`` line and its exit code.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from esr.errors import EXIT_USAGE, EsrError

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

    parser = argparse.ArgumentParser(
        prog="esr", description="Efficient super-resolution: train, export, upscale and benchmark RLFN/DITN models."
    )
    parser.add_argument("--version", action="version", version=f"esr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(command)
        command.set_defaults(run=module.run)
    return parser


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings reach users as one ``warning: ...`` line (no source location)."""
    print(f"warning: {message}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run ``esr`` with ``argv`` (None: the command line, where warnings print as one line each)."""
    args = build_parser().parse_args(argv)
    if argv is None:
        warnings.showwarning = show_warning
    try:
        return int(args.run(args))
    except EsrError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
