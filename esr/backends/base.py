"""What every backend does around the model call: fit the input to the model's size requirements, crop back."""
from __future__ import annotations

import torch

from esr.archs.padding import pad_bottom_right
from esr.descriptor import ModelDescriptor
from esr.errors import EsrError


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


QUANTIZE_HINT = "make one with: esr quantize --model MODEL --calib DIR --out MODEL_int8.onnx, then pass it as --model"


def graph_run_precision(backend: str, graph_precision: str, requested: str | None, device: str,
                        float_precisions: tuple[str, ...]) -> str:
    """The precision a graph runtime computes ``requested`` in (None: the graph's own), or EsrError (exit 2).

    ``float_precisions``: what the runtime can run an fp32 graph at on ``device`` (e.g. OpenVINO
    fp32/bf16/fp16). An INT8 QDQ graph runs only as int8; int8 needs such a graph.
    """
    if requested is None or requested == graph_precision:
        return graph_precision
    if graph_precision == "int8":
        raise EsrError(f"{backend} backend: this is an INT8 QDQ graph; it runs as int8 only (use --precision int8)")
    if requested == "int8":
        raise EsrError(f"{backend} backend: int8 needs an INT8 QDQ graph; {QUANTIZE_HINT}")
    if graph_precision == "fp32" and requested in float_precisions:
        return requested
    runs = ", ".join(dict.fromkeys((graph_precision, *float_precisions)))
    raise EsrError(f"{backend} backend: {requested} on {device} is not available (it runs this graph as {runs})")
