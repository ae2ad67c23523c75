"""Print a training run's validation curve (iterations vs Set5 Y-PSNR) and save it as JSON.

Usage (repo root): python scripts/train_demo_curve.py [experiments/demo_rlfn_s_x4]
Rebuilds the run's curve.json from its stages' val_curve.jsonl (also while it trains), prints a Markdown table with the elapsed wall time, and writes results/train_curve_<name>.json
with the machine, load and versions.
"""
from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import torch

from esr.fileio import write_bytes_atomically
from esr.train.options import load_document, stage_options
from esr.train.runner import collect_curve


def main(run_dir: str = "experiments/demo_rlfn_s_x4") -> int:
    run = Path(run_dir)
    stage_files = sorted((run / "stages").glob("*.yml"))
    if not stage_files:
        print(f"error: {run}: no stages/*.yml (not an esr train run folder)", file=sys.stderr)
        return 2
    doc = {"name": run.name, "stages": []}
    for path in stage_files:  # rebuild the plan from the merged per-stage options
        opt = load_document(path)
        doc["stages"].append({**opt, "name": path.stem.split("_", 1)[1]})
    curve = collect_curve(run, stage_options(doc), run.resolve().parent.parent)
    start = curve[0]["time"] if curve else 0.0
    print("| stage | iteration (total) | Set5 Y-PSNR (dB) | Y-SSIM | minutes since first validation |")
    print("|---|---|---|---|---|")
    for record in curve:
        print(f"| {record['stage']} | {record['total_iter']} | {record['psnr_y']:.2f} | {record['ssim_y']:.4f} "
              f"| {(record['time'] - start) / 60:.1f} |")
    result = {
        "run": run.name, "curve": curve, "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "load_avg_now": os.getloadavg(), "torch": torch.__version__,
        "python": platform.python_version(),
    }
    out = Path("results") / f"train_curve_{run.name}.json"
    out.parent.mkdir(exist_ok=True)
    write_bytes_atomically(out, json.dumps(result, indent=1).encode())
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
