"""``esr models``: the zoo, and the arch presets without released weights, with params and GMACs;
``esr models --file X``: what esr makes of a model file (checkpoint, ONNX, engine).

The figures are data (:mod:`esr.zoo`), so listing imports no torch; ``--macs`` counts them live.
"""
from __future__ import annotations

import argparse
import json

from esr.cli.common import THREADS_HELP, add_threads_argument

HELP = ("list the model zoo and arch presets (scale, params, GMACs at 256x256, license), or describe a model "
        "file (--file)")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--macs", action="store_true",
                        help="count params and MACs live with esr.complexity (seconds; needs torch) instead of "
                             "reading the table")
    parser.add_argument("--size", type=int, default=None,
                        help="LR input side for the live MAC count (implies --macs; default 256)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per model")
    add_threads_argument(parser, f"{THREADS_HELP} (--macs)")
    parser.add_argument("--file", default=None, metavar="MODEL",
                        help="describe this checkpoint (.pth/.pt/.ckpt/.safetensors: esr's archs or spandrel's), "
                             ".onnx file or engine: detected arch, scale, channels, size requirements, tiling, "
                             "params, deploy recipe")


def table_rows() -> list[dict]:
    """Zoo entries (trained weights), then presets no zoo entry covers (x4, random weights)."""
    from esr.zoo import DEFAULT_MODEL, PRESETS, ZOO

    rows = [dict(name=e.name, preset=e.preset, arch=PRESETS[e.preset].arch, scale=e.scale, params=e.params,
                 gmacs=e.gmacs, license=e.license, weights="zoo", default=e.name == DEFAULT_MODEL)
            for e in ZOO.values()]
    covered = {e.preset for e in ZOO.values()}
    rows += [dict(name=p.name, preset=p.name, arch=p.arch, scale=4, params=p.params_x4, gmacs=p.gmacs_x4,
                  license="no weights", weights=p.weights, default=False)
             for p in PRESETS.values() if p.name not in covered]
    return rows


def count_live(rows: list[dict], size: int) -> None:
    """Replace each row's params and GMACs by a live count at ``size`` x ``size``."""
    from esr.archs.presets import build_model
    from esr.complexity import count_macs, count_params

    for row in rows:
        model = build_model(row["preset"], row["scale"]).eval()
        row.update(params=count_params(model), gmacs=count_macs(model, size, size) / 1e9)


def describe_file(spec: str, size: int | None) -> dict:
    """What :func:`esr.loading.open_model` finds in ``spec``: the descriptor's fields, plus params and
    the default deploy recipe of a torch model (and its GMACs at ``size`` x ``size`` when given)."""
    from esr.loading import open_model

    loaded = open_model(spec, allow_untrained=True)
    d = loaded.descriptor
    info = dict(file=str(spec), kind=loaded.kind, arch=d.arch, name=d.name, scale=d.scale, in_channels=d.in_channels,
                out_channels=d.out_channels, purpose=d.purpose, min_size=d.min_size, size_multiple=d.size_multiple,
                square=d.square, tiling=d.tiling, precision=d.precision, license=d.license, source=d.source,
                sha256=d.source_sha256, hyperparams=dict(d.hyperparams))
    if loaded.kind == "module":
        from esr.complexity import count_macs, count_params
        from esr.plugins import default_recipe

        info.update(params=count_params(loaded.module), recipe=default_recipe(d))
        if size is not None:
            info.update(gmacs=count_macs(loaded.module, size, size) / 1e9, gmacs_size=size)
    else:
        info.update(recipe=list(d.recipe))
    return info


def print_file(info: dict) -> None:
    size = (f"min {info['min_size']}, multiple of {info['size_multiple']}"
            f"{', square' if info['square'] else ''} (esr pads and crops)")
    lines = [f"{info['file']}: {info['arch']} ({info['kind']}, {info['source'] or 'no source recorded'})",
             f"  scale x{info['scale']} ({info['purpose']}), channels {info['in_channels']} -> {info['out_channels']}, "
             f"{info['precision']}",
             f"  input size: {size}; tiling: {info['tiling']}",
             f"  deploy recipe: {', '.join(info['recipe']) or 'none'}",
             f"  license: {info['license'] or 'not recorded (a state dict does not say; check where the file came from)'}"]
    if "params" in info:
        macs = f", {info['gmacs']:.2f} GMACs at {info['gmacs_size']}x{info['gmacs_size']}" if "gmacs" in info else ""
        lines.insert(3, f"  params: {info['params'] / 1e6:.3f} M{macs}")
    print("\n".join(lines))


def run(args: argparse.Namespace) -> int:
    from esr.errors import EsrError
    from esr.zoo import MACS_SIZE

    size = args.size or MACS_SIZE
    if size < 1:
        raise EsrError(f"--size {size}: must be >= 1")
    if args.file is not None:
        info = describe_file(args.file, size if args.macs or args.size is not None else None)
        if args.json:
            print(json.dumps(info))
        else:
            print_file(info)
        return 0
    rows = table_rows()
    if args.macs or args.size is not None:
        from esr.backends.sessions import use_threads

        use_threads(args.threads)
        count_live(rows, size)
    if args.json:
        for row in rows:
            print(json.dumps({**row, "gmacs_size": size}))
        return 0
    print(f"{'name':<16}{'arch':<8}{'preset':<12}{'scale':>5}{'params':>11}{f'GMACs@{size}':>12}  license")
    for row in rows:
        mark = " (default)" if row["default"] else ""
        print(f"{row['name']:<16}{row['arch']:<8}{row['preset']:<12}{row['scale']:>5}{row['params'] / 1e6:>10.3f}M"
              f"{row['gmacs']:>12.2f}  {row['license']}{mark}")
    return 0
