"""Run a TensorRT 10 engine on CUDA tensors: bindings by name, dynamic shapes, own CUDA stream.

CUDA memory and streams come from torch (no pycuda). ``esr upscale --backend tensorrt``
and ``esr bench`` use :class:`TRTRunner`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

TRT_TO_TORCH = {"FLOAT": torch.float32, "HALF": torch.float16, "INT8": torch.int8, "INT32": torch.int32,
                "INT64": torch.int64, "BOOL": torch.bool, "BF16": torch.bfloat16, "UINT8": torch.uint8}


class TRTRunner:
    """A deserialized engine with one image input and one image output.

    Args:
        engine_path: a serialized engine (``esr export --trt``).
        device: ``"cuda"`` or ``"cuda:N"``.

    Attributes:
        input_name, output_name: the binding names.
        profile_min_hw, profile_max_hw: (H, W) of profile 0's smallest and largest input shapes.

    ``runner(x)``: x (N, 3, H, W) CUDA tensor (cast to the engine's input dtype) ->
    (N, 3, H*s, W*s) CUDA tensor in the engine's output dtype, ordered after the caller's
    current stream. :meth:`run_host` does the same from/to numpy through pinned buffers.
    """

    def __init__(self, engine_path: str | Path, device: str = "cuda") -> None:
        import tensorrt as trt

        self.device = torch.device(device)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise ValueError(f"{engine_path}: not a TensorRT engine for this TensorRT version/GPU")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"{engine_path}: expected one input and one output, got {inputs} -> {outputs}")
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.input_dtype = TRT_TO_TORCH[self.engine.get_tensor_dtype(self.input_name).name]
        self.output_dtype = TRT_TO_TORCH[self.engine.get_tensor_dtype(self.output_name).name]
        min_shape, _, max_shape = self.engine.get_tensor_profile_shape(self.input_name, 0)
        self.profile_min_hw = (int(min_shape[2]), int(min_shape[3]))
        self.profile_max_hw = (int(max_shape[2]), int(max_shape[3]))
        self.stream = torch.cuda.Stream(device=self.device)
        self.pinned_in: torch.Tensor | None = None
        self.pinned_out: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, self.input_dtype).contiguous()
        self.context.set_input_shape(self.input_name, tuple(x.shape))
        out = torch.empty(tuple(self.context.get_tensor_shape(self.output_name)), dtype=self.output_dtype,
                          device=self.device)
        self.context.set_tensor_address(self.input_name, x.data_ptr())
        self.context.set_tensor_address(self.output_name, out.data_ptr())
        caller = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(caller)
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError(f"TensorRT execution failed for input shape {tuple(x.shape)}")
        caller.wait_stream(self.stream)
        x.record_stream(self.stream)
        return out

    def run_host(self, x: np.ndarray) -> np.ndarray:
        """numpy (N, 3, H, W) -> numpy output, via reused pinned host buffers and async copies."""
        source = torch.from_numpy(np.ascontiguousarray(x)).to(self.input_dtype)
        if self.pinned_in is None or self.pinned_in.numel() < source.numel():
            self.pinned_in = torch.empty(source.numel(), dtype=self.input_dtype).pin_memory()
        staged = self.pinned_in[: source.numel()].view(source.shape)
        staged.copy_(source)
        with torch.cuda.stream(self.stream):
            device_in = staged.to(self.device, non_blocking=True)
            out = self(device_in)
            if self.pinned_out is None or self.pinned_out.numel() < out.numel():
                self.pinned_out = torch.empty(out.numel(), dtype=out.dtype).pin_memory()
            result = self.pinned_out[: out.numel()].view(out.shape)
            result.copy_(out, non_blocking=True)
        self.stream.synchronize()
        return result.numpy().copy()
