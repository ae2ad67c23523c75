"""Done-when 3 of the hardening issue: every esr command that writes, aimed at files that exist.

One folder holds a model, inputs (images, a video, an animation, calibration and evaluation
images), a finished training run, and files where each command would write (its outputs from
"an earlier run", a plot, a report, an engine sidecar). Its state (sha256 and mtime of every file)
is snapshotted; then every writing command runs with its outputs aimed at those files:

- without ``--overwrite`` nothing in the folder changes (commands that only print, ``eval``,
  ``bench``, ``models``, ``--json`` or not, change nothing either);
- with ``--overwrite`` exactly the intended files change, never an input or the source model.

About 7 s on 2 shared cores.
"""
from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from esr.archs import build_model
from esr.cli import main
from esr.loading import save_checkpoint

REPO = Path(__file__).resolve().parent.parent


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def changed(before: dict, after: dict) -> set[str]:
    return {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}


def picture(seed: int, size: tuple[int, int] = (24, 20)) -> PILImage.Image:
    coarse = np.random.default_rng(seed).integers(0, 256, (size[1] // 4, size[0] // 4, 3), dtype=np.uint8)
    return PILImage.fromarray(coarse).resize(size, PILImage.Resampling.BICUBIC)


def write_clip(path: Path) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        for index in range(4):
            frame = av.VideoFrame.from_ndarray(np.asarray(picture(index, (32, 24))), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def finished_training_run(ws: Path, model: Path) -> Path:
    """A training document whose two stages have finished (their weights, final.pth and curve.json exist)."""
    text = (REPO / "options" / "rlfn_s_x4.yml").read_text().replace("name: rlfn_s_x4", "name: done", 1)
    (ws / "done.yml").write_text(text)
    run = ws / "experiments" / "done"
    (run / "stages").mkdir(parents=True)
    for name in ("stage_stage1.pth", "stage_stage2.pth", "final.pth"):
        shutil.copy(model, run / name)
    (run / "curve.json").write_text("[]")
    return ws / "done.yml"


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ESR_CACHE_DIR", str(tmp_path / "cache"))  # esr's own caches: outside the folder
    ws = tmp_path / "ws"
    for folder in ("images", "out", "calib", "data/HR"):
        (ws / folder).mkdir(parents=True)
    torch.manual_seed(0)
    model = save_checkpoint(build_model("rlfn", 2, feature_channels=8, mid_channels=8, num_blocks=1,
                                        esa_channels=4), ws / "tiny.pth")
    for index, name in enumerate(("a.png", "b.png")):
        picture(index).save(ws / "images" / name)
        (ws / "out" / name).write_bytes(b"an earlier result the user keeps")
    frames = [picture(10 + index) for index in range(3)]
    frames[0].save(ws / "anim.gif", save_all=True, append_images=frames[1:], duration=60, loop=0)
    write_clip(ws / "clip.mp4")
    for name in ("anim.gif", "clip.mp4"):
        (ws / "out" / name).write_bytes(b"an earlier upscale")
    picture(20, (40, 32)).save(ws / "calib" / "c.png")
    picture(21, (40, 32)).save(ws / "data" / "HR" / "h.png")
    for name in ("m.onnx", "m.engine", "m.engine.json", "q.onnx", "q.json", "report.json", "roof.png", "g.onnx"):
        (ws / name).write_bytes(f"the user's {name}".encode())
    finished_training_run(ws, model)
    monkeypatch.chdir(ws)
    return ws


MODEL = ["--model", "tiny.pth"]
EXPORT = ["export", *MODEL, "--opt", "1x3x16x16", "--parity", "calib"]
QUANTIZE = ["quantize", *MODEL, "--calib", "calib", "--num-calib", "1", "--crop-size", "16"]
ANALYZE = ["analyze", *MODEL, "--hw", "orin-nano", "--shape", "1x3x16x16"]

WITHOUT_OVERWRITE = [  # (argv, exit code): each aims at existing files; nothing may change
    (["upscale", "images", "-o", "out", *MODEL], 0),  # existing outputs are skipped
    (["upscale", "clip.mp4", "anim.gif", "-o", "out", *MODEL], 0),
    (["upscale", "images", "-o", "images", *MODEL], 1),  # would replace its inputs: refused per file
    ([*EXPORT, "--onnx", "m.onnx"], 2),
    ([*EXPORT, "--onnx", "new.onnx", "--trt", "m.engine"], 2),  # the engine and its sidecar exist
    ([*QUANTIZE, "--out", "q.onnx"], 2),
    ([*QUANTIZE, "--out", "new_q.onnx", "--report", "report.json"], 2),
    ([*ANALYZE, "--plot", "roof.png"], 2),
    ([*ANALYZE, "--save-graph", "g.onnx"], 2),
    (["eval", *MODEL, "--data", "data", "--json"], 0),
    (["eval", *MODEL, "--data", "data"], 0),
    (["bench", *MODEL, "--shape", "1x3x16x16", "--runs", "1", "--warmup", "0", "--json"], 0),
    (["models", "--json"], 0),
    (["models"], 0),
    (["train", "-opt", "done.yml"], 0),  # a finished run: nothing to do, nothing rewritten
]

WITH_OVERWRITE = [  # (argv, exit code, the files that must change: exactly these)
    (["upscale", "images", "-o", "out", *MODEL], 0, {"out/a.png", "out/b.png"}),
    (["upscale", "clip.mp4", "anim.gif", "-o", "out", *MODEL], 0, {"out/clip.mp4", "out/anim.gif"}),
    (["upscale", "images", "-o", "images", *MODEL], 1, set()),  # inputs: never, not even with --overwrite
    ([*EXPORT, "--onnx", "m.onnx"], 0, {"m.onnx"}),
    ([*EXPORT, "--onnx", "tiny.pth"], 2, set()),  # the source model: never
    ([*EXPORT, "--onnx", "m.onnx", "--trt", "m.engine"], 3, {"m.onnx"}),  # without TensorRT: the ONNX only
    ([*QUANTIZE, "--out", "q.onnx"], 0, {"q.onnx", "q.json"}),
    ([*QUANTIZE, "--out", "q.onnx", "--report", "calib/c.png"], 2, set()),  # a calibration image: never
    ([*ANALYZE, "--plot", "roof.png", "--save-graph", "g.onnx"], 0, {"roof.png", "g.onnx"}),
    ([*ANALYZE, "--save-graph", "tiny.pth"], 2, set()),
]


def test_nothing_changes_without_overwrite(ws, capsys):
    before = snapshot(ws)
    for argv, code in WITHOUT_OVERWRITE:
        assert main(argv) == code, (argv, capsys.readouterr().err)
        capsys.readouterr()
        assert changed(before, snapshot(ws)) == set(), argv


def test_overwrite_changes_exactly_the_intended_files(ws, capsys):
    for argv, code, intended in WITH_OVERWRITE:
        before = snapshot(ws)
        result = main([*argv, "--overwrite"])
        capsys.readouterr()
        if "--trt" in argv and result in (0, 4):  # TensorRT importable here: an engine was built (0) or not (4)
            code, intended = result, intended | ({"m.engine", "m.engine.json"} if result == 0 else set())
        assert result == code, argv
        assert changed(before, snapshot(ws)) == intended, argv
