"""Decode and encode images for ``esr upscale``, keeping bit depth, gray and alpha.

Decoding gives an :class:`Image`: ``color`` (H, W, 1) gray or (H, W, 3) RGB and an
optional ``alpha`` (H, W), both uint8 or uint16 as stored in the file (never guessed
from pixel values). Palette images become RGB (+ alpha if transparent), CMYK becomes
RGB, EXIF orientation is applied. Pixels are decoded by OpenCV; Pillow reads only
the header (colour mode, EXIF orientation). Every failure is an :class:`EsrError`
naming the file. Writing goes to a temp file in the output folder, then ``os.replace``.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from esr.errors import EsrError
from esr.fileio import write_output_bytes

READ_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
"""Extensions collected when a folder is given as input."""

WRITE_EXTENSIONS = {"png": ".png", "jpg": ".jpg", "webp": ".webp"}
"""``--ext`` value -> file extension (``same`` keeps the input's)."""

SIXTEEN_BIT_SUFFIXES = (".png", ".tif", ".tiff")
ALPHA_SUFFIXES = (".png", ".webp", ".tif", ".tiff")
GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N")
EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class Image:
    """Decoded pixels. ``color``: (H, W, 1) or (H, W, 3) RGB; ``alpha``: (H, W) or None; same dtype (uint8/uint16)."""

    color: np.ndarray
    alpha: np.ndarray | None = None

    @property
    def dtype(self) -> np.dtype:
        return self.color.dtype

    @property
    def gray(self) -> bool:
        return self.color.shape[2] == 1

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.color.shape[0], self.color.shape[1]


def _header(data: bytes, path: Path) -> tuple[str, int]:
    """(Pillow colour mode, EXIF orientation 1..8) from the header; EsrError if it is not an image."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # only the header is read: Pillow's pixel-count guard does not apply
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(data)) as handle:
                mode = handle.mode
                orientation = handle.getexif().get(EXIF_ORIENTATION, 1)
    except PILImage.DecompressionBombError:
        return "", 1  # over Pillow's limit (> 179 MP): decode with OpenCV, no gray/EXIF hints
    except UnidentifiedImageError:
        raise EsrError(f"{path}: not an image (unrecognised format)", exit_code=1) from None
    except (OSError, ValueError, SyntaxError) as err:
        raise EsrError(f"{path}: truncated or corrupt image ({err})", exit_code=1) from None
    return mode, orientation if orientation in range(1, 9) else 1


def apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip (H, W, ...) ``array`` so that EXIF ``orientation`` (1..8) becomes 1 (upright)."""
    transposed = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
                  5: lambda a: a.swapaxes(0, 1), 6: lambda a: a.swapaxes(0, 1)[:, ::-1],
                  7: lambda a: a.swapaxes(0, 1)[::-1, ::-1], 8: lambda a: a.swapaxes(0, 1)[::-1]}
    return np.ascontiguousarray(transposed[orientation](array)) if orientation in transposed else array


def read_image(path: str | Path) -> Image:
    """Decode ``path`` (PNG, JPEG, WebP, BMP, TIFF) into an :class:`Image`.

    Raises EsrError (exit code 1) for a missing, empty, truncated, corrupt or non-image file,
    and for sample types other than 8/16-bit integers.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise EsrError(f"{path}: cannot read ({err.strerror or err})", exit_code=1) from None
    if not data:
        raise EsrError(f"{path}: empty file (0 bytes)", exit_code=1)
    mode, orientation = _header(data, path)
    try:
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as err:
        raise EsrError(f"{path}: cannot decode ({str(err).strip().splitlines()[-1]})", exit_code=1) from None
    if decoded is None:
        raise EsrError(f"{path}: truncated or corrupt image data", exit_code=1)
    if decoded.dtype not in (np.uint8, np.uint16):
        raise EsrError(f"{path}: unsupported sample type {decoded.dtype} (8- or 16-bit integers only)", exit_code=1)
    decoded = apply_orientation(decoded, orientation)
    if decoded.ndim == 2:
        return Image(decoded[..., None])
    channels = decoded.shape[2]
    alpha = decoded[..., 3] if channels == 4 else None
    if mode in GRAY_MODES:
        return Image(np.ascontiguousarray(decoded[..., :1]), None if alpha is None else np.ascontiguousarray(alpha))
    if channels == 1:
        return Image(decoded)
    rgb = np.ascontiguousarray(decoded[..., 2::-1])
    return Image(rgb, None if alpha is None else np.ascontiguousarray(alpha))


def output_suffix(ext: str, input_path: Path) -> str:
    """File extension for ``--ext`` (``png``, ``jpg``, ``webp`` or ``same`` as ``input_path``)."""
    if ext == "same":
        suffix = input_path.suffix.lower()
        return suffix if suffix in READ_SUFFIXES else ".png"
    return WRITE_EXTENSIONS[ext]


def fit_to_format(image: Image, suffix: str) -> Image:
    """Drop what ``suffix``'s format cannot store: 16-bit -> 8-bit (rounded) outside PNG/TIFF; alpha outside PNG/WebP/TIFF."""
    if image.dtype == np.uint16 and suffix not in SIXTEEN_BIT_SUFFIXES:
        def to8(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)

        image = Image(to8(image.color), to8(image.alpha))
    if image.alpha is not None and suffix not in ALPHA_SUFFIXES:
        image = replace(image, alpha=None)
    return image


def encode_image(image: Image, suffix: str, quality: int = 95) -> bytes:
    """Encode ``image`` for ``suffix`` (.png/.jpg/.jpeg/.webp/.bmp/.tif/.tiff).

    ``quality`` (1..100) applies to JPEG and WebP; WebP at 100 is lossless. 16-bit and
    alpha are kept where the format stores them (see :func:`fit_to_format`).
    """
    image = fit_to_format(image, suffix)
    if image.gray:  # OpenCV writes 1, 3 or 4 channels: gray + alpha goes out as RGBA
        color = image.color if image.alpha is None else np.repeat(image.color, 3, axis=2)
    else:
        color = image.color[..., ::-1]
    array = color if image.alpha is None else np.concatenate([color, image.alpha[..., None]], axis=2)
    array = np.ascontiguousarray(array)
    params: list[int] = []
    if suffix in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    elif suffix == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, 101 if quality >= 100 else int(quality)]
    ok, buffer = cv2.imencode(suffix, array, params)
    if not ok:
        raise EsrError(f"cannot encode a {array.shape} {array.dtype} image as {suffix}", exit_code=1)
    return buffer.tobytes()


def write_atomic(data: bytes, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` by :func:`esr.fileio.write_output_bytes` (temp file in the same folder,
    then rename): ``path`` is either untouched or complete.

    With ``overwrite=False`` an existing ``path`` is an EsrError (exit code 1: one file of a batch),
    also when another process creates it meanwhile; so is any OS error, named.
    """
    return write_output_bytes(path, data, overwrite=overwrite, exit_code=1)


def write_image(image: Image, path: str | Path, quality: int = 95, overwrite: bool = False) -> Path:
    """Encode ``image`` by ``path``'s extension and write it atomically (see :func:`write_atomic`)."""
    path = Path(path)
    return write_atomic(encode_image(image, path.suffix.lower(), quality), path, overwrite)
