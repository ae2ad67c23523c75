"""``esr.upscale``: one call from an image in memory to the upscaled image.

    import esr
    big = esr.upscale(pixels)                  # numpy (H, W[, 3|4]) uint8/uint16/float -> same kind
    big = esr.upscale(pil_image, model="rlfn_x4", outscale=2)

Upscalers are cached per (model, options), so calling it in a loop loads the model once.
"""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from esr.upscaler import Upscaler

PIL_MODES = {"RGB": "RGB", "RGBA": "RGBA", "L": "L", "LA": "LA", "I;16": "I;16", "P": None, "1": "L",
             "CMYK": "RGB", "YCbCr": "RGB", "I": "I;16", "PA": "RGBA", "RGBX": "RGB"}
"""Pillow mode -> the mode the result has (``None``: RGBA if the palette is transparent, else RGB)."""


@lru_cache(maxsize=4)
def _cached_upscaler(model: str | None, backend: str, device: str | None, precision: str | None,
                     tile: int, tile_pad: int, outscale: float | None, threads: int, tile_streams: int) -> "Upscaler":
    from esr.upscale_batch import BatchOptions, build_upscaler

    options = BatchOptions(inputs=[], outdir=".", model=model, backend=backend, device=device, precision=precision,
                           tile=tile, tile_pad=tile_pad, outscale=outscale, threads=threads, tile_streams=tile_streams)
    return build_upscaler(options)


def get_upscaler(model: Any = None, *, backend: str = "auto", device: str | None = None,
                 precision: str | None = "auto", tile: int = 0, tile_pad: int = 16, outscale: float | None = None,
                 threads: int = 0, tile_streams: int = 1) -> "Upscaler":
    """The :class:`esr.upscaler.Upscaler` ``esr upscale`` would build for these options (cached).

    ``model``: a zoo name, preset-free checkpoint or ``.onnx`` path (None: the embedded default),
    or an :class:`esr.upscaler.Upscaler` (returned as is). ``backend``/``precision`` default to
    ``auto`` (measured once per model and machine, cached; see docs/precision.md).
    """
    from esr.upscaler import Upscaler

    if isinstance(model, Upscaler):
        return model
    return _cached_upscaler(None if model is None else str(model), backend, device, precision, tile, tile_pad,
                            outscale, threads, tile_streams)


def _pil_to_array(image: Any) -> tuple[np.ndarray, str]:
    mode = PIL_MODES.get(image.mode)
    if mode is None:
        mode = "RGBA" if image.mode in ("P", "PA") and "transparency" in image.info else "RGB"
    converted = image if image.mode == mode else image.convert(mode)
    pixels = np.asarray(converted)
    return (pixels.astype(np.uint16) if mode == "I;16" else pixels), mode


def upscale(image: Any, model: Any = None, **options: Any) -> Any:
    """Upscale one image held in memory.

    Args:
        image: a numpy array (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA, dtype uint8, uint16, or
            float32/float64 with values in [0, 1]; or a PIL image (modes L, LA, RGB, RGBA, I;16, P, CMYK...).
        model: zoo name, checkpoint or ONNX path, or an Upscaler (default: the embedded RLFN-S x4).
        options: ``backend``, ``device``, ``precision``, ``tile``, ``tile_pad``, ``tile_streams``, ``outscale``,
            ``threads`` as for ``esr upscale``.

    Returns:
        The same kind as ``image``: an array of the same layout and dtype, (round(H*f), round(W*f)[, C]),
        or a PIL image of the same mode (palette and CMYK images come back as RGB/RGBA, 1-bit as L).
    """
    upscaler = get_upscaler(model, **options)
    if isinstance(image, np.ndarray):
        return upscaler.upscale_array(image)
    try:
        from PIL import Image as PILImage
    except ImportError:  # pragma: no cover - Pillow is a dependency
        PILImage = None
    if PILImage is not None and isinstance(image, PILImage.Image):
        pixels, mode = _pil_to_array(image)
        out = upscaler.upscale_array(pixels)
        result = PILImage.fromarray(out)
        return result if result.mode == mode else result.convert(mode)
    raise TypeError(f"esr.upscale takes a numpy array or a PIL image, not {type(image).__name__}")
