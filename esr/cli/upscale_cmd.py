"""``esr upscale``: batch upscaling that never overwrites or half-writes a file."""
from __future__ import annotations

import argparse
import os
import sys

from esr.cli.common import (add_device_argument, add_json_argument, add_model_argument, add_threads_argument,
                            finite_positive, non_negative_int)

HELP = "upscale images, videos and animations (files, folders or globs) into OUTDIR, skipping outputs that exist"

EPILOG = """\
tiling: -t/--tile N cuts each image into ceil(side/N) overlapping tiles per axis, each with
--tile-pad pixels of context, blended with a smooth (sin^2) window so no seams show.
--tile 0 (default): an image runs in one pass if H*W*4096 bytes <= 512 MiB (about 360x360
pixels); otherwise tiles of floor(sqrt(512 MiB / 4096)) - 2*pad = 330 px (pad 16) are used,
one at a time on all the threads. --tile-streams 2 runs two at once where the backend can
(OpenVINO on a CPU, each on half the threads; same output): faster on a busy shared host,
slower on a quiet one (docs/benchmarks.md).
A backend with a maximum input size (TensorRT profile, static ONNX) caps the tile to fit;
on out-of-memory the tile is halved and the image retried.

images: 8- and 16-bit kept (16-bit out where the format stores it: png, tif), gray stays
gray, alpha is upscaled separately and kept (dropped for jpg), palette/CMYK become RGB,
EXIF orientation is applied. Outputs are written to a temp file in OUTDIR and renamed.

alpha: a constant alpha (fully opaque or transparent) stays exactly constant; otherwise
it is upscaled by the model and clamped to the range of the 3x3 input neighbourhood.
gray + alpha stays gray + alpha in png (webp and tif store it as RGBA); the ICC profile is
kept in png, jpg, webp and tif; CMYK becomes RGB without alpha.

limits: an input over --max-pixels (default 100000000 = 100 MP) is refused from its header,
before decoding; --max-pixels 0 removes the limit. An output that does not fit in the
memory available is refused with one line.

safety: outputs never replace an input; OUTDIR may be the input folder (give a --suffix):
files that are outputs of this run or of an earlier one (in their own output folder, stem
ending with the suffix) are not inputs. Several runs on one OUTDIR share the work (a hidden
claim file per output); temp files of killed runs are removed by the next run.

videos (mp4, mkv, mov, webm, avi, ...): decoded with the FFmpeg bundled in PyAV, every frame
upscaled, encoded with --video-codec into the same container; timestamps (variable frame
rate), rotation and colour tags kept; audio, subtitle and data streams copied unchanged.
Frames are encoded in segments of --segment-seconds kept in OUTDIR/.NAME.esr-segments/:
rerunning the same command after an interrupt or a kill continues from the last finished
segment. Animated GIF/WebP/APNG keep every frame, durations and loop; multi-page TIFF
keeps every page. Videos and animations keep their format whatever --ext says.

backend and precision: --backend auto --precision auto (default) measures the installed
backends x precisions once per model, machine, library versions and tile (a few seconds to
half a minute, announced by a line; cached under the esr cache dir), prints "auto: CHOICE, Nx
over onnxruntime fp32, Y-PSNR D dB vs fp32" and runs the fastest whose output's Y channel stays
within --min-fidelity-db (55.5) of fp32 on the package's sample image. Name both to force a
choice; a combination this machine cannot run is refused with the reason (exit 2). A named
precision under auto (--fp16 = --precision fp16) picks among the backends that compute in it,
still scored against fp32; where none does (fp16 on a CPU without fp16 units) one line names
what this CPU offers. See docs/precision.md, and docs/cli.md for --threads, --device, --json and
the short options.

more than one process (docs/scale-out.md): --shard I/N keeps the outputs whose relative path
hashes to shard I (0-based); run I = 0..N-1 anywhere (a SLURM job array, N shells) into one OUTDIR.
--ray [ADDRESS] spreads the files over a Ray cluster's actors, one loaded model each (pip install
'esr[ray]'). Both use the same claims, skips and atomic writes, so reruns and overlaps are safe.

exit status: 0 all done (existing outputs skipped), 1 some inputs failed (also: a folder
or glob without images), 2 usage error, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
The last line is "N upscaled, M skipped[ (K being written by another run)], F failed"; with --json
it is one JSON object instead (and the only line on stdout): {"upscaled", "skipped", "busy", "failed",
"outdir", "model", "backend", "precision", "device", "auto"}.
"""


def file_suffix(text: str) -> str:
    """argparse type: a stem suffix that stays inside OUTDIR (no path separator, no '..')."""
    if any(bad in text for bad in ("/", "\\", "..", "\0")):
        raise argparse.ArgumentTypeError(f"{text!r}: a suffix may not contain a path separator or '..'")
    return text


OPENCV_MAX_PIXELS = 1 << 30
"""OpenCV's own decode limit, ``OPENCV_IO_MAX_IMAGE_PIXELS``; OpenCV reads it once, when it is loaded."""


def raise_opencv_pixel_limit(max_pixels: int) -> None:
    """Let OpenCV decode up to ``max_pixels`` (0: any size) when that is above its default: sets
    ``OPENCV_IO_MAX_IMAGE_PIXELS``, which only works before ``cv2`` is imported (this runs first)."""
    wanted = max_pixels or 1 << 62
    if "cv2" not in sys.modules and wanted > int(os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", OPENCV_MAX_PIXELS)):
        os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = str(wanted)


def configure(parser: argparse.ArgumentParser) -> None:
    from esr.cli.backend_args import add_backend_arguments

    parser.epilog = EPILOG
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder (created if missing)")
    add_model_argument(parser, "zoo name, .pth checkpoint, .onnx file or TensorRT engine (default: the embedded model)")
    add_backend_arguments(parser, backend_default="auto", precision_default="auto")
    add_device_argument(parser)
    parser.add_argument("--fp16", action="store_true",
                        help="same as --precision fp16: a CUDA GPU, an Intel GPU (--device gpu), or OpenVINO on a CPU "
                             "with fp16 units; elsewhere refused with the alternatives")
    add_threads_argument(parser)
    parser.add_argument("-t", "--tile", type=int, default=0, help="tile side in input pixels; 0 = automatic (see below)")
    parser.add_argument("--tile-pad", type=int, default=16, help="context pixels around each tile")
    parser.add_argument("--tile-streams", type=int, default=1, metavar="N",
                        help="tiles of one image run at once where the backend can (OpenVINO on a CPU: up to 2)")
    parser.add_argument("-s", "--outscale", type=finite_positive, default=None,
                        help="final scale; the model output is resized once (default: the model's scale)")
    parser.add_argument("--ext", choices=["png", "jpg", "webp", "same"], default="png", help="output format")
    parser.add_argument("--quality", type=int, default=95, help="jpg/webp quality 1-100; webp 100 = lossless")
    parser.add_argument("--suffix", type=file_suffix, default="",
                        help="appended to each output stem (default: none); no path separators")
    parser.add_argument("--recursive", action="store_true", help="descend into folders, mirroring the tree under OUTDIR")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: skip them)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="decode/encode worker threads overlapping the model (0: one step after another)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or warnings (errors and summary stay)")
    parser.add_argument("--max-pixels", type=non_negative_int, default=None, metavar="N",
                        help="refuse inputs over N pixels (width x height) before decoding; 0 = no limit "
                             "(default 100000000)")
    add_json_argument(parser, "the summary as one JSON object (counts, OUTDIR, the backend, precision and device "
                              "that ran, auto's choice)")
    add_video_arguments(parser)
    add_scale_arguments(parser)


def add_scale_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``more than one process`` argument group: ``--shard``, ``--ray``, ``--ray-actors``."""
    scale = parser.add_argument_group("more than one process", "see docs/scale-out.md")
    scale.add_argument("--shard", metavar="I/N", default=None,
                       help="do only shard I of N (0 <= I < N) of the outputs, split by a hash of their relative "
                            "path; e.g. --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT")
    scale.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                       help="run on Ray actors (each holds one model): no ADDRESS = Ray's default "
                            "(RAY_ADDRESS, a running local cluster, or a new local one); else e.g. auto or ray://host:10001")
    scale.add_argument("--ray-actors", type=non_negative_int, default=0, metavar="N",
                       help="Ray actors; 0 = one per GPU of the cluster, else one per CPU")


def add_video_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``video`` argument group (read by :func:`video_options`)."""
    from esr.video.options import CONTAINERS, DEFAULT_SEGMENT_SECONDS, ENCODERS

    group = parser.add_argument_group("video", "how video inputs are encoded (see docs/video.md)")
    group.add_argument("--video-codec", choices=list(ENCODERS), default=None,
                       help="encoder (default: libx264; libvpx-vp9 for webm); missing ones are named at start")
    group.add_argument("--crf", type=non_negative_int, default=None,
                       help="constant-quality level (default: x264 18, x265 20, svtav1 30, vp9 31; lower = better)")
    group.add_argument("--preset", default=None, help="encoder speed preset (x264/x265: ultrafast..veryslow, "
                                                       "svtav1: 0-13, vp9: cpu-used 0-8); default: the encoder's")
    group.add_argument("--pix-fmt", default=None,
                       help="pixel format (default: the source's if the encoder takes it; RGB for ffv1)")
    group.add_argument("--video-container", choices=sorted(CONTAINERS), default=None,
                       help="output container (default: the input's; Matroska for ts, mpg, flv, wmv, ...)")
    group.add_argument("--segment-seconds", type=finite_positive, default=DEFAULT_SEGMENT_SECONDS,
                       help="resume granularity: frames are encoded in segments of about this many seconds")


def video_options(args: argparse.Namespace):
    """:class:`esr.video.options.VideoOptions` from the ``video`` group; EsrError if the encoder is missing."""
    from esr.video.options import VideoOptions

    if args.video_codec is not None:
        from esr.video.codecs import check_encoder

        check_encoder(args.video_codec)
    return VideoOptions(codec=args.video_codec, crf=args.crf, preset=args.preset, pix_fmt=args.pix_fmt,
                        container=args.video_container, segment_seconds=args.segment_seconds)


def run(args: argparse.Namespace) -> int:
    if args.max_pixels is not None:
        raise_opencv_pixel_limit(args.max_pixels)
    from esr.errors import EsrError
    from esr.scale.shard import parse_shard
    from esr.upscale_batch import BatchOptions, run_batch

    if args.tile < 0 or args.tile_pad < 0 or args.jobs < 0:
        raise EsrError("--tile, --tile-pad and --jobs must be >= 0")
    if args.tile_streams < 1:
        raise EsrError("--tile-streams must be >= 1")
    if not 1 <= args.quality <= 100:
        raise EsrError("--quality must be between 1 and 100")
    if args.fp16 and args.precision not in ("auto", "fp16"):
        raise EsrError(f"--fp16 and --precision {args.precision} contradict each other (--fp16 means --precision fp16)")
    if args.ray_actors and args.ray is None:
        raise EsrError("--ray-actors needs --ray")
    options = BatchOptions(
        inputs=list(args.inputs), outdir=args.output, model=args.model, backend=args.backend, device=args.device,
        precision="fp16" if args.fp16 else args.precision, min_fidelity_db=args.min_fidelity_db,
        threads=args.threads, tile=args.tile, tile_pad=args.tile_pad, tile_streams=args.tile_streams,
        outscale=args.outscale,
        ext=args.ext, quality=args.quality, suffix=args.suffix, recursive=args.recursive, overwrite=args.overwrite,
        jobs=args.jobs, quiet=args.quiet, json=args.json, video=video_options(args),
        shard=None if args.shard is None else parse_shard(args.shard), ray=args.ray, ray_actors=args.ray_actors,
        **({} if args.max_pixels is None else {"max_pixels": args.max_pixels}),
    )
    return run_batch(options)
