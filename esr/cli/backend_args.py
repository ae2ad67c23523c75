"""The ``--backend``, ``--precision`` and ``--min-fidelity-db`` options shared by upscale, eval and bench.

``auto`` in either picks by measurement (:mod:`esr.backends.auto_backend`); choices come from
the backend registry, so a new runtime appears here by its registration alone.
"""
from __future__ import annotations

import argparse

AUTO_HELP = ("auto: measure the installed backends x precisions once (cached under the esr cache dir) and run the "
             "fastest whose output stays within --min-fidelity-db of fp32 (see docs/precision.md)")


def add_backend_arguments(parser: argparse.ArgumentParser, backend_default: str | None, precision_default: str | None,
                          table: bool = False) -> None:
    """Add the three options; ``table``: also ``all`` (bench: every candidate, the table auto chooses from)."""
    from esr.backends import backend_names, backends_help
    from esr.descriptor import PRECISIONS

    extra = ["all"] if table else []
    default_text = backend_default or "the first that runs --model as is: torch, onnxruntime for .onnx, tensorrt for engines"
    parser.add_argument("--backend", choices=[*backend_names(), *extra], default=backend_default,
                        help=f"inference backend (default: {default_text}). {backends_help()}. {AUTO_HELP}")
    parser.add_argument("--precision", choices=[*PRECISIONS, "auto", *extra], default=precision_default,
                        help=f"what to compute in (default: {precision_default or 'the backend own: fp32, or a graph own'}); "
                             "a combination this machine or library cannot run is refused with the reason (exit 2)")
    parser.add_argument("--min-fidelity-db", type=float, default=None, metavar="DB",
                        help="auto's floor: output PSNR vs fp32 on the package's sample image (default 52.5, so that "
                             "the Set5 Y-PSNR drops at most 0.02 dB; 40 against an INT8 graph's own reference)")
