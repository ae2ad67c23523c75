"""`esr upscale --ray` on a local Ray instance (2 CPUs, started once for the module): same outputs as one
process, a corrupt file reported and counted (exit 1), a rerun skips everything, a killed actor's files are
retried and written once."""
from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image as PILImage

pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'esr[ray]')")
import ray  # noqa: E402

from esr.autoselect import EXACT_DB, REFERENCE, Trial, cache_path, save_trials  # noqa: E402
from esr.cli import main  # noqa: E402
from esr.errors import EsrError  # noqa: E402

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


def plant_decision(key: dict, winner: Candidate, others: list[Candidate]) -> Path:
    """An auto cache entry for ``key`` in which ``winner`` is 100x faster than the rest and exact."""
    trials = [Trial(c, median_ms=1.0 if c == winner else 100.0, fidelity_db=EXACT_DB, times_ms=[1.0])
              for c in [REFERENCE, *[c for c in others if c != REFERENCE]]]
    path = cache_path(key)
    save_trials(path, key, trials, REFERENCE)
    return path


def test_actors_run_what_one_process_chooses_not_their_own_auto_decision(tmp_path, capsys, local_ray, one_thread):
    """An actor has its own thread share and would time auto's default tile, a key of its own in the cache:
    a decision planted there (another backend or precision) must not be what the actors run."""
    from esr.backends.auto_backend import DEFAULT_TILE_HW, candidates_for, decision_key
    from esr.loading import open_model
    from esr.zoo import DEFAULT_MODEL

    src = tmp_path / "in"
    make_images(src, 4, 40)
    code, last, _ = upscale(capsys, str(src), "-o", str(tmp_path / "single"), "--json")
    chose = json.loads(last)
    loaded = open_model(DEFAULT_MODEL)
    candidates = candidates_for(loaded, "cpu", None, None)
    # fp32 chosen: plant a reduced precision (other pixels where the CPU computes it); else plant fp32
    planted = next((c for c in candidates if (c.precision == "fp32") != (chose["precision"] == "fp32")), None)
    if planted is None:
        pytest.skip(f"one precision among the candidates: {[c.label for c in candidates]}")
    path = plant_decision(decision_key(loaded, candidates, "cpu", 1, DEFAULT_TILE_HW), planted, candidates)
    try:
        code, last, err = upscale(capsys, str(src), "-o", str(tmp_path / "ray"), "--ray", "--json")
    finally:
        path.unlink()
    on_ray_chose = json.loads(last)
    assert code == 0 and err == [], err
    assert {k: on_ray_chose[k] for k in ("backend", "precision")} == {k: chose[k] for k in ("backend", "precision")}
    single, on_ray = outputs(tmp_path / "single"), outputs(tmp_path / "ray")
    assert sorted(on_ray) == sorted(single) and len(single) == 4
    for name, pixels in single.items():
        np.testing.assert_array_equal(on_ray[name], pixels, err_msg=f"{name}: planted {planted.label}, chose {chose}")


def test_gpu_actors_get_the_choice_made_in_a_ray_task_with_their_resources(tmp_path, local_ray):
    """GPU actors: the driver may have no GPU, so the choice is made in one Ray task holding an actor's share
    (``num_gpus`` 0 here, on this CPU-only Ray); its result is the driver's own, and a bad model is esr's one line."""
    from esr.scale.ray_batch import resolve_backend, resolve_on_cluster
    from esr.upscale_batch import BatchOptions

    options = BatchOptions(inputs=[], outdir=tmp_path, quiet=True)
    remote, remote_ran = resolve_on_cluster(ray, options, (128, 128), {"num_gpus": 0.0})
    here, here_ran = resolve_backend(options, (128, 128))
    assert remote == here and remote_ran["backend"] == here_ran["backend"]
    assert remote.backend not in ("auto", None) and remote.precision not in ("auto", None) and remote.device
    with pytest.raises(EsrError, match="no such file"):
        resolve_on_cluster(ray, replace(options, model=str(tmp_path / "no.pth")), None, {"num_gpus": 0.0})
