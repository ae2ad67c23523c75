"""Array <-> tensor conversion and a plain whole-image forward pass."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) RGB uint8/uint16/float in [0, 1] -> (1, 3, H, W) float32 in [0, 1]."""
    if rgb.dtype == np.uint8:
        scaled = rgb.astype(np.float32) / 255.0
    elif rgb.dtype == np.uint16:
        scaled = rgb.astype(np.float32) / 65535.0
    else:
        scaled = rgb.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(scaled.transpose(2, 0, 1)))[None]


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) float in [0, 1] -> (H, W, 3) uint8, clipped and rounded (the metric protocol)."""
    array = tensor[0].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    return np.round(array * 255.0).astype(np.uint8)


@torch.inference_mode()
def upscale_rgb_uint8(model: nn.Module, rgb: np.ndarray) -> np.ndarray:
    """Upscale one (H, W, 3) uint8 RGB image with ``model`` in one pass -> (H*s, W*s, 3) uint8."""
    device = next(model.parameters()).device
    return to_uint8(model(to_tensor(rgb).to(device)))
