"""Y-channel PSNR/SSIM (the protocol of every SR paper), MATLAB-compatible bicubic, and the
fidelity PSNR of a changed model's outputs against the original's.

The first two are BasicSR's own functions, so ``esr eval`` and BasicSR's training validation
report identical numbers.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike

from esr.compat import import_basicsr


def fidelity_psnr(references: Sequence[ArrayLike], outputs: Sequence[ArrayLike]) -> float:
    """PSNR (dB, peak 1) of ``outputs`` against ``references`` (pairs of float images of any equal
    shapes, numpy arrays or CPU tensors), each clipped to [0, 1]; the MSE is averaged over the pairs.

    inf when they are equal: a rewrite or quantisation that changes nothing.
    """
    errors = [np.mean((np.clip(np.asarray(a, np.float64), 0, 1) - np.clip(np.asarray(b, np.float64), 0, 1)) ** 2)
              for a, b in zip(references, outputs)]
    mse = float(np.mean(errors))
    return float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))


BT601_Y = np.array([65.481, 128.553, 24.966]) / 255.0
"""RGB in [0, 1] -> the BT.601 luma ``Y`` the protocol scores (BasicSR's ``rgb2ycbcr``, offset 16/255 dropped)."""


def fidelity_psnr_y(references: Sequence[ArrayLike], outputs: Sequence[ArrayLike]) -> float:
    """:func:`fidelity_psnr` on the BT.601 Y channel, the colour space of the Y-PSNR protocol
    (:func:`psnr_ssim_y`): pairs of float RGB images (..., 3, H, W), each clipped to [0, 1] before Y is
    taken; peak 1, so a Y error of one grey level in 255 at every pixel reads 48.1 dB. Other channel
    counts (grey, RGBA) fall back to :func:`fidelity_psnr` over all channels.

    Unlike the protocol it neither rounds to uint8 nor crops a border: it measures a runtime's change of
    the model's output, which is far below one grey level.
    """
    def luma(image: ArrayLike) -> np.ndarray:
        values = np.clip(np.asarray(image, np.float64), 0, 1)
        return np.tensordot(BT601_Y, np.moveaxis(values, -3, 0), axes=1)

    if any(np.shape(a)[-3:-2] != (3,) for a in references):
        return fidelity_psnr(references, outputs)
    return fidelity_psnr([luma(a) for a in references], [luma(b) for b in outputs])


def psnr_ssim_y(sr_bgr: np.ndarray, hr_bgr: np.ndarray, crop_border: int) -> tuple[float, float]:
    """PSNR (dB) and SSIM on the BT.601 Y channel, ``crop_border`` pixels removed per side.

    Args:
        sr_bgr, hr_bgr: uint8 (H, W, 3) BGR images of equal size (rounded to uint8 first,
            as the protocol requires).
    """
    import_basicsr()
    from basicsr.metrics import calculate_ssim

    ssim = calculate_ssim(sr_bgr, hr_bgr, crop_border=crop_border, input_order="HWC", test_y_channel=True)
    return psnr_y(sr_bgr, hr_bgr, crop_border), float(ssim)


def psnr_y(sr_bgr: np.ndarray, hr_bgr: np.ndarray, crop_border: int) -> float:
    """The PSNR half of :func:`psnr_ssim_y` (SSIM costs most of its time)."""
    import_basicsr()
    from basicsr.metrics import calculate_psnr

    return float(calculate_psnr(sr_bgr, hr_bgr, crop_border=crop_border, input_order="HWC", test_y_channel=True))


def matlab_bicubic_downscale(image: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB ``imresize(img, 1/scale, 'bicubic')`` (antialiased) of a uint8 (H, W, C) image.

    H and W must be multiples of ``scale`` (crop first with :func:`mod_crop`). Returns uint8.
    """
    import_basicsr()
    from basicsr.utils.matlab_functions import imresize

    small = imresize(image.astype(np.float64) / 255.0, 1.0 / scale)
    return np.clip(np.round(small * 255.0), 0, 255).astype(np.uint8)


def mod_crop(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop (H, W, ...) so H and W are multiples of ``scale`` (bottom/right rows go)."""
    h, w = image.shape[:2]
    return image[: h - h % scale, : w - w % scale]
