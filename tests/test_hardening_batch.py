"""Items 3, 7 and 10 of the hardening issue: `esr upscale` on its own folder, concurrent runs,
stale temp files, argument checks, empty folders, 0-byte outputs, one line per error.
(SIGTERM's clean-up is tested beside Ctrl-C's in test_upscale.py.)"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image as PILImage

from esr import claims
from esr.cli import main

RNG = np.random.default_rng(11)


def photo(h: int = 16, w: int = 20) -> np.ndarray:
    return cv2.GaussianBlur(RNG.integers(0, 256, (h, w, 3), dtype=np.uint8), (5, 5), 1.5)


def images(folder: Path, names: str, h: int = 16, w: int = 20) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.png" for name in names]
    for path in paths:
        PILImage.fromarray(photo(h, w)).save(path)
    return paths


def upscale(capsys, *args: str) -> tuple[int, str, list[str]]:
    code = main(["upscale", *args, "--quiet"])
    captured = capsys.readouterr()
    return code, captured.out.strip().splitlines()[-1] if captured.out.strip() else "", captured.err.splitlines()


def test_folder_into_itself_and_reruns_never_upscale_outputs(tmp_path, capsys):
    folder = tmp_path / "photos"
    images(folder, "ab")
    code, summary, err = upscale(capsys, str(folder), "-o", str(folder), "--suffix", "_x4")
    assert (code, summary, err) == (0, "2 upscaled, 0 skipped, 0 failed", [])
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "a_x4.png", "b.png", "b_x4.png"]
    assert cv2.imread(str(folder / "a_x4.png")).shape == (64, 80, 3)
    for again in ([str(folder)], [str(folder / "*.png")], [str(folder / "*")]):
        code, summary, err = upscale(capsys, *again, "-o", str(folder), "--suffix", "_x4")
        assert (code, summary, err) == (0, "0 upscaled, 2 skipped, 0 failed", [])
    # an output whose input is gone, or made with another --ext, is still recognised by its suffix
    (folder / "a.png").unlink()
    code, summary, _ = upscale(capsys, str(folder), "-o", str(folder), "--suffix", "_x4", "--ext", "jpg")
    assert (code, summary) == (0, "1 upscaled, 0 skipped, 0 failed")
    assert sorted(p.name for p in folder.iterdir()) == ["a_x4.png", "b.png", "b_x4.jpg", "b_x4.png"]
    # without a suffix every output would replace its input: refused, nothing written
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    code, summary, err = upscale(capsys, str(folder / "b.png"), "-o", str(folder), "--overwrite")
    assert code == 1 and len(err) == 1 and "would replace the input" in err[0]
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_an_output_never_replaces_another_input(tmp_path, capsys):
    first, = images(tmp_path / "one", "a")
    second, = images(tmp_path / "two", "a")
    kept = second.read_bytes()
    code, summary, err = upscale(capsys, str(first), str(second), "-o", str(tmp_path / "two"), "--overwrite")
    assert code == 1 and "would replace" in " ".join(err)
    assert second.read_bytes() == kept


def test_a_claim_of_a_live_run_is_skipped_and_a_dead_one_reclaimed(tmp_path, capsys, dead_pid):
    src = tmp_path / "in"
    images(src, "abc")
    out = tmp_path / "out"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = {"host": socket.gethostname(), "pid": sleeper.pid, "start": claims._start_time(sleeper.pid)}
        claims.claim_path(out / "a.png").write_text(json.dumps(live))
        dead = {"host": socket.gethostname(), "pid": dead_pid, "start": None}
        claims.claim_path(out / "b.png").write_text(json.dumps(dead))
        (out / ".b.png.abcd1234.part").write_bytes(b"half an image")  # left by the dead run
        code, summary, err = upscale(capsys, str(src), "-o", str(out))
        assert (code, err) == (0, [])
        assert summary == "2 upscaled, 1 skipped (1 being written by another run), 0 failed"
        assert sorted(p.name for p in out.iterdir()) == [".a.png.esr-claim", "b.png", "c.png"]
    finally:
        sleeper.kill()
        sleeper.wait()
    # the live claim's owner has gone now: the next run takes it over
    code, summary, _ = upscale(capsys, str(src), "-o", str(out))
    assert (code, summary) == (0, "1 upscaled, 2 skipped, 0 failed")
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.png"]


def test_stale_temp_files_are_removed_and_others_kept(tmp_path, capsys):
    src = tmp_path / "in"
    images(src, "a")
    out = tmp_path / "out"
    out.mkdir()
    old = time.time() - 2 * claims.ORPHAN_TEMP_AGE_S
    (out / ".x.png.abcd1234.part").write_bytes(b"orphan, old")
    os.utime(out / ".x.png.abcd1234.part", (old, old))
    (out / ".y.png.abcd1234.part").write_bytes(b"orphan, recent: maybe another esr command")
    (out / ".notes.part").write_bytes(b"not an esr temp name")
    (out / ".hidden").write_bytes(b"user file")
    code, _, _ = upscale(capsys, str(src), "-o", str(out))
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [".hidden", ".notes.part", ".y.png.abcd1234.part", "a.png"]


def test_two_concurrent_runs_share_the_work(tmp_path):
    src = tmp_path / "in"
    images(src, "abcdefghij", 48, 48)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "esr", "upscale", str(src), "-o", str(out), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for _ in range(2)]
    results = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], results
    assert all(err == "" for _, err in results)
    done = [int(out_text.strip().splitlines()[-1].split()[0]) for out_text, _ in results]
    assert sum(done) == 10  # every image upscaled exactly once, none reported failed
    assert sorted(p.name for p in out.iterdir()) == [f"{c}.png" for c in "abcdefghij"]


@pytest.mark.parametrize("args", [["--outscale", "nan"], ["--outscale", "inf"], ["--outscale", "-2"],
                                  ["--suffix", "/../x"], ["--suffix", "../x"], ["--suffix", "a/b"],
                                  ["--max-pixels", "-1"]])
def test_bad_arguments_exit_2_before_any_work(tmp_path, capsys, args):
    src, = images(tmp_path, "a")
    with pytest.raises(SystemExit) as info:
        main(["upscale", str(src), "-o", str(tmp_path / "out"), *args])
    assert info.value.code == 2
    assert not (tmp_path / "out").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_empty_folder_says_so(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, summary, err = upscale(capsys, str(tmp_path / "empty"), "-o", str(tmp_path / "out"))
    assert code == 1 and summary == "0 upscaled, 0 skipped, 1 failed"
    assert len(err) == 1 and err[0].startswith(f"error: {tmp_path / 'empty'}: no images")


def test_an_empty_output_is_not_done(tmp_path, capsys):
    src, = images(tmp_path / "in", "a")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"")
    code, summary, _ = upscale(capsys, str(src), "-o", str(out))
    assert (code, summary) == (0, "1 upscaled, 0 skipped, 0 failed")
    assert cv2.imread(str(out / "a.png")).shape == (64, 80, 3)


def test_every_error_is_one_line_also_without_quiet(tmp_path):
    src = tmp_path / "in"
    images(src, "a")
    (src / "b.png").write_bytes(b"")
    (src / "c.png").write_text("text\nwith\nlines")
    run = subprocess.run([sys.executable, "-m", "esr", "upscale", str(src), str(tmp_path / "nope.png"),
                          "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    lines = run.stderr.splitlines()
    assert run.stderr.endswith("\n") and "\r" not in run.stderr  # no progress bar when stderr is not a terminal
    errors = [line for line in lines if not line.startswith("warning: ")]
    assert len(errors) == 3 and all(line.startswith("error: ") and line.count("error:") == 1 for line in errors)


def test_without_a_suffix_an_ambiguous_file_stays_protected(tmp_path, capsys):
    """dir/a.png and dir/a.jpg upscaled into dir as png: a.png may be the user's own, never replaced."""
    folder = tmp_path / "mixed"
    png, = images(folder, "a")
    PILImage.fromarray(photo()).save(folder / "a.jpg")
    kept = png.read_bytes()
    code, summary, err = upscale(capsys, str(folder), "-o", str(folder), "--ext", "png")
    assert (code, summary) == (0, "0 upscaled, 1 skipped, 0 failed")
    code, summary, err = upscale(capsys, str(folder), "-o", str(folder), "--ext", "png", "--overwrite")
    assert code == 1 and len(err) == 1 and "would replace another input" in err[0]
    assert png.read_bytes() == kept


def test_with_a_suffix_overwrite_redoes_earlier_outputs(tmp_path, capsys):
    folder = tmp_path / "photos"
    images(folder, "ab")
    assert upscale(capsys, str(folder), "-o", str(folder), "--suffix", "_x4")[0] == 0
    code, summary, err = upscale(capsys, str(folder / "*.png"), "-o", str(folder), "--suffix", "_x4", "--overwrite")
    assert (code, summary, err) == (0, "2 upscaled, 0 skipped, 0 failed", [])
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "a_x4.png", "b.png", "b_x4.png"]
