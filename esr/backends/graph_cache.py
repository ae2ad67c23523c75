"""The backends' on-the-fly ONNX cache: a torch model's default-recipe deploy graph, built once.

Graph runtimes (onnxruntime, and any other that runs ONNX) given a torch model run the graph
``esr export`` ships: :func:`esr.export.graph.build_deploy_graph` with the default recipe,
dynamic N/H/W. The file name carries the model's fingerprint (weights and descriptor), the
export code's fingerprint (:func:`exporter_sources`), the recipe, the opset and the torch
version, so a changed model or an esr upgrade that changes the graph never reuses a stale file.
"""
from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path

import torch

from esr.errors import EsrError
from esr.loading import LoadedModel, cache_dir

DEFAULT_OPSET = 17


def onnx_cache_dir() -> Path:
    """Where on-the-fly deploy graphs are kept: ``<esr cache>/onnx``."""
    return cache_dir() / "onnx"


def exporter_sources() -> list[Path]:
    """The files whose code shapes a cached graph: the export code, the descriptor, every arch and deploy-pass module."""
    import esr.archs
    import esr.descriptor
    import esr.plugins
    from esr.export import graph, onnx_export

    archs = sorted(Path(esr.archs.__file__).parent.glob("*.py"))
    passes = sorted(Path(esr.plugins.__file__).parent.glob("*.py"))
    return [Path(onnx_export.__file__), Path(graph.__file__), Path(esr.descriptor.__file__), *archs, *passes]


def files_fingerprint(paths: list[Path]) -> str:
    """A short sha256 over the contents of ``paths``, in order."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:8]


def model_fingerprint(loaded: LoadedModel) -> str:
    """A short sha256 of a torch model's descriptor (esr version included), weights, and the source files
    of its module classes (an arch from another package, e.g. spandrel's, changes with that package)."""
    digest = hashlib.sha256(json.dumps(loaded.descriptor.to_metadata(), sort_keys=True).encode())
    sources = {inspect.getsourcefile(type(module)) for module in loaded.module.modules()}
    for source in sorted(path for path in sources if path):
        digest.update(Path(source).read_bytes())
    for key, value in loaded.module.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def cached_deploy_graph(loaded: LoadedModel, recipe: str = "default", opset: int = DEFAULT_OPSET) -> Path:
    """Path of the dynamic-shape deploy graph of ``loaded`` (a torch model) with ``recipe``, built once.

    Written through :mod:`esr.fileio` (temp file + rename), so a crash never leaves a partial graph.
    """
    from esr.export.graph import build_deploy_graph

    key = (f"{model_fingerprint(loaded)}-{files_fingerprint(exporter_sources())}-{recipe.replace(',', '+')}"
           f"-op{opset}-torch{torch.__version__.split('+')[0]}")
    path = onnx_cache_dir() / f"{key}.onnx"
    if path.is_file():
        return path
    if key in FAILED_BUILDS:  # e.g. an arch whose graph keeps its trace size: every graph backend asks
        raise FAILED_BUILDS[key]
    try:
        return build_deploy_graph(loaded, recipe=recipe, opset=opset).save(path, overwrite=True)
    except EsrError as err:
        FAILED_BUILDS[key] = err
        raise


FAILED_BUILDS: dict[str, EsrError] = {}
"""Graphs that could not be built in this process, by cache key: the error is raised again at once."""


def cached_fp16_graph(path: Path) -> Path:
    """An fp16 copy of the fp32 graph at ``path`` (float32 input and output kept), made once in the cache.

    For onnxruntime's CUDA provider (onnxruntime-gpu); converted by onnxruntime's own
    ``onnxruntime.transformers.float16`` (ops without fp16 kernels stay fp32 behind casts).
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from esr.fileio import replace_atomically

    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    target = onnx_cache_dir() / f"{digest}-fp16.onnx"
    if target.is_file():
        return target
    half = convert_float_to_float16(onnx.load(str(path)), keep_io_types=True)
    for prop in half.metadata_props:  # the descriptor says what the graph computes in
        if prop.key == "esr.precision":
            prop.value = "fp16"
    return replace_atomically(target, lambda tmp: onnx.save(half, tmp))
