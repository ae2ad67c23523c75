"""CPU speed of the exported models vs PyTorch, measured in one run (interleaved rounds).

DITN-Real x4 (random weights, spandrel's state-dict layout, saved as a .pth like the official release):
  reference  spandrel ``DITN_Real`` in PyTorch eager (NCHW)
  also       esr DITN eager, onnxruntime on a plain export (recipe none), onnxruntime on
             the default deploy recipe (what ``esr export`` writes; the target: >= 2x faster than
             the reference), and ``esr_bench_onnxruntime``: the backend object that
             ``esr bench --backend onnxruntime --model ditn_real_x4.pth`` (and ``esr upscale``) runs
RLFN x4 (official weights when ../shared has them, else random):
  reference  esr RLFN in PyTorch eager, channels_last
  also       PyTorch eager NCHW, onnxruntime plain, onnxruntime default recipe (target: no slower),
             and ``esr_bench_onnxruntime`` on the same checkpoint

``bench_vs_export`` per group: the paired per-round time ratio esr_bench_onnxruntime /
ort_default_recipe (target: within 10%: the command times the graph that is shipped).

Graphs come from esr's one deploy-graph builder and sessions from its one session factory
(``--threads`` intra-op threads, ORT_ENABLE_ALL, no thread spinning; torch.set_num_threads for
torch); ``--warmup`` untimed runs, then ``--repeats`` rounds in which each backend runs once (so
load changes hit all of them alike). Reports median and p90 (ms), the ratio reference/backend,
the machine, versions and the load average; writes ``results/bench_export.json``.

    python scripts/bench_export.py [--repeats 12] [--size 256] [--threads 2] [--groups ditn_real,rlfn_x4]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort
import torch

from esr import plugins
from esr.archs.presets import build_model
from esr.backends import create_backend
from esr.backends.sessions import ort_session
from esr.export.graph import build_deploy_graph
from esr.fileio import replace_atomically, write_bytes_atomically

REPO = Path(__file__).resolve().parent.parent


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def randomised(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter redrawn (std 1/sqrt(fan_in) for weights, 0.5 for vectors) so no branch is a no-op."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            std = param[0].numel() ** -0.5 if param.ndim > 1 else 0.5
            param.copy_(torch.randn(param.shape, generator=generator) * std)
    return model.eval()


def onnx_runner(model: torch.nn.Module, recipe: list[str], size: int, threads: int, folder: Path) -> Callable:
    """A callable running ``model`` rewritten by ``recipe`` as a static size x size ONNX graph in onnxruntime
    (the graph ``esr export --recipe ...`` writes at its default static shape)."""
    graph = build_deploy_graph(model, recipe, (1, 3, size, size), dynamic=False)
    path = graph.save(folder / f"{type(model).__name__}-{'-'.join(recipe) or 'plain'}.onnx", overwrite=True)
    session = ort_session(path, threads=threads)
    return lambda x: session.run(None, {"input": x})[0]


def save_state_dict(model: torch.nn.Module, path: Path) -> Path:
    """A plain state dict file, as official releases ship them."""
    return replace_atomically(path, lambda tmp: torch.save(model.state_dict(), tmp))


def bench_runner(checkpoint: str | Path, threads: int) -> Callable:
    """The backend ``esr bench --backend onnxruntime --model CHECKPOINT --threads N`` times (its cached graph)."""
    backend = create_backend("onnxruntime", checkpoint, threads=threads)
    return lambda x: backend(torch.from_numpy(x))


def torch_runner(model: torch.nn.Module, channels_last: bool = False) -> Callable:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)

    def run(x: np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            return model(torch.from_numpy(x).contiguous(memory_format=fmt))

    return run


def time_rounds(backends: dict[str, Callable], x: np.ndarray, warmup: int, repeats: int) -> dict[str, list[float]]:
    from tqdm import tqdm

    for run in backends.values():
        for _ in range(warmup):
            run(x)
    times: dict[str, list[float]] = {name: [] for name in backends}
    for _ in tqdm(range(repeats), desc="rounds", leave=False):
        for name, run in backends.items():
            start = time.perf_counter()
            run(x)
            times[name].append((time.perf_counter() - start) * 1000)
    return times


def summarise(times: dict[str, list[float]], reference: str) -> dict[str, dict]:
    """Median/p90 ms per backend, the ratio of medians vs ``reference``, and the paired view: the
    median of the per-round ratios (each round runs every backend once, so a load change hits both
    sides of a ratio) and in how many rounds the backend beat the reference."""
    ref = statistics.median(times[reference])
    summary = {}
    for name, t in times.items():
        paired = [r / b for r, b in zip(times[reference], t)]
        summary[name] = {
            "median_ms": round(statistics.median(t), 1), "p90_ms": round(float(np.percentile(t, 90)), 1),
            "runs_ms": [round(v, 1) for v in t], "speedup_vs_reference": round(ref / statistics.median(t), 3),
            "paired_speedup_median": round(statistics.median(paired), 3),
            "rounds_faster_than_reference": sum(ratio > 1 for ratio in paired)}
    return summary


def bench_vs_export(times: dict[str, list[float]], group: str) -> dict:
    """Median over rounds of (esr bench backend ms / exported-graph session ms), and whether it is within 10%."""
    bench, export = times[f"{group}/esr_bench_onnxruntime"], times[f"{group}/ort_default_recipe"]
    ratio = statistics.median(b / e for b, e in zip(bench, export))
    return {"paired_time_ratio_median": round(ratio, 3), "within_10_percent": abs(ratio - 1) <= 0.10}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--groups", default="ditn_real,rlfn_x4", help="which comparisons to run")
    parser.add_argument("--out", default=str(REPO / "results" / "bench_export.json"))
    args = parser.parse_args()
    groups = args.groups.split(",")
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", torch.jit.TracerWarning)
    from spandrel.architectures.DITN import DITN as SpandrelDITN

    from esr.loading import load_model
    from esr.paths import shared_dir

    os.environ.setdefault("ESR_WEIGHTS_DIR", str(shared_dir() / "weights" / "rlfn"))  # offline: ../shared copies

    x = np.random.default_rng(0).random((1, 3, args.size, args.size), dtype=np.float32)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        folder = Path(tmp)
        os.environ["ESR_CACHE_DIR"] = str(folder / "cache")  # the backend's graph cache, fresh for this run
        reference_ditn = randomised(SpandrelDITN(upscale=4), seed=0)
        ditn_pth = folder / "ditn_real_x4.pth"
        save_state_dict(reference_ditn, ditn_pth)  # the official DITN-Real release's layout
        ditn = load_model(ditn_pth)
        try:
            rlfn, rlfn_weights = load_model("rlfn_x4"), "official rlfn_x4"
            rlfn_spec: str | Path = "rlfn_x4"
        except Exception as err:  # no weights offline: timing does not depend on the values
            rlfn, rlfn_weights = randomised(build_model("rlfn", 4), seed=1), f"random ({err})"
            rlfn_spec = folder / "rlfn_x4_random.pth"
            save_state_dict(rlfn, rlfn_spec)
        backends: dict[str, Callable] = {}
        if "ditn_real" in groups:
            backends.update({
                "ditn_real/spandrel_eager": torch_runner(reference_ditn),
                "ditn_real/esr_eager": torch_runner(ditn),
                "ditn_real/ort_plain": onnx_runner(ditn, [], args.size, args.threads, folder),
                "ditn_real/ort_default_recipe": onnx_runner(ditn, plugins.default_recipe(ditn), args.size,
                                                            args.threads, folder),
                "ditn_real/esr_bench_onnxruntime": bench_runner(ditn_pth, args.threads),
            })
        if "rlfn_x4" in groups:
            backends.update({
                "rlfn_x4/torch_channels_last": torch_runner(rlfn, channels_last=True),
                "rlfn_x4/torch_eager": torch_runner(copy.deepcopy(rlfn)),
                "rlfn_x4/ort_plain": onnx_runner(rlfn, [], args.size, args.threads, folder),
                "rlfn_x4/ort_default_recipe": onnx_runner(rlfn, plugins.default_recipe(rlfn), args.size,
                                                          args.threads, folder),
                "rlfn_x4/esr_bench_onnxruntime": bench_runner(rlfn_spec, args.threads),
            })
        times = time_rounds(backends, x, args.warmup, args.repeats)
    references = {"ditn_real": "ditn_real/spandrel_eager", "rlfn_x4": "rlfn_x4/torch_channels_last"}
    result = {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__, "numpy": np.__version__},
        "input": [1, 3, args.size, args.size], "scale": 4, "dtype": "float32", "threads": args.threads,
        "warmup": args.warmup, "repeats": args.repeats, "rlfn_weights": rlfn_weights,
        "ort_options": "esr.backends.sessions.ort_session: CPUExecutionProvider, ORT_ENABLE_ALL, "
                       "intra_op_num_threads=threads, no spinning",
        "recipes": {"ditn_real": plugins.default_recipe(ditn), "rlfn_x4": plugins.default_recipe(rlfn)},
    }
    for group in groups:
        group_times = {k: v for k, v in times.items() if k.startswith(f"{group}/")}
        result[group] = {"reference": references[group], "backends": summarise(group_times, references[group]),
                         "bench_vs_export": bench_vs_export(group_times, group)}
    out = write_bytes_atomically(args.out, (json.dumps(result, indent=2) + "\n").encode())
    print(f"{'backend':<36}{'median ms':>10}{'p90 ms':>10}{'x ref':>8}{'paired x':>10}{'wins':>6}")
    for group in groups:
        for name, row in result[group]["backends"].items():
            print(f"{name:<36}{row['median_ms']:>10}{row['p90_ms']:>10}{row['speedup_vs_reference']:>8}"
                  f"{row['paired_speedup_median']:>10}{row['rounds_faster_than_reference']:>4}/{args.repeats}")
        ratio = result[group]["bench_vs_export"]
        print(f"{group}: esr bench (onnxruntime, from the checkpoint) / exported graph, paired median "
              f"{ratio['paired_time_ratio_median']:.3f} ({'within' if ratio['within_10_percent'] else 'outside'} 10%)")
    print(f"load average before {load_before}, after {result['machine']['loadavg_after']}; wrote {out}")


if __name__ == "__main__":
    main()
