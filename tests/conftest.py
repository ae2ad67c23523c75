"""Shared fixtures: the ../shared data folder (skip with a reason when absent)."""
from __future__ import annotations

from pathlib import Path

import pytest

from esr.paths import shared_dir


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
