"""Animated GIF/WebP/APNG and multi-page TIFF through ``esr upscale``: every frame (page) upscaled.

Animations are read with Pillow, which gives every frame as the full picture a viewer
shows at that moment (earlier frames and their disposal already applied). Each is
upscaled (alpha separately, as for images) and written back in the input's format with
the same per-frame durations and loop count:

- GIF: one palette for the whole animation, chosen by median cut over pixels sampled
  from every upscaled frame (255 colours and one transparent index when any frame has
  transparency, else 256), frames mapped to it without dithering, so static areas do not
  shimmer from frame to frame. Alpha below 50 % becomes transparent. Each frame keeps its
  disposal method, except "restore to previous", written as "restore to background"
  (Pillow writes frames as changes against the previous one; both reproduce the same
  pictures). Pillow merges consecutive identical frames into one, adding their durations.
- WebP: lossy at ``--quality``, lossless at 100 (as for still WebP); libwebp picks each
  frame's blending and disposal.
- APNG: every frame replaces the previous one (disposal none, blend source).
- multi-page TIFF: decoded and encoded by OpenCV, so 16-bit and alpha pages stay.

Every frame of an animation is held in memory until the file is written (as Pillow's
writers need); convert long animations to video first.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image as PILImage
from PIL import ImageSequence

from esr.errors import EXIT_FAILED, EsrError
from esr.image_io import DEFAULT_MAX_PIXELS, Image, check_pixels, write_atomic

if TYPE_CHECKING:
    from esr.upscale_batch import BatchOptions, Task
    from esr.upscaler import Upscaler

ANIMATED_SUFFIXES = (".gif", ".png", ".apng", ".webp", ".tif", ".tiff")
"""Suffixes whose files may hold several frames (GIFs always go through this module)."""

PALETTE_SAMPLE_PIXELS = 2**20
"""At most this many pixels, spread over all frames, choose a GIF's palette."""

DEFAULT_DURATION_MS = 100
GIF_DISPOSAL_RESTORE_PREVIOUS = 3
GIF_DISPOSAL_RESTORE_BACKGROUND = 2


def is_animated(path: Path) -> bool:
    """Whether ``path`` is a GIF, or a PNG/WebP/TIFF holding more than one frame (header only; False if unreadable)."""
    if path.suffix.lower() == ".gif":
        return True
    try:
        with PILImage.open(path) as handle:
            return bool(getattr(handle, "is_animated", False))
    except Exception:  # unreadable files are reported by the image path
        return False


@dataclass
class Animation:
    """Decoded frames and their timing: Pillow format name, frames, durations (ms), loop count, GIF disposals."""

    format: str
    frames: list[Image]
    durations: list[int]
    loop: int | None
    disposals: list[int]


def _bad(path: Path, reason: str) -> EsrError:
    return EsrError(f"{path}: {reason}", exit_code=EXIT_FAILED)


def _rgba_image(frame: PILImage.Image) -> Image:
    rgba = np.asarray(frame.convert("RGBA"))
    alpha = rgba[..., 3]
    return Image(np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(alpha) if alpha.min() < 255 else None)


def read_animation(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Animation:
    """Every frame of a GIF/WebP/APNG as the picture shown at that time; EsrError if unreadable or its
    canvas is over ``max_pixels`` (0: no limit)."""
    try:
        with PILImage.open(path) as handle:
            check_pixels(path, handle.size, max_pixels)
            format_name = handle.format
            loop = handle.info.get("loop")
            frames, durations, disposals = [], [], []
            for frame in ImageSequence.Iterator(handle):
                frames.append(_rgba_image(frame))
                durations.append(int(frame.info.get("duration", DEFAULT_DURATION_MS)))
                disposals.append(int(getattr(frame, "disposal_method", 0) or 0))
    except EsrError:
        raise
    except PILImage.DecompressionBombError as err:
        raise _bad(path, str(err)) from None
    except Exception as err:  # noqa: BLE001  (Pillow's parsers raise struct.error, IndexError... on corrupt data)
        raise _bad(path, f"truncated or corrupt animation ({type(err).__name__}: {err})") from None
    if any(f.alpha is not None for f in frames):  # alpha on every frame once any frame has it
        frames = [f if f.alpha is not None else Image(f.color, np.full(f.size, 255, np.uint8)) for f in frames]
    return Animation(format_name, frames, durations, loop, disposals)


def gif_palette(frames: list[Image], colours: int) -> PILImage.Image:
    """A P image whose palette (``colours`` entries) is the median cut of pixels sampled from every frame."""
    per_frame = max(1, PALETTE_SAMPLE_PIXELS // len(frames))
    samples = []
    for frame in frames:
        pixels = frame.color.reshape(-1, 3) if frame.alpha is None else frame.color[frame.alpha >= 128]
        step = max(1, len(pixels) // per_frame)
        samples.append(pixels[::step])
    sample = np.concatenate(samples) if sum(len(s) for s in samples) else np.zeros((1, 3), np.uint8)
    return PILImage.fromarray(sample[None]).quantize(colours, method=PILImage.Quantize.MEDIANCUT)


def gif_frames(frames: list[Image]) -> tuple[list[PILImage.Image], int | None]:
    """Palette frames for a GIF and the transparent index (None when no frame has alpha)."""
    transparent = frames[0].alpha is not None
    palette = gif_palette(frames, 255 if transparent else 256)
    colours = palette.getpalette()
    out = []
    for frame in frames:
        indexed = PILImage.fromarray(frame.color).quantize(palette=palette, dither=PILImage.Dither.NONE)
        if transparent:
            indices = np.array(indexed)
            indices[frame.alpha < 128] = 255
            indexed = PILImage.fromarray(indices, "P")
            indexed.putpalette(colours + [0, 0, 0] * (256 - len(colours) // 3))
        out.append(indexed)
    return out, 255 if transparent else None


def _pil_frame(image: Image) -> PILImage.Image:
    if image.alpha is None:
        return PILImage.fromarray(image.color)
    return PILImage.fromarray(np.dstack([image.color, image.alpha]), "RGBA")


def encode_animation(animation: Animation, quality: int) -> bytes:
    """The upscaled ``animation`` as bytes of its own format (see the module docstring)."""
    buffer = io.BytesIO()
    extra: dict = {} if animation.loop is None else {"loop": animation.loop}
    if animation.format == "GIF":
        frames, transparency = gif_frames(animation.frames)
        disposal = [GIF_DISPOSAL_RESTORE_BACKGROUND if d == GIF_DISPOSAL_RESTORE_PREVIOUS else d
                    for d in animation.disposals]
        if transparency is not None:
            extra["transparency"] = transparency
        frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=animation.durations,
                       disposal=disposal, **extra)
    elif animation.format == "WEBP":
        frames = [_pil_frame(f) for f in animation.frames]
        frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:], duration=animation.durations,
                       lossless=quality >= 100, quality=min(quality, 100), **extra)
    else:  # APNG
        frames = [_pil_frame(f) for f in animation.frames]
        frames[0].save(buffer, "PNG", save_all=True, append_images=frames[1:], duration=animation.durations,
                       disposal=0, blend=0, **extra)
    return buffer.getvalue()


def _page_image(page: np.ndarray) -> Image:
    """An OpenCV-decoded page (gray, BGR or BGRA) as an :class:`Image`."""
    if page.ndim == 2:
        return Image(page[..., None])
    if page.shape[2] == 1:
        return Image(page)
    return Image(np.ascontiguousarray(page[..., 2::-1]), page[..., 3].copy() if page.shape[2] == 4 else None)


def _page_array(image: Image) -> np.ndarray:
    """The inverse of :func:`_page_image` (gray + alpha goes out as BGRA)."""
    color = image.color if image.gray and image.alpha is None else (
        np.repeat(image.color, 3, axis=2) if image.gray else image.color[..., ::-1])
    array = color if image.alpha is None else np.dstack([color, image.alpha])
    return np.ascontiguousarray(array)


def read_pages(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> list[Image]:
    """Every page of a TIFF (OpenCV: bit depth and alpha kept); EsrError if unreadable or a page is over
    ``max_pixels`` (read from the headers first)."""
    try:
        with PILImage.open(path) as handle:
            for page in ImageSequence.Iterator(handle):
                check_pixels(path, page.size, max_pixels)
    except EsrError:
        raise
    except PILImage.DecompressionBombError as err:
        raise _bad(path, str(err)) from None
    except Exception as err:  # noqa: BLE001  (Pillow's parsers raise struct.error, IndexError... on corrupt data)
        raise _bad(path, f"truncated or corrupt TIFF ({type(err).__name__}: {err})") from None
    ok, pages = cv2.imdecodemulti(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    if not ok or not pages:
        raise _bad(path, "truncated or corrupt TIFF")
    return [_page_image(page) for page in pages]


def encode_pages(pages: list[Image]) -> bytes:
    """Pages as one multi-page TIFF."""
    if not hasattr(cv2, "imencodemulti"):  # OpenCV < 4.9
        raise EsrError(f"writing multi-page TIFF needs OpenCV >= 4.9 (this is {cv2.__version__})", exit_code=EXIT_FAILED)
    ok, data = cv2.imencodemulti(".tif", [_page_array(page) for page in pages])
    if not ok:
        raise EsrError("cannot encode the upscaled pages as TIFF", exit_code=EXIT_FAILED)
    return data.tobytes()


def upscale_animated(task: Task, upscaler: Upscaler, options: BatchOptions) -> None:
    """Upscale the animation or multi-page TIFF ``task.src`` into ``task.dest`` (same format, written atomically)."""
    from tqdm import tqdm

    pages = task.src.suffix.lower() in (".tif", ".tiff")
    animation = None if pages else read_animation(task.src, options.max_pixels)
    frames = read_pages(task.src, options.max_pixels) if pages else animation.frames
    with tqdm(frames, unit="frame", desc=task.src.name, disable=True if options.quiet else None, leave=False,
              dynamic_ncols=True) as bar:
        upscaled = [upscaler.upscale_image(frame) for frame in bar]
    if animation is None:
        data = encode_pages(upscaled)
    else:
        animation.frames = upscaled
        data = encode_animation(animation, options.quality)
    write_atomic(data, task.dest, options.overwrite or task.replace)
