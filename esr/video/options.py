"""The video settings of ``esr upscale``: encoders esr drives, containers it writes (no PyAV import here)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_SEGMENT_SECONDS = 10.0
"""Frames are encoded in segments of about this many seconds; a killed run loses at most one."""


@dataclass(frozen=True)
class Encoder:
    """An FFmpeg video encoder and how esr drives it: the options taking ``--crf`` and ``--preset``, the CRF
    used when none is given, options always set (quiet logs, constant-quality mode), and whether it is
    lossless (then RGB pixel formats are preferred: the model's output is stored exactly)."""

    name: str
    crf_option: str | None = None
    preset_option: str | None = None
    default_crf: int | None = None
    fixed_options: dict[str, str] = field(default_factory=dict)
    lossless: bool = False


ENCODERS: dict[str, Encoder] = {
    "libx264": Encoder("libx264", "crf", "preset", 18),
    "libx265": Encoder("libx265", "crf", "preset", 20, {"x265-params": "log-level=error"}),
    "libsvtav1": Encoder("libsvtav1", "crf", "preset", 30),
    "libvpx-vp9": Encoder("libvpx-vp9", "crf", "cpu-used", 31, {"b": "0", "row-mt": "1"}),
    "ffv1": Encoder("ffv1", fixed_options={"level": "3"}, lossless=True),
}
"""``--video-codec`` choices. CRF defaults aim at visually lossless output (x264 18, x265 20, AV1 30, VP9 31)."""


@dataclass(frozen=True)
class Container:
    """An output container: FFmpeg muxer name, file suffix and the codec used when ``--video-codec`` is not given."""

    muxer: str
    suffix: str
    default_codec: str


CONTAINERS: dict[str, Container] = {
    "mp4": Container("mp4", ".mp4", "libx264"),
    "mov": Container("mov", ".mov", "libx264"),
    "mkv": Container("matroska", ".mkv", "libx264"),
    "webm": Container("webm", ".webm", "libvpx-vp9"),
    "avi": Container("avi", ".avi", "libx264"),
}
"""``--video-container`` value -> container."""

VIDEO_SUFFIXES: dict[str, str] = {
    ".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "mkv", ".webm": "webm", ".avi": "avi",
    **dict.fromkeys((".ts", ".mts", ".m2ts", ".mpg", ".mpeg", ".vob", ".flv", ".wmv", ".3gp", ".ogv"), "mkv"),
}
"""Input suffix -> the container of its output (the same where esr writes it, else Matroska)."""


@dataclass(frozen=True)
class VideoOptions:
    """``--video-codec``, ``--crf``, ``--preset``, ``--pix-fmt``, ``--video-container``, ``--segment-seconds``.

    ``None`` means: the container's default codec, the codec's default CRF/preset, a pixel
    format like the source's (see :func:`esr.video.codecs.choose_pix_fmt`), the input's container.
    """

    codec: str | None = None
    crf: int | None = None
    preset: str | None = None
    pix_fmt: str | None = None
    container: str | None = None
    segment_seconds: float = DEFAULT_SEGMENT_SECONDS


def output_container(src: Path, options: VideoOptions) -> Container:
    """The container the output of video ``src`` is written in (``--video-container`` or the input's)."""
    return CONTAINERS[options.container or VIDEO_SUFFIXES[src.suffix.lower()]]
