"""The one deploy-graph builder: :func:`build_deploy_graph`.

recipe (:mod:`esr.plugins` passes) -> ONNX trace -> checker -> shape inference -> onnxslim ->
metadata (the model's :class:`esr.descriptor.ModelDescriptor` with the recipe, precision,
graph size limits, source sha256, trained flag and esr version in ``metadata_props``).
``esr export``, ``esr analyze``, ``esr quantize`` and the backends' on-the-fly cache
(:mod:`esr.backends.graph_cache`) all call it: the graph that is measured is the graph that is shipped.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import onnx
import torch
import torch.nn as nn

from esr.descriptor import ModelDescriptor, write_metadata
from esr.errors import EsrError
from esr.export.onnx_export import MIN_DYNAMIC_SIZE, finalize_onnx, trace_onnx
from esr.fileio import write_output
from esr.loading import LoadedModel, open_model
from esr.plugins import PassReport, apply_measured, resolve_recipe

DEFAULT_TRACE_HW = 64
"""Side a dynamic graph is traced at when no shape is given."""
DEFAULT_OPSET = 17


@dataclass
class DeployGraph:
    """A checked, slimmed ONNX graph and what it is.

    ``model``: the graph (input ``input``, output ``output``), its ``metadata_props`` holding
    ``descriptor``; ``shape``: the static input shape, or the trace shape when ``dynamic``;
    ``passes``: one report per deploy pass applied; ``deployed``: the rewritten torch module.
    """

    model: onnx.ModelProto
    descriptor: ModelDescriptor
    shape: tuple[int, int, int, int]
    dynamic: bool
    passes: list[PassReport] = field(default_factory=list)
    deployed: nn.Module | None = None

    @property
    def recipe(self) -> list[str]:
        return list(self.descriptor.recipe)

    def save(self, path: str | Path, sources: Iterable[str | Path] = (), overwrite: bool = True) -> Path:
        """Write the graph to ``path`` by :func:`esr.fileio.write_output` (its policy: never one of
        ``sources``, an existing file only with ``overwrite``; temp file + rename)."""
        return write_output(path, lambda tmp: onnx.save(self.model, tmp), sources, overwrite)


def graph_descriptor(descriptor: ModelDescriptor, passes: list[str], dynamic: bool) -> ModelDescriptor:
    """The descriptor of a graph exported from a model with ``descriptor``: recipe and fp32 recorded;
    a dynamic graph pads inside (:class:`esr.export.onnx_export.PadCrop`) from ``MIN_DYNAMIC_SIZE`` up."""
    graph = descriptor.replace(recipe=tuple(passes), precision="fp32")
    if dynamic:
        graph = graph.replace(min_size=max(descriptor.min_size, MIN_DYNAMIC_SIZE), pads_inside=True)
    return graph


def build_deploy_graph(model: LoadedModel | nn.Module, recipe: str | list[str] = "default",
                       shape: tuple[int, int, int, int] | None = None, dynamic: bool | None = None,
                       opset: int = DEFAULT_OPSET, sample: torch.Tensor | None = None) -> DeployGraph:
    """Apply ``recipe`` to a torch model, export it to ONNX, check, shape-infer, slim, and tag it.

    Args:
        model: a torch model with a descriptor (a :class:`esr.loading.LoadedModel` of kind module,
            or a module carrying ``.descriptor``). Left unchanged.
        recipe: ``default`` (the arch's recipe), ``none``, comma-separated pass names, or a list.
        shape: (N, C, H, W): the static shape, or the trace shape of a dynamic graph; None: a
            dynamic graph traced at 1 x C x 64 x 64.
        dynamic: symbolic N/H/W (default: True when ``shape`` is None, else False).
        opset: ONNX opset (>= 17).
        sample: optional input (N, C, h, w) in [0, 1] on which each pass's output change is
            measured (and lossy passes calibrate), see :func:`esr.plugins.apply_measured`.

    Raises:
        EsrError: unknown pass name, wrong channel count, or a graph the checker rejects.
    """
    loaded = open_model(model, allow_untrained=True)
    if loaded.kind != "module":
        raise EsrError(f"{loaded.label}: deploy graphs are built from torch models, not {loaded.kind} files")
    descriptor = loaded.descriptor
    try:
        passes = resolve_recipe(descriptor, recipe)
    except KeyError as err:
        raise EsrError(f"recipe {recipe if isinstance(recipe, str) else ','.join(recipe)}: {err.args[0]}") from None
    dynamic = shape is None if dynamic is None else dynamic
    shape = shape or (1, descriptor.in_channels, DEFAULT_TRACE_HW, DEFAULT_TRACE_HW)
    batch, channels, height, width = shape
    if channels != descriptor.in_channels or min(shape) < 1:
        raise EsrError(f"shape {'x'.join(map(str, shape))}: {descriptor.name} takes N x {descriptor.in_channels} x H x W")
    if opset < 17:
        raise EsrError(f"opset {opset}: esr exports opset 17 or newer")
    deployed, reports = apply_measured(loaded.module, passes, sample)
    with tempfile.TemporaryDirectory(prefix="esr-graph-") as tmp:
        raw = trace_onnx(deployed, Path(tmp) / "raw.onnx", height, width, dynamic, opset, batch=1 if dynamic else batch)
        try:
            graph = finalize_onnx(onnx.load(str(raw)))
        except onnx.checker.ValidationError as err:
            raise EsrError(f"{descriptor.name}: the exported graph is invalid ({str(err).strip().splitlines()[0]})") \
                from None
    described = graph_descriptor(descriptor, passes, dynamic)
    return DeployGraph(write_metadata(graph, described), described, tuple(shape), dynamic, reports, deployed)
