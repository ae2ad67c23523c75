"""Item 2 of the hardening issue: no training state, checkpoint or warm start ever runs code.

A planted pickle whose ``__reduce__`` creates a marker file is first shown to be live (a full
unpickle creates the marker), then fed to every loading path of training and inference.
"""
from __future__ import annotations

import pickle
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from PIL import Image as PILImage

from esr.archs import build_model
from esr.cli import main


class Planted:
    """Unpickling this calls ``open(marker, "w")``: the marker file proves that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def plant(path: Path, marker: Path, wrap: str = "params") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({wrap: Planted(marker), "iter": 6}, path)
    return path


def test_the_plant_is_live(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    plant(tmp_path / "evil.pth", marker)
    torch.load(tmp_path / "evil.pth", weights_only=False)  # full unpickling (torch < 2.6's default) runs it
    assert marker.exists()


def test_resume_never_runs_a_planted_state(tmp_path: Path, resume_dirs: dict) -> None:
    from esr.train.runner import load_latest_state

    marker = tmp_path / "ran"
    plant(resume_dirs["states"] / "6.state", marker)
    state = load_latest_state(resume_dirs["opt"])
    assert not marker.exists()
    assert state["iter"] == 4  # the planted newest state was skipped, the older plain one used


def test_model_argument_never_runs_a_planted_checkpoint(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "ran"
    evil = plant(tmp_path / "evil.pth", marker)
    PILImage.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    for command in (["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model", str(evil)],
                    ["export", "--model", str(evil), "--onnx", str(tmp_path / "x.onnx")],
                    ["eval", "--model", str(evil), "--data", str(tmp_path)]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "not a weights checkpoint" in err[0] and str(evil) in err[0]
    assert not marker.exists()
    assert not (tmp_path / "x.onnx").exists()


def test_basicsr_load_network_is_weights_only_under_esr(tmp_path: Path) -> None:
    """BasicSR's own ``torch.load`` (load_network) runs weights-only inside esr's training context."""
    from esr.train.bridge import register_all, weights_only_loads

    register_all()
    from basicsr.models.base_model import BaseModel

    marker = tmp_path / "ran"
    evil = plant(tmp_path / "evil.pth", marker)
    fake = SimpleNamespace(get_bare_model=lambda net: net)
    with weights_only_loads(), pytest.raises(pickle.UnpicklingError):
        BaseModel.load_network(fake, build_model("rlfn_s", 4), str(evil))
    with weights_only_loads(), pytest.raises(pickle.UnpicklingError):
        torch.load(evil, weights_only=False)  # an explicit request for full unpickling is refused
    assert not marker.exists()
    assert torch.load is torch.serialization.load  # the context restores torch.load


def tiny_train_document(tmp_path: Path, pretrain: Path) -> Path:
    hr = tmp_path / "hr"
    hr.mkdir()
    rng = np.random.default_rng(0)
    for index in range(2):
        PILImage.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(hr / f"{index}.png")
    doc = {
        "name": "evil", "model_type": "ESRModel", "scale": 4, "num_gpu": 0, "manual_seed": 0,
        "datasets": {"train": {"name": "tiny", "type": "HROnlyDataset", "dataroot_hr": str(hr), "gt_size": 16,
                               "use_hflip": False, "use_rot": False, "use_shuffle": False,
                               "num_worker_per_gpu": 0, "batch_size_per_gpu": 1, "dataset_enlarge_ratio": 1,
                               "prefetch_mode": None}},
        "network_g": {"type": "RLFN", "feature_channels": 8, "mid_channels": 8, "num_blocks": 1,
                      "esa_channels": 4, "upscale": 4},
        "path": {"pretrain_network_g": str(pretrain), "strict_load_g": True, "resume_state": None},
        "train": {"ema_decay": 0, "optim_g": {"type": "Adam", "lr": 1e-3, "betas": [0.9, 0.99]},
                  "scheduler": {"type": "MultiStepLR", "milestones": [1000], "gamma": 0.5},
                  "total_iter": 1, "warmup_iter": -1, "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0}},
        "logger": {"print_freq": 1, "save_checkpoint_freq": 1, "use_tb_logger": False},
    }
    path = tmp_path / "evil.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_pretrain_network_g_never_runs_a_planted_checkpoint(tmp_path: Path, monkeypatch, capsys) -> None:
    marker = tmp_path / "ran"
    evil = plant(tmp_path / "evil.pth", marker)
    options = tiny_train_document(tmp_path, evil)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "-opt", str(options), "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "not a weights checkpoint" in err[-1] and str(evil) in err[-1]
    assert not marker.exists()


def test_training_states_are_plain_data_and_resume() -> None:
    from esr.train.bridge import register_all

    register_all()
    import io

    from basicsr.models.lr_scheduler import MultiStepRestartLR

    from esr.train.state import load_training_state, plain_data, restore_counters

    net = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    scheduler = MultiStepRestartLR(optimizer, milestones=[2, 2, 5], gamma=0.5)
    net(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    scheduler.step()
    raw = {"iter": 1, "optimizers": [optimizer.state_dict()], "schedulers": [scheduler.state_dict()]}
    assert isinstance(raw["schedulers"][0]["milestones"], Counter)  # BasicSR's own state holds a Counter,
    plain = plain_data(raw)  # which torch < 2.6 refuses to load weights-only: esr saves plain dicts
    assert type(plain["schedulers"][0]["milestones"]) is dict
    buffer = io.BytesIO()
    torch.save(plain, buffer)
    loaded = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    restored = restore_counters(scheduler, loaded["schedulers"][0])
    assert isinstance(restored["milestones"], Counter) and restored["milestones"] == Counter({2: 2, 5: 1})
    fresh = MultiStepRestartLR(torch.optim.Adam(net.parameters(), lr=1e-3), milestones=[1], gamma=0.1)
    fresh.load_state_dict(restored)
    assert fresh.milestones == scheduler.milestones and fresh.last_epoch == scheduler.last_epoch
    # states written by older esr versions (with the Counter) still resume, weights-only
    legacy = Path(__import__("tempfile").mkdtemp()) / "1.state"
    torch.save(raw, legacy)
    assert load_training_state(legacy)["schedulers"][0]["milestones"] == Counter({2: 2, 5: 1})
