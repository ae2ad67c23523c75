"""Open a video, check that esr can upscale it, and decode its frames to RGB arrays.

:func:`probe_video` reads what the output must keep (time base, frame rate, colour tags,
display matrix, sample aspect ratio) and decodes the first frame, so a file that cannot
be upscaled fails with one line before any work: not a media file or truncated, no
video stream (audio only), no decoder for its codec, no frames.

:func:`decode_frames` yields every frame as (H, W, 3) RGB: uint8 (``rgb24``) for 8-bit
sources, uint16 (``rgb48le``, full 0..65535 range) for deeper ones. YUV -> RGB uses the
frame's own matrix and range tags (BT.601 when untagged), bicubic chroma interpolation
with accurate rounding.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np
from av.sidedata.sidedata import Type as SideDataType
from av.video.reformatter import Interpolation

from esr.errors import EXIT_FAILED, EsrError

CONVERSION_FLAGS = int(Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT)
"""swscale flags for YUV <-> RGB (both directions): bicubic chroma, accurate rounding, full chroma interpolation."""

FALLBACK_RATE = Fraction(25)
"""Frame rate given to the encoder's rate control when the source states none (timestamps are kept anyway)."""


@dataclass(frozen=True)
class Colour:
    """AVFrame colour tags (FFmpeg's integer codes): matrix, range, transfer, primaries."""

    colorspace: int
    color_range: int
    color_trc: int
    color_primaries: int


@dataclass(frozen=True)
class VideoSource:
    """What esr reads from a video before upscaling it (sizes of the coded frames, before rotation)."""

    path: Path
    stream_index: int
    codec: str
    width: int
    height: int
    pix_fmt: str
    time_base: Fraction
    rate: Fraction
    frames: int
    colour: Colour
    display_matrix: tuple[int, ...] | None
    sample_aspect_ratio: Fraction | None

    @property
    def rgb_format(self) -> str:
        """``rgb24`` for 8-bit sources, ``rgb48le`` (arrays of uint16) for deeper ones."""
        return "rgb48le" if av.VideoFormat(self.pix_fmt).components[0].bits > 8 else "rgb24"


@dataclass(frozen=True)
class SourceFrame:
    """One decoded frame: its position in decode output, timestamps in the stream's time base, pixels."""

    index: int
    pts: int
    duration: int
    pixels: np.ndarray


def bad_video(path: Path, reason: str) -> EsrError:
    """The one-line error for a video that cannot be upscaled (exit 1, the batch goes on)."""
    return EsrError(f"{path}: {reason}", exit_code=EXIT_FAILED)


def open_input(path: Path) -> av.container.InputContainer:
    """Open ``path`` for demuxing; EsrError naming the file if it is not a readable media file."""
    try:
        return av.open(str(path), metadata_errors="replace")
    except av.error.FFmpegError as err:
        raise bad_video(path, f"not a readable video, or truncated ({err.strerror or err})") from None


def main_video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    """The first video stream that is not cover art; EsrError if there is none or it has no decoder."""
    streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        kinds = sorted({s.type for s in container.streams})
        raise bad_video(path, f"no video stream ({', '.join(kinds)} only)" if kinds else "no streams (empty file)")
    stream = streams[0]
    if stream.codec_context is None:
        raise bad_video(path, "unsupported video codec (no decoder for it in the FFmpeg bundled with PyAV)")
    return stream


def rotation_matrix(clockwise_degrees: float) -> tuple[int, ...]:
    """FFmpeg's display matrix (9 int32, 16.16 and 2.30 fixed point) for a clockwise display rotation."""
    radians = math.radians(-clockwise_degrees)
    cos, sin = round(math.cos(radians) * 65536), round(math.sin(radians) * 65536)
    return (cos, -sin, 0, sin, cos, 0, 0, 0, 1 << 30)


def display_matrix(frame: av.VideoFrame, stream) -> tuple[int, ...] | None:
    """The display matrix (rotation and flips) of the frame's side data, else of a legacy ``rotate`` tag, or None."""
    side = frame.side_data.get(SideDataType.DISPLAYMATRIX)
    if side is not None:
        return struct.unpack("<9i", bytes(side))
    tag = next((value for key, value in stream.metadata.items() if key.lower() == "rotate"), None)
    try:
        return rotation_matrix(float(tag)) if tag is not None else None
    except ValueError:
        return None


def _frames(container: av.container.InputContainer, stream, path: Path) -> Iterator[av.VideoFrame]:
    try:
        yield from container.decode(stream)
    except av.error.FFmpegError as err:
        raise bad_video(path, f"truncated or corrupt video data ({err.strerror or err})") from None


def probe_video(path: str | Path) -> VideoSource:
    """Read ``path``'s main video stream and decode its first frame (see the module docstring for failures)."""
    path = Path(path)
    with open_input(path) as container:
        stream = main_video_stream(container, path)
        first = next(_frames(container, stream, path), None)
        if first is None:
            raise bad_video(path, "no video frames")
        rate = stream.average_rate or stream.guessed_rate or FALLBACK_RATE
        return VideoSource(
            path=path, stream_index=stream.index, codec=stream.codec_context.name,
            width=first.width, height=first.height, pix_fmt=first.format.name,
            time_base=stream.time_base, rate=rate, frames=expected_frames(container, stream, rate),
            colour=Colour(first.colorspace, first.color_range, first.color_trc, first.color_primaries),
            display_matrix=display_matrix(first, stream), sample_aspect_ratio=stream.sample_aspect_ratio,
        )


def expected_frames(container: av.container.InputContainer, stream, rate: Fraction) -> int:
    """The frame count the container states, else duration x rate (for the progress bar; 0 if unknown)."""
    if stream.frames:
        return stream.frames
    if stream.duration:
        return round(stream.duration * stream.time_base * rate)
    return round(Fraction(container.duration, av.time_base) * rate) if container.duration else 0
def decode_frames(source: VideoSource, start: int = 0) -> Iterator[SourceFrame]:
    """Every frame of ``source`` from index ``start`` on, as RGB (see the module docstring).

    Frames before ``start`` are decoded but not converted (resuming). Timestamps are made
    strictly increasing (a missing pts follows the previous frame; a repeated one moves one
    tick on), which encoders require. EsrError if the data is corrupt or the size changes.
    """
    with open_input(source.path) as container:
        stream = container.streams[source.stream_index]
        stream.thread_type = "AUTO"
        previous_end: int | None = None
        previous_pts: int | None = None
        for index, frame in enumerate(_frames(container, stream, source.path)):
            pts = frame.pts if frame.pts is not None else (previous_end or 0)
            if previous_pts is not None and pts <= previous_pts:
                pts = previous_pts + 1
            duration = frame.duration or 0
            previous_pts, previous_end = pts, pts + duration
            if index < start:
                continue
            if (frame.width, frame.height) != (source.width, source.height):
                raise bad_video(source.path, f"frame size changes at frame {index} "
                                             f"({source.width}x{source.height} -> {frame.width}x{frame.height})")
            pixels = frame.to_ndarray(format=source.rgb_format, interpolation=CONVERSION_FLAGS)
            yield SourceFrame(index, pts, duration, np.ascontiguousarray(pixels))
