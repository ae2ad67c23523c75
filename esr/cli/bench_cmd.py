"""``esr bench``: time a model through the backend objects ``esr upscale`` runs, by the shared benchmark protocol."""
from __future__ import annotations

import argparse
import json

from esr.cli.shapes import DEFAULT_HW, for_model, shape_arg

HELP = "time a model on the registered backends (warm-up, N runs, median and p90, machine recorded)"


def configure(parser: argparse.ArgumentParser) -> None:
    from esr.backends import backend_devices, backend_names, backend_precisions, backends_help

    parser.add_argument("--model", default=None,
                        help="zoo name, checkpoint, .onnx file, engine, or arch preset (random weights: timing "
                             "does not depend on them) (default: the embedded model)")
    parser.add_argument("--scale", type=int, default=None, help="scale (presets: default 4)")
    parser.add_argument("--backend", choices=[*backend_names(), "all"], default=None,
                        help=f"default: the first that runs --model as is; 'all' skips those that cannot run it. "
                             f"{backends_help()}")
    parser.add_argument("--device", choices=backend_devices(), default="cpu", help="device (default cpu)")
    parser.add_argument("--precision", choices=backend_precisions(), default=None,
                        help="precision to require (default: the backend's own; a graph's is read from it, "
                             "an INT8 QDQ graph runs int8)")
    parser.add_argument("--shape", type=shape_arg, action="append", default=None,
                        help="input NxCxHxW or HxW (channels: the model's), repeatable (default 256x256)")
    parser.add_argument("--runs", type=int, default=10, help="timed runs (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed warm-up runs (default 2)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch and onnxruntime (default 0: each library's own default)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per measurement")


def run(args: argparse.Namespace) -> int:
    from esr.backends import backend_names, create_backend, default_backend_for
    from esr.bench import bench_backend, machine_info
    from esr.errors import EXIT_FAILED, EsrError
    from esr.loading import open_model
    from esr.zoo import DEFAULT_MODEL

    if args.runs < 1 or args.warmup < 0 or args.threads < 0:
        raise EsrError(f"--runs {args.runs} --warmup {args.warmup} --threads {args.threads}: "
                       "need runs >= 1, warmup >= 0, threads >= 0")
    spec = args.model or DEFAULT_MODEL
    loaded = open_model(spec, scale=args.scale, allow_untrained=True)
    names = backend_names() if args.backend == "all" else [args.backend or default_backend_for(loaded)]
    shapes = [for_model(shape, loaded.descriptor, "--shape") for shape in args.shape or [(1, None, *DEFAULT_HW)]]
    machine = machine_info()
    records = []
    for name in names:
        try:
            backend = create_backend(name, loaded, device=args.device, precision=args.precision, threads=args.threads)
            if args.precision is not None and backend.precision != args.precision:
                raise EsrError(f"backend {name} on {args.device} cannot run {args.precision} "
                               f"(it runs {backend.precision} here)")
        except EsrError as err:
            if args.backend != "all":
                raise
            print(f"skipped {name}: {err}")
            continue
        for shape in shapes:
            record = {"model": str(spec), **bench_backend(backend, shape, args.runs, args.warmup), "machine": machine}
            records.append(record)
            if args.json:
                print(json.dumps(record))
    if not args.json:
        descriptor = loaded.descriptor
        print(f"{machine['cpu']}, {machine['cores']} cores, GPU {machine['gpu'] or 'none'}; torch "
              f"{machine['versions']['torch']}, onnxruntime {machine['versions']['onnxruntime']}; load {machine['load_avg']}")
        print(f"model: {spec} (x{descriptor.scale}, {descriptor.provenance})")
        print(f"{'backend':<13}{'device':<7}{'prec':<6}{'shape':<16}{'median ms':>10}{'p90 ms':>10}{'runs':>6}  recipe")
        for r in records:
            shape = "x".join(map(str, r["shape"]))
            copy = f"  (copies {r['copy_ms']:.2f} ms)" if "copy_ms" in r else ""
            print(f"{r['backend']:<13}{r['device']:<7}{r['precision']:<6}{shape:<16}{r['median_ms']:>10.2f}"
                  f"{r['p90_ms']:>10.2f}{r['runs']:>6}  {','.join(r['recipe']) or '-'}{copy}")
    return 0 if records else EXIT_FAILED
