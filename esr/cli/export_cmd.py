"""``esr export``: deploy recipe, ONNX export with checks, optional TensorRT engine.

Exit codes: 0 done; 1 ONNX written but onnxruntime parity above tolerance; 2 bad
arguments or model, or an output path refused (it exists: ``--overwrite``; it is the
source model: never); 3 (``--trt``) TensorRT not importable: the ONNX is written and the
equivalent ``trtexec`` command is printed; 4 TensorRT could not parse/build the graph.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from esr.cli.common import THREADS_HELP, add_json_argument, add_model_argument, add_threads_argument, print_json

HELP = "export a model to ONNX (deploy rewrites, parity and TensorRT op checks) and optionally a TensorRT engine"

DEFAULT_OPT = "256x256"
DEFAULT_MIN = "16x16"
DEFAULT_MAX = "1024x1024"
"""Profile shapes: HxW, the channel count is the model's (NxCxHxW is accepted too)."""


def configure(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser, "zoo name, checkpoint path, or arch preset (random weights, marked untrained in the "
                               "ONNX metadata) (default: the embedded model)")
    parser.add_argument("--scale", type=int, default=None, help="scale (zoo names with several scales; presets: 4)")
    parser.add_argument("--onnx", default=None, help="output .onnx (default: MODEL_xS.onnx in the current folder)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing output files (never the source model)")
    parser.add_argument("--trt", nargs="?", const="", default=None, metavar="OUT.engine",
                        help="also build a TensorRT engine (default path: the ONNX path with .engine)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16", "int8"), default="auto",
                        help="the engine's precision (--trt): fp32, fp16, int8 (QDQ graph, or calibration via --calib); "
                             "auto/fp32 without --trt: the fp32 ONNX, which runtimes run at any precision "
                             "(--precision on upscale/eval/bench); bf16 is a runtime precision only")
    parser.add_argument("--fp16", action="store_true", help="same as --precision fp16")
    parser.add_argument("--int8", action="store_true", help="same as --precision int8")
    parser.add_argument("--calib", default=None, help="folder of calibration images for --int8")
    parser.add_argument("--calib-cache", default=None, help="INT8 calibration cache (read if present, else written)")
    parser.add_argument("--dynamic", action="store_true",
                        help="symbolic N/H/W (else static at --opt); checked by running the graph at a second "
                             "size: an arch whose graph keeps the trace size is refused in one line")
    parser.add_argument("--min", default=DEFAULT_MIN, help="profile min shape, HxW or NxCxHxW")
    parser.add_argument("--opt", default=DEFAULT_OPT, help="profile opt / static shape")
    parser.add_argument("--max", default=DEFAULT_MAX, help="profile max shape")
    parser.add_argument("--recipe", default="default",
                        help="deploy passes: default (the arch's recipe), none, or comma-separated pass names")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")
    parser.add_argument("--parity", default=None, metavar="DIR",
                        help="image folder for the onnxruntime parity check, up to 5 images (default: the package's "
                             "sample image, a CC0 photo crop)")
    add_threads_argument(parser, f"{THREADS_HELP} (tracing, the deploy passes' checks, the parity check)")
    parser.add_argument("--workspace", type=int, default=4096, help="TensorRT workspace limit in MiB")
    parser.add_argument("--timing-cache", default=None, help="TensorRT timing cache file (reused and updated)")
    add_json_argument(parser, "one JSON object (passes, node counts, params, GMACs, parity, TensorRT verdict, "
                              "engine)")


def export_precision(args: argparse.Namespace) -> str:
    """The precision of what ``esr export`` builds: fp32 for the ONNX; the engine's with --trt. EsrError (exit 2)
    for what export cannot build."""
    from esr.errors import EsrError

    aliases = [p for p, flag in (("fp16", args.fp16), ("int8", args.int8)) if flag]
    if len(aliases) > 1 or (aliases and args.precision not in ("auto", aliases[0])):
        raise EsrError(f"--precision {args.precision}, --fp16 and --int8 contradict each other")
    precision = aliases[0] if aliases else args.precision
    if precision == "bf16":
        raise EsrError("--precision bf16: a runtime precision, not a graph's: export the fp32 ONNX and run it with "
                       "--backend openvino --precision bf16 (or torch) on a CPU with AMX/AVX512-BF16")
    if precision in ("fp16", "int8") and args.trt is None:
        how = ("make an INT8 QDQ graph with esr quantize" if precision == "int8"
               else "run the fp32 ONNX with --precision fp16 (onnxruntime on CUDA, openvino)")
        raise EsrError(f"--precision {precision}: the ONNX graph stays fp32; add --trt for a TensorRT {precision} "
                       f"engine, or {how}")
    return "fp32" if precision == "auto" else precision


def engine_spec(args: argparse.Namespace, onnx_path: Path, shapes: dict[str, tuple[int, int, int, int]]):
    from esr.export.images import image_files
    from esr.export.trt_build import EngineSpec

    precision = export_precision(args)
    engine = Path(args.trt) if args.trt else onnx_path.with_suffix(".engine")
    static = not args.dynamic
    return EngineSpec(
        onnx_path=onnx_path, engine_path=engine,
        min_shape=shapes["opt"] if static else shapes["min"], opt_shape=shapes["opt"],
        max_shape=shapes["opt"] if static else shapes["max"], precision=precision,
        workspace_mib=args.workspace, timing_cache=Path(args.timing_cache) if args.timing_cache else None,
        calib_cache=Path(args.calib_cache) if args.calib_cache else None,
        calib_images=image_files(args.calib) if args.calib else [],
    )


def run(args: argparse.Namespace) -> int:
    from esr.backends.sessions import use_threads
    from esr.cli.shapes import for_model, parse_shape
    from esr.errors import EXIT_FAILED, EXIT_USAGE, EsrError
    from esr.export.pipeline import PARITY_TOL, report_json, report_lines, run_export
    from esr.export.trt_build import EXIT_NO_TENSORRT, build_engine, trtexec_command
    from esr.fileio import check_outputs
    from esr.loading import engine_sidecar, open_model
    from esr.zoo import DEFAULT_MODEL

    export_precision(args)  # refuse what cannot be built before any work
    try:
        parsed = {name: parse_shape(getattr(args, name)) for name in ("min", "opt", "max")}
    except ValueError as err:
        raise EsrError(f"--min/--opt/--max: {err}", EXIT_USAGE) from None
    sizes = [[d for i, d in enumerate(parsed[name]) if i != 1] for name in ("min", "opt", "max")]
    if args.dynamic and not all(a <= b <= c for a, b, c in zip(*sizes)):
        raise EsrError("--min/--opt/--max: need min <= opt <= max in every dimension", EXIT_USAGE)
    if args.opset < 17:
        raise EsrError(f"--opset {args.opset}: esr exports opset 17 or newer", EXIT_USAGE)
    if args.calib and not Path(args.calib).is_dir():
        raise EsrError(f"{args.calib}: --calib must be a folder of images", EXIT_USAGE)
    if args.parity and not Path(args.parity).is_dir():
        raise EsrError(f"{args.parity}: --parity must be a folder of images", EXIT_USAGE)
    use_threads(args.threads)

    name = args.model or DEFAULT_MODEL
    loaded = open_model(name, scale=args.scale, allow_untrained=True)
    shapes = {key: for_model(shape, loaded.descriptor, f"--{key}") for key, shape in parsed.items()}
    scale = loaded.descriptor.scale
    onnx_path = Path(args.onnx) if args.onnx else Path(f"{Path(str(name)).stem}_x{scale}.onnx")
    targets = [onnx_path]
    if args.trt is not None:
        engine = Path(args.trt) if args.trt else onnx_path.with_suffix(".engine")
        targets += [engine, engine_sidecar(engine)]
    sources = [name] if Path(str(name)).is_file() else []
    check_outputs(targets, sources, args.overwrite)
    report = run_export(loaded, onnx_path, args.recipe, shapes["opt"], args.dynamic, args.opset,
                        Path(args.parity) if args.parity else None, sources=sources, overwrite=args.overwrite,
                        threads=args.threads)
    result = {"model": str(name), **report_json(report), "engine": None}
    if not args.json:
        print(f"model: {name} (x{scale}, {loaded.descriptor.provenance}), "
              f"recipe: {', '.join(report.descriptor.recipe) or 'none'}")
        print("\n".join(report_lines(report)))

    if args.trt is not None:
        spec = engine_spec(args, onnx_path, shapes)
        min_side = max(spec.min_shape[2], spec.min_shape[3])
        engine_descriptor = report.descriptor.replace(precision=spec.precision,
                                                      min_size=max(report.descriptor.min_size, min_side))
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            command = trtexec_command(spec)
            if args.json:
                print_json({**result, "trtexec": command})
            else:
                print(f"build the engine on a machine with TensorRT 10:\n  {command}")
            raise EsrError(f"{spec.engine_path}: TensorRT is not installed here; ONNX written to {onnx_path}",
                           EXIT_NO_TENSORRT) from None
        sidecar = build_engine(spec, {"source_model": str(name), "descriptor": engine_descriptor.to_metadata()})
        result["engine"] = {"path": str(spec.engine_path), **sidecar}
        if not args.json:
            print(f"engine: {spec.engine_path} ({sidecar['precision']}, TensorRT {sidecar['tensorrt_version']}, "
                  f"{sidecar['gpu']})")
    if args.json:
        print_json(result)
    if not report.parity_ok:
        raise EsrError(f"{onnx_path}: onnxruntime parity {report.parity_max:.2e} exceeds {PARITY_TOL:g}", EXIT_FAILED)
    return 0
