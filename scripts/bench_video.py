"""Time `esr upscale` on a video: overlapping pipeline vs `--jobs 0`, where the time goes, peak RSS.

A clip is generated first (``--seconds`` at 25 fps, ``--size``, H.264 + AAC, a moving
textured pattern). Then, each in its own subprocess (so each peak RSS is its own), with
the embedded RLFN-S x4 on the CPU (``--backend``, default ``auto`` as for users; its one-time
measurement happens while the model loads, before the clock starts):

- ``sequential`` (``--jobs 0``) and ``pipeline`` (``--jobs 2``: decode and model threads
  overlapping the encoder) run :func:`esr.video.runner.upscale_video` on the whole clip,
  ``--repeats`` times, alternating (so load drift hits both alike); frames/s from the median,
  and the median of the paired ratios pipeline / sequential;
- ``stages``: one sequential pass with the same building blocks (decode_frames ->
  Upscaler.upscale_array -> SegmentWriter -> join_segments) timing each stage: the share
  of decode / model / encode / join in the total; then the model alone on one frame,
  ``--repeats`` times in the main thread and in a worker thread, alternating (``--jobs 0``
  runs the model in the main thread, the pipeline in a worker thread: if these differ,
  part of the pipeline/sequential ratio is the thread the model runs in, not overlap).

Writes ``results/bench_video/<seconds>s_<WxH>.json`` and prints it. The README figure
(peak RSS of a 1-minute 640x360 clip at x4) is ``--seconds 60 --size 640x360 --repeats 1 --modes pipeline
--skip-stages``.

    python scripts/bench_video.py [--seconds 10] [--size 320x180] [--repeats 3] [--codec libx264] [--backend auto]
                                  [--modes sequential,pipeline] [--skip-stages]
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
FPS = 25


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def make_clip(path: Path, seconds: float, width: int, height: int) -> int:
    """An H.264 + AAC clip of a textured pattern moving across the frame; returns its frame count."""
    import av
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (height * 2, width * 2, 3), dtype=np.uint8), (0, 0), 3)
    frames = round(seconds * FPS)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS, options={"crf": "20"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = out.add_stream("aac", rate=48000)
        for index in range(frames):
            top, left = (index * 2) % height, (index * 3) % width
            picture = np.ascontiguousarray(texture[top:top + height, left:left + width])
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = index
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        step = sound.codec_context.frame_size
        for start in range(0, int(48000 * seconds), step):
            samples = (0.1 * np.sin(2 * np.pi * 440 * (np.arange(step) + start) / 48000)).astype(np.float32)
            chunk = av.AudioFrame.from_ndarray(samples[None], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 48000, start
            out.mux(sound.encode(chunk))
        out.mux(sound.encode(None))
    return frames


def batch_options(src: Path, out: Path, jobs: int, codec: str, backend: str):
    from esr.upscale_batch import BatchOptions
    from esr.video.options import VideoOptions

    return BatchOptions(inputs=[str(src)], outdir=out, backend=backend, precision=None, device="cpu", overwrite=True,
                        jobs=jobs, quiet=True,
                        video=VideoOptions(codec=codec))


def worker_run(src: Path, jobs: int, codec: str, backend: str) -> dict:
    """``upscale_video`` on the whole clip (model loaded and warmed up first); seconds and peak RSS."""
    from esr.upscale_batch import Task, build_upscaler
    from esr.video.probe import decode_frames, probe_video
    from esr.video.runner import upscale_video

    with tempfile.TemporaryDirectory() as out:
        options = batch_options(src, Path(out), jobs, codec, backend)
        upscaler = build_upscaler(options)
        upscaler.upscale_array(next(decode_frames(probe_video(src))).pixels)  # warm-up
        start = time.perf_counter()
        upscale_video(Task(src, Path(out) / src.name, "video"), upscaler, options)
        seconds = time.perf_counter() - start
    return {"jobs": jobs, "seconds": seconds, "peak_rss_mb": peak_rss_mb()}


def model_thread_check(upscaler, pixels, repeats: int) -> dict:
    """Seconds for one ``upscale_array(pixels)`` in the main thread and in a worker thread, alternating."""
    import threading

    def timed() -> float:
        start = time.perf_counter()
        upscaler.upscale_array(pixels)
        return time.perf_counter() - start

    main, worker = [], []
    for _ in range(repeats):
        main.append(timed())
        thread = threading.Thread(target=lambda: worker.append(timed()))
        thread.start()
        thread.join()
    return {"main_thread_s": main, "worker_thread_s": worker, "main_median_s": statistics.median(main),
            "worker_median_s": statistics.median(worker)}


def worker_stages(src: Path, codec: str, repeats: int, backend: str) -> dict:
    """One sequential pass timing decode, model, encode (segments) and join separately."""
    from esr.upscale_batch import Task, build_upscaler
    from esr.video.options import output_container
    from esr.video.probe import decode_frames, probe_video
    from esr.video.runner import encode_spec, run_identity
    from esr.video.join import join_segments
    from esr.video.segments import SegmentStore, SegmentWriter

    with tempfile.TemporaryDirectory() as out:
        options = batch_options(src, Path(out), 0, codec, backend)
        upscaler = build_upscaler(options)
        source = probe_video(src)
        upscaler.upscale_array(next(decode_frames(source)).pixels)  # warm-up
        container = output_container(src, options.video)
        spec = encode_spec(source, container, options.video, src)
        task = Task(src, Path(out) / src.name, "video")
        store = SegmentStore.open(task.dest, run_identity(source, options, spec), overwrite=True)
        writer = SegmentWriter(store, spec, options.video.segment_seconds)
        spent = {"decode": 0.0, "model": 0.0, "encode": 0.0, "join": 0.0}
        frames = decode_frames(source)
        count = 0
        while True:
            start = time.perf_counter()
            frame = next(frames, None)
            spent["decode"] += time.perf_counter() - start
            if frame is None:
                break
            start = time.perf_counter()
            pixels = upscaler.upscale_array(frame.pixels)
            spent["model"] += time.perf_counter() - start
            start = time.perf_counter()
            writer.add(type(frame)(frame.index, frame.pts, frame.duration, pixels))
            spent["encode"] += time.perf_counter() - start
            count += 1
        start = time.perf_counter()
        writer.finish()
        spent["encode"] += time.perf_counter() - start
        start = time.perf_counter()
        join_segments(store.files, source, container, str(task.dest))
        spent["join"] += time.perf_counter() - start
        check = model_thread_check(upscaler, next(decode_frames(source)).pixels, repeats)
    total = sum(spent.values())
    return {"frames": count, "seconds": spent, "share": {k: v / total for k, v in spent.items()},
            "total_s": total, "frames_per_s": count / total, "model_one_frame": check}


def run_worker(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"worker {args} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cpu_description() -> dict:
    """CPU model, its SIMD/matrix flags of note (AVX2, AVX-512, AMX, VNNI) and logical cores."""
    from esr.bench import cpu_model
    from esr.capabilities import cpu_flags

    notable = sorted(f for f in cpu_flags() if f.startswith(("avx512", "amx", "avx2", "avx_vnni")))
    return {"cpu": cpu_model(), "cpu_flags": notable, "cpus": os.cpu_count()}


def environment() -> dict:
    import av
    import numpy
    import torch

    import esr

    return {"machine": platform.platform(), **cpu_description(), "load_avg_at_start": os.getloadavg(),
            "python": platform.python_version(), "esr": esr.__version__, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "av": av.__version__,
            "ffmpeg_libavcodec": ".".join(map(str, av.library_versions["libavcodec"])), "numpy": numpy.__version__,
            "gpu": "none (CPU only)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length (default 10)")
    parser.add_argument("--size", default="320x180", help="clip size WxH (default 320x180)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per mode (default 3)")
    parser.add_argument("--codec", default="libx264", help="--video-codec of the output (default libx264)")
    parser.add_argument("--backend", default="auto", help="esr upscale's --backend (default auto, as for users)")
    parser.add_argument("--modes", default="sequential,pipeline",
                        help="which of sequential (--jobs 0) and pipeline (--jobs 2) to run (default both)")
    parser.add_argument("--skip-stages", action="store_true", help="skip the per-stage timing pass")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default results/bench_video/...)")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, src, *rest = args.worker
        if kind == "stages":
            result = worker_stages(Path(src), rest[0], int(rest[1]), rest[2])
        else:
            result = worker_run(Path(src), int(kind), rest[0], rest[1])
        print(json.dumps(result))
        return

    width, height = (int(v) for v in args.size.lower().split("x"))
    out = args.out or REPO / "results" / "bench_video" / f"{args.seconds:g}s_{width}x{height}.json"
    report = {"environment": environment(), "model": f"rlfn_s_x4 (embedded default), x4, CPU, --backend {args.backend}",
              "backend": args.backend,
              "clip": {"seconds": args.seconds, "size": [width, height], "fps": FPS, "codec_in": "libx264 + aac",
                       "codec_out": args.codec}}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "clip.mp4"
        report["clip"]["frames"] = frames = make_clip(src, args.seconds, width, height)
        modes = [(mode, jobs) for mode, jobs in (("sequential", 0), ("pipeline", 2)) if mode in args.modes.split(",")]
        runs: dict[str, list[dict]] = {mode: [] for mode, _ in modes}
        for _ in range(args.repeats):
            for mode, jobs in modes:
                runs[mode].append(run_worker(str(jobs), str(src), args.codec, args.backend))
                print(f"{mode:10s} {frames / runs[mode][-1]['seconds']:6.2f} frames/s  "
                      f"peak RSS {runs[mode][-1]['peak_rss_mb']:.0f} MB", flush=True)
        for mode, results in runs.items():
            median = statistics.median(r["seconds"] for r in results)
            report[mode] = {"runs": results, "median_s": median, "frames_per_s": frames / median,
                            "peak_rss_mb": max(r["peak_rss_mb"] for r in results)}
        if len(runs) == 2:
            ratios = [s["seconds"] / p["seconds"] for s, p in zip(runs["sequential"], runs["pipeline"])]
            report["pipeline_speedup_paired_median"] = statistics.median(ratios)
        if not args.skip_stages:
            report["stages"] = run_worker("stages", str(src), args.codec, str(max(3, args.repeats)), args.backend)
    report["load_avg_at_end"] = os.getloadavg()
    from esr.fileio import write_bytes_atomically

    write_bytes_atomically(out, json.dumps(report, indent=2).encode())
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
