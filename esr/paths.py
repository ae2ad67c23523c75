"""Where shared benchmark data lives (``datasets/``, ``weights/``): ``$ESR_SHARED``, else a ``shared`` folder
beside the current folder or beside a source checkout of esr.

Only scripts, tests and training options (``${ESR_SHARED}`` in dataroot paths) use it; no other command
depends on it. An installed esr (site-packages) never guesses a folder relative to itself.
"""
from __future__ import annotations

import os
from pathlib import Path

SHARED_HINT = "set ESR_SHARED to the folder holding datasets/ (or edit the dataroot paths)"


def source_checkout() -> Path | None:
    """The repository root when esr runs from a source checkout (editable install, tests), else None."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "setup.cfg").is_file() else None


def find_shared_dir() -> Path | None:
    """``$ESR_SHARED`` when set; else the first existing ``../shared`` (of the current folder, then of the
    source checkout); None when there is none."""
    if os.environ.get("ESR_SHARED"):
        return Path(os.environ["ESR_SHARED"]).resolve()
    checkout = source_checkout()
    candidates = [Path.cwd().parent / "shared", *([checkout.parent / "shared"] if checkout else [])]
    return next((path.resolve() for path in candidates if path.is_dir()), None)


def shared_dir() -> Path:
    """:func:`find_shared_dir`, else ``../shared`` of the current folder (which does not exist: callers skip
    or report it)."""
    return find_shared_dir() or (Path.cwd().parent / "shared").resolve()
