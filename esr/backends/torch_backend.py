"""PyTorch eager backend: fp32 and bf16 on CPU (channels_last), fp32/fp16/bf16 on CUDA.

=========  =============================================  ==========================================
precision  cpu                                            cuda
=========  =============================================  ==========================================
fp32       float32 weights and input, channels_last       float32, contiguous
bf16       bfloat16 weights and input, channels_last;     bfloat16 (needs compute capability >= 8.0)
           needs native bf16 (AMX-BF16 / AVX512-BF16)
fp16       refused (no fast fp16 convolutions on CPU)     float16; a tile with NaN/Inf reruns in fp32
int8       refused (INT8 runs from a QDQ graph: onnxruntime or openvino)
=========  =============================================  ==========================================

CPU bf16 casts the weights and the input once instead of using autocast: both use AMX through
oneDNN for the convolutions, but autocast re-casts the weights on every call. Measured on a
2-core Xeon with AMX (shared machine, 1x3x256x256, median of 4): RLFN x4 fp32 395 ms, bf16
weights 91 ms, autocast 89 ms (autocast without channels_last 350 ms); DITN-Real x4 fp32
1226 ms, bf16 weights 993 ms, autocast 1168 ms.
"""
from __future__ import annotations

import copy
import warnings

import torch

from esr.backends.base import crop_output, fit_input
from esr.backends.sessions import use_threads
from esr.capabilities import check_precision_name, cpu_alternatives, require_native_cpu
from esr.errors import EsrError
from esr.loading import LoadedModel

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_torch_precision(device: str, precision: str) -> None:
    """EsrError (exit 2) with one line when the torch backend cannot run ``precision`` on ``device``."""
    check_precision_name(precision)
    if precision == "int8":
        raise EsrError("torch backend: int8 runs from a QDQ graph (esr quantize), with --backend onnxruntime or openvino")
    if device == "cpu":
        if precision == "fp16":
            raise EsrError(f"torch backend: fp16 needs CUDA (--device cuda); {cpu_alternatives('fp16')}")
        if precision == "bf16":
            require_native_cpu("bf16", "torch backend")
    elif device == "cuda":
        if not torch.cuda.is_available():
            raise EsrError("torch backend: device cuda: no CUDA GPU is available to torch (use --device cpu)")
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise EsrError(f"torch backend: bf16 on cuda needs compute capability 8.0 or newer "
                           f"({torch.cuda.get_device_name(0)} has {'.'.join(map(str, torch.cuda.get_device_capability(0)))})")


class TorchBackend:
    """A torch module run in eager mode at a precision (see :mod:`esr.backends` for the interface).

    The caller's module is not changed (the backend runs a copy).
    """

    name = "torch"
    max_hw = None

    def __init__(self, loaded: LoadedModel, device: str = "cpu", precision: str | None = None,
                 threads: int = 0) -> None:
        self.precision = precision or "fp32"
        check_torch_precision(device, self.precision)
        use_threads(threads)
        self.descriptor = loaded.descriptor
        self.device = device
        self.dtype = DTYPES[self.precision]
        tensors = [*loaded.module.parameters(), *loaded.module.buffers()]
        five_d = any(tensor.dim() == 5 for tensor in tensors)  # torch would give them channels_last too, and fail
        self.memory_format = torch.channels_last if device == "cpu" and not five_d else torch.contiguous_format
        base = copy.deepcopy(loaded.module).float().eval().to(device=device, memory_format=self.memory_format)
        self.fallback = base if self.precision == "fp16" else None
        self.model = copy.deepcopy(base).to(self.dtype) if self.fallback is not None else base.to(self.dtype)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        x = fit_input(x, self.descriptor).to(self.device, non_blocking=True)
        x = x.contiguous(memory_format=self.memory_format)
        y = self.model(x.to(self.dtype))
        if self.fallback is not None and not bool(torch.isfinite(y).all()):
            warnings.warn("fp16 output has NaN/Inf; recomputing this tile in fp32", stacklevel=2)
            y = self.fallback(x.float())
        return crop_output(y, self.descriptor, height, width).float().cpu()
