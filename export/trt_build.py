"""TensorRT 10 engine build from an ONNX file (FP32/FP16/INT8, optimization profile, timing cache).

``tensorrt`` is imported only inside :func:`build_engine`; without it, the caller
prints :func:`trtexec_command` (the same build for a GPU machine) and exits with
:data:`EXIT_NO_TENSORRT`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from esr.errors import EsrError
from esr.fileio import write_bytes_atomically
from esr.loading import engine_sidecar, graph_precision, sha256_of

EXIT_NO_TENSORRT = 3
"""Exit code of ``esr export --trt`` when TensorRT is not importable (the ONNX file is still written)."""
EXIT_TRT_BUILD = 4
"""Exit code when TensorRT is present but parsing or building the engine fails."""

Shape = tuple[int, int, int, int]


@dataclass(frozen=True)
class EngineSpec:
    """What to build: ``onnx_path`` -> ``engine_path`` for input shapes min <= opt <= max (NCHW).

    precision: ``fp32``, ``fp16`` or ``int8`` (INT8 keeps FP16 enabled for layers without
    scales; a graph with QuantizeLinear nodes uses its own scales, otherwise calibration
    from ``calib_images`` with the cache ``calib_cache``, which is reused when present).
    """

    onnx_path: Path
    engine_path: Path
    min_shape: Shape
    opt_shape: Shape
    max_shape: Shape
    precision: str = "fp32"
    workspace_mib: int = 4096
    timing_cache: Path | None = None
    calib_cache: Path | None = None
    calib_images: list[Path] = field(default_factory=list)
    input_name: str = "input"


def shape_text(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


def trtexec_command(spec: EngineSpec) -> str:
    """The ``trtexec`` command line that builds the same engine on a machine with TensorRT."""
    parts = ["trtexec", f"--onnx={spec.onnx_path}", f"--saveEngine={spec.engine_path}"]
    if spec.min_shape != spec.max_shape:
        for flag, shape in (("min", spec.min_shape), ("opt", spec.opt_shape), ("max", spec.max_shape)):
            parts.append(f"--{flag}Shapes={spec.input_name}:{shape_text(shape)}")
    if spec.precision in ("fp16", "int8"):
        parts.append("--fp16")
    if spec.precision == "int8":
        parts.append("--int8")
        if spec.calib_cache is not None:
            parts.append(f"--calib={spec.calib_cache}")
    parts.append(f"--memPoolSize=workspace:{spec.workspace_mib}M")
    if spec.timing_cache is not None:
        parts.append(f"--timingCacheFile={spec.timing_cache}")
    return " ".join(parts)


def has_qdq(onnx_path: Path) -> bool:
    """Whether the graph carries its own INT8 scales (QuantizeLinear nodes)."""
    return graph_precision(onnx.load(str(onnx_path), load_external_data=False)) == "int8"


def calibration_batches(spec: EngineSpec) -> list[np.ndarray]:
    """Calibration inputs: each image cropped/padded to the opt shape's H x W, (1, 3, H, W) in [0, 1]."""
    from esr.export.images import fit, read_rgb

    _, _, height, width = spec.opt_shape
    return [fit(read_rgb(path), height, width) for path in spec.calib_images]


def make_calibrator(trt: Any, spec: EngineSpec) -> Any:
    """An ``IInt8EntropyCalibrator2`` feeding :func:`calibration_batches` from CUDA memory (torch).

    Implicit INT8 calibration is deprecated since TensorRT 10.1 (still present in 10.x) in
    favour of explicit quantization: a QDQ graph from ``esr quantize`` needs no calibrator.
    """
    import torch

    cache = spec.calib_cache

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.pending = iter(calibration_batches(spec) if not (cache and cache.is_file()) else [])
            self.device_batch: torch.Tensor | None = None

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = next(self.pending, None)
            if batch is None:
                return None
            self.device_batch = torch.from_numpy(batch).to("cuda").contiguous()
            return [int(self.device_batch.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache is not None and cache.is_file() else None

        def write_calibration_cache(self, data: Any) -> None:
            if cache is not None:
                write_bytes_atomically(cache, bytes(data))

    return Calibrator()


def build_engine(spec: EngineSpec, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build and write ``spec.engine_path`` plus its JSON sidecar (``<engine>.json``); return the sidecar.

    Raises:
        ImportError: tensorrt is not installed.
        EsrError (exit :data:`EXIT_TRT_BUILD`): the parser or the builder failed.
    """
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(spec.onnx_path)):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise EsrError(f"{spec.onnx_path}: TensorRT cannot parse it: {errors}", EXIT_TRT_BUILD)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace_mib << 20)
    if spec.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    profile.set_shape(spec.input_name, spec.min_shape, spec.opt_shape, spec.max_shape)
    config.add_optimization_profile(profile)
    if spec.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        if not has_qdq(spec.onnx_path):
            if not spec.calib_images and not (spec.calib_cache and spec.calib_cache.is_file()):
                raise EsrError(f"{spec.onnx_path}: INT8 needs --calib DIR or a calibration cache", EXIT_TRT_BUILD)
            config.int8_calibrator = make_calibrator(trt, spec)
            config.set_calibration_profile(profile)

    timing_bytes = spec.timing_cache.read_bytes() if spec.timing_cache and spec.timing_cache.is_file() else b""
    timing_cache = config.create_timing_cache(timing_bytes)
    config.set_timing_cache(timing_cache, ignore_mismatch=False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EsrError(f"{spec.onnx_path}: TensorRT engine build failed (see the log above)", EXIT_TRT_BUILD)
    write_bytes_atomically(spec.engine_path, bytes(serialized))
    if spec.timing_cache is not None:
        write_bytes_atomically(spec.timing_cache, bytes(config.get_timing_cache().serialize()))

    import torch

    sidecar = {
        "engine": str(spec.engine_path),
        "onnx": str(spec.onnx_path),
        "onnx_sha256": sha256_of(Path(spec.onnx_path)),
        "precision": spec.precision,
        "shapes": {"input": spec.input_name, "min": list(spec.min_shape), "opt": list(spec.opt_shape),
                   "max": list(spec.max_shape)},
        "workspace_mib": spec.workspace_mib,
        "tensorrt_version": trt.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        **(metadata or {}),
    }
    write_bytes_atomically(engine_sidecar(spec.engine_path), (json.dumps(sidecar, indent=2) + "\n").encode())
    return sidecar
