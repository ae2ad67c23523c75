"""Training step time of ESRModel with ``train.amp`` off and on, on this machine (JSON to results/bench_train_amp/).

Times :meth:`esr.train.model.ESRModel.optimize_parameters` (forward, L1 loss, backward, Adam step)
on random LR/HR batches: RLFN-S x4 (48 channels, 6 blocks), batch 16, LR patch 32 (HR 128) by
default. The two settings alternate step by step (interleaved), after ``--warmup`` untimed steps
each; median ms and the ratio are printed and saved with the machine. On CPU, amp means bf16
autocast where the CPU has native bf16 (AMX-BF16 / AVX512-BF16), otherwise the run stops with
the note ESRModel logs.

Usage: python scripts/bench_train_amp.py [--iters 6] [--batch 16] [--lr-size 32] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch


def build(amp: bool, seed: int = 0):
    """An ESRModel training RLFN-S x4 with ``train.amp`` set to ``amp`` (the options of scripts/gpu_check.py)."""
    from esr.train.bridge import register_all

    register_all()
    from esr.train.model import ESRModel

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gpu_check import rlfn_s_train_options

    torch.manual_seed(seed)
    return ESRModel(rlfn_s_train_options(amp, iters=100, num_gpu=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=6, help="timed steps per setting (default 6)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per setting first (default 2)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr-size", type=int, default=32, help="LR patch side (HR = 4x)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="results/bench_train_amp", help="output folder for the JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from esr.bench import machine_info, save_result
    from esr.capabilities import cpu_summary
    from esr.train.model import amp_dtype

    dtype, note = amp_dtype(torch.device("cpu"))
    print(note)
    if dtype is None:
        return
    models = {"fp32": build(False), "amp_bf16": build(True)}
    lq = torch.rand(args.batch, 3, args.lr_size, args.lr_size)
    gt = torch.rand(args.batch, 3, args.lr_size * 4, args.lr_size * 4)
    times: dict[str, list[float]] = {name: [] for name in models}
    for step in range(args.warmup + args.iters):
        for name, model in models.items():
            model.feed_data({"lq": lq, "gt": gt})
            start = time.perf_counter()
            model.optimize_parameters(step)
            if step >= args.warmup:
                times[name].append((time.perf_counter() - start) * 1e3)
    medians = {name: statistics.median(v) for name, v in times.items()}
    record = {"model": "RLFN-S x4 (48 ch, 6 blocks)", "batch": args.batch, "lr_size": args.lr_size,
              "threads": args.threads, "iters": args.iters, "warmup": args.warmup, "median_ms": medians,
              "times_ms": times, "speedup_amp": medians["fp32"] / medians["amp_bf16"], "cpu_units": cpu_summary(),
              "machine": machine_info()}
    for name, value in medians.items():
        print(f"{name:<10}{value:10.1f} ms/step")
    print(f"amp (bf16 autocast) vs fp32: {record['speedup_amp']:.2f}x; load {record['machine']['load_avg']}")
    path = save_result(record, args.out, "bench_train_amp")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
