"""Inference backends behind one interface: ``backend(x) -> y``.

A backend maps a CPU float32 tensor ``x`` of shape (N, 3, H, W) with values in
[0, 1] to a CPU float32 tensor (N, 3, H*s, W*s), roughly in [0, 1] (not clamped).
It moves each call's input to its device and the result back, so the caller never
holds more than one tile on the device. Attributes every backend has:

- ``name``: the registry key (``torch``, ``onnxruntime``, ``tensorrt``);
- ``scale``: the integer upscale factor ``s``;
- ``max_hw``: ``(H, W)`` the largest input it accepts, or ``None`` for any size
  (the :class:`esr.upscaler.Upscaler` tiles inputs to fit);
- ``device``: ``"cpu"`` or ``"cuda"``; ``fp16``: whether it computes in half precision.

Backends are built with :func:`create_backend` from the :data:`BACKEND_REGISTRY`.
"""
from __future__ import annotations

import copy
import hashlib
import importlib
import warnings
from pathlib import Path
from typing import Callable, Protocol, Union

import torch
import torch.nn as nn

from esr.archs.padding import pad_bottom_right
from esr.errors import EsrError
from esr.fileio import replace_atomically
from esr.registry import Registry

ModelSpec = Union[str, Path, nn.Module]
"""A zoo name, a checkpoint path, an ``.onnx`` path (onnxruntime) / engine path (tensorrt), or a module."""

ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


class Backend(Protocol):
    name: str
    scale: int
    max_hw: tuple[int, int] | None
    device: str
    fp16: bool

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


BACKEND_REGISTRY = Registry("backend")
"""Backend factories ``(model, device, fp16) -> Backend``."""


def create_backend(name: str, model: ModelSpec, device: str = "cpu", fp16: bool = False) -> Backend:
    """Build the backend ``name`` for ``model`` on ``device`` (EsrError with one line if impossible)."""
    if name not in BACKEND_REGISTRY:
        raise EsrError(f"unknown backend {name!r} (known: {', '.join(BACKEND_REGISTRY)})")
    if device not in ("cpu", "cuda"):
        raise EsrError(f"unknown device {device!r} (use cpu or cuda)")
    return BACKEND_REGISTRY.get(name)(model, device, fp16)


def default_backend_for(model: ModelSpec) -> str:
    """The backend that can run ``model`` without conversion: ``.onnx`` -> onnxruntime, engines -> tensorrt."""
    if isinstance(model, (str, Path)):
        suffix = Path(model).suffix.lower()
        if suffix in ONNX_SUFFIXES:
            return "onnxruntime"
        if suffix in ENGINE_SUFFIXES:
            return "tensorrt"
    return "torch"


def _load_module(model: ModelSpec, backend: str) -> nn.Module:
    if isinstance(model, nn.Module):
        return model.eval()
    suffix = Path(model).suffix.lower()
    if suffix in ONNX_SUFFIXES + ENGINE_SUFFIXES:
        raise EsrError(f"{model}: the {backend} backend needs a zoo name or a .pth checkpoint, not a {suffix} file "
                       f"(use --backend {default_backend_for(model)})")
    from esr.loading import load_model

    return load_model(model)


def _check_cuda(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        raise EsrError("device cuda: no CUDA GPU is available to torch (use --device cpu)")


def _finite(y: torch.Tensor) -> bool:
    return bool(torch.isfinite(y).all())


@BACKEND_REGISTRY.register(name="torch")
class TorchBackend:
    """PyTorch eager: channels_last on CPU; fp16 on CUDA only, rerun in fp32 when a result is not finite."""

    name = "torch"
    max_hw = None

    def __init__(self, model: ModelSpec, device: str = "cpu", fp16: bool = False) -> None:
        _check_cuda(device)
        module = _load_module(model, self.name)
        self.scale = int(module.upscale)
        self.device = device
        self.memory_format = torch.channels_last if device == "cpu" else torch.contiguous_format
        self.model = copy.deepcopy(module).to(device=device, memory_format=self.memory_format).float()
        if fp16 and device == "cpu":
            warnings.warn("fp16 is not supported on CPU; computing in fp32", stacklevel=3)
        self.fp16 = fp16 and device == "cuda"
        self.model_half = copy.deepcopy(self.model).half() if self.fp16 else None

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        if self.model_half is not None:
            y = self.model_half(x.half())
            if _finite(y):
                return y.float().cpu()
            warnings.warn("fp16 output has NaN/Inf; recomputing this tile in fp32", stacklevel=2)
        return self.model(x.float()).float().cpu()


def model_fingerprint(model: ModelSpec) -> str:
    """A short sha256 naming a model's weights and arch (file contents for paths)."""
    digest = hashlib.sha256()
    if isinstance(model, nn.Module):
        digest.update(type(model).__name__.encode())
        digest.update(repr(sorted(getattr(model, "hyperparams", {}).items())).encode())
        for key, value in model.state_dict().items():
            digest.update(key.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    else:
        from esr.loading import ZOO, resolve_zoo_weights, sha256_of

        key = str(model)
        path = resolve_zoo_weights(ZOO[key]) if key in ZOO and not Path(key).exists() else Path(key)
        if not path.is_file():
            raise EsrError(f"{path}: no such file")
        digest.update(sha256_of(path).encode())
    return digest.hexdigest()[:16]


def onnx_cache_dir() -> Path:
    """Where on-the-fly ONNX exports are kept: ``<esr cache>/onnx``."""
    from esr.loading import cache_dir

    return cache_dir() / "onnx"


def exporter_sources() -> list[Path]:
    """The files whose code shapes a cached export: ``esr.export.onnx_export`` and every arch module."""
    import esr.archs
    from esr.export import onnx_export

    return [Path(onnx_export.__file__), *sorted(Path(esr.archs.__file__).parent.glob("*.py"))]


def files_fingerprint(paths: list[Path]) -> str:
    """A short sha256 over the contents of ``paths``, in order."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:8]


def cached_onnx(model: ModelSpec, opset: int = 17) -> Path:
    """Path of a dynamic-shape ONNX export of ``model``, exported once into :func:`onnx_cache_dir`.

    The file name carries the weights' fingerprint, the export code's fingerprint
    (:func:`exporter_sources`), the opset and the torch version, so a changed model or an
    esr upgrade that changes the exported graph never reuses a stale file (a stale export
    without the min-size padding crashed onnxruntime on small tiles). Written via temp
    file + rename.
    """
    from esr.export.onnx_export import export_onnx

    key = (f"{model_fingerprint(model)}-{files_fingerprint(exporter_sources())}-op{opset}"
           f"-torch{torch.__version__.split('+')[0]}")
    path = onnx_cache_dir() / f"{key}.onnx"
    if path.is_file():
        return path
    module = _load_module(model, "onnxruntime")

    def export(tmp_name: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            export_onnx(module, tmp_name, height=64, width=64, dynamic=True, opset=opset)

    return replace_atomically(path, export)


@BACKEND_REGISTRY.register(name="onnxruntime")
class OnnxRuntimeBackend:
    """ONNX Runtime on an ``.onnx`` file, or on an export of a torch model cached by :func:`cached_onnx`.

    Static-shape models accept inputs up to their shape (``max_hw``); smaller inputs are
    reflect-padded to it and the output cropped. Dynamic ones get inputs of at least
    ``min_side`` (``MIN_DYNAMIC_SIZE``) pixels a side, padded the same way.
    """

    name = "onnxruntime"

    def __init__(self, model: ModelSpec, device: str = "cpu", fp16: bool = False) -> None:
        import onnxruntime as ort

        from esr.export.onnx_export import MIN_DYNAMIC_SIZE

        is_onnx = isinstance(model, (str, Path)) and Path(model).suffix.lower() in ONNX_SUFFIXES
        path = Path(model) if is_onnx else cached_onnx(model)
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise EsrError("device cuda: onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)")
            providers.insert(0, "CUDAExecutionProvider")
        if fp16:
            warnings.warn("onnxruntime backend runs the model's own precision; --fp16 is ignored "
                          "(export an fp16 model instead)", stacklevel=3)
        self.fp16 = False
        self.device = device
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as err:  # onnxruntime raises its own exception types for any bad file
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise EsrError(f"{path}: cannot load ONNX model ({reason})") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise EsrError(f"{path}: expected one NCHW image input, found {[i.shape for i in inputs]}")
        self.input_name = inputs[0].name
        height, width = inputs[0].shape[2:]
        static = isinstance(height, int) and isinstance(width, int)
        self.max_hw = (height, width) if static else None
        self.min_side = MIN_DYNAMIC_SIZE
        probe = self.max_hw or (32, 32)
        out = self.session.run(None, {self.input_name: torch.zeros(1, 3, *probe).numpy()})[0]
        self.scale = int(out.shape[-1] // probe[1])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        # static graphs take exactly their shape; dynamic ones at least min_side (their own
        # reflect padding to the arch's min size needs it; smaller inputs crashed onnxruntime)
        target_h, target_w = self.max_hw or (max(height, self.min_side), max(width, self.min_side))
        pad_h, pad_w = target_h - height, target_w - width
        if pad_h < 0 or pad_w < 0:
            raise ValueError(f"input {height}x{width} exceeds the model's static shape {self.max_hw}")
        if pad_h or pad_w:
            x = pad_bottom_right(x, pad_h, pad_w)
        y = self.session.run(None, {self.input_name: x.float().contiguous().numpy()})[0]
        return torch.from_numpy(y[..., : height * self.scale, : width * self.scale]).contiguous()


TRT_INSTALL_HINT = "pip install 'esr[trt]' on a machine with an NVIDIA GPU, or use --backend onnxruntime"


@BACKEND_REGISTRY.register(name="tensorrt")
class TensorRTBackend:
    """A TensorRT engine run by :class:`esr.export.trt_runner.TRTRunner` (CUDA only).

    ``max_hw`` is the engine profile's largest input, so larger images are tiled to fit.
    """

    name = "tensorrt"

    def __init__(self, model: ModelSpec, device: str = "cuda", fp16: bool = False) -> None:
        runner_class = load_trt_runner()
        if not isinstance(model, (str, Path)) or Path(model).suffix.lower() not in ENGINE_SUFFIXES:
            raise EsrError(f"{model}: the tensorrt backend needs a TensorRT engine file "
                           f"({', '.join(ENGINE_SUFFIXES)}), built from an ONNX export")
        if device != "cuda":
            raise EsrError("the tensorrt backend runs on CUDA only (use --device cuda)")
        if not Path(model).is_file():
            raise EsrError(f"{model}: no such file")
        self.device = device
        self.fp16 = fp16
        self.runner = runner_class(str(model), device="cuda")
        self.max_hw = tuple(self.runner.profile_max_hw)
        side = min(32, *self.max_hw)
        self.scale = int(self.runner(torch.zeros(1, 3, side, side, device="cuda")).shape[-1] // side)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.runner(x.to("cuda").float().contiguous()).float().cpu()


def load_trt_runner() -> Callable:
    """The TRTRunner class; EsrError with one actionable line when TensorRT is not importable."""
    try:
        importlib.import_module("tensorrt")
    except ImportError:
        raise EsrError(f"tensorrt backend: TensorRT is not installed ({TRT_INSTALL_HINT})") from None
    try:
        return importlib.import_module("esr.export.trt_runner").TRTRunner
    except (ImportError, AttributeError) as err:
        raise EsrError(f"tensorrt backend: cannot load esr.export.trt_runner ({err}); {TRT_INSTALL_HINT}") from None
