"""What every ``esr`` command shares: the help formatter, argument types, and the options that mean the same
everywhere (``-n/--model``, ``--threads``, ``--device``, ``--json``).

- ``--threads N``: CPU threads for torch, onnxruntime and OpenVINO alike (0: each library's default), passed to
  the backends and :func:`esr.backends.sessions.ort_session`; torch's through :func:`esr.backends.sessions.use_threads`.
- ``--device``: default :func:`esr.backends.default_device` (cuda if available, else cpu), the one rule.
- ``--json``: one JSON object on stdout (``bench`` and ``models``: one per line), nothing else there; progress,
  warnings and errors go to stderr.
"""
from __future__ import annotations

import argparse
import math

THREADS_HELP = "CPU threads for torch, onnxruntime and OpenVINO; 0 = each library's own default"
DEVICE_HELP = "where the model runs (default: cuda if available, else cpu); gpu = an Intel GPU through OpenVINO"


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Epilogs and descriptions as written; every option's default shown as ``(default: X)``.

    Nothing is appended when the help already states its default (``(default`` or ``default:`` in it),
    or when there is no value to show (a flag, or None: the help says what happens then).
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        stated = "(default" in text or "default:" in text
        positional = not action.option_strings and action.nargs not in (argparse.OPTIONAL, argparse.ZERO_OR_MORE)
        nothing = action.default is None or action.default is False or action.default == [] \
            or action.default == argparse.SUPPRESS
        if stated or positional or nothing:
            return text
        return f"{text} (default: %(default)s)"


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer >= 0")
    return value


def finite_positive(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a finite number > 0")
    return value


def add_model_argument(parser: argparse.ArgumentParser, help: str, required: bool = False) -> None:
    """``-n/--model`` (Real-ESRGAN's short name); None when not given (the command's default model)."""
    parser.add_argument("-n", "--model", required=required, default=None, help=help)


def add_threads_argument(parser: argparse.ArgumentParser, help: str = THREADS_HELP) -> None:
    parser.add_argument("--threads", type=non_negative_int, default=0, metavar="N", help=help)


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device`` (choices: every device a registered backend runs on); None: :func:`esr.backends.default_device`."""
    from esr.backends import backend_devices

    parser.add_argument("--device", choices=backend_devices(), default=None, help=DEVICE_HELP)


def add_json_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true",
                        help=f"instead of the text report print {what}, and nothing else, on stdout (progress, "
                             "warnings and errors go to stderr)")


def print_json(record: object) -> None:
    """One JSON document on one stdout line."""
    import json

    print(json.dumps(record), flush=True)
