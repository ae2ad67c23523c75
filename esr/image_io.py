"""Decode and encode images for ``esr upscale``, keeping bit depth, gray, alpha and the ICC profile.

Decoding gives an :class:`Image`: ``color`` (H, W, 1) gray or (H, W, 3) RGB, an optional
``alpha`` (H, W), both uint8 or uint16 as stored in the file (never guessed from pixel
values), and the file's ICC profile. Palette images become RGB (+ alpha if transparent),
CMYK becomes RGB (no alpha; its CMYK profile is dropped), EXIF orientation is applied.
Pixels are decoded by OpenCV; Pillow reads only the header (size, colour mode, EXIF
orientation, ICC profile). An image over ``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS`)
is refused from its header, before anything is decoded. Every failure is an
:class:`EsrError` naming the file. Encoding is :mod:`esr.image_encode`; writing goes to a
temp file in the output folder, then a rename (:mod:`esr.fileio`).
"""
from __future__ import annotations

import io
import threading
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from esr.errors import EsrError
from esr.fileio import write_output_bytes
from esr.image_encode import PNG_SIGNATURE, encode

READ_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
"""Extensions collected when a folder is given as input."""

WRITE_EXTENSIONS = {"png": ".png", "jpg": ".jpg", "webp": ".webp"}
"""``--ext`` value -> file extension (``same`` keeps the input's)."""

SIXTEEN_BIT_SUFFIXES = (".png", ".tif", ".tiff")
ALPHA_SUFFIXES = (".png", ".webp", ".tif", ".tiff")
GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N")
EXIF_ORIENTATION = 0x0112

DEFAULT_MAX_PIXELS = 100_000_000
"""Largest input (width x height) decoded unless ``--max-pixels`` says otherwise (0 = no limit).

100 MP covers every camera sensor in common use (61 MP full frame, 100-102 MP medium format)
while a x4 upscale of it already needs 4.8 GB for the 8-bit RGB output alone; Pillow's own
guard refuses from 179 MP. It stops the small files that decode into gigabytes (a 1 MB PNG of
20000 x 20000 is 400 MP, 1.2 GB decoded, 19 GB at x4)."""


@dataclass(frozen=True)
class Image:
    """Decoded pixels. ``color``: (H, W, 1) or (H, W, 3) RGB; ``alpha``: (H, W) or None; same dtype (uint8/uint16).

    ``icc``: the ICC profile of the file it came from (kept when written), or None.
    """

    color: np.ndarray
    alpha: np.ndarray | None = None
    icc: bytes | None = None

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


@dataclass(frozen=True)
class Header:
    """What Pillow reads from a file's header: colour mode, (width, height), EXIF orientation, ICC profile."""

    mode: str
    size: tuple[int, int]
    orientation: int = 1
    icc: bytes | None = None


_PILLOW_GUARD = threading.Lock()


def may_hold_exif(data: bytes) -> bool:
    """False for a PNG without an ``eXIf`` chunk: Pillow's ``getexif`` would decode all its pixels to look for
    one after them (5 ms for a 500x480 PNG); other formats keep EXIF in their header."""
    return data[:8] != PNG_SIGNATURE or b"eXIf" in data


def _open_header(data: bytes, path: Path, max_pixels: int) -> Header:
    from PIL import Image as PILImage

    with warnings.catch_warnings():  # only the header is read; esr's own pixel limit applies
        warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
        with PILImage.open(io.BytesIO(data)) as handle:
            check_pixels(path, handle.size, max_pixels)  # before getexif, which may decode a PNG
            orientation = handle.getexif().get(EXIF_ORIENTATION, 1) if may_hold_exif(data) else 1
            gray_alpha_png = data[:8] == PNG_SIGNATURE and data[25:26] == b"\x04"  # Pillow says "RGBA" at 16 bits
            mode = "LA" if gray_alpha_png else handle.mode
            return Header(mode, handle.size, orientation if orientation in range(1, 9) else 1,
                          handle.info.get("icc_profile") or None)


def read_header(data: bytes, path: Path, max_pixels: int) -> Header:
    """The :class:`Header` of ``data``; EsrError if it is not an image or is over ``max_pixels``."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        try:
            return _open_header(data, path, max_pixels)
        except PILImage.DecompressionBombError:  # over Pillow's limit: read the size anyway, esr's limit decides
            with _PILLOW_GUARD:
                limit, PILImage.MAX_IMAGE_PIXELS = PILImage.MAX_IMAGE_PIXELS, None
                try:
                    return _open_header(data, path, max_pixels)
                finally:
                    PILImage.MAX_IMAGE_PIXELS = limit
    except UnidentifiedImageError:
        raise EsrError(f"{path}: not an image (unrecognised format)", exit_code=1) from None
    except (OSError, ValueError, SyntaxError) as err:
        raise EsrError(f"{path}: truncated or corrupt image ({err})", exit_code=1) from None


def check_pixels(path: Path, size: tuple[int, int], max_pixels: int) -> None:
    """EsrError (exit 1) if a ``size`` (width, height) image is over ``max_pixels`` (0: no limit)."""
    width, height = size
    if max_pixels and width * height > max_pixels:
        raise EsrError(f"{path}: {width}x{height} is {width * height / 1e6:.1f} megapixels, over the limit of "
                       f"{max_pixels / 1e6:g} (raise it with --max-pixels N, 0 = no limit)", exit_code=1)


def apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip (H, W, ...) ``array`` so that EXIF ``orientation`` (1..8) becomes 1 (upright)."""
    transposed = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
                  5: lambda a: a.swapaxes(0, 1), 6: lambda a: a.swapaxes(0, 1)[:, ::-1],
                  7: lambda a: a.swapaxes(0, 1)[::-1, ::-1], 8: lambda a: a.swapaxes(0, 1)[::-1]}
    return np.ascontiguousarray(transposed[orientation](array)) if orientation in transposed else array


def read_checked(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[bytes, Header]:
    """(the file's bytes, its :class:`Header`); EsrError (exit 1) if it cannot be read, is empty, is not an
    image, or its header says it is over ``max_pixels`` (0: no limit). Nothing is decoded yet."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise EsrError(f"{path}: cannot read ({err.strerror or err})", exit_code=1) from None
    if not data:
        raise EsrError(f"{path}: empty file (0 bytes)", exit_code=1)
    return data, read_header(data, path, max_pixels)


def read_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image:
    """Decode ``path`` (PNG, JPEG, WebP, BMP, TIFF) into an :class:`Image`.

    Raises EsrError (exit code 1) for a missing, empty, truncated, corrupt or non-image file,
    an image over ``max_pixels`` (width x height, read from the header before decoding; 0 = no
    limit), and sample types other than 8/16-bit integers.
    """
    path = Path(path)
    data, header = read_checked(path, max_pixels)
    try:
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as err:
        raise EsrError(f"{path}: cannot decode ({str(err).strip().splitlines()[-1]})", exit_code=1) from None
    if decoded is None:
        raise EsrError(f"{path}: truncated or corrupt image data", exit_code=1)
    if decoded.dtype not in (np.uint8, np.uint16):
        raise EsrError(f"{path}: unsupported sample type {decoded.dtype} (8- or 16-bit integers only)", exit_code=1)
    decoded = apply_orientation(decoded, header.orientation)
    icc = None if header.mode == "CMYK" else header.icc  # a CMYK profile does not describe the RGB pixels
    if decoded.ndim == 2:
        return Image(decoded[..., None], icc=icc)
    channels = decoded.shape[2]
    alpha = decoded[..., 3] if channels == 4 and header.mode != "CMYK" else None  # OpenCV gives CMYK as BGR + 255
    if header.mode in GRAY_MODES:
        gray_alpha = None if alpha is None else np.ascontiguousarray(alpha)
        return Image(np.ascontiguousarray(decoded[..., :1]), gray_alpha, icc)
    if channels == 1:
        return Image(decoded, icc=icc)
    rgb = np.ascontiguousarray(decoded[..., 2::-1])
    return Image(rgb, None if alpha is None else np.ascontiguousarray(alpha), icc)


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

        image = replace(image, color=to8(image.color), alpha=to8(image.alpha))
    if image.alpha is not None and suffix not in ALPHA_SUFFIXES:
        image = replace(image, alpha=None)
    return image


def encode_image(image: Image, suffix: str, quality: int = 95) -> bytes:
    """Encode ``image`` for ``suffix`` (.png/.jpg/.jpeg/.webp/.bmp/.tif/.tiff) by :func:`esr.image_encode.encode`.

    ``quality`` (1..100) applies to JPEG and WebP; WebP at 100 is lossless. 16-bit and
    alpha are kept where the format stores them (see :func:`fit_to_format`), gray + alpha
    stays gray + alpha in PNG, the ICC profile is kept in PNG, JPEG, WebP and TIFF.
    """
    image = fit_to_format(image, suffix)
    return encode(image.color, image.alpha, image.icc, suffix, quality)


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
