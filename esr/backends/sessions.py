"""The one onnxruntime session factory (:func:`ort_session`) and torch's side of ``--threads`` (:func:`use_threads`).

Every onnxruntime session in esr is made by :func:`ort_session`: backends, ``esr bench``, ``esr analyze
--calibrate``, quantisation calibration and sensitivity, export parity, scripts and tests all use it, so
what is measured is what runs. Settings:
``threads`` intra-op threads (0: onnxruntime's default, one per physical core), one inter-op
thread, no busy-wait spinning between ops (on a shared CPU spinning threads steal the cores
other work needs), ``ORT_ENABLE_ALL`` graph optimisation (or none, for calibration that reads
intermediate tensors), no log output (failures raise), CPU or CUDA provider, optional profiling.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from esr.errors import EsrError, first_line

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


def use_threads(threads: int) -> None:
    """Apply a ``--threads`` value to torch (``torch.set_num_threads``; 0 leaves torch's default).

    onnxruntime (:func:`ort_session`) and OpenVINO take the same number per session; this is the
    torch side, for the commands that also compute in torch (tracing, parity, MAC counts, training).
    """
    if threads < 0:
        raise EsrError(f"threads must be >= 0 (got {threads})")
    if threads:
        import torch

        torch.set_num_threads(threads)


def ort_session(model: Any, threads: int = 0, device: str = "cpu", optimize: bool = True,
                profile_dir: str | Path | None = None, optimized_path: str | Path | None = None,
                label: str | None = None):
    """An ``onnxruntime.InferenceSession`` for ``model``.

    Args:
        model: a path, serialized bytes, or an ``onnx.ModelProto``.
        threads: intra-op threads (0: onnxruntime's default).
        device: ``cpu``, or ``cuda`` (CUDA provider first; EsrError if onnxruntime has none).
        optimize: ``ORT_ENABLE_ALL`` graph optimisation (False: none, every node kept as it is).
        profile_dir: enable onnxruntime's profiler, writing its JSON under this folder.
        optimized_path: also write the optimised graph there (to inspect what onnxruntime fused).
        label: what to call the model in an error (default: its path, or "in-memory ONNX graph").

    Raises:
        EsrError: one line naming the file when onnxruntime cannot load the model.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 4  # fatal only: a failing run raises, its log line would be a second error line
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    if profile_dir is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(profile_dir) / "ort")
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    providers = [CPU_PROVIDER]
    if device == "cuda":
        if CUDA_PROVIDER not in ort.get_available_providers():
            raise EsrError("device cuda: onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)")
        providers.insert(0, CUDA_PROVIDER)
    if isinstance(model, (str, Path)):
        source, label = str(model), label or str(model)
    else:
        source = model if isinstance(model, bytes) else model.SerializeToString()
        label = label or "in-memory ONNX graph"
    try:
        return ort.InferenceSession(source, options, providers=providers)
    except Exception as err:  # onnxruntime raises its own exception types for any bad graph
        raise EsrError(f"{label}: onnxruntime cannot load it ({first_line(err)})") from None
