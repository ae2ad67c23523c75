"""Encoders per output format that keep the colour type and the ICC profile where the format can.

``encode(color, alpha, icc, suffix, quality)``: ``color`` (H, W, 1) gray or (H, W, 3) RGB,
``alpha`` (H, W) or None, same dtype (uint8/uint16, already fitted to the format by
:func:`esr.image_io.fit_to_format`), ``icc`` the input's ICC profile or None.

* PNG: :func:`png_bytes` (gray, gray + alpha, RGB, RGBA; 8/16-bit; "Up" filter, ISA-L deflate), the
  ICC profile as an ``iCCP`` chunk.
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
import os
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import cv2
import numpy as np

from esr.errors import EsrError
from esr.pools import worker_pool

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


PNG_COLOUR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}
"""Channels (gray, gray + alpha, RGB, RGBA) -> PNG colour type."""
PNG_DEFLATE_LEVEL = 1
"""Deflate level of PNG pixel data: ISA-L's level 1 with the "Up" filter writes Set14 x4 outputs about 4x
faster than OpenCV's PNG writer (libpng at OpenCV's defaults) and a little smaller (``scripts/bench_png.py``)."""
PNG_BLOCK_ROWS = 256
"""Rows filtered and deflated at a time; each block's compressed bytes become one ``IDAT`` chunk, so the
filtered copy of a 16000 px wide output is 12 MB, not the whole image."""
PNG_PART_BYTES = 4 * 2**20
"""Filtered bytes per independently deflated part (whole blocks of :data:`PNG_BLOCK_ROWS` rows, at least one):
the parts of one image are compressed in parallel (:func:`png_pool`) and joined into one zlib stream. The split
depends only on the image, so the bytes are the same on any machine; a Set14 x4 RGB output (about 2000 px a
side) has 4 parts of 512 rows."""


def png_pool() -> ThreadPoolExecutor:
    """The process's worker threads for PNG parts (one per CPU; the deflate and numpy release the GIL)."""
    return worker_pool("esr-png", os.cpu_count() or 1, file_work=True)


ADLER_BASE = 65521
"""Adler-32's modulus."""


def adler32_combine(first: int, second: int, second_length: int) -> int:
    """The Adler-32 of two byte strings joined, from each one's checksum and the second's length (zlib's
    ``adler32_combine``, which Python's zlib does not expose)."""
    low = ((first & 0xFFFF) + (second & 0xFFFF) - 1) % ADLER_BASE
    high = ((first >> 16) + (second >> 16) + second_length * ((first & 0xFFFF) - 1)) % ADLER_BASE
    return low | high << 16


def zlib_module() -> Any:
    """The zlib-format codec PNG writing uses (``compressobj(level)``, ``crc32(data, start)``): ISA-L's
    ``isal_zlib`` (the ``isal`` package, a dependency on x86-64 and ARM64, where it ships wheels), else the
    standard library's ``zlib`` (same formats and values; deflate about 4x and CRC-32 about 5x slower: 1.36 vs
    0.24 ms over a Set14 x4 output's 5 MB of compressed pixels)."""
    try:
        from isal import isal_zlib
    except ImportError:
        return zlib
    return isal_zlib


def png_chunk(kind: bytes, data: bytes | memoryview) -> list[bytes | memoryview]:
    """One PNG chunk as the pieces to join (length, type, data, CRC): ``data`` is not copied here."""
    crc32 = zlib_module().crc32
    return [struct.pack(">I", len(data)), kind, data, struct.pack(">I", crc32(data, crc32(kind, 0)))]


def png_bytes(pixels: np.ndarray, icc: bytes | None = None) -> bytes:
    """A PNG of ``pixels`` (H, W, C) uint8 or uint16, C = 1/2/3/4 (gray, gray + alpha, RGB, RGBA), with
    ``icc`` as an ``iCCP`` chunk if given. Every row uses the "Up" filter (byte-wise difference with the
    row above, modulo 256), computed with numpy :data:`PNG_BLOCK_ROWS` rows at a time and deflated at
    :data:`PNG_DEFLATE_LEVEL` by :func:`zlib_module`'s codec, parts of :data:`PNG_PART_BYTES` in parallel."""
    height, width, channels = pixels.shape
    depth = 16 if pixels.dtype == np.uint16 else 8
    rows = np.ascontiguousarray(pixels, dtype=">u2" if depth == 16 else np.uint8).reshape(height, -1).view(np.uint8)
    header = struct.pack(">IIBBBBB", width, height, depth, PNG_COLOUR_TYPE[channels], 0, 0, 0)
    parts = [PNG_SIGNATURE, *png_chunk(b"IHDR", header)]
    if icc:
        parts += png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc))
    part_rows = PNG_BLOCK_ROWS * max(1, PNG_PART_BYTES // (PNG_BLOCK_ROWS * (rows.shape[1] + 1)))
    spans = [(top, min(top + part_rows, height)) for top in range(0, height, part_rows)]
    if len(spans) == 1:  # one part: no hand-over to a worker thread
        deflated = [deflate_part(rows, 0, height, True)]
    else:
        running = [png_pool().submit(deflate_part, rows, start, stop, stop == height) for start, stop in spans]
        deflated = [part.result() for part in running]
    checksum, pieces = 1, []
    for part_pieces, part_checksum, length in deflated:
        checksum = adler32_combine(checksum, part_checksum, length)
        pieces += part_pieces
    pieces[0] = ZLIB_HEADER + pieces[0]
    pieces[-1] += struct.pack(">I", checksum)  # the same piece as the first when there is one
    for piece in pieces:
        parts += png_chunk(b"IDAT", piece)
    return b"".join(parts + png_chunk(b"IEND", b""))


ZLIB_HEADER = b"\x78\x01"
"""A zlib stream's header: deflate with a 32 KB window, no preset dictionary, "fastest" level flag."""


def deflate_part(rows: np.ndarray, start: int, stop: int, last: bool) -> tuple[list[bytes], int, int]:
    """Rows ``start:stop`` of ``rows`` (H, bytes per row) uint8, "Up"-filtered and raw-deflated on their own:
    (compressed pieces, Adler-32 of the filtered bytes, their length). A part that is not ``last`` ends on a
    full flush (byte-aligned, no back-references into it), so the parts join into one deflate stream."""
    codec = zlib_module()
    compressor = codec.compressobj(PNG_DEFLATE_LEVEL, zlib.DEFLATED, -15)
    pieces, checksum, length = [], 1, 0
    for top in range(start, stop, PNG_BLOCK_ROWS):
        block = rows[top:min(top + PNG_BLOCK_ROWS, stop)]
        filtered = np.empty((block.shape[0], block.shape[1] + 1), np.uint8)
        filtered[:, 0] = 2  # filter type "Up"
        np.subtract(block[0], rows[top - 1] if top else 0, out=filtered[0, 1:])  # uint8 wraps modulo 256
        np.subtract(block[1:], block[:-1], out=filtered[1:, 1:])
        checksum, length = codec.adler32(filtered.data, checksum), length + filtered.size
        pieces.append(compressor.compress(filtered.data))
    pieces.append(compressor.flush(zlib.Z_FINISH if last else zlib.Z_FULL_FLUSH))
    return [piece for piece in pieces if piece], checksum, length


def encode_png(color: np.ndarray, alpha: np.ndarray | None, icc: bytes | None, quality: int) -> bytes:
    pixels = color if alpha is None else np.concatenate([color, alpha[..., None]], axis=2)
    return png_bytes(pixels, icc_for(color.shape[2], icc))


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
