"""Upscaled RGB frames -> encoded segment files that keep the source's timestamps.

A segment is a NUT file (FFmpeg's own container: any codec, any time base, negative
decode timestamps kept as they are) holding one video stream encoded from its first
frame on, so it starts with a keyframe and can be joined to the others by copying
packets (:mod:`esr.video.join`). Frames carry the source's pts and duration in the
source's time base; the encoder is told the same time base.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from esr.video.codecs import Encoder, even_size
from esr.video.probe import CONVERSION_FLAGS, Colour, SourceFrame

SEGMENT_FORMAT = "nut"

SWS_COLORSPACE = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}
"""AVColorSpace (frame tag) -> swscale matrix: BT.709, FCC, BT.601 (470BG and 170M), SMPTE 240M, BT.2020."""

RGB_COLORSPACE = 0
"""AVCOL_SPC_RGB: the tag for RGB pixel formats."""


@dataclass(frozen=True)
class EncodeSpec:
    """How every segment of one output is encoded (the same for all of them)."""

    encoder: Encoder
    options: dict[str, str]
    pix_fmt: str
    time_base: Fraction
    rate: Fraction
    colour: Colour
    sample_aspect_ratio: Fraction | None


def to_video_frame(pixels: np.ndarray, spec: EncodeSpec, width: int, height: int) -> av.VideoFrame:
    """(h, w, 3) RGB uint8/uint16 -> a frame in ``spec.pix_fmt`` of ``width`` x ``height``.

    Rows/columns missing for the chroma subsampling (odd sizes with ``--outscale``) repeat the
    edge. YUV gets the source's matrix and range; RGB formats are converted without either.
    """
    pad_h, pad_w = height - pixels.shape[0], width - pixels.shape[1]
    if pad_h or pad_w:
        pixels = np.pad(pixels, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    frame = av.VideoFrame.from_ndarray(pixels, format="rgb24" if pixels.dtype == np.uint8 else "rgb48le")
    if av.VideoFormat(spec.pix_fmt).is_rgb:
        return frame.reformat(format=spec.pix_fmt, interpolation=CONVERSION_FLAGS)
    return frame.reformat(format=spec.pix_fmt, dst_colorspace=SWS_COLORSPACE.get(spec.colour.colorspace),
                          dst_color_range=spec.colour.color_range or None, interpolation=CONVERSION_FLAGS)


class SegmentFile:
    """One segment being written to ``path`` (a temp name; :class:`esr.video.segments.SegmentStore` renames it)."""

    def __init__(self, path: Path, spec: EncodeSpec, first: SourceFrame) -> None:
        self.spec = spec
        self.width, self.height = even_size(spec.pix_fmt, first.pixels.shape[1], first.pixels.shape[0])
        self.container = av.open(str(path), "w", format=SEGMENT_FORMAT,
                                 container_options={"avoid_negative_ts": "disabled"})
        try:
            stream = self.container.add_stream(spec.encoder.name, rate=spec.rate, options=dict(spec.options))
            stream.width, stream.height, stream.pix_fmt = self.width, self.height, spec.pix_fmt
            stream.time_base = spec.time_base
            context = stream.codec_context
            context.time_base = spec.time_base
            rgb = av.VideoFormat(spec.pix_fmt).is_rgb
            context.colorspace = RGB_COLORSPACE if rgb else spec.colour.colorspace
            context.color_range = 2 if rgb else spec.colour.color_range  # RGB is full range
            context.color_trc = spec.colour.color_trc
            context.color_primaries = spec.colour.color_primaries
            if spec.sample_aspect_ratio:
                context.sample_aspect_ratio = spec.sample_aspect_ratio
        except BaseException:
            self.container.close()
            raise
        self.stream = stream

    def add(self, frame: SourceFrame) -> None:
        """Encode one upscaled frame with its source pts/duration."""
        video_frame = to_video_frame(frame.pixels, self.spec, self.width, self.height)
        video_frame.pts = frame.pts
        video_frame.duration = frame.duration
        video_frame.time_base = self.spec.time_base
        self.container.mux(self.stream.encode(video_frame))

    def close(self) -> None:
        """Flush the encoder and close the file."""
        self.container.mux(self.stream.encode(None))
        self.container.close()

    def abort(self) -> None:
        """Close without flushing (the caller deletes the file)."""
        try:
            self.container.close()
        except av.error.FFmpegError:
            pass
