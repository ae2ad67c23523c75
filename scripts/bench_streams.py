"""Tiles run two at a time: OpenVINO's streams (``run_streamed``) against one tile at a time, through the Upscaler.

The 14 Set14 HR images, pre-decoded (no file IO), upscaled by :class:`esr.upscaler.Upscaler` in this process:

- ``openvino_one_at_a_time``: OpenVINO at ``--precision`` as esr runs it by default (one tile at a time on all
  the threads);
- ``openvino_streams``: the same backend with ``esr upscale --tile-streams 2`` (tiles :data:`TILE_STREAMS` at a
  time, each stream on its share of the threads);
- ``onnxruntime_fp32``: the reference, as esr runs it;
- ``onnxruntime_fp32_two_sessions`` (not an esr path): two onnxruntime sessions of half the threads each running
  tiles two at a time through the same Upscaler, to show what the reference would gain from the same idea.

Interleaved passes (configuration after configuration): the median pass per configuration, and the median of
the per-pass ratios of the two OpenVINO ones (a busy host's drift cancels in a pair); ratios within the run.
The two OpenVINO configurations must give the same output (every image checked). Whether streams pay depends on
how busy the host is, so :func:`esr.bench.host_probe` is taken before and after. Needs ``$ESR_SHARED``.

    python scripts/bench_streams.py [--model NAME] [--precision bf16] [--threads 2] [--passes 3]
        [--out results/bench_streams]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch


class TwoSessions:
    """onnxruntime fp32 with two streams, for comparison only: ``run_streamed`` borrows one of two esr
    onnxruntime backends of ``threads // 2`` threads each (plain calls use ``backend``)."""

    streams = 2

    def __init__(self, backend, loaded, threads: int) -> None:  # noqa: ANN001 (an esr backend, its LoadedModel)
        from esr.backends import create_backend
        from esr.pools import Lender

        self.backend, self.descriptor, self.max_hw = backend, backend.descriptor, backend.max_hw
        self.name, self.device, self.precision = backend.name, backend.device, backend.precision
        self.halves = Lender(create_backend("onnxruntime", loaded, "cpu", "fp32", max(1, threads // self.streams))
                             for _ in range(self.streams))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.backend(x)

    def run_streamed(self, x: torch.Tensor) -> torch.Tensor:
        with self.halves.lend() as half:
            return half(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="zoo name (default: esr's default model)")
    parser.add_argument("--precision", default="bf16", help="OpenVINO's precision (fp32, bf16, fp16)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--out", default="results/bench_streams")
    args = parser.parse_args()

    from esr.backends import create_backend
    from esr.backends.openvino_runtime import TILE_STREAMS
    from esr.bench import host_probe, machine_info, save_result
    from esr.image_io import read_image
    from esr.loading import open_model
    from esr.paths import shared_dir
    from esr.upscaler import Upscaler
    from esr.zoo import DEFAULT_MODEL

    files = sorted((shared_dir() / "datasets" / "Set14" / "HR").glob("*.png"))
    if not files:
        raise SystemExit(f"Set14 HR not found under {shared_dir()} (set ESR_SHARED)")
    torch.set_num_threads(args.threads)
    images = [read_image(path).color for path in files]
    loaded = open_model(args.model or DEFAULT_MODEL)
    probe_before = host_probe(args.model, args.threads)
    openvino = create_backend("openvino", loaded, "cpu", args.precision, args.threads)
    reference = create_backend("onnxruntime", loaded, "cpu", "fp32", args.threads)
    upscalers = {"openvino_streams": Upscaler(openvino, tile_streams=TILE_STREAMS),
                 "openvino_one_at_a_time": Upscaler(openvino),
                 "onnxruntime_fp32": Upscaler(reference),
                 "onnxruntime_fp32_two_sessions": Upscaler(TwoSessions(reference, loaded, args.threads),
                                                           tile_streams=TwoSessions.streams)}
    print(f"streams: {upscalers['openvino_streams'].streams} vs {upscalers['openvino_one_at_a_time'].streams}; "
          f"tiles of a 2000 px side: {upscalers['openvino_streams'].tile_for(2000, 2000)} vs "
          f"{upscalers['openvino_one_at_a_time'].tile_for(2000, 2000)} px", flush=True)
    outputs = {label: [upscaler.upscale_array(image) for image in images] for label, upscaler in upscalers.items()}
    same = all(np.array_equal(a, b) for a, b in zip(outputs["openvino_one_at_a_time"], outputs["openvino_streams"]))
    del outputs
    seconds: dict[str, list[float]] = {label: [] for label in upscalers}
    for index in range(args.passes):
        for label, upscaler in upscalers.items():
            start = time.perf_counter()
            for image in images:
                upscaler.upscale_array(image)
            seconds[label].append(time.perf_counter() - start)
            print(f"pass {index}: {label} {seconds[label][-1]:.2f} s", flush=True)
    median = {label: statistics.median(values) for label, values in seconds.items()}
    record = {
        "model": loaded.descriptor.name, "precision": args.precision, "threads": args.threads,
        "machine": machine_info(), "images": len(images), "passes": args.passes,
        "streams": upscalers["openvino_streams"].streams,
        "host_probe": {"before": probe_before, "after": host_probe(args.model, args.threads)},
        "tile_2000px": {label: upscaler.tile_for(2000, 2000) for label, upscaler in upscalers.items()},
        "seconds_per_pass": seconds, "median_ms_per_image": {k: v * 1e3 / len(images) for k, v in median.items()},
        "openvino_outputs_equal": same,
        "streams_gain_paired": statistics.median(
            one / streams for one, streams in zip(seconds["openvino_one_at_a_time"], seconds["openvino_streams"])),
        "streams_gain": median["openvino_one_at_a_time"] / median["openvino_streams"],
        "ratio_to_onnxruntime_fp32": {label: median["onnxruntime_fp32"] / value for label, value in median.items()},
        "onnxruntime_two_sessions_gain": median["onnxruntime_fp32"] / median["onnxruntime_fp32_two_sessions"],
    }
    print(f"streams gain {record['streams_gain']:.2f}x, paired {record['streams_gain_paired']:.2f}x (outputs equal: "
          f"{same}); "
          f"vs onnxruntime fp32: streams {record['ratio_to_onnxruntime_fp32']['openvino_streams']:.2f}x, one at a "
          f"time {record['ratio_to_onnxruntime_fp32']['openvino_one_at_a_time']:.2f}x; onnxruntime with two sessions "
          f"would gain {record['onnxruntime_two_sessions_gain']:.2f}x")
    print(f"saved {save_result(record, Path(args.out), 'bench_streams')}")


if __name__ == "__main__":
    main()
