"""Y-PSNR/SSIM of a model on a benchmark folder (the protocol of ../shared/design/reference.md)."""
from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch.nn as nn

from esr.backends import Backend, create_backend
from esr.errors import EsrError
from esr.image_io import DEFAULT_MAX_PIXELS, read_checked
from esr.upscaler import Upscaler
from esr.metrics import matlab_bicubic_downscale, mod_crop, psnr_ssim_y

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class EvalPair:
    """One HR image and its LR counterpart (None: made by MATLAB bicubic on the fly)."""

    name: str
    hr_path: Path
    lr_path: Path | None


def find_pairs(data_dir: str | Path, scale: int) -> list[EvalPair]:
    """Pairs from ``DIR/HR`` + ``DIR/LR_bicubic/X{s}/{stem}x{s}.png``, or from a folder of HR images only."""
    data_dir = Path(data_dir)
    hr_dir = data_dir / "HR" if (data_dir / "HR").is_dir() else data_dir
    lr_dir = data_dir / "LR_bicubic" / f"X{scale}"
    hr_files = sorted(p for p in hr_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if hr_dir.is_dir() else []
    if not hr_files:
        raise EsrError(f"{data_dir}: no HR images found (expected HR/*.png or a folder of images)")
    pairs = []
    for hr_path in hr_files:
        lr_path = lr_dir / f"{hr_path.stem}x{scale}.png"
        pairs.append(EvalPair(hr_path.stem, hr_path, lr_path if lr_path.is_file() else None))
    return pairs


def read_bgr_uint8(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """(H, W, 3) uint8 BGR; EsrError (exit 1) naming the file if it cannot be decoded or its header
    says it is over ``max_pixels`` (0: no limit; checked before decoding)."""
    data, _ = read_checked(path, max_pixels)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise EsrError(f"{path}: cannot decode image", exit_code=1)
    return image


@dataclass(frozen=True)
class ImageScore:
    name: str
    psnr_y: float
    ssim_y: float


def evaluate(model: nn.Module | Backend, data_dir: str | Path, scale: int | None = None,
             progress: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS) -> dict:
    """Run ``model`` (a module with a descriptor, run by the torch backend on its device, or any
    :mod:`esr.backends` backend) on every LR image of ``data_dir`` and score it against the HR.
    Whole images are upscaled in one pass (no tiling), as the reference protocol does.
    ``scale``: the model's (from its descriptor) unless given; a different one is an EsrError.
    ``max_pixels``: largest image (width x height) decoded, from its header (0: no limit).

    Returns:
        ``{"dataset", "scale", "psnr_y", "ssim_y", "images": [{"name", "psnr_y", "ssim_y"}, ...]}``
        (means over images; PSNR in dB).
    """
    from tqdm import tqdm

    if isinstance(model, nn.Module):
        model = create_backend("torch", model, device=next(model.parameters()).device.type)
    if scale is not None and scale != model.descriptor.scale:
        raise EsrError(f"{model.descriptor.name}: model is x{model.descriptor.scale}, but x{scale} was asked for")
    scale = model.descriptor.scale
    pairs = find_pairs(data_dir, scale)
    upscaler = Upscaler(model, tile=0, memory_budget=sys.maxsize)
    scores = []
    for pair in tqdm(pairs, desc=f"eval x{scale}", disable=None if progress else True, leave=False):
        hr = mod_crop(read_bgr_uint8(pair.hr_path, max_pixels), scale)
        if min(hr.shape[:2]) <= 2 * scale:  # the score crops `scale` pixels at each border
            raise EsrError(f"{pair.hr_path}: HR image too small to score at x{scale} "
                           f"(needs more than {2 * scale} pixels per side)", exit_code=1)
        lr = read_bgr_uint8(pair.lr_path, max_pixels) if pair.lr_path else matlab_bicubic_downscale(hr, scale)
        if lr.shape[0] * scale != hr.shape[0] or lr.shape[1] * scale != hr.shape[1]:
            raise EsrError(f"{pair.lr_path}: LR size {lr.shape[1]}x{lr.shape[0]} is not HR/{scale}", exit_code=1)
        sr = upscaler.upscale_array(np.ascontiguousarray(lr[..., ::-1]))[..., ::-1]
        psnr, ssim = psnr_ssim_y(np.ascontiguousarray(sr), hr, crop_border=scale)
        scores.append(ImageScore(pair.name, psnr, ssim))
    return {
        "dataset": Path(data_dir).name,
        "scale": scale,
        "psnr_y": float(np.mean([s.psnr_y for s in scores])),
        "ssim_y": float(np.mean([s.ssim_y for s in scores])),
        "images": [asdict(s) for s in scores],
    }
