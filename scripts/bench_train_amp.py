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
import json
import statistics
import time
from pathlib import Path

import torch


def build(amp: bool, seed: int = 0):
    from esr.train.bridge import register_all

    register_all()
    from esr.train.model import ESRModel

    torch.manual_seed(seed)
    opt = {
        "name": "bench_amp", "model_type": "ESRModel", "scale": 4, "num_gpu": 0, "is_train": True, "dist": False,
        "rank": 0, "world_size": 1,
        "network_g": {"type": "RLFN", "feature_channels": 48, "mid_channels": 48, "num_blocks": 6,
                      "esa_channels": 16, "upscale": 4},
        "path": {"pretrain_network_g": None, "strict_load_g": True, "resume_state": None},
        "train": {"ema_decay": 0, "grad_clip": 0, "amp": amp, "channels_last": True,
                  "optim_g": {"type": "Adam", "lr": 5e-4, "betas": [0.9, 0.999]},
                  "scheduler": {"type": "MultiStepLR", "milestones": [100000], "gamma": 0.5},
                  "total_iter": 100, "warmup_iter": -1, "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0}},
        "val": None, "logger": {"print_freq": 100, "save_checkpoint_freq": 100, "use_tb_logger": False},
    }
    return ESRModel(opt)


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

    from esr.bench import machine_info
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
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"train_amp_{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(record, indent=1))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
