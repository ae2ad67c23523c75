"""Every available backend x precision for RLFN x4, RLFN-S x4 and DITN-Real x4: speed and quality in one run.

For each model every registered backend x precision is built by ``esr.backends.create_backend``,
the objects ``esr upscale`` runs: onnxruntime and OpenVINO on the default-recipe deploy graph
(what ``esr export --dynamic`` writes) and, at int8, on QDQ graphs made by ``esr quantize`` from
it; torch on the model. A combination that cannot run keeps its one-line reason (TensorRT: no
CUDA here). Per candidate:

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
    run: Callable[[torch.Tensor], torch.Tensor] | None = None
    error: str | None = None
    result: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.backend} {self.precision}" + (f" ({self.graph})" if self.graph.startswith("int8") else "")


def open_bench_model(name: str, ditn_weights: str | None):
    """(LoadedModel, where its weights come from)."""
    from esr.loading import open_model

    if name != "ditn_real_x4":
        return open_model(name), "official"
    if ditn_weights:
        return open_model(ditn_weights), f"trained: {ditn_weights}"
    demo = Path("experiments/demo_ditn_real_x4/final.pth")
    if demo.is_file():
        return open_model(demo), f"trained: {demo} (CPU demo)"
    return open_model("ditn_real", allow_untrained=True), "random (seed 0): DITN-Real has no released weights"


def int8_graphs(loaded, variants: list[str], calib: Path, folder: Path) -> dict[str, Path]:
    """``esr quantize``'s QDQ graphs of ``loaded``'s deploy graph (the one the backends run), by variant."""
    import onnx

    from esr.backends.graph_cache import cached_deploy_graph
    from esr.quantize.pipeline import QuantConfig, quantize_onnx

    graphs = {}
    for name in variants:
        config = QuantConfig(method="percentile", weight_type="s8", num_calib=32, crop_size=96, downscale=4,
                             **INT8_VARIANTS[name])
        model, report = quantize_onnx(onnx.load(str(cached_deploy_graph(loaded))), str(calib), config, progress=False)
        graphs[f"int8-{name}"] = folder / f"int8-{name}.onnx"
        onnx.save(model, str(graphs[f"int8-{name}"]))
        print(f"  int8-{name}: {len(report['kept_fp32'])} layers kept fp32, "
              f"{report['output_psnr_vs_fp32_db']:.2f} dB vs fp32 on calibration crops", flush=True)
    return graphs


def candidate_rows(loaded, graphs: dict[str, Path], threads: int) -> list[Row]:
    """Every registered backend x precision on the model, and the INT8 runtimes on each QDQ graph; one that cannot
    be built keeps its one-line reason. onnxruntime fp32 (the reference) first."""
    from esr.backends import BACKENDS, create_backend, runtime_names
    from esr.errors import EsrError
    from esr.loading import open_model

    plans = [("onnxruntime", "fp32", "fp32", loaded)]
    for name in runtime_names():
        spec = BACKENDS.get(name)
        if "cpu" not in spec.devices or spec.kinds == ("engine",):
            continue
        plans += [(name, p, "fp32", loaded) for p in spec.precisions if p != "int8" and (name, p) != ("onnxruntime", "fp32")]
        if "onnx" in spec.kinds:
            plans += [(name, "int8", graph, open_model(path)) for graph, path in graphs.items()]
    rows = []
    for backend, precision, graph, model in plans:
        try:
            rows.append(Row(backend, precision, graph, run=create_backend(backend, model, "cpu", precision, threads)))
        except EsrError as err:
            rows.append(Row(backend, precision, graph, error=str(err)))
    rows.append(Row("tensorrt", "fp32/fp16/int8", "engine", error="TensorRT needs a CUDA GPU (none on this machine)"
                    if not torch.cuda.is_available() else "not measured by this CPU script (see scripts/gpu_check.py)"))
    return rows


def quality(rows: list[Row], set5: Path) -> None:
    """Set5 Y-PSNR and output PSNR vs onnxruntime fp32 (Set5 LR and the sample image) for every row that runs."""
    import cv2

    from esr.autoselect import EXACT_DB
    from esr.evaluate import evaluate
    from esr.metrics import fidelity_psnr
    from esr.sample import sample_batch

    reference = rows[0]
    scale = reference.run.descriptor.scale
    lr = [torch.from_numpy(np.ascontiguousarray(cv2.imread(str(p))[..., ::-1].transpose(2, 0, 1)[None],
                                                dtype=np.float32) / 255)
          for p in sorted((set5 / "LR_bicubic" / f"X{scale}").glob("*.png"))]
    sample = torch.from_numpy(sample_batch())
    ref_lr, ref_sample = [reference.run(x) for x in lr], reference.run(sample)
    for row in rows:
        if row.run is None:
            continue
        score = evaluate(row.run, set5, scale, progress=False)
        row.result.update(set5_psnr_y=score["psnr_y"], set5_ssim_y=score["ssim_y"],
                          psnr_vs_fp32_set5=min(fidelity_psnr(ref_lr, [row.run(x) for x in lr]), EXACT_DB),
                          psnr_vs_fp32_sample=min(fidelity_psnr([ref_sample], [row.run(sample)]), EXACT_DB))
    for row in rows:
        if "set5_psnr_y" in row.result:
            row.result["set5_delta_db"] = row.result["set5_psnr_y"] - reference.result["set5_psnr_y"]


def timing(rows: list[Row], rounds: int, warmup: int = 2) -> None:
    """Median ms of interleaved rounds on a 1x3x256x256 input, and the ratio to onnxruntime fp32."""
    x = torch.rand(SHAPE, generator=torch.Generator().manual_seed(0))
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
    from esr.backends.openvino_runtime import openvino_version
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
        loaded, weights = open_bench_model(name, args.ditn_weights)
        print(f"{name} ({weights})", flush=True)
        with tempfile.TemporaryDirectory(prefix="esr-bench-precision-") as tmp:
            rows = candidate_rows(loaded, int8_graphs(loaded, variants, calib, Path(tmp)), args.threads)
            quality(rows, set5)
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
