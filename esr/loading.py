"""Turn what a user names (zoo name, preset, checkpoint, ONNX file, engine) into a :class:`LoadedModel`.

:func:`open_model` is the one loader: it tries the sources of :data:`MODEL_SOURCES` in order
(zoo name, arch preset, ONNX file, TensorRT engine, checkpoint file); each fills the model's
:class:`esr.descriptor.ModelDescriptor`. A checkpoint (``.pth``, ``.pt``, ``.ckpt``:
``torch.load(weights_only=True)``; ``.safetensors``: ``safetensors``; no code runs either way) is
unwrapped (:func:`unwrap_state_dict`) and offered to the :data:`CHECKPOINT_LOADERS` in order:
esr's own detectors (:data:`esr.registry.DETECTOR_REGISTRY`, hyperparameters from tensor shapes),
then spandrel (:mod:`esr.spandrel_adapter`: about 40 more architectures). Every failure is an
:class:`EsrError` whose message is one line naming the file.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Union

import torch
import torch.nn as nn

import esr.archs  # noqa: F401  (registers archs and detectors)
from esr.archs.presets import build_model
from esr.descriptor import ModelDescriptor, read_metadata
from esr.errors import EsrError
from esr.fileio import replace_atomically
from esr.limits import build_arch
from esr.registry import ARCH_REGISTRY, DETECTOR_REGISTRY, Registry
from esr.spandrel_adapter import spandrel_loader
from esr.zoo import PRESETS, ZOO, ZooEntry

EMBEDDED_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
WRAPPER_KEYS = ("params_ema", "params-ema", "params", "state_dict", "model_state_dict", "model", "net")
"""Keys a training framework nests the weights under (BasicSR, Lightning, KAIR, ...), first match wins."""
COMMON_PREFIXES = ("module.", "netG.")
"""Key prefixes removed when every key has them (DataParallel, some GAN trainers)."""
ESR_META_KEY = "esr_arch"
"""Checkpoints written by esr carry ``{"esr_arch": {"arch": name, "kwargs": {...}}}`` beside the weights."""
ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")
UNTRAINED_SEED = 0
"""Seed of the random weights of an arch preset (so its graphs and timings are reproducible)."""

ModelKind = Literal["module", "onnx", "engine"]


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for a backend: its descriptor and either a torch module or a file.

    ``kind`` is ``module`` (``module`` set: eval mode and on the CPU when a loader made it; a module
    passed in is used as given, backends and the graph builder work on eval-mode copies), ``onnx``
    or ``engine`` (``path`` set). ``path`` is also set for a module read from a checkpoint file: the
    source model that no output may replace.
    """

    descriptor: ModelDescriptor
    kind: ModelKind
    module: nn.Module | None = None
    path: Path | None = None

    @classmethod
    def from_module(cls, module: nn.Module) -> "LoadedModel":
        """Wrap a module that carries ``.descriptor`` (every esr arch does); EsrError otherwise."""
        descriptor = getattr(module, "descriptor", None)
        if not isinstance(descriptor, ModelDescriptor):
            raise EsrError(f"{type(module).__name__}: a torch module without an esr descriptor "
                           "(build it with esr.build_model or load it with esr.load_model)")
        return cls(descriptor, "module", module=module)

    @property
    def label(self) -> str:
        """What to call the model in messages: the file, else the descriptor's name."""
        return str(self.path) if self.path is not None else self.descriptor.name


ModelSpec = Union[str, Path, nn.Module, LoadedModel]
"""A zoo name, an arch preset, a checkpoint / ONNX / engine path, a module with a descriptor, or a LoadedModel."""


@dataclass(frozen=True)
class ModelSource:
    """One way to name a model: ``claims(text)`` says whether ``load(text, scale, allow_untrained)`` handles it."""

    name: str
    claims: Callable[[str], bool]
    load: Callable[[str, "int | None", bool], LoadedModel]


MODEL_SOURCES = Registry("model source")
"""Tried in registration order by :func:`open_model`: zoo, preset, onnx, engine, checkpoint."""

CheckpointLoader = Callable[[dict, Path], "nn.Module | None"]
CHECKPOINT_LOADERS = Registry("checkpoint loader")
"""``fn(state_dict, path) -> module with weights loaded and a descriptor, or None (not mine)``,
tried in registration order: ``esr`` (esr's detectors) first, then later stages (spandrel)."""


def open_model(spec: ModelSpec, scale: int | None = None, allow_untrained: bool = False) -> LoadedModel:
    """The model ``spec`` names, with its descriptor filled in.

    Args:
        spec: zoo name (``rlfn_s_x4``), arch preset (``ditn_real``: random weights, only with
            ``allow_untrained``), checkpoint path, ``.onnx`` file, TensorRT engine, a module
            carrying ``.descriptor``, or a LoadedModel.
        scale: if given, the model's scale must equal it (a preset is built at it; default 4).
        allow_untrained: accept an arch preset without weights (bench, analyze, export: timing and
            graph shape do not depend on weight values); otherwise a preset is an EsrError that
            says where trained weights come from.
    """
    if isinstance(spec, LoadedModel):
        loaded = spec
    elif isinstance(spec, nn.Module):
        loaded = LoadedModel.from_module(spec)
    else:
        text = str(spec)
        source = next((s for _, s in MODEL_SOURCES.items() if s.claims(text)), None)
        if source is None:
            known = ", ".join([*ZOO, *PRESETS])
            raise EsrError(f"{text}: neither a file nor a zoo model or arch preset (known: {known})")
        loaded = source.load(text, scale, allow_untrained)
    if scale is not None and loaded.descriptor.scale != scale:
        raise EsrError(f"{loaded.label}: model is x{loaded.descriptor.scale}, but x{scale} was asked for")
    return loaded


def load_model(name_or_path: str | Path, scale: int | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """A trained eval-mode torch model carrying ``.descriptor``, from a zoo name or a checkpoint path.

    Args:
        name_or_path: a key of :data:`esr.zoo.ZOO`, or a ``.pth``/``.pt``/``.ckpt``/``.safetensors``
            file: esr's archs (official RLFN, official/spandrel DITN-Real and SPAN, esr checkpoints),
            then any architecture spandrel knows (:mod:`esr.spandrel_adapter`), bare or in a
            training framework's wrapper (``params_ema``, ``params``, ``state_dict``, ...).
        scale: if given, the model's scale must equal it (EsrError otherwise).
        device: where to put the model.

    The model maps float (N, C, H, W) in [0, 1] (C = ``descriptor.in_channels``: 3 for RGB) to
    (N, C', H*s, W*s) in [0, 1] (unclamped), any H, W (it pads to its own size requirements).
    For an arch without weights use :func:`esr.build_model`; for ONNX files and engines, :func:`open_model`.
    """
    loaded = open_model(name_or_path, scale)
    if loaded.kind != "module":
        raise EsrError(f"{loaded.label}: a {loaded.kind} file, not a torch model (use esr.loading.open_model "
                       f"and a backend that runs it)")
    return loaded.module.to(device)


# ----- files, cache and downloads -----

def cache_dir() -> Path:
    """Where downloaded weights go: ``$ESR_CACHE_DIR`` or ``$XDG_CACHE_HOME/esr`` (``~/.cache/esr``)."""
    if os.environ.get("ESR_CACHE_DIR"):
        return Path(os.environ["ESR_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "esr"


def weight_search_dirs() -> list[Path]:
    """Folders searched for ``NAME.pth`` before downloading, in order."""
    dirs = [Path(os.environ["ESR_WEIGHTS_DIR"])] if os.environ.get("ESR_WEIGHTS_DIR") else []
    return dirs + [EMBEDDED_WEIGHTS_DIR, cache_dir() / "weights"]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, dest: Path, sha256: str) -> Path:
    """Download ``url`` to ``dest`` with a progress bar; the checksum is verified before the final rename."""
    from tqdm import tqdm

    def fetch(tmp: str) -> None:
        with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=None) as bar:
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
        actual = sha256_of(Path(tmp))
        if actual != sha256:
            raise EsrError(f"{url}: sha256 mismatch (expected {sha256}, got {actual}); file discarded")

    try:
        return replace_atomically(dest, fetch)
    except OSError as err:
        raise EsrError(f"{url}: download failed ({err}); put {dest.name} in $ESR_WEIGHTS_DIR to work offline") from None


def resolve_zoo_weights(entry: ZooEntry) -> Path:
    """Local path of a zoo entry's weights, downloading into the cache if no local copy exists."""
    for folder in weight_search_dirs():
        candidate = folder / entry.filename
        if candidate.is_file():
            return candidate
    return download(entry.url, cache_dir() / "weights" / entry.filename, entry.sha256)


def verify_zoo_weights(entry: ZooEntry, path: Path) -> str:
    """``path``'s sha256 if it is the zoo's file for ``entry``; EsrError (exit 2) saying what to do otherwise.

    Hashing the 2 MB embedded file takes about 2 ms, under a tenth of loading it, so it is hashed
    at every load (the digest is the descriptor's ``source_sha256`` too) rather than cached.
    """
    actual = sha256_of(path)
    if actual != entry.sha256:
        if path.parent == EMBEDDED_WEIGHTS_DIR:
            fix = "the copy installed with esr is damaged: reinstall esr"
        elif path.parent == cache_dir() / "weights":
            fix = "delete it and esr downloads the release again"
        else:
            fix = f"replace it with the release file {entry.url}, or pass your own weights by path (--model FILE)"
        raise EsrError(f"{path}: not the zoo's {entry.name} weights (sha256 {actual}, expected {entry.sha256}); {fix}")
    return actual


def _first_line(err: BaseException, limit: int = 160) -> str:
    """The first line of ``err``'s message; a long one cut after its first sentence."""
    text = str(err).strip()
    line = text.splitlines()[0] if text else type(err).__name__
    end = line.find(". ", 40)
    return line[:end + 1] if len(line) > limit and end > 0 else line


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Read a checkpoint file safely.

    Returns:
        (state_dict, esr_meta): the unwrapped tensor dict and esr's arch metadata if present.
    """
    path = Path(path)
    if not path.is_file():
        raise EsrError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise EsrError(f"{path}: empty file (0 bytes)")
    reader = CHECKPOINT_READERS.get(path.suffix.lower(), read_torch_file)
    obj = reader(path)
    if not isinstance(obj, dict):
        raise EsrError(f"{path}: not a weights checkpoint (holds a {type(obj).__name__}, not a dict of tensors)")
    meta = obj.get(ESR_META_KEY)
    if meta is not None and not isinstance(meta, dict):
        raise EsrError(f"{path}: malformed {ESR_META_KEY} metadata (a {type(meta).__name__}, not a mapping)")
    state_dict = unwrap_state_dict(obj)
    if not state_dict:
        raise EsrError(f"{path}: not a weights checkpoint (no tensors found)")
    return state_dict, meta


def unwrap_state_dict(obj: dict) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint dict: under the first of :data:`WRAPPER_KEYS` (or a lone nested
    dict) if any, with a :data:`COMMON_PREFIXES` prefix shared by every key removed."""
    for key in WRAPPER_KEYS:
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    else:
        nested = [value for value in obj.values() if isinstance(value, dict)]
        if len(obj) == 1 and nested:
            obj = nested[0]
    state_dict = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    for prefix in COMMON_PREFIXES:
        if state_dict and all(key.startswith(prefix) for key in state_dict):
            state_dict = {key[len(prefix):]: value for key, value in state_dict.items()}
    return state_dict


def read_torch_file(path: Path) -> Any:
    """``torch.load(weights_only=True)`` on the CPU; any failure is one EsrError line naming the file."""
    try:
        with warnings.catch_warnings():  # torch warns about unusual pickle protocols: the result, or the error, says it
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = _unpickler_reason(err)
        with open(path, "rb") as handle:
            head = handle.read(4)
        if "global" in reason.lower() or head.startswith((b"\x80", b"PK\x03\x04")):  # a pickle, or torch's zip
            raise EsrError(f"{path}: not a weights checkpoint: it holds Python objects other than tensors, "
                           f"which esr never unpickles ({reason})") from None
        raise EsrError(f"{path}: corrupt or unreadable checkpoint ({reason})") from None
    except Exception as err:  # noqa: BLE001  (arbitrary bytes make torch raise KeyError, EOFError, zip errors...)
        raise EsrError(f"{path}: corrupt or unreadable checkpoint ({type(err).__name__}: {_first_line(err)})") from None


def _unpickler_reason(err: pickle.UnpicklingError) -> str:
    """The weights-only unpickler's own reason (``Unsupported global: GLOBAL io.open ...``), without torch's advice."""
    text = str(err)
    marker = "WeightsUnpickler error:"
    if marker in text:
        rest = text.split(marker, 1)[1].strip()
        reason = rest.split("\n", 1)[0].strip()
        return reason.split(". ", 1)[0].rstrip(".") if reason else _first_line(err)
    return _first_line(err)


def read_safetensors_file(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file (a format that holds tensors only); one EsrError line if corrupt."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as err:  # noqa: BLE001  (SafetensorError, OSError, ...)
        raise EsrError(f"{path}: corrupt or unreadable safetensors file ({_first_line(err)})") from None


CHECKPOINT_READERS: dict[str, Callable[[Path], Any]] = {".safetensors": read_safetensors_file}
"""File suffix -> reader returning the file's object (any other suffix: :func:`read_torch_file`)."""


def save_checkpoint(model: nn.Module, path: str | Path) -> Path:
    """Save ``{"params": state_dict, "esr_arch": {...}}`` atomically (temp file + rename); loadable by :func:`load_model`."""
    arch = type(model).__name__
    payload = {"params": model.state_dict(), ESR_META_KEY: {"arch": arch, "kwargs": dict(model.hyperparams)}}
    return replace_atomically(path, lambda tmp: torch.save(payload, tmp))


# ----- checkpoints -----

def detect_arch(state_dict: dict[str, torch.Tensor]) -> tuple[str, dict] | None:
    """(arch name, constructor kwargs) read from tensor shapes by esr's detectors, or None."""
    for name, detector in DETECTOR_REGISTRY.items():
        try:
            found = detector(state_dict)
        except (KeyError, IndexError, ValueError, TypeError, AttributeError) as err:
            raise ValueError(f"looks like {name} but is incomplete or malformed "
                             f"({type(err).__name__}: {_first_line(err)})") from None
        if found is not None:
            return found
    return None


def load_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> nn.Module:
    """``model`` with ``state_dict`` loaded strictly, in eval mode; EsrError naming ``source`` if it does not fit."""
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0] if lines else type(err).__name__
        raise EsrError(f"{source}: weights do not fit {type(model).__name__}: {detail}") from None
    return model.eval()


def build_loaded(arch: str, kwargs: dict, state_dict: dict[str, torch.Tensor], source: str) -> nn.Module:
    """``arch(**kwargs)`` (hyperparameters checked first, :mod:`esr.limits`) with ``state_dict`` loaded strictly."""
    return load_weights(build_arch(arch, kwargs, source), state_dict, source)


@CHECKPOINT_LOADERS.register(name="esr")
def esr_checkpoint_loader(state_dict: dict[str, torch.Tensor], path: Path) -> nn.Module | None:
    """esr's detectors (:data:`esr.registry.DETECTOR_REGISTRY`): RLFN, DITN and SPAN layouts."""
    try:
        found = detect_arch(state_dict)
    except ValueError as err:
        raise EsrError(f"{path}: {err}") from None
    return build_loaded(*found, state_dict, str(path)) if found is not None else None


CHECKPOINT_LOADERS.register(spandrel_loader, name="spandrel")


def esr_meta_arch(meta: dict[str, Any], path: Path) -> tuple[str, dict[str, Any]]:
    """(arch, kwargs) of an esr checkpoint's ``esr_arch`` metadata; EsrError if it is malformed."""
    arch, kwargs = meta.get("arch"), meta.get("kwargs")
    if not isinstance(arch, str) or not isinstance(kwargs, dict):
        raise EsrError(f"{path}: malformed {ESR_META_KEY} metadata (needs 'arch': a name and 'kwargs': a mapping)")
    return arch, dict(kwargs)


def run_checkpoint_loaders(state_dict: dict[str, torch.Tensor], path: Path) -> tuple[nn.Module, str] | None:
    """(the first module a :data:`CHECKPOINT_LOADERS` entry makes of ``state_dict``, that loader's name), or None.

    A loader's failure on a malformed state dict is one EsrError line naming the file and the loader
    (the traceback stays available with ``--debug``).
    """
    for name, loader in CHECKPOINT_LOADERS.items():
        try:
            model = loader(state_dict, path)
        except EsrError:
            raise
        except Exception as err:  # noqa: BLE001  (third-party loaders raise anything on malformed weights)
            raise EsrError(f"{path}: the {name} loader cannot load it ({type(err).__name__}: {_first_line(err)})") \
                from err
        if model is not None:
            return model, name
    return None


def load_checkpoint_file(text: str, scale: int | None, allow_untrained: bool) -> LoadedModel:
    path = Path(text)
    state_dict, meta = read_checkpoint(path)
    if meta is not None:
        model, loader = build_loaded(*esr_meta_arch(meta, path), state_dict, str(path)), "esr"
    else:
        found = run_checkpoint_loaders(state_dict, path)
        if found is None:
            sample = ", ".join(list(state_dict)[:4])
            raise EsrError(f"{path}: unrecognised architecture (first keys: {sample}); neither esr's archs "
                           f"({', '.join(ARCH_REGISTRY)}) nor the checkpoint loaders "
                           f"({', '.join(CHECKPOINT_LOADERS)}) know this layout")
        model, loader = found
    if scale is not None and model.descriptor.scale != scale:
        raise EsrError(f"{path}: checkpoint is x{model.descriptor.scale}, but x{scale} was asked for")
    model.descriptor = model.descriptor.replace(name=path.stem, source=f"checkpoint {path.name} (loader: {loader})",
                                                source_sha256=sha256_of(path), trained=True)
    return LoadedModel(model.descriptor, "module", module=model.eval(), path=path)


def load_zoo(key: str, scale: int | None, allow_untrained: bool) -> LoadedModel:
    entry = ZOO[key]
    if scale is not None and scale != entry.scale:
        raise EsrError(f"{key}: model is x{entry.scale}, but x{scale} was asked for")
    path = resolve_zoo_weights(entry)
    digest = verify_zoo_weights(entry, path)
    state_dict, _ = read_checkpoint(path)
    model = load_weights(build_model(entry.preset, entry.scale), state_dict, str(path))
    model.descriptor = model.descriptor.replace(name=entry.name, license=entry.license, source=entry.source,
                                                source_sha256=digest, trained=True)
    return LoadedModel(model.descriptor, "module", module=model.eval())


def load_preset(key: str, scale: int | None, allow_untrained: bool) -> LoadedModel:
    preset = PRESETS[key]
    if not allow_untrained:
        raise EsrError(f"{key}: an arch preset without trained weights; weights come from {preset.weights}")
    with torch.random.fork_rng():
        torch.manual_seed(UNTRAINED_SEED)
        model = build_model(key, scale or 4)
    model.descriptor = model.descriptor.replace(source=f"random weights (seed {UNTRAINED_SEED})", trained=False)
    return LoadedModel(model.descriptor, "module", module=model.eval())


# ----- ONNX files and engines -----

def graph_precision(graph) -> str:
    """int8 for a QDQ graph, fp16 for a half-precision input, else fp32 (for graphs without esr metadata)."""
    import onnx

    if any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in graph.graph.node):
        return "int8"
    if graph.graph.input and graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16:
        return "fp16"
    return "fp32"


def graph_input_dims(graph) -> list[int | str]:
    """Dims of the graph's single input (ints, or names for symbolic ones); EsrError-ready ValueError otherwise."""
    inputs = [i for i in graph.graph.input if i.name not in {t.name for t in graph.graph.initializer}]
    if len(inputs) != 1:
        raise ValueError(f"expected one NCHW image input, found {len(inputs)} inputs")
    rank = len(inputs[0].type.tensor_type.shape.dim)
    if rank != 4:
        raise ValueError(f"expected one NCHW image input, its input {inputs[0].name!r} has {rank} dimensions")
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in inputs[0].type.tensor_type.shape.dim]


def probe_onnx(graph, label: str) -> ModelDescriptor:
    """Descriptor of a graph without esr metadata: one zero input (its static size, else 64x64) gives the scale."""
    import numpy as np

    from esr.backends.sessions import ort_session

    _, channels, height, width = graph_input_dims(graph)
    channels = channels if isinstance(channels, int) else 3
    height, width = (height, width) if isinstance(height, int) and isinstance(width, int) else (64, 64)
    session = ort_session(graph, threads=1, label=label)
    try:
        out = session.run(None, {session.get_inputs()[0].name: np.zeros((1, channels, height, width), np.float32)})[0]
    except Exception as err:  # noqa: BLE001  (onnxruntime's own exception types)
        raise EsrError(f"{label}: onnxruntime cannot run it on a 1x{channels}x{height}x{width} input "
                       f"({_first_line(err)})") from None
    out = np.asarray(out)
    scale = out.shape[-1] // width if out.ndim == 4 else 0
    if scale < 1 or out.shape[-2] != height * scale or out.shape[-1] != width * scale or out.shape[1] < 1:
        raise EsrError(f"{label}: output {tuple(out.shape)} for input 1x{channels}x{height}x{width} "
                       "is not an upscaled image")
    descriptor = ModelDescriptor(
        name=Path(label).stem, arch="unknown", scale=int(scale), in_channels=channels, out_channels=int(out.shape[1]),
        pads_inside=False, source=f"ONNX file {Path(label).name} (no esr metadata)", trained=True,
        precision=graph_precision(graph),
    )
    warnings.warn(f"{label}: no esr metadata (not written by esr); probed it once: x{descriptor.scale}, "
                  f"{descriptor.in_channels} -> {descriptor.out_channels} channels, size limits unknown", stacklevel=2)
    return descriptor


def describe_graph(graph, label: str) -> ModelDescriptor:
    """The descriptor in ``graph``'s esr metadata, or (foreign graph) :func:`probe_onnx`'s with a warning."""
    try:
        graph_input_dims(graph)
        descriptor = read_metadata(graph)
    except ValueError as err:
        raise EsrError(f"{label}: {err}") from None
    return descriptor if descriptor is not None else probe_onnx(graph, label)


def load_onnx_file(text: str, scale: int | None, allow_untrained: bool) -> LoadedModel:
    import onnx

    path = Path(text)
    if not path.is_file():
        raise EsrError(f"{path}: no such file")
    try:
        graph = onnx.load(str(path))
    except Exception as err:  # onnx raises protobuf/OS errors for bad files
        raise EsrError(f"{path}: cannot read ONNX model ({type(err).__name__}: {_first_line(err)})") from None
    return LoadedModel(describe_graph(graph, str(path)), "onnx", path=path)


def engine_sidecar(path: Path) -> Path:
    """``model.engine`` -> ``model.engine.json`` (written by ``esr export --trt``)."""
    return path.with_name(path.name + ".json")


def load_engine_file(text: str, scale: int | None, allow_untrained: bool) -> LoadedModel:
    import json

    path = Path(text)
    if not path.is_file():
        raise EsrError(f"{path}: no such file")
    sidecar = engine_sidecar(path)
    descriptor = None
    if sidecar.is_file():
        try:
            descriptor = ModelDescriptor.from_metadata(json.loads(sidecar.read_text()).get("descriptor", {}))
        except (ValueError, AttributeError) as err:
            raise EsrError(f"{sidecar}: unreadable engine sidecar ({_first_line(err)})") from None
    if descriptor is None:
        descriptor = probe_engine(path)
    return LoadedModel(descriptor, "engine", path=path)


def probe_engine(path: Path) -> ModelDescriptor:
    """Descriptor of an engine without a sidecar: one zero input through TensorRT gives the scale (CUDA only)."""
    from esr.backends.trt_backend import load_trt_runner

    runner = load_trt_runner()(str(path), device="cuda")
    height, width = runner.profile_min_hw
    scale = int(runner(torch.zeros(1, 3, height, width, device="cuda")).shape[-1] // width)
    warnings.warn(f"{path}: no sidecar {engine_sidecar(path).name}; probed it once: x{scale}", stacklevel=2)
    return ModelDescriptor(name=path.stem, arch="unknown", scale=scale, pads_inside=False,
                           source=f"TensorRT engine {path.name} (no sidecar)", trained=True)


def _is_checkpoint(text: str) -> bool:
    return Path(text).is_file() or text.lower().endswith(CHECKPOINT_SUFFIXES)


def _names(table: dict) -> Callable[[str], bool]:
    return lambda text: text in table and not Path(text).exists()


for _source in (
    ModelSource("zoo", _names(ZOO), load_zoo),
    ModelSource("preset", _names(PRESETS), load_preset),
    ModelSource("onnx", lambda text: text.lower().endswith(ONNX_SUFFIXES), load_onnx_file),
    ModelSource("engine", lambda text: text.lower().endswith(ENGINE_SUFFIXES), load_engine_file),
    ModelSource("checkpoint", _is_checkpoint, load_checkpoint_file),
):
    MODEL_SOURCES.register(_source, name=_source.name)
