"""PyTorch -> ONNX export of esr models."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn


def export_onnx(
    model: nn.Module, path: str | Path, height: int = 64, width: int = 64, dynamic: bool = True, opset: int = 17
) -> Path:
    """Export ``model`` (RGB float NCHW [0, 1] in, upscaled out) to ONNX.

    Input ``input`` (N, 3, H, W), output ``output`` (N, 3, H*s, W*s); with ``dynamic``
    N, H and W are symbolic. ``height``/``width`` give the trace shape.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sample = torch.rand(1, 3, height, width)
    axes = {"input": {0: "batch", 2: "height", 3: "width"}, "output": {0: "batch", 2: "out_height", 3: "out_width"}}
    torch.onnx.export(
        model.eval(), (sample,), str(path), input_names=["input"], output_names=["output"],
        dynamic_axes=axes if dynamic else None, opset_version=opset, dynamo=False,
    )
    return path
