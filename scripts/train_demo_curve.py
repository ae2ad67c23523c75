"""Print a training run's validation curve (iterations vs Set5 Y-PSNR) and save it as JSON.

Usage (repo root): python scripts/train_demo_curve.py [experiments/demo_rlfn_s_x4] [--out FILE.json]
Rebuilds the run's curve.json from its stages' val_curve.jsonl (also while it trains), prints a Markdown table with
the wall time since launch (the first stage's merged options file is written at launch), and writes
results/train_curve_<name>.json (or --out) with the machine, load and versions.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from esr.bench import machine_info
from esr.fileio import write_bytes_atomically
from esr.train.options import load_document, stage_options
from esr.train.runner import collect_curve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", default="experiments/demo_rlfn_s_x4", help="the run's experiments folder")
    parser.add_argument("--out", default=None, help="JSON path (default results/train_curve_<name>.json)")
    args = parser.parse_args(argv)
    run = Path(args.run)
    stage_files = sorted((run / "stages").glob("*.yml"))
    if not stage_files:
        print(f"error: {run}: no stages/*.yml (not an esr train run folder)", file=sys.stderr)
        return 2
    doc = {"name": run.name, "stages": []}
    for path in stage_files:  # rebuild the plan from the merged per-stage options
        opt = load_document(path)
        doc["stages"].append({**opt, "name": path.stem.split("_", 1)[1]})
    curve = collect_curve(run, stage_options(doc), run.resolve().parent.parent)
    launched = stage_files[0].stat().st_mtime
    for record in curve:
        record["minutes"] = (record["time"] - launched) / 60
    print("| stage | iteration (total) | Set5 Y-PSNR (dB) | Y-SSIM | minutes since launch |")
    print("|---|---|---|---|---|")
    for record in curve:
        print(f"| {record['stage']} | {record['total_iter']} | {record['psnr_y']:.2f} | {record['ssim_y']:.4f} "
              f"| {record['minutes']:.1f} |")
    result = {"run": run.name, "launched": launched, "curve": curve, "machine": machine_info(),
              "load_avg_now": os.getloadavg()}
    out = Path(args.out or Path("results") / f"train_curve_{run.name}.json")
    write_bytes_atomically(out, json.dumps(result, indent=1).encode())
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
