"""Fuzz: malformed files of every kind through every esr command that reads them.

Generators (seeded: each case is one structural fault, so a fixed list keeps the run deterministic
and CI-sized; a property-testing library would add shrinking that a single-fault file does not need)
make images, checkpoints, ONNX graphs, YAML options and videos that are truncated, garbage, empty,
lying in their headers or inconsistent. Each is run through the commands that accept it, in-process
(``esr.cli.main``), and a few through the real console script. Every run must:

- exit with a code documented for that command (docs/errors.md), never 0 for a bad input, never 70;
- print exactly one line on stderr (``error: ...`` naming the file), no traceback;
- create no file outside its OUTDIR and change no file that existed before (sha256 and mtime).

A planted pickle that would create a marker file when unpickled rides along as one of the
checkpoints: the marker must never appear. About 20 s on 2 shared cores.
"""
from __future__ import annotations

import hashlib
import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Callable

import av
import numpy as np
import onnx
import pytest
import torch
from onnx import helper
from PIL import Image as PILImage

from esr.archs import build_model
from av_clips import mux_silent_aac
from esr.cli import main
from esr.loading import save_checkpoint

SEED = 12
EXIT_CODES = {  # docs/errors.md: what each command may exit with for a bad input
    "upscale": {1, 2}, "eval": {1, 2}, "bench": {1, 2}, "analyze": {2}, "export": {2}, "quantize": {2}, "train": {2},
}


def rng(name: str) -> np.random.Generator:
    return np.random.default_rng([SEED, zlib.crc32(name.encode())])


# ----- generators: each writes one bad file at the path it is given -----

def good_png(size: tuple[int, int] = (24, 20), seed: str = "png") -> bytes:
    buffer = io.BytesIO()
    pixels = rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    PILImage.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def good_jpeg() -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(rng("jpeg").integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_header_png() -> bytes:
    """A valid PNG header declaring 20000 x 20000 RGB pixels, with a few bytes of pixel data."""
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + png_chunk(b"IEND", b""))


def animated_gif() -> bytes:
    frames = [PILImage.fromarray(np.full((20, 24, 3), 40 * i, np.uint8)) for i in range(4)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buffer.getvalue()


def half(data: bytes) -> bytes:
    return data[: len(data) // 2]


IMAGES: dict[str, Callable[[], bytes]] = {
    "zero_byte.png": lambda: b"",
    "garbage.png": lambda: rng("garbage.png").bytes(3000),
    "truncated.png": lambda: half(good_png((64, 48))),
    "truncated.jpg": lambda: good_jpeg()[:200],
    "huge_header.png": huge_header_png,
    "wrong_extension.png": lambda: b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n%%EOF\n",
    "animated_corrupt.gif": lambda: animated_gif()[:-60],
    "header_only.gif": lambda: animated_gif()[:40],
}


def rlfn_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return build_model("rlfn", 4, feature_channels=8, mid_channels=8, num_blocks=1, esa_channels=4).state_dict()


def saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


class Planted:
    """Unpickling this calls ``open(marker, "w")``: the marker file proves that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def wrong_shapes() -> dict:
    state = rlfn_state()
    state["conv_2.weight"] = state["conv_2.weight"].transpose(0, 2).contiguous()[:, :, :3]
    return state


def detector_bomb() -> dict:
    """Tiny tensors whose key names make the RLFN detector count 5000 blocks (about 1.4 G parameters at 48 ch)."""
    state = {"conv_1.weight": torch.zeros(48, 3, 3, 3), "block_1.esa.conv1.weight": torch.zeros(16, 48, 1, 1),
             "upsampler.0.weight": torch.zeros(48, 48, 3, 3)}
    state.update({f"block_{i}.c1_r.weight": torch.zeros(1) for i in range(1, 5001)})
    return state


def safetensors_bytes(header: bytes, body: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + body


CHECKPOINTS: dict[str, Callable[[Path], bytes]] = {
    "text.pth": lambda ws: b"these are not weights\n",
    "zero_byte.pth": lambda ws: b"",
    "garbage.pth": lambda ws: rng("garbage.pth").bytes(5000),
    "truncated.pth": lambda ws: half(saved({"params": rlfn_state()})),
    "pickle_with_code.pth": lambda ws: saved({"params": Planted(ws / "PLANT_RAN")}),
    "not_a_dict.pth": lambda ws: saved([1, 2, 3]),
    "no_tensors.pth": lambda ws: saved({"params": {"a": 1}}),
    "unknown_layout.pth": lambda ws: saved({"encoder.0.weight": torch.zeros(4, 3, 3, 3)}),
    "wrong_shapes.pth": lambda ws: saved({"params": wrong_shapes()}),
    "missing_keys.pth": lambda ws: saved({k: v for k, v in rlfn_state().items() if not k.startswith("upsampler")}),
    "absurd_metadata.pth": lambda ws: saved({"params": rlfn_state(),
                                             "esr_arch": {"arch": "RLFN", "kwargs": {"feature_channels": 200000}}}),
    "unknown_arch.pth": lambda ws: saved({"params": rlfn_state(), "esr_arch": {"arch": "RLFNN", "kwargs": {}}}),
    "unknown_kwarg.pth": lambda ws: saved({"params": rlfn_state(),
                                           "esr_arch": {"arch": "RLFN", "kwargs": {"feature_chanels": 8}}}),
    "malformed_metadata.pth": lambda ws: saved({"params": rlfn_state(), "esr_arch": ["RLFN"]}),
    "detector_bomb.pth": lambda ws: saved(detector_bomb()),
    "corrupt.safetensors": lambda ws: safetensors_bytes(b"{garbage", b"\x00" * 32),
    "lying.safetensors": lambda ws: safetensors_bytes(
        b'{"w":{"dtype":"F32","shape":[100000,100000],"data_offsets":[0,400]}}', b"\x00" * 400),
    "truncated_header.safetensors": lambda ws: struct.pack("<Q", 1 << 40) + b"{}",
}


def graph(nodes, inputs, outputs, initializers=()) -> onnx.ModelProto:
    model = helper.make_model(helper.make_graph(nodes, "fuzz", inputs, outputs, list(initializers)),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def image_io(name: str, dims: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, dims)


NCHW = [1, 3, "h", "w"]


def upscaling_graph() -> onnx.ModelProto:
    """A valid x2 nearest-neighbour upscaler without esr metadata (a foreign but working graph)."""
    scales = helper.make_tensor("scales", onnx.TensorProto.FLOAT, [4], [1, 1, 2, 2])
    return graph([helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest")],
                 [image_io("x", NCHW)], [image_io("y", [1, 3, "h2", "w2"])], [scales])


ONNX_FILES: dict[str, Callable[[], bytes]] = {
    "zero_byte.onnx": lambda: b"",
    "garbage.onnx": lambda: rng("garbage.onnx").bytes(4000),
    "text.onnx": lambda: b"ir_version: 8\ngraph { node { op_type: 'Relu' } }\n",
    "truncated.onnx": lambda: half(upscaling_graph().SerializeToString()),
    "wrong_input_rank.onnx": lambda: graph([helper.make_node("Identity", ["x"], ["y"])],
                                           [image_io("x", [1, 3, 8])], [image_io("y", [1, 3, 8])]).SerializeToString(),
    "two_inputs.onnx": lambda: graph([helper.make_node("Add", ["x", "z"], ["y"])],
                                     [image_io("x", NCHW), image_io("z", NCHW)],
                                     [image_io("y", NCHW)]).SerializeToString(),
    "unknown_op.onnx": lambda: graph([helper.make_node("NoSuchOp", ["x"], ["y"])], [image_io("x", NCHW)],
                                     [image_io("y", NCHW)]).SerializeToString(),
    "scalar_output.onnx": lambda: graph([helper.make_node("ReduceMean", ["x"], ["y"], keepdims=0)],
                                        [image_io("x", NCHW)], [image_io("y", [])]).SerializeToString(),
}


REPO = Path(__file__).resolve().parent.parent


def yaml_valid() -> str:
    """A shipped options file (valid: tests/test_hardening_options.py checks every one)."""
    return (REPO / "options" / "rlfn_s_x4.yml").read_text()


OPTIONS: dict[str, Callable[[], bytes]] = {
    "empty.yml": lambda: b"",
    "not_a_mapping.yml": lambda: b"- name\n- scale\n",
    "scalar.yml": lambda: b"just words\n",
    "bad_syntax.yml": lambda: b"name: x\nnetwork_g: [1, 2\n",
    "binary.yml": lambda: rng("binary.yml").bytes(800),
    "alias_bomb.yml": lambda: ("name: bomb\na: &a [x, x, x, x, x, x, x, x, x, x]\n"
                               + "".join(f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n"
                                         for p, c in zip("abcdefgh", "bcdefghi"))).encode(),
    "unknown_keys.yml": lambda: (yaml_valid() + "\ntrian:\n  total_iter: 4\n").encode(),
    "wrong_types.yml": lambda: yaml_valid().replace("total_iter: ", "total_iter: many #").encode(),
    "missing_keys.yml": lambda: b"name: lonely\nscale: 4\n",
    "absurd_network.yml": lambda: yaml_valid().replace("feature_channels: 48", "feature_channels: 200000").encode(),
    "unknown_arch.yml": lambda: yaml_valid().replace("type: RLFN", "type: RLFNX").encode(),
    "missing_data.yml": lambda: yaml_valid().replace("datasets/DIV2K/", "no/such/folder/").encode(),
}


def tiny_clip() -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        for index in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((24, 32, 3), 50 * index, np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buffer.getvalue()


def zero_frame_clip() -> bytes:
    """A Matroska file whose video stream never gets a frame (only an audio packet is muxed)."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="matroska") as out:
        video = out.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = 32, 24, "yuv420p"
        mux_silent_aac(out)
    return buffer.getvalue()


VIDEOS: dict[str, Callable[[], bytes]] = {
    "zero_byte.mp4": lambda: b"",
    "garbage.mp4": lambda: rng("garbage.mp4").bytes(6000),
    "truncated.mp4": lambda: half(tiny_clip()),
    "zero_frames.mkv": zero_frame_clip,
    "text.mkv": lambda: b"not a video at all\n",
}


# ----- the workspace and the checks -----

def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(folder)): (digest(p), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def visible_lines(text: str) -> list[str]:
    """Lines as a terminal shows them: carriage-return redraws (progress bars) collapse to their last state."""
    return [line.rsplit("\r", 1)[-1] for line in text.splitlines() if line.rsplit("\r", 1)[-1].strip()]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A folder with a tiny valid model, one valid image, a calibration folder, an eval dataset and a valid
    options file (the bad files are added per test; nothing in it may change)."""
    ws = tmp_path_factory.mktemp("fuzz")
    torch.manual_seed(0)
    save_checkpoint(build_model("rlfn", 2, feature_channels=8, mid_channels=8, num_blocks=1, esa_channels=4),
                    ws / "tiny.pth")
    for folder in ("calib", "data/HR", "images"):
        (ws / folder).mkdir(parents=True)
    (ws / "calib" / "a.png").write_bytes(good_png((40, 32), "calib"))
    (ws / "data" / "HR" / "a.png").write_bytes(good_png((40, 32), "hr"))
    (ws / "images" / "good.png").write_bytes(good_png())
    return ws


def run_audited(ws: Path, argv: list[str], capsys, outdir: Path) -> tuple[int, list[str]]:
    """``esr ARGV`` in-process; asserts nothing outside ``outdir`` appeared and nothing before it changed."""
    before = snapshot(ws)
    code = main(argv)
    captured = capsys.readouterr()
    after = snapshot(ws)
    changed = [name for name, state in before.items() if after.get(name) != state]
    assert not changed, f"{argv}: changed or removed {changed}"
    outside = [name for name in after.keys() - before.keys() if not (ws / name).is_relative_to(outdir)]
    assert not outside, f"{argv}: created {outside} outside {outdir}"
    return code, visible_lines(captured.err)


def assert_one_error_line(command: str, code: int, lines: list[str], bad: Path) -> None:
    assert code in EXIT_CODES[command], f"esr {command} on {bad.name}: exit {code}, lines {lines}"
    assert not any("Traceback" in line for line in lines)
    assert len(lines) == 1, f"esr {command} on {bad.name}: {lines}"
    assert lines[0].startswith("error: ") and bad.name in lines[0], lines[0]


def model_commands(ws: Path, model: Path, out: Path) -> dict[str, list[str]]:
    """Every command taking ``--model``, its outputs (if any) under ``out``."""
    return {
        "upscale": ["upscale", str(ws / "images"), "-o", str(out), "--model", str(model), "--quiet"],
        "eval": ["eval", "--model", str(model), "--data", str(ws / "data"), "--json"],
        "bench": ["bench", "--model", str(model), "--shape", "1x3x16x16", "--runs", "1", "--warmup", "0", "--json"],
        "analyze": ["analyze", "--model", str(model), "--hw", "orin-nano", "--shape", "1x3x16x16",
                    "--plot", str(out / "roof.png"), "--save-graph", str(out / "g.onnx"), "--json"],
        "export": ["export", "--model", str(model), "--onnx", str(out / "m.onnx"), "--opt", "1x3x16x16",
                   "--parity", str(ws / "images")],
        "quantize": ["quantize", "--model", str(model), "--calib", str(ws / "calib"), "--out", str(out / "q.onnx"),
                     "--num-calib", "1", "--crop-size", "16"],
    }


def place(ws: Path, folder: str, name: str, data: bytes) -> Path:
    path = ws / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", list(CHECKPOINTS))
def test_bad_checkpoints_through_every_model_command(workspace, tmp_path, capsys, monkeypatch, name):
    monkeypatch.setenv("ESR_CACHE_DIR", str(tmp_path / "cache"))
    bad = place(workspace, "bad_models", name, CHECKPOINTS[name](workspace))
    out = workspace / "out" / name
    for command, argv in model_commands(workspace, bad, out).items():
        code, lines = run_audited(workspace, argv, capsys, out)
        assert_one_error_line(command, code, lines, bad)
        assert code == 2
    assert not (workspace / "PLANT_RAN").exists()


@pytest.mark.parametrize("name", list(ONNX_FILES))
def test_bad_onnx_files_through_every_model_command(workspace, tmp_path, capsys, monkeypatch, name):
    monkeypatch.setenv("ESR_CACHE_DIR", str(tmp_path / "cache"))
    bad = place(workspace, "bad_onnx", name, ONNX_FILES[name]())
    out = workspace / "out" / name
    for command, argv in model_commands(workspace, bad, out).items():
        code, lines = run_audited(workspace, argv, capsys, out)
        assert_one_error_line(command, code, lines, bad)


@pytest.mark.parametrize("name", list(IMAGES))
def test_bad_images_fail_alone_and_the_batch_goes_on(workspace, capsys, name):
    folder = f"bad_images_{name}"
    bad = place(workspace, folder, name, IMAGES[name]())
    (workspace / folder / "good.png").write_bytes(good_png())
    out = workspace / "out" / folder
    code, lines = run_audited(workspace, ["upscale", str(workspace / folder), "-o", str(out),
                                          "--model", str(workspace / "tiny.pth"), "--quiet"], capsys, out)
    assert_one_error_line("upscale", code, lines, bad)
    assert code == 1 and sorted(p.name for p in out.iterdir()) == ["good.png"]


@pytest.mark.parametrize("name", ["zero_byte.png", "garbage.png", "truncated.png", "huge_header.png"])
def test_bad_hr_images_in_eval(workspace, capsys, name):
    folder = f"bad_eval_{name}"
    bad = place(workspace, folder, f"HR/{name}", IMAGES[name]())
    out = workspace / "out" / folder
    code, lines = run_audited(workspace, ["eval", "--model", str(workspace / "tiny.pth"), "--data",
                                          str(workspace / folder), "--json"], capsys, out)
    assert_one_error_line("eval", code, lines, bad)


@pytest.mark.parametrize("name", list(VIDEOS))
def test_bad_videos(workspace, capsys, name):
    bad = place(workspace, "bad_videos", name, VIDEOS[name]())
    out = workspace / "out" / f"video_{name}"
    code, lines = run_audited(workspace, ["upscale", str(bad), "-o", str(out), "--model", str(workspace / "tiny.pth"),
                                          "--quiet"], capsys, out)
    assert_one_error_line("upscale", code, lines, bad)
    assert code == 1


@pytest.mark.parametrize("name", list(OPTIONS))
def test_bad_options_files(workspace, capsys, monkeypatch, name):
    bad = place(workspace, "bad_options", name, OPTIONS[name]())
    run_dir = workspace / "out" / "train"
    run_dir.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(run_dir)  # esr train writes under ./experiments
    code, lines = run_audited(workspace, ["train", "-opt", str(bad)], capsys, run_dir)
    assert_one_error_line("train", code, lines, bad)
    assert not (run_dir / "experiments").exists()


CONSOLE_CASES = {
    "checkpoint": ("text.pth", lambda ws, bad: ["upscale", str(ws / "images"), "-o", str(ws / "out" / "c1"),
                                                "--model", str(bad)]),
    "onnx": ("garbage.onnx", lambda ws, bad: ["bench", "--model", str(bad), "--runs", "1"]),
    "image": ("truncated.png", lambda ws, bad: ["upscale", str(bad), "-o", str(ws / "out" / "c3"),
                                                "--model", str(ws / "tiny.pth")]),
    "options": ("not_a_mapping.yml", lambda ws, bad: ["train", "-opt", str(bad)]),
}


def bad_bytes(ws: Path, name: str) -> bytes:
    """The bytes of the generated bad file ``name``, whichever table it is in."""
    if name in CHECKPOINTS:
        return CHECKPOINTS[name](ws)
    return {**ONNX_FILES, **IMAGES, **OPTIONS, **VIDEOS}[name]()


@pytest.mark.parametrize("case", list(CONSOLE_CASES))
def test_the_console_shows_one_line(workspace, case):
    """The installed ``esr`` script (warnings shown as one line each, real stderr): one error line."""
    name, argv = CONSOLE_CASES[case]
    bad = place(workspace, "console", name, bad_bytes(workspace, name))
    before = snapshot(workspace / "images")
    proc = subprocess.run([sys.executable, "-m", "esr", *argv(workspace, bad)], capture_output=True, text=True,
                          cwd=workspace, timeout=300)
    lines = visible_lines(proc.stderr)
    assert proc.returncode in {1, 2} and "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and bad.name in lines[0], proc.stderr
    assert snapshot(workspace / "images") == before


def documented_exit_codes() -> dict[str, set[int]]:
    """command -> exit codes its row of the per-command table in docs/errors.md uses (beside 0)."""
    table = {}
    for line in (REPO / "docs" / "errors.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`esr "):
            codes = {code for code, cell in zip((0, 1, 2), cells[1:4]) if cell != "-"}
            codes |= {3, 4} if cells[4] != "-" else set()
            table[cells[0].strip("`").split()[1]] = codes
    return table


def test_the_codes_asserted_here_are_the_documented_ones():
    documented = documented_exit_codes()
    assert set(documented) >= set(EXIT_CODES) | {"models"}
    for command, codes in EXIT_CODES.items():
        assert codes <= documented[command], (command, codes, documented[command])
