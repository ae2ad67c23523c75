"""Validate ``esr analyze --hw local`` against ``esr bench`` on this CPU, all in one run.

1. ``esr analyze --calibrate`` (micro-benchmarks + ONNX Runtime per-layer profiling of RLFN and
   DITN-Real x4 at 64x64 and 160x160, shapes disjoint from the ones validated here).
2. For RLFN x4, RLFN-S x4 and DITN-Real x4 (random weights: timing does not depend on them) at
   1x3x128x128 and 1x3x256x256: ``esr analyze --hw local --json --save-graph G.onnx`` predicts,
   ``esr bench --model G.onnx`` (onnxruntime, the same deploy graph) measures; error = pred / meas - 1.
   The uncalibrated roofline (same peaks, efficiency 1, no overheads) is reported beside it.
3. Per layer, RLFN x4 at 256x256: ORT profiling of the deploy graph vs predicted layer times,
   Spearman rank correlation over the layers the runtime runs as their own kernels.

Writes ``results/validate_analyze/validate_analyze.json`` and ``.png`` and prints a table.
Usage: ``python scripts/validate_analyze.py [--runs 10] [--out results/validate_analyze]``.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from esr.analyze.calibrate import measure_graph, spearman
from esr.analyze.graph import analyze_graph
from esr.analyze.hardware import HardwareProfile, get_profile
from esr.analyze.roofline import predict
from esr.archs.presets import build_model
from esr.bench import machine_info
from esr.cli import main as esr_main
from esr.fileio import replace_atomically, write_bytes_atomically
from esr.loading import save_checkpoint
from esr.paths import shared_dir

MODELS = {"rlfn_x4": ("rlfn", 4), "rlfn_s_x4": ("rlfn_s", 4), "ditn_real_x4": ("ditn_real", 4)}
SIZES = (128, 256)
TOLERANCE = 0.35


def esr_json(argv: list[str]) -> list[dict]:
    """Run ``esr ARGV`` in-process and parse its JSON lines (exit code checked)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = esr_main(argv)
    if code != 0:
        raise SystemExit(f"esr {' '.join(argv)} exited {code}")
    return [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def plot(path: Path, rows: list[dict], layers: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), dpi=110)
    labels = [f"{r['model']}\n{r['size']}" for r in rows]
    x = range(len(rows))
    left.bar([i - 0.27 for i in x], [r["measured_ms"] for r in rows], 0.27, label="measured (esr bench, median)")
    left.bar(list(x), [r["predicted_ms"] for r in rows], 0.27, label="predicted, calibrated")
    left.bar([i + 0.27 for i in x], [r["roofline_ms"] for r in rows], 0.27, label="pure roofline (local peaks)")
    for i, r in enumerate(rows):
        left.annotate(f"{r['error'] * 100:+.0f}%", (i, r["predicted_ms"]), ha="center", va="bottom", fontsize=8)
    left.set_xticks(list(x), labels, fontsize=7)
    left.set_yscale("log")
    left.set_ylabel("ms (1 image, ONNX Runtime CPU)")
    left.set_title("end to end: esr analyze --hw local vs esr bench", fontsize=10)
    left.legend(fontsize=8)
    right.loglog(layers["measured_ms"], layers["predicted_ms"], "o", ms=4, alpha=0.7)
    lo = min(layers["measured_ms"] + layers["predicted_ms"])
    hi = max(layers["measured_ms"] + layers["predicted_ms"])
    right.plot([lo, hi], [lo, hi], "k--", lw=1)
    right.set_xlabel("measured layer ms (ORT profiling)")
    right.set_ylabel("predicted layer ms")
    right.set_title(f"RLFN x4 256x256 per layer: Spearman {layers['spearman']:.3f}", fontsize=10)
    right.grid(True, which="both", alpha=0.25)
    fig.tight_layout()
    replace_atomically(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs per measurement (>= 10 for reported figures)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("results") / "validate_analyze")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("ESR_WEIGHTS_DIR", str(shared_dir() / "weights" / "rlfn"))
    threads = torch.get_num_threads()
    load_before = uptime()
    print(load_before)

    checkpoints = {}
    for name, (preset, scale) in MODELS.items():
        checkpoints[name] = save_checkpoint(build_model(preset, scale).eval(), args.out / f"{name}_random.pth")
    esr_json(["analyze", "--calibrate", "--model", str(checkpoints["rlfn_x4"]), "--shape", "1x3x64x64", "--json"])
    hw = get_profile("local", threads)
    pure = HardwareProfile(**{**hw.to_json(), "efficiency": {}, "kernel_overhead_s": 0.0, "byte_overhead": 0.0,
                              "calibration": {}})

    rows, layers = [], {}
    for name, checkpoint in checkpoints.items():
        for size in SIZES:
            shape = f"1x3x{size}x{size}"
            graph_path = args.out / f"{name}_{size}.onnx"
            analysed = esr_json(["analyze", "--model", str(checkpoint), "--hw", "local", "--shape", shape,
                                 "--save-graph", str(graph_path), "--json"])[0]
            bench = esr_json(["bench", "--model", str(graph_path), "--device", "cpu", "--shape", shape,
                              "--runs", str(args.runs), "--warmup", str(args.warmup), "--threads", str(threads),
                              "--json"])[0]
            import onnx

            graph = onnx.load(str(graph_path))
            graph_layers = analyze_graph(graph)
            roofline_ms = sum(r.time_s for r in predict(graph_layers, pure)) * 1e3
            predicted, measured = analysed["totals"]["time_ms"], bench["median_ms"]
            row = {"model": name, "size": size, "passes": analysed["passes"], "predicted_ms": predicted,
                   "measured_ms": measured, "measured_p90_ms": bench["p90_ms"], "runs": bench["runs"],
                   "error": predicted / measured - 1, "roofline_ms": roofline_ms,
                   "roofline_error": roofline_ms / measured - 1}
            rows.append(row)
            print(f"{name:<14}{shape:<14}predicted {predicted:9.1f} ms  measured {measured:9.1f} ms "
                  f"(p90 {bench['p90_ms']:.1f})  error {row['error'] * 100:+6.1f}%  roofline {roofline_ms:8.1f} ms")
            if name == "rlfn_x4" and size == 256:
                m = measure_graph("rlfn_x4 256", graph, graph_layers, (1, 3, size, size), args.runs, args.warmup,
                                  threads)
                preds = predict(graph_layers, hw)
                pairs = [(p.time_s * 1e3, s * 1e3) for p, s in zip(preds, m.layer_s) if s > 0]
                layers = {"predicted_ms": [p for p, _ in pairs], "measured_ms": [s for _, s in pairs],
                          "names": [p.layer.name for p, s in zip(preds, m.layer_s) if s > 0],
                          "spearman": spearman([p for p, _ in pairs], [s for _, s in pairs]),
                          "layers_total": len(graph_layers), "layers_matched": len(pairs),
                          "unmatched_ms": m.unmatched_s * 1e3}
                print(f"RLFN x4 256 per layer: Spearman {layers['spearman']:.3f} over {len(pairs)} of "
                      f"{len(graph_layers)} layers")
    load_after = uptime()
    print(load_after)
    worst = max(abs(r["error"]) for r in rows)
    result = {"machine": machine_info(), "load_before": load_before, "load_after": load_after,
              "protocol": f"onnxruntime CPU, esr.backends.sessions.ort_session with {threads} threads, "
                          f"warmup {args.warmup}, median of {args.runs}",
              "calibration": hw.calibration, "efficiency": hw.efficiency, "kernel_overhead_s": hw.kernel_overhead_s,
              "byte_overhead": hw.byte_overhead, "channel_block": hw.channel_block, "peaks": {"fp32_flops": hw.peak_flops["fp32"],
                                                          "bandwidth": hw.memory_bandwidth, **hw.measured},
              "rows": rows, "worst_abs_error": worst, "tolerance": TOLERANCE, "within_tolerance": worst <= TOLERANCE,
              "per_layer_rlfn_x4_256": layers}
    write_bytes_atomically(args.out / "validate_analyze.json", json.dumps(result, indent=1).encode())
    plot(args.out / "validate_analyze.png", rows, layers)
    print(f"worst |error| {worst * 100:.1f}% (tolerance {TOLERANCE * 100:.0f}%); Spearman {layers['spearman']:.3f}; "
          f"wrote {args.out}/validate_analyze.json and .png")
    return 0 if worst <= TOLERANCE and layers["spearman"] >= 0.8 else 1


if __name__ == "__main__":
    sys.exit(main())
