"""``esr eval``: Y-PSNR/SSIM of a model on a benchmark folder."""
from __future__ import annotations

import argparse
import json

HELP = "measure Y-PSNR/SSIM of a model on a folder with HR/ and LR_bicubic/X{s}/ (or HR images only)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="zoo name, checkpoint path or .onnx file (default: the embedded model)")
    parser.add_argument("--data", required=True, help="dataset folder, e.g. ../shared/datasets/Set5")
    parser.add_argument("--scale", type=int, default=None, help="scale to evaluate (default: the model's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run(args: argparse.Namespace) -> int:
    from esr.evaluate import evaluate
    from esr.loading import load_model
    from esr.zoo import DEFAULT_MODEL

    model_name = args.model or DEFAULT_MODEL
    if str(model_name).lower().endswith(".onnx"):  # fp32 or INT8 QDQ ONNX: run by onnxruntime
        from esr.backends import create_backend

        model = create_backend("onnxruntime", model_name)
        scale = model.scale
    else:
        model = load_model(model_name, scale=args.scale)
        scale = model.upscale
    result = {"model": str(model_name), **evaluate(model, args.data, scale, progress=not args.json)}
    if args.json:
        print(json.dumps(result))
        return 0
    for image in result["images"]:
        print(f"{image['name']:<16}{image['psnr_y']:>8.2f} dB{image['ssim_y']:>8.4f}")
    print(f"{'mean':<16}{result['psnr_y']:>8.2f} dB{result['ssim_y']:>8.4f}  "
          f"({result['model']}, {result['dataset']} x{scale})")
    return 0
