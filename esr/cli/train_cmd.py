"""``esr train``: BasicSR training of esr models from one (multi-stage) YAML options file."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

HELP = "train a model with BasicSR from a YAML options file (stages, warm start, automatic resume)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-opt", "--opt", required=True, help="options YAML, e.g. options/demo_rlfn_s_x4.yml")
    parser.add_argument("--auto_resume", action="store_true",
                        help="accepted for BasicSR compatibility: esr train always resumes a killed run "
                             "(finished stages are skipped, the current one continues from its newest state)")
    parser.add_argument("--debug", action="store_true",
                        help="BasicSR debug mode: name prefixed debug_, validate and save every 8 iterations")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm"], default="none",
                        help="none: one process; pytorch: one of torchrun's processes "
                             "(torchrun --nproc_per_node N -m esr train ... --launcher pytorch); "
                             "slurm: one srun task per GPU. DDP with NCCL on CUDA, gloo on CPU (docs/scale-out.md)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="option overrides, e.g. train.total_iter=100 or stages.1.train.optim_g.lr=2e-4")


def run(args: argparse.Namespace) -> int:
    import torch

    from esr.train.distributed import init_distributed, shutdown_distributed
    from esr.train.options import apply_override, load_document
    from esr.train.runner import train_document

    if args.threads:
        torch.set_num_threads(args.threads)
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
    try:
        final = train_document(doc, Path.cwd(), source=args.opt, launcher=args.launcher)
    finally:
        shutdown_distributed()
    if info.is_main:
        print(f"final weights: {final}")
    return 0
