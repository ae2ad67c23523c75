"""``esr bench``: time a model on one or all backends by the shared benchmark protocol."""
from __future__ import annotations

import argparse
import json

from esr.cli.analyze_cmd import parse_shape

HELP = "time a model on torch / onnxruntime / tensorrt (warm-up, N runs, median and p90, machine recorded)"
ALL_BACKENDS = ("torch", "onnxruntime", "tensorrt")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="zoo name, checkpoint, .onnx file (onnxruntime) or engine (tensorrt); default: embedded model")
    parser.add_argument("--backend", choices=ALL_BACKENDS + ("all",), default=None,
                        help="backend (default: the one that runs --model as is); 'all' skips those that cannot run")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device (default cpu)")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32", help="precision (default fp32)")
    parser.add_argument("--shape", type=parse_shape, action="append", default=None,
                        help="input NxCxHxW, repeatable (default 1x3x256x256)")
    parser.add_argument("--runs", type=int, default=10, help="timed runs (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed warm-up runs (default 2)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's; onnxruntime "
                        "uses its own default, one per physical core)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per measurement")


def run(args: argparse.Namespace) -> int:
    import torch

    from esr.backends import create_backend, default_backend_for
    from esr.bench import bench_backend, machine_info
    from esr.errors import EXIT_FAILED, EsrError
    from esr.zoo import DEFAULT_MODEL

    if args.runs < 1 or args.warmup < 0:
        raise EsrError(f"--runs {args.runs} --warmup {args.warmup}: need runs >= 1 and warmup >= 0")
    if args.precision == "int8":
        raise EsrError("--precision int8: no esr backend runs INT8 (naive INT8 breaks SR quality; "
                       "see esr analyze --precision int8 for a prediction)")
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = args.model or DEFAULT_MODEL
    names = ALL_BACKENDS if args.backend == "all" else (args.backend or default_backend_for(spec),)
    shapes = args.shape or [(1, 3, 256, 256)]
    machine = machine_info()
    records, failures = [], 0
    for name in names:
        try:
            backend = create_backend(name, spec, device=args.device, fp16=args.precision == "fp16")
            if backend.fp16 != (args.precision == "fp16"):
                raise EsrError(f"backend {name} on {args.device} cannot run {args.precision}")
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
    if not records:
        failures = 1
    if not args.json:
        print(f"{machine['cpu']}, {machine['cores']} cores, GPU {machine['gpu'] or 'none'}; torch "
              f"{machine['versions']['torch']}, onnxruntime {machine['versions']['onnxruntime']}; load {machine['load_avg']}")
        print(f"{'backend':<13}{'device':<7}{'prec':<6}{'shape':<16}{'median ms':>10}{'p90 ms':>10}{'runs':>6}")
        for r in records:
            shape = "x".join(map(str, r["shape"]))
            copy = f"  (copies {r['copy_ms']:.2f} ms)" if "copy_ms" in r else ""
            print(f"{r['backend']:<13}{r['device']:<7}{r['precision']:<6}{shape:<16}{r['median_ms']:>10.2f}"
                  f"{r['p90_ms']:>10.2f}{r['runs']:>6}{copy}")
    return EXIT_FAILED if failures else 0
