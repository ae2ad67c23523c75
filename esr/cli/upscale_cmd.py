"""``esr upscale``: batch upscaling that never overwrites or half-writes a file."""
from __future__ import annotations

import argparse

HELP = "upscale images (files, folders or globs) into OUTDIR, skipping outputs that already exist"

EPILOG = """\
tiling: --tile N cuts each image into ceil(side/N) overlapping tiles per axis, each with
--tile-pad pixels of context, blended with a smooth (sin^2) window so no seams show.
--tile 0 (default): an image runs in one pass if H*W*4096 bytes <= 512 MiB (about 360x360
pixels); otherwise tiles of floor(sqrt(512 MiB / 4096)) - 2*pad = 330 px (pad 16) are used.
A backend with a maximum input size (TensorRT profile, static ONNX) caps the tile to fit;
on out-of-memory the tile is halved and the image retried.

images: 8- and 16-bit kept (16-bit out where the format stores it: png, tif), gray stays
gray, alpha is upscaled separately and kept (dropped for jpg), palette/CMYK become RGB,
EXIF orientation is applied. Outputs are written to a temp file in OUTDIR and renamed.

more than one process (docs/scale-out.md): --shard I/N keeps the outputs whose relative path
hashes to shard I (0-based); run I = 0..N-1 anywhere (a SLURM job array, N shells) into one OUTDIR.
--ray [ADDRESS] spreads the files over a Ray cluster's actors, one loaded model each (pip install
'esr[ray]'). Both skip existing outputs and write atomically, so reruns and overlaps are safe.

exit status: 0 all done (existing outputs skipped), 1 some inputs failed, 2 usage error,
130 interrupted. The last line is "N upscaled, M skipped, K failed".
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder (created if missing)")
    parser.add_argument("--model", default=None,
                        help="zoo name, .pth checkpoint, .onnx file or TensorRT engine (default: the embedded model)")
    parser.add_argument("--backend", choices=["torch", "onnxruntime", "tensorrt"], default=None,
                        help="inference backend (default: onnxruntime for .onnx, tensorrt for engines, else torch)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--fp16", action="store_true", help="half precision on CUDA (tiles with NaN/Inf rerun in fp32)")
    parser.add_argument("--tile", type=int, default=0, help="tile side in input pixels; 0 = automatic (see below)")
    parser.add_argument("--tile-pad", type=int, default=16, help="context pixels around each tile (default 16)")
    parser.add_argument("--outscale", type=float, default=None,
                        help="final scale; the model output is resized once (default: the model's scale)")
    parser.add_argument("--ext", choices=["png", "jpg", "webp", "same"], default="png", help="output format (default png)")
    parser.add_argument("--quality", type=int, default=95, help="jpg/webp quality 1-100; webp 100 = lossless (default 95)")
    parser.add_argument("--suffix", default="", help="appended to each output stem (default: none)")
    parser.add_argument("--recursive", action="store_true", help="descend into folders, mirroring the tree under OUTDIR")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: skip them)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="decode/encode worker threads overlapping the model (0: one step after another)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or warnings (errors and summary stay)")
    scale = parser.add_argument_group("more than one process (see docs/scale-out.md)")
    scale.add_argument("--shard", metavar="I/N", default=None,
                       help="do only shard I of N (0 <= I < N) of the outputs, split by a hash of their relative "
                            "path; e.g. --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT")
    scale.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                       help="run on Ray actors (each holds one model): no ADDRESS = Ray's default "
                            "(RAY_ADDRESS, a running local cluster, or a new local one); else e.g. auto or ray://host:10001")
    scale.add_argument("--ray-actors", type=int, default=0, metavar="N",
                       help="Ray actors (default: one per GPU of the cluster, else one per CPU)")


def run(args: argparse.Namespace) -> int:
    from esr.errors import EsrError
    from esr.scale.shard import parse_shard
    from esr.upscale_batch import BatchOptions, run_batch

    if args.tile < 0 or args.tile_pad < 0 or args.jobs < 0:
        raise EsrError("--tile, --tile-pad and --jobs must be >= 0")
    if args.outscale is not None and args.outscale <= 0:
        raise EsrError("--outscale must be > 0")
    if not 1 <= args.quality <= 100:
        raise EsrError("--quality must be between 1 and 100")
    if args.ray_actors < 0 or (args.ray_actors and args.ray is None):
        raise EsrError("--ray-actors must be >= 0 and needs --ray")
    options = BatchOptions(
        inputs=list(args.inputs), outdir=args.output, model=args.model, backend=args.backend, device=args.device,
        fp16=args.fp16, tile=args.tile, tile_pad=args.tile_pad, outscale=args.outscale, ext=args.ext,
        quality=args.quality, suffix=args.suffix, recursive=args.recursive, overwrite=args.overwrite,
        jobs=args.jobs, quiet=args.quiet, shard=None if args.shard is None else parse_shard(args.shard),
        ray=args.ray, ray_actors=args.ray_actors,
    )
    return run_batch(options)
