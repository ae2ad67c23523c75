"""``esr analyze``: per-layer roofline analysis and latency prediction of a model's deploy graph."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from esr.cli.common import THREADS_HELP, add_json_argument, add_model_argument, add_threads_argument, print_json
from esr.cli.shapes import DEFAULT_HW, for_model, shape_arg, text

DEFAULT_SHAPE = (1, None, *DEFAULT_HW)

HELP = "per-layer roofline analysis and predicted latency of a model's deploy graph on a hardware profile"


def configure(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser, "zoo name, checkpoint path, arch preset (random weights: the graph does not depend "
                               "on them), or an .onnx graph analysed as it is (default: the embedded model)")
    parser.add_argument("--scale", type=int, default=None, help="scale (presets: default 4)")
    parser.add_argument("--hw", default="local",
                        help="hardware profile: local (this machine, measured), h100, a100, l4, rtx3090, rtx4090, "
                             "jetson-agx-orin, orin-nano")
    parser.add_argument("--shape", type=shape_arg, default=None,
                        help="input NxCxHxW or HxW (channels: the model's; default: 256x256, a static-shape .onnx: "
                             "its own)")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32",
                        help="bytes per element and peak used")
    parser.add_argument("--recipe", default="default",
                        help="deploy passes applied before export (torch models): default (the arch's recipe), none, "
                             "or comma-separated pass names")
    parser.add_argument("--calibrate", action="store_true",
                        help="first measure this machine (micro-benchmarks + ONNX Runtime per-layer profiling of "
                             "RLFN and DITN-Real x4 at 64x64 and 160x160) and cache the fitted local profile")
    parser.add_argument("--factors-from", default=None, metavar="HW",
                        help="use the fitted efficiency factors of profile HW (e.g. local) on --hw's peaks")
    add_threads_argument(parser, f"{THREADS_HELP}; also the thread count the local profile is measured and "
                                 "cached for")
    parser.add_argument("--plot", default=None, metavar="PNG", help="write a roofline plot with the layers as points")
    parser.add_argument("--save-graph", default=None, metavar="ONNX",
                        help="also write the analysed deploy graph (static shape), e.g. to time it with esr bench")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing --plot/--save-graph files (never the source model)")
    add_json_argument(parser, "one JSON object (layers and totals)")


def print_table(name: str, hw, rows, summary: dict, precision: str, note: str) -> None:
    calibrated = "calibrated" if hw.calibrated else (
        "borrowed efficiency factors" if hw.efficiency else "uncalibrated roofline")
    print(f"{name} on {hw.name} ({hw.description}; {calibrated}), {precision}; peak "
          f"{hw.peak(precision) / 1e12:.3g} TFLOP/s, {hw.memory_bandwidth / 1e9:.4g} GB/s")
    if note:
        print(f"note: {note}")
    print(f"{'#':>3} {'layer':<44}{'op':<18}{'MFLOP':>9}{'MB':>8}{'FLOP/B':>8}  {'bound':<8}{'ms':>9}{'share':>7}")
    for i, row in enumerate(rows):
        layer = row.layer
        print(f"{i:>3} {layer.name[-44:]:<44}{layer.op[:17]:<18}{layer.flops / 1e6:>9.1f}{layer.bytes / 1e6:>8.2f}"
              f"{layer.intensity:>8.1f}  {row.bound:<8}{row.time_s * 1e3:>9.3f}{row.share * 100:>6.1f}%")
    print(f"total: {summary['layers']} layers, {summary['flops'] / 1e9:.2f} GFLOP, {summary['bytes'] / 1e6:.1f} MB, "
          f"{summary['compute_bound_layers']} compute-bound / {summary['memory_bound_layers']} memory-bound; "
          f"predicted {summary['time_ms']:.3f} ms (pure roofline {summary['roofline_ms']:.3f} ms)")


def static_graph(loaded, shape: tuple[int, int, int, int] | None, recipe: str):
    """(static-shape ONNX graph, its recipe, the shape, a writer for ``--save-graph``) of ``loaded``: the deploy
    graph of a torch model, or an ``.onnx`` file as it is, fixed to ``shape`` (a static graph: its own shape)."""
    from esr.errors import EsrError
    from esr.export.graph import build_deploy_graph
    from esr.fileio import write_output

    if loaded.kind == "module":
        graph = build_deploy_graph(loaded, recipe, for_model(shape or DEFAULT_SHAPE, loaded.descriptor, "--shape"),
                                   dynamic=False)
        return graph.model, graph.recipe, graph.shape, graph.save
    if loaded.kind != "onnx":
        raise EsrError(f"{loaded.label}: esr analyze reads torch models and ONNX graphs, not {loaded.kind} files "
                       "(analyse the ONNX the engine was built from)")
    if recipe != "default":
        raise EsrError(f"{loaded.label}: --recipe applies to torch models; an ONNX graph is analysed as it is")
    import onnx

    from esr.export.onnx_export import at_static_shape
    from esr.loading import graph_input_dims

    source = onnx.load(str(loaded.path))
    dims = graph_input_dims(source)
    static = all(isinstance(d, int) and d > 0 for d in dims)
    shape = tuple(dims) if static and shape is None else for_model(shape or DEFAULT_SHAPE, loaded.descriptor,
                                                                       "--shape")
    try:
        model = at_static_shape(source, shape)
    except ValueError as err:
        raise EsrError(f"{loaded.label}: --shape {'x'.join(map(str, shape))}: {err}") from None
    except Exception as err:  # onnxslim's own failures on a graph it cannot fold
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise EsrError(f"{loaded.label}: cannot fix its input to {'x'.join(map(str, shape))} ({reason})") from None

    def save(path: str, sources: list, overwrite: bool) -> None:
        write_output(path, lambda tmp: onnx.save(model, tmp), [*sources, loaded.path], overwrite)

    return model, list(loaded.descriptor.recipe), shape, save


def run(args: argparse.Namespace) -> int:
    import torch

    from esr.analyze.graph import analyze_graph
    from esr.analyze.hardware import get_profile
    from esr.analyze.roofline import predict, totals
    from esr.backends.sessions import use_threads
    from esr.errors import EsrError
    from esr.fileio import check_outputs
    from esr.loading import open_model
    from esr.zoo import DEFAULT_MODEL

    name = args.model or DEFAULT_MODEL
    sources = [name] if Path(name).is_file() else []
    check_outputs([path for path in (args.plot, args.save_graph) if path], sources, args.overwrite)
    use_threads(args.threads)
    threads = args.threads or torch.get_num_threads()
    if args.calibrate:
        from esr.analyze.calibrate import calibrate_local

        profile, measurements = calibrate_local(threads)
        timed = ", ".join(f"{m.label} {m.total_s * 1e3:.1f} ms" for m in measurements)
        print(f"calibrated local profile ({timed}); efficiency per op class: "
              + ", ".join(f"{k} {v:.2f}" for k, v in sorted(profile.efficiency.items())),
              file=sys.stderr if args.json else sys.stdout)
    hw = get_profile(args.hw, threads)
    if args.factors_from:
        hw = hw.with_factors_from(get_profile(args.factors_from, threads))
    if args.shape is not None and args.shape[0] != 1:
        raise EsrError(f"--shape {text(args.shape)}: only batch 1 is analysed")
    loaded = open_model(name, scale=args.scale, allow_untrained=True)
    model, recipe, shape, save_graph = static_graph(loaded, args.shape, args.recipe)
    if shape[0] != 1:
        raise EsrError(f"{name}: its input is {text(shape)}; only batch 1 is analysed")
    try:
        layers = analyze_graph(model, args.precision)
    except ValueError as err:
        raise EsrError(f"{name}: {err}") from None
    if args.save_graph:
        save_graph(args.save_graph, sources, args.overwrite)
    rows = predict(layers, hw, args.precision)
    summary = totals(rows)
    note = f"{loaded.descriptor.provenance}; deploy passes: {', '.join(recipe) or 'none'}"
    if args.plot:
        from esr.analyze.plot import roofline_plot

        roofline_plot(rows, hw, args.precision, args.plot, sources, args.overwrite,
                      title=f"{name} {shape[2]}x{shape[3]} on {hw.name}")
    if args.json:
        print_json({"model": name, "hw": hw.name, "calibrated": hw.calibrated, "precision": args.precision,
                    "shape": list(shape), "passes": recipe, "trained": loaded.descriptor.trained,
                    "note": note, "totals": summary, "layers": [row.to_json() for row in rows]})
    else:
        print_table(name, hw, rows, summary, args.precision, note)
        if args.plot:
            print(f"plot: {args.plot}")
    return 0
