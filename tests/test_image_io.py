"""esr.image_io: every image kind decodes as stored, bad files fail with one line, writes are atomic."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageOps

from esr.errors import EsrError
from esr.image_io import Image, encode_image, read_image, write_atomic, write_image

RNG = np.random.default_rng(7)


def rgb8(h: int = 20, w: int = 30) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_rgb8_png_roundtrip(tmp_path):
    pixels = rgb8()
    PILImage.fromarray(pixels).save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    assert image.dtype == np.uint8 and image.alpha is None and not image.gray
    np.testing.assert_array_equal(image.color, pixels)  # RGB order, not BGR


def test_rgb16_png_keeps_16_bits(tmp_path):
    pixels = RNG.integers(0, 65536, (12, 9, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "a.png"), pixels[..., ::-1])
    image = read_image(tmp_path / "a.png")
    assert image.dtype == np.uint16
    np.testing.assert_array_equal(image.color, pixels)
    write_image(image, tmp_path / "b.png")
    np.testing.assert_array_equal(read_image(tmp_path / "b.png").color, pixels)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_gray_stays_gray(tmp_path, dtype):
    pixels = RNG.integers(0, np.iinfo(dtype).max + 1, (11, 13), dtype=dtype)
    cv2.imwrite(str(tmp_path / "g.png"), pixels)
    image = read_image(tmp_path / "g.png")
    assert image.gray and image.dtype == dtype and image.color.shape == (11, 13, 1)
    np.testing.assert_array_equal(image.color[..., 0], pixels)


def test_rgba_and_gray_alpha(tmp_path):
    rgba = np.dstack([rgb8(), RNG.integers(0, 256, (20, 30), dtype=np.uint8)])
    PILImage.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(image.color, rgba[..., :3])
    np.testing.assert_array_equal(image.alpha, rgba[..., 3])
    PILImage.fromarray(rgba).convert("LA").save(tmp_path / "la.png")
    gray_alpha = read_image(tmp_path / "la.png")
    assert gray_alpha.gray
    np.testing.assert_array_equal(gray_alpha.alpha, rgba[..., 3])


def test_palette_with_and_without_transparency(tmp_path):
    palette = PILImage.fromarray(rgb8()).convert("P", palette=PILImage.Palette.ADAPTIVE, colors=16)
    palette.save(tmp_path / "p.png")
    image = read_image(tmp_path / "p.png")
    np.testing.assert_array_equal(image.color, np.asarray(palette.convert("RGB")))
    assert image.alpha is None
    palette.save(tmp_path / "pt.png", transparency=0)
    transparent = read_image(tmp_path / "pt.png")
    expected_alpha = np.where(np.asarray(palette) == 0, 0, 255)
    np.testing.assert_array_equal(transparent.alpha, expected_alpha)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    smooth = cv2.GaussianBlur(rgb8(40, 40), (9, 9), 3)
    PILImage.fromarray(smooth).convert("CMYK").save(tmp_path / "c.jpg", quality=98)
    image = read_image(tmp_path / "c.jpg")
    reference = np.asarray(PILImage.open(tmp_path / "c.jpg").convert("RGB")).astype(int)
    assert image.color.shape == (40, 40, 3)
    assert np.abs(image.color.astype(int) - reference).max() <= 2


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_applied(tmp_path, orientation):
    pil = PILImage.fromarray(cv2.GaussianBlur(rgb8(24, 40), (5, 5), 2))
    exif = pil.getexif()
    exif[0x0112] = orientation
    pil.save(tmp_path / "o.jpg", exif=exif, quality=95)
    image = read_image(tmp_path / "o.jpg")
    upright = np.asarray(ImageOps.exif_transpose(PILImage.open(tmp_path / "o.jpg")).convert("RGB")).astype(int)
    assert image.color.shape == upright.shape
    assert image.color.shape[:2] == ((24, 40) if orientation == 3 else (40, 24))
    assert np.abs(image.color.astype(int) - upright).max() <= 2


def png_chunks(data: bytes) -> list[bytes]:
    """The chunks of a PNG, each with its length, type, data and CRC."""
    chunks, at = [], 8
    while at < len(data):
        end = at + 12 + int.from_bytes(data[at:at + 4], "big")
        chunks.append(data[at:end])
        at = end
    return chunks


@pytest.mark.parametrize("place", ["before pixels", "after pixels"])
def test_png_exif_orientation_applied_wherever_the_chunk_is(tmp_path, place):
    pixels = rgb8(24, 40)
    pil = PILImage.fromarray(pixels)
    exif = pil.getexif()
    exif[0x0112] = 6
    pil.save(tmp_path / "o.png", exif=exif)
    data = (tmp_path / "o.png").read_bytes()
    chunks = png_chunks(data)
    assert any(chunk[4:8] == b"eXIf" for chunk in chunks)
    if place == "after pixels":  # allowed by the PNG spec; Pillow finds it only by decoding the pixels first
        exif_chunk = next(chunk for chunk in chunks if chunk[4:8] == b"eXIf")
        chunks = [chunk for chunk in chunks if chunk is not exif_chunk]
        chunks.insert(len(chunks) - 1, exif_chunk)
        (tmp_path / "o.png").write_bytes(data[:8] + b"".join(chunks))
    image = read_image(tmp_path / "o.png")
    assert image.color.shape == (40, 24, 3)
    assert np.array_equal(image.color, np.rot90(pixels, -1))


def test_png_without_exif_is_decoded_once(tmp_path, monkeypatch):
    pixels = rgb8(24, 40)
    PILImage.fromarray(pixels).save(tmp_path / "p.png")

    def no_exif_lookup(self):
        raise AssertionError("getexif decodes a PNG's pixels to look for EXIF after them")

    monkeypatch.setattr(PILImage.Image, "getexif", no_exif_lookup)
    assert np.array_equal(read_image(tmp_path / "p.png").color, pixels)


def bad_files(tmp_path: Path) -> dict[str, Path]:
    PILImage.fromarray(rgb8(64, 64)).save(tmp_path / "good.png")
    PILImage.fromarray(rgb8(64, 64)).save(tmp_path / "good.jpg")
    files = {"empty": tmp_path / "empty.png", "text": tmp_path / "notes.png",
             "truncated png": tmp_path / "cut.png", "truncated jpg": tmp_path / "cut.jpg",
             "missing": tmp_path / "missing.png"}
    files["empty"].write_bytes(b"")
    files["text"].write_text("this is not an image\n")
    files["truncated png"].write_bytes((tmp_path / "good.png").read_bytes()[:2000])
    files["truncated jpg"].write_bytes((tmp_path / "good.jpg").read_bytes()[:1500])
    return files


def test_bad_files_give_one_line_errors_naming_the_file(tmp_path):
    for kind, path in bad_files(tmp_path).items():
        with pytest.raises(EsrError) as info:
            read_image(path)
        message = str(info.value)
        assert message.startswith(f"{path}: ") and "\n" not in message, kind
        assert info.value.exit_code == 1


def test_write_atomic_never_overwrites_unless_asked(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"user data")
    with pytest.raises(EsrError, match="exists"):
        write_atomic(b"new", target)
    assert target.read_bytes() == b"user data"
    write_atomic(b"new", target, overwrite=True)
    assert target.read_bytes() == b"new"


def test_interrupted_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "out.png"

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    monkeypatch.setattr(os, "link", interrupted)  # the no-clobber move (overwrite=False)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(b"x" * 1000, target)
    assert list(tmp_path.iterdir()) == []


def test_format_limits_and_quality(tmp_path):
    rgba16 = Image(RNG.integers(0, 65536, (16, 16, 3), dtype=np.uint16),
                   RNG.integers(0, 65536, (16, 16), dtype=np.uint16))
    write_image(rgba16, tmp_path / "a.jpg")
    decoded = read_image(tmp_path / "a.jpg")
    assert decoded.dtype == np.uint8 and decoded.alpha is None  # jpg stores neither 16 bits nor alpha
    photo = Image(cv2.GaussianBlur(rgb8(64, 64), (3, 3), 1))
    assert len(encode_image(photo, ".jpg", quality=30)) < len(encode_image(photo, ".jpg", quality=95))
    write_image(photo, tmp_path / "lossless.webp", quality=100)
    np.testing.assert_array_equal(read_image(tmp_path / "lossless.webp").color, photo.color)
