"""One command for a machine with a CUDA GPU: what esr gets out of it, saved as JSON (under 8 minutes).

Sections (each records its figures, or ``skipped`` with the reason, and never stops the others):

1. ``torch``: RLFN x4 at 1x3x256x256 and 1x3x512x512 in fp32, fp16 and bf16, channels_last and
   contiguous, with and without a CUDA graph; median ms (CUDA events) and output PSNR vs fp32.
2. ``onnxruntime``: the default deploy graph on the CUDA execution provider, if onnxruntime-gpu is installed.
3. ``tensorrt``: fp32 and fp16 engines built from the same graph, if TensorRT is importable.
4. ``analyze``: ``esr analyze``'s prediction for this GPU's datasheet profile (by GPU name) against
   the times measured in 1 and 3 (relative error). ``esr analyze --calibrate`` profiles
   onnxruntime on the CPU only, so there is no GPU calibration to run: recorded as skipped.
5. ``upscale``: the ``esr upscale`` path (:class:`esr.upscaler.Upscaler`, tiles of 256) in fp16 vs
   fp32 on the Set14 LR x4 images (``$ESR_SHARED``; the package sample image when absent):
   PSNR of the uint8 outputs and images/s.
6. ``training``: 200 iterations of RLFN-S x4 (batch 16, LR 32) with ``train.amp``, and 50 without,
   ms per step; needs BasicSR (skipped with the reason when it is not installed).

Only inference dependencies are needed (torch, onnx, onnxruntime[-gpu], optionally TensorRT);
BasicSR only for section 6. ``--dry-run`` runs every section on the CPU with tiny shapes and a
tiny model, to check the script itself (its figures mean nothing).

Usage:
    python scripts/gpu_check.py                 # on the GPU machine; JSON to results/gpu_check/
    python scripts/gpu_check.py --dry-run --out /tmp/gpu_check
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

GPU_PROFILES = {"H200": "h200", "H100": "h100-sxm", "A100": "a100", "L4": "l4", "RTX 3090": "rtx3090",
                "RTX 4090": "rtx4090"}
"""Substring of the CUDA device name -> esr analyze datasheet profile."""


class Config:
    """What the run measures: full sizes on CUDA, or tiny ones on the CPU (``dry_run``)."""

    def __init__(self, dry_run: bool) -> None:
        self.dry_run = dry_run
        self.device = "cpu" if dry_run else "cuda"
        self.model = "rlfn_s_x4" if dry_run else "rlfn_x4"
        self.shapes = [(1, 3, 32, 32)] if dry_run else [(1, 3, 256, 256), (1, 3, 512, 512)]
        self.runs, self.warmup = (2, 1) if dry_run else (20, 5)
        self.tile = 32 if dry_run else 256
        self.images = 2 if dry_run else 14
        self.train_iters = (2, 2) if dry_run else (200, 50)
        self.train_batch, self.train_lr = (2, 16) if dry_run else (16, 32)


def section(name: str, results: dict, fn: Callable[[], dict]) -> None:
    """Run one section; its dict, or ``{"skipped": reason}`` / ``{"error": ...}``, goes to ``results[name]``."""
    start = time.perf_counter()
    try:
        results[name] = fn()
    except Skip as reason:
        results[name] = {"skipped": str(reason)}
    except Exception as err:  # a broken section must not lose the others' figures
        results[name] = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(limit=4)}
    results[name]["seconds"] = round(time.perf_counter() - start, 1)
    print(f"[{name}] {json.dumps({k: v for k, v in results[name].items() if k != 'traceback'})[:400]}", flush=True)


class Skip(Exception):
    """A section that cannot run here; the message says why."""


def timed(fn: Callable[[], Any], cfg: Config) -> float:
    from esr.bench import time_runs

    return time_runs(fn, cfg.runs, cfg.warmup, device=cfg.device).median_ms


def psnr(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Output PSNR (dB, peak 1), capped at 999 for equal outputs (JSON has no infinity)."""
    from esr.autoselect import EXACT_DB
    from esr.metrics import fidelity_psnr

    return min(fidelity_psnr([np.asarray(a, np.float64)], [np.asarray(b, np.float64)]), EXACT_DB)


def load(cfg: Config) -> torch.nn.Module:
    from esr.loading import load_model

    return load_model(cfg.model)


def deploy_onnx(cfg: Config, folder: Path) -> Path:
    """The default-recipe deploy graph (dynamic H/W) of the model, as ``esr export --dynamic`` writes it."""
    from esr.export.graph import build_deploy_graph

    return build_deploy_graph(cfg.model).save(folder / f"{cfg.model}.onnx")


def torch_section(cfg: Config) -> dict:
    from esr.capabilities import native_units

    model = load(cfg)
    precisions = ["fp32", "fp16", "bf16"]
    if cfg.dry_run:
        precisions = ["fp32"] + (["bf16"] if native_units("bf16") else [])
    rows = []
    for shape in cfg.shapes:
        x = torch.rand(shape, device=cfg.device)
        with torch.inference_mode():
            reference = model.to(cfg.device).float()(x).float()
        for precision in precisions:
            dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
            for layout in (torch.channels_last, torch.contiguous_format):
                net = load(cfg).to(cfg.device, dtype=dtype).to(memory_format=layout).eval()
                xin = x.to(dtype).contiguous(memory_format=layout)
                with torch.inference_mode():
                    out = net(xin)
                    ms = timed(lambda: net(xin), cfg)
                row = {"shape": list(shape), "precision": precision, "layout": str(layout).split(".")[-1],
                       "median_ms": ms, "psnr_vs_fp32_db": psnr(out.float().cpu(), reference.cpu())}
                if cfg.device == "cuda":
                    row["cuda_graph_ms"] = cuda_graph_ms(net, xin, cfg)
                rows.append(row)
    return {"model": cfg.model, "rows": rows,
            "note": "cuda_graph_ms: the same call replayed from a captured CUDA graph" if cfg.device == "cuda"
            else "CUDA graphs need CUDA (dry run)"}


def cuda_graph_ms(net: torch.nn.Module, x: torch.Tensor, cfg: Config) -> float:
    static_in = x.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.inference_mode():
        for _ in range(3):
            net(static_in)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.inference_mode():
        net(static_in)
    return timed(graph.replay, cfg)


def onnxruntime_section(cfg: Config, folder: Path) -> dict:
    import onnxruntime as ort

    from esr.backends.sessions import CUDA_PROVIDER, ort_session

    if not cfg.dry_run and CUDA_PROVIDER not in ort.get_available_providers():
        raise Skip(f"onnxruntime {ort.__version__} has no {CUDA_PROVIDER} (pip install onnxruntime-gpu)")
    provider = "CPUExecutionProvider" if cfg.dry_run else CUDA_PROVIDER
    session = ort_session(deploy_onnx(cfg, folder), device=cfg.device)
    rows = []
    for shape in cfg.shapes:
        x = np.random.default_rng(0).random(shape, dtype=np.float32)
        ms = timed(lambda: session.run(None, {"input": x}), cfg)
        rows.append({"shape": list(shape), "precision": "fp32", "median_ms": ms,
                     "note": "includes host<->device copies (session.run on numpy)"})
    return {"provider": provider, "version": ort.__version__, "rows": rows}


def tensorrt_section(cfg: Config, folder: Path) -> dict:
    try:
        import tensorrt
    except ImportError:
        raise Skip("TensorRT is not importable (pip install 'esr[trt]')") from None
    if cfg.dry_run:
        raise Skip("TensorRT needs CUDA (dry run)")
    from esr.export.trt_build import EngineSpec, build_engine
    from esr.export.trt_runner import TRTRunner

    path = deploy_onnx(cfg, folder)
    rows = []
    for precision in ("fp32", "fp16"):
        largest = max(cfg.shapes)
        spec = EngineSpec(onnx_path=path, engine_path=folder / f"{precision}.engine", min_shape=min(cfg.shapes),
                          opt_shape=cfg.shapes[0], max_shape=largest, precision=precision)
        build_engine(spec, {"source_model": cfg.model})
        runner = TRTRunner(str(spec.engine_path))
        for shape in cfg.shapes:
            x = torch.rand(shape, device="cuda")
            rows.append({"shape": list(shape), "precision": precision, "median_ms": timed(lambda: runner(x), cfg)})
    return {"version": tensorrt.__version__, "rows": rows}


def analyze_section(cfg: Config, results: dict) -> dict:
    from esr.analyze.graph import analyze_graph
    from esr.export.graph import build_deploy_graph
    from esr.analyze.hardware import get_profile
    from esr.analyze.roofline import predict, totals

    name = torch.cuda.get_device_name(0) if cfg.device == "cuda" else "dry run"
    profile = next((p for key, p in GPU_PROFILES.items() if key in name), "h200" if cfg.dry_run else None)
    if profile is None:
        raise Skip(f"no datasheet profile for {name} in esr/analyze/profiles")
    hw = get_profile(profile)
    measured = {}
    for row in results.get("torch", {}).get("rows", []):
        if row["layout"] == "channels_last" and row["precision"] in ("fp32", "fp16"):
            measured[("torch", row["precision"], tuple(row["shape"]))] = row.get("cuda_graph_ms") or row["median_ms"]
    for row in results.get("tensorrt", {}).get("rows", []):
        measured[("tensorrt", row["precision"], tuple(row["shape"]))] = row["median_ms"]
    rows = []
    for shape in cfg.shapes:
        graph = build_deploy_graph(cfg.model, "default", shape=shape)
        for precision in ("fp32", "fp16"):
            predicted = totals(predict(analyze_graph(graph.model, precision), hw, precision))["time_ms"]
            for (runtime, prec, shp), ms in measured.items():
                if prec == precision and shp == tuple(shape):
                    rows.append({"runtime": runtime, "precision": precision, "shape": list(shape), "measured_ms": ms,
                                 "predicted_ms": predicted, "relative_error": (predicted - ms) / ms})
    return {"profile": hw.name, "calibrate": "skipped: esr analyze --calibrate profiles onnxruntime on the CPU only",
            "rows": rows}


def upscale_section(cfg: Config) -> dict:
    import cv2

    from esr.backends import create_backend
    from esr.errors import EsrError
    from esr.paths import shared_dir
    from esr.sample import sample_rgb
    from esr.upscaler import Upscaler

    folder = shared_dir() / "datasets" / "Set14" / "LR_bicubic" / "X4"
    files = sorted(folder.glob("*.png"))[: cfg.images]
    if files:
        images, source = [np.ascontiguousarray(cv2.imread(str(p))[..., ::-1]) for p in files], str(folder)
    else:
        images, source = [sample_rgb()], "the package sample image (no Set14 found; set ESR_SHARED)"
    fast = "fp16" if cfg.device == "cuda" else "bf16"
    backends = {"fp32": create_backend("torch", cfg.model, cfg.device, "fp32")}
    try:
        backends[fast] = create_backend("torch", cfg.model, cfg.device, fast)
    except EsrError as err:  # no native bf16 on this CPU (dry run)
        raise Skip(str(err)) from None
    outputs, rates = {}, {}
    for name, backend in backends.items():
        upscaler = Upscaler(backend, tile=cfg.tile, tile_pad=8)
        start = time.perf_counter()
        outputs[name] = [upscaler.upscale_array(image) for image in images]
        rates[name] = len(images) / (time.perf_counter() - start)
    scores = [psnr(a / 255.0, b / 255.0) for a, b in zip(outputs[fast], outputs["fp32"])]
    return {"source": source, "images": len(images), "tile": cfg.tile, "precision": fast,
            "psnr_vs_fp32_db": {"mean": statistics.fmean(scores), "min": min(scores)}, "images_per_s": rates}


def rlfn_s_train_options(amp: bool, iters: int, num_gpu: int) -> dict:
    """BasicSR options of an ESRModel training RLFN-S x4 (48 channels, 6 blocks) with L1 and Adam, no validation."""
    return {"name": "bench_train", "model_type": "ESRModel", "scale": 4, "num_gpu": num_gpu, "is_train": True,
            "dist": False, "rank": 0, "world_size": 1,
            "network_g": {"type": "RLFN", "feature_channels": 48, "mid_channels": 48, "num_blocks": 6,
                          "esa_channels": 16, "upscale": 4},
            "path": {"pretrain_network_g": None, "strict_load_g": True, "resume_state": None},
            "train": {"ema_decay": 0, "grad_clip": 0, "amp": amp, "channels_last": True,
                      "optim_g": {"type": "Adam", "lr": 5e-4, "betas": [0.9, 0.999]},
                      "scheduler": {"type": "MultiStepLR", "milestones": [100000], "gamma": 0.5},
                      "total_iter": iters, "warmup_iter": -1, "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0}},
            "val": None, "logger": {"print_freq": 1000, "save_checkpoint_freq": 1000, "use_tb_logger": False}}


def training_section(cfg: Config) -> dict:
    try:
        from esr.train.bridge import register_all

        register_all()
    except Exception as err:  # BasicSR missing or broken: the point of this check is to say so
        raise Skip(f"training needs BasicSR ({type(err).__name__}: {err}); pip install basicsr==1.4.2") from None
    from esr.train.model import ESRModel, amp_dtype

    dtype, note = amp_dtype(torch.device(cfg.device))
    steps = {}
    for amp, iters in zip((True, False), cfg.train_iters):
        opt = rlfn_s_train_options(amp, iters, num_gpu=0 if cfg.dry_run else 1)
        model = ESRModel(opt)
        lq = torch.rand(cfg.train_batch, 3, cfg.train_lr, cfg.train_lr)
        gt = torch.rand(cfg.train_batch, 3, cfg.train_lr * 4, cfg.train_lr * 4)
        times = []
        for step in range(iters):
            model.feed_data({"lq": lq, "gt": gt})
            if cfg.device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            model.optimize_parameters(step)
            if cfg.device == "cuda":
                torch.cuda.synchronize()
            times.append((time.perf_counter() - start) * 1e3)
        steps["amp" if amp else "fp32"] = {"iters": iters, "median_ms": statistics.median(times[1:] or times),
                                           "final_loss": float(model.log_dict.get("l_pix", float("nan")))}
    return {"amp": note, "batch": cfg.train_batch, "lr_size": cfg.train_lr, "steps": steps}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes: check the script, not the GPU")
    parser.add_argument("--out", default="results/gpu_check", help="output folder (default results/gpu_check)")
    args = parser.parse_args(argv)
    cfg = Config(args.dry_run)
    if not cfg.dry_run and not torch.cuda.is_available():
        print("error: no CUDA GPU visible to torch (use --dry-run to check the script on a CPU)", file=sys.stderr)
        return 2
    if cfg.dry_run:
        torch.set_num_threads(1)
    from esr.bench import machine_info, save_result

    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    results: dict[str, Any] = {"dry_run": cfg.dry_run, "machine": machine_info(), "model": cfg.model}
    with tempfile.TemporaryDirectory(prefix="esr-gpu-check-") as tmp:
        folder = Path(tmp)
        section("torch", results, lambda: torch_section(cfg))
        section("onnxruntime", results, lambda: onnxruntime_section(cfg, folder))
        section("tensorrt", results, lambda: tensorrt_section(cfg, folder))
        section("analyze", results, lambda: analyze_section(cfg, results))
        section("upscale", results, lambda: upscale_section(cfg))
        section("training", results, lambda: training_section(cfg))
    path = save_result(results, args.out, "gpu_check_dry" if cfg.dry_run else "gpu_check")
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
