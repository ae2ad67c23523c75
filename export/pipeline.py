"""The export pipeline: deploy recipe -> ONNX (checked, shape-inferred, slimmed) -> ORT parity -> TensorRT op check."""
from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn as nn

from esr.complexity import count_macs, count_params
from esr.export.images import fit, image_files, read_rgb
from esr.export.onnx_export import INPUT_NAME, export_onnx, finalize_onnx, op_counts, save_atomic
from esr.export.trt_support import SupportReport, check_trt_support
from esr.plugins import PassReport, apply_measured

PARITY_TOL = 1e-4
"""Max abs difference (outputs in [0, 1]) allowed between onnxruntime and PyTorch in fp32."""
PASS_SAMPLE_HW = 64
"""Side of the real-image crop on which each pass's output change is measured."""


def ort_session(model: str | Path | bytes, threads: int = 2, optimize: bool = True):
    """An onnxruntime CPU session: ``threads`` intra-op threads, ORT_ENABLE_ALL graph optimization,
    no busy-wait spinning between ops (on a shared CPU spinning threads steal the cores other work needs)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


@dataclass
class ExportReport:
    """Everything ``esr export`` prints: passes, node counts, cost, parity, TensorRT verdict."""

    onnx_path: Path
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


def slim_export(model: nn.Module, height: int, width: int, dynamic: bool, opset: int) -> onnx.ModelProto:
    """Traced, checked, shape-inferred and slimmed ONNX graph of ``model``."""
    with tempfile.TemporaryDirectory(prefix="esr-export-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        path = export_onnx(model, Path(tmp) / "raw.onnx", height, width, dynamic=dynamic, opset=opset)
        return finalize_onnx(onnx.load(str(path)))


def parity_images(folder: Path | None, count: int = 5) -> tuple[list[np.ndarray], str]:
    """Up to ``count`` real images (1, 3, H, W) from ``folder``, or seeded noise when there is none."""
    if folder is not None and folder.is_dir():
        files = image_files(folder)[:count]
        if files:
            return [read_rgb(p) for p in files], f"{len(files)} images from {folder}"
    rng = np.random.default_rng(0)
    return [rng.random((1, 3, 48, 40), dtype=np.float32)], "seeded noise (no image folder found)"


def measure_parity(model: nn.Module, graph: onnx.ModelProto, images: list[np.ndarray],
                   shape: tuple[int, int, int, int] | None) -> dict[str, float]:
    """Max abs difference onnxruntime vs ``model`` per image (cropped/padded to ``shape`` when static)."""
    session = ort_session(graph.SerializeToString())
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


def run_export(model: nn.Module, onnx_path: str | Path, passes: list[str], shape: tuple[int, int, int, int],
               dynamic: bool, opset: int = 17, parity_dir: Path | None = None) -> ExportReport:
    """Apply ``passes`` to ``model``, export it to ``onnx_path`` (atomically) and check the result.

    Args:
        model: eval-mode esr model (unchanged; parity is against it, not the rewritten copy).
        shape: (N, 3, H, W): the static shape, or the trace/opt shape when ``dynamic``.
        parity_dir: folder of real images for the ORT parity check and pass-error sample.
    """
    images, source = parity_images(parity_dir)
    sample = torch.from_numpy(fit(images[0], PASS_SAMPLE_HW, PASS_SAMPLE_HW))
    deployed, reports = apply_measured(model, passes, sample)
    _, _, height, width = shape
    before = slim_export(model, height, width, dynamic, opset) if passes else None
    after = slim_export(deployed, height, width, dynamic, opset)
    save_atomic(after, onnx_path)
    return ExportReport(
        onnx_path=Path(onnx_path), dynamic=dynamic, shape=shape, passes=reports,
        ops_before=op_counts(before if before is not None else after), ops_after=op_counts(after),
        params_before=count_params(model), params_after=count_params(deployed),
        gmacs_before=count_macs(model, height, width) / 1e9, gmacs_after=count_macs(deployed, height, width) / 1e9,
        parity=measure_parity(model, after, images, None if dynamic else shape), parity_source=source,
        support=check_trt_support(after),
    )


def report_lines(report: ExportReport) -> list[str]:
    """The human-readable export report."""
    kind = "dynamic N/H/W" if report.dynamic else "static " + "x".join(map(str, report.shape))
    lines = [f"ONNX: {report.onnx_path} ({kind})", "passes:"]
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
