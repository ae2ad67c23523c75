"""Items 6 and 9 of the hardening issue: pixel limits before decoding, output memory checked before
allocating, exact constant alpha, alpha without overshoot, colour type and ICC profile kept."""
from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from PIL import ImageCms

from esr.cli import main
from esr.descriptor import ModelDescriptor
from esr.errors import EsrError
from esr.image_io import DEFAULT_MAX_PIXELS, Image, read_image, write_image
from esr.upscaler import Upscaler, check_output_memory

RNG = np.random.default_rng(5)
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


class OvershootBackend:
    """x2 nearest upsampling that overshoots: 1.2 * x - 0.1 (flat 1.0 becomes 1.1, flat 0.0 becomes -0.1)."""

    name, device, precision, max_hw = "overshoot", "cpu", "fp32", None
    descriptor = ModelDescriptor(name="overshoot", arch="overshoot", scale=2)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (1.2 * x - 0.1).repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


def png_with_size(width: int, height: int) -> bytes:
    """A small PNG whose header claims ``width x height`` (its pixel data is for 1x1): a decompression bomb."""
    buffer = io.BytesIO()
    PILImage.new("RGB", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(data)


def test_pixel_limit_is_checked_from_the_header_before_decoding(tmp_path, monkeypatch, capsys):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_with_size(20000, 20000))  # 400 MP: over Pillow's own limit too
    assert bomb.stat().st_size < 200

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded although over the limit")

    monkeypatch.setattr(cv2, "imdecode", no_decode)
    with pytest.raises(EsrError, match=r"20000x20000 is 400.0 megapixels, over the limit of 100") as info:
        read_image(bomb)
    assert info.value.exit_code == 1 and DEFAULT_MAX_PIXELS == 100_000_000
    small = tmp_path / "small.png"
    PILImage.new("RGB", (10, 10)).save(small)
    with pytest.raises(EsrError, match="--max-pixels"):
        read_image(small, max_pixels=99)
    code = main(["upscale", str(bomb), "-o", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.splitlines()
    assert code == 1 and len(err) == 1 and "over the limit" in err[0] and str(bomb) in err[0]
    assert not any((tmp_path / "out").iterdir())


def test_max_pixels_raises_the_limit(tmp_path, capsys):
    src = tmp_path / "a.png"
    PILImage.fromarray(RNG.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(src)
    assert main(["upscale", str(src), "-o", str(tmp_path / "lim"), "--max-pixels", "100", "--quiet"]) == 1
    assert main(["upscale", str(src), "-o", str(tmp_path / "ok"), "--max-pixels", "144", "--quiet"]) == 0
    assert main(["upscale", str(src), "-o", str(tmp_path / "off"), "--max-pixels", "0", "--quiet"]) == 0
    assert (tmp_path / "off" / "a.png").is_file()


def test_output_memory_is_checked_before_allocating(monkeypatch):
    with pytest.raises(EsrError, match="needs about 1.1 GiB of memory, 0.5 GiB is available"):
        check_output_memory(8192, 8192, 3, 2, available=2**29)
    check_output_memory(100, 100, 3, 1, available=2**29)
    allocations = []
    monkeypatch.setattr(np, "empty", lambda *a, **k: allocations.append(a) or (_ for _ in ()).throw(MemoryError()))
    upscaler = Upscaler(OvershootBackend(), outscale=1e5)  # a 4x4 input -> a 400000 x 400000 output: terabytes
    with pytest.raises(EsrError, match="output needs about"):
        upscaler.upscale_array(np.zeros((4, 4, 3), np.uint8))
    assert allocations == []  # refused before any allocation, and never retried at smaller tiles


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("level", ["opaque", "transparent"])
def test_constant_alpha_stays_exactly_constant(dtype, level):
    top = np.iinfo(dtype).max
    value = top if level == "opaque" else 0
    color = RNG.integers(0, top, (9, 11, 3), dtype=dtype)
    image = Image(color, np.full((9, 11), value, dtype))
    out = Upscaler(OvershootBackend()).upscale_image(image)
    assert out.alpha.dtype == dtype and out.alpha.shape == (18, 22)
    assert (out.alpha == value).all()
    scaled = Upscaler(OvershootBackend(), outscale=3.3).upscale_image(image)
    assert scaled.alpha.shape == scaled.color.shape[:2] and (scaled.alpha == value).all()


def test_varying_alpha_never_overshoots_and_flat_parts_stay_flat():
    alpha = np.zeros((12, 12), np.uint8)
    alpha[:, 6:] = 255
    alpha[6:, 6:] = 200
    out = Upscaler(OvershootBackend()).upscale_alpha(alpha)  # the backend alone makes 200 -> 214, 255 -> 281
    assert (out[:8, 16:] == 255).all() and (out[16:, 16:] == 200).all() and (out[:, :8] == 0).all()
    assert out.max() == 255 and out.min() == 0


def test_alpha_end_to_end_with_the_default_model(tmp_path, capsys):
    rgb = RNG.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    PILImage.fromarray(np.dstack([rgb, np.full((16, 20), 255, np.uint8)]), "RGBA").save(tmp_path / "opaque.png")
    PILImage.fromarray(np.dstack([rgb, np.zeros((16, 20), np.uint8)]), "RGBA").save(tmp_path / "clear.png")
    half = np.zeros((16, 20), np.uint8)
    half[:, 10:] = 255
    PILImage.fromarray(np.dstack([rgb, half]), "RGBA").save(tmp_path / "half.png")
    assert main(["upscale", *(str(tmp_path / f"{n}.png") for n in ("opaque", "clear", "half")),
                 "-o", str(tmp_path / "out"), "--quiet"]) == 0
    read = {n: np.asarray(PILImage.open(tmp_path / "out" / f"{n}.png")) for n in ("opaque", "clear", "half")}
    assert (read["opaque"][..., 3] == 255).all() and (read["clear"][..., 3] == 0).all()
    assert (read["half"][:, :36, 3] == 0).all() and (read["half"][:, 44:, 3] == 255).all()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_gray_alpha_stays_gray_alpha_in_png(tmp_path, dtype):
    top = np.iinfo(dtype).max
    gray = RNG.integers(0, top, (7, 9, 1), dtype=dtype)
    alpha = RNG.integers(0, top, (7, 9), dtype=dtype)
    write_image(Image(gray, alpha), tmp_path / "la.png")
    data = (tmp_path / "la.png").read_bytes()
    assert data[24:26] == bytes([16 if dtype == np.uint16 else 8, 4])  # bit depth, colour type 4 = gray + alpha
    back = read_image(tmp_path / "la.png")
    assert back.gray and back.dtype == dtype
    np.testing.assert_array_equal(back.color, gray)
    np.testing.assert_array_equal(back.alpha, alpha)
    if dtype == np.uint8:
        assert PILImage.open(tmp_path / "la.png").mode == "LA"


def test_gray_alpha_through_the_cli(tmp_path, capsys):
    la = np.dstack([RNG.integers(0, 256, (16, 20), dtype=np.uint8), np.full((16, 20), 255, np.uint8)])
    PILImage.fromarray(la, "LA").save(tmp_path / "la.png")
    assert main(["upscale", str(tmp_path / "la.png"), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    out = PILImage.open(tmp_path / "out" / "la.png")
    assert out.mode == "LA" and out.size == (80, 64)


def test_cmyk_tiff_becomes_rgb_without_alpha(tmp_path, capsys):
    smooth = cv2.GaussianBlur(RNG.integers(0, 256, (24, 24, 3), dtype=np.uint8), (9, 9), 3)
    PILImage.fromarray(smooth).convert("CMYK").save(tmp_path / "c.tif")
    image = read_image(tmp_path / "c.tif")
    assert image.alpha is None and image.color.shape == (24, 24, 3)
    reference = np.asarray(PILImage.open(tmp_path / "c.tif").convert("RGB")).astype(int)
    assert np.abs(image.color.astype(int) - reference).max() <= 3
    assert main(["upscale", str(tmp_path / "c.tif"), "-o", str(tmp_path / "out"), "--ext", "same", "--quiet"]) == 0
    assert PILImage.open(tmp_path / "out" / "c.tif").mode == "RGB"


@pytest.mark.parametrize("ext", ["png", "jpg", "webp", "tif"])
def test_icc_profile_is_kept(tmp_path, capsys, ext):
    rgb = RNG.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    PILImage.fromarray(rgb).save(tmp_path / f"a.{ext}", icc_profile=SRGB)
    assert main(["upscale", str(tmp_path / f"a.{ext}"), "-o", str(tmp_path / "out"), "--ext", "same", "--quiet"]) == 0
    out = PILImage.open(tmp_path / "out" / f"a.{ext}")
    assert out.info.get("icc_profile") == SRGB and out.size == (80, 64) and out.mode == "RGB"


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_icc_profile_is_kept_in_16_bit_and_rgba(tmp_path, suffix):
    color = RNG.integers(0, 65536, (6, 5, 3), dtype=np.uint16)
    alpha = RNG.integers(0, 65536, (6, 5), dtype=np.uint16)
    write_image(Image(color, alpha, SRGB), tmp_path / f"a{suffix}")
    back = read_image(tmp_path / f"a{suffix}")
    assert back.icc == SRGB and back.dtype == np.uint16
    np.testing.assert_array_equal(back.color, color)
    np.testing.assert_array_equal(back.alpha, alpha)


def test_a_profile_of_another_colour_space_is_not_written(tmp_path):
    cmyk = PILImage.new("CMYK", (4, 4))
    buffer = io.BytesIO()
    cmyk.save(buffer, "JPEG", icc_profile=SRGB[:16] + b"CMYK" + SRGB[20:])
    (tmp_path / "c.jpg").write_bytes(buffer.getvalue())
    assert read_image(tmp_path / "c.jpg").icc is None  # a CMYK image's profile does not describe its RGB pixels
    gray_profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()  # not GRAY, not RGB
    write_image(Image(np.zeros((4, 4, 1), np.uint8), None, gray_profile), tmp_path / "g.png")
    assert "icc_profile" not in PILImage.open(tmp_path / "g.png").info


def test_max_pixels_above_opencvs_limit_raises_it_before_opencv_loads():
    import subprocess
    import sys

    code = ("import os, sys; from esr.cli.upscale_cmd import raise_opencv_pixel_limit as r; r({}); "
            "print(os.environ.get('OPENCV_IO_MAX_IMAGE_PIXELS'), 'cv2' in sys.modules)")
    env = {k: v for k, v in __import__("os").environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    runs = {arg: subprocess.run([sys.executable, "-c", code.format(arg)], capture_output=True, text=True,
                                env=env, check=True).stdout.split() for arg in ("0", "100", "2000000000")}
    assert runs == {"0": [str(1 << 62), "False"], "100": ["None", "False"], "2000000000": ["2000000000", "False"]}
