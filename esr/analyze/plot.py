"""The roofline figure: attainable FLOP/s against arithmetic intensity, the layers as points."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from esr.analyze.hardware import HardwareProfile
from esr.analyze.roofline import LayerPrediction
from esr.fileio import replace_atomically


def roofline_plot(rows: list[LayerPrediction], hw: HardwareProfile, precision: str, path: str | Path,
                  title: str = "") -> Path:
    """Write a PNG: the roof ``min(peak, I * bandwidth)`` and one point per layer with FLOPs > 0 at
    (intensity, FLOPs / predicted time), coloured by op class, sized by its share of the total.
    Data-movement layers (0 FLOPs) have no place on a FLOP/s axis; their count and share are in the legend.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    peak, bandwidth = hw.peak(precision), hw.memory_bandwidth
    compute = [r for r in rows if r.layer.flops > 0 and r.layer.bytes > 0]
    movement = [r for r in rows if r not in compute]
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    lows = [r.layer.intensity for r in compute] or [1.0]
    x = np.logspace(np.log10(min(lows) / 4), np.log10(max(max(lows) * 4, 4 * peak / bandwidth)), 200)
    ax.plot(x, np.minimum(peak, x * bandwidth), color="black", lw=1.5,
            label=f"roof: {peak / 1e12:.3g} TFLOP/s, {bandwidth / 1e9:.4g} GB/s")
    ax.axvline(peak / bandwidth, color="grey", ls=":", lw=1)
    keys = sorted({r.layer.key for r in compute})
    cmap = plt.get_cmap("tab10" if len(keys) <= 10 else "tab20")
    for i, key in enumerate(keys):
        group = [r for r in compute if r.layer.key == key]
        ax.scatter([r.layer.intensity for r in group], [r.layer.flops / r.time_s for r in group],
                   s=[20 + 400 * r.share for r in group], color=cmap(i % cmap.N), alpha=0.75, edgecolors="k",
                   linewidths=0.4, label=f"{key} ({len(group)})")
    if movement:
        share = sum(r.share for r in movement) * 100
        ax.scatter([], [], color="none", label=f"{len(movement)} data-movement layers, {share:.1f}% of time")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / byte)")
    ax.set_ylabel("attained FLOP/s (predicted)")
    kind = "calibrated" if hw.calibrated else ("borrowed efficiency factors" if hw.efficiency else "pure roofline")
    ax.set_title(f"{title} ({precision}, {kind})" if title else f"{hw.name} ({precision}, {kind})", fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    try:
        return replace_atomically(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)
