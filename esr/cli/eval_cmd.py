"""``esr eval``: Y-PSNR/SSIM of a model on a benchmark folder."""
from __future__ import annotations

import argparse

from esr.cli.common import (add_device_argument, add_json_argument, add_model_argument, add_threads_argument,
                            non_negative_int, print_json)
from esr.cli.upscale_cmd import raise_opencv_pixel_limit

HELP = "measure Y-PSNR/SSIM of a model on a folder with HR/ and LR_bicubic/X{s}/ (or HR images only)"


def configure(parser: argparse.ArgumentParser) -> None:
    from esr.cli.backend_args import add_backend_arguments

    add_model_argument(parser, "zoo name, checkpoint path, .onnx file or engine (default: the embedded model)")
    parser.add_argument("--data", required=True, help="dataset folder, e.g. ../shared/datasets/Set5")
    parser.add_argument("--scale", type=int, default=None, help="scale to evaluate (default: the model's)")
    add_backend_arguments(parser, backend_default=None, precision_default=None)
    add_device_argument(parser)
    add_threads_argument(parser)
    parser.add_argument("--max-pixels", type=non_negative_int, default=None, metavar="N",
                        help="largest image (width x height) decoded, checked from its header (default 100000000; "
                             "0 = no limit)")
    add_json_argument(parser, "one JSON object (per-image and mean scores)")


def run(args: argparse.Namespace) -> int:
    if args.max_pixels is not None:
        raise_opencv_pixel_limit(args.max_pixels)  # before OpenCV loads
    from esr.backends import default_backend_for, default_device
    from esr.backends.auto_backend import make_backend
    from esr.evaluate import evaluate
    from esr.image_io import DEFAULT_MAX_PIXELS
    from esr.loading import open_model
    from esr.zoo import DEFAULT_MODEL

    max_pixels = DEFAULT_MAX_PIXELS if args.max_pixels is None else args.max_pixels
    model_name = args.model or DEFAULT_MODEL
    loaded = open_model(model_name, scale=args.scale)
    backend_name = args.backend or default_backend_for(loaded)
    backend = make_backend(backend_name, loaded, args.device or default_device(backend_name), args.precision,
                           args.threads, args.min_fidelity_db, quiet=args.json)
    result = {"model": str(model_name), "backend": getattr(backend, "label", backend.name), "precision": backend.precision,
              **evaluate(backend, args.data, progress=not args.json, max_pixels=max_pixels)}
    if args.json:
        print_json(result)
        return 0
    for image in result["images"]:
        print(f"{image['name']:<16}{image['psnr_y']:>8.2f} dB{image['ssim_y']:>8.4f}")
    print(f"{'mean':<16}{result['psnr_y']:>8.2f} dB{result['ssim_y']:>8.4f}  "
          f"({result['model']}, {result['dataset']} x{result['scale']}, {result['backend']} {backend.precision})")
    return 0
