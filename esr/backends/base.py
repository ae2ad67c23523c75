"""What every backend does around the model call: fit the input to the model's size requirements, crop back."""
from __future__ import annotations

import torch

from esr.archs.padding import pad_bottom_right
from esr.descriptor import ModelDescriptor


def input_size(descriptor: ModelDescriptor, height: int, width: int,
               fixed_hw: tuple[int, int] | None = None) -> tuple[int, int]:
    """The (H, W) the model is called with for an ``height x width`` input.

    A static model (``fixed_hw``) takes exactly that size (ValueError for larger inputs). Otherwise
    sides grow to ``descriptor.min_size``, then (unless the model ``pads_inside``) to a multiple of
    ``size_multiple``, and to a square when ``square``.
    """
    if fixed_hw is not None:
        if height > fixed_hw[0] or width > fixed_hw[1]:
            raise ValueError(f"input {height}x{width} exceeds the model's static shape {fixed_hw[0]}x{fixed_hw[1]}")
        return fixed_hw
    height, width = max(height, descriptor.min_size), max(width, descriptor.min_size)
    if not descriptor.pads_inside:
        height += -height % descriptor.size_multiple
        width += -width % descriptor.size_multiple
    if descriptor.square:
        height = width = max(height, width)
    return height, width


def fit_input(x: torch.Tensor, descriptor: ModelDescriptor,
              fixed_hw: tuple[int, int] | None = None) -> torch.Tensor:
    """``x`` (N, C, H, W) padded at the bottom/right (reflect, or replicate where too small) to :func:`input_size`."""
    height, width = x.shape[-2:]
    target_h, target_w = input_size(descriptor, height, width, fixed_hw)
    if (target_h, target_w) == (height, width):
        return x
    return pad_bottom_right(x, target_h - height, target_w - width)


def crop_output(y: torch.Tensor, descriptor: ModelDescriptor, height: int, width: int) -> torch.Tensor:
    """The top-left ``(height * s, width * s)`` of a model output ``y`` (N, C, H', W')."""
    return y[..., : height * descriptor.scale, : width * descriptor.scale]
