"""Inference backends behind one interface, and their registry.

A backend maps a CPU float32 tensor ``x`` of shape (N, C, H, W) with values in [0, 1] to a
CPU float32 tensor (N, C', H*s, W*s), roughly in [0, 1] (not clamped); ``s``, ``C``, ``C'``
and the size requirements are in its ``descriptor`` (:class:`esr.descriptor.ModelDescriptor`).
It pads inputs the model cannot take as they are and crops the result, moves each call's input
to its device and the result back, so the caller never holds more than one tile on the
device. Attributes every backend has:

- ``name``: the registry key (``torch``, ``onnxruntime``, ``tensorrt``, ``openvino``; ``auto`` picks
  among them by measurement: :mod:`esr.backends.auto_backend`);
- ``descriptor``: the model it runs (for a graph: the graph's, with its recipe and precision);
- ``device``: ``"cpu"``, ``"cuda"`` or ``"gpu"`` (OpenVINO's Intel GPU); ``precision``: what it actually
  computes in (``fp32``, ``bf16``, ``fp16``, ``int8``); a precision it cannot run is an EsrError (exit 2);
- ``max_hw``: ``(H, W)`` the largest input it accepts, or ``None`` for any size
  (the :class:`esr.upscaler.Upscaler` tiles inputs to fit).

Optionally ``streams`` > 1 with ``run_streamed(x)``: a call like ``backend(x)`` that ``streams`` threads may
make at once, each on its share of the runtime's threads (slower alone, sometimes more calls per second
together); an upscaler asked for ``tile_streams`` > 1 runs a large image's tiles this way (:func:`tile_runner`).
OpenVINO on a CPU has it.

:data:`BACKENDS` holds one :class:`BackendSpec` per runtime (name, devices, precisions, model
kinds it runs, availability check, the class to import); :func:`create_backend` builds one.
Adding a runtime = its module in this package + one :func:`register_backend` line below.
This module imports neither torch nor any runtime: the CLI reads its choices from here.
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol

from esr.descriptor import PRECISIONS, ModelDescriptor
from esr.errors import EsrError
from esr.registry import Registry

if TYPE_CHECKING:
    import torch

    from esr.loading import LoadedModel, ModelSpec

class Backend(Protocol):
    name: str
    descriptor: ModelDescriptor
    device: str
    precision: str
    max_hw: tuple[int, int] | None

    def __call__(self, x: "torch.Tensor") -> "torch.Tensor": ...


def tile_runner(backend: Backend, wanted: int = 1) -> tuple[Callable[["torch.Tensor"], "torch.Tensor"], int]:
    """(run, count): how the tiles of one image are run: ``backend.run_streamed``, ``min(wanted, backend.streams)``
    at a time, where more than one is wanted and the backend has streams; else ``backend`` itself, one at a time."""
    streams = min(wanted, getattr(backend, "streams", 1))
    return (backend.run_streamed, streams) if streams > 1 else (backend, 1)


@dataclass(frozen=True)
class BackendSpec:
    """What a runtime can do, and where its class lives (``"module:Class"``, imported on first use).

    The class is built as ``cls(loaded, device, precision, threads)`` (see :func:`create_backend`).
    ``available()`` returns None when the runtime is importable here, else a one-line reason.
    """

    name: str
    factory: str
    devices: tuple[str, ...]
    precisions: tuple[str, ...]
    kinds: tuple[str, ...]
    summary: str
    available: Callable[[], str | None] = lambda: None
    cuda_ready: Callable[[], bool] = lambda: True
    """Whether this runtime, installed, can use the CUDA GPU torch sees (onnxruntime: only with its CUDA provider)."""


AUTO = "auto"
"""The registry entry that picks among the others (:mod:`esr.backends.auto_backend`)."""

BACKENDS = Registry("backend")
"""name -> :class:`BackendSpec`, in preference order (the default backend of a model is the first that runs it)."""


def register_backend(spec: BackendSpec) -> BackendSpec:
    return BACKENDS.register(spec, name=spec.name)


def requires(module: str, label: str, hint: str) -> Callable[[], str | None]:
    """An availability check: None when ``module`` is importable, else ``"<label> is not installed (<hint>)"``."""
    def check() -> str | None:
        return None if importlib.util.find_spec(module) is not None else f"{label} is not installed ({hint})"

    return check


def onnxruntime_has_cuda() -> bool:
    """True when the installed onnxruntime has the CUDA execution provider (onnxruntime-gpu)."""
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


TRT_INSTALL_HINT = "pip install 'esr[trt]' on a machine with an NVIDIA GPU, or use --backend onnxruntime"

register_backend(BackendSpec(
    "torch", "esr.backends.torch_backend:TorchBackend", ("cpu", "cuda"), ("fp32", "bf16", "fp16"), ("module",),
    "PyTorch eager (channels_last on CPU; bf16 on CPUs with AMX/AVX512-BF16; fp16/bf16 on CUDA)"))
register_backend(BackendSpec(
    "onnxruntime", "esr.backends.ort_backend:OnnxRuntimeBackend", ("cpu", "cuda"), ("fp32", "fp16", "int8"),
    ("module", "onnx"), "ONNX Runtime on an .onnx file, or on the default-recipe deploy graph of a torch model",
    requires("onnxruntime", "onnxruntime", "pip install onnxruntime"), onnxruntime_has_cuda))
register_backend(BackendSpec(
    "tensorrt", "esr.backends.trt_backend:TensorRTBackend", ("cuda",), ("fp32", "fp16", "int8"), ("engine",),
    "TensorRT engine from esr export --trt (CUDA only)", requires("tensorrt", "TensorRT", TRT_INSTALL_HINT)))
register_backend(BackendSpec(
    "openvino", "esr.backends.openvino_backend:OpenVINOBackend", ("cpu", "gpu"), ("fp32", "bf16", "fp16", "int8"),
    ("module", "onnx"), "OpenVINO on the same graphs (cpu, or gpu = Intel GPU): fp32/bf16/fp16 hints, INT8 QDQ graphs",
    requires("openvino", "OpenVINO", "pip install 'esr[openvino]'")))
register_backend(BackendSpec(
    AUTO, "esr.backends.auto_backend:AutoBackend", ("cpu", "cuda", "gpu"), PRECISIONS, ("module", "onnx", "engine"),
    "measure the installed backends x precisions once and run the fastest within the fidelity floor (cached)"))


def backend_devices() -> list[str]:
    """Every device some registered backend runs on (``cpu``, ``cuda``, ...)."""
    return list(dict.fromkeys(device for _, spec in BACKENDS.items() for device in spec.devices))


def default_device(backend: str | None = None) -> str:
    """The device every command and the Python API use when none is given: ``cuda`` if available, else ``cpu``.

    Available: torch sees a CUDA GPU and, when ``backend`` is named, that backend runs on cuda and can use it
    (onnxruntime needs its CUDA provider). Imports torch: call it at run time, not while building a parser.
    """
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    spec = BACKENDS.get(backend) if backend in BACKENDS else None
    return "cuda" if spec is None or ("cuda" in spec.devices and spec.cuda_ready()) else "cpu"


def backend_names() -> list[str]:
    """Registered backend names, in preference order (the CLI's ``--backend`` choices; ``auto`` last)."""
    return list(BACKENDS)


def runtime_names() -> list[str]:
    """The backends that run a model themselves (every one but ``auto``)."""
    return [name for name in BACKENDS if name != AUTO]


def backend_precisions() -> list[str]:
    """Every precision some registered backend computes in (the CLI's ``--precision`` choices)."""
    return [p for p in PRECISIONS if any(p in spec.precisions for _, spec in BACKENDS.items())]


def backends_help() -> str:
    """One ``name: summary`` phrase per runtime (``auto`` has its own help text), for ``--backend`` help texts."""
    return "; ".join(f"{name}: {spec.summary}" for name, spec in BACKENDS.items() if name != AUTO)


def default_backend_for(loaded: "LoadedModel") -> str:
    """The first registered backend that runs ``loaded``'s kind as it is (module: torch, onnx: onnxruntime, ...)."""
    for name, spec in BACKENDS.items():
        if loaded.kind in spec.kinds:
            return name
    raise EsrError(f"{loaded.label}: no backend runs a {loaded.kind} model")


def usable_spec(name: str, device: str) -> BackendSpec:
    """The spec of backend ``name`` if it is known, installed and runs on ``device``; else EsrError (one line)."""
    if name not in BACKENDS:
        raise EsrError(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")
    spec: BackendSpec = BACKENDS.get(name)
    reason = spec.available()
    if reason is not None:
        raise EsrError(f"{name} backend: {reason}")
    if device not in backend_devices():
        raise EsrError(f"unknown device {device!r} (known: {', '.join(backend_devices())})")
    if device not in spec.devices:
        raise EsrError(f"the {name} backend runs on {', '.join(spec.devices)} only (use --device {spec.devices[0]})")
    return spec


def check_kind(name: str, spec: BackendSpec, loaded: "LoadedModel") -> None:
    """EsrError (one line) unless backend ``name`` runs ``loaded``'s kind (module, onnx, engine)."""
    if loaded.kind not in spec.kinds:
        raise EsrError(f"{loaded.label}: the {name} backend runs {' or '.join(spec.kinds)} models, not "
                       f"{loaded.kind} files (use --backend {default_backend_for(loaded)})")


def create_backend(name: str, model: "ModelSpec", device: str = "cpu", precision: str | None = None,
                   threads: int = 0, **options: Any) -> Backend:
    """Build the backend ``name`` for ``model`` on ``device`` (EsrError with one line if impossible).

    Args:
        model: a :class:`esr.loading.LoadedModel`, or anything :func:`esr.loading.open_model` accepts
            (a zoo name, checkpoint, ``.onnx``/engine path, or a module with a descriptor).
        precision: what to compute in; None: the backend's default (fp32 for torch, the graph's or
            engine's own precision for files).
        threads: CPU threads for torch / onnxruntime / OpenVINO (0: the library's default).
        options: backend-specific keywords (``auto``: ``min_fidelity_db``, ``tile_hw``, ``quiet``).

    The checks run cheapest first: backend known, runtime installed, device, then the model.
    """
    spec = usable_spec(name, device)
    if precision is not None and precision not in PRECISIONS and not (precision == AUTO and name == AUTO):
        raise EsrError(f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
    if threads < 0:
        raise EsrError(f"threads must be >= 0 (got {threads})")
    from esr.loading import LoadedModel, open_model

    loaded = model if isinstance(model, LoadedModel) else open_model(model)
    check_kind(name, spec, loaded)
    module_name, class_name = spec.factory.split(":")
    backend_class: Any = getattr(importlib.import_module(module_name), class_name)
    return backend_class(loaded, device, precision, threads, **options)
