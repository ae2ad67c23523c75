"""Time `esr upscale` end to end on the Set14 LR x4 folder, and peak RSS on a 4000x3000 input.

Each configuration runs in its own subprocess (so its peak RSS is its own):

- backends ``torch``, ``onnxruntime`` (on the cached deploy graph) and ``auto`` (the default: the
  backend and precision it measured fastest here; its one-time measurement is in the warm-up),
  all with the embedded RLFN-S x4;
- modes ``model`` (pre-decoded arrays through the Upscaler: no IO at all), ``sequential``
  (``--jobs 0``: decode, model, encode one after another) and ``pipeline`` (``--jobs 2``:
  decode/encode threads overlapping the model);
- median of ``--repeats`` passes over the 14 images (after one warm-up pass), images/s, and
  each configuration's ratio to the reference ``torch/sequential`` measured in the same run;
  the nine worker processes stay up and take turns pass by pass (round-robin), so a change
  in machine load affects every configuration alike.

Then ``esr upscale`` with default options (``--backend auto``) on a synthetic 4000x3000 RGB PNG at x4
with automatic tiling (one run):
wall time and peak RSS. Writes ``results/bench_upscale.json`` and prints it.

Everything runs with a fresh esr cache (``ESR_CACHE_DIR``), and ``--backend auto``'s one-time measurement
for each batch (Set14's small images, the large image's tiles) runs first in a process of its own
(``auto_decisions``: seconds, peak RSS), so the timed processes read the cached decision whatever the
machine's cache held before.

    python scripts/bench_upscale.py [--repeats 10] [--skip-large] [--skip-set14] [--out results/X.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BACKENDS = ("torch", "onnxruntime", "auto")
MODES = ("model", "sequential", "pipeline")
REFERENCE = ("torch", "sequential")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is KiB on Linux


def worker_set14(backend: str, mode: str, folder: Path) -> dict:
    """Serve timed passes over ``folder``: one warm-up, then one pass per ``pass`` line on stdin."""
    import cv2
    import numpy as np

    from esr.upscale_batch import BatchOptions, build_upscaler, plan_batch, run_batch, timing_tile_hw

    files = sorted(folder.glob("*.png"))
    with tempfile.TemporaryDirectory() as out:
        options = BatchOptions(inputs=[str(folder)], outdir=out, backend=backend, precision=None, device="cpu", overwrite=True,
                               jobs=0 if mode == "sequential" else 2, quiet=True)
        if mode == "model":
            upscaler = build_upscaler(options, timing_tile_hw(plan_batch(options).todo, options))  # as esr upscale
            arrays = [np.ascontiguousarray(cv2.imread(str(p))[..., ::-1]) for p in files]

            def one_pass() -> None:
                for array in arrays:
                    upscaler.upscale_array(array)
        else:
            def one_pass() -> None:
                with open(os.devnull, "w") as null:
                    stdout, sys.stdout = sys.stdout, null  # the summary line
                    try:
                        assert run_batch(options, log=lambda line: None) == 0
                    finally:
                        sys.stdout = stdout

        one_pass()  # warm-up: model load, onnx export cache, allocator
        print("ready", flush=True)
        times = []
        for line in sys.stdin:
            if line.strip() != "pass":
                break
            start = time.perf_counter()
            one_pass()
            times.append(time.perf_counter() - start)
            print(times[-1], flush=True)
    median = statistics.median(times)
    return {"backend": backend, "mode": mode, "images": len(files), "repeats": len(times), "times_s": times,
            "median_s": median, "images_per_s": len(files) / median, "peak_rss_mb": peak_rss_mb()}


def bench_set14(folder: Path, repeats: int) -> list[dict]:
    """All backend x mode configurations, each in its own process, timed round-robin so load drifts hit all alike."""
    configs = [(backend, mode) for backend in BACKENDS for mode in MODES]
    workers = {}
    for backend, mode in configs:
        workers[backend, mode] = proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", "set14", backend, mode, str(folder)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"worker {backend}/{mode} failed to start")
    for round_index in range(repeats):
        shift = round_index % len(configs)
        for config in configs[shift:] + configs[:shift]:
            workers[config].stdin.write("pass\n")
            workers[config].stdin.flush()
            workers[config].stdout.readline()
    results = []
    for config in configs:
        stdout, _ = workers[config].communicate("done\n")
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    return results


def worker_large(path: Path) -> dict:
    """``esr upscale`` one large image with automatic tiling; wall time and peak RSS."""
    from esr.upscale_batch import BatchOptions, build_upscaler, run_batch

    with tempfile.TemporaryDirectory() as out:
        options = BatchOptions(inputs=[str(path)], outdir=out, backend="auto", precision=None, device="cpu", quiet=True)
        start = time.perf_counter()
        code = run_batch(options, log=lambda line: print(line, file=sys.stderr))
        seconds = time.perf_counter() - start
        from PIL import Image  # header only: decoding the output would add to the peak being measured

        Image.MAX_IMAGE_PIXELS = None  # our own 192 MP output, not an untrusted file
        shape = Image.open(Path(out) / path.name).size[::-1] if code == 0 else None
        upscaler = build_upscaler(options)
    return {"input": f"{path.name} 4000x3000 RGB", "backend": options.backend, "exit_code": code, "output_shape": shape, "seconds": seconds,
            "tile": upscaler.tile_for(3000, 4000), "tile_pad": upscaler.tile_pad, "peak_rss_mb": peak_rss_mb()}


def worker_decide(path: Path) -> dict:
    """``--backend auto``'s one-time measurement for an ``esr upscale`` batch of ``path``, made and cached as
    ``esr upscale`` makes it; seconds and peak RSS."""
    from esr.upscale_batch import BatchOptions, build_upscaler, plan_batch, timing_tile_hw

    with tempfile.TemporaryDirectory() as out:
        options = BatchOptions(inputs=[str(path)], outdir=out, backend="auto", precision=None, device="cpu", quiet=True)
        start = time.perf_counter()
        build_upscaler(options, timing_tile_hw(plan_batch(options).todo, options))
        return {"input": path.name, "seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()}


def run_worker(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"worker {args} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_large_image(path: Path) -> None:
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (750, 1000, 3), dtype=np.uint8)
    image = cv2.resize(cv2.GaussianBlur(noise, (0, 0), 2), (4000, 3000), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(path), image)


def environment() -> dict:
    import cv2
    import numpy
    import onnxruntime
    import torch

    import esr

    return {"machine": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
            "load_avg_at_start": os.getloadavg(), "python": platform.python_version(), "esr": esr.__version__,
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "onnxruntime": onnxruntime.__version__,
            "numpy": numpy.__version__, "opencv": cv2.__version__, "gpu": "none (CPU only)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--data", type=Path, default=None, help="LR folder (default: shared Set14/LR_bicubic/X4)")
    parser.add_argument("--skip-large", action="store_true", help="skip the 4000x3000 run")
    parser.add_argument("--skip-set14", action="store_true", help="skip the Set14 timings")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "bench_upscale.json")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, *rest = args.worker
        workers = {"large": lambda: worker_large(Path(rest[0])), "decide": lambda: worker_decide(Path(rest[0])),
                   "set14": lambda: worker_set14(rest[0], rest[1], Path(rest[2]))}
        result = workers[kind]()
        print(json.dumps(result))
        return

    from esr.fileio import write_bytes_atomically
    from esr.paths import shared_dir

    folder = args.data or shared_dir() / "datasets" / "Set14" / "LR_bicubic" / "X4"
    report = {"environment": environment(), "data": str(folder), "model": "rlfn_s_x4 (embedded default), x4",
              "auto_decisions": {}}
    with tempfile.TemporaryDirectory(prefix="esr-bench-upscale-cache-") as cache:
        os.environ["ESR_CACHE_DIR"] = cache  # inherited by every worker
        run_benchmarks(args, folder, report)
    report["load_avg_at_end"] = os.getloadavg()
    write_bytes_atomically(args.out, json.dumps(report, indent=2).encode())
    print(json.dumps(report, indent=2))


def run_benchmarks(args: argparse.Namespace, folder: Path, report: dict) -> None:
    """The Set14 and large-image parts into ``report``, each after auto's decision for it (module docstring)."""
    if not args.skip_set14:
        report["auto_decisions"]["set14"] = run_worker("decide", str(folder))
        report["set14"] = bench_set14(folder, args.repeats)
        reference = next(r for r in report["set14"] if (r["backend"], r["mode"]) == REFERENCE)
        for result in report["set14"]:
            result["speed_vs_torch_sequential"] = result["images_per_s"] / reference["images_per_s"]
            print(f"{result['backend']:12s} {result['mode']:10s} {result['images_per_s']:6.2f} img/s "
                  f"({result['speed_vs_torch_sequential']:.2f}x)  median {result['median_s']:.2f} s  "
                  f"peak RSS {result['peak_rss_mb']:.0f} MB", flush=True)
    if not args.skip_large:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "large_4000x3000.png"
            make_large_image(path)
            report["auto_decisions"]["large"] = run_worker("decide", str(path))
            report["large"] = run_worker("large", str(path))
        print(f"4000x3000 x4: {report['large']['seconds']:.0f} s, peak RSS {report['large']['peak_rss_mb']:.0f} MB, "
              f"tile {report['large']['tile']}", flush=True)


if __name__ == "__main__":
    main()
