"""Keep an image-input convolution exact when OpenVINO runs a graph at bf16 (:func:`split_image_convs`).

Why: at ``INFERENCE_PRECISION_HINT=bf16`` OpenVINO's CPU plugin rounds every convolution's
weights and inputs to bf16 (8 significant bits), the first convolution included. An SR
model's first convolution reads RGB, whose three channels are strongly correlated, and its
filters take differences of them with large opposite-signed weights: for the official RLFN-S
x4 weights (folded by ``conv_fold``) the sum of |w| of a filter is up to 5e4 times its net
gain. The weights' relative rounding error (up to 2^-8) is amplified by that cancellation, and where
it lands depends on how 1296 weights happen to round: rounding only ``conv_1``'s weights to
bf16 moved RLFN-S's output to 57.2 dB vs fp32 (60.5 dB for the unfolded weights torch rounds,
54-66 dB for random roundings of the same size), and with the rest of the bf16 execution the
sample image read 52.0 dB, where RLFN x4 read 55.9 dB. The rounding of the input image (a
k/255 value keeps 8 bits) costs another 1.5 dB.

What: each convolution with constant float32 weights of at most :data:`MAX_IMAGE_CHANNELS`
input channels whose data comes straight from a graph input (through Pad ops only) is rewritten
as one convolution over the four products of high and low parts, each part exact in bf16 up to
2^-16 relative:

    x = x_hi + x_lo,   x_hi = bf16(x) (two Converts),   x_lo = x - x_hi
    W = W_hi + W_lo,   W_hi = bf16(W),                  W_lo = W - W_hi
    conv(x, W) = conv(concat(x_hi, x_lo, x_hi, x_lo), concat(W_hi, W_hi, W_lo, W_lo))

(the same function in f32, up to round-off). OpenVINO runs the split's elementwise ops
on the graph input in f32 (it keeps ops fed by an input at the input's precision); the
convolution itself stays on AMX. Measured (2-thread Xeon with AMX, OpenVINO 2026.4, sample image,
output PSNR vs fp32): RLFN-S x4 52.0 -> 57.4 dB, RLFN x4 55.9 -> 58.3 dB; speed unchanged (30
interleaved rounds at 256 and 362 px: medians within 3%, either way; the first convolution has 3
input channels, now 12). Applied only at bf16: in f32 the rewrite would change nothing but
round-off, and f16 keeps 11 bits (RLFN-S: 80.7 dB for its first layer's weights alone).
"""
from __future__ import annotations

from typing import Any

import numpy as np

MAX_IMAGE_CHANNELS = 4
"""A convolution with at most this many input channels reading a graph input is an image-input one."""


def bf16_round(values: np.ndarray) -> np.ndarray:
    """float32 ``values`` rounded to the nearest bfloat16 (ties to even), returned as float32."""
    import torch

    return torch.from_numpy(np.array(values, dtype=np.float32)).to(torch.bfloat16).float().numpy()


def _graph_input_through_pads(conv: Any) -> tuple[Any, list[Any]] | None:
    """(graph input output, the Pad ops from it to ``conv``, nearest the input first), or None."""
    pads = []
    source = conv.input_value(0)
    while source.get_node().get_type_name() == "Pad":
        pads.append(source.get_node())
        source = source.get_node().input_value(0)
    if source.get_node().get_type_name() != "Parameter":
        return None
    return source, pads[::-1]


def split_image_convs(model: Any) -> int:
    """Rewrite ``model`` (an ``openvino.Model``) in place as the module docstring says; returns how many convolutions.

    A graph without such a convolution (e.g. an INT8 QDQ graph, whose weights are dequantised, not
    constant) is left as it is.
    """
    import openvino.opset13 as ops

    splits: dict[Any, Any] = {}  # graph input -> concat(x_hi, x_lo, x_hi, x_lo)
    sites = 0
    for conv in [op for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]:
        weight_node = conv.input_value(1).get_node()
        if weight_node.get_type_name() != "Constant":
            continue
        weights = weight_node.get_data()
        found = _graph_input_through_pads(conv)
        channels = found[0].get_partial_shape()[1] if found else None
        if (found is None or weights.dtype != np.float32 or weights.shape[1] > MAX_IMAGE_CHANNELS
                or not channels.is_static or channels.get_length() != weights.shape[1]):
            continue  # not an image-input conv, or a Pad that pads channels
        source, pads = found
        if source not in splits:
            high = ops.convert(ops.convert(source, "bf16"), "f32")
            low = ops.subtract(source, high)
            splits[source] = ops.concat([high, low, high, low], 1).output(0)
        data = splits[source]
        for pad in pads:
            data = ops.pad(data, pad.input_value(1), pad.input_value(2), pad.get_attributes()["pad_mode"],
                           pad.input_value(3) if pad.get_input_size() > 3 else None).output(0)
        high_w = bf16_round(weights)
        low_w = (weights - high_w).astype(np.float32)
        conv.input(0).replace_source_output(data)
        conv.input(1).replace_source_output(ops.constant(np.concatenate([high_w, high_w, low_w, low_w], axis=1)).output(0))
        sites += 1
    if sites:
        model.validate_nodes_and_infer_types()
    return sites
