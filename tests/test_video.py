"""`esr upscale` on videos: clips made here with PyAV, the embedded default model (x4), tiny frames.

What is checked against the source: 4x frame size, frame count, per-frame timestamps
(within one tick of the coarser time base), duration, rotation, audio and subtitle
packets byte for byte; with a lossless codec, every frame against `esr upscale` of that
frame extracted as an image; a SIGKILL mid-video then a rerun against a clean run;
Ctrl-C; bad inputs. About 30 s on 2 shared cores.
"""
from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from av.video.reformatter import Interpolation
from PIL import Image as PILImage

from av_clips import mux_silent_aac
from esr.cli import main
from esr.video.join import decode_timestamps
from esr.video.segments import segments_folder

SRT = "1\n00:00:00,200 --> 00:00:00,900\nHello\n\n2\n00:00:01,000 --> 00:00:01,800\nWorld\n"
TO_RGB = {"interpolation": int(Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT)}
"""YUV -> RGB as docs/video.md states esr does it (bicubic chroma, accurate rounding)."""


def picture(index: int, height: int, width: int) -> np.ndarray:
    """A smooth frame with a moving square: every frame differs from the others."""
    y, x = np.mgrid[0:height, 0:width]
    frame = np.stack([(x * 255 // width), (y * 255 // height), np.full_like(x, (index * 37) % 256)], axis=2)
    top, left = (index * 3) % (height - 12), (index * 5) % (width - 12)
    frame[top:top + 12, left:left + 12] = (255 - 7 * index % 256, 40, 200)
    return frame.astype(np.uint8)


def make_clip(path: Path, seconds: float = 2.0, fps: int = 25, size: tuple[int, int] = (64, 48),
              audio: str | None = "aac", vfr: bool = False, rotate: int | None = None, codec: str = "libx264",
              pix_fmt: str = "yuv420p", subtitles: bool = False, bt709_full_range: bool = False) -> Path:
    """A clip: ``seconds`` of frames (``vfr``: gaps of 1, 2, 3 frame periods), optional audio and subtitles,
    untagged (BT.601 limited range) or tagged and converted as BT.709 full range."""
    width, height = size
    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        tick = Fraction(1, fps * 4)
        video.time_base = video.codec_context.time_base = tick
        if rotate is not None:
            video.set_display_rotation(rotate)
        if bt709_full_range:
            context = video.codec_context
            context.colorspace = context.color_primaries = context.color_trc = 1
            context.color_range = 2
        sound = out.add_stream(audio, rate=48000) if audio else None
        subs = None
        if subtitles:
            (path.parent / "subs.srt").write_text(SRT)
            srt = av.open(str(path.parent / "subs.srt"))
            subs = out.add_stream_from_template(srt.streams[0], opaque=True)
        pts, index = 0, 0
        while pts < seconds * fps * 4:
            frame = av.VideoFrame.from_ndarray(picture(index, height, width), format="rgb24")
            if bt709_full_range:
                frame = frame.reformat(format=pix_fmt, dst_colorspace="itu709", dst_color_range="JPEG")
            frame.pts, frame.time_base = pts, tick
            out.mux(video.encode(frame))
            pts += 4 * (1 + index % 3 if vfr else 1)
            index += 1
        out.mux(video.encode(None))
        if sound is not None:
            step = sound.codec_context.frame_size or 960
            for start in range(0, int(48000 * seconds), step):
                samples = 0.2 * np.sin(2 * np.pi * 440 * (np.arange(step) + start) / 48000)
                chunk = av.AudioFrame.from_ndarray(samples.astype(np.float32)[None], format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = 48000, start
                out.mux(sound.encode(chunk))
            out.mux(sound.encode(None))
        if subs is not None:
            for packet in srt.demux(srt.streams[0]):
                if packet.size:
                    packet.stream = subs
                    out.mux(packet)
            srt.close()
    return path


def frames_of(path: Path, **convert) -> list[tuple[Fraction, np.ndarray]]:
    """(presentation time, RGB pixels) of every frame."""
    with av.open(str(path)) as container:
        return [(f.pts * f.time_base, f.to_ndarray(format="rgb24", **convert)) for f in container.decode(video=0)]


def packets_of(path: Path, kind: str) -> list[tuple[Fraction, bytes]]:
    with av.open(str(path)) as container:
        streams = [s for s in container.streams if s.type == kind]
        return [(p.pts * p.time_base, bytes(p)) for p in container.demux(streams) if p.size]


def upscale(*args: str) -> tuple[int, str, str]:
    import io
    from contextlib import redirect_stderr, redirect_stdout

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["upscale", *args, "--quiet"])
    return code, out.getvalue(), err.getvalue()


def hidden_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.startswith(".")]


@pytest.mark.parametrize("name,options", [
    ("cfr.mp4", {}),
    ("vfr.mkv", {"audio": "libopus", "vfr": True, "subtitles": True}),
    ("rotated.mov", {"rotate": 90, "bt709_full_range": True}),
])
def test_clip_keeps_timing_audio_and_metadata(tmp_path, one_thread, name, options):
    src = make_clip(tmp_path / name, **options)
    code, stdout, stderr = upscale(str(src), "-o", str(tmp_path / "out"), "--segment-seconds", "0.5")
    assert code == 0 and stderr == "", stderr
    assert stdout.splitlines()[-1] == "1 upscaled, 0 skipped, 0 failed"
    dest = tmp_path / "out" / name
    source, result = frames_of(src), frames_of(dest)
    assert len(result) == len(source) > 10
    assert all(r.shape == (48 * 4, 64 * 4, 3) for _, r in result)
    with av.open(str(src)) as a, av.open(str(dest)) as b:
        tick = max(a.streams.video[0].time_base, b.streams.video[0].time_base)
        assert all(abs(ts - tr) <= tick for (ts, _), (tr, _) in zip(source, result))
        assert abs(a.duration - b.duration) <= tick * av.time_base
        first_in, first_out = next(a.decode(video=0)), next(b.decode(video=0))
        assert first_out.rotation == first_in.rotation == options.get("rotate", 0)
        tags = ("colorspace", "color_range", "color_primaries", "color_trc")
        assert [getattr(first_out, t) for t in tags] == [getattr(first_in, t) for t in tags]
        if options.get("bt709_full_range"):
            assert [getattr(first_in, t) for t in tags] == [1, 2, 1, 1]
    if options.get("vfr"):
        gaps = {round(float(b - a) * 1000) for (a, _), (b, _) in zip(result, result[1:])}
        assert gaps == {40, 80, 120}
    assert packets_of(dest, "audio") == packets_of(src, "audio") != []
    if options.get("subtitles"):
        assert packets_of(dest, "subtitle") == packets_of(src, "subtitle") != []
    # the upscaled frames follow the source frames (same order, no frame swapped or repeated)
    small = [np.asarray(PILImage.fromarray(r).resize((64, 48), PILImage.Resampling.BOX), float) for _, r in result]
    errors = [[np.abs(s - f).mean() for s in small] for _, f in source]
    assert [int(np.argmin(row)) for row in errors] == list(range(len(source)))
    assert max(row[i] for i, row in enumerate(errors)) < 5  # colours kept (matrix and range applied both ways)
    assert not hidden_files(tmp_path / "out")
    code, stdout, _ = upscale(str(src), "-o", str(tmp_path / "out"))
    assert code == 0 and stdout.splitlines()[-1] == "0 upscaled, 1 skipped, 0 failed"


def test_outscale_and_suffix_apply_to_videos(tmp_path, one_thread):
    src = make_clip(tmp_path / "clip.mp4", seconds=0.4, size=(62, 46))
    code, _, stderr = upscale(str(src), "-o", str(tmp_path / "out"), "--outscale", "1.5", "--suffix", "_x1.5")
    assert code == 0, stderr
    frames = frames_of(tmp_path / "out" / "clip_x1.5.mp4")
    # 93x69 after --outscale; 4:2:0 needs even sizes: one repeated edge column and row
    assert len(frames) == 10 and all(f.shape == (70, 94, 3) for _, f in frames)
    assert all(np.array_equal(f[:, 93], f[:, 92]) or np.abs(f[:, 93].astype(int) - f[:, 92]).max() <= 8
               for _, f in frames)


def test_legacy_rotate_tag_becomes_a_display_matrix(tmp_path, one_thread):
    src = make_clip(tmp_path / "tagged.mkv", seconds=0.2, audio=None)
    with av.open(str(src)) as original, av.open(str(tmp_path / "in.mkv"), "w") as out:
        stream = out.add_stream_from_template(original.streams.video[0], opaque=True)
        stream.metadata["rotate"] = "90"  # clockwise, as FFmpeg before 5.0 wrote it
        for packet in original.demux(original.streams.video[0]):
            if packet.size:
                packet.stream = stream
                out.mux(packet)
    with av.open(str(tmp_path / "in.mkv")) as tagged:
        assert tagged.streams.video[0].metadata.get("ROTATE") == "90"  # Matroska tags are upper case
    code, _, stderr = upscale(str(tmp_path / "in.mkv"), "-o", str(tmp_path / "out"), "--video-container", "mp4")
    assert code == 0, stderr
    with av.open(str(tmp_path / "out" / "in.mp4")) as out:
        assert next(out.decode(video=0)).rotation == -90  # PyAV reports counter-clockwise degrees


def test_lossless_video_frames_equal_the_image_path(tmp_path, one_thread):
    src = make_clip(tmp_path / "clip.mkv", seconds=1.0, audio=None)
    code, _, stderr = upscale(str(src), "-o", str(tmp_path / "video"), "--video-codec", "ffv1",
                              "--segment-seconds", "0.3", "--jobs", "0")
    assert code == 0, stderr
    with av.open(str(tmp_path / "video" / "clip.mkv")) as out:
        assert out.streams.video[0].codec_context.name == "ffv1"
        assert out.streams.video[0].codec_context.pix_fmt == "bgr0"
    stills = tmp_path / "stills"
    stills.mkdir()
    for index, (_, pixels) in enumerate(frames_of(src, **TO_RGB)):
        PILImage.fromarray(pixels).save(stills / f"{index:03d}.png")
    code, _, stderr = upscale(str(stills), "-o", str(tmp_path / "images"))
    assert code == 0, stderr
    video_frames = frames_of(tmp_path / "video" / "clip.mkv")
    images = sorted((tmp_path / "images").iterdir())
    assert len(images) == len(video_frames) == 25
    for image, (_, frame) in zip(images, video_frames):
        reference = np.asarray(PILImage.open(image).convert("RGB"), np.int16)
        assert np.abs(reference - frame).max() <= 1


def test_ten_bit_source_stays_ten_bit(tmp_path, one_thread):
    src = make_clip(tmp_path / "deep.mkv", seconds=0.4, audio=None, pix_fmt="yuv420p10le")
    code, _, stderr = upscale(str(src), "-o", str(tmp_path / "out"))
    assert code == 0, stderr
    with av.open(str(tmp_path / "out" / "deep.mkv")) as out:
        assert out.streams.video[0].codec_context.pix_fmt == "yuv420p10le"
        assert sum(1 for _ in out.decode(video=0)) == 10


def frame_hashes(path: Path) -> list[tuple[Fraction, str]]:
    return [(t, hashlib.sha256(p.tobytes()).hexdigest()) for t, p in frames_of(path)]


def test_sigkill_mid_video_then_rerun_gives_every_frame_once(tmp_path, one_thread):
    src = make_clip(tmp_path / "long.mkv", seconds=4.0, audio="libopus")
    args = ["--video-codec", "ffv1", "--segment-seconds", "0.4", "--quiet"]
    out = tmp_path / "out"
    manifest = segments_folder(out / "long.mkv") / "manifest.json"
    proc = subprocess.Popen([sys.executable, "-m", "esr", "upscale", str(src), "-o", str(out), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if len(json.loads(manifest.read_text())["segments"]) >= 2:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "long.mkv").exists()
    done = json.loads(manifest.read_text())["segments"]
    assert 2 <= len(done) < 10
    # other settings cannot continue these segments
    code, _, stderr = upscale(str(src), "-o", str(out), *args, "--outscale", "2")
    assert code == 1 and "unfinished segments made with other settings" in stderr
    code, stdout, stderr = upscale(str(src), "-o", str(out), *args)
    assert code == 0 and stdout.splitlines()[-1] == "1 upscaled, 0 skipped, 0 failed", stderr
    assert not hidden_files(out)  # segments, manifest and temp files are gone
    code, _, _ = upscale(str(src), "-o", str(tmp_path / "clean"), *args)
    assert code == 0
    resumed, clean = frame_hashes(out / "long.mkv"), frame_hashes(tmp_path / "clean" / "long.mkv")
    assert resumed == clean and len(clean) == 100 and len({h for _, h in clean}) == 100
    assert packets_of(out / "long.mkv", "audio") == packets_of(src, "audio")


@pytest.mark.parametrize("signum,code,line", [(signal.SIGINT, 130, "error: interrupted"),
                                               (signal.SIGTERM, 143, "error: terminated")])
def test_ctrl_c_and_sigterm_leave_no_partial_output(tmp_path, signum, code, line):
    src = make_clip(tmp_path / "clip.mp4", seconds=6.0)
    out = tmp_path / "out"
    manifest = segments_folder(out / "clip.mp4") / "manifest.json"
    proc = subprocess.Popen([sys.executable, "-m", "esr", "upscale", str(src), "-o", str(out), "--quiet",
                             "--segment-seconds", "0.4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if json.loads(manifest.read_text())["segments"]:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.01)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert stderr.strip().splitlines()[-1] == line
    assert stdout.strip().splitlines()[-1] == "0 upscaled, 0 skipped, 0 failed"
    assert not (out / "clip.mp4").exists()
    folder = segments_folder(out / "clip.mp4")
    assert not [p for p in folder.iterdir() if p.name.endswith(".part")]  # the segment in progress is dropped
    assert [p.name for p in out.iterdir()] == [folder.name]  # no output, temp file or claim left


def test_bad_videos_fail_one_line_each_and_the_batch_goes_on(tmp_path, one_thread):
    src = tmp_path / "in"
    src.mkdir()
    make_clip(src / "5_good.mp4", seconds=0.4)
    whole = make_clip(tmp_path / "whole.mp4", seconds=0.4).read_bytes()
    (src / "1_truncated.mp4").write_bytes(whole[: len(whole) // 2])
    with av.open(str(src / "2_audio_only.mp4"), "w") as out:
        mux_silent_aac(out)
    with av.open(str(src / "3_no_frames.mkv"), "w") as out:  # a video stream that never gets a frame
        video = out.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        mux_silent_aac(out)
    with av.open(str(src / "4_unsupported.mkv"), "w") as out:  # AVS2: no decoder in PyAV's FFmpeg
        stream = out.add_mux_stream("avs2", width=64, height=48)
        for index in range(3):
            packet = av.Packet(b"\x00\x00\x01\xb0" + bytes(60))
            packet.stream, packet.time_base, packet.pts, packet.dts = stream, Fraction(1, 25), index, index
            out.mux(packet)
    code, stdout, stderr = upscale(str(src), "-o", str(tmp_path / "out"))
    assert code == 1
    assert stdout.splitlines()[-1] == "1 upscaled, 0 skipped, 4 failed"
    lines = stderr.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("error: ") for line in lines)
    assert "1_truncated.mp4: not a readable video, or truncated" in lines[0]
    assert "2_audio_only.mp4: no video stream (audio only)" in lines[1]
    assert "3_no_frames.mkv: no video frames" in lines[2]
    assert "4_unsupported.mkv: unsupported video codec" in lines[3]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["5_good.mp4"]


def test_missing_encoder_or_wrong_pix_fmt_is_one_line(tmp_path, monkeypatch):
    import esr.video.codecs as codecs

    make_clip(tmp_path / "clip.mp4", seconds=0.2, audio=None)
    monkeypatch.setattr(codecs, "encoder_exists", lambda name: name != "libsvtav1")
    code, _, stderr = upscale(str(tmp_path / "clip.mp4"), "-o", str(tmp_path / "out"), "--video-codec", "libsvtav1")
    assert code == 2 and stderr.strip() == ("error: --video-codec libsvtav1: not in this FFmpeg build "
                                            "(available: libx264, libx265, libvpx-vp9, ffv1)")
    code, _, stderr = upscale(str(tmp_path / "clip.mp4"), "-o", str(tmp_path / "out"), "--pix-fmt", "rgb24")
    assert code == 1 and "--pix-fmt rgb24: libx264 takes yuv420p" in stderr
    code, _, stderr = upscale(str(tmp_path / "clip.mp4"), "-o", str(tmp_path / "out"), "--video-container", "webm",
                              "--video-codec", "libx264")
    assert code == 1 and "webm cannot hold libx264" in stderr


@pytest.mark.parametrize("order", [[0, 1, 2, 3, 4, 5], [0, 3, 1, 2, 6, 4, 5], [0, 4, 2, 1, 3, 8, 6, 5, 7]])
def test_decode_timestamps_increase_and_never_pass_pts(order):
    pts = [512 * p for p in order]
    dts = decode_timestamps(pts)
    assert all(a < b for a, b in zip(dts, dts[1:]))
    assert all(d <= p for d, p in zip(dts, pts))
    if order == sorted(order):
        assert dts == pts
