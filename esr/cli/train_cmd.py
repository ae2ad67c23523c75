"""``esr train``: BasicSR training of esr models from one (multi-stage) YAML options file."""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from pathlib import Path

from esr.cli.common import add_json_argument, add_threads_argument, print_json

HELP = "train a model with BasicSR from a YAML options file (stages, warm start, automatic resume)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-opt", "--opt", required=True, help="options YAML, e.g. options/demo_rlfn_s_x4.yml")
    parser.add_argument("--auto_resume", action="store_true",
                        help="accepted for BasicSR compatibility: esr train always resumes a killed run "
                             "(finished stages are skipped, the current one continues from its newest state)")
    parser.add_argument("--debug", action="store_true",
                        help="BasicSR debug mode: name prefixed debug_, validate and save every 8 iterations")
    add_threads_argument(parser)
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm"], default="none",
                        help="none: one process; pytorch: one of torchrun's processes "
                             "(torchrun --nproc_per_node N -m esr train ... --launcher pytorch); "
                             "slurm: one srun task per GPU. DDP with NCCL on CUDA, gloo on CPU (docs/scale-out.md)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="option overrides, e.g. train.total_iter=100 or stages.1.train.optim_g.lr=2e-4")
    add_json_argument(parser, "one JSON object at the end: the final weights and the validation curve "
                              "(curve.json's records)")


def run(args: argparse.Namespace) -> int:
    from esr.backends.sessions import use_threads
    from esr.train.distributed import init_distributed, shutdown_distributed
    from esr.train.options import apply_override, load_document
    from esr.train.runner import train_document

    use_threads(args.threads)
    doc = load_document(args.opt)
    for assignment in args.overrides:
        apply_override(doc, assignment)
    if args.debug and not doc["name"].startswith("debug"):
        doc["name"] = f"debug_{doc['name']}"
    info = init_distributed(args.launcher, (doc.get("dist_params") or {}).get("port"))
    # BasicSR keeps ranks other than 0 quiet; so does esr (warnings and errors still show)
    logging.basicConfig(level=logging.INFO if info.is_main else logging.WARNING,
                        format=f"%(asctime)s esr.train{f' rank {info.rank}' if info.backend else ''} "
                               "%(levelname)s: %(message)s")
    try:  # --json: BasicSR's own prints (it has a few) go to stderr, stdout keeps only the JSON object
        with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
            final = train_document(doc, Path.cwd(), source=args.opt, launcher=args.launcher)
    finally:
        shutdown_distributed()
    if info.is_main and args.json:
        curve = final.parent / "curve.json"
        print_json({"final_weights": str(final), "curve_path": str(curve), "curve": json.loads(curve.read_text())})
    elif info.is_main:
        print(f"final weights: {final}")
    return 0
