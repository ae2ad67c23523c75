"""What callers (upscaler, exporter, zoo) need to know about an SR model, as data."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SRDescriptor:
    """Static facts about an SR network.

    Every esr arch takes RGB float NCHW in [0, 1] and returns RGB float NCHW in
    [0, 1] (not clamped) of size ``(H * scale, W * scale)``. Any ``H, W >= 1`` works:
    the arch pads internally (reflect) to ``size_multiple`` / ``min_size`` and crops
    back, so those two fields are for callers choosing tile or export shapes where
    no padding happens.
    """

    arch: str
    scale: int
    in_channels: int = 3
    out_channels: int = 3
    size_multiple: int = 1
    min_size: int = 1
    tiling: bool = True
    hyperparams: dict = field(default_factory=dict)
