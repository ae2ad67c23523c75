"""Encoders per output format that keep the colour type and the ICC profile where the format can.

``encode(color, alpha, icc, suffix, quality)``: ``color`` (H, W, 1) gray or (H, W, 3) RGB,
``alpha`` (H, W) or None, same dtype (uint8/uint16, already fitted to the format by
:func:`esr.image_io.fit_to_format`), ``icc`` the input's ICC profile or None.

* PNG: OpenCV (gray, RGB, RGBA, 8/16-bit); gray + alpha is written by :func:`png_gray_alpha`
  as a true gray + alpha PNG (OpenCV would make it RGBA); the ICC profile as an ``iCCP`` chunk.
* JPEG: OpenCV; the ICC profile as ``APP2 ICC_PROFILE`` segments.
* WebP: Pillow (libwebp); WebP has no gray type, so gray is stored as RGB (+ alpha); ``ICCP``.
* TIFF: tifffile (deflate + horizontal predictor); the ICC profile in tag 34675. Gray + alpha is
  stored as RGBA: OpenCV, and so most readers built on it, drop the alpha of a gray + alpha TIFF.
* BMP: OpenCV, no profile.

An ICC profile is written only when its colour space (header bytes 16..20) matches the pixels
written (``GRAY`` for gray, ``RGB `` for colour); a CMYK input's profile is never carried over.
"""
from __future__ import annotations

import io
import struct
import zlib
from typing import Callable

import cv2
import numpy as np

from esr.errors import EsrError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

Encoder = Callable[[np.ndarray, "np.ndarray | None", "bytes | None", int], bytes]


def icc_colour_space(icc: bytes | None) -> str:
    """``"RGB"``, ``"GRAY"``, ``"CMYK"``... from an ICC header, or ``""``."""
    if not icc or len(icc) < 20:
        return ""
    return icc[16:20].decode("latin-1").strip()


def icc_for(channels: int, icc: bytes | None) -> bytes | None:
    """``icc`` if it describes pixels with ``channels`` colour channels (1 gray, 3 RGB), else None."""
    return icc if icc_colour_space(icc) == {1: "GRAY", 3: "RGB"}.get(channels) else None


def _opencv(suffix: str, array: np.ndarray, params: list[int] | None = None) -> bytes:
    ok, buffer = cv2.imencode(suffix, np.ascontiguousarray(array), params or [])
    if not ok:
        raise EsrError(f"cannot encode a {array.shape} {array.dtype} image as {suffix}", exit_code=1)
    return buffer.tobytes()


def _bgr(color: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """OpenCV's channel order: gray, BGR or BGRA."""
    array = color if color.shape[2] == 1 else color[..., ::-1]
    return array if alpha is None else np.concatenate([array, alpha[..., None]], axis=2)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_gray_alpha(gray: np.ndarray, alpha: np.ndarray) -> bytes:
    """A gray + alpha PNG (colour type 4, 8 or 16 bits); rows use the "Up" filter."""
    depth = 16 if gray.dtype == np.uint16 else 8
    pixels = np.stack([gray, alpha], axis=-1).astype(">u2" if depth == 16 else np.uint8)
    rows = pixels.reshape(pixels.shape[0], -1).view(np.uint8)
    up = np.diff(rows, axis=0, prepend=np.zeros((1, rows.shape[1]), np.uint8))  # wraps modulo 256, as PNG wants
    raw = np.concatenate([np.full((rows.shape[0], 1), 2, np.uint8), up], axis=1).tobytes()
    header = struct.pack(">IIBBBBB", gray.shape[1], gray.shape[0], depth, 4, 0, 0, 0)
    return (PNG_SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(raw, 6))
            + png_chunk(b"IEND", b""))


def png_with_icc(data: bytes, icc: bytes) -> bytes:
    """``data`` (a PNG) with an ``iCCP`` chunk right after ``IHDR`` (which is 8 + 25 bytes long)."""
    chunk = png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc))
    return data[:33] + chunk + data[33:]


def encode_png(color: np.ndarray, alpha: np.ndarray | None, icc: bytes | None, quality: int) -> bytes:
    gray_alpha = color.shape[2] == 1 and alpha is not None
    data = png_gray_alpha(color[..., 0], alpha) if gray_alpha else _opencv(".png", _bgr(color, alpha))
    icc = icc_for(color.shape[2], icc)
    return png_with_icc(data, icc) if icc else data


ICC_SEGMENT_DATA = 65519
"""Bytes of profile per JPEG APP2 segment (65535 - 2 length bytes - 14 bytes of ``ICC_PROFILE\\0`` + numbers)."""


def jpeg_with_icc(data: bytes, icc: bytes) -> bytes:
    """``data`` (a JPEG) with ``APP2 ICC_PROFILE`` segments after SOI and any APP0 (JFIF) segment."""
    pieces = [icc[i:i + ICC_SEGMENT_DATA] for i in range(0, len(icc), ICC_SEGMENT_DATA)]
    segments = b"".join(b"\xff\xe2" + struct.pack(">H", 2 + 14 + len(piece)) + b"ICC_PROFILE\x00"
                        + bytes([index + 1, len(pieces)]) + piece for index, piece in enumerate(pieces))
    at = 2
    if data[2:4] == b"\xff\xe0":
        at += 2 + struct.unpack(">H", data[4:6])[0]
    return data[:at] + segments + data[at:]


def encode_jpeg(color: np.ndarray, alpha: np.ndarray | None, icc: bytes | None, quality: int) -> bytes:
    data = _opencv(".jpg", _bgr(color, None), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    icc = icc_for(color.shape[2], icc)
    return jpeg_with_icc(data, icc) if icc else data


def encode_webp(color: np.ndarray, alpha: np.ndarray | None, icc: bytes | None, quality: int) -> bytes:
    from PIL import Image as PILImage

    rgb = np.repeat(color, 3, axis=2) if color.shape[2] == 1 else color
    array = rgb if alpha is None else np.concatenate([rgb, alpha[..., None]], axis=2)
    buffer = io.BytesIO()
    options = {"lossless": True, "exact": True} if quality >= 100 else {"quality": int(quality)}
    icc = icc_for(3, icc)
    PILImage.fromarray(np.ascontiguousarray(array), "RGB" if alpha is None else "RGBA").save(
        buffer, "WEBP", **options, **({"icc_profile": icc} if icc else {}))
    return buffer.getvalue()


def encode_tiff(color: np.ndarray, alpha: np.ndarray | None, icc: bytes | None, quality: int) -> bytes:
    import tifffile

    if color.shape[2] == 1 and alpha is not None:
        color = np.repeat(color, 3, axis=2)  # gray + alpha TIFF: stored as RGBA (see the module docstring)
    rgb = color.shape[2] == 3
    array = color if alpha is None else np.concatenate([color, alpha[..., None]], axis=2)
    if array.shape[2] == 1:
        array = array[..., 0]
    icc = icc_for(color.shape[2], icc)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.ascontiguousarray(array), photometric="rgb" if rgb else "minisblack",
                     extrasamples=["unassalpha"] if alpha is not None else None,
                     compression="zlib", predictor=True, iccprofile=icc)
    return buffer.getvalue()


def encode_bmp(color: np.ndarray, alpha: np.ndarray | None, icc: bytes | None, quality: int) -> bytes:
    return _opencv(".bmp", _bgr(color, alpha))


ENCODERS: dict[str, Encoder] = {
    ".png": encode_png, ".jpg": encode_jpeg, ".jpeg": encode_jpeg, ".webp": encode_webp,
    ".tif": encode_tiff, ".tiff": encode_tiff, ".bmp": encode_bmp,
}
"""Output file extension -> encoder ``(color, alpha, icc, quality) -> bytes``."""


def encode(color: np.ndarray, alpha: np.ndarray | None, icc: bytes | None, suffix: str, quality: int = 95) -> bytes:
    """Encode for ``suffix`` (see the module docstring); EsrError for an unknown extension."""
    encoder = ENCODERS.get(suffix)
    if encoder is None:
        raise EsrError(f"cannot write {suffix} files (known: {', '.join(ENCODERS)})", exit_code=1)
    return encoder(color, alpha, icc, quality)
