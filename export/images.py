"""Real images for parity checks and INT8 calibration (RGB float NCHW in [0, 1])."""
from __future__ import annotations

from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def image_files(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def read_rgb(path: str | Path) -> np.ndarray:
    """(1, 3, H, W) float32 RGB in [0, 1]; ValueError naming the file if it cannot be decoded."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path}: not a readable image")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])


def fit(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Top-left ``height x width`` crop of ``image`` (1, 3, H, W), reflect-padded where it is smaller."""
    crop = image[:, :, :height, :width]
    pad_h, pad_w = height - crop.shape[2], width - crop.shape[3]
    if pad_h or pad_w:
        crop = np.pad(crop, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), mode="symmetric")
    return np.ascontiguousarray(crop)
