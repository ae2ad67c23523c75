"""Derive ``--backend auto``'s fidelity floor: output PSNR vs fp32 on the sample image against the Set5 Y-PSNR drop.

``auto`` can only check a candidate on the package's sample image; the promise is about Set5
(a drop of at most 0.02 dB). This script measures how the two relate, with real error patterns:
for RLFN x4 (official weights) it takes the error of each reduced-precision output against
onnxruntime fp32 (OpenVINO bf16 and f16, torch bf16, onnxruntime on an all-INT8 QDQ graph) and
scales it by ``k`` (``fp32 + k * (candidate - fp32)``, k from 0.25 to 8), which moves the fidelity
over 35-75 dB while keeping each error's structure. For every point it records the sample-image
fidelity (RGB PSNR vs fp32, what auto measures) and the Set5 x4 Y-PSNR change (``esr eval``'s
protocol: uint8 outputs, 4 px border). The floor printed is the lowest sample fidelity above
which every measured point drops at most ``--budget-db``, rounded up to 0.5 dB.

Usage: python scripts/fidelity_floor.py [--budget-db 0.02] [--out results/fidelity_floor]
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

SCALES = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-db", type=float, default=0.02, help="allowed Set5 Y-PSNR drop (default 0.02)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="results/fidelity_floor")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_precision import int8_graphs

    from esr.backends import create_backend
    from esr.bench import machine_info, save_result
    from esr.loading import open_model
    from esr.metrics import fidelity_psnr, mod_crop, psnr_ssim_y
    from esr.paths import shared_dir
    from esr.sample import sample_batch

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    set5 = shared_dir() / "datasets" / "Set5"
    hr_files = sorted((set5 / "HR").glob("*.png"))
    if not hr_files:
        print(f"error: {set5}: Set5 not found (set ESR_SHARED)", file=sys.stderr)
        return 2
    hrs = [mod_crop(cv2.imread(str(p)), 4) for p in hr_files]
    lrs = [torch.from_numpy(np.ascontiguousarray(cv2.imread(str(set5 / "LR_bicubic" / "X4" / f"{p.stem}x4.png"))
                                                 [..., ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / 255)
           for p in hr_files]
    inputs = lrs + [torch.from_numpy(sample_batch())]  # the sample image last
    loaded = open_model("rlfn_x4")
    with tempfile.TemporaryDirectory() as tmp:
        int8 = open_model(int8_graphs(loaded, ["all"], shared_dir() / "datasets" / "T91", Path(tmp))["int8-all"])
        ort_fp32 = create_backend("onnxruntime", loaded, "cpu", "fp32", args.threads)
        runs = {"openvino bf16": create_backend("openvino", loaded, "cpu", "bf16", args.threads),
                "openvino fp16": create_backend("openvino", loaded, "cpu", "fp16", args.threads),
                "torch bf16": create_backend("torch", loaded, "cpu", "bf16", args.threads),
                "onnxruntime int8": create_backend("onnxruntime", int8, "cpu", "int8", args.threads)}
        reference = [ort_fp32(x).numpy() for x in inputs]
        outputs = {name: [run(x).numpy() for x in inputs] for name, run in runs.items()}

    def set5_psnr(images: list[np.ndarray]) -> float:
        scores = []
        for out, hr in zip(images, hrs):
            sr = np.clip(np.round(np.clip(out[0], 0, 1) * 255), 0, 255).astype(np.uint8).transpose(1, 2, 0)[..., ::-1]
            scores.append(psnr_ssim_y(np.ascontiguousarray(sr), hr, crop_border=4)[0])
        return float(np.mean(scores))

    base = set5_psnr(reference[:-1])
    points = []
    for name, outs in outputs.items():
        for k in SCALES:
            scaled = [r + k * (o - r) for o, r in zip(outs, reference)]
            points.append({"error": name, "k": k, "sample_fidelity_db": fidelity_psnr([reference[-1]], [scaled[-1]]),
                           "set5_fidelity_db": fidelity_psnr(reference[:-1], scaled[:-1]),
                           "set5_delta_db": set5_psnr(scaled[:-1]) - base})
    failing = [p["sample_fidelity_db"] for p in points if p["set5_delta_db"] < -args.budget_db]
    floor = math.ceil(2 * max(failing)) / 2 if failing else None
    record = {"model": "rlfn_x4", "set5_psnr_y_fp32": base, "budget_db": args.budget_db, "points": points,
              "floor_db": floor, "machine": machine_info()}
    print(f"{'error':<18}{'k':>5}{'sample dB':>11}{'Set5 dB':>9}{'Set5 delta':>12}")
    for p in sorted(points, key=lambda p: -p["sample_fidelity_db"]):
        print(f"{p['error']:<18}{p['k']:>5}{p['sample_fidelity_db']:>11.2f}{p['set5_fidelity_db']:>9.2f}"
              f"{p['set5_delta_db']:>+12.4f}")
    print(f"fp32 Set5 Y-PSNR {base:.3f} dB; lowest sample fidelity with a drop beyond {args.budget_db} dB: "
          f"{max(failing) if failing else 'none'}; floor {floor} dB")
    path = save_result(record, args.out, "fidelity_floor")
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
