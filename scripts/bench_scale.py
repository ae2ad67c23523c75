"""Scale-out overhead: batch upscaling in 1 process vs 2 shards vs Ray (2 CPU actors), and training
iterations/s in 1 process vs 2 DDP (gloo) ranks at the same global batch.

Upscaling (Set14 LR x4, 14 images, the embedded RLFN-S x4, torch backend on CPU): each configuration is
the real command, end to end (process start, imports, model load, Ray start-up included), into an empty
folder, timed ``--repeats`` times round-robin (so load drifts hit all alike); median, images/s and the
ratio to one process in the same run. The CPU cores are shared out evenly: one process gets all
torch threads, each of N shards or Ray actors gets cores/N.

- ``one process``: ``esr upscale DIR -o OUT``
- ``one process, 1 thread``: the same with one torch thread (the per-core reference: on a shared
  machine, threads of one process that wait for each other suffer most from other users' load)
- ``2 shards``:    ``esr upscale DIR -o OUT --shard 0/2`` and ``--shard 1/2``, started together
- ``ray 2 actors``: ``esr upscale DIR -o OUT --ray --ray-actors 2`` (starts a local Ray)

Training (options/demo_rlfn_s_x4.yml, one stage, no validation or checkpoints while timed): the same
global batch in one process (all threads, and one thread) and as ``torchrun --nproc_per_node 2 ...
--launcher pytorch`` (half the batch per rank, half the threads); iterations/s from BasicSR's log,
between "Start training" and "End of training" (start-up excluded).

On a machine with 2 cores neither can be faster than one process using both cores: these figures are
the overhead of the scale-out machinery (extra processes, Ray, gradient all-reduce), not a speed-up.
``--device cuda`` runs the upscaling on GPU (each shard and each Ray actor uses the GPU torch or Ray
gives it); training uses the options' ``num_gpu: auto`` (NCCL needs one GPU per rank).

    python scripts/bench_scale.py [--repeats 3] [--train-iters 40] [--quick] [--out results/bench_scale/X.json]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO: (Start training|End of training)", re.M)


def env_with_threads(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def upscale_commands(config: str, folder: Path, out: Path, device: str, cores: int) -> list[tuple[list[str], int]]:
    """``[(argv, torch threads), ...]`` started together for one upscaling configuration."""
    base = [sys.executable, "-m", "esr", "upscale", str(folder), "-o", str(out), "--quiet", "--device", device]
    if config == "one process":
        return [(base, cores)]
    if config == "one process, 1 thread":
        return [(base, 1)]
    if config == "2 shards":
        return [(base + ["--shard", f"{index}/2"], max(1, cores // 2)) for index in range(2)]
    if config == "ray 2 actors":
        return [(base + ["--ray", "--ray-actors", "2"], max(1, cores // 2))]
    raise ValueError(config)


def time_upscale(config: str, folder: Path, device: str, cores: int) -> float:
    """Wall seconds of one configuration into a fresh output folder (every output checked to exist)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        start = time.perf_counter()
        procs = [subprocess.Popen(argv, env=env_with_threads(threads), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, cwd=REPO) for argv, threads in upscale_commands(config, folder, out, device, cores)]
        results = [proc.communicate() + (proc.returncode,) for proc in procs]
        seconds = time.perf_counter() - start
        for stdout, stderr, code in results:
            if code != 0:
                raise SystemExit(f"{config} failed ({code}):\n{stdout}\n{stderr}")
        expected = len(list(folder.glob("*.png")))
        if len(list(out.glob("*.png"))) != expected:
            raise SystemExit(f"{config}: {len(list(out.glob('*.png')))} outputs, expected {expected}")
    return seconds


def bench_upscale(folder: Path, repeats: int, device: str, cores: int) -> list[dict]:
    configs = ["one process", "one process, 1 thread", "2 shards", "ray 2 actors"]
    times: dict[str, list[float]] = {config: [] for config in configs}
    for round_index in range(repeats):
        shift = round_index % len(configs)
        for config in configs[shift:] + configs[:shift]:
            times[config].append(time_upscale(config, folder, device, cores))
            print(f"  {config}: {times[config][-1]:.2f} s", flush=True)
    images = len(list(folder.glob("*.png")))
    reference = statistics.median(times["one process"])
    return [{"config": config, "images": images, "times_s": times[config], "median_s": statistics.median(times[config]),
             "images_per_s": images / statistics.median(times[config]),
             "speed_vs_one_process": reference / statistics.median(times[config])} for config in configs]


def train_options(global_batch: int, world_size: int, iters: int, gt_size: int) -> dict:
    """The demo RLFN-S document, one stage of ``iters`` iterations, batch ``global_batch / world_size`` per rank."""
    doc = yaml.safe_load((REPO / "options" / "demo_rlfn_s_x4.yml").read_text())
    doc.pop("stages")
    doc["name"] = f"bench_scale_{world_size}"
    doc["datasets"]["train"].update(batch_size_per_gpu=global_batch // world_size, gt_size=gt_size,
                                    dataset_enlarge_ratio=1)
    doc["train"]["total_iter"] = iters
    doc["val"]["val_freq"] = 10 ** 9
    doc["logger"].update(save_checkpoint_freq=10 ** 9, print_freq=10 ** 9, use_tb_logger=False)
    return doc


def time_train(world_size: int, global_batch: int, iters: int, gt_size: int, threads: int) -> dict:
    """Iterations/s of one training run with ``threads`` torch threads per process (BasicSR log timestamps,
    start-up excluded)."""
    with tempfile.TemporaryDirectory() as tmp:
        opt = Path(tmp) / "bench.yml"
        opt.write_text(yaml.safe_dump(train_options(global_batch, world_size, iters, gt_size)))
        esr_train = ["train", "-opt", str(opt), "--threads", str(threads)]
        if world_size == 1:
            argv = [sys.executable, "-m", "esr", *esr_train]
        else:
            argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(world_size),
                    "-m", "esr", *esr_train, "--launcher", "pytorch"]
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=tmp, env=env_with_threads(threads), capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"training with {world_size} process(es) failed:\n{proc.stderr[-3000:]}")
        log = next((Path(tmp) / "experiments" / f"bench_scale_{world_size}_train").glob("train_*.log")).read_text()
        stamps = {kind: datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f") for stamp, kind in LOG_TIME.findall(log)}
        seconds = (stamps["End of training"] - stamps["Start training"]).total_seconds()
    return {"processes": world_size, "batch_per_process": global_batch // world_size, "global_batch": global_batch,
            "threads_per_process": threads, "iterations": iters, "train_seconds": seconds,
            "iterations_per_s": iters / seconds, "wall_seconds_with_startup": wall}


def environment() -> dict:
    from esr.bench import machine_info

    from esr.capabilities import cpu_flags

    info = machine_info()  # its versions include Ray's (None when not installed)
    info["cpu_flags_of_note"] = [f for f in ("avx2", "avx512f", "avx512_vnni", "amx_bf16", "amx_int8") if f in cpu_flags()]
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each upscaling configuration")
    parser.add_argument("--train-iters", type=int, default=40, help="timed training iterations")
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--gt-size", type=int, default=96, help="HR crop side of the training runs")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--data", type=Path, default=None, help="LR folder (default: shared Set14/LR_bicubic/X4)")
    parser.add_argument("--quick", action="store_true", help="1 repeat, 8 training iterations: checks the script runs")
    parser.add_argument("--out", type=Path, default=None, help="default: results/bench_scale/<device>_<time>.json")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.train_iters = 1, 8

    from esr.paths import shared_dir

    folder = args.data or shared_dir() / "datasets" / "Set14" / "LR_bicubic" / "X4"
    cores = os.cpu_count() or 1
    report = {
        "note": (f"{cores} cores shared out evenly: one process uses all, each of 2 shards/actors/ranks half; "
                 "'1 thread' rows are the per-core reference. With 2 cores no configuration can beat one process "
                 "on an idle machine; the ratios show the overhead of the scale-out machinery. Upscaling times are "
                 "end to end (process start, model load, Ray start-up). Load average at start/end is recorded: "
                 "on a shared machine, figures are not comparable across runs."),
        "environment": environment(), "data": str(folder), "model": "rlfn_s_x4 (embedded default), torch backend",
        "device": args.device, "quick": args.quick,
    }
    print("upscaling (end to end):", flush=True)
    report["upscale"] = bench_upscale(folder, args.repeats, args.device, cores)
    for row in report["upscale"]:
        print(f"{row['config']:22s} {row['images_per_s']:6.2f} img/s  median {row['median_s']:.2f} s  "
              f"({row['speed_vs_one_process']:.2f}x one process)", flush=True)
    print("training (iterations/s, start-up excluded):", flush=True)
    report["train"] = [time_train(n, args.global_batch, args.train_iters, args.gt_size, threads)
                       for n, threads in ((1, cores), (1, 1), (2, max(1, cores // 2)))]
    for row in report["train"]:
        row["speed_vs_one_process"] = row["iterations_per_s"] / report["train"][0]["iterations_per_s"]
        print(f"{row['processes']} process(es) x batch {row['batch_per_process']} x {row['threads_per_process']} "
              f"thread(s): {row['iterations_per_s']:.2f} it/s ({row['speed_vs_one_process']:.2f}x), "
              f"wall with start-up {row['wall_seconds_with_startup']:.1f} s", flush=True)
    report["load_avg_at_end"] = os.getloadavg()
    out = args.out or REPO / "results" / "bench_scale" / f"{args.device}_{time.strftime('%Y%m%d_%H%M%S')}.json"
    from esr.fileio import write_bytes_atomically

    write_bytes_atomically(out, json.dumps(report, indent=2).encode())
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
