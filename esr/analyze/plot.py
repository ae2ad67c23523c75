"""The roofline figure: attainable FLOP/s against arithmetic intensity, the layers as points."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Iterable

import numpy as np

from esr.analyze.hardware import HardwareProfile
from esr.analyze.roofline import LayerPrediction
from esr.fileio import write_output

OKABE_ITO = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000"]
"""Okabe & Ito's colour-blind-safe qualitative palette."""
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p"]
"""Marker shapes, so that classes stay apart in grey-scale print too."""


def profile_kind(hw: HardwareProfile) -> str:
    """How the times were obtained, for the title: calibrated, borrowed factors, or datasheet only."""
    if hw.calibrated:
        return "CALIBRATED: efficiencies and overheads fitted to measurements on this machine"
    if hw.efficiency:
        return "datasheet peaks + efficiency factors borrowed from another profile (not measured on this hardware)"
    if hw.kernel_overhead_s:
        return (f"UNCALIBRATED datasheet roofline + an assumed {hw.kernel_overhead_s * 1e6:.0f} us per kernel: "
                "points fall below the roof only by that overhead")
    return "UNCALIBRATED pure datasheet roofline: every point sits on the roof by construction"


CLASS_ORDER = ("Conv3x3", "Conv1x1", "Add", "Mul", "Resize", "MaxPool", "DWConv3x3", "MatMul", "Softmax", "Tanh",
               "DWConv5x5", "DWConv7x7", "Div", "ReduceL2", "Reciprocal", "Clip", "Sigmoid", "Conv", "Gelu", "Sub",
               "ReduceMean", "ReduceMax", "Sqrt", "Pow")
"""Op classes in a fixed order: a class keeps its colour and marker from one plot to the next."""


def style_indices(classes: Iterable[str]) -> dict[str, int]:
    """{class: style index}: a known class's place in :data:`CLASS_ORDER`, other classes the next free places
    in name order (all distinct)."""
    classes = sorted(set(classes))
    unknown = [c for c in classes if c not in CLASS_ORDER]
    return {c: CLASS_ORDER.index(c) if c in CLASS_ORDER else len(CLASS_ORDER) + unknown.index(c) for c in classes}


def style_of(index: int) -> tuple[str, str]:
    """(colour, marker) of the ``index``-th op class: 8 colours x 12 markers, all pairs distinct."""
    colour, round_ = index % len(OKABE_ITO), index // len(OKABE_ITO)
    return OKABE_ITO[colour], MARKERS[(colour + round_) % len(MARKERS)]


def stacked(group: list[LayerPrediction]) -> list[tuple[float, float, int, float]]:
    """Layers at the same (intensity, attained FLOP/s) merged: ``(intensity, flop/s, count, share)``."""
    spots: dict[tuple[float, float], list[LayerPrediction]] = defaultdict(list)
    for row in group:
        spots[(round(row.layer.intensity, 6), round(row.layer.flops / row.time_s, -3))].append(row)
    return [(rows[0].layer.intensity, rows[0].layer.flops / rows[0].time_s, len(rows), sum(r.share for r in rows))
            for rows in spots.values()]


def roofline_plot(rows: list[LayerPrediction], hw: HardwareProfile, precision: str, path: str | Path,
                  sources: Iterable[str | Path] = (), overwrite: bool = False, title: str = "") -> Path:
    """Write a PNG: the roof ``min(peak, I * bandwidth)`` and the layers with FLOPs > 0 at
    (intensity, FLOPs / predicted time), one colour + marker per op class. Layers that land on the
    same spot (e.g. 33 identical 3x3 convs) are drawn once, sized by their summed share of the time
    and labelled ``xN``; the legend gives each class's layer count and share. Data-movement layers
    (0 FLOPs) have no place on a FLOP/s axis: their count and share are in the legend.
    The file is written by :func:`esr.fileio.write_output` (``sources``, ``overwrite``: its policy).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    peak, bandwidth = hw.peak(precision), hw.memory_bandwidth
    compute = [r for r in rows if r.layer.flops > 0 and r.layer.bytes > 0]
    movement = [r for r in rows if r not in compute]
    fig, ax = plt.subplots(figsize=(9, 6), dpi=120)
    lows = [r.layer.intensity for r in compute] or [1.0]
    x = np.logspace(np.log10(min(lows) / 4), np.log10(max(max(lows) * 4, 4 * peak / bandwidth)), 200)
    ax.plot(x, np.minimum(peak, x * bandwidth), color="black", lw=1.5,
            label=f"roof: {peak / 1e12:.3g} TFLOP/s, {bandwidth / 1e9:.4g} GB/s")
    ax.axvline(peak / bandwidth, color="grey", ls=":", lw=1)
    classes = sorted({r.layer.key for r in compute}, key=lambda k: -sum(r.share for r in compute if r.layer.key == k))
    styles = style_indices(classes)
    for index, key in enumerate(classes):
        group = [r for r in compute if r.layer.key == key]
        colour, marker = style_of(styles[key])
        spots = stacked(group)
        ax.scatter([s[0] for s in spots], [s[1] for s in spots], s=[30 + 600 * s[3] for s in spots],
                   color=colour, marker=marker, alpha=0.8, edgecolors="black", linewidths=0.5,
                   label=f"{key}: {len(group)} layers, {sum(r.share for r in group) * 100:.1f}%")
        labelled = [spot for spot in spots if spot[2] > 1]
        for number, (intensity, attained, count, _) in enumerate(labelled):
            # labels alternate above / below their points (by class, then by spot within the class), so the
            # labels of near spots stay apart
            ax.annotate(f"x{count}", (intensity, attained), xytext=(7, 5 if (index + number) % 2 == 0 else -11),
                        textcoords="offset points", fontsize=7, color=colour if colour != "#F0E442" else "black")
    if movement:
        share = sum(r.share for r in movement) * 100
        ax.scatter([], [], color="none", label=f"{len(movement)} data-movement layers (0 FLOP), {share:.1f}%")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / byte)")
    ax.set_ylabel("attained FLOP/s (predicted)")
    head = title or hw.name
    ax.set_title(f"{head}, {precision}\n{profile_kind(hw)}\nmarker area = share of predicted time; "
                 "xN = N layers on one spot", fontsize=8.5)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="lower right", framealpha=0.9)
    fig.tight_layout()
    try:
        return write_output(path, lambda tmp: fig.savefig(tmp, format="png"), sources, overwrite)
    finally:
        plt.close(fig)
