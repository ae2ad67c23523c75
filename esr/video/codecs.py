"""The encoders of :data:`esr.video.options.ENCODERS`, checked against the FFmpeg bundled with PyAV at run time:
which exist, which containers hold them, their FFmpeg options and pixel formats."""
from __future__ import annotations

import os

import av

from esr.errors import EXIT_FAILED, EsrError
from esr.video.options import ENCODERS, Container, Encoder

LOSSLESS_RGB_FORMATS = ("bgr0", "gbrp16le")
"""Pixel formats a lossless encoder gets for 8-bit and deeper sources (RGB: no YUV conversion at all)."""


def encoder_exists(name: str) -> bool:
    """Whether the bundled FFmpeg has the encoder ``name``."""
    try:
        av.codec.Codec(name, "w")
    except (av.codec.codec.UnknownCodecError, ValueError):
        return False
    return True


def available_encoders() -> list[str]:
    """The :data:`ENCODERS` present in the bundled FFmpeg."""
    return [name for name in ENCODERS if encoder_exists(name)]


def check_encoder(name: str) -> Encoder:
    """The :class:`Encoder` ``name``; EsrError (exit 2) naming the available ones if it is unknown or missing."""
    if name not in ENCODERS or not encoder_exists(name):
        reason = "not an encoder esr drives" if name not in ENCODERS else "not in this FFmpeg build"
        raise EsrError(f"--video-codec {name}: {reason} (available: {', '.join(available_encoders())})")
    return ENCODERS[name]


def encoder_for(container: Container, requested: str | None) -> Encoder:
    """The encoder for an output in ``container``: ``requested`` or the container's default.

    EsrError (exit 1, this video fails) if the container cannot hold that codec.
    """
    encoder = check_encoder(requested or container.default_codec)
    codec_id_name = av.codec.Codec(encoder.name, "w").name
    with av.open(os.devnull, "w", format=container.muxer) as probe:
        supported = probe.supported_codecs
    if codec_id_name not in supported:
        raise EsrError(f"{container.muxer} cannot hold {encoder.name} video (choose another --video-container)",
                       exit_code=EXIT_FAILED)
    return encoder


def encoder_options(encoder: Encoder, crf: int | None, preset: str | None) -> dict[str, str]:
    """FFmpeg options for ``encoder`` with ``--crf``/``--preset`` (EsrError if it takes neither)."""
    options = dict(encoder.fixed_options)
    crf = encoder.default_crf if crf is None else crf
    for flag, value, key in (("--crf", crf, encoder.crf_option), ("--preset", preset, encoder.preset_option)):
        if value is None:
            continue
        if key is None:
            raise EsrError(f"{flag} does not apply to {encoder.name} (lossless)")
        options[key] = str(value)
    if encoder.name == "libsvtav1":  # SVT-AV1 prints its banner to stderr unless told to log errors only
        os.environ.setdefault("SVT_LOG", "1")
    return options


def pixel_formats(encoder: Encoder) -> list[str]:
    """Pixel formats ``encoder`` accepts, in FFmpeg's order of preference."""
    return [fmt.name for fmt in av.codec.Codec(encoder.name, "w").video_formats or []]


def bit_depth(pix_fmt: str) -> int:
    """Bits per sample of ``pix_fmt``'s first component (8 for yuv420p, 10 for yuv420p10le)."""
    return av.VideoFormat(pix_fmt).components[0].bits


def choose_pix_fmt(encoder: Encoder, requested: str | None, source_pix_fmt: str) -> str:
    """The pixel format to encode in.

    ``requested`` (``--pix-fmt``) if the encoder takes it; else, for a lossless encoder, RGB
    (:data:`LOSSLESS_RGB_FORMATS`); else the source's format if the encoder takes it (keeps
    chroma subsampling and bit depth); else 4:2:0 at 10 bits for deeper sources, 8 bits otherwise.
    """
    accepted = pixel_formats(encoder)
    if requested is not None:
        if requested not in accepted:
            raise EsrError(f"--pix-fmt {requested}: {encoder.name} takes {', '.join(accepted)}")
        return requested
    deep = bit_depth(source_pix_fmt) > 8
    candidates = [LOSSLESS_RGB_FORMATS[deep]] if encoder.lossless else []
    candidates += [source_pix_fmt, "yuv420p10le" if deep else "yuv420p", "yuv420p"]
    return next((name for name in candidates if name in accepted), accepted[0])


def even_size(pix_fmt: str, width: int, height: int) -> tuple[int, int]:
    """(width, height) rounded up to a multiple of ``pix_fmt``'s chroma subsampling (2 for 4:2:0, 1 for RGB)."""
    fmt = av.VideoFormat(pix_fmt)
    step_w = 1024 // max(1, fmt.chroma_width(1024))
    step_h = 1024 // max(1, fmt.chroma_height(1024))
    return -(-width // step_w) * step_w, -(-height // step_h) * step_h
