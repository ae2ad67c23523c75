"""`esr upscale --ray` on a local Ray instance (2 CPUs, started once for the module): same outputs as one
process, a corrupt file reported and counted (exit 1), a rerun skips everything, a killed actor's files are
retried and written once."""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image as PILImage

pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'esr[ray]')")
import ray  # noqa: E402

from esr.cli import main  # noqa: E402

RNG = np.random.default_rng(29)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield
    ray.shutdown()


def make_images(folder: Path, count: int, side: int) -> None:
    folder.mkdir(parents=True)
    for index in range(count):
        pixels = cv2.GaussianBlur(RNG.integers(0, 256, (side, side + index, 3), dtype=np.uint8), (5, 5), 1.5)
        PILImage.fromarray(pixels).save(folder / f"img{index:02d}.png")


def outputs(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in folder.glob("*.png")}


def upscale(capsys, *args: str) -> tuple[int, str, list[str]]:
    code = main(["upscale", *args, "--quiet"])
    captured = capsys.readouterr()
    return code, captured.out.strip().splitlines()[-1], captured.err.strip().splitlines()


def test_ray_matches_one_process_reports_the_corrupt_file_and_resumes(tmp_path, capsys, local_ray, one_thread):
    src = tmp_path / "in"
    make_images(src, 6, 20)
    (src / "img03_corrupt.png").write_bytes((src / "img03.png").read_bytes()[:200])
    code, last, err = upscale(capsys, str(src), "-o", str(tmp_path / "single"))
    assert (code, last) == (1, "6 upscaled, 0 skipped, 1 failed")

    code, last, err = upscale(capsys, str(src), "-o", str(tmp_path / "ray"), "--ray")
    assert (code, last) == (1, "6 upscaled, 0 skipped, 1 failed")
    assert len(err) == 1 and err[0].startswith(f"error: {src / 'img03_corrupt.png'}: ")
    single, on_ray = outputs(tmp_path / "single"), outputs(tmp_path / "ray")
    assert sorted(on_ray) == sorted(single) and len(single) == 6
    for name, pixels in single.items():
        np.testing.assert_array_equal(on_ray[name], pixels)

    code, last, err = upscale(capsys, str(src), "-o", str(tmp_path / "ray"), "--ray")
    assert (code, last) == (1, "0 upscaled, 6 skipped, 1 failed") and len(err) == 1
    code, last, err = upscale(capsys, str(src), "-o", str(tmp_path / "ray2"), "--ray", "--model", str(tmp_path / "no.pth"))
    assert code == 2 and err == [f"error: {tmp_path / 'no.pth'}: no such file"]


def map_workers() -> list[int]:
    """PIDs of Ray Data actor processes started (through Ray) by this test process."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(b"ray::MapWorker"):
                pid = int(entry.name)
                for _ in range(4):  # worker -> raylet -> ... -> this process
                    pid = int((Path("/proc") / str(pid) / "stat").read_text().split(")")[-1].split()[1])
                    if pid == os.getpid():
                        found.append(int(entry.name))
                        break
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_a_killed_actor_is_replaced_and_its_files_written_once(tmp_path, capsys, local_ray, one_thread):
    src, out = tmp_path / "in", tmp_path / "out"
    make_images(src, 10, 96)
    killed: list[int] = []  # outputs present when an actor was killed

    def kill_one_actor_mid_run() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list(out.glob("*.png"))) < 2:
            time.sleep(0.02)
        workers = map_workers()
        if workers:
            os.kill(workers[0], signal.SIGKILL)
            killed.append(len(list(out.glob("*.png"))))

    killer = threading.Thread(target=kill_one_actor_mid_run)
    killer.start()
    code, last, err = upscale(capsys, str(src), "-o", str(out), "--ray")
    killer.join()
    assert killed and killed[0] < 10, "no actor was killed mid-run"
    assert code == 0 and err == [], err
    done, skipped, failed = (int(part.split()[0]) for part in last.split(", "))
    assert failed == 0 and done + skipped == 10  # a retried file finished before the kill counts as skipped
    assert not list(out.glob(".*.esr-claim"))  # the dead actor's claims were taken over and released
    assert main(["upscale", str(src), "-o", str(tmp_path / "single"), "--quiet"]) == 0
    single, on_ray = outputs(tmp_path / "single"), outputs(out)
    assert sorted(on_ray) == sorted(single)
    for name, pixels in single.items():
        np.testing.assert_array_equal(on_ray[name], pixels)
