"""``esr models``: the zoo, and the arch presets without released weights, with params and GMACs.

The figures are data (:mod:`esr.zoo`), so listing imports no torch; ``--macs`` counts them live.
"""
from __future__ import annotations

import argparse
import json

HELP = "list the model zoo and arch presets (scale, params, GMACs at 256x256, license)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--macs", action="store_true",
                        help="count params and MACs live with esr.complexity (seconds; needs torch) instead of "
                             "reading the table")
    parser.add_argument("--size", type=int, default=None,
                        help="LR input side for the live MAC count (implies --macs; default 256)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per model")


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


def run(args: argparse.Namespace) -> int:
    from esr.errors import EsrError
    from esr.zoo import MACS_SIZE

    size = args.size or MACS_SIZE
    if size < 1:
        raise EsrError(f"--size {size}: must be >= 1")
    rows = table_rows()
    if args.macs or args.size is not None:
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
