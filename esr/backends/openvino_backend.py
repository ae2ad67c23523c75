"""OpenVINO backend: an ``.onnx`` file, or a torch model's cached default-recipe deploy graph (``esr[openvino]``)."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from esr.backends.base import crop_output, fit_input, graph_run_precision
from esr.backends.graph_cache import cached_deploy_graph
from esr.backends.openvino_runtime import OpenVINORunner
from esr.descriptor import ModelDescriptor, read_metadata
from esr.loading import LoadedModel


class OpenVINOBackend:
    """Runs a graph with :class:`esr.backends.openvino_runtime.OpenVINORunner` (shapes, hints: see that module).

    An fp32 graph runs at fp32, bf16 or fp16 (the device must report the capability); an INT8
    QDQ graph (``esr quantize``) runs as int8. Anything else is refused with one line. ``streams``: how many
    :meth:`run_streamed` calls run at once (a large image's tiles; see the runner's module docstring).
    """

    name = "openvino"

    def __init__(self, loaded: LoadedModel, device: str = "cpu", precision: str | None = None,
                 threads: int = 0) -> None:
        path = loaded.path if loaded.kind == "onnx" else cached_deploy_graph(loaded)
        if loaded.kind == "onnx":
            self.descriptor = loaded.descriptor
        else:  # the cached graph's own descriptor: recipe applied, graph size limits
            import onnx

            self.descriptor: ModelDescriptor = read_metadata(onnx.load(str(path), load_external_data=False))
        self.precision = graph_run_precision(self.name, self.descriptor.precision, precision, device,
                                             ("bf16", "fp16"))
        self.runner = OpenVINORunner(path, device, self.precision, threads,
                                     None if loaded.kind == "onnx" else self.deploy_output_shape)
        self.device = device
        self.max_hw = self.runner.input_hw
        self.streams = self.runner.streams

    def deploy_output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """(N, C', H*s, W*s) for an (N, C, H, W) input of esr's own deploy graph, which crops to exactly that."""
        return shape[0], self.descriptor.out_channels, shape[2] * self.descriptor.scale, shape[3] * self.descriptor.scale

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, self.runner)

    def run_streamed(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`__call__` on one of ``streams`` streams, for calls made from several threads at once."""
        return self._run(x, self.runner.run_streamed)

    def _run(self, x: torch.Tensor, run: Callable[[np.ndarray], np.ndarray]) -> torch.Tensor:
        height, width = x.shape[-2:]
        x = fit_input(x, self.descriptor, self.max_hw)
        y = run(x.float().contiguous().numpy())
        return torch.from_numpy(crop_output(y, self.descriptor, height, width)).contiguous()
