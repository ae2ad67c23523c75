"""`esr upscale --shard I/N`: 3 shards cover 10 images exactly once, equal to one process; reruns and overlaps skip."""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image as PILImage

from esr.cli import main
from esr.errors import EsrError
from esr.scale.shard import Shard, parse_shard, shard_of

RNG = np.random.default_rng(17)


def summary(capsys) -> str:
    return capsys.readouterr().out.strip().splitlines()[-1]


def counts(line: str) -> tuple[int, int, int]:
    done, skipped, failed = (int(part.split()[0]) for part in line.split(", "))
    return done, skipped, failed


def make_images(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    for index in range(count):
        pixels = cv2.GaussianBlur(RNG.integers(0, 256, (12 + index, 16, 3), dtype=np.uint8), (3, 3), 1.0)
        sub = folder / ("sub" if index % 4 == 0 else "")
        sub.mkdir(exist_ok=True)
        PILImage.fromarray(pixels).save(sub / f"img{index}.png")


def outputs(folder: Path) -> dict[str, np.ndarray]:
    return {p.relative_to(folder).as_posix(): cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in folder.rglob("*.png")}


def test_three_shards_cover_every_input_once_like_one_process(tmp_path: Path, capsys, one_thread) -> None:
    src = tmp_path / "in"
    make_images(src, 10)
    common = [str(src), "--recursive", "--quiet", "--suffix", "_x4"]
    assert main(["upscale", *common, "-o", str(tmp_path / "single")]) == 0
    assert summary(capsys) == "10 upscaled, 0 skipped, 0 failed"

    shared_out = tmp_path / "sharded"
    done_per_shard = []
    for index in range(3):
        assert main(["upscale", *common, "-o", str(shared_out), "--shard", f"{index}/3"]) == 0
        done, skipped, failed = counts(summary(capsys))
        assert skipped == failed == 0  # no shard met another shard's output: the shards are disjoint
        done_per_shard.append(done)
    assert sum(done_per_shard) == 10  # ... and together they cover every input
    single, sharded = outputs(tmp_path / "single"), outputs(shared_out)
    assert sorted(sharded) == sorted(single) and len(single) == 10
    for name, pixels in single.items():
        np.testing.assert_array_equal(sharded[name], pixels)

    # A repeated shard and an overlapping full run only skip (outputs are complete and never replaced).
    mtimes = {p: p.stat().st_mtime_ns for p in shared_out.rglob("*.png")}
    assert main(["upscale", *common, "-o", str(shared_out), "--shard", "1/3"]) == 0
    assert counts(summary(capsys)) == (0, done_per_shard[1], 0)
    assert main(["upscale", *common, "-o", str(shared_out)]) == 0
    assert summary(capsys) == "0 upscaled, 10 skipped, 0 failed"
    assert {p: p.stat().st_mtime_ns for p in shared_out.rglob("*.png")} == mtimes


def test_listing_errors_are_reported_by_shard_zero_only(tmp_path: Path, capsys) -> None:
    missing = str(tmp_path / "missing.png")
    assert main(["upscale", missing, "-o", str(tmp_path / "out"), "--quiet", "--shard", "0/2"]) == 1
    assert capsys.readouterr().err.count("missing.png") == 1
    assert main(["upscale", missing, "-o", str(tmp_path / "out"), "--quiet", "--shard", "1/2"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("text", ["3/3", "-1/3", "1/0", "a/b", "2", "1/3/4"])
def test_bad_shard_is_a_usage_error(tmp_path: Path, capsys, text: str) -> None:
    assert main(["upscale", str(tmp_path), "-o", str(tmp_path / "out"), f"--shard={text}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --shard {text}:") and len(err.strip().splitlines()) == 1


def test_a_file_keeps_its_shard_when_others_are_added() -> None:
    names = [f"dir{i % 3}/frame_{i:05d}.png" for i in range(300)]
    before = {name: shard_of(name, 4) for name in names[:200]}
    assert {name: shard_of(name, 4) for name in names if name in before} == before
    sizes = [sum(shard == k for shard in before.values()) for k in range(4)]
    assert min(sizes) > 30  # roughly balanced (expected 50 each)
    assert parse_shard(" 2 / 5 ") == Shard(2, 5) and Shard(2, 5).owns(names[0]) == (shard_of(names[0], 5) == 2)
    with pytest.raises(EsrError):
        parse_shard("5/5")


def test_ray_missing_is_one_line_exit_2(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    make_images(tmp_path / "in", 1)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main(["upscale", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--recursive", "--ray", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --ray needs Ray Data (pip install 'esr[ray]')")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
