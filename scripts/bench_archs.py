"""CPU latency of each architecture esr runs through spandrel, at its default size: torch eager vs esr's paths.

For every CI case of ``scripts/arch_matrix.py`` (the issue's list) the class is built at its
default size (the class's default constructor arguments, scale set: ``ArchCase.default_kwargs``),
saved as a checkpoint and loaded with ``esr.load_model``, then timed on a 1 x C x S x S input:

* ``eager``: the loaded module called directly under ``torch.inference_mode`` (the reference);
* ``esr_torch``: esr's torch backend (what ``esr upscale --backend torch`` runs: channels_last);
* ``esr_onnxruntime``: esr's onnxruntime backend on the default-recipe deploy graph (dynamic, or
  static at S x S when the arch's graph keeps its trace size);
* ``esr_auto``: ``--backend auto`` (what ``esr upscale`` runs by default): it measures every
  runtime and precision on an S x S tile and runs the fastest one within its fidelity floor; the
  choice is recorded. ``speedup_vs_eager`` is auto's.

S is ``--size`` (default 256) or, when the model would need more than ``--memory-gb`` (default 4)
at that size, the largest of 256/192/128/96/64 whose memory fits: peak memory is extrapolated
linearly in pixels from the resident-memory growth of one call at 64x64 (an estimate). Each
path: ``--warmup`` untimed calls, ``--runs`` timed calls, median; the paths of one arch are timed
round-robin (one call each per round) so load changes hit them alike. Params and GMACs (MACs of
convolutions and matmuls counted by esr.complexity at S x S; ``gmacs_256`` scales them to 256x256
by pixel count) come from the same module.

    python scripts/bench_archs.py --threads 2                       # -> results/bench_archs.json
    python scripts/bench_archs.py --size 64 --runs 3 --out docs/results/bench_archs.json   # a quick run
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

import arch_matrix  # beside this script: the architectures and how to build them

REPO = Path(__file__).resolve().parent.parent
PROBE_SIDE = 64
SIDES = (256, 192, 128, 96, 64)


def rss_bytes() -> int:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@torch.inference_mode()
def fitting_side(model: torch.nn.Module, channels: int, wanted: int, budget: float) -> tuple[int, float]:
    """(side, estimated GB at ``wanted``): ``wanted`` if one call's extrapolated peak fits ``budget`` bytes,
    else the largest of :data:`SIDES` below it that does."""
    before = rss_bytes()
    model(torch.rand(1, channels, PROBE_SIDE, PROBE_SIDE))
    per_pixel = max(rss_bytes() - before, 1) / PROBE_SIDE**2
    estimate = per_pixel * wanted**2
    if estimate <= budget:
        return wanted, estimate / 1e9
    side = next((s for s in SIDES if s < wanted and per_pixel * s * s <= budget), PROBE_SIDE)
    return side, estimate / 1e9


def round_robin(paths: dict[str, Callable[[], object]], runs: int, warmup: int) -> dict[str, list[float]]:
    """Milliseconds of ``runs`` calls of each path, one call per path per round, after ``warmup`` rounds."""
    for _ in range(warmup):
        for call in paths.values():
            call()
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(runs):
        for name, call in paths.items():
            begin = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - begin) * 1e3)
    return times


def esr_onnxruntime(loaded, shape: tuple[int, int, int, int], workdir: Path, threads: int):
    """esr's onnxruntime backend on the default-recipe graph: dynamic, else static at ``shape``; and its kind."""
    from esr.backends import create_backend
    from esr.export.graph import DynamicShapeError, build_deploy_graph
    from esr.loading import open_model

    try:
        graph, kind = build_deploy_graph(loaded), "dynamic"
    except DynamicShapeError:
        graph, kind = build_deploy_graph(loaded, shape=shape), "static"
    path = graph.save(workdir / "model.onnx")
    return create_backend("onnxruntime", open_model(path), threads=threads), kind


def bench_case(case, args, workdir: Path) -> dict:
    from esr.backends import create_backend
    from esr.complexity import count_macs, count_params
    from esr.errors import EsrError
    from esr.loading import LoadedModel, load_model

    net = arch_matrix.seeded(case, default_size=True)
    model = load_model(arch_matrix.save_state_dict(net, workdir / f"default{case.suffix}"))
    del net
    d = model.descriptor
    side, estimate_gb = fitting_side(model, d.in_channels, args.size, args.memory_gb * 1e9)
    shape = (1, d.in_channels, side, side)
    macs = count_macs(model, side, side)
    record = {"case": case.name, "arch": d.arch, "scale": d.scale, "kwargs": case.default_kwargs,
              "params": count_params(model), "shape": list(shape), "estimated_gb_at_requested": round(estimate_gb, 2),
              "gmacs": macs / 1e9, "gmacs_256": macs / 1e9 * (256 / side) ** 2}
    x = torch.rand(shape)
    loaded = LoadedModel.from_module(model)
    paths: dict[str, Callable[[], object]] = {}

    def eager() -> object:
        with torch.inference_mode():
            return model(x)

    paths["eager"] = eager
    paths["esr_torch"] = lambda backend=create_backend("torch", loaded, threads=args.threads): backend(x)
    try:
        ort, kind = esr_onnxruntime(loaded, shape, workdir, args.threads)
        paths["esr_onnxruntime"] = lambda: ort(x)
        record["onnx"] = kind
    except EsrError as err:
        record["onnx"] = f"fails: {err}"
    auto = create_backend("auto", loaded, threads=args.threads, tile_hw=(side, side), quiet=True)
    paths["esr_auto"] = lambda: auto(x)
    record["auto_choice"] = f"{auto.chosen.name} {auto.precision}"
    times = round_robin(paths, args.runs, args.warmup)
    record["median_ms"] = {name: statistics.median(ms) for name, ms in times.items()}
    record["runs_ms"] = times
    record["speedup_vs_eager"] = record["median_ms"]["eager"] / record["median_ms"]["esr_auto"]
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256, help="input side (default 256; smaller if memory says so)")
    parser.add_argument("--memory-gb", type=float, default=4.0, help="memory one call may need (default 4)")
    parser.add_argument("--runs", type=int, default=10, help="timed calls per path (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds (default 2)")
    parser.add_argument("--threads", type=int, default=0, help="torch and onnxruntime threads (0: library default)")
    parser.add_argument("--case", action="append", default=None, help="only these cases (default: the CI cases)")
    parser.add_argument("--out", default=str(REPO / "results" / "bench_archs.json"), help="JSON output")
    args = parser.parse_args()
    if args.size < PROBE_SIDE or args.runs < 1 or args.warmup < 0 or args.threads < 0:
        parser.error(f"need --size >= {PROBE_SIDE}, --runs >= 1, --warmup >= 0, --threads >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = [c for c in arch_matrix.CASES if (c.name in args.case if args.case else c.ci)]
    from esr.bench import machine_info
    from esr.fileio import write_output_bytes

    records = []
    with tempfile.TemporaryDirectory(prefix="esr-bench-archs-") as tmp:
        for index, case in enumerate(cases):
            workdir = Path(tmp) / str(index)
            workdir.mkdir()
            try:
                record = bench_case(case, args, workdir)
            except Exception as err:  # one arch failing must not lose the others' figures
                print(f"{case.name}: failed: {type(err).__name__}: {err}", flush=True)
                records.append({"case": case.name, "error": f"{type(err).__name__}: {err}"})
                continue
            records.append(record)
            medians = ", ".join(f"{name} {ms:.1f} ms" for name, ms in record["median_ms"].items())
            print(f"{case.name}: {record['params'] / 1e6:.3f} M params, {record['gmacs']:.2f} GMACs at "
                  f"{record['shape'][2]}x{record['shape'][3]}; {medians}; auto ({record['auto_choice']}) "
                  f"x{record['speedup_vs_eager']:.2f} vs eager", flush=True)
    result = {"protocol": {"size": args.size, "memory_gb": args.memory_gb, "runs": args.runs, "warmup": args.warmup,
                           "threads": args.threads or torch.get_num_threads(), "order": "round-robin per arch"},
              "machine": machine_info(), "archs": records}
    write_output_bytes(Path(args.out), (json.dumps(result, indent=1) + "\n").encode(), overwrite=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
