"""Pad an NCHW batch to the size an arch needs, and crop the upscaled result back."""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

import torch
import torch.nn.functional as F


def pad_to_fit(x: torch.Tensor, multiple: int = 1, min_size: int = 1) -> tuple[torch.Tensor, int, int]:
    """Pad ``x`` (N, C, H, W) at the bottom/right so H and W are ``>= min_size`` and divisible by ``multiple``.

    Reflect padding is used (the convention of the official DITN/RLFN code); a side
    too small to reflect (pad >= size) is replicate-padded instead.

    Returns:
        (padded, pad_h, pad_w): the padded tensor and how many rows/columns were added.
    """
    h, w = x.shape[-2:]
    target_h = max(h, min_size)
    target_w = max(w, min_size)
    pad_h = target_h - h + (-target_h) % multiple
    pad_w = target_w - w + (-target_w) % multiple
    if pad_h == 0 and pad_w == 0:
        return x, 0, 0
    return pad_bottom_right(x, pad_h, pad_w), pad_h, pad_w


def pad_bottom_right(x: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    """Add ``pad_h`` rows and ``pad_w`` columns to ``x`` (N, C, H, W) at the bottom/right: reflect
    padding, or replicate where a side is too small to reflect (pad >= size)."""
    mode = "reflect" if pad_h < x.shape[-2] and pad_w < x.shape[-1] else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


CROPPED_BY_CALLER: ContextVar[bool] = ContextVar("esr_cropped_by_caller", default=False)
"""True within :func:`cropped_by_caller`."""


@contextmanager
def cropped_by_caller() -> Iterator[None]:
    """Within it, :func:`crop_to` returns its tensor as it is: the caller crops the output to a top-left
    region no larger, and a top-left crop of a top-left crop is the smaller crop, so the arch's own crop
    would only add a copy. The deploy graph's padding wrapper (:class:`esr.export.onnx_export.PadCrop`)
    traces the model in it: two Slice ops fewer per graph, which OpenVINO at bf16 ran in its reference
    kernel (RLFN-S x4, 288x288, 2-thread Xeon with AMX: 87.2 -> 84.0 ms; onnxruntime within noise)."""
    token = CROPPED_BY_CALLER.set(True)
    try:
        yield
    finally:
        CROPPED_BY_CALLER.reset(token)


def crop_to(y: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Crop ``y`` (N, C, H', W') to its top-left ``height x width`` (``y`` itself in :func:`cropped_by_caller`)."""
    return y if CROPPED_BY_CALLER.get() else y[..., :height, :width]
