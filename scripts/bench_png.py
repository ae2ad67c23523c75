"""PNG writing on real x4 outputs: esr's writer (``esr.image_encode.png_bytes``: "Up" filter, ISA-L deflate
level 1) against OpenCV's ``cv2.imencode(".png")`` (libpng at OpenCV's defaults: what esr used before) and
against esr's writer with the standard library's zlib (its fallback without the ``isal`` wheel) and esr's writer
deflating each image as one part on one thread (``esr_one_part``: what its parallel parts gain).

The inputs are the 14 Set14 HR images upscaled x4 by the embedded default model (outputs of about
2000 px a side: what ``esr upscale`` writes for them). Per image and encoder: the median of
``--repeats`` timed encodes (interleaved: encoder after encoder, image after image), the bytes, and a
check that OpenCV decodes the same pixels. Totals over the 14 images and each encoder's time ratio
to OpenCV's, measured in the same run. Needs ``$ESR_SHARED``.

    python scripts/bench_png.py [--repeats 5] [--out docs/results/bench_png.json]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Callable
from unittest import mock

import cv2
import numpy as np

from esr import image_encode
from esr.bench import machine_info, save_result
from esr.paths import shared_dir


def opencv_png(rgb: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    assert ok
    return buffer.tobytes()


def esr_png_stdlib_zlib(rgb: np.ndarray) -> bytes:
    import zlib

    with mock.patch.object(image_encode, "zlib_module", lambda: zlib):
        return image_encode.png_bytes(rgb)


def esr_png_one_part(rgb: np.ndarray) -> bytes:
    with mock.patch.object(image_encode, "PNG_PART_BYTES", 2**62):
        return image_encode.png_bytes(rgb)


ENCODERS: dict[str, Callable[[np.ndarray], bytes]] = {
    "opencv": opencv_png, "esr": image_encode.png_bytes, "esr_one_part": esr_png_one_part,
    "esr_stdlib_zlib": esr_png_stdlib_zlib}
REFERENCE = "opencv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="results/bench_png")
    args = parser.parse_args()

    from esr.upscaler import Upscaler
    from esr.upscale_batch import BatchOptions, build_upscaler, describe_backend

    files = sorted((shared_dir() / "datasets" / "Set14" / "HR").glob("*.png"))
    if not files:
        raise SystemExit(f"Set14 HR not found under {shared_dir()} (set ESR_SHARED)")
    upscaler: Upscaler = build_upscaler(BatchOptions(inputs=[], outdir=".", quiet=True))
    outputs = {p.name: upscaler.upscale_array(np.ascontiguousarray(cv2.imread(str(p))[..., ::-1])) for p in files}
    times: dict[str, dict[str, list[float]]] = {e: {n: [] for n in outputs} for e in ENCODERS}
    sizes: dict[str, dict[str, int]] = {e: {} for e in ENCODERS}
    for _ in range(args.repeats):
        for name, rgb in outputs.items():
            for encoder, encode in ENCODERS.items():
                start = time.perf_counter()
                data = encode(rgb)
                times[encoder][name].append((time.perf_counter() - start) * 1000)
                if name not in sizes[encoder]:  # first encode of this image: check it and keep its size
                    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)[..., ::-1]
                    assert np.array_equal(decoded, rgb), f"{encoder} {name}: pixels differ"
                    sizes[encoder][name] = len(data)
    total_ms = {e: sum(statistics.median(t) for t in times[e].values()) for e in ENCODERS}
    total_mb = {e: sum(sizes[e].values()) / 1e6 for e in ENCODERS}
    record = {
        "machine": machine_info(), "repeats": args.repeats, "model": "default (embedded RLFN-S x4)",
        "backend": describe_backend(upscaler.backend),
        "images": {n: {"shape": list(rgb.shape)} for n, rgb in outputs.items()},
        "per_image_ms": {e: {n: statistics.median(t) for n, t in times[e].items()} for e in ENCODERS},
        "bytes": sizes, "total_ms": total_ms, "total_mb": total_mb,
        "speedup_vs_opencv": {e: total_ms[REFERENCE] / total_ms[e] for e in ENCODERS},
        "size_vs_opencv": {e: total_mb[e] / total_mb[REFERENCE] for e in ENCODERS},
        "deflate_level": image_encode.PNG_DEFLATE_LEVEL,
    }
    for encoder in ENCODERS:
        print(f"{encoder:16s} {total_ms[encoder]:8.0f} ms for 14 images  {total_mb[encoder]:6.1f} MB  "
              f"{record['speedup_vs_opencv'][encoder]:.2f}x faster, {record['size_vs_opencv'][encoder]:.2f}x the bytes of opencv")
    print("saved", save_result(record, args.out, "bench_png"))


if __name__ == "__main__":
    main()
