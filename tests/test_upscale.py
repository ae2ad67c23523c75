"""Upscaler tiling maths with a fake backend, and `esr upscale` batch behaviour end to end (default model)."""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from esr.cli import main
from esr.cli.upscale_cmd import EPILOG
from esr.descriptor import ModelDescriptor
from esr.upscaler import (BYTES_PER_INPUT_PIXEL, DEFAULT_MEMORY_BUDGET, Upscaler, add_weighted_, axis_spans,
                          axis_weights, quantise_into)

RNG = np.random.default_rng(3)


class NearestBackend:
    """x2 nearest-neighbour upsampling: every output pixel depends on one input pixel only."""

    name, device, precision = "nearest", "cpu", "fp32"

    def __init__(self, max_hw: tuple[int, int] | None = None, oom_above: int | None = None,
                 tiling: str = "supported") -> None:
        self.max_hw, self.oom_above, self.calls = max_hw, oom_above, []
        self.descriptor = ModelDescriptor(name="nearest", arch="nearest", scale=2, tiling=tiling)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(x.shape[-2:]))
        if self.max_hw and (x.shape[-2] > self.max_hw[0] or x.shape[-1] > self.max_hw[1]):
            raise RuntimeError(f"input {tuple(x.shape)} exceeds the profile")
        if self.oom_above and max(x.shape[-2:]) > self.oom_above:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


@pytest.mark.parametrize("length,tile,pad", [(90, 64, 16), (200, 64, 16), (37, 8, 3), (64, 64, 16), (50, 7, 0)])
def test_tiles_cover_and_weights_sum_to_one(length, tile, pad):
    spans = axis_spans(length, tile, pad)
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert len({end - start for start, end in spans}) == 1  # one tile shape (static engines)
    assert all(b[0] <= a[1] - 2 * pad for a, b in zip(spans, spans[1:]))  # overlap >= 2*pad
    total = torch.zeros(length * 3)
    for (start, end), weight in zip(spans, axis_weights(spans, 3, pad)):
        assert (weight > 0).all()
        total[start * 3:end * 3] += weight
    torch.testing.assert_close(total, torch.ones_like(total))


@pytest.mark.parametrize("rows,cols", [((90, 64, 16), (200, 64, 16)), ((37, 8, 3), (64, 64, 16)), ((50, 7, 0), (90, 20, 16))])
def test_weighting_only_the_overlaps_equals_the_whole_window(rows, cols):
    row_spans, col_spans = axis_spans(*rows), axis_spans(*cols)
    for row_w in axis_weights(row_spans, 2, rows[2]):
        for col_w in axis_weights(col_spans, 2, cols[2]):
            out = torch.rand(3, len(row_w), len(col_w))
            start = torch.rand(3, len(row_w), len(col_w))
            target, kept = start.clone(), out.clone()
            add_weighted_(target, out, row_w, col_w)
            torch.testing.assert_close(target, start + out * row_w[:, None] * col_w[None, :], rtol=0, atol=1e-6)
            assert torch.equal(out, kept)  # a backend's output is only read


def tie_values(max_value: float) -> np.ndarray:
    """float32 values on and next to every k + 1/2 tie of ``x * max_value`` (k = -2 .. max + 1), then noise
    over [-0.05, 1.05]: where rounding and saturation could differ."""
    centres = ((np.arange(-2, int(max_value) + 2) + 0.5) / max_value).astype(np.float32)
    near = (centres.view(np.int32)[:, None] + np.arange(-3, 4)[None, :]).astype(np.int32).view(np.float32)
    return np.concatenate([near.ravel(), RNG.random(20000, dtype=np.float32) * 1.1 - 0.05])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("layout", ["planar", "channels_last", "cropped"])
def test_quantising_equals_clamp_multiply_round_cast(dtype, channels, layout):
    """OpenCV's one-pass quantisation gives exactly what torch's clamp, multiply, round (half to even) and cast give,
    for each band layout a backend or the blending buffer yields, written only into its rows of the output."""
    max_value = float(np.iinfo(dtype).max)
    values = tie_values(max_value)
    width = 61
    values = np.resize(values, (channels, len(values) // (channels * width) + 1, width)).astype(np.float32)
    band = torch.from_numpy(values)
    if layout == "channels_last":
        band = band.permute(1, 2, 0).contiguous().permute(2, 0, 1)
    elif layout == "cropped":
        band = torch.cat([band, band], dim=2)[:, :, :width]
    expected = band.clamp(0, 1).mul(max_value).round().permute(1, 2, 0).numpy().astype(dtype)
    out = np.full((band.shape[1] + 4, width, channels), 7, dtype)
    quantise_into(band, max_value, out[2:-2])
    np.testing.assert_array_equal(out[2:-2], expected)
    assert (out[:2] == 7).all() and (out[-2:] == 7).all()


@pytest.mark.parametrize("band_dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_quantising_takes_the_band_of_any_float_dtype(band_dtype):
    """A custom backend may return float64, bf16 or fp16: quantised as its float32 value (OpenCV takes neither)."""
    band = torch.from_numpy(RNG.random((3, 9, 11), dtype=np.float32) * 1.2 - 0.1).to(band_dtype)
    out = np.zeros((9, 11, 3), np.uint8)
    quantise_into(band, 255.0, out)
    expected = band.float().clamp(0, 1).mul(255).round().permute(1, 2, 0).numpy().astype(np.uint8)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_tiled_equals_untiled_for_a_local_model(dtype):
    pixels = RNG.integers(0, np.iinfo(dtype).max + 1, (53, 71, 3), dtype=dtype)
    backend = NearestBackend()
    whole = Upscaler(backend).upscale_array(pixels)
    tiled = Upscaler(backend, tile=16, tile_pad=4).upscale_array(pixels)
    assert max(backend.calls[1:]) <= (24, 24) and len(backend.calls) > 4
    np.testing.assert_array_equal(whole, np.repeat(np.repeat(pixels, 2, 0), 2, 1))
    np.testing.assert_array_equal(tiled, whole)
    x = torch.from_numpy(pixels.astype(np.float32) / np.iinfo(dtype).max).permute(2, 0, 1)[None]
    tiled_tensor = Upscaler(backend, tile=16, tile_pad=4).upscale_tensor(x)
    torch.testing.assert_close(tiled_tensor, x.repeat_interleave(2, 2).repeat_interleave(2, 3))


def test_backend_size_limit_caps_the_tile():
    backend = NearestBackend(max_hw=(40, 40))
    out = Upscaler(backend, tile=0, tile_pad=6).upscale_array(RNG.integers(0, 256, (100, 90, 3), dtype=np.uint8))
    assert out.shape == (200, 180, 3) and max(max(c) for c in backend.calls) <= 40


def test_out_of_memory_halves_the_tile_and_retries():
    backend = NearestBackend(oom_above=60)
    pixels = RNG.integers(0, 256, (100, 100, 3), dtype=np.uint8)
    with pytest.warns(UserWarning, match="out of memory"):
        out = Upscaler(backend, tile=0, tile_pad=2).upscale_array(pixels)
    np.testing.assert_array_equal(out, np.repeat(np.repeat(pixels, 2, 0), 2, 1))
    assert backend.calls[0] == (100, 100) and max(max(c) for c in backend.calls[1:]) <= 60


class StreamedNearestBackend(NearestBackend):
    """:class:`NearestBackend` with two streams: ``run_streamed`` sleeps a little, in shuffled order, and records
    how many of its calls ran at once."""

    streams = 2

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.lock, self.running, self.most_at_once, self.streamed, self.fail_at = threading.Lock(), 0, 0, 0, fail_at

    def run_streamed(self, x: torch.Tensor) -> torch.Tensor:
        with self.lock:
            self.running += 1
            self.streamed += 1
            self.most_at_once = max(self.most_at_once, self.running)
            number = self.streamed
        try:
            time.sleep(0.001 * (number * 7 % 5))  # finish out of order
            if number == self.fail_at:
                raise FloatingPointError("model output has NaN/Inf")
            return NearestBackend.__call__(self, x)
        finally:
            with self.lock:
                self.running -= 1


def test_streamed_tiles_blend_to_the_same_output_at_most_streams_at_once():
    pixels = RNG.integers(0, 256, (97, 83, 3), dtype=np.uint8)
    streamed = StreamedNearestBackend()
    out = Upscaler(streamed, tile=16, tile_pad=4, tile_streams=2).upscale_array(pixels)
    np.testing.assert_array_equal(out, Upscaler(NearestBackend(), tile=16, tile_pad=4).upscale_array(pixels))
    assert streamed.streamed == len(streamed.calls) > 20 and streamed.most_at_once == 2
    assert Upscaler(streamed, tile_streams=2).upscale_array(pixels[:20, :20]).shape == (40, 40, 3)  # one pass
    assert streamed.streamed == len(streamed.calls) - 1  # ... is a plain call


@pytest.mark.parametrize("wanted, expected", [(1, 1), (2, 2), (8, 2)])
def test_tile_streams_are_asked_for_and_capped_by_the_backend(wanted, expected):
    """One tile at a time unless more are asked for; never more at once than the backend's streams; a backend
    without streams runs one at a time whatever is asked."""
    streamed = StreamedNearestBackend()
    upscaler = Upscaler(streamed, tile=16, tile_pad=4, tile_streams=wanted)
    upscaler.upscale_array(RNG.integers(0, 256, (97, 83, 3), dtype=np.uint8))
    assert upscaler.streams == expected
    assert streamed.streamed == (0 if expected == 1 else len(streamed.calls))
    assert Upscaler(NearestBackend(), tile=16, tile_streams=wanted).streams == 1
    with pytest.raises(ValueError, match="tile_streams"):
        Upscaler(streamed, tile_streams=0)


def test_a_failing_streamed_tile_fails_the_image_after_the_running_ones_end():
    streamed = StreamedNearestBackend(fail_at=5)
    with pytest.raises(FloatingPointError):
        Upscaler(streamed, tile=16, tile_pad=4, tile_streams=2).upscale_array(
            RNG.integers(0, 256, (97, 83, 3), dtype=np.uint8))
    assert streamed.running == 0 and streamed.streamed <= 5 + streamed.streams


def test_auto_tile_rule_follows_the_memory_budget():
    upscaler = Upscaler(NearestBackend(), tile=0, tile_pad=16, memory_budget=512 * 2**20)
    assert upscaler.tile_for(300, 300) == 0  # 300*300*4096 B < 512 MiB: one pass
    assert upscaler.tile_for(4000, 3000) == 362 - 32  # isqrt(512 MiB / 4096) - 2*pad
    # the rule --help states is the rule the code applies
    assert f"H*W*{BYTES_PER_INPUT_PIXEL} bytes <= {DEFAULT_MEMORY_BUDGET // 2**20} MiB" in EPILOG
    assert f"- 2*pad = {Upscaler(NearestBackend()).tile_for(4000, 3000)} px (pad 16)" in EPILOG.replace("\n", " ")
    assert Upscaler(StreamedNearestBackend(), tile=0, tile_pad=16).tile_for(4000, 3000) == 362 - 32  # same tiles


@pytest.mark.parametrize("tiling", ["internal", "discouraged"])
def test_descriptor_tiling_is_honoured(tiling):
    """A model that tiles itself (or should not be tiled) runs in one pass unless a size limit forces tiles."""
    with pytest.warns(UserWarning, match=f"tiling is {tiling}"):
        upscaler = Upscaler(NearestBackend(tiling=tiling), tile=16, tile_pad=4, memory_budget=1024)
    assert upscaler.tile_for(100, 90) == 0  # neither --tile nor the memory budget cuts it
    limited = Upscaler(NearestBackend(max_hw=(40, 40), tiling=tiling), tile=0, tile_pad=4)
    assert limited.tile_for(100, 90) == 32  # a static shape still does


# ----- esr upscale end to end (embedded default model, tiny images) -----

def photo(h: int = 16, w: int = 20) -> np.ndarray:
    return cv2.GaussianBlur(RNG.integers(0, 256, (h, w, 3), dtype=np.uint8), (5, 5), 1.5)


def upscale(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["upscale", *args, "--quiet"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_each_image_kind_through_the_cli(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    base = photo()
    PILImage.fromarray(base).save(src / "rgb.png")
    cv2.imwrite(str(src / "rgb16.png"), base[..., ::-1].astype(np.uint16) * 257)
    cv2.imwrite(str(src / "gray.png"), base[..., 0])
    alpha = np.zeros((16, 20), np.uint8)
    alpha[:, :10] = 255
    PILImage.fromarray(np.dstack([base, alpha]), "RGBA").save(src / "rgba.png")
    PILImage.fromarray(base).convert("P", palette=PILImage.Palette.ADAPTIVE, colors=8).save(src / "palette.png")
    PILImage.fromarray(base).convert("CMYK").save(src / "cmyk.jpg", quality=95)
    rotated = PILImage.fromarray(base)
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(src / "exif.jpg", exif=exif)
    code, out, err = upscale(capsys, str(src), "-o", str(tmp_path / "out"))
    assert code == 0 and err == ""
    assert out.strip().splitlines()[-1] == "7 upscaled, 0 skipped, 0 failed"
    read = {p.stem: cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in (tmp_path / "out").iterdir()}
    assert sorted(read) == ["cmyk", "exif", "gray", "palette", "rgb", "rgb16", "rgba"]
    assert read["rgb"].shape == (64, 80, 3) and read["rgb"].dtype == np.uint8
    assert read["rgb16"].dtype == np.uint16 and read["rgb16"].shape == (64, 80, 3)
    # 16-bit path and 8-bit path agree on an image that is exactly representable in both
    assert np.abs(read["rgb16"].astype(float) / 257 - read["rgb"]).max() <= 1.0
    assert read["gray"].shape == (64, 80)
    assert read["rgba"].shape == (64, 80, 4)
    assert read["rgba"][:, :32, 3].min() >= 250 and read["rgba"][:, 48:, 3].max() <= 5  # alpha upscaled, kept
    assert read["palette"].shape == (64, 80, 3) and read["cmyk"].shape == (64, 80, 3)
    assert read["exif"].shape == (80, 64, 3)  # orientation 6 applied before upscaling


def test_outscale_is_applied_once(tmp_path, capsys):
    PILImage.fromarray(photo(15, 21)).save(tmp_path / "a.png")
    code, _, _ = upscale(capsys, str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--outscale", "2.5")
    assert code == 0
    assert cv2.imread(str(tmp_path / "out" / "a.png")).shape == (38, 52, 3)  # round(15*2.5), round(21*2.5)


def test_resume_skips_existing_and_overwrite_replaces(tmp_path, capsys):
    for name in "abc":
        PILImage.fromarray(photo()).save(tmp_path / f"{name}.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "b_x4.png").write_bytes(b"user's own file")
    inputs = [str(tmp_path / f"{n}.png") for n in "abc"]
    code, stdout, _ = upscale(capsys, *inputs, "-o", str(out), "--suffix", "_x4")
    assert code == 0 and stdout.splitlines()[-1] == "2 upscaled, 1 skipped, 0 failed"
    assert (out / "b_x4.png").read_bytes() == b"user's own file"
    first = (out / "a_x4.png").stat().st_mtime_ns
    code, stdout, _ = upscale(capsys, *inputs, "-o", str(out), "--suffix", "_x4")
    assert code == 0 and stdout.splitlines()[-1] == "0 upscaled, 3 skipped, 0 failed"
    assert (out / "a_x4.png").stat().st_mtime_ns == first
    code, stdout, _ = upscale(capsys, *inputs, "-o", str(out), "--suffix", "_x4", "--overwrite")
    assert code == 0 and stdout.splitlines()[-1] == "3 upscaled, 0 skipped, 0 failed"
    assert cv2.imread(str(out / "b_x4.png")).shape == (64, 80, 3)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_bad_files_in_the_middle_of_a_batch(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    PILImage.fromarray(photo()).save(src / "1_good.png")
    PILImage.fromarray(photo(64, 64)).save(tmp_path / "whole.png")
    (src / "2_corrupt.png").write_bytes((tmp_path / "whole.png").read_bytes()[:3000])
    (src / "3_empty.png").write_bytes(b"")
    (src / "4_text.jpg").write_text("not an image at all")
    PILImage.fromarray(photo()).save(src / "5_good.png")
    code, out, err = upscale(capsys, str(src), str(tmp_path / "missing.png"), "-o", str(tmp_path / "out"))
    assert code == 1
    assert out.splitlines()[-1] == "2 upscaled, 0 skipped, 4 failed"
    lines = err.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("error: ") for line in lines)
    for name in ("2_corrupt.png", "3_empty.png", "4_text.jpg", "missing.png"):
        assert sum(name in line for line in lines) == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["1_good.png", "5_good.png"]


def test_unwritable_outdir_is_a_clear_usage_error(tmp_path, capsys):
    PILImage.fromarray(photo()).save(tmp_path / "a.png")
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    code, out, err = upscale(capsys, str(tmp_path / "a.png"), "-o", str(blocker / "out"))
    assert code == 2 and out == ""
    assert err.strip() == f"error: {blocker / 'out'}: output folder is not writable (Not a directory)"


def test_usage_errors_exit_2(tmp_path, capsys):
    assert main(["upscale", "x.png", "-o", str(tmp_path), "--tile", "-1"]) == 2
    assert main(["upscale", "x.png", "-o", str(tmp_path), "--tile-streams", "0"]) == 2
    assert capsys.readouterr().err.strip().endswith("error: --tile-streams must be >= 1")
    assert main(["upscale", "x.png", "-o", str(tmp_path), "--model", str(tmp_path / "nope.pth")]) == 2
    with pytest.raises(SystemExit) as info:
        main(["upscale", "x.png"])  # no -o
    assert info.value.code == 2


def test_recursive_mirrors_the_tree_and_output_never_replaces_input(tmp_path, capsys):
    (tmp_path / "in" / "sub" / "deeper").mkdir(parents=True)
    for rel in ("top.png", "sub/one.png", "sub/deeper/two.png"):
        PILImage.fromarray(photo()).save(tmp_path / "in" / rel)
    code, out, _ = upscale(capsys, str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--recursive", "--ext", "jpg")
    assert code == 0 and out.splitlines()[-1] == "3 upscaled, 0 skipped, 0 failed"
    made = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.jpg"))
    assert made == ["sub/deeper/two.jpg", "sub/one.jpg", "top.jpg"]
    code, out, err = upscale(capsys, str(tmp_path / "in" / "top.png"), "-o", str(tmp_path / "in"), "--overwrite")
    assert code == 1 and "would replace the input" in err
    assert cv2.imread(str(tmp_path / "in" / "top.png")).shape == (16, 20, 3)


@pytest.mark.parametrize("signum,code,line", [(signal.SIGINT, 130, "error: interrupted"),
                                               (signal.SIGTERM, 143, "error: terminated")])
def test_ctrl_c_and_sigterm_leave_no_partial_file(tmp_path, signum, code, line):
    src = tmp_path / "in"
    src.mkdir()
    for index in range(40):
        PILImage.fromarray(photo(96, 96)).save(src / f"{index:02d}.png")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "esr", "upscale", str(src), "-o", str(out), "--quiet",
                             "--backend", "torch"],  # starts at once (no auto measurement) on a loaded machine
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out.is_dir() and any(out.glob("*.png"))):
        time.sleep(0.05)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert stderr.strip().splitlines()[-1] == line
    written = sorted(out.iterdir())
    assert 0 < len(written) < 40
    assert all(not p.name.startswith(".") for p in written)  # no temp or claim file survives
    for path in written:  # every output is complete
        assert cv2.imread(str(path)).shape == (384, 384, 3)
    summary = stdout.strip().splitlines()[-1]
    assert summary == f"{len(written)} upscaled, 0 skipped, 0 failed"


def test_an_interrupt_while_waiting_for_a_write_still_counts_it(tmp_path, monkeypatch):
    """Ctrl-C lands while the main thread waits for a write that then completes: the file is written, so the
    summary counts it (it was lost when the main thread counted after the wait)."""
    import threading

    import esr.upscale_batch as batch

    (tmp_path / "in").mkdir()
    PILImage.fromarray(photo()).save(tmp_path / "in" / "a.png")
    real_write = batch.write_output

    def write_then_interrupt(result, task, options):
        path = real_write(result, task, options)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # the main thread waits in finish_write
        time.sleep(0.5)  # this write ends after the interrupt is raised there
        return path

    class Identity:
        def upscale_image(self, image, progress=None):
            return image

    monkeypatch.setattr(batch, "write_output", write_then_interrupt)
    options = batch.BatchOptions(inputs=[str(tmp_path / "in")], outdir=str(tmp_path / "out"), jobs=1, quiet=True)
    counts = batch.Counts()
    with pytest.raises(KeyboardInterrupt):
        batch.run_pipeline(batch.plan_batch(options).todo, Identity(), options, counts, say=lambda line: None)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.png"]
    assert counts.summary() == "1 upscaled, 0 skipped, 0 failed"


def test_auto_times_the_size_small_images_run_at(tmp_path):
    """A batch of small images: auto times a 128 or 256 px square, not the 362 px default tile (headers only)."""
    from esr.upscale_batch import BatchOptions, Task, timing_tile_hw

    def images(*sizes: tuple[int, int]) -> list[Task]:
        tasks = []
        for index, (width, height) in enumerate(sizes):
            path = tmp_path / f"{index}-{width}x{height}.png"
            PILImage.new("RGB", (width, height)).save(path)
            tasks.append(Task(path, tmp_path / "out" / path.name))
        return tasks

    options = BatchOptions(inputs=[], outdir=tmp_path / "out")
    assert timing_tile_hw(images((100, 80), (57, 128)), options) == (128, 128)
    assert timing_tile_hw(images((100, 80), (250, 190)), options) == (256, 256)
    assert timing_tile_hw(images((100, 80), (400, 300)), options) is None  # tiles of the default size
    assert timing_tile_hw(images((64, 64)) + [Task(tmp_path / "a.mp4", tmp_path / "b.mp4", kind="video")],
                          options) is None
    assert timing_tile_hw(images((64, 64)), BatchOptions(inputs=[], outdir=tmp_path, tile=200)) is None  # --tile's own
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    assert timing_tile_hw([Task(broken, tmp_path / "out" / "broken.png")], options) is None
