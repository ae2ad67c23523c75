"""The steps :func:`esr.export.graph.build_deploy_graph` runs: trace to ONNX, then checker, shape inference, onnxslim.

Dynamic exports keep the arch's pad-and-crop in the graph: the legacy tracer bakes
Python control flow, so :class:`PadCrop` computes the reflect-pad amounts from the
traced input shape and crops the output back, and the model itself is traced on an
aligned shape (its own padding is then a no-op). A dynamic graph therefore accepts
any H, W >= 8 (reflect padding needs pad < size); a static one exactly its shape.
Nothing else calls these: the deploy-graph builder is the one way to an ONNX graph.
"""
from __future__ import annotations

import os
import sys
import tempfile
import warnings
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F

from esr.archs.padding import cropped_by_caller

INPUT_NAME = "input"
OUTPUT_NAME = "output"
MIN_DYNAMIC_SIZE = 8
"""Smallest H/W a dynamic export accepts (reflect padding to the arch's multiple needs pad < size)."""


class PadCrop(nn.Module):
    """Wrap an esr model for tracing: traced reflect padding to its size rules, then crop.

    Shapes: (N, C, H, W) -> (N, C', H * s, W * s), same as the wrapped model.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        descriptor = model.descriptor
        self.multiple = descriptor.size_multiple
        self.min_size = descriptor.min_size
        self.scale = descriptor.scale

    def pad_amount(self, size: torch.Tensor | int) -> torch.Tensor:
        size = torch.as_tensor(size)
        grown = torch.clamp(size, min=self.min_size)
        return grown - size + torch.remainder(-grown, self.multiple)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[2], x.shape[3]  # 0-dim tensors while tracing: the pads stay symbolic
        padded = F.pad(x, [0, self.pad_amount(width), 0, self.pad_amount(height)], mode="reflect")
        with cropped_by_caller():  # the crop below is the only one traced
            out = self.model(padded)
        return out[:, :, : height * self.scale, : width * self.scale]


def aligned_shape(model: nn.Module, height: int, width: int) -> tuple[int, int]:
    """(H, W) grown to the model's ``min_size`` and ``size_multiple`` (the shape its own padding skips)."""
    descriptor = model.descriptor
    multiple = descriptor.size_multiple

    def align(size: int) -> int:
        size = max(size, descriptor.min_size, MIN_DYNAMIC_SIZE)
        return size + (-size) % multiple

    return align(height), align(width)


@contextmanager
def native_output_discarded(fd: int) -> Iterator[None]:
    """Send file descriptor ``fd`` (1: stdout, 2: stderr) to a discarded temp file meanwhile.

    For native libraries that print what esr reports in one line anyway: torch's TorchScript
    exporter switches its C++ log on for every export (torch 2.x reads a function object as the
    "already enabled" flag) and dumps the whole IR graph to stdout when an op does not convert;
    onnxslim's constant folding tries subgraphs in onnxruntime, whose failures (expected, handled)
    onnxruntime logs to stderr.
    """
    (sys.stdout if fd == 1 else sys.stderr).flush()
    saved = os.dup(fd)
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), fd)
            try:
                yield
            finally:
                os.dup2(saved, fd)
    finally:
        os.close(saved)


def trace_onnx(model: nn.Module, path: str | Path, height: int, width: int, dynamic: bool, opset: int,
               batch: int = 1) -> Path:
    """Trace ``model`` (float NCHW in, upscaled out; carrying ``.descriptor``) to a raw ONNX file at ``path``.

    Input ``input`` (N, C, H, W), output ``output`` (N, C', H*s, W*s). Static: exactly
    ``batch x C x height x width``. Dynamic: N, H and W symbolic; the model is wrapped in
    :class:`PadCrop` and traced at ``height x width`` grown to an aligned size, so any H, W >= 8 runs.
    """
    module = model.eval()
    if dynamic:
        module = PadCrop(model).eval()
        height, width = aligned_shape(model, height, width)
    sample = torch.rand(batch, model.descriptor.in_channels, height, width, generator=torch.Generator().manual_seed(0))
    axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
            OUTPUT_NAME: {0: "batch", 2: "out_height", 3: "out_width"}}
    with torch.no_grad(), warnings.catch_warnings(), native_output_discarded(1):
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", UserWarning)  # the legacy exporter's constant-folding notes
        warnings.simplefilter("ignore", DeprecationWarning)  # dynamo=False is chosen: PadCrop needs the tracer
        torch.onnx.export(
            module, (sample,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes=axes if dynamic else None, opset_version=opset, dynamo=False,
        )
    return Path(path)


def op_counts(graph: onnx.ModelProto) -> dict[str, int]:
    """Node count per op type (top-level graph), most frequent first."""
    return dict(Counter(node.op_type for node in graph.graph.node).most_common())


def at_static_shape(model: onnx.ModelProto, shape: tuple[int, int, int, int]) -> onnx.ModelProto:
    """A copy of ``model`` with its one image input fixed to ``shape`` (N, C, H, W) and everything that depends
    on it folded by onnxslim (a dynamic esr graph's pad and crop included), so every tensor has a static shape.

    Raises ``ValueError`` when the input is not NCHW or a dimension fixed in the graph differs from ``shape``.
    """
    import onnxslim

    from esr.loading import graph_input_dims

    dims = graph_input_dims(model)
    if any(isinstance(d, int) and d > 0 and d != want for d, want in zip(dims, shape)):
        fixed = "x".join(str(d) if isinstance(d, int) and d > 0 else "?" for d in dims)
        raise ValueError(f"the graph's input is {fixed}; {'x'.join(map(str, shape))} does not fit it")
    initializers = {t.name for t in model.graph.initializer}
    name = next(i.name for i in model.graph.input if i.name not in initializers)
    return onnxslim.slim(model, input_shapes=[f"{name}:{','.join(map(str, shape))}"])


def finalize_onnx(raw: onnx.ModelProto) -> onnx.ModelProto:
    """Checker, shape inference and onnxslim (constant folding, dead-node and identity removal).

    Raises ``onnx.checker.ValidationError`` on an invalid graph (before or after slimming).
    """
    import onnxslim

    onnx.checker.check_model(raw)
    with native_output_discarded(2):
        slim = onnxslim.slim(onnx.shape_inference.infer_shapes(raw))
    slim = onnx.shape_inference.infer_shapes(slim, strict_mode=True)
    onnx.checker.check_model(slim)
    return slim
