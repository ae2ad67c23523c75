"""The one deploy-graph builder: :func:`build_deploy_graph`.

recipe (:mod:`esr.plugins` passes) -> ONNX trace -> checker -> shape inference -> onnxslim ->
one onnxruntime run against the torch model (a dynamic graph at a second size) -> metadata (the model's :class:`esr.descriptor.ModelDescriptor` with the recipe, precision,
graph size limits, source sha256, trained flag and esr version in ``metadata_props``).
``esr export``, ``esr analyze``, ``esr quantize`` and the backends' on-the-fly cache
(:mod:`esr.backends.graph_cache`) all call it: the graph that is measured is the graph that is shipped.
"""
from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import onnx
import torch
import torch.nn as nn

from esr.descriptor import ModelDescriptor, write_metadata
from esr.errors import EsrError, first_line
from esr.export.onnx_export import INPUT_NAME, MIN_DYNAMIC_SIZE, finalize_onnx, trace_onnx
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
    ``passes``: one report per deploy pass applied; ``deployed``: the rewritten torch module;
    ``source_path``: the file the model was read from (never replaced by :meth:`save`).
    """

    model: onnx.ModelProto
    descriptor: ModelDescriptor
    shape: tuple[int, int, int, int]
    dynamic: bool
    passes: list[PassReport] = field(default_factory=list)
    deployed: nn.Module | None = None
    source_path: Path | None = None

    @property
    def recipe(self) -> list[str]:
        return list(self.descriptor.recipe)

    def save(self, path: str | Path, sources: Iterable[str | Path] = (), overwrite: bool = False) -> Path:
        """Write the graph to ``path`` by :func:`esr.fileio.write_output` (its policy: never one of
        ``sources`` or the source model, an existing file only with ``overwrite``; temp file + rename)."""
        sources = [*sources, *([self.source_path] if self.source_path is not None else [])]
        return write_output(path, lambda tmp: onnx.save(self.model, tmp), sources, overwrite)


def graph_descriptor(descriptor: ModelDescriptor, passes: list[str], dynamic: bool) -> ModelDescriptor:
    """The descriptor of a graph exported from a model with ``descriptor``: recipe and fp32 recorded;
    a dynamic graph pads inside (:class:`esr.export.onnx_export.PadCrop`, reflect: the pad must stay
    below the side, so sides start at ``MIN_DYNAMIC_SIZE`` and above half the size multiple)."""
    graph = descriptor.replace(recipe=tuple(passes), precision="fp32")
    if dynamic:
        min_size = max(descriptor.min_size, MIN_DYNAMIC_SIZE, descriptor.size_multiple // 2 + 1)
        graph = graph.replace(min_size=min_size, pads_inside=True)
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
        EsrError: unknown pass name, wrong channel count, an op torch cannot export (one line naming
            it), a graph the checker rejects, or one that does not compute what the model does (every
            graph is run once, :func:`check_graph`); :class:`DynamicShapeError` when a dynamic graph
            does not follow the input size (it is run at a second size) but a static one exports.
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
        try:
            raw = trace_onnx(deployed, Path(tmp) / "raw.onnx", height, width, dynamic, opset,
                             batch=1 if dynamic else batch)
        except Exception as err:  # torch's exporters raise many types; the first line names the op
            reason = export_failure(err)
            if dynamic and traces_static(deployed, Path(tmp) / "static.onnx", height, width, opset):
                raise DynamicShapeError(f"{descriptor.name}: does not export with dynamic H/W ({reason}); "
                                        f"static shapes export (esr export without --dynamic)") from None
            raise EsrError(f"{descriptor.name}: cannot export to ONNX ({reason}){aligned_hint(descriptor, height, width)}") \
                from None
        try:
            graph = finalize_onnx(onnx.load(str(raw)))
        except onnx.checker.ValidationError as err:
            raise EsrError(f"{descriptor.name}: the exported graph is invalid ({first_line(err)})") from None
    check_graph(graph, deployed, (batch, channels, height, width), dynamic)
    described = graph_descriptor(descriptor, passes, dynamic)
    return DeployGraph(write_metadata(graph, described), described, tuple(shape), dynamic, reports, deployed,
                       loaded.path)


def export_failure(err: BaseException) -> str:
    """The reason in a torch exporter error, in one short line (the op; no graph dump, no links)."""
    reason = first_line(err)
    for tail in (" [Caused by", " Please feel free to request support", " Please report a bug"):
        reason = reason.split(tail)[0]
    return reason.rstrip(". ")[:200]


def aligned_hint(descriptor: ModelDescriptor, height: int, width: int) -> str:
    """A hint naming the input size the model computes on natively when ``height x width`` is not it
    (some ops export only on it), else empty."""
    from esr.backends.base import input_size

    aligned = input_size(descriptor.replace(pads_inside=False), height, width)
    if aligned == (height, width):
        return ""
    return f"; it computes on {aligned[0]}x{aligned[1]} inputs natively: that static shape may export"


def traces_static(model: nn.Module, path: Path, height: int, width: int, opset: int) -> bool:
    """Whether ``model`` exports at the static shape ``height x width`` (after a dynamic export failed)."""
    try:
        trace_onnx(model, path, height, width, False, opset)
    except Exception:  # any exporter failure: it does not export at all
        return False
    return True


class DynamicShapeError(EsrError):
    """The model exports, but not with symbolic H/W: the traced graph keeps the trace size
    somewhere (a reshape to a window grid, a constant mask, an adaptive pooling size)."""


DYNAMIC_PROBE_STEP = (7, 13)
"""A dynamic graph traced at H x W is checked at (H + 7) x (W + 13): unaligned, different in both sides."""
CHECK_TOL = 1e-3
"""Max abs difference to the torch model (relative to its output's magnitude, at least 1) when a
new graph is checked; a sanity bound for gross export errors (``esr export`` measures parity at 1e-4)."""


def check_graph(graph: onnx.ModelProto, model: nn.Module, shape: tuple[int, int, int, int], dynamic: bool) -> None:
    """Run a new graph once with onnxruntime and compare it with ``model``: a static graph at its
    shape, a dynamic one (traced at ``shape``) at another size. EsrError naming the failing op or the
    difference; :class:`DynamicShapeError` when only the dynamic graph is wrong (it keeps its trace size)."""
    import onnxruntime as ort

    from esr.backends.sessions import ort_session

    name = model.descriptor.name
    batch, channels, height, width = shape
    if dynamic:
        batch, height, width = 1, height + DYNAMIC_PROBE_STEP[0], width + DYNAMIC_PROBE_STEP[1]
    x = torch.rand(batch, channels, height, width, generator=torch.Generator().manual_seed(1))
    quiet = ort.RunOptions()
    quiet.log_severity_level = 4  # a failure is reported below, in one line
    failure = DynamicShapeError if dynamic else EsrError
    where = (f"does not export with dynamic H/W: at {height}x{width}" if dynamic
             else f"the exported {height}x{width} graph is wrong:")
    hint = "; static shapes export (esr export without --dynamic)" if dynamic else ""
    try:
        actual = ort_session(graph, threads=1).run(None, {INPUT_NAME: x.numpy()}, quiet)[0]
    except Exception as err:  # onnxruntime raises its own types; a reshape to a traced size fails here
        node = re.search(r"running (\w+) node", str(err))
        what = f"a {node.group(1)} node fails" if node else f"onnxruntime fails ({first_line(err, 120)})"
        raise failure(f"{name}: {where} {what}{hint}") from None
    with torch.no_grad():
        expected = model(x).numpy()
    diff = float(abs(actual - expected).max()) if actual.shape == expected.shape else float("inf")
    if diff > CHECK_TOL * max(1.0, float(abs(expected).max())):
        raise failure(f"{name}: {where} it differs from PyTorch by {diff:.3g}{hint}")
