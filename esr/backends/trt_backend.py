"""TensorRT backend: an engine built by ``esr export --trt``, run by :class:`esr.export.trt_runner.TRTRunner` (CUDA only)."""
from __future__ import annotations

import importlib
from typing import Callable

import torch

from esr.backends import TRT_INSTALL_HINT
from esr.backends.base import crop_output, fit_input
from esr.errors import EsrError
from esr.loading import LoadedModel


def load_trt_runner() -> Callable:
    """The TRTRunner class; EsrError with one actionable line when TensorRT is not importable."""
    try:
        importlib.import_module("tensorrt")
    except ImportError:
        raise EsrError(f"tensorrt backend: TensorRT is not installed ({TRT_INSTALL_HINT})") from None
    try:
        return importlib.import_module("esr.export.trt_runner").TRTRunner
    except (ImportError, AttributeError) as err:
        raise EsrError(f"tensorrt backend: cannot load esr.export.trt_runner ({err}); {TRT_INSTALL_HINT}") from None


class TensorRTBackend:
    """``max_hw`` is the engine profile's largest input, so larger images are tiled to fit; a
    static engine (profile min = max) takes exactly that shape, smaller inputs padded. The
    descriptor (from the sidecar) carries the profile's minimum side; the precision is the engine's."""

    name = "tensorrt"

    def __init__(self, loaded: LoadedModel, device: str = "cuda", precision: str | None = None,
                 threads: int = 0) -> None:
        runner_class = load_trt_runner()
        if device != "cuda" or not torch.cuda.is_available():
            raise EsrError("the tensorrt backend runs on CUDA only (no CUDA GPU is available to torch)")
        self.descriptor = loaded.descriptor
        self.device = device
        self.precision = loaded.descriptor.precision
        if precision is not None and precision != self.precision:
            raise EsrError(f"tensorrt backend: this engine runs {self.precision}; build a {precision} engine with "
                           f"esr export --trt --precision {precision}")
        self.runner = runner_class(str(loaded.path), device="cuda")
        self.max_hw = tuple(self.runner.profile_max_hw)
        self.fixed_hw = self.max_hw if tuple(self.runner.profile_min_hw) == self.max_hw else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        y = self.runner(fit_input(x, self.descriptor, self.fixed_hw).to("cuda").float().contiguous())
        return crop_output(y, self.descriptor, height, width).float().cpu()
