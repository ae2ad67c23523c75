"""esr's PNG writer (esr.image_encode.png_bytes) against two independent decoders (Pillow, OpenCV): every
colour type at 8 and 16 bits, the ICC chunk, pixel data split over several IDAT chunks, and the standard
library's zlib when ISA-L is not installed."""
from __future__ import annotations

import builtins
import io

import cv2
import numpy as np
import pytest
from PIL import Image as PILImage

from esr import image_encode
from esr.image_encode import png_bytes

RNG = np.random.default_rng(5)


def pixels(channels: int, dtype: type, height: int = 41, width: int = 57) -> np.ndarray:
    return RNG.integers(0, np.iinfo(dtype).max + 1, (height, width, channels), dtype=dtype)


def opencv_decoded(data: bytes) -> np.ndarray:
    """OpenCV's reading as (H, W, C) in esr's channel order (gray + alpha comes back as BGRA)."""
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array.ndim == 2:
        return array[..., None]
    return array[..., [2, 1, 0, *range(3, array.shape[2])]]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_every_colour_type_and_depth_decodes_to_the_same_pixels(channels, dtype):
    source = pixels(channels, dtype)
    data = png_bytes(source)
    decoded = opencv_decoded(data)
    expected = source if channels != 2 else np.concatenate([np.repeat(source[..., :1], 3, axis=2), source[..., 1:]], 2)
    np.testing.assert_array_equal(decoded, expected)
    if dtype == np.uint8 or channels == 1:  # Pillow has no 16-bit colour modes
        with PILImage.open(io.BytesIO(data)) as image:
            assert image.mode == {1: "I;16" if dtype == np.uint16 else "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
            np.testing.assert_array_equal(np.asarray(image).reshape(source.shape), source)


def test_icc_profile_and_blocks_of_rows_in_several_idat_chunks(monkeypatch):
    icc = bytes(range(256)) * 3
    monkeypatch.setattr(image_encode, "PNG_BLOCK_ROWS", 7)
    source = pixels(3, np.uint8, 600, 400).cumsum(axis=0, dtype=np.uint8)  # rows that depend on the row above
    data = png_bytes(source, icc)
    assert data.count(b"IDAT") > 2 and data.index(b"iCCP") < data.index(b"IDAT")
    with PILImage.open(io.BytesIO(data)) as image:
        assert image.info["icc_profile"] == icc
        np.testing.assert_array_equal(np.asarray(image), source)


def test_without_isal_the_standard_zlib_writes_the_same_image(monkeypatch):
    source = pixels(4, np.uint16)
    real_import = builtins.__import__

    def no_isal(name, *args, **kwargs):
        if name == "isal" or name.startswith("isal."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_isal)
    data = png_bytes(source)
    monkeypatch.undo()
    np.testing.assert_array_equal(opencv_decoded(data), source)
    assert data != png_bytes(source)  # ISA-L's stream differs: the fallback really ran


def test_adler32_of_joined_parts():
    import zlib

    from esr.image_encode import adler32_combine

    data = RNG.integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    for cut in (0, 1, 65521, 65522, 200_000, len(data)):
        first, second = data[:cut], data[cut:]
        assert adler32_combine(zlib.adler32(first), zlib.adler32(second), len(second)) == zlib.adler32(data)


def idat_stream(data: bytes) -> bytes:
    """The concatenated ``IDAT`` payloads of a PNG (one zlib stream)."""
    stream, at = [], 8
    while at < len(data):
        length = int.from_bytes(data[at:at + 4], "big")
        if data[at + 4:at + 8] == b"IDAT":
            stream.append(data[at + 8:at + 8 + length])
        at += 12 + length
    return b"".join(stream)


def test_parts_deflated_in_parallel_join_into_one_valid_stream(monkeypatch):
    """An image larger than one part: its parts (deflated on worker threads) make one zlib stream whose checksum
    zlib verifies, the same bytes with one worker as with several, and every decoder reads the pixels back."""
    import zlib
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(image_encode, "PNG_BLOCK_ROWS", 16)
    monkeypatch.setattr(image_encode, "PNG_PART_BYTES", 16 * (3 * 2 * 300 + 1) * 3)  # 48 rows per part
    source = pixels(3, np.uint16, 257, 300).cumsum(axis=0, dtype=np.uint16)  # 6 parts, the last one row
    data = png_bytes(source)
    stream = idat_stream(data)
    raw = zlib.decompress(stream)  # raises on a wrong Adler-32 or a broken deflate stream
    assert len(raw) == 257 * (1 + 300 * 3 * 2)
    assert stream.count(b"\x00\x00\xff\xff") >= 5  # the empty stored block ending each part but the last
    np.testing.assert_array_equal(opencv_decoded(data), source)
    monkeypatch.setattr(image_encode, "png_pool", lambda: ThreadPoolExecutor(1))
    assert png_bytes(source) == data
    monkeypatch.setattr(image_encode, "PNG_PART_BYTES", 2**30)  # one part: another stream, the same pixels
    single = png_bytes(source)
    assert single != data and zlib.decompress(idat_stream(single)) == raw
