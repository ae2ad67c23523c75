"""Shared fixtures: the ../shared data folder (skip with a reason when absent)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from esr.paths import shared_dir


@pytest.fixture(scope="session", autouse=True)
def hermetic_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One esr cache per test session (auto decisions, ONNX graphs, hardware profiles), never the user's
    ``~/.cache/esr``; subprocesses inherit it. Tests that need an empty cache set their own."""
    import os

    folder = tmp_path_factory.mktemp("esr-cache")
    previous = os.environ.get("ESR_CACHE_DIR")
    os.environ["ESR_CACHE_DIR"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("ESR_CACHE_DIR", None)
    else:
        os.environ["ESR_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def shared() -> Path:
    path = shared_dir()
    if not (path / "datasets").is_dir():
        pytest.skip(f"shared data not found at {path} (set ESR_SHARED)")
    return path


@pytest.fixture
def official_weights(shared: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ESR_WEIGHTS_DIR at the official RLFN checkpoints, so zoo names load offline."""
    folder = shared / "weights" / "rlfn"
    if not folder.is_dir():
        pytest.skip(f"official RLFN weights not found at {folder}")
    monkeypatch.setenv("ESR_WEIGHTS_DIR", str(folder))
    return folder


@pytest.fixture(scope="module")
def one_thread():
    """Small shapes: one intra-op thread is as fast on an idle 2-core machine and several
    times faster when another process holds a core (no spinning threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def resume_dirs(tmp_path: Path) -> dict:
    """BasicSR run folders with plain training states and weights at iterations 4 and 6, and the
    options that point at them: ``{"states", "models", "opt"}`` (tests then spoil state 6)."""
    from esr.archs import build_model
    from esr.train.bridge import register_all

    register_all()
    states, models = tmp_path / "training_states", tmp_path / "models"
    states.mkdir()
    models.mkdir()
    net = build_model("rlfn_s", 4)
    for it in (4, 6):
        torch.save({"params": net.state_dict()}, models / f"net_g_{it}.pth")
        torch.save({"epoch": 0, "iter": it, "optimizers": [], "schedulers": []}, states / f"{it}.state")
    opt = {"name": "t", "network_g": {"type": "RLFN"},
           "path": {"training_states": str(states), "models": str(models), "resume_state": None}}
    return {"states": states, "models": models, "opt": opt}


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has exited: a claim naming it is stale."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid
