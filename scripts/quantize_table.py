"""INT8 PTQ table: Set5/Set14 x4 PSNR and CPU latency of `esr quantize` variants vs fp32 ONNX Runtime.

For each model (official RLFN x4 and RLFN-S x4; DITN-Real x4 with random weights, and with
``--ditn-weights CKPT`` also a trained DITN-Real x4, e.g. the CPU demo of
options/demo_ditn_real_x4.yml) the fp32 ONNX export (default deploy recipe applied) and every INT8
variant run through ONNX Runtime on CPU (2 threads, 1x3x256x256, interleaved rounds, median of N).
RLFN rows score Y-PSNR on Set5/Set14; the random-weight DITN rows score the fidelity of the INT8
output against the fp32 output instead (PSNR on the Set5/Set14 LR images).
An ORT profile (per op type) of fp32 vs the best RLFN x4 variant shows where the time goes.

Rows already in the JSON are reused (interrupt and rerun to resume); --fresh starts over.

    python scripts/quantize_table.py [--repeats 10] [--out results/quantize_table.json] [--ditn-weights CKPT]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from esr.fileio import write_bytes_atomically
from esr.paths import shared_dir

CALIB = dict(num_calib=32, crop_size=96, downscale=4)
KEEP_ENDS = ["/conv_1/", "/upsampler", "/conv_2/", "^(/model)?/Add$"]
"""RLFN's first conv, the long skip add, the last trunk conv and the upsampler conv stay fp32."""
RLFN_VARIANTS = {
    "minmax": dict(method="minmax"),
    "percentile": dict(method="percentile"),
    "mse": dict(method="mse"),
    "percentile/tensor": dict(method="percentile", granularity="tensor"),
    "percentile/sublayer": dict(method="percentile", granularity="sublayer"),
    "percentile+keep-ends": dict(method="percentile", keep=KEEP_ENDS),
    "percentile+fallback44": dict(method="percentile", target_db=44.0, max_kept=40),
    "percentile+fallback47": dict(method="percentile", target_db=47.0, max_kept=40),
}
MODELS = {
    "rlfn_x4": ("rlfn_x4", RLFN_VARIANTS),
    "rlfn_s_x4": ("rlfn_s_x4", {k: RLFN_VARIANTS[k] for k in
                                ("minmax", "percentile", "mse", "percentile+keep-ends", "percentile+fallback47")}),
    "ditn_real_x4": (None, {"minmax": dict(method="minmax"), "mse": dict(method="mse"),
                            "twin-uniform": dict(method="twin-uniform")}),
}
BEST = ("rlfn_x4", "percentile+fallback47")


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    flags = Path("/proc/cpuinfo").read_text()
    return {"cpu": cpu, "cores": os.cpu_count(), "avx2": " avx2" in flags, "avx512_vnni": "avx512_vnni" in flags,
            "avx_vnni": " avx_vnni" in flags, "gpu": None, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": ort.__version__, "python": platform.python_version()}


def load_avg() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def export_fp32(key: str, zoo_name: str | None, folder: Path) -> Path:
    """The default-recipe dynamic deploy graph (what the backends' cache holds) of a zoo model, a
    checkpoint, or (``None``) the DITN-Real x4 preset with random weights (seed 0)."""
    from esr.export.graph import build_deploy_graph
    from esr.loading import open_model

    path = folder / f"{key}_fp32.onnx"
    if path.is_file():
        return path
    return build_deploy_graph(open_model(zoo_name or "ditn_real", allow_untrained=True)).save(path, overwrite=True)


def quantize(fp32: Path, label: str, kwargs: dict, folder: Path) -> tuple[Path, dict]:
    from esr.image_io import write_atomic
    from esr.quantize.pipeline import QuantConfig, quantize_onnx

    path = folder / f"{fp32.stem.replace('_fp32', '')}_{label.replace('/', '_').replace('+', '_')}.onnx"
    config = QuantConfig(**CALIB, **kwargs)
    started = time.perf_counter()
    model, report = quantize_onnx(onnx.load(str(fp32)), str(shared_dir() / "datasets" / "BSD200"), config)
    report["seconds"] = time.perf_counter() - started
    write_atomic(model.SerializeToString(), path, overwrite=True)
    write_atomic(json.dumps(report).encode(), path.with_suffix(".json"), overwrite=True)
    return path, report


def score(path: Path, reference: Path | None) -> dict:
    """Y-PSNR on Set5/Set14 x4, or (``reference`` given) PSNR of the output vs ``reference``'s output."""
    from esr.backends import create_backend
    from esr.evaluate import evaluate, find_pairs, read_bgr_uint8
    from esr.metrics import fidelity_psnr

    backend = create_backend("onnxruntime", str(path))
    result = {}
    for name in ("Set5", "Set14"):
        data = shared_dir() / "datasets" / name
        if reference is None:
            result[name] = evaluate(backend, data, progress=False)["psnr_y"]
            continue
        ref_backend = create_backend("onnxruntime", str(reference))
        inputs = []
        for pair in find_pairs(data, 4):
            lr = read_bgr_uint8(pair.lr_path)[..., ::-1].astype(np.float32) / 255.0
            inputs.append(torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1)))[None])
        result[name] = fidelity_psnr([ref_backend(x) for x in inputs], [backend(x) for x in inputs])
    return result


def sessions(paths: list[Path], profile: bool = False) -> list:
    """One session per graph from esr's session factory (2 threads), profiling into the graphs' folder."""
    from esr.backends.sessions import ort_session

    return [ort_session(path, threads=2, profile_dir=path.parent if profile else None) for path in paths]


def latency(paths: list[Path], repeats: int) -> list[dict]:
    """Median/p90 ms per model, timed in interleaved rounds (same load for all), 1 warm-up each."""
    runners = sessions(paths)
    x = np.random.default_rng(0).random((1, 3, 256, 256), np.float32)
    for runner in runners:
        runner.run(None, {"input": x})
    times = [[] for _ in paths]
    for _ in range(repeats):
        for index, runner in enumerate(runners):
            started = time.perf_counter()
            runner.run(None, {"input": x})
            times[index].append((time.perf_counter() - started) * 1000)
    return [{"median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90)), "runs": len(t)} for t in times]


def profile(paths: list[Path], runs: int = 3) -> list[dict]:
    """Per-op-type total ms per run from ONNX Runtime's profiler (after one warm-up)."""
    x = np.random.default_rng(0).random((1, 3, 256, 256), np.float32)
    result = []
    for path, runner in zip(paths, sessions(paths, profile=True)):
        for _ in range(runs + 1):
            runner.run(None, {"input": x})
        trace = json.loads(Path(runner.end_profiling()).read_text())
        per_op: dict[str, float] = {}
        for event in trace:
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                op = event["args"]["op_name"]
                per_op[op] = per_op.get(op, 0.0) + event["dur"] / 1000.0 / (runs + 1)
        result.append({"model": path.name, "ms_per_op_type": dict(sorted(per_op.items(), key=lambda kv: -kv[1]))})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default="results/quantize_table.json")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--work", default="results/quantize_models", help="folder for the quantised graphs")
    parser.add_argument("--fresh", action="store_true", help="ignore rows saved by an earlier run")
    parser.add_argument("--ditn-weights", type=Path, default=None,
                        help="trained DITN-Real x4 checkpoint: adds the ditn_real_x4_trained rows, scored by Y-PSNR")
    args = parser.parse_args()
    models = dict(MODELS)
    keys = args.models.split(",")
    if args.ditn_weights is not None:
        models["ditn_real_x4_trained"] = (str(args.ditn_weights), MODELS["ditn_real_x4"][1])
        keys.append("ditn_real_x4_trained")
    os.environ.setdefault("ESR_WEIGHTS_DIR", str(shared_dir() / "weights" / "rlfn"))
    out = Path(args.out)
    folder = Path(args.work)  # the ONNX graphs: large, kept out of the (committed) JSON's folder
    folder.mkdir(parents=True, exist_ok=True)
    data = json.loads(out.read_text()) if out.is_file() and not args.fresh else {}
    data.update({"machine": machine(), "shape": [1, 3, 256, 256], "threads": 2, "calibration": {
        **CALIB, "folder": "BSD200 (bicubic x4 downscaled)"}})
    data.setdefault("models", {})
    data.setdefault("load", []).append({"start": load_avg()})

    def save() -> None:
        write_bytes_atomically(out, json.dumps(data, indent=1).encode())

    for key in keys:
        zoo_name, variants = models[key]
        fp32 = export_fp32(key, zoo_name, folder)
        entry = data["models"].setdefault(key, {"weights": zoo_name or "random (seed 0): no trained DITN weights",
                                                "variants": {}})
        if "fp32" not in entry:
            entry["fp32"] = score(fp32, None) if zoo_name else {"Set5": None, "Set14": None}
            save()
        paths = {}
        for label, kwargs in variants.items():
            path = folder / f"{key}_{label.replace('/', '_').replace('+', '_')}.onnx"
            row = entry["variants"].get(label)
            if row is None or not path.is_file():
                path, report = quantize(fp32, label, kwargs, folder)
                row = {"config": kwargs, "kept_fp32": report["kept_fp32"],
                       "calib_output_psnr_db": report["output_psnr_vs_fp32_db"], "quantize_s": report["seconds"]}
                row["psnr" if zoo_name else "fidelity_psnr_vs_fp32"] = score(path, None if zoo_name else fp32)
                entry["variants"][label] = row
                save()
                print(f"{key} {label}: {row.get('psnr') or row.get('fidelity_psnr_vs_fp32')}", flush=True)
            paths[label] = path
        timed = latency([fp32, *paths.values()], args.repeats)
        entry["fp32"]["latency"] = timed[0]
        for label, result in zip(paths, timed[1:]):
            entry["variants"][label]["latency"] = result
            entry["variants"][label]["speedup_vs_fp32"] = timed[0]["median_ms"] / result["median_ms"]
        save()
        if key == BEST[0]:
            data["profile"] = profile([fp32, paths[BEST[1]], paths["percentile"]])
            save()
    data["load"][-1]["end"] = load_avg()
    save()
    print_table(data)


def print_table(data: dict) -> None:
    print("| model | variant | Set5 | Set14 | ms (median) | speed-up vs fp32 ORT | fp32 layers kept |")
    print("|---|---|---|---|---|---|---|")
    for key, entry in data["models"].items():
        fp32 = entry["fp32"]
        base = f"{fp32['Set5']:.3f} | {fp32['Set14']:.3f}" if fp32.get("Set5") else "(reference) | (reference)"
        print(f"| {key} | fp32 ORT | {base} | {fp32['latency']['median_ms']:.0f} | 1.00 | all |")
        for label, row in entry["variants"].items():
            if "psnr" in row:
                cells = " | ".join(f"{row['psnr'][s] - fp32[s]:+.3f}" for s in ("Set5", "Set14"))
            else:
                cells = " | ".join(f"{row['fidelity_psnr_vs_fp32'][s]:.2f} dB vs fp32" for s in ("Set5", "Set14"))
            print(f"| {key} | {label} | {cells} | {row['latency']['median_ms']:.0f} | "
                  f"{row['speedup_vs_fp32']:.2f} | {len(row['kept_fp32'])} |")


if __name__ == "__main__":
    main()
