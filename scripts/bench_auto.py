"""What ``--backend auto`` gives a user, measured through the CLI: Set14 upscaling, Set5 eval, INT8.

1. ``upscale``: ``esr upscale`` with default options (``--backend auto``, the default model unless
   ``--model`` names one) on the 14 Set14 HR images as inputs (x4 outputs of about 2000 px a side),
   against ``--backend onnxruntime --precision fp32``.
   Auto with an empty esr cache, the cached auto run and the onnxruntime fp32 run take ``--repeats`` turns (the
   run with the median images/s is recorded, with every run's images/s). Each run gets a fresh output folder; images/s counts from the first output to the last (output
   files are renamed into place when complete, so their mtimes are completion times), so start-up
   and the one-time auto measurement are reported apart: ``first_output_s`` is the time from the
   command's start to the first output, ``auto_measure_s`` what auto printed it spent measuring.
   Auto runs with an empty esr cache (it measures; ``auto_announced_s`` is when it said so) and again
   (cached decision). ``upscale_ceiling``: the same images pre-decoded through both Upscalers in
   this process, no file IO: the time inside the model calls and the whole upscale per image, so the
   end-to-end ratio can be read against what the model calls alone allow.
2. ``upscale_lr``: the same on Set14's x4 LR images, plus torch fp32 (whole runs: start-up dominates).
   ``quickstart``: the README's first command, ``esr upscale`` of Set5's x4 LR images with an empty
   cache and again cached: what a newcomer's first run costs.
3. ``eval``: ``esr eval`` on Set5 with the fp32 reference (default) and with ``--backend auto``.
4. ``int8`` (``--int8``): ``esr quantize`` (mixed precision: ``--target-db 47 --max-kept 40``,
   s8 weights) then ``esr bench`` and ``esr eval`` of the QDQ graph with ``--backend auto``,
   against ``esr bench --backend onnxruntime --precision fp32`` of the source model.

5. ``also`` (``--also-model NAME``, repeatable): part 1's Set14 HR comparison and its ceiling for another zoo model.

``host_probe`` (:func:`esr.bench.host_probe`): one 256x256 call of onnxruntime fp32 and of OpenVINO bf16 timed at the start and at the end, to
read beside ``bench_precision.py``'s figures: on a shared host the bf16 (AMX) path can slow down far more than the
fp32 one while a neighbour is busy, and the ratios of the run with it.

All figures land in one JSON under ``--out`` with the machine. Needs ``$ESR_SHARED`` (Set5, Set14, T91).

Usage: python scripts/bench_auto.py [--model NAME] [--threads 2] [--repeats 3] [--int8] [--also-model NAME]
       [--out results/bench_auto]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable


def esr(args: list[str], env: dict[str, str], seen: dict[str, float] | None = None) -> tuple[float, str]:
    """Run ``esr ARGS``; (wall seconds, its stdout and stderr). Exits on failure with the command's output.

    ``seen``: filled with the seconds after the start at which each ``auto: `` line of stdout appeared.
    """
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "esr", *args], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if seen is not None and line.startswith("auto: "):
            seen[line.strip()] = time.perf_counter() - start
    code = process.wait()
    wall = time.perf_counter() - start
    output = "".join(lines)
    if code != 0:
        sys.exit(f"esr {' '.join(args)} failed ({code}):\n{output[-4000:]}")
    return wall, output


def last_json(output: str) -> dict:
    """The last JSON line of a ``--json`` command's output (warnings may come before it)."""
    return json.loads(next(line for line in reversed(output.splitlines()) if line.startswith("{")))


def auto_line(output: str) -> str | None:
    found = re.findall(r"^auto: .*$", output, re.M)
    return found[-1] if found else None


def upscale_run(inputs: Path, options: list[str], env: dict[str, str], work: Path, label: str) -> dict:
    """One ``esr upscale`` run into a fresh folder: wall time, first-output time, images/s after the first."""
    out = work / label
    start = time.time()
    seen: dict[str, float] = {}
    wall, output = esr(["upscale", str(inputs), "-o", str(out), *options], env, seen)
    stamps = sorted(p.stat().st_mtime for p in out.iterdir() if p.is_file())
    line = auto_line(output)
    measured = re.search(r"measured in ([0-9.]+) s", line or "")
    announced = next((at for text, at in seen.items() if text.startswith("auto: measuring ")), None)
    record = {"options": options, "wall_s": wall, "images": len(stamps), "first_output_s": stamps[0] - start,
              "auto": line, "auto_measure_s": float(measured.group(1)) if measured else None,
              "auto_announced_s": announced}
    if len(stamps) > 1:
        record["images_per_s_after_first"] = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    print(f"  {label:<22} {wall:7.1f} s, first output {record['first_output_s']:.1f} s, "
          f"{record.get('images_per_s_after_first', 0):.3f} images/s after it  {line or ''}", flush=True)
    return record


REFERENCE = ["--backend", "onnxruntime", "--precision", "fp32"]


def compare_upscale(inputs: Path, model: list[str], env: dict[str, str], work: Path, key: str, repeats: int,
                    torch_too: bool = False) -> dict:
    """``esr upscale`` of ``inputs`` with ``model`` options: auto with an empty cache (it measures), the cached auto
    and onnxruntime fp32, ``repeats`` times in turns (the median run of each; the first empty-cache run fills the
    cache the cached runs read, the others get a fresh one each), torch fp32 once with ``torch_too``; every run's
    images/s as a speed-up over onnxruntime fp32's."""
    print(f"{key}: {inputs}")
    cached = {**env, "ESR_CACHE_DIR": str(work / f"cache-{key}")}
    repeated: dict[str, list[dict]] = {"auto_cold": [], "auto_cached": [], "onnxruntime_fp32": []}
    for index in range(repeats):  # interleaved: load changes hit all alike
        cold = cached if index == 0 else {**env, "ESR_CACHE_DIR": str(work / f"cache-{key}-cold-{index}")}
        repeated["auto_cold"].append(upscale_run(inputs, model, cold, work, f"{key}-auto-cold-{index}"))
        repeated["auto_cached"].append(upscale_run(inputs, model, cached, work, f"{key}-auto-cached-{index}"))
        repeated["onnxruntime_fp32"].append(upscale_run(inputs, model + REFERENCE, env, work, f"{key}-ort-{index}"))
    runs = {label: median_run(found) for label, found in repeated.items()}
    if torch_too:
        runs["torch_fp32"] = upscale_run(inputs, model + ["--backend", "torch", "--precision", "fp32"], env, work,
                                         f"{key}-torch")
    base = runs["onnxruntime_fp32"].get("images_per_s_after_first")
    for run in runs.values():
        if base and run.get("images_per_s_after_first"):
            run["speedup_vs_onnxruntime_fp32"] = run["images_per_s_after_first"] / base
    return runs


def median_run(runs: list[dict]) -> dict:
    """The run with the median images/s after the first (the lower middle of an even count), with every
    run's images/s in ``images_per_s_runs``."""
    ordered = sorted(runs, key=lambda run: run.get("images_per_s_after_first", 0.0))
    return {**ordered[(len(ordered) - 1) // 2], "images_per_s_runs": [run.get("images_per_s_after_first") for run in runs]}


def model_call_timer(run: Callable) -> tuple[Callable, list[float]]:
    """(timed run, spent): ``run`` (an Upscaler's ``_run``) wrapped so that ``spent[0]`` adds up the wall time
    during which at least one model call is running (with ``tile_streams`` > 1 a backend with streams runs tiles
    two at a time: their calls overlap, and summing each call's time would count the overlap twice)."""
    lock, spent, active, since = threading.Lock(), [0.0], [0], [0.0]

    def timed(x, *args):
        with lock:
            if active[0] == 0:
                since[0] = time.perf_counter()
            active[0] += 1
        try:
            return run(x, *args)
        finally:
            with lock:
                active[0] -= 1
                if active[0] == 0:
                    spent[0] += time.perf_counter() - since[0]

    return timed, spent


def ceiling(folder: Path, model: str | None, threads: int, cache: Path, passes: int = 3) -> dict:
    """The end-to-end ratio's ceiling, in this process and without file IO: ``folder``'s images pre-decoded,
    run through the :class:`esr.upscaler.Upscaler` of auto (its decision cached in ``cache``) and of
    onnxruntime fp32, ``passes`` interleaved passes; per image, the median pass's whole upscale and the time
    spent inside the model calls (the rest is tiling, blending and quantising).

    ``file_io_ms_per_image``: what ``esr upscale`` adds per image: decoding the input (``read_image``, one
    thread) and encoding its x4 output as PNG (``encode_image``, its parts in parallel), wall time (fastest pass);
    ``file_io_cpu_ms_per_image`` the same work's CPU time over all threads (mean pass). ``overlap_bound_ratio``:
    the end-to-end ratio if that work overlapped the model perfectly on ``threads`` cores (whole upscale + file IO
    CPU time / threads per image, both runs): what no pipeline can beat while the model keeps every core busy."""
    import torch

    from esr.bench import time_runs
    from esr.image_io import encode_image, read_image
    from esr.upscale_batch import BatchOptions, build_upscaler, describe_backend

    os.environ["ESR_CACHE_DIR"] = str(cache)
    torch.set_num_threads(threads)
    paths = sorted(folder.glob("*.png"))
    decoded = [read_image(path) for path in paths]
    images = [image.color for image in decoded]
    runs = {}
    for label, backend, precision in (("auto", "auto", "auto"), ("onnxruntime_fp32", "onnxruntime", "fp32")):
        upscaler = build_upscaler(BatchOptions(inputs=[], outdir=".", model=model, backend=backend,
                                               precision=precision, threads=threads, quiet=True))
        upscaler._run, spent = model_call_timer(upscaler._run)
        upscaler.upscale_array(images[0])  # warm-up
        runs[label] = {"upscaler": upscaler, "spent": spent, "passes": [], "backend": describe_backend(upscaler.backend)}
    for _ in range(passes):
        for run in runs.values():
            run["spent"][0] = 0.0
            start = time.perf_counter()
            results = [run["upscaler"].upscale_array(image) for image in images]
            run["passes"].append((time.perf_counter() - start, run["spent"][0]))
            if run is runs["auto"]:  # auto's outputs, for the PNG encoding timed below
                outputs = [replace(image, color=color) for image, color in zip(decoded, results)]
            del results
    record = {}
    for label, run in runs.items():
        whole, model_s = sorted(run["passes"])[len(run["passes"]) // 2]
        record[label] = {"backend": run["backend"], "upscale_ms_per_image": whole * 1e3 / len(images),
                         "model_ms_per_image": model_s * 1e3 / len(images)}
    reference, auto = record["onnxruntime_fp32"], record["auto"]
    record["images"], record["passes"] = len(images), passes
    record["upscale_ratio"] = reference["upscale_ms_per_image"] / auto["upscale_ms_per_image"]
    record["model_ratio"] = reference["model_ms_per_image"] / auto["model_ms_per_image"]
    io_ms, io_cpu_ms = {}, {}
    for label, work in (("decode", lambda: [read_image(path) for path in paths]),
                        ("encode_png", lambda: [encode_image(out, ".png") for out in outputs])):
        cpu_start = time.process_time()
        wall = time_runs(work, runs=passes, warmup=0)
        io_ms[label] = wall.min_ms / len(paths)
        io_cpu_ms[label] = (time.process_time() - cpu_start) * 1e3 / passes / len(paths)
    record["file_io_ms_per_image"], record["file_io_cpu_ms_per_image"] = io_ms, io_cpu_ms
    spread = sum(io_cpu_ms.values()) / threads
    record["overlap_bound_ratio"] = (reference["upscale_ms_per_image"] + spread) / (auto["upscale_ms_per_image"] + spread)
    print(f"ceiling (no file IO): model calls {record['model_ratio']:.2f}x, whole upscale {record['upscale_ratio']:.2f}x "
          f"({auto['model_ms_per_image']:.0f}/{auto['upscale_ms_per_image']:.0f} ms vs "
          f"{reference['model_ms_per_image']:.0f}/{reference['upscale_ms_per_image']:.0f} ms per image); file IO "
          f"{io_ms['decode']:.0f} ms decoding + {io_ms['encode_png']:.0f} ms encoding per image (CPU time "
          f"{io_cpu_ms['decode']:.0f} + {io_cpu_ms['encode_png']:.0f} ms): at best "
          f"{record['overlap_bound_ratio']:.2f}x end to end", flush=True)
    return record



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="zoo name (default: esr's default model, not passed)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of the cached auto and the onnxruntime fp32 upscale on Set14 HR, interleaved (median)")
    parser.add_argument("--int8", action="store_true", help="also run the INT8 part (esr quantize, a few minutes)")
    parser.add_argument("--also-model", action="append", default=[], metavar="NAME",
                        help="a zoo model to compare on Set14 HR as well (end to end and the ceiling), repeatable")
    parser.add_argument("--out", default="results/bench_auto")
    args = parser.parse_args(argv)

    from esr.bench import host_probe, machine_info, save_result
    from esr.paths import shared_dir
    from esr.zoo import DEFAULT_MODEL

    data = shared_dir() / "datasets"
    if not (data / "Set14" / "HR").is_dir():
        print(f"error: {data}: Set14/Set5 not found (set ESR_SHARED)", file=sys.stderr)
        return 2
    record: dict = {"model": args.model or DEFAULT_MODEL, "threads": args.threads, "machine": machine_info(),
                    "host_probe": {"start": host_probe(args.model, args.threads)}}
    threads = ["--threads", str(args.threads)]
    with tempfile.TemporaryDirectory(prefix="esr-bench-auto-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "ESR_CACHE_DIR": str(work / "cache")}
        model = [*(["--model", args.model] if args.model else []), *threads]
        for key, inputs in (("upscale", data / "Set14" / "HR"), ("upscale_lr", data / "Set14" / "LR_bicubic" / "X4")):
            record[key] = compare_upscale(inputs, model, env, work, key, args.repeats if key == "upscale" else 1,
                                          torch_too=key == "upscale_lr")  # the start-up comparison
        record["upscale_ceiling"] = ceiling(data / "Set14" / "HR", args.model, args.threads, work / "cache-upscale")
        for name in args.also_model:
            key = f"upscale-{name}"
            record.setdefault("also", {})[name] = {
                "upscale": compare_upscale(data / "Set14" / "HR", ["--model", name, *threads], env, work, key,
                                           args.repeats),
                "upscale_ceiling": ceiling(data / "Set14" / "HR", name, args.threads, work / f"cache-{key}")}
        quick = data / "Set5" / "LR_bicubic" / "X4"
        print(f"quickstart: {quick}")
        env_quick = {**env, "ESR_CACHE_DIR": str(work / "cache-quickstart")}
        record["quickstart"] = {"auto_cold": upscale_run(quick, [], env_quick, work, "quickstart-cold"),
                                "auto_cached": upscale_run(quick, [], env_quick, work, "quickstart-cached")}
        set5 = str(data / "Set5")
        evals = {}
        for label, options in (("reference", []), ("auto", ["--backend", "auto"])):
            _, output = esr(["eval", *model, "--data", set5, "--json", *options], env)
            evals[label] = last_json(output)["psnr_y"]
        record["eval"] = {"set5_psnr_y": evals, "delta_db": evals["auto"] - evals["reference"]}
        print(f"eval Set5: reference {evals['reference']:.3f} dB, auto {evals['auto']:.3f} dB "
              f"({record['eval']['delta_db']:+.3f})")
        if args.int8:
            qdq = work / "int8.onnx"
            esr(["quantize", "--model", record["model"], "--calib", str(data / "T91"), "--calib-downscale", "4",
                 "--weight-type", "s8", "--target-db", "47", "--max-kept", "40", "--out", str(qdq)], env)
            benches = {}
            for label, options in (("onnxruntime_fp32", model + REFERENCE),
                                   ("int8_auto", ["--model", str(qdq), *threads, "--backend", "auto"])):
                _, output = esr(["bench", *options, "--runs", "10", "--json"], env)
                benches[label] = last_json(output)
            _, output = esr(["eval", "--model", str(qdq), *threads, "--backend", "auto", "--data", set5, "--json"], env)
            int8_psnr = last_json(output)["psnr_y"]
            speedup = benches["onnxruntime_fp32"]["median_ms"] / benches["int8_auto"]["median_ms"]
            record["int8"] = {"bench": benches, "speedup_vs_onnxruntime_fp32": speedup,
                              "set5_psnr_y": int8_psnr, "delta_db": int8_psnr - evals["reference"]}
            print(f"int8 (esr quantize + auto): {speedup:.2f}x over onnxruntime fp32, Set5 "
                  f"{record['int8']['delta_db']:+.3f} dB")
    record["host_probe"]["end"] = host_probe(args.model, args.threads)
    record["load_avg_after"] = machine_info()["load_avg"]
    path = save_result(record, args.out, "bench_auto")
    print(f"{record['machine']['cpu']}; load {record['machine']['load_avg']} -> {record['load_avg_after']}; saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
