"""Item 1 of the hardening issue: the output policy of esr.fileio, and every command that writes.

No file is replaced without --overwrite; an input or the source model is never replaced, not even
with it; a folder is never a target; writes are temp file + rename with normal permissions.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from esr.archs import build_model
from esr.cli import main
from esr.errors import EsrError
from esr.fileio import check_output, check_outputs, replace_atomically, same_file, temp_target, write_output
from esr.loading import save_checkpoint


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(folder)): (digest(p), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_policy_refuses_existing_inputs_and_folders(tmp_path):
    source = tmp_path / "model.pth"
    source.write_bytes(b"weights")
    (tmp_path / "hard.pth").hardlink_to(source)
    (tmp_path / "soft.pth").symlink_to(source)
    (tmp_path / "photo.png").write_bytes(b"photo")
    (tmp_path / "folder").mkdir()
    for target in (source, tmp_path / "hard.pth", tmp_path / "soft.pth"):
        for overwrite in (False, True):
            with pytest.raises(EsrError, match="is an input of this command.*even with --overwrite") as info:
                check_output(target, [source], overwrite)
            assert info.value.exit_code == 2
    with pytest.raises(EsrError, match="exists \\(use --overwrite to replace it\\)"):
        check_output(tmp_path / "photo.png", [source])
    assert check_output(tmp_path / "photo.png", [source], overwrite=True) == tmp_path / "photo.png"
    with pytest.raises(EsrError, match="is a folder"):
        check_output(tmp_path / "folder", [source], overwrite=True)
    with pytest.raises(EsrError, match="is not a folder"):
        check_output(tmp_path / "photo.png" / "x.onnx")
    assert check_output(tmp_path / "new" / "deeper" / "x.onnx") == tmp_path / "new" / "deeper" / "x.onnx"
    with pytest.raises(EsrError, match="named for two outputs"):
        check_outputs([tmp_path / "a.onnx", tmp_path / "sub" / ".." / "a.onnx"])
    assert same_file(tmp_path / "soft.pth", source) and not same_file(tmp_path / "photo.png", source)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_policy_refuses_an_unwritable_folder(tmp_path):
    (tmp_path / "ro").mkdir(mode=0o555)
    with pytest.raises(EsrError, match="is not writable"):
        check_output(tmp_path / "ro" / "x.onnx")


def test_atomic_write_normal_permissions_and_no_clobber(tmp_path):
    target = tmp_path / "out.bin"
    old_umask = os.umask(0o022)
    os.umask(old_umask)
    write_output(target, lambda tmp: Path(tmp).write_bytes(b"first"))
    assert target.read_bytes() == b"first"
    assert target.stat().st_mode & 0o777 == 0o666 & ~old_umask
    with pytest.raises(EsrError, match="exists"):
        write_output(target, lambda tmp: Path(tmp).write_bytes(b"second"))
    # another writer creates the file between the check and the rename: it is kept, not replaced
    racer = tmp_path / "race.bin"

    def write_slowly(tmp: str) -> None:
        Path(tmp).write_bytes(b"mine")
        racer.write_bytes(b"theirs")

    with pytest.raises(FileExistsError):
        replace_atomically(racer, write_slowly, overwrite=False)
    assert racer.read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin", "race.bin"]  # no temp file left
    assert temp_target(".out.bin.ab_9XYZ1.part") == "out.bin" and temp_target(".out.bin.part") is None


@pytest.fixture
def tiny_model(tmp_path) -> Path:
    return save_checkpoint(build_model("rlfn", 4, feature_channels=8, mid_channels=8, num_blocks=1,
                                       esa_channels=4), tmp_path / "r" / "my.pth")


def test_export_never_replaces_the_model_or_an_existing_file(tmp_path, tiny_model, capsys):
    photo = tmp_path / "r" / "photo.png"
    PILImage.fromarray(np.zeros((4, 4, 3), np.uint8)).save(photo)
    before = snapshot(tmp_path)
    shape = ["--opt", "1x3x16x16", "--parity", str(tmp_path / "r")]
    for target, extra in ((tiny_model, []), (tiny_model, ["--overwrite"]), (photo, []),
                          (tmp_path / "r", ["--overwrite"])):
        assert main(["export", "--model", str(tiny_model), "--onnx", str(target), *shape, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: {target}: ")
    assert main(["export", "--model", str(tiny_model), "--onnx", str(tmp_path / "ok.onnx"),
                 "--trt", str(tiny_model), *shape, "--overwrite"]) == 2  # the engine path is checked too
    assert snapshot(tmp_path) == before
    assert main(["export", "--model", str(tiny_model), "--onnx", str(photo), *shape, "--overwrite"]) == 0
    assert photo.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n" and digest(tiny_model) == before["r/my.pth"][0]


def test_quantize_refuses_existing_out_report_and_its_inputs(tmp_path, tiny_model, capsys):
    calib = tmp_path / "calib"
    calib.mkdir()
    PILImage.fromarray(np.full((40, 48, 3), 128, np.uint8)).save(calib / "img0.png")
    out = tmp_path / "q.onnx"
    (tmp_path / "q.json").write_text("{}")  # the default report path, OUT with .json
    (tmp_path / "mine.json").write_text("{}")
    before = snapshot(tmp_path)
    base = ["quantize", "--model", str(tiny_model), "--calib", str(calib), "--num-calib", "1", "--crop-size", "16"]
    cases = [(["--out", str(out)], tmp_path / "q.json"),
             (["--out", str(tmp_path / "x.onnx"), "--report", str(tmp_path / "mine.json")], tmp_path / "mine.json"),
             (["--out", str(tiny_model), "--overwrite"], tiny_model),
             (["--out", str(out), "--report", str(calib / "img0.png"), "--overwrite"], calib / "img0.png"),
             (["--out", str(out), "--report", str(out)], out)]
    for args, named in cases:
        assert main([*base, *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(named) in err[0], err
    assert snapshot(tmp_path) == before


def test_analyze_refuses_existing_plot_and_the_model_as_graph(tmp_path, tiny_model, capsys, monkeypatch):
    monkeypatch.setenv("ESR_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "roof.png").write_bytes(b"user plot")
    before = snapshot(tmp_path)
    base = ["analyze", "--model", str(tiny_model), "--hw", "orin-nano", "--shape", "1x3x8x8"]
    assert main([*base, "--plot", str(tmp_path / "roof.png")]) == 2
    assert main([*base, "--save-graph", str(tiny_model), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "roof.png: exists" in err[0] and "is an input" in err[1]
    assert snapshot(tmp_path) == before
    assert main([*base, "--plot", str(tmp_path / "roof.png"), "--overwrite"]) == 0
    assert (tmp_path / "roof.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "roof.png").stat().st_mode & 0o077 == 0o066 & ~_umask()  # not 0600


def _umask() -> int:
    value = os.umask(0o022)
    os.umask(value)
    return value
