"""Fit an image's channels to a model's: gray (1), RGB (3), RGBA (4), from the model's descriptor.

Rules (one place, used by the upscaler, export parity, INT8 calibration and benchmarks):

* gray -> RGB: the plane repeated; RGB -> gray: the mean of the three planes.
* no alpha -> RGBA: an opaque alpha plane (1.0) added; RGBA -> RGB or gray: alpha dropped.
* :func:`run_on_channels`: a gray model (1 -> 1 channels) given a colour image runs on each plane
  as its own gray image (the colours are kept); any other model gets the image converted to its
  input channels and its output converted back to the image's channels.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

CHANNEL_COUNTS = (1, 3, 4)


def to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """``x`` (N, C, H, W) float in [0, 1], C in (1, 3, 4), as ``channels`` channels by the module rules."""
    have = x.shape[1]
    if have == channels:
        return x
    if have not in CHANNEL_COUNTS or channels not in CHANNEL_COUNTS:
        raise ValueError(f"cannot convert {have} channels to {channels} (gray, RGB and RGBA only)")
    rgb = x[:, :3] if have >= 3 else x.expand(-1, 3, -1, -1)
    if channels == 1:
        return rgb.mean(dim=1, keepdim=True)
    if channels == 3:
        return rgb
    return torch.cat([rgb, torch.ones_like(x[:, :1])], dim=1)


def array_to_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """:func:`to_channels` for a float32 NCHW array."""
    return np.ascontiguousarray(to_channels(torch.from_numpy(x), channels).numpy())


def run_on_channels(run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, in_channels: int,
                    out_channels: int) -> torch.Tensor:
    """``run`` (N, in_channels, h, w) -> (N, out_channels, H, W) applied to ``x`` (N, C, h, w):
    the result has C channels (module rules)."""
    batch, channels, height, width = x.shape
    if in_channels == out_channels == 1 and channels > 1:
        planes = run(x.reshape(batch * channels, 1, height, width))
        return planes.reshape(batch, channels, *planes.shape[-2:])
    return to_channels(run(to_channels(x, in_channels)), channels)
