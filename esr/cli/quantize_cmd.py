"""``esr quantize``: calibrated INT8 QDQ ONNX from an esr model or fp32 ONNX file."""
from __future__ import annotations

import argparse

from esr.cli.common import THREADS_HELP, add_json_argument, add_model_argument, add_threads_argument, print_json

HELP = "INT8 post-training quantisation to a QDQ ONNX model that onnxruntime runs (plus a JSON report)"


def configure(parser: argparse.ArgumentParser) -> None:
    from esr.quantize import GRANULARITIES, WEIGHT_TYPES
    from esr.quantize.ranges import QUANT_METHODS, methods_help

    add_model_argument(parser, "zoo name, checkpoint path, arch preset (random weights), or fp32 .onnx file "
                               "(a static-shape graph is calibrated on crops of its input size)", required=True)
    parser.add_argument("--calib", required=True, help="folder of calibration images (LR, or HR with --calib-downscale)")
    parser.add_argument("--out", required=True, help="output QDQ model, e.g. rlfn_x4_int8.onnx")
    parser.add_argument("--report", default=None, help="JSON report path (default: OUT with .json)")
    parser.add_argument("--num-calib", type=int, default=32, help="number of calibration crops")
    parser.add_argument("--crop-size", type=int, default=96, help="calibration crop side in LR pixels")
    parser.add_argument("--calib-downscale", type=int, default=1,
                        help="bicubic-downscale calibration images by this factor first (HR folders)")
    parser.add_argument("--method", choices=list(QUANT_METHODS), default="percentile",
                        help=f"quantisation method: {methods_help()}")
    parser.add_argument("--granularity", choices=GRANULARITIES, default="channel", help="weight scale granularity")
    parser.add_argument("--group-size", type=int, default=8, help="channels per scale for --granularity sublayer")
    parser.add_argument("--weight-type", choices=sorted(WEIGHT_TYPES), default="s7",
                        help="s7: int8 with 7-bit levels, no AVX2 u8s8 saturation; s8: VNNI/GPU; "
                             "u8: uint8 weights for u8u8 kernels")
    parser.add_argument("--target-db", type=float, default=None,
                        help="keep the most sensitive layers in fp32 until the output PSNR vs fp32 reaches this")
    parser.add_argument("--layer-budget-db", type=float, default=None,
                        help="keep every layer in fp32 whose lone INT8 version drops the output below this PSNR")
    parser.add_argument("--max-kept", type=int, default=12, help="most layers the fallback keeps in fp32")
    parser.add_argument("--keep", action="append", default=[], help="regex of node names forced to stay fp32")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing OUT and report (never the source model or a calibration image)")
    parser.add_argument("--recipe", default="default",
                        help="deploy passes applied before export (torch models only): default (the arch's "
                             "recipe), none, or comma-separated pass names")
    add_threads_argument(parser, f"{THREADS_HELP} (export, calibration, sensitivity)")
    add_json_argument(parser, "one JSON object: the report written to --report, with the OUT and report paths")


def fp32_graph(model_spec: str, recipe: str, crop_size: int):
    """(fp32 ONNX graph, its descriptor): the ``.onnx`` file itself, or the deploy graph of a torch
    model: dynamic, or, for an arch whose graph keeps its trace size, static at the calibration crop
    size (grown to the model's size requirements), with a warning."""
    import warnings

    import onnx

    from esr.backends.base import input_size
    from esr.errors import EsrError
    from esr.export.graph import DynamicShapeError, build_deploy_graph
    from esr.loading import open_model

    loaded = open_model(model_spec, allow_untrained=True)
    if loaded.kind == "module":
        try:
            graph = build_deploy_graph(loaded, recipe)
        except DynamicShapeError as err:
            d = loaded.descriptor
            height, width = input_size(d.replace(pads_inside=False), crop_size, crop_size)
            warnings.warn(f"{err}: quantizing a static {height}x{width} graph instead", stacklevel=2)
            graph = build_deploy_graph(loaded, recipe, shape=(1, d.in_channels, height, width))
        return graph.model, graph.descriptor
    if loaded.kind != "onnx" or loaded.descriptor.precision != "fp32":
        raise EsrError(f"{loaded.label}: esr quantize needs an fp32 ONNX graph or a torch model "
                       f"(this is a {loaded.descriptor.precision} {loaded.kind} model)")
    return onnx.load(str(loaded.path)), loaded.descriptor


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from esr.backends.sessions import use_threads
    from esr.export.images import image_files
    from esr.fileio import check_outputs, write_output_bytes
    from esr.quantize.pipeline import QuantConfig, quantize_onnx

    out = Path(args.out)
    report_path = Path(args.report) if args.report else out.with_suffix(".json")
    calib = image_files(args.calib) if Path(args.calib).is_dir() else []
    sources = [path for path in [args.model, *calib] if Path(path).is_file()]
    check_outputs([out, report_path], sources, args.overwrite)
    use_threads(args.threads)
    config = QuantConfig(
        method=args.method, granularity=args.granularity, weight_type=args.weight_type, group_size=args.group_size,
        num_calib=args.num_calib, crop_size=args.crop_size, downscale=args.calib_downscale,
        layer_budget_db=args.layer_budget_db, target_db=args.target_db, max_kept=args.max_kept, keep=args.keep,
        threads=args.threads,
    )
    graph, descriptor = fp32_graph(args.model, args.recipe, args.crop_size)
    model, report = quantize_onnx(graph, args.calib, config, descriptor=descriptor)
    report["model"] = args.model
    write_output_bytes(out, model.SerializeToString(), sources, args.overwrite)
    write_output_bytes(report_path, json.dumps(report, indent=1).encode(), sources, args.overwrite)
    if args.json:
        print_json({"out": str(out), "report": str(report_path), **report})
        return 0
    int8 = sum(u["int8"] for u in report["units"])
    crop = "x".join(map(str, report["crop_hw"]))
    print(f"{out}: {int8}/{len(report['units'])} layers INT8, kept fp32: {', '.join(report['kept_fp32']) or 'none'}; "
          f"output PSNR vs fp32 on {report['num_crops']} {crop} calibration crops "
          f"{report['output_psnr_vs_fp32_db']:.2f} dB (report {report_path}; {descriptor.provenance})")
    return 0
