"""What ``--backend auto`` gives a user, measured through the CLI: Set14 upscaling, Set5 eval, INT8.

1. ``upscale``: ``esr upscale`` with default options (``--backend auto``) on the 14 Set14 HR images
   as inputs (x4 outputs of about 2000 px a side), against ``--backend onnxruntime --precision fp32``.
   Each run gets a fresh output folder; images/s counts from the first output to the last (output
   files are renamed into place when complete, so their mtimes are completion times), so start-up
   and the one-time auto measurement are reported apart: ``first_output_s`` is the time from the
   command's start to the first output, ``auto_measure_s`` what auto printed it spent measuring.
   Auto runs twice: with an empty esr cache (it measures) and again (cached decision).
2. ``upscale_lr``: the same on Set14's x4 LR images, plus torch fp32 (whole runs: start-up dominates).
3. ``eval``: ``esr eval`` on Set5 with the fp32 reference (default) and with ``--backend auto``.
4. ``int8`` (``--int8``): ``esr quantize`` (mixed precision: ``--target-db 47 --max-kept 40``,
   s8 weights) then ``esr bench`` and ``esr eval`` of the QDQ graph with ``--backend auto``,
   against ``esr bench --backend onnxruntime --precision fp32`` of the source model.

All figures land in one JSON under ``--out`` with the machine. Needs ``$ESR_SHARED`` (Set5, Set14, T91).

Usage: python scripts/bench_auto.py [--model rlfn_x4] [--threads 2] [--int8] [--out results/bench_auto]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def esr(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Run ``esr ARGS``; (wall seconds, stdout + stderr). Exits on failure with the command's output."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "esr", *args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"esr {' '.join(args)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return wall, done.stdout + done.stderr


def auto_line(output: str) -> str | None:
    found = re.findall(r"^auto: .*$", output, re.M)
    return found[-1] if found else None


def upscale_run(inputs: Path, options: list[str], env: dict[str, str], work: Path, label: str) -> dict:
    """One ``esr upscale`` run into a fresh folder: wall time, first-output time, images/s after the first."""
    out = work / label
    start = time.time()
    wall, output = esr(["upscale", str(inputs), "-o", str(out), *options], env)
    stamps = sorted(p.stat().st_mtime for p in out.iterdir() if p.is_file())
    line = auto_line(output)
    measured = re.search(r"measured in ([0-9.]+) s", line or "")
    record = {"options": options, "wall_s": wall, "images": len(stamps), "first_output_s": stamps[0] - start,
              "auto": line, "auto_measure_s": float(measured.group(1)) if measured else None}
    if len(stamps) > 1:
        record["images_per_s_after_first"] = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    print(f"  {label:<22} {wall:7.1f} s, first output {record['first_output_s']:.1f} s, "
          f"{record.get('images_per_s_after_first', 0):.3f} images/s after it  {line or ''}", flush=True)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="rlfn_x4", help="zoo name (default rlfn_x4)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--int8", action="store_true", help="also run the INT8 part (esr quantize, a few minutes)")
    parser.add_argument("--out", default="results/bench_auto")
    args = parser.parse_args(argv)

    from esr.bench import machine_info, save_result
    from esr.paths import shared_dir

    data = shared_dir() / "datasets"
    if not (data / "Set14" / "HR").is_dir():
        print(f"error: {data}: Set14/Set5 not found (set ESR_SHARED)", file=sys.stderr)
        return 2
    record: dict = {"model": args.model, "threads": args.threads, "machine": machine_info()}
    threads = ["--threads", str(args.threads)]
    with tempfile.TemporaryDirectory(prefix="esr-bench-auto-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "ESR_CACHE_DIR": str(work / "cache")}
        model = ["--model", args.model, *threads]
        reference = ["--backend", "onnxruntime", "--precision", "fp32"]
        for key, inputs in (("upscale", data / "Set14" / "HR"), ("upscale_lr", data / "Set14" / "LR_bicubic" / "X4")):
            print(f"{key}: {inputs}")
            env_cold = {**env, "ESR_CACHE_DIR": str(work / f"cache-{key}")}
            runs = {"auto_cold": upscale_run(inputs, model, env_cold, work, f"{key}-auto-cold"),
                    "auto_cached": upscale_run(inputs, model, env_cold, work, f"{key}-auto-cached"),
                    "onnxruntime_fp32": upscale_run(inputs, model + reference, env, work, f"{key}-ort")}
            if key == "upscale_lr":  # the start-up comparison: torch vs onnxruntime on small images
                runs["torch_fp32"] = upscale_run(inputs, model + ["--backend", "torch", "--precision", "fp32"], env,
                                                 work, f"{key}-torch")
            base = runs["onnxruntime_fp32"].get("images_per_s_after_first")
            for run in runs.values():
                if base and run.get("images_per_s_after_first"):
                    run["speedup_vs_onnxruntime_fp32"] = run["images_per_s_after_first"] / base
            record[key] = runs
        set5 = str(data / "Set5")
        evals = {}
        for label, options in (("reference", []), ("auto", ["--backend", "auto"])):
            _, output = esr(["eval", *model, "--data", set5, "--json", *options], env)
            evals[label] = json.loads(output.strip().splitlines()[-1])["psnr_y"]
        record["eval"] = {"set5_psnr_y": evals, "delta_db": evals["auto"] - evals["reference"]}
        print(f"eval Set5: reference {evals['reference']:.3f} dB, auto {evals['auto']:.3f} dB "
              f"({record['eval']['delta_db']:+.3f})")
        if args.int8:
            qdq = work / "int8.onnx"
            esr(["quantize", "--model", args.model, "--calib", str(data / "T91"), "--calib-downscale", "4",
                 "--weight-type", "s8", "--target-db", "47", "--max-kept", "40", "--out", str(qdq)], env)
            benches = {}
            for label, options in (("onnxruntime_fp32", model + reference),
                                   ("int8_auto", ["--model", str(qdq), *threads, "--backend", "auto"])):
                _, output = esr(["bench", *options, "--runs", "10", "--json"], env)
                benches[label] = json.loads(output.strip().splitlines()[-1])
            _, output = esr(["eval", "--model", str(qdq), *threads, "--backend", "auto", "--data", set5, "--json"], env)
            int8_psnr = json.loads(output.strip().splitlines()[-1])["psnr_y"]
            speedup = benches["onnxruntime_fp32"]["median_ms"] / benches["int8_auto"]["median_ms"]
            record["int8"] = {"bench": benches, "speedup_vs_onnxruntime_fp32": speedup,
                              "set5_psnr_y": int8_psnr, "delta_db": int8_psnr - evals["reference"]}
            print(f"int8 (esr quantize + auto): {speedup:.2f}x over onnxruntime fp32, Set5 "
                  f"{record['int8']['delta_db']:+.3f} dB")
    record["load_avg_after"] = machine_info()["load_avg"]
    path = save_result(record, args.out, "bench_auto")
    print(f"{record['machine']['cpu']}; load {record['machine']['load_avg']} -> {record['load_avg_after']}; saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
