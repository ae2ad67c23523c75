"""Turn a zoo name or a checkpoint path into an eval-mode model.

Checkpoints are read with ``torch.load(weights_only=True)`` (no arbitrary code runs),
unwrapped (``params_ema`` > ``params`` > ``state_dict`` > ``model``, ``module.`` stripped)
and matched to an arch by the detectors in :data:`esr.registry.DETECTOR_REGISTRY`,
which read hyperparameters from tensor shapes. Every failure is an :class:`EsrError`
whose message is one line naming the file.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

import esr.archs  # noqa: F401  (registers archs and detectors)
from esr.archs.presets import build_model
from esr.errors import EsrError
from esr.fileio import replace_atomically
from esr.registry import ARCH_REGISTRY, DETECTOR_REGISTRY
from esr.zoo import ZOO, ZooEntry

EMBEDDED_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model")
ESR_META_KEY = "esr_arch"
"""Checkpoints written by esr carry ``{"esr_arch": {"arch": name, "kwargs": {...}}}`` beside the weights."""


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
    """Download ``url`` to ``dest`` with a progress bar; verify the checksum before the final rename."""
    from tqdm import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name) as bar:
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
        actual = sha256_of(tmp)
        if actual != sha256:
            raise EsrError(f"{url}: sha256 mismatch (expected {sha256}, got {actual}); file discarded")
        os.replace(tmp, dest)
        return dest
    except OSError as err:
        raise EsrError(f"{url}: download failed ({err}); put {dest.name} in $ESR_WEIGHTS_DIR to work offline") from None
    finally:
        tmp.unlink(missing_ok=True)


def resolve_zoo_weights(entry: ZooEntry) -> Path:
    """Local path of a zoo entry's weights, downloading into the cache if no local copy exists."""
    for folder in weight_search_dirs():
        candidate = folder / entry.filename
        if candidate.is_file():
            return candidate
    return download(entry.url, cache_dir() / "weights" / entry.filename, entry.sha256)


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
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise EsrError(f"{path}: not a weights checkpoint: it holds Python objects other than tensors ({reason})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise EsrError(f"{path}: corrupt or unreadable checkpoint ({reason})") from None
    if not isinstance(obj, dict):
        raise EsrError(f"{path}: not a weights checkpoint (holds a {type(obj).__name__}, not a dict of tensors)")
    meta = obj.get(ESR_META_KEY) if isinstance(obj.get(ESR_META_KEY), dict) else None
    for key in WRAPPER_KEYS:
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    state_dict = {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state_dict:
        raise EsrError(f"{path}: not a weights checkpoint (no tensors found)")
    return state_dict, meta


def detect_arch(state_dict: dict[str, torch.Tensor], source: str = "state dict") -> tuple[str, dict]:
    """(arch name, constructor kwargs) from tensor shapes; EsrError if no detector recognises it."""
    for _, detector in DETECTOR_REGISTRY.items():
        found = detector(state_dict)
        if found is not None:
            return found
    sample = ", ".join(list(state_dict)[:4])
    raise EsrError(f"{source}: unrecognised architecture (first keys: {sample}); known: {', '.join(ARCH_REGISTRY)}")


def model_from_checkpoint(path: str | Path, scale: int | None = None) -> nn.Module:
    """Build and load a model from a checkpoint file; ``scale`` (if given) must match the file's."""
    state_dict, meta = read_checkpoint(path)
    if meta is not None:
        arch, kwargs = meta["arch"], dict(meta["kwargs"])
    else:
        arch, kwargs = detect_arch(state_dict, str(path))
    if scale is not None and kwargs.get("upscale") != scale:
        raise EsrError(f"{path}: checkpoint is x{kwargs.get('upscale')}, but x{scale} was asked for")
    model = ARCH_REGISTRY.get(arch)(**kwargs)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise EsrError(f"{path}: weights do not fit {arch}{kwargs}: {' '.join(first[1:2]) or first[0]}") from None
    return model.eval()


def load_model(name_or_path: str | Path, scale: int | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """An eval-mode model from a zoo name (``rlfn_s_x4``) or a checkpoint path.

    Args:
        name_or_path: a key of :data:`esr.zoo.ZOO`, or a ``.pth`` file (official RLFN,
            official/spandrel DITN-Real, BasicSR ``params``/``params_ema`` wrappers, esr checkpoints).
        scale: if given, the model's scale must equal it (EsrError otherwise).
        device: where to put the model.

    The model maps RGB float (N, 3, H, W) in [0, 1] to (N, 3, H*s, W*s) in [0, 1] (unclamped).
    """
    key = str(name_or_path)
    if key in ZOO and not Path(key).exists():
        entry = ZOO[key]
        if scale is not None and scale != entry.scale:
            raise EsrError(f"{key}: model is x{entry.scale}, but x{scale} was asked for")
        path = resolve_zoo_weights(entry)
        state_dict, _ = read_checkpoint(path)
        model = build_model(entry.preset, entry.scale)
        model.load_state_dict(state_dict, strict=True)
        return model.eval().to(device)
    if not Path(key).exists() and not key.endswith((".pth", ".pt", ".ckpt")):
        raise EsrError(f"{key}: neither a file nor a zoo model (zoo: {', '.join(ZOO)})")
    return model_from_checkpoint(key, scale).to(device)


def save_checkpoint(model: nn.Module, path: str | Path) -> Path:
    """Save ``{"params": state_dict, "esr_arch": {...}}`` atomically (temp file + rename); loadable by :func:`load_model`."""
    arch = type(model).__name__
    payload = {"params": model.state_dict(), ESR_META_KEY: {"arch": arch, "kwargs": dict(model.hyperparams)}}
    return replace_atomically(path, lambda tmp: torch.save(payload, tmp))
