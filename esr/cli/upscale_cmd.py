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

exit status: 0 all done (existing outputs skipped), 1 some inputs failed, 2 usage error,
130 interrupted. The last line is "N upscaled, M skipped, K failed".
"""


def configure(parser: argparse.ArgumentParser) -> None:
    from esr.backends import backend_names, backends_help

    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder (created if missing)")
    parser.add_argument("--model", default=None,
                        help="zoo name, .pth checkpoint, .onnx file or TensorRT engine (default: the embedded model)")
    parser.add_argument("--backend", choices=backend_names(), default=None,
                        help=f"inference backend (default: the first that runs --model as is: onnxruntime for "
                             f".onnx, tensorrt for engines, else torch). {backends_help()}")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--fp16", action="store_true", help="half precision on CUDA (tiles with NaN/Inf rerun in fp32)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch and onnxruntime (default 0: each library's own default)")
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


def run(args: argparse.Namespace) -> int:
    from esr.errors import EsrError
    from esr.upscale_batch import BatchOptions, run_batch

    if args.tile < 0 or args.tile_pad < 0 or args.jobs < 0 or args.threads < 0:
        raise EsrError("--tile, --tile-pad, --jobs and --threads must be >= 0")
    if args.outscale is not None and args.outscale <= 0:
        raise EsrError("--outscale must be > 0")
    if not 1 <= args.quality <= 100:
        raise EsrError("--quality must be between 1 and 100")
    options = BatchOptions(
        inputs=list(args.inputs), outdir=args.output, model=args.model, backend=args.backend, device=args.device,
        fp16=args.fp16, threads=args.threads, tile=args.tile, tile_pad=args.tile_pad, outscale=args.outscale,
        ext=args.ext, quality=args.quality, suffix=args.suffix, recursive=args.recursive, overwrite=args.overwrite,
        jobs=args.jobs, quiet=args.quiet,
    )
    return run_batch(options)
