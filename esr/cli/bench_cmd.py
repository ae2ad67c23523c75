"""``esr bench``: time a model through the backend objects ``esr upscale`` runs, by the shared benchmark protocol."""
from __future__ import annotations

import argparse
import sys

from esr.cli.common import add_device_argument, add_json_argument, add_model_argument, add_threads_argument, print_json
from esr.cli.shapes import DEFAULT_HW, for_model, shape_arg

HELP = ("time a model on the registered backends (warm-up, N runs, median and p90, machine recorded); "
        "--precision all: every backend x precision with its fidelity, the table --backend auto chooses from")


def configure(parser: argparse.ArgumentParser) -> None:
    from esr.cli.backend_args import add_backend_arguments

    add_model_argument(parser, "zoo name, checkpoint, .onnx file, engine, or arch preset (random weights: timing "
                               "does not depend on them) (default: the embedded model)")
    parser.add_argument("--scale", type=int, default=None, help="scale (presets: default 4)")
    add_backend_arguments(parser, backend_default=None, precision_default=None, table=True)
    add_device_argument(parser)
    parser.add_argument("--shape", type=shape_arg, action="append", default=None,
                        help="input NxCxHxW or HxW (channels: the model's), repeatable (default 256x256)")
    parser.add_argument("--runs", type=int, default=10, help="timed runs")
    parser.add_argument("--warmup", type=int, default=2, help="untimed warm-up runs")
    add_threads_argument(parser)
    add_json_argument(parser, "one JSON object per line: one per measurement (--precision all: one per shape)")


def run(args: argparse.Namespace) -> int:
    from esr.backends import default_backend_for, default_device, runtime_names
    from esr.backends.auto_backend import make_backend
    from esr.bench import bench_backend, machine_info
    from esr.errors import EXIT_FAILED, EsrError
    from esr.loading import open_model
    from esr.zoo import DEFAULT_MODEL

    if args.runs < 1 or args.warmup < 0:
        raise EsrError(f"--runs {args.runs} --warmup {args.warmup}: need runs >= 1, warmup >= 0")
    spec = args.model or DEFAULT_MODEL
    loaded = open_model(spec, scale=args.scale, allow_untrained=True)
    several = args.backend == "all" or args.precision == "all"  # several backends: cuda if available to torch
    named = args.backend if args.backend not in (None, "all") else None if several else default_backend_for(loaded)
    args.device = args.device or default_device(named)
    shapes = [for_model(shape, loaded.descriptor, "--shape") for shape in args.shape or [(1, None, *DEFAULT_HW)]]
    machine = machine_info()
    if args.precision == "all":
        return candidate_table(args, loaded, shapes, machine)
    names = runtime_names() if args.backend == "all" else [named]
    records = []
    for name in names:
        try:
            backend = make_backend(name, loaded, args.device, args.precision, args.threads, args.min_fidelity_db,
                                   tuple(shapes[0][2:]), quiet=args.json)
        except EsrError as err:
            if args.backend != "all":
                raise
            print(f"skipped {name}: {err}", file=sys.stderr if args.json else sys.stdout)
            continue
        records += [{"model": str(spec), **bench_backend(backend, shape, args.runs, args.warmup), "machine": machine}
                    for shape in shapes]
    if args.json:
        for record in records:
            print_json(record)
        return 0 if records else EXIT_FAILED
    descriptor = loaded.descriptor
    print(f"{machine['cpu']}, {machine['cores']} cores, GPU {machine['gpu'] or 'none'}; torch "
          f"{machine['versions']['torch']}, onnxruntime {machine['versions']['onnxruntime']}; load {machine['load_avg']}")
    print(f"model: {spec} (x{descriptor.scale}, {descriptor.provenance})")
    print(f"{'backend':<24}{'device':<7}{'prec':<6}{'shape':<16}{'median ms':>10}{'p90 ms':>10}{'runs':>6}  recipe")
    for r in records:
        shape = "x".join(map(str, r["shape"]))
        copy = f"  (copies {r['copy_ms']:.2f} ms)" if "copy_ms" in r else ""
        print(f"{r['backend']:<24}{r['device']:<7}{r['precision']:<6}{shape:<16}{r['median_ms']:>10.2f}"
              f"{r['p90_ms']:>10.2f}{r['runs']:>6}  {','.join(r['recipe']) or '-'}{copy}")
    return 0 if records else EXIT_FAILED


def candidate_table(args: argparse.Namespace, loaded, shapes: list, machine: dict) -> int:
    """Every backend x precision candidate measured as auto measures it (fidelity on the sample image, then
    interleaved timing of those above the floor), with auto's verdict on each; one table per shape."""
    import torch

    from esr.autoselect import Candidate, choose, default_floor, measure
    from esr.backends import create_backend
    from esr.backends.auto_backend import candidates_for
    from esr.channels import to_channels
    from esr.sample import sample_batch

    backends = None if args.backend in (None, "all", "auto") else [args.backend]
    precision = None if args.precision in (None, "all", "auto") else args.precision
    candidates = candidates_for(loaded, args.device, backends, precision)
    own = loaded.descriptor.precision if loaded.kind != "module" else "fp32"
    references = [c for c in (Candidate("onnxruntime", own, args.device), Candidate("torch", own, args.device))
                  if c in candidates] or candidates[:1]

    def build(candidate: Candidate):
        return create_backend(candidate.backend, loaded, candidate.device, candidate.precision, args.threads)

    sample = to_channels(torch.from_numpy(sample_batch()), loaded.descriptor.in_channels)
    for shape in shapes:
        tile = torch.rand(shape, generator=torch.Generator().manual_seed(0))
        trials, reference = measure(candidates, build, sample, tile, references, args.min_fidelity_db,
                                    warmup=args.warmup, runs=args.runs, stop_ratio=None)
        floor = default_floor(reference) if args.min_fidelity_db is None else args.min_fidelity_db
        decision = choose(trials, floor, reference)
        if args.json:
            print_json({"model": str(args.model), "shape": list(shape), "reference": reference.label,
                        "chosen": decision.chosen.label, "min_fidelity_db": floor,
                        "trials": [t.to_json() for t in trials], "machine": machine})
            continue
        print(f"{loaded.label} {'x'.join(map(str, shape))} on {machine['cpu']} (load {machine['load_avg']}); "
              f"fidelity on the sample image vs {reference.label}, floor {floor:g} dB")
        print("\n".join(decision.table()))
        print(decision.line())
    return 0
