"""`esr upscale` on animated GIF/WebP/APNG and multi-page TIFF (embedded default model, tiny frames)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageSequence

from esr.cli import main

DURATIONS = [40, 80, 120, 60, 200]


def frame(index: int, size: tuple[int, int] = (24, 20)) -> np.ndarray:
    """A flat-coloured frame with a moving block: few colours (palette-friendly), all frames differ."""
    width, height = size
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:] = (30 + 40 * index, 90, 160)
    pixels[4:12, 2 + 3 * index:10 + 3 * index] = (250, 220, 20)
    return pixels


def upscale(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["upscale", *args, "--quiet"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def shown_frames(path) -> tuple[list[np.ndarray], list[int], dict]:
    """RGBA pictures as a viewer shows them (Pillow composites), durations, and the first frame's info."""
    with PILImage.open(path) as handle:
        info = dict(handle.info)
        frames = [(np.asarray(f.convert("RGBA")), f.info.get("duration")) for f in ImageSequence.Iterator(handle)]
    return [f for f, _ in frames], [d for _, d in frames], info


@pytest.mark.parametrize("fmt,suffix,save", [
    ("GIF", ".gif", {"loop": 0}),
    ("WEBP", ".webp", {"loop": 3, "lossless": True}),
    ("PNG", ".png", {"loop": 2}),
])
def test_animation_keeps_frames_durations_and_loop(tmp_path, capsys, one_thread, fmt, suffix, save):
    frames = [PILImage.fromarray(frame(i)) for i in range(len(DURATIONS))]
    src = tmp_path / f"anim{suffix}"
    frames[0].save(src, fmt, save_all=True, append_images=frames[1:], duration=DURATIONS, **save)
    code, out, err = upscale(capsys, str(src), "-o", str(tmp_path / "out"), "--ext", "jpg", "--quality", "100")
    assert code == 0 and err == "" and out.splitlines()[-1] == "1 upscaled, 0 skipped, 0 failed"
    dest = tmp_path / "out" / f"anim{suffix}"  # the format is kept whatever --ext says
    result, durations, info = shown_frames(dest)
    assert len(result) == len(DURATIONS) and durations == DURATIONS and info["loop"] == save["loop"]
    assert all(r.shape == (80, 96, 4) and r[..., 3].min() == 255 for r in result)
    # each output frame is its own source frame upscaled (palette GIF: within quantisation error)
    for index, picture in enumerate(result):
        small = np.asarray(PILImage.fromarray(picture[..., :3]).resize((24, 20), PILImage.Resampling.BOX), float)
        errors = [np.abs(small - frame(j)).mean() for j in range(len(DURATIONS))]
        assert int(np.argmin(errors)) == index and errors[index] < 6


def test_gif_transparency_and_play_once_are_kept(tmp_path, capsys, one_thread):
    frames = []
    for index in range(3):
        rgba = np.dstack([frame(index), np.full((20, 24), 255, np.uint8)])
        rgba[:, 16:, 3] = 0  # right third transparent
        frames.append(PILImage.fromarray(rgba, "RGBA"))
    src = tmp_path / "clear.gif"
    frames[0].save(src, "GIF", save_all=True, append_images=frames[1:], duration=[50, 60, 70], disposal=2)
    code, _, err = upscale(capsys, str(src), "-o", str(tmp_path / "out"))
    assert code == 0, err
    result, durations, info = shown_frames(tmp_path / "out" / "clear.gif")
    assert durations == [50, 60, 70] and "loop" not in info  # no loop extension: plays once, as the source
    for picture in result:
        assert picture[:, :60, 3].min() == 255 and picture[:, 68:, 3].max() == 0


def test_multipage_tiff_keeps_every_page_and_bit_depth(tmp_path, capsys, one_thread):
    pages = [frame(0)[..., ::-1], frame(1)[..., ::-1], frame(2)[..., ::-1]]
    pages = [p.astype(np.uint16) * 257 for p in pages]
    ok, data = cv2.imencodemulti(".tif", pages)
    assert ok
    (tmp_path / "stack.tif").write_bytes(data.tobytes())
    code, _, err = upscale(capsys, str(tmp_path / "stack.tif"), "-o", str(tmp_path / "out"))
    assert code == 0, err
    ok, result = cv2.imreadmulti(str(tmp_path / "out" / "stack.tif"), flags=cv2.IMREAD_UNCHANGED)
    assert ok and len(result) == 3
    assert all(page.shape == (80, 96, 3) and page.dtype == np.uint16 for page in result)
    for page, source in zip(result, pages):  # page order kept: each page's mean colour is its source's
        assert np.abs(page.reshape(-1, 3).mean(axis=0) - source.reshape(-1, 3).mean(axis=0)).max() < 3 * 257


def test_a_still_png_still_goes_through_the_image_path(tmp_path, capsys, one_thread):
    PILImage.fromarray(frame(0)).save(tmp_path / "still.png")
    code, out, _ = upscale(capsys, str(tmp_path / "still.png"), "-o", str(tmp_path / "out"), "--ext", "jpg")
    assert code == 0 and [p.name for p in (tmp_path / "out").iterdir()] == ["still.jpg"]
