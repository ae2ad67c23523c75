"""Where shared benchmark data lives: ``$ESR_SHARED`` or ``../shared`` beside the repo root."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_dir() -> Path:
    """The shared data folder (datasets/, weights/, design/); it may not exist."""
    return Path(os.environ.get("ESR_SHARED", REPO_ROOT.parent / "shared")).resolve()
