"""Reproduce the official-checkpoint table of ../shared/design/reference.md with `esr eval`'s code.

    python scripts/eval_official.py [--out results/eval_official.json]

Prints one row per (checkpoint, dataset) with the reference figures beside ours and
saves everything as JSON. Exit code 1 if any row is off by more than 0.01 dB / 0.001 SSIM.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys

import torch

from esr.evaluate import evaluate
from esr.fileio import write_bytes_atomically
from esr.loading import load_model
from esr.paths import shared_dir

# (model, dataset) -> (PSNR, SSIM) from ../shared/design/reference.md
REFERENCE = {
    ("rlfn_x4", "Set5"): (32.24, 0.8953), ("rlfn_x4", "Set14"): (28.62, 0.7814),
    ("rlfn_x2", "Set5"): (38.07, 0.9607), ("rlfn_x2", "Set14"): (33.72, 0.9193),
    ("rlfn_s_x4", "Set5"): (32.24, 0.8954), ("rlfn_s_x4", "Set14"): (28.62, 0.7817),
    ("rlfn_s_x2", "Set5"): (38.05, 0.9607), ("rlfn_s_x2", "Set14"): (33.62, 0.9174),
    ("rlfn_ntire_x4", "Set5"): (32.10, 0.8939), ("rlfn_ntire_x4", "Set14"): (28.60, 0.7815),
}
PSNR_TOL, SSIM_TOL = 0.01, 0.001


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/eval_official.json")
    args = parser.parse_args()
    shared = shared_dir()
    os.environ.setdefault("ESR_WEIGHTS_DIR", str(shared / "weights" / "rlfn"))
    rows, ok = [], True
    for (name, dataset), (ref_psnr, ref_ssim) in REFERENCE.items():
        model = load_model(name)
        result = evaluate(model, shared / "datasets" / dataset, progress=False)
        row_ok = abs(result["psnr_y"] - ref_psnr) <= PSNR_TOL and abs(result["ssim_y"] - ref_ssim) <= SSIM_TOL
        ok &= row_ok
        rows.append(dict(model=name, dataset=dataset, psnr_y=result["psnr_y"], ssim_y=result["ssim_y"],
                         ref_psnr_y=ref_psnr, ref_ssim_y=ref_ssim, within_tolerance=row_ok))
        print(f"{name:<15}{dataset:<7}{result['psnr_y']:8.3f} ({ref_psnr:.2f}){result['ssim_y']:8.4f} ({ref_ssim:.4f})"
              f"  {'ok' if row_ok else 'OFF'}")
    out = write_bytes_atomically(args.out, json.dumps(dict(
        machine=platform.processor() or platform.machine(), python=platform.python_version(),
        torch=torch.__version__, tolerance=dict(psnr=PSNR_TOL, ssim=SSIM_TOL), rows=rows), indent=2).encode())
    print(f"saved {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
