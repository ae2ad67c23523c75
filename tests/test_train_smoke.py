"""CI-sized end-to-end run of `esr train`: two warm-start stages, a real SIGKILL mid-stage, resume, load."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from esr.loading import load_model, read_checkpoint

STAGE2_ITERS = 300


def smoke_options() -> dict:
    """A tiny RLFN (8 channels, 1 block), 64 px HR crops of T91, batch 2; stage 2 long enough to be killed."""
    return {
        "name": "smoke", "model_type": "ESRModel", "scale": 4, "num_gpu": 0, "manual_seed": 0,
        "datasets": {
            "train": {"name": "T91", "type": "HROnlyDataset", "dataroot_hr": "${ESR_SHARED}/datasets/T91",
                      "gt_size": 64, "use_hflip": True, "use_rot": True, "use_shuffle": True,
                      "num_worker_per_gpu": 0, "batch_size_per_gpu": 2, "dataset_enlarge_ratio": 1,
                      "prefetch_mode": None},
            "val": {"name": "Set5", "type": "EvalFolderDataset", "dataroot": "${ESR_SHARED}/datasets/Set5"},
        },
        "network_g": {"type": "RLFN", "feature_channels": 8, "mid_channels": 8, "num_blocks": 1,
                      "esa_channels": 4, "upscale": 4},
        "path": {"pretrain_network_g": None, "strict_load_g": True, "resume_state": None},
        "train": {"ema_decay": 0, "grad_clip": 1.0,
                  "optim_g": {"type": "Adam", "lr": 1e-3, "betas": [0.9, 0.99]},
                  "scheduler": {"type": "MultiStepLR", "milestones": [1000], "gamma": 0.5},
                  "total_iter": 4, "warmup_iter": -1, "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0}},
        "val": {"val_freq": 100000, "save_img": False},
        "logger": {"print_freq": 50, "save_checkpoint_freq": 2, "use_tb_logger": False},
        "stages": [
            {"name": "stage1"},
            {"name": "stage2", "train": {"total_iter": STAGE2_ITERS, "pixel_opt": {
                "type": "ContrastiveLoss", "contrast_weight": 0.05, "feature_channels": 4}}},
        ],
    }


def esr_train(opt_file: Path, cwd: Path, shared: Path) -> list[str]:
    return [sys.executable, "-m", "esr", "train", "-opt", str(opt_file), "--threads", "1"]


def only(paths: list[Path]) -> Path:
    assert len(paths) == 1, paths
    return paths[0]


def test_two_stage_training_survives_a_kill(tmp_path: Path, shared: Path) -> None:
    opt_file = tmp_path / "smoke.yml"
    opt_file.write_text(yaml.safe_dump(smoke_options()))
    env = {**os.environ, "ESR_SHARED": str(shared), "OMP_NUM_THREADS": "1"}
    command = esr_train(opt_file, tmp_path, shared)
    exp = tmp_path / "experiments"
    states2 = exp / "smoke_stage2" / "training_states"

    # First run: kill it (SIGKILL, no clean-up possible) once stage 2 has saved two training states
    # (the newest may be half-written at that moment; the resume then uses the older one).
    with open(tmp_path / "run1.log", "w") as log:
        proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 100
        while len(list(states2.glob("*.state"))) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.kill()
        proc.wait()
    assert list(states2.glob("*.state")), (tmp_path / "run1.log").read_text()[-2000:]
    stage1 = exp / "smoke" / "stage_stage1.pth"
    assert stage1.is_file() and not (exp / "smoke" / "stage_stage2.pth").exists()
    stage1_mtime = stage1.stat().st_mtime_ns

    # Same command again: stage 1 is skipped, stage 2 resumes from its newest state.
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "final weights:" in done.stdout

    assert stage1.stat().st_mtime_ns == stage1_mtime
    only(sorted((exp / "smoke_stage1").glob("train_*.log")))  # stage 1 ran once
    first2, second2 = sorted((exp / "smoke_stage2").glob("train_*.log"))
    warm = re.search(r"initial weights from (\S+): (\d+)/(\d+) tensors loaded", first2.read_text())
    assert warm and Path(warm[1]) == stage1 and warm[2] == warm[3] and int(warm[2]) > 0
    resumed = re.search(r"Resuming training from epoch: \d+, iter: (\d+)", second2.read_text())
    assert resumed and 2 <= int(resumed[1]) < STAGE2_ITERS
    assert "Resuming" not in first2.read_text()

    final = exp / "smoke" / "final.pth"
    model = load_model(final)
    assert model.descriptor.scale == 4 and model(torch.rand(1, 3, 20, 20)).shape == (1, 3, 80, 80)
    final_sd, _ = read_checkpoint(final)
    stage1_sd, _ = read_checkpoint(stage1)
    stage2_sd, _ = read_checkpoint(exp / "smoke" / "stage_stage2.pth")
    assert all(torch.equal(final_sd[k], stage2_sd[k]) for k in final_sd)
    assert any(not torch.equal(final_sd[k], stage1_sd[k]) for k in final_sd)  # stage 2 trained

    curve = json.loads((exp / "smoke" / "curve.json").read_text())
    assert [(r["stage"], r["total_iter"]) for r in curve] == [("stage1", 4), ("stage2", 4 + STAGE2_ITERS)]
    assert all(r["dataset"] == "Set5" and r["psnr_y"] > 5 for r in curve)
    assert (exp / "smoke_stage2" / "models" / "net_g_best.pth").is_file()

    # A finished run again, with --json: nothing is retrained, stdout holds only the one JSON object.
    again = subprocess.run([*command, "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=150)
    assert again.returncode == 0, again.stderr[-3000:]
    record = json.loads(again.stdout)
    assert Path(record["final_weights"]).resolve() == final.resolve() and record["curve"] == curve
