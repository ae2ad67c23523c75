"""``esr models``: the zoo, and the arch presets without released weights, with params and GMACs."""
from __future__ import annotations

import argparse
import json

HELP = "list the model zoo and arch presets (scale, params, GMACs at 256x256, license)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, default=256, help="LR input side for the MAC count (default 256)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per model")


def run(args: argparse.Namespace) -> int:
    from esr.archs.presets import ARCH_PRESETS, build_model
    from esr.complexity import count_macs, count_params
    from esr.zoo import DEFAULT_MODEL, ZOO

    # zoo entries (trained weights), then presets no zoo entry covers (fresh x4 models, no weights)
    listed = [(e.name, e.preset, e.scale, e.license) for e in ZOO.values()]
    covered = {e.preset for e in ZOO.values()}
    listed += [(preset, preset, 4, "no weights") for preset in ARCH_PRESETS if preset not in covered]
    rows = []
    for name, preset, scale, license_ in listed:
        model = build_model(preset, scale).eval()
        rows.append(dict(
            name=name, preset=preset, scale=scale, params=count_params(model),
            gmacs=count_macs(model, args.size, args.size) / 1e9, license=license_,
            default=name == DEFAULT_MODEL,
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
