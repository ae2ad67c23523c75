"""The deploy graph of a model: its recipe applied, exported to static-shape ONNX, constant-folded."""
from __future__ import annotations

import importlib
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import torch
import torch.nn as nn

from esr.errors import EsrError


@dataclass
class DeployGraph:
    """A static-shape ONNX graph (input ``input`` of ``shape``) and the deploy passes applied to it."""

    model: onnx.ModelProto
    shape: tuple[int, int, int, int]
    passes: list[str] = field(default_factory=list)
    note: str = ""

    def save(self, path: str | Path) -> Path:
        """Write the graph to ``path`` (temp file + rename: a failed write leaves no partial file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".onnx")
        os.close(fd)
        try:
            onnx.save(self.model, tmp)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return path


def recipe_api():
    """``(resolve_recipe, apply)`` from :mod:`esr.plugins`, or ``None`` when that package has no recipes yet."""
    plugins = importlib.import_module("esr.plugins")
    if hasattr(plugins, "apply") and hasattr(plugins, "resolve_recipe"):
        return plugins.resolve_recipe, plugins.apply
    return None


def deploy_graph(model: nn.Module, shape: tuple[int, int, int, int], recipe: str = "default") -> DeployGraph:
    """Apply ``recipe`` (``default``, ``none`` or pass names) to ``model``, export it at ``shape`` (N, 3, H, W).

    The graph is exported with static shapes and simplified by onnxslim (constant and shape
    folding, which every runtime does before running), so each remaining node is a kernel.
    """
    passes: list[str] = []
    note = ""
    api = recipe_api()
    if api is None:
        if recipe not in ("default", "none"):
            raise EsrError(f"--recipe {recipe}: deploy recipes are not available (esr.plugins has no apply())")
        note = "plain export (esr.plugins provides no deploy recipes)"
    elif recipe != "none":
        resolve_recipe, apply = api
        try:
            passes = resolve_recipe(model, recipe)
        except KeyError as err:
            raise EsrError(f"--recipe {recipe}: {err.args[0]}") from None
        model = apply(model, passes) if passes else model
    from esr.export.onnx_export import export_onnx
    import onnxslim

    batch, _, height, width = shape
    if batch != 1:
        raise EsrError(f"--shape {'x'.join(map(str, shape))}: only batch 1 is analysed")
    with tempfile.TemporaryDirectory(prefix="esr-analyze-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        path = export_onnx(model, Path(tmp) / "model.onnx", height=height, width=width, dynamic=False)
        graph = onnx.load(str(path))
    return DeployGraph(onnxslim.slim(graph), tuple(shape), passes, note)
