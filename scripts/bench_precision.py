"""Every available backend x precision for RLFN x4, RLFN-S x4 and DITN-Real x4: speed and quality in one run.

For each model the default-recipe deploy graph (what ``esr export --dynamic`` writes) runs on
onnxruntime (fp32, and INT8 QDQ graphs made by ``esr quantize``), OpenVINO (f32/bf16/f16 hints,
INT8 from the same QDQ graphs) and torch (fp32, bf16 where the CPU has it); TensorRT rows say
why they cannot run without CUDA. Per candidate:

- ``median_ms``: median of ``--rounds`` interleaved rounds (every candidate runs once per round,
  so a load change on a shared machine hits all alike) on a 1x3x256x256 input, after 2 warm-up
  calls (OpenVINO compiles the static shape on its second call), ``--threads`` threads each;
- ``vs_ort_fp32``: onnxruntime fp32's median / this median, from the same run;
- ``set5_psnr_y`` and ``set5_delta_db``: Set5 x4 Y-PSNR (``esr eval``'s protocol: whole images,
  4 px border, BasicSR's metric) and its change from onnxruntime fp32;
- ``psnr_vs_fp32_set5`` / ``psnr_vs_fp32_sample``: output PSNR (peak 1) against onnxruntime fp32
  on the Set5 LR images and on the package's sample image (what ``--backend auto`` checks).

INT8 graphs (``--int8``): ``all`` = every layer INT8 (percentile ranges, s8 weights: VNNI/AMX),
``fallback`` = ``--target-db 47 --max-kept 40`` (mixed precision: the most sensitive layers stay
fp32), calibrated on 32 crops of T91 downscaled 4x. DITN-Real x4 has no released weights: the
script uses ``--ditn-weights`` (e.g. the CPU demo of options/demo_ditn_real_x4.yml) or, when absent,
random weights (seed 0), and says so in the JSON; its Set5 PSNR then means nothing, its drop little.

Usage:
    python scripts/bench_precision.py [--models rlfn_x4,rlfn_s_x4,ditn_real_x4] [--rounds 8]
        [--int8 all,fallback] [--ditn-weights CKPT] [--out results/bench_precision]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

SHAPE = (1, 3, 256, 256)
INT8_VARIANTS = {"all": {}, "fallback": {"target_db": 47.0, "max_kept": 40}}
"""INT8 graph name -> esr quantize options beyond the common ones (percentile ranges, s8 weights)."""


@dataclass
class Row:
    """One backend x precision (x INT8 graph) of one model."""

    backend: str
    precision: str
    graph: str
    run: Callable[[np.ndarray], np.ndarray] | None = None
    error: str | None = None
    result: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.backend} {self.precision}" + (f" ({self.graph})" if self.graph not in ("fp32", "torch") else "")


def load_module(name: str, ditn_weights: str | None) -> tuple[torch.nn.Module, str]:
    from esr.archs.presets import build_model
    from esr.loading import load_model

    if name != "ditn_real_x4":
        return load_model(name), "official"
    if ditn_weights:
        return load_model(ditn_weights), f"trained: {ditn_weights}"
    demo = Path("experiments/demo_ditn_real_x4/final.pth")
    if demo.is_file():
        return load_model(demo), f"trained: {demo} (CPU demo)"
    torch.manual_seed(0)
    return build_model("ditn_real", 4).eval(), "random (seed 0): DITN-Real has no released weights"


def deploy_graph_file(module: torch.nn.Module, folder: Path) -> Path:
    from esr import plugins
    from esr.export.onnx_export import save_atomic
    from esr.export.pipeline import slim_export

    deployed = plugins.apply(module, plugins.resolve_recipe(module, "default"))
    return save_atomic(slim_export(deployed, 64, 64, True, 17), folder / "fp32.onnx")


def int8_graphs(fp32: Path, variants: list[str], calib: Path, folder: Path) -> dict[str, Path]:
    import onnx

    from esr.export.onnx_export import save_atomic
    from esr.quantize.pipeline import QuantConfig, quantize_onnx

    graphs = {}
    for name in variants:
        config = QuantConfig(method="percentile", weight_type="s8", num_calib=32, crop_size=96, downscale=4,
                             **INT8_VARIANTS[name])
        model, report = quantize_onnx(onnx.load(str(fp32)), str(calib), config, progress=False)
        graphs[f"int8-{name}"] = save_atomic(model, folder / f"int8-{name}.onnx")
        print(f"  int8-{name}: {len(report['kept_fp32'])} layers kept fp32, "
              f"{report['output_psnr_vs_fp32_db']:.2f} dB vs fp32 on calibration crops", flush=True)
    return graphs


def candidate_rows(module: torch.nn.Module, graphs: dict[str, Path], threads: int) -> list[Row]:
    """Build every candidate; one that cannot be built keeps its one-line reason."""
    from esr.errors import EsrError
    from esr.export.pipeline import ort_session
    from esr.openvino_runtime import OpenVINORunner
    from esr.torch_precision import TorchRunner

    def ort(path: Path):
        session = ort_session(path, threads=threads)
        return lambda x: session.run(None, {"input": x})[0]

    def torch_run(precision: str):
        runner = TorchRunner(module, "cpu", precision)
        return lambda x: runner(torch.from_numpy(x)).numpy()

    plans: list[tuple[str, str, str, Callable[[], Callable]]] = [("onnxruntime", "fp32", "fp32", lambda: ort(graphs["fp32"]))]
    plans += [("onnxruntime", "int8", g, (lambda p: lambda: ort(p))(p)) for g, p in graphs.items() if g != "fp32"]
    for precision in ("fp32", "bf16", "fp16"):
        plans.append(("openvino", precision, "fp32",
                      (lambda pr: lambda: OpenVINORunner(graphs["fp32"], "cpu", pr, threads))(precision)))
    plans += [("openvino", "int8", g, (lambda p: lambda: OpenVINORunner(p, "cpu", "int8", threads))(p))
              for g, p in graphs.items() if g != "fp32"]
    for precision in ("fp32", "bf16", "fp16"):
        plans.append(("torch", precision, "torch", (lambda pr: lambda: torch_run(pr))(precision)))
    rows = []
    for backend, precision, graph, build in plans:
        try:
            rows.append(Row(backend, precision, graph, run=build()))
        except EsrError as err:
            rows.append(Row(backend, precision, graph, error=str(err)))
    rows.append(Row("tensorrt", "fp32/fp16/int8", "engine", error="TensorRT needs a CUDA GPU (none on this machine)"
                    if not torch.cuda.is_available() else "not measured by this CPU script (see scripts/gpu_check.py)"))
    return rows


class ArrayBackend:
    """A numpy runner dressed as an :mod:`esr.backends` backend for :func:`esr.evaluate.evaluate`."""

    device, max_hw = "cpu", None

    def __init__(self, name: str, run: Callable[[np.ndarray], np.ndarray], scale: int) -> None:
        self.name, self.run, self.scale = name, run, scale

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.run(x.float().contiguous().numpy())))


def quality(rows: list[Row], scale: int, set5: Path) -> None:
    """Set5 Y-PSNR and output PSNR vs onnxruntime fp32 (Set5 LR and the sample image) for every row that runs."""
    import cv2

    from esr.autoselect import EXACT_DB
    from esr.evaluate import evaluate
    from esr.metrics import fidelity_psnr
    from esr.sample import sample_batch

    lr = [np.ascontiguousarray(cv2.imread(str(p))[..., ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / 255
          for p in sorted((set5 / "LR_bicubic" / f"X{scale}").glob("*.png"))]
    sample = sample_batch()
    reference = rows[0]
    ref_lr, ref_sample = [reference.run(x) for x in lr], reference.run(sample)
    for row in rows:
        if row.run is None:
            continue
        score = evaluate(ArrayBackend(row.label, row.run, scale), set5, scale, progress=False)
        row.result.update(set5_psnr_y=score["psnr_y"], set5_ssim_y=score["ssim_y"],
                          psnr_vs_fp32_set5=min(fidelity_psnr(ref_lr, [row.run(x) for x in lr]), EXACT_DB),
                          psnr_vs_fp32_sample=min(fidelity_psnr([ref_sample], [row.run(sample)]), EXACT_DB))
    for row in rows:
        if "set5_psnr_y" in row.result:
            row.result["set5_delta_db"] = row.result["set5_psnr_y"] - reference.result["set5_psnr_y"]


def timing(rows: list[Row], rounds: int, warmup: int = 2) -> None:
    """Median ms of interleaved rounds on a 1x3x256x256 input, and the ratio to onnxruntime fp32."""
    x = np.random.default_rng(0).random(SHAPE, dtype=np.float32)
    live = [row for row in rows if row.run is not None]
    for row in live:
        for _ in range(warmup):
            row.run(x)
    times: dict[int, list[float]] = {id(row): [] for row in live}
    for _ in range(rounds):
        for row in live:
            start = time.perf_counter()
            row.run(x)
            times[id(row)].append((time.perf_counter() - start) * 1e3)
    for row in live:
        row.result.update(median_ms=statistics.median(times[id(row)]), times_ms=times[id(row)])
    base = rows[0].result["median_ms"]
    for row in live:
        row.result["vs_ort_fp32"] = base / row.result["median_ms"]


def print_table(model: str, rows: list[Row]) -> None:
    print(f"{model}:")
    print(f"  {'backend precision (graph)':<34}{'ms':>8}{'vs ORT':>8}{'Set5 Y':>9}{'delta':>8}{'dB vs fp32':>11}")
    for row in rows:
        if row.error:
            print(f"  {row.label:<34}  cannot run: {row.error}")
            continue
        r = row.result
        print(f"  {row.label:<34}{r['median_ms']:>8.1f}{r['vs_ort_fp32']:>7.2f}x{r['set5_psnr_y']:>9.3f}"
              f"{r['set5_delta_db']:>+8.3f}{r['psnr_vs_fp32_set5']:>11.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="rlfn_x4,rlfn_s_x4,ditn_real_x4")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved timing rounds (default 8)")
    parser.add_argument("--threads", type=int, default=2, help="threads for every runtime (default 2)")
    parser.add_argument("--int8", default="all,fallback", help="INT8 graphs to make: all, fallback, none")
    parser.add_argument("--ditn-weights", default=None, help="trained DITN-Real x4 checkpoint (default: random)")
    parser.add_argument("--out", default="results/bench_precision", help="output folder for the JSON")
    args = parser.parse_args(argv)

    from esr.bench import machine_info, save_result
    from esr.capabilities import cpu_summary
    from esr.openvino_runtime import openvino_version
    from esr.paths import shared_dir

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    shared = shared_dir()
    set5, calib = shared / "datasets" / "Set5", shared / "datasets" / "T91"
    if not set5.is_dir():
        print(f"error: {set5}: Set5 not found (set ESR_SHARED)", file=sys.stderr)
        return 2
    variants = [v for v in args.int8.split(",") if v and v != "none"]
    machine = machine_info()
    machine["cpu_units"] = cpu_summary()
    machine["versions"]["openvino"] = openvino_version()
    record = {"shape": list(SHAPE), "threads": args.threads, "rounds": args.rounds, "int8": variants,
              "machine": machine, "models": {}}
    for name in args.models.split(","):
        module, weights = load_module(name, args.ditn_weights)
        print(f"{name} ({weights})", flush=True)
        with tempfile.TemporaryDirectory(prefix="esr-bench-precision-") as tmp:
            fp32 = deploy_graph_file(module, Path(tmp))
            graphs = {"fp32": fp32, **int8_graphs(fp32, variants, calib, Path(tmp))}
            rows = candidate_rows(module, graphs, args.threads)
            quality(rows, module.descriptor.scale, set5)
            timing(rows, args.rounds)
        print_table(name, rows)
        record["models"][name] = {"weights": weights, "rows": [
            {"backend": r.backend, "precision": r.precision, "graph": r.graph, "error": r.error, **r.result}
            for r in rows]}
    record["load_avg_after"] = machine_info()["load_avg"]
    path = save_result(record, args.out, "bench_precision")
    print(f"{machine['cpu']} ({', '.join(u for v in machine['cpu_units'].values() for u in v)}), "
          f"{machine['cores']} cores; load {machine['load_avg']} -> {record['load_avg_after']}; saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
