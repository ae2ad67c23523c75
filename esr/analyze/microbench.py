"""Micro-benchmarks of this machine: fp32 GEMM and 3x3-conv throughput, memory-copy bandwidth.

Each figure is the median of ``runs`` timed calls after warm-up (see :func:`esr.bench.time_runs`).
"""
from __future__ import annotations

import numpy as np
import torch

from esr.bench import time_runs


def gemm_flops(threads: int, n: int = 1024, runs: int = 15) -> float:
    """fp32 FLOP/s of an ``n`` x ``n`` x ``n`` matrix product (2 n^3 FLOPs) on ``threads`` threads."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    out = torch.empty(n, n)
    timing = time_runs(lambda: torch.mm(a, b, out=out), runs=runs, warmup=3)
    return 2.0 * n ** 3 / (timing.median_ms / 1e3)


def conv_flops(threads: int, channels: int = 64, size: int = 96, runs: int = 10) -> float:
    """fp32 FLOP/s of a 3x3 convolution, ``channels`` -> ``channels`` on a (1, C, size, size) channels-last input."""
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False).to(memory_format=torch.channels_last)
    x = torch.rand(1, channels, size, size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        timing = time_runs(lambda: conv(x), runs=runs, warmup=3)
    return 2.0 * channels * channels * 9 * size * size / (timing.median_ms / 1e3)


def copy_bandwidth(megabytes: int = 64, runs: int = 15) -> float:
    """Bytes/s read + written by a ``megabytes`` MB array copy (larger than any last-level cache here)."""
    src = np.random.rand(megabytes * 2 ** 20 // 8)
    dst = np.empty_like(src)
    timing = time_runs(lambda: np.copyto(dst, src), runs=runs, warmup=2)
    return 2.0 * src.nbytes / (timing.median_ms / 1e3)


def run_microbenchmarks(threads: int) -> dict:
    """All three figures (FLOP/s, B/s) measured with torch set to ``threads`` threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return {"threads": threads, "gemm_flops": gemm_flops(threads), "conv3x3_flops": conv_flops(threads),
                "copy_bandwidth": copy_bandwidth()}
    finally:
        torch.set_num_threads(previous)
