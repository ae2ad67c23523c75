"""PyTorch eager backend: channels_last on CPU; fp16 on CUDA, rerun in fp32 when a result is not finite."""
from __future__ import annotations

import copy
import warnings

import torch

from esr.backends.base import crop_output, fit_input
from esr.errors import EsrError
from esr.loading import LoadedModel


def check_cuda(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        raise EsrError("device cuda: no CUDA GPU is available to torch (use --device cpu)")


class TorchBackend:
    """A torch module run in eager mode (see :mod:`esr.backends` for the interface)."""

    name = "torch"
    max_hw = None

    def __init__(self, loaded: LoadedModel, device: str = "cpu", precision: str | None = None,
                 threads: int = 0) -> None:
        check_cuda(device)
        if threads:
            torch.set_num_threads(threads)
        self.descriptor = loaded.descriptor
        self.device = device
        tensors = [*loaded.module.parameters(), *loaded.module.buffers()]
        five_d = any(tensor.dim() == 5 for tensor in tensors)  # torch would give them channels_last too, and fail
        self.memory_format = torch.channels_last if device == "cpu" and not five_d else torch.contiguous_format
        self.model = copy.deepcopy(loaded.module).to(device=device, memory_format=self.memory_format).float().eval()
        if precision == "fp16" and device == "cpu":
            warnings.warn("fp16 is not supported on CPU; computing in fp32", stacklevel=3)
        elif precision not in (None, "fp32", "fp16"):
            raise EsrError(f"the torch backend cannot run {precision} (it runs fp32, or fp16 on CUDA)")
        self.precision = "fp16" if precision == "fp16" and device == "cuda" else "fp32"
        self.model_half = copy.deepcopy(self.model).half() if self.precision == "fp16" else None

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        x = fit_input(x, self.descriptor).to(self.device, non_blocking=True)
        x = x.contiguous(memory_format=self.memory_format)
        if self.model_half is not None:
            y = self.model_half(x.half())
            if bool(torch.isfinite(y).all()):
                return crop_output(y, self.descriptor, height, width).float().cpu()
            warnings.warn("fp16 output has NaN/Inf; recomputing this tile in fp32", stacklevel=2)
        return crop_output(self.model(x.float()), self.descriptor, height, width).float().cpu()
