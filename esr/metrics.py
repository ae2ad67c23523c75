"""Y-channel PSNR/SSIM (the protocol of every SR paper) and MATLAB-compatible bicubic.

Both are BasicSR's own functions, so ``esr eval`` and BasicSR's training validation
report identical numbers.
"""
from __future__ import annotations

import numpy as np

from esr.compat import import_basicsr


def psnr_ssim_y(sr_bgr: np.ndarray, hr_bgr: np.ndarray, crop_border: int) -> tuple[float, float]:
    """PSNR (dB) and SSIM on the BT.601 Y channel, ``crop_border`` pixels removed per side.

    Args:
        sr_bgr, hr_bgr: uint8 (H, W, 3) BGR images of equal size (rounded to uint8 first,
            as the protocol requires).
    """
    import_basicsr()
    from basicsr.metrics import calculate_psnr, calculate_ssim

    psnr = calculate_psnr(sr_bgr, hr_bgr, crop_border=crop_border, input_order="HWC", test_y_channel=True)
    ssim = calculate_ssim(sr_bgr, hr_bgr, crop_border=crop_border, input_order="HWC", test_y_channel=True)
    return float(psnr), float(ssim)


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
