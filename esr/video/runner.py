"""One video from source to output: probe, resume, decode -> upscale -> encode in segments, join, rename.

With ``--jobs N > 0`` decoding and the model each run in a worker thread, ``N + 1`` frames
ahead at most, while this thread encodes; ``--jobs 0`` does one step after another. On
any failure or interrupt the segment in progress is dropped and the finished ones stay
for the next run; the output only appears, complete, when the joined file is renamed.
"""
from __future__ import annotations

from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from esr.errors import EXIT_FAILED, EsrError
from esr.fileio import check_output, write_output
from esr.image_io import check_pixels
from esr.video.codecs import choose_pix_fmt, encoder_for, encoder_options
from esr.video.encode import EncodeSpec
from esr.video.join import join_segments
from esr.video.options import Container, VideoOptions, output_container
from esr.video.probe import SourceFrame, VideoSource, decode_frames, probe_video
from esr.video.segments import SegmentStore, SegmentWriter, source_fingerprint
from esr.video.stages import in_background

if TYPE_CHECKING:
    from esr.upscale_batch import BatchOptions, Task
    from esr.upscaler import Upscaler


def model_identity(model: str | None) -> list[Any]:
    """The ``--model`` value, with size and mtime when it is a file (a retrained checkpoint is another model)."""
    if model is not None and Path(model).is_file():
        stat = Path(model).stat()
        return [str(Path(model).resolve()), stat.st_size, stat.st_mtime_ns]
    return [model]


def run_identity(source: VideoSource, options: BatchOptions, spec: EncodeSpec) -> dict[str, Any]:
    """Everything that must match for a rerun to continue the segments of an earlier one."""
    return {
        "source": source_fingerprint(source.path),
        "model": model_identity(options.model), "backend": options.backend, "precision": options.precision,
        "tile": options.tile, "tile_pad": options.tile_pad, "outscale": options.outscale,
        "codec": spec.encoder.name, "codec_options": spec.options, "pix_fmt": spec.pix_fmt,
    }


def upscaled_frames(frames: Iterator[SourceFrame], upscaler: Upscaler) -> Iterator[SourceFrame]:
    """``frames`` with their pixels upscaled."""
    with closing(frames):
        for frame in frames:
            yield replace(frame, pixels=upscaler.upscale_array(frame.pixels))


def encode_remaining(source: VideoSource, upscaler: Upscaler, spec: EncodeSpec, store: SegmentStore,
                     segment_seconds: float, jobs: int, progress: Callable[[int], None]) -> None:
    """Upscale and encode every frame from ``store.next_frame`` on into committed segments."""
    frames: Iterator[SourceFrame] = decode_frames(source, start=store.next_frame)
    if jobs:
        frames = in_background(frames, jobs + 1, "esr-decode")
    upscaled = upscaled_frames(frames, upscaler)
    if jobs:
        upscaled = in_background(upscaled, jobs + 1, "esr-model")
    writer = SegmentWriter(store, spec, segment_seconds)
    try:
        with closing(upscaled):
            for frame in upscaled:
                writer.add(frame)
                progress(1)
        writer.finish()
    except BaseException:
        writer.abort()
        raise


def encode_spec(source: VideoSource, container: Container, video: VideoOptions, src: Path) -> EncodeSpec:
    """How ``source`` is encoded into ``container`` with the ``--video-*`` settings; EsrError naming ``src``."""
    try:
        encoder = encoder_for(container, video.codec)
        return EncodeSpec(encoder, encoder_options(encoder, video.crf, video.preset),
                          choose_pix_fmt(encoder, video.pix_fmt, source.pix_fmt),
                          source.time_base, source.rate, source.colour, source.sample_aspect_ratio)
    except EsrError as err:
        raise EsrError(f"{src}: {err}", exit_code=EXIT_FAILED) from None


def upscale_video(task: Task, upscaler: Upscaler, options: BatchOptions) -> None:
    """Upscale video ``task.src`` into ``task.dest`` (see the module docstring); EsrError on bad input.

    The progress bar (frames, frames/s, ETA) shows only on a terminal, as the image bar does.
    """
    from tqdm import tqdm

    overwrite = options.overwrite or task.replace
    check_output(task.dest, [task.src], overwrite, EXIT_FAILED)  # before any work
    source = probe_video(task.src)
    check_pixels(task.src, (source.width, source.height), options.max_pixels)
    container = output_container(task.src, options.video)
    spec = encode_spec(source, container, options.video, task.src)
    store = SegmentStore.open(task.dest, run_identity(source, options, spec), options.overwrite)
    if not store.complete:
        with tqdm(total=source.frames or None, initial=store.next_frame, unit="frame", desc=task.src.name,
                  disable=True if options.quiet else None, dynamic_ncols=True, leave=False) as bar:
            encode_remaining(source, upscaler, spec, store, options.video.segment_seconds, options.jobs, bar.update)
    write_output(task.dest, lambda tmp: join_segments(store.files, source, container, tmp), [task.src], overwrite,
                 EXIT_FAILED)
    store.remove()
