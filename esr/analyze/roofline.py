"""Predicted time of each layer on a hardware profile, and the model totals."""
from __future__ import annotations

import math
from dataclasses import dataclass

from esr.analyze.graph import Layer
from esr.analyze.hardware import HardwareProfile


@dataclass
class LayerPrediction:
    """A layer with its roofline numbers: ``bound`` is ``compute`` or ``memory``; times in seconds."""

    layer: Layer
    bound: str
    roofline_s: float
    time_s: float
    share: float = 0.0

    def to_json(self) -> dict:
        layer = self.layer
        return {"name": layer.name, "op": layer.op, "key": layer.key, "output_shape": layer.output_shape,
                "flops": layer.flops, "bytes": layer.bytes, "intensity": layer.intensity, "bound": self.bound,
                "roofline_ms": self.roofline_s * 1e3, "time_ms": self.time_s * 1e3, "share": self.share}


def computed_flops(layer: Layer, channel_block: int = 1) -> float:
    """The FLOPs ``layer`` costs on a device that computes dense convolutions in blocks of ``channel_block``
    channels: input and output channels each rounded up to the block (52 channels cost as 64 in blocks
    of 16; 48 as 48). Other layers, and ``channel_block`` 1: ``layer.flops``."""
    if layer.conv_channels is None or channel_block <= 1:
        return layer.flops
    padded = 1.0
    for channels in layer.conv_channels:
        padded *= math.ceil(channels / channel_block) * channel_block / channels
    return layer.flops * padded


def roofline_time(layer: Layer, peak: float, bandwidth: float, channel_block: int = 1) -> tuple[float, str]:
    """``(max(F / peak, B / bandwidth), bound)``: the pure-roofline time of ``layer`` and what limits it
    (F: :func:`computed_flops` with ``channel_block``)."""
    compute, memory = computed_flops(layer, channel_block) / peak, layer.bytes / bandwidth
    return max(compute, memory), "compute" if compute >= memory else "memory"


def layer_time(layer: Layer, hw: HardwareProfile, precision: str) -> tuple[float, float, str]:
    """``(predicted s, roofline s, bound)`` of ``layer`` by the model in :class:`HardwareProfile`."""
    roof, bound = roofline_time(layer, hw.peak(precision), hw.memory_bandwidth, hw.channel_block)
    time = roof / hw.efficiency_of(layer.key) + hw.byte_overhead * layer.bytes / hw.memory_bandwidth
    return hw.kept_fraction.get(layer.key, 1.0) * (time + hw.kernel_overhead_s), roof, bound


def predict(layers: list[Layer], hw: HardwareProfile, precision: str = "fp32") -> list[LayerPrediction]:
    """One :class:`LayerPrediction` per layer, with ``share`` of the predicted total."""
    rows = []
    for layer in layers:
        time, roof, bound = layer_time(layer, hw, precision)
        rows.append(LayerPrediction(layer, bound, roof, time))
    total = sum(row.time_s for row in rows) or 1.0
    for row in rows:
        row.share = row.time_s / total
    return rows


def totals(rows: list[LayerPrediction]) -> dict:
    """Model totals: FLOPs, bytes, predicted and roofline ms, layer counts per bound."""
    return {
        "layers": len(rows), "flops": sum(r.layer.flops for r in rows), "bytes": sum(r.layer.bytes for r in rows),
        "time_ms": sum(r.time_s for r in rows) * 1e3, "roofline_ms": sum(r.roofline_s for r in rows) * 1e3,
        "compute_bound_layers": sum(r.bound == "compute" for r in rows),
        "memory_bound_layers": sum(r.bound == "memory" for r in rows),
    }
