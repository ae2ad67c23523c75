"""``esr models``: the zoo with parameter counts and GMACs."""
from __future__ import annotations

import argparse
import json

HELP = "list the model zoo (arch, scale, params, GMACs at 256x256, license)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, default=256, help="LR input side for the MAC count (default 256)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per model")


def run(args: argparse.Namespace) -> int:
    from esr.archs.presets import build_model
    from esr.complexity import count_macs, count_params
    from esr.zoo import DEFAULT_MODEL, ZOO

    rows = []
    for entry in ZOO.values():
        model = build_model(entry.preset, entry.scale).eval()
        rows.append(dict(
            name=entry.name, preset=entry.preset, scale=entry.scale, params=count_params(model),
            gmacs=count_macs(model, args.size, args.size) / 1e9, license=entry.license,
            default=entry.name == DEFAULT_MODEL,
        ))
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"{'name':<16}{'arch':<12}{'scale':>5}{'params':>11}{f'GMACs@{args.size}':>12}  license")
    for row in rows:
        mark = " (default)" if row["default"] else ""
        print(f"{row['name']:<16}{row['preset']:<12}{row['scale']:>5}{row['params'] / 1e6:>10.3f}M"
              f"{row['gmacs']:>12.2f}  {row['license']}{mark}")
    return 0
