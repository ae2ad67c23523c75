"""Where shared benchmark data lives: ``$ESR_SHARED``, else ``../shared`` beside the repo root.

The repo root is the current directory (tests, scripts and CI run from there) or, in a
source checkout, the folder holding this package.
"""
from __future__ import annotations

import os
from pathlib import Path


def shared_dir() -> Path:
    """The shared data folder (datasets/, weights/, design/); it may not exist."""
    if os.environ.get("ESR_SHARED"):
        return Path(os.environ["ESR_SHARED"]).resolve()
    candidates = [Path.cwd().parent / "shared", Path(__file__).resolve().parent.parent.parent / "shared"]
    return next((path.resolve() for path in candidates if path.is_dir()), candidates[0].resolve())
