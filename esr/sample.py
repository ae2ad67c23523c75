"""The real-image sample shipped with esr (``esr/data/sample_lr.png``, CC0: see ``esr/data/LICENSE-sample.txt``).

A 128x128 RGB crop of a photograph (a cup, saucer and spoon with highlights, on wood grain) at the
sharpness of a low-resolution SR input. ``--backend auto`` checks every candidate's output
against fp32 on it; commands that need one real image without a dataset can use it too.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

SAMPLE_PATH = Path(__file__).resolve().parent / "data" / "sample_lr.png"
SAMPLE_LICENSE = SAMPLE_PATH.parent / "LICENSE-sample.txt"


def sample_rgb() -> np.ndarray:
    """The sample as (128, 128, 3) uint8 RGB."""
    import cv2

    image = cv2.imread(str(SAMPLE_PATH), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"{SAMPLE_PATH}: the package's sample image is missing (reinstall esr)")
    return np.ascontiguousarray(image[..., ::-1])


def sample_batch() -> np.ndarray:
    """The sample as a (1, 3, 128, 128) float32 batch in [0, 1]."""
    return np.ascontiguousarray(sample_rgb().transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
