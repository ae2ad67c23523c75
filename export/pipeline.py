"""The export pipeline: deploy graph (:func:`esr.export.graph.build_deploy_graph`) -> ORT parity -> TensorRT op check."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import onnx
import torch

from esr.backends.sessions import ort_session
from esr.channels import array_to_channels
from esr.complexity import count_macs, count_params
from esr.descriptor import ModelDescriptor
from esr.errors import EsrError
from esr.export.graph import build_deploy_graph
from esr.export.images import fit, image_files, read_rgb
from esr.export.onnx_export import INPUT_NAME, op_counts
from esr.export.trt_support import SupportReport, check_trt_support
from esr.loading import LoadedModel, open_model
from esr.plugins import PassReport

PARITY_TOL = 1e-4
"""Max abs difference (outputs in [0, 1]) allowed between onnxruntime and PyTorch in fp32."""
PASS_SAMPLE_HW = 64
"""Side of the real-image crop on which each pass's output change is measured."""


@dataclass
class ExportReport:
    """Everything ``esr export`` prints: passes, node counts, cost, parity, TensorRT verdict."""

    onnx_path: Path
    descriptor: ModelDescriptor
    dynamic: bool
    shape: tuple[int, int, int, int]
    passes: list[PassReport]
    ops_before: dict[str, int]
    ops_after: dict[str, int]
    params_before: int
    params_after: int
    gmacs_before: float
    gmacs_after: float
    parity: dict[str, float] = field(default_factory=dict)
    parity_source: str = ""
    support: SupportReport = field(default_factory=SupportReport)

    @property
    def parity_max(self) -> float:
        return max(self.parity.values(), default=float("nan"))

    @property
    def parity_ok(self) -> bool:
        return bool(self.parity) and self.parity_max <= PARITY_TOL


SAMPLE_SOURCE = "the package's sample image (CC0 coffee crop, esr/data/sample_lr.png)"
"""How the report names :mod:`esr.sample`'s image when it is the parity input."""


def parity_images(folder: Path | None, count: int = 5) -> tuple[list[np.ndarray], str]:
    """Up to ``count`` real images (1, 3, H, W) from ``folder`` and where they came from; ``folder`` None: the
    package's sample image (:mod:`esr.sample`). Never noise: EsrError when ``folder`` holds no image."""
    if folder is None:
        from esr.sample import sample_batch

        return [sample_batch()], SAMPLE_SOURCE
    files = image_files(folder)[:count] if folder.is_dir() else []
    if not files:
        raise EsrError(f"{folder}: no images for the parity check (a folder of png/jpg/... files)")
    return [read_rgb(p) for p in files], f"{len(files)} images from {folder}"


def measure_parity(model: torch.nn.Module, graph: onnx.ModelProto, images: list[np.ndarray],
                   shape: tuple[int, int, int, int] | None, threads: int = 0) -> dict[str, float]:
    """Max abs difference onnxruntime vs ``model`` per image (cropped/padded to ``shape`` when static)."""
    session = ort_session(graph, threads=threads)
    result = {}
    for index, image in enumerate(images):
        x = fit(image, shape[2], shape[3]) if shape is not None else image
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        actual = session.run(None, {INPUT_NAME: x})[0]
        if actual.shape != expected.shape:
            raise ValueError(f"onnxruntime output {actual.shape} != PyTorch {expected.shape} for image {index}")
        result[f"image{index}_{x.shape[2]}x{x.shape[3]}"] = float(np.abs(actual - expected).max())
    return result


def run_export(model: LoadedModel | torch.nn.Module, onnx_path: str | Path, passes: list[str] | str,
               shape: tuple[int, int, int, int], dynamic: bool, opset: int = 17, parity_dir: Path | None = None,
               sources: Iterable[str | Path] = (), overwrite: bool = True, threads: int = 0) -> ExportReport:
    """Build the deploy graph of ``model`` with ``passes``, write it to ``onnx_path`` (atomically), check it.

    Args:
        model: eval-mode torch model with a descriptor (unchanged; parity is against it, not the rewritten copy).
        shape: (N, 3, H, W): the static shape, or the trace/opt shape when ``dynamic``.
        parity_dir: folder of real images for the ORT parity check and pass-error sample (None: the package's
            sample image), converted to the model's input channels by :mod:`esr.channels`.
        sources, overwrite: the output policy of :func:`esr.fileio.write_output` for ``onnx_path``.
        threads: CPU threads of the parity session (0: onnxruntime's default); torch's are the caller's
            (:func:`esr.backends.sessions.use_threads`).
    """
    loaded = open_model(model, allow_untrained=True)
    images, source = parity_images(parity_dir)
    images = [array_to_channels(image, loaded.descriptor.in_channels) for image in images]
    sample = torch.from_numpy(fit(images[0], PASS_SAMPLE_HW, PASS_SAMPLE_HW))
    after = build_deploy_graph(loaded, passes, shape, dynamic, opset, sample=sample)
    before = build_deploy_graph(loaded, "none", shape, dynamic, opset) if after.recipe else after
    after.save(onnx_path, sources, overwrite)
    _, _, height, width = shape
    return ExportReport(
        onnx_path=Path(onnx_path), descriptor=after.descriptor, dynamic=dynamic, shape=shape, passes=after.passes,
        ops_before=op_counts(before.model), ops_after=op_counts(after.model),
        params_before=count_params(loaded.module), params_after=count_params(after.deployed),
        gmacs_before=count_macs(loaded.module, height, width) / 1e9,
        gmacs_after=count_macs(after.deployed, height, width) / 1e9,
        parity=measure_parity(loaded.module, after.model, images, None if dynamic else shape, threads),
        parity_source=source,
        support=check_trt_support(after.model),
    )


def report_json(report: ExportReport) -> dict:
    """The export report as JSON-ready data (``esr export --json``). A pass's ``psnr_db`` is null when it was not
    measured or changed nothing (``max_abs_error`` 0: bit-identical)."""
    def finite(value: float | None) -> float | None:
        return value if value is not None and np.isfinite(value) else None

    return {
        "onnx": str(report.onnx_path), "dynamic": report.dynamic, "shape": list(report.shape),
        "scale": report.descriptor.scale, "provenance": report.descriptor.provenance,
        "recipe": list(report.descriptor.recipe),
        "passes": [{"name": step.name, "contract": step.contract, "sites": step.sites,
                    "max_abs_error": step.max_abs_error, "psnr_db": finite(step.psnr_db)} for step in report.passes],
        "nodes": {"before": report.ops_before, "after": report.ops_after},
        "params": {"before": report.params_before, "after": report.params_after},
        "gmacs": {"before": report.gmacs_before, "after": report.gmacs_after},
        "parity": {"max_abs": finite(report.parity_max), "tolerance": PARITY_TOL, "ok": report.parity_ok,
                   "images": report.parity, "source": report.parity_source},
        "tensorrt_support": {"ok": report.support.ok, "unsupported": report.support.unsupported,
                             "restricted": report.support.restricted, "dtypes": report.support.dtypes},
    }


def report_lines(report: ExportReport) -> list[str]:
    """The human-readable export report."""
    kind = "dynamic N/H/W" if report.dynamic else "static " + "x".join(map(str, report.shape))
    lines = [f"ONNX: {report.onnx_path} ({kind}; metadata: x{report.descriptor.scale}, "
             f"{report.descriptor.provenance})", "passes:"]
    for step in report.passes:
        if step.max_abs_error is None:
            change = "output change unmeasured"
        else:
            change = f"max abs output change {step.max_abs_error:.2e}, output PSNR vs before {step.psnr_db:.1f} dB"
        lines.append(f"  {step.name:<16} {step.contract:<6} sites {step.sites:>3}  {change}")
    if not report.passes:
        lines.append("  (none)")
    lines.append(f"nodes: {sum(report.ops_before.values())} before -> {sum(report.ops_after.values())} after")
    for op in sorted(set(report.ops_before) | set(report.ops_after),
                     key=lambda o: -max(report.ops_before.get(o, 0), report.ops_after.get(o, 0))):
        lines.append(f"  {op:<22} {report.ops_before.get(op, 0):>4} -> {report.ops_after.get(op, 0):>4}")
    lines.append(f"params: {report.params_before / 1e6:.3f} M -> {report.params_after / 1e6:.3f} M; "
                 f"GMACs at {report.shape[2]}x{report.shape[3]}: {report.gmacs_before:.2f} -> {report.gmacs_after:.2f}")
    verdict = "OK" if report.parity_ok else "FAIL"
    lines.append(f"parity onnxruntime vs PyTorch: max abs {report.parity_max:.2e} (tol {PARITY_TOL:g}) {verdict} "
                 f"on {report.parity_source}")
    return lines + report.support.lines()
