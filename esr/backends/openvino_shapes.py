"""Let OpenVINO fuse convolution biases that a dynamic-shape graph keeps apart (:func:`read_sizes_upstream`).

Why: OpenVINO's ONNX reader turns a ``Conv`` with a bias into ``Convolution`` + ``Add`` (the bias), and its
CPU plugin folds that ``Add`` into the convolution only when the ``Add`` has no other reader. In a graph
with dynamic H/W a ``ShapeOf`` often reads a convolution's output just to learn the image size for a later
``Resize`` (RLFN's and ESA-style blocks: ``F.interpolate(c3, x.size()[2:])`` on the 1x1 convolution ``c5``'s
output), so the bias stays a separate pass over a full-resolution tensor. At bf16 that pass runs in bf16
while a fused bias is added in the convolution's f32 accumulator.

What: a ``ShapeOf`` of ``Convolution + bias`` whose convolution keeps H and W (stride 1, dilation 1,
padding ``kernel - 1`` per axis) and whose readers take only the batch and spatial entries (``Gather`` of
constant indices, never the channel entry) reads the convolution's input instead: the same N, H and W by
construction, so every size computed from it is unchanged.

Measured (RLFN-S x4 default-recipe graph, dynamic shapes, 288 x 288, 2-thread Xeon with AMX,
OpenVINO 2026.4, bf16): 6 shapes rewired, the six ``c5`` bias passes gone, 100.9 -> 94.2 ms (median of 10
interleaved calls); Set14/Set5 LR outputs 0.05-0.6 dB closer to onnxruntime fp32 on all 9 images
checked. And RLFN-S's static and dynamic compilations at bf16 now give bit-identical outputs (before: up
to 0.05 apart on 128-362 px noise inputs, the separate bias pass rounding in bf16).
"""
from __future__ import annotations

from typing import Any

import numpy as np

CHANNEL_AXIS = 1
"""The entry of an NCHW shape that a convolution changes."""


def _keeps_spatial_size(conv: Any) -> bool:
    """True when ``conv`` (an OpenVINO ``Convolution``) has output H, W equal to its input's."""
    attributes = conv.get_attributes()
    kernel = conv.input_value(1).get_partial_shape()
    if not kernel.rank.is_static or not all(kernel[i].is_static for i in range(2, kernel.rank.get_length())):
        return False
    sizes = [kernel[i].get_length() for i in range(2, kernel.rank.get_length())]
    if any(s != 1 for s in (*attributes["strides"], *attributes["dilations"])):
        return False
    if attributes["auto_pad"] in ("same_upper", "same_lower"):
        return True
    return attributes["auto_pad"] in ("explicit", "notset") and all(
        begin + end == size - 1 for begin, end, size in zip(attributes["pads_begin"], attributes["pads_end"], sizes))


def _biased_convolution(node: Any) -> Any | None:
    """The ``Convolution`` of ``Add(Convolution, bias)`` where the bias has size 1 on every axis but the
    channel one (how OpenVINO reads an ONNX Conv with a bias: then the sum has the convolution's N, H, W),
    or None."""
    if node.get_type_name() != "Add":
        return None
    for conv_at in (0, 1):
        conv, bias = node.input_value(conv_at), node.input_value(1 - conv_at)
        bias_shape = bias.get_partial_shape()
        if (conv.get_node().get_type_name() == "Convolution" and bias_shape.rank.is_static
                and bias_shape.rank.get_length() == conv.get_partial_shape().rank.get_length()
                and all(bias_shape[i].is_static and bias_shape[i].get_length() == 1
                        for i in range(bias_shape.rank.get_length()) if i != CHANNEL_AXIS)):
            return conv.get_node()
    return None


def _constant(node: Any) -> np.ndarray | None:
    return node.get_data() if node.get_type_name() == "Constant" else None


def _reads_no_channel_entry(shape_of: Any, rank: int) -> bool:
    """True when every reader of ``shape_of``'s output is a ``Gather`` of constant indices on axis 0 that skip
    the channel entry."""
    readers = [target.get_node() for target in shape_of.output(0).get_target_inputs()]
    for reader in readers:
        if reader.get_type_name() != "Gather" or reader.input_value(0).get_node() is not shape_of:
            return False
        indices, axis = _constant(reader.input_value(1).get_node()), _constant(reader.input_value(2).get_node())
        if indices is None or axis is None or int(np.asarray(axis).reshape(-1)[0]) != 0:
            return False
        if CHANNEL_AXIS in {int(i) % rank for i in np.asarray(indices).reshape(-1)}:
            return False
    return bool(readers)


def read_sizes_upstream(model: Any) -> int:
    """Rewrite ``model`` (an ``openvino.Model``) in place as the module docstring says; returns how many
    ``ShapeOf`` ops now read a convolution's input. A graph without the pattern is left as it is."""
    moved = 0
    for shape_of in [op for op in model.get_ordered_ops() if op.get_type_name() == "ShapeOf"]:
        source = shape_of.input_value(0)
        conv = _biased_convolution(source.get_node())
        rank = source.get_partial_shape().rank
        if conv is None or not rank.is_static or not _keeps_spatial_size(conv):
            continue
        if not _reads_no_channel_entry(shape_of, rank.get_length()):
            continue
        shape_of.input(0).replace_source_output(conv.input_value(0))
        moved += 1
    if moved:
        model.validate_nodes_and_infer_types()
    return moved
