"""Derive ``--backend auto``'s fidelity floor: Y-PSNR vs fp32 on the sample image against the Set5 Y-PSNR drop.

``auto`` can only check a candidate on the package's sample image; the promise is about Set5
(a drop of at most 0.02 dB). This script measures how the two relate, with real error patterns:
for each model it takes the error of each reduced-precision output against onnxruntime fp32
(OpenVINO bf16 as esr runs it and without its image-conv split, OpenVINO f16, torch bf16,
onnxruntime on an all-INT8 QDQ graph) and scales it by ``k`` (``fp32 + k * (candidate - fp32)``,
k from 0.125 to 8), which moves the fidelity over 35-80 dB while keeping each error's structure.

Models: RLFN-S x4 (the default model) and RLFN x4 (official weights), each error on its own fp32
output; DITN-Real x4 has no released weights, so its errors (random weights, seed 0) are added
to RLFN-S x4's fp32 output: they test how the sample image predicts Set5 for a transformer's
error structure, and the drop is RLFN-S's.

Each point records the sample-image fidelity in Y (``fidelity_psnr_y``: BT.601 Y, what auto
measures) and in RGB (what auto measured before), the same two over the Set5 LR images, and the
Set5 x4 Y-PSNR change (``esr eval``'s protocol: uint8 outputs, 4 px border). The floor printed
is the lowest sample Y fidelity above which every measured point drops at most ``--budget-db``,
rounded up to 0.5 dB; the RGB floor the same way, for comparison, with how many points that
keep the budget each floor rejects.

Usage: python scripts/fidelity_floor.py [--budget-db 0.02] [--threads 2] [--out results/fidelity_floor]
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

SCALES = (0.125, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
MODELS = {"rlfn_s_x4": "rlfn_s_x4", "rlfn_x4": "rlfn_x4", "ditn_real_x4": "rlfn_s_x4"}
"""Model whose errors are measured -> model whose fp32 output they are added to (and whose Set5 drop is scored)."""
INT8_MODELS = ("rlfn_s_x4", "rlfn_x4")
"""Models whose all-INT8 error is included (DITN-Real's random weights quantise to nothing meaningful)."""

Run = Callable[[torch.Tensor], torch.Tensor]


def openvino_bf16_unsplit(loaded, threads: int) -> Run:
    """OpenVINO bf16 on the deploy graph without esr's image-conv split (what esr ran before it)."""
    from esr.backends.graph_cache import cached_deploy_graph
    from esr.backends.openvino_runtime import ov_core

    compiled = ov_core().compile_model(str(cached_deploy_graph(loaded)), "CPU", {
        "INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})
    return lambda x: torch.from_numpy(compiled(x.numpy())[0].copy())


def error_runs(name: str, loaded, calib: Path, tmp: Path, threads: int) -> dict[str, Run]:
    """The reduced-precision runs of ``loaded`` whose errors this script scales."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_precision import int8_graphs

    from esr.backends import create_backend
    from esr.loading import open_model

    runs = {"openvino bf16": create_backend("openvino", loaded, "cpu", "bf16", threads),
            "openvino bf16 (no split)": openvino_bf16_unsplit(loaded, threads),
            "openvino fp16": create_backend("openvino", loaded, "cpu", "fp16", threads),
            "torch bf16": create_backend("torch", loaded, "cpu", "bf16", threads)}
    if name in INT8_MODELS:
        graph = int8_graphs(loaded, ["all"], calib, tmp)["int8-all"]
        runs["onnxruntime int8"] = create_backend("onnxruntime", open_model(graph), "cpu", "int8", threads)
    return runs


def floor_of(points: list[dict], key: str, budget: float) -> tuple[float | None, int]:
    """(lowest 0.5 dB step above every point of ``key`` that drops more than ``budget``, points within the
    budget it rejects)."""
    failing = [p[key] for p in points if p["set5_delta_db"] < -budget]
    floor = math.ceil(2 * max(failing)) / 2 if failing else None
    rejected = sum(1 for p in points if p["set5_delta_db"] >= -budget and floor is not None and p[key] < floor)
    return floor, rejected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-db", type=float, default=0.02, help="allowed Set5 Y-PSNR drop (default 0.02)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="results/fidelity_floor")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_precision import open_bench_model

    from esr.backends import create_backend
    from esr.bench import machine_info, save_result
    from esr.capabilities import cpu_summary
    from esr.backends.openvino_runtime import openvino_version
    from esr.metrics import fidelity_psnr, fidelity_psnr_y, mod_crop, psnr_y
    from esr.paths import shared_dir
    from esr.sample import sample_batch

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    data = shared_dir() / "datasets"
    set5 = data / "Set5"
    hr_files = sorted((set5 / "HR").glob("*.png"))
    if not hr_files:
        print(f"error: {set5}: Set5 not found (set ESR_SHARED)", file=sys.stderr)
        return 2
    hrs = [mod_crop(cv2.imread(str(p)), 4) for p in hr_files]
    lrs = [torch.from_numpy(np.ascontiguousarray(cv2.imread(str(set5 / "LR_bicubic" / "X4" / f"{p.stem}x4.png"))
                                                 [..., ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / 255)
           for p in hr_files]
    inputs = lrs + [torch.from_numpy(sample_batch())]  # the sample image last

    def set5_psnr(images: list[np.ndarray]) -> float:
        scores = []
        for out, hr in zip(images, hrs):
            sr = np.clip(np.round(np.clip(out[0], 0, 1) * 255), 0, 255).astype(np.uint8).transpose(1, 2, 0)[..., ::-1]
            scores.append(psnr_y(np.ascontiguousarray(sr), hr, crop_border=4))
        return float(np.mean(scores))

    fp32_outputs, bases, points = {}, {}, []
    with tempfile.TemporaryDirectory(prefix="esr-fidelity-floor-") as tmp:
        for name, base in MODELS.items():
            loaded, weights = open_bench_model(name, None)
            print(f"{name} ({weights}); errors added to {base}'s fp32 output", flush=True)
            reference = [create_backend("onnxruntime", loaded, "cpu", "fp32", args.threads)(x).numpy() for x in inputs]
            fp32_outputs[name] = reference
            if base not in bases:
                bases[base] = set5_psnr(fp32_outputs[base][:-1])
            target = fp32_outputs[base]
            for error, run in error_runs(name, loaded, data / "T91", Path(tmp), args.threads).items():
                deltas = [run(x).numpy() - r for x, r in zip(inputs, reference)]
                for k in SCALES:
                    scaled = [t + k * d for t, d in zip(target, deltas)]
                    points.append({
                        "model": name, "base": base, "error": error, "k": k,
                        "sample_y_db": fidelity_psnr_y([target[-1]], [scaled[-1]]),
                        "sample_rgb_db": fidelity_psnr([target[-1]], [scaled[-1]]),
                        "set5_y_db": fidelity_psnr_y(target[:-1], scaled[:-1]),
                        "set5_rgb_db": fidelity_psnr(target[:-1], scaled[:-1]),
                        "set5_delta_db": set5_psnr(scaled[:-1]) - bases[base]})
                unit = next(p for p in points[-len(SCALES):] if p["k"] == 1.0)
                print(f"  {error}: sample {unit['sample_y_db']:.2f} dB Y ({unit['sample_rgb_db']:.2f} RGB), "
                      f"Set5 {unit['set5_delta_db']:+.4f} dB", flush=True)
    floor, rejected = floor_of(points, "sample_y_db", args.budget_db)
    floor_rgb, rejected_rgb = floor_of(points, "sample_rgb_db", args.budget_db)
    machine = machine_info()
    machine["cpu_units"] = cpu_summary()
    machine["versions"]["openvino"] = openvino_version()
    record = {"models": MODELS, "set5_psnr_y_fp32": bases, "budget_db": args.budget_db, "scales": SCALES,
              "points": points, "floor_db": floor, "rejected_within_budget": rejected,
              "floor_rgb_db": floor_rgb, "rejected_within_budget_rgb": rejected_rgb, "machine": machine,
              "load_avg_after": machine_info()["load_avg"]}
    print(f"{'model':<14}{'error':<26}{'k':>6}{'sample Y':>10}{'RGB':>7}{'Set5 Y':>8}{'RGB':>7}{'Set5 delta':>12}")
    for p in sorted(points, key=lambda p: -p["sample_y_db"]):
        print(f"{p['model']:<14}{p['error']:<26}{p['k']:>6}{p['sample_y_db']:>10.2f}{p['sample_rgb_db']:>7.2f}"
              f"{p['set5_y_db']:>8.2f}{p['set5_rgb_db']:>7.2f}{p['set5_delta_db']:>+12.4f}")
    print(f"fp32 Set5 Y-PSNR {bases}; floor {floor} dB on the sample's Y ({rejected} points within the budget below "
          f"it); in RGB it would be {floor_rgb} dB ({rejected_rgb} rejected)")
    path = save_result(record, args.out, "fidelity_floor")
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
