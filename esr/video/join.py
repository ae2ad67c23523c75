"""Segments + the source's other streams -> the output file, by copying packets (no re-encoding).

Video packets keep the pts their frames had in the source (so variable frame rate and
the time base survive). Decode timestamps are rebuilt over the whole joined stream
(:func:`decode_timestamps`): each segment's encoder started its own, which overlap at the
joins when the codec reorders frames (B-frames). Audio, subtitle and data streams (and
other video streams, such as cover art) are copied packet by packet with their own
timestamps; packets of all streams are interleaved by time. Container and stream
metadata, chapters and the display matrix (rotation) are copied. A stream the output
container cannot hold is left out with a warning.
"""
from __future__ import annotations

import heapq
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av

from esr.video.options import Container
from esr.video.probe import VideoSource, open_input

STALE_TAGS = {"duration", "bps", "number_of_frames", "number_of_bytes", "encoder", "_statistics_tags",
              "_statistics_writing_app", "_statistics_writing_date_utc", "rotate"}
"""Stream tags describing the old encoding; they are not copied to the upscaled video stream."""


def decode_timestamps(pts: list[int]) -> list[int]:
    """Strictly increasing decode timestamps for packets in decode order with presentation times ``pts``.

    With ``D = max(j - rank(pts[j]))`` (the reorder depth), packet ``j`` gets the ``(j - D)``-th
    smallest pts, so ``dts <= pts`` everywhere; the first ``D`` packets count down from the
    smallest pts one tick at a time. Without reordering, dts equals pts.
    """
    order = sorted(pts)
    rank = {value: position for position, value in enumerate(order)}
    depth = max([0] + [j - rank[value] for j, value in enumerate(pts)])
    return [order[j - depth] if j >= depth else order[0] - (depth - j) for j in range(len(pts))]


def _in_time_base(value: int | None, source: Fraction, target: Fraction) -> int:
    return 0 if value is None else round(value * source / target)


def _segment_timing(paths: list[Path], time_base: Fraction) -> list[int]:
    """Presentation timestamps (in ``time_base``) of every video packet of the segments, in decode order."""
    pts: list[int] = []
    for path in paths:
        with av.open(str(path)) as segment:
            stream = segment.streams.video[0]
            pts += [_in_time_base(p.pts, stream.time_base, time_base) for p in segment.demux(stream) if p.size]
    return pts


def _video_packets(paths: list[Path], out_stream, time_base: Fraction, pts: list[int],
                   dts: list[int]) -> Iterator[tuple[Fraction, int, av.Packet]]:
    index = 0
    for path in paths:
        with av.open(str(path)) as segment:
            stream = segment.streams.video[0]
            for packet in segment.demux(stream):
                if not packet.size:
                    continue
                duration = _in_time_base(packet.duration, stream.time_base, time_base)
                packet.stream = out_stream
                packet.time_base = time_base
                packet.pts, packet.dts, packet.duration = pts[index], dts[index], duration
                index += 1
                yield dts[index - 1] * time_base, 0, packet


def _copied_packets(source: av.container.InputContainer,
                    mapping: dict[int, av.stream.Stream]) -> Iterator[tuple[Fraction, int, av.Packet]]:
    if not mapping:
        return
    last: dict[int, Fraction] = {}
    for packet in source.demux([source.streams[i] for i in mapping]):
        if not packet.size and packet.dts is None and packet.pts is None:
            continue  # the demuxer's end-of-stream marker
        index = packet.stream.index
        stamp = packet.dts if packet.dts is not None else packet.pts
        key = stamp * packet.time_base if stamp is not None else last.get(index, Fraction(0))
        last[index] = key
        packet.stream = mapping[index]
        yield key, 1, packet


def join_segments(paths: list[Path], source: VideoSource, container: Container, target: str) -> None:
    """Write the joined output to ``target`` (a temp path: the format is given by ``container``).

    A stream the container cannot hold is left out with a :func:`warnings.warn` naming it.
    """
    time_base = source.time_base
    pts = _segment_timing(paths, time_base)
    dts = decode_timestamps(pts)
    with open_input(source.path) as src, av.open(str(paths[0])) as first, \
            av.open(target, "w", format=container.muxer) as out:
        out.metadata.update({k: v for k, v in src.metadata.items() if k.lower() not in STALE_TAGS})
        video = out.add_stream_from_template(first.streams.video[0], opaque=True)
        video.time_base = time_base
        if source.display_matrix is not None:
            video.set_display_matrix(source.display_matrix)
        source_video = src.streams[source.stream_index]
        video.metadata.update({k: v for k, v in source_video.metadata.items() if k.lower() not in STALE_TAGS})
        video.disposition = source_video.disposition
        mapping = {}
        for stream in src.streams:
            if stream.index == source.stream_index:
                continue
            try:
                copy = out.add_stream_from_template(stream, opaque=True)
                copy.metadata.update(stream.metadata)
                copy.disposition = stream.disposition
                mapping[stream.index] = copy
            except (ValueError, av.error.FFmpegError) as err:
                warnings.warn(f"{source.path}: stream #{stream.index} ({stream.type}) not copied: {err}", stacklevel=2)
        if src.chapters():
            out.set_chapters(src.chapters())
        for _, _, packet in heapq.merge(_video_packets(paths, video, time_base, pts, dts),
                                        _copied_packets(src, mapping), key=lambda item: (item[0], item[1])):
            out.mux(packet)
