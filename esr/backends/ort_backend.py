"""ONNX Runtime backend: an ``.onnx`` file, or a torch model's cached default-recipe deploy graph."""
from __future__ import annotations

import torch

from esr.backends.base import crop_output, fit_input, graph_run_precision
from esr.backends.graph_cache import cached_deploy_graph, cached_fp16_graph
from esr.backends.sessions import ort_session
from esr.descriptor import ModelDescriptor
from esr.errors import EsrError
from esr.loading import LoadedModel


class OnnxRuntimeBackend:
    """Runs a graph in a session from :func:`esr.backends.sessions.ort_session`.

    Static-shape graphs accept inputs up to their shape (``max_hw``); smaller inputs are
    reflect-padded to it and the output cropped. Dynamic ones get inputs padded to the
    graph's size requirements (:func:`esr.backends.base.fit_input`). The precision is the
    graph's own (fp32, or int8 for an ``esr quantize`` QDQ graph); on CUDA an fp32 graph also
    runs as fp16 (:func:`esr.backends.graph_cache.cached_fp16_graph`). Anything else is refused.
    """

    name = "onnxruntime"

    def __init__(self, loaded: LoadedModel, device: str = "cpu", precision: str | None = None,
                 threads: int = 0) -> None:
        path = loaded.path if loaded.kind == "onnx" else cached_deploy_graph(loaded)
        graph = loaded.descriptor.precision if loaded.kind == "onnx" else "fp32"
        self.precision = graph_run_precision(self.name, graph, precision, device, ("fp16",) if device == "cuda" else ())
        if self.precision != graph:
            path = cached_fp16_graph(path)
        self.session = ort_session(path, threads=threads, device=device)
        self.device = device
        if loaded.kind == "onnx":
            self.descriptor = loaded.descriptor
        else:  # the cached graph's own descriptor: recipe applied, graph size limits
            self.descriptor = ModelDescriptor.from_metadata(self.session.get_modelmeta().custom_metadata_map)
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise EsrError(f"{path}: expected one NCHW image input, found {[i.shape for i in inputs]}")
        self.input_name = inputs[0].name
        height, width = inputs[0].shape[2:]
        self.max_hw = (height, width) if isinstance(height, int) and isinstance(width, int) else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        x = fit_input(x, self.descriptor, self.max_hw)
        y = self.session.run(None, {self.input_name: x.float().contiguous().numpy()})[0]
        return torch.from_numpy(crop_output(y, self.descriptor, height, width)).contiguous()
